"""The clevr_scenes TFDS builder stores exactly what the renderer draws, split by id range."""
import json

import numpy as np

from configs import tiny
from learning_words.data import clevr_scenes, vocabulary
from learning_words.world import scenes


def test_records_equal_the_renderer_output_by_id(tmp_path):
  c = tiny.get_config()
  c.world.num_train, c.world.num_val = 12, 5
  builder = clevr_scenes.make_builder(c, str(tmp_path), render=scenes.render_scenes)
  builder.download_and_prepare()
  for split, start, num in (("train", 0, 12), ("val", 12, 5)):
    arrays, descriptions, _ = scenes.render_scenes(
        num, c.seed, c.world.resolution, c.world.min_objects, c.world.max_objects, start=start)
    src = builder.as_data_source(split)
    assert len(src) == num
    for k in range(num):
      r = src[k]
      i = int(r["id"]) - start  # records come back in hashed order: match them by id
      assert 0 <= i < num
      for key in ("image", "object_id", *vocabulary.ATTRIBUTES):
        np.testing.assert_array_equal(r[key], arrays[key][i])
      assert json.loads(r["scene"]) == json.loads(json.dumps(descriptions[i]))
  loaded = clevr_scenes.load_arrays(builder.data_dir, "val", keys=("image", "color"))
  want, _, _ = scenes.render_scenes(5, c.seed, c.world.resolution, c.world.min_objects,
                                    c.world.max_objects, start=12)
  np.testing.assert_array_equal(loaded["image"], want["image"])  # id order
  np.testing.assert_array_equal(loaded["color"], want["color"])


def test_with_the_networks_at_hand_only_the_val_scenes_are_rendered(tmp_path):
  """The quickstart's world with its shipped generator and segmenter: the render stage draws the
  val ids alone (the world report's), the same scenes a full render holds; retraining the GAN
  needs the train split, so then every split is rendered."""
  from configs import quickstart  # pylint: disable=g-import-not-at-top
  from learning_words import pipeline, workdir as wd  # pylint: disable=g-import-not-at-top
  c = quickstart.get_config()
  c.world.num_train, c.world.num_val = 40, 6
  workdir = str(tmp_path)
  assert wd.scenes_val_only(c, workdir)
  folder = pipeline.render(c, workdir)
  assert folder == wd.scenes_dir(c, workdir) and folder.endswith("_valonly/1.0.0")
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  assert set(tfds.builder_from_directory(folder).info.splits) == {"val"}
  want, descriptions, _ = scenes.render_scenes(6, c.seed, c.world.resolution,
                                               c.world.min_objects, c.world.max_objects, start=40)
  got = clevr_scenes.load_arrays(folder, "val", keys=("id", "image", "object_id", "scene"))
  assert got["id"].tolist() == list(range(40, 46))
  np.testing.assert_array_equal(got["image"], want["image"])
  np.testing.assert_array_equal(got["object_id"], want["object_id"])
  assert [json.loads(s) for s in got["scene"]] == json.loads(json.dumps(descriptions))
  assert pipeline.STAGES["render"].existing(c, workdir) == folder  # done: skipped next time
  c.gan.retrain = True  # no trained generator yet: the GAN needs the train split
  assert not wd.scenes_val_only(c, workdir)
  assert not wd.scenes_dir(c, workdir).endswith("_valonly/1.0.0")
  assert pipeline.STAGES["render"].existing(c, workdir) is None
