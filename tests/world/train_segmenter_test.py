"""models/segmenter.py + world/train_segmenter.py: train step, predictions, checkpoints, scoring,
stage."""
import json
import os
import shutil

import jax
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from configs import tiny
from learning_words import pipeline, workdir as wd
from learning_words.common import checkpoints, errors
from learning_words.models import segmenter as seg_lib
from learning_words.world import train_segmenter as st
from learning_words.world import scenes
from learning_words.data import vocabulary

ATTRS = vocabulary.ATTRIBUTES


@pytest.fixture(scope="module")
def batch():
  """8 rendered 16 px scenes: uint8 images and their attribute maps."""
  arrays, _, _ = scenes.render_scenes(8, 0, 16, 1, 3)
  return arrays["image"], {a: arrays[a] for a in ATTRS}


def make_state(seed=0):
  cfg = tiny.get_config().segmenter
  cfg.steps, cfg.lr = 1000, 5e-3  # a nearly constant rate over the few steps taken here
  return st.SegState(cfg, seed)


def leaves(module):
  return [np.asarray(x) for x in jax.tree.leaves(nnx.state(module))]


def test_train_step_reduces_the_loss(batch):
  images, maps = batch
  s = make_state()
  losses = []
  for _ in range(30):
    out = st.train_step(s, images, maps)
    losses.append(float(out["loss"]))
    assert all(0.0 <= float(out[f"object_acc_{a}"]) <= 1.0 for a in ATTRS)
  assert losses[0] > 3.0  # ~ sum of log(num classes) at the start
  assert losses[-1] < 0.5 * losses[0], losses


def test_checkpoint_and_weights_round_trip_exactly(batch, tmp_path):
  images, maps = batch
  s = make_state(seed=0)
  for _ in range(3):
    st.train_step(s, images, maps)
  manager = checkpoints.make_manager(str(tmp_path / "ckpt"))
  checkpoints.save(manager, 3, {"state": s})
  manager.wait_until_finished()
  fresh = make_state(seed=1)
  assert not all(np.array_equal(a, b) for a, b in zip(leaves(s), leaves(fresh)))
  assert checkpoints.restore(checkpoints.make_manager(str(tmp_path / "ckpt")),
                             {"state": fresh}) == 3
  for a, b in zip(leaves(s), leaves(fresh)):  # params, batch stats, Adam moments and count
    np.testing.assert_array_equal(a, b)
  # The restored state carries on exactly as the original.
  np.testing.assert_array_equal(st.train_step(s, images, maps)["loss"],
                                st.train_step(fresh, images, maps)["loss"])
  # Saved where a workdir keeps trained weights (the tiny preset ships none at 16 px).
  checkpoints.save_weights(str(tmp_path / "work" / "segmenter" / "weights"), s.seg)
  config = tiny.get_config()
  loaded = wd.load_segmenter(config, str(tmp_path / "work"))
  for a, b in zip(leaves(s.seg), leaves(loaded)):
    np.testing.assert_array_equal(a, b)
  assert loaded.enc0.norm1.use_running_average  # loaded in eval mode


def test_predictions_have_the_right_shapes_and_classes(batch):
  images, maps = batch
  s = make_state()
  for _ in range(2):
    st.train_step(s, images, maps)  # batch stats move away from their initial values
  stats = leaves(s.seg)
  pred = seg_lib.predict(s.seg, images[:5], batch_size=2)  # batches of 2, the last one padded
  assert sorted(pred) == sorted(ATTRS)
  view = nnx.view(s.seg, use_running_average=True)
  logits = nnx.jit(lambda m, x: m(x))(view, seg_lib.to_float(images[:5]))  # one batch, no padding
  for a in ATTRS:
    assert pred[a].shape == (5, 16, 16) and pred[a].dtype == np.int32
    assert 0 <= pred[a].min() and pred[a].max() <= len(vocabulary.VOCAB[a])
    assert logits[a].shape == (5, 16, 16, 1 + len(vocabulary.VOCAB[a]))
    np.testing.assert_array_equal(pred[a], np.argmax(np.asarray(logits[a]), -1))
  as_float = seg_lib.predict(s.seg, images[:5].astype(np.float32) / 127.5 - 1.0, batch_size=2)
  for a in ATTRS:
    assert (as_float[a] == pred[a]).mean() > 0.99  # same images, up to rounding
  for a, b in zip(stats, leaves(s.seg)):  # predicting does not touch the batch statistics
    np.testing.assert_array_equal(a, b)
  shapes = jax.eval_shape(view, jax.ShapeDtypeStruct((1, 20, 20, 3), np.float32))  # 20/4 is odd
  assert shapes["color"].shape == (1, 20, 20, 9)
  with pytest.raises(ValueError, match="divisible by 4"):
    view(np.zeros((1, 18, 18, 3), np.float32))


