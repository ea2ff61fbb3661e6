"""The shipped quickstart generator, segmenter and inverter load, have the config's shapes, and say
where they came from; the pipeline uses them unless told to retrain; the inverter's codes redraw
renders it never saw within a stated error."""
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from configs import paper, quickstart
from learning_words import pipeline, workdir as wd
from learning_words.common import assets
from learning_words.models import generator as gen_lib
from learning_words.models import segmenter as seg_lib
from learning_words.common import checkpoints
from learning_words.world import invert, pairs, scenes


def test_shipped_generator_loads_with_its_provenance(tmp_path):
  c = quickstart.get_config()
  prov = assets.read_provenance("generator", c)
  assert prov["kind"] == "generator" and prov["resolution"] == 32 == c.world.resolution
  assert tuple(prov["sizes"]) == tuple(c.gan.sizes)
  assert prov["steps"] > 0 and prov["train_seconds"] > 0 and len(prov["commit"]) == 40
  report = prov["world_report"]
  assert 0.9 <= report["parsed_fraction"] <= 1
  assert set(report["tv"]) == {"shape", "color", "size", "material"}
  assert [e["layer"] for e in report["edits"]] == list(c.gan.diagnose_layers)
  g = wd.load_generator(c, str(tmp_path))  # an empty workdir: the shipped one
  fresh = gen_lib.Generator(c.gan.sizes, rngs=nnx.Rngs(0))
  shapes = lambda m: [np.shape(v) for v in jax.tree.leaves(nnx.state(m))]
  assert shapes(g) == shapes(fresh)
  z = jnp.asarray(gen_lib.standard_z(4, c.gan.sizes[0]))
  x = np.asarray(g(z))
  assert x.shape == (4, 32, 32, 3) and -1 <= x.min() and x.max() <= 1
  # It has learned the world's grey floor: the top corners (background) are grey, R = G = B.
  corners = np.concatenate([x[:, :4, :4], x[:, :4, -4:]], axis=1).reshape(-1, 3)
  assert np.abs(corners - corners.mean(axis=1, keepdims=True)).max() < 0.1


def test_shipped_segmenter_loads_with_its_provenance(tmp_path):
  c = quickstart.get_config()
  prov = assets.read_provenance("segmenter", c)
  assert prov["kind"] == "segmenter" and prov["steps"] == c.segmenter.steps
  for head in ("shape", "color", "size", "material"):
    assert prov["accuracy"][head]["object_accuracy"] >= 0.95
  seg = wd.load_segmenter(c, str(tmp_path))
  # Against the renderer's ground truth on scenes it never saw (seed 99).
  arrays, _, _ = scenes.render_scenes(16, 99, 32, c.world.min_objects, c.world.max_objects)
  pred = seg_lib.predict(seg, arrays["image"])
  objects = arrays["object_id"] > 0
  for head in ("shape", "color", "size", "material"):
    assert pred[head].shape == (16, 32, 32)
    assert np.mean(pred[head][objects] == arrays[head][objects]) >= 0.9, head


def test_shipped_128px_segmenter_reads_unseen_renders_and_spares_the_official_renders(tmp_path):
  c = paper.get_config()  # the official data at 128 px
  prov = assets.read_provenance("segmenter", c)
  assert prov["resolution"] == 128 and prov["segmenter_config"]["crop"] == c.segmenter.crop
  seg = wd.load_segmenter(c, str(tmp_path))
  # Whole 128 px renders it never saw (seed 99), against the renderer's ground truth.
  arrays, _, _ = scenes.render_scenes(8, 99, 128, c.world.min_objects, c.world.max_objects)
  pred = seg_lib.predict(seg, arrays["image"], batch_size=8)
  objects = arrays["object_id"] > 0
  for head in ("shape", "color", "size", "material"):
    assert pred[head].shape == (8, 128, 128)
    assert np.mean(pred[head][objects] == arrays[head][objects]) >= 0.85, head
  # With a segmenter at hand the official pipeline renders nothing (only the segmenter needs
  # renders there); the synthetic world still renders for its GAN and world report.
  assert "not needed" in pipeline.STAGES["render"].existing(c, str(tmp_path))
  c.data.source = "synthetic"
  assert pipeline.STAGES["render"].existing(c, str(tmp_path)) is None


def test_pipeline_prefers_shipped_weights_unless_retraining(tmp_path):
  c = quickstart.get_config()
  workdir = str(tmp_path)
  assert wd.generator_dir(c, workdir) == assets.shipped_dir("generator", c)
  assert wd.segmenter_weights_dir(c, workdir) == assets.shipped_dir("segmenter", c)
  c.gan.retrain = c.segmenter.retrain = True
  assert wd.generator_dir(c, workdir) is None
  assert wd.segmenter_weights_dir(c, workdir) is None
  os.makedirs(os.path.join(workdir, "gan", "generator_ema"))
  assert wd.generator_dir(c, workdir) == os.path.join(workdir, "gan", "generator_ema")


def test_shipped_inverter_redraws_unseen_renders(tmp_path):
  c = quickstart.get_config()
  prov = assets.read_provenance("inverter", c)
  g_dir = wd.generator_dir(c, str(tmp_path))
  assert prov["generator_fingerprint"] == checkpoints.fingerprint_folders(g_dir)
  existing, _ = wd.inverter_dir(c, str(tmp_path))
  assert existing == assets.shipped_dir("inverter", c)
  e = checkpoints.restore_weights(lambda: invert.make_encoder(c.gan, 0), existing)
  g = wd.load_generator(c, str(tmp_path))
  images, _ = pairs.render_pairs_images(c.world, 0, np.arange(64))  # pair renders: never trained on
  redrawn = pairs.draw_images(g, invert.encode(e, images)).astype(np.float64)
  err = np.abs(redrawn - images).mean() / 127.5
  # Oracle for "better than nothing": a prior draw's error against the same renders, plainly.
  prior = pairs.draw_images(g, gen_lib.standard_z(64, c.gan.sizes[0], seed=7)).astype(np.float64)
  prior_err = np.abs(prior - images).mean() / 127.5
  # Stated error: a mean absolute error under 0.05 of the [-1, 1] range (0.041 over the 6,000
  # pair renders when shipped), and under 75% of a prior draw's.
  assert err < 0.05 and err < 0.75 * prior_err, (err, prior_err)
