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