def test_scores_match_a_plain_loop():
  rng = np.random.default_rng(0)
  classes = 3  # the size and material heads' count: score_predictions below runs every head
  truth = rng.integers(0, classes, size=(3, 5, 5))
  pred = np.where(rng.random((3, 5, 5)) < 0.6, truth, rng.integers(0, classes, size=(3, 5, 5)))
  want = [[0] * classes for _ in range(classes)]
  hits = objects = hits_all = 0
  for t, p in zip(truth.ravel().tolist(), pred.ravel().tolist()):
    want[t][p] += 1
    hits_all += t == p
    if t != 0:
      objects += 1
      hits += t == p
  conf = st.confusion_matrix(truth, pred, classes)
  assert conf.tolist() == want
  scores = st.score_confusion(conf)
  assert scores["object_accuracy"] == pytest.approx(hits / objects)
  assert scores["pixel_accuracy"] == pytest.approx(hits_all / truth.size)
  results = st.score_predictions({a: pred for a in ATTRS}, {a: truth for a in ATTRS})
  assert results["size"]["confusion"] == want and results["size"]["classes"][0] == "background"


def test_crops_and_their_coordinates_match_slices_of_the_whole_render(batch):
  images, maps = batch
  arrays = {"image": images, **maps}
  offsets = st.crop_offsets(3, 7, 8, 8, 16)
  assert offsets.shape == (8, 2) and offsets.min() >= 0 and offsets.max() <= 8
  np.testing.assert_array_equal(offsets, st.crop_offsets(3, 7, 8, 8, 16))  # (seed, step) only
  assert not np.array_equal(offsets, st.crop_offsets(3, 8, 8, 8, 16))
  crops = st.crop_batch(arrays, offsets, 8)
  whole = np.asarray(seg_lib.make_coordinates(8, 16))
  for i, (r, c) in enumerate(offsets.tolist()):
    for k, v in arrays.items():
      np.testing.assert_array_equal(crops[k][i], v[i, r:r + 8, c:c + 8])
    np.testing.assert_array_equal(crops["coordinates"][i], whole[i, r:r + 8, c:c + 8])
  # A crop of the top-left corner holds the whole render's top-left coordinates.
  assert crops["coordinates"].shape == (8, 8, 8, 2)
  corner = st.crop_batch(arrays, np.zeros((8, 2), int), 8)["coordinates"]
  np.testing.assert_allclose(corner[0, 0, 0], [-1 + 1 / 16, -1 + 1 / 16])
  np.testing.assert_allclose(corner[0, 0, 7], [-1 + 15 / 16, -1 + 1 / 16])  # x runs along columns


def test_stage_trains_scores_and_resumes_exactly(tmp_path):
  config = tiny.get_config()
  config.world.num_train, config.world.num_val = 24, 6
  config.segmenter.crop = 8  # crops of the 16 px renders; scored on whole val renders
  workdir = str(tmp_path / "work")
  pipeline.render(config, workdir)
  config.segmenter.crop = 6
  with pytest.raises(errors.ConfigError, match="segmenter.crop=6"):
    pipeline.train_segmenter(config, workdir)
  config.segmenter.crop = 8
  assert "train_segmenter" in pipeline.STAGES
  assert pipeline.STAGES["train_segmenter"].existing(config, workdir) is None
  out = pipeline.train_segmenter(config, workdir)
  assert out == os.path.join(workdir, "segmenter", "weights")
  assert pipeline.STAGES["train_segmenter"].existing(config, workdir) == f"already done: {out}"
  seg_dir = os.path.join(workdir, "segmenter")
  with open(os.path.join(seg_dir, "eval.json")) as f:
    report = json.load(f)
  for a in ATTRS:
    conf = np.asarray(report[a]["confusion"])
    assert conf.shape == (1 + len(vocabulary.VOCAB[a]),) * 2 and conf.sum() == 6 * 16 * 16
    assert 0.0 <= report[a]["object_accuracy"] <= 1.0
  for name in ("confusion.png", "examples.png"):
    assert min(Image.open(os.path.join(seg_dir, name)).size) > 50
  first = leaves(wd.load_segmenter(config, workdir))
  # Interrupted after step 2: drop the last checkpoint and the weights, then run again.
  shutil.rmtree(os.path.join(seg_dir, "checkpoints", str(config.segmenter.steps)))
  shutil.rmtree(out)
  pipeline.train_segmenter(config, workdir)
  for a, b in zip(first, leaves(wd.load_segmenter(config, workdir))):
    np.testing.assert_array_equal(a, b)
