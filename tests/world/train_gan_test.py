"""GAN training (world/train_gan.py): a step lowers its losses, a scanned chunk equals single steps,
checkpoints and the EMA generator's weights round-trip exactly, and progress sums sessions."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import tiny
from learning_words.common import checkpoints
from learning_words.models import generator as gen_lib
from learning_words.world import colour_match, train_gan


def _tiny_gan_config(recon_weight):
  c = tiny.get_config().gan
  c.sizes, c.d_sizes = (8, 16, 8), (16, 8)
  c.recon_weight = recon_weight
  c.lr = 3e-3
  return c


@pytest.mark.parametrize("recon_weight", [0.0, 1.0])
def test_gan_step_reduces_its_loss_and_checkpoints_round_trip(recon_weight, tmp_path):
  cfg = _tiny_gan_config(recon_weight)
  cfg.colour_weight = recon_weight
  s = train_gan.GanState(cfg, seed=0)
  # Real images: one fixed coloured pattern, so D quickly separates it from the random G.
  real = jnp.broadcast_to(jnp.linspace(-1, 1, 8)[None, :, None, None], (8, 8, 8, 3))
  step = nnx.jit(lambda s, x, k: train_gan.train_step(
      s, x, k, cfg, False, colour_match.colour_histogram(x)))
  first = step(s, real, jax.random.key(0))
  for i in range(1, 30):
    last = step(s, real, jax.random.key(i))
  assert last["d_real"] + last["d_fake"] < first["d_real"] + first["d_fake"]
  if recon_weight:
    assert last["recon_l1"] < first["recon_l1"]
  mgr = checkpoints.make_manager(str(tmp_path / "ckpt"))
  checkpoints.save(mgr, 30, {"state": s})
  mgr.wait_until_finished()
  fresh = train_gan.GanState(cfg, seed=1)
  assert checkpoints.restore(checkpoints.make_manager(str(tmp_path / "ckpt")),
                             {"state": fresh}) == 30
  for a, b in zip(jax.tree.leaves(nnx.state(s)), jax.tree.leaves(nnx.state(fresh))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  checkpoints.save_weights(str(tmp_path / "g"), s.g_ema)
  g = checkpoints.restore_weights(lambda: gen_lib.Generator(cfg.sizes, rngs=nnx.Rngs(0)),
                                  str(tmp_path / "g"))
  z = jnp.ones((2, 8))
  np.testing.assert_array_equal(g(z), s.g_ema(z))


def test_gan_chunk_equals_single_steps():
  """One scanned call of 4 steps (R1 on the first) == 4 separate train_step calls, same batches."""
  cfg = _tiny_gan_config(1.0)
  cfg.colour_weight = 1.0
  images = np.random.default_rng(0).integers(0, 256, (20, 8, 8, 3), dtype=np.uint8)
  idx = np.random.default_rng(1).integers(0, 20, (4, 8)).astype(np.int32)
  key = jax.random.key(3)
  a, b = train_gan.GanState(cfg, seed=0), train_gan.GanState(cfg, seed=0)
  # uint8 -> [-1, 1] inside jit in both paths: an ulp of difference in the input flips the sign of
  # near-zero gradients, and Adam with b1 = 0 turns each flip into a 2 * lr parameter difference.
  target = jax.jit(lambda im: colour_match.colour_histogram(im.astype(jnp.float32) / 127.5 - 1.0))(
      jnp.asarray(images))
  # The target train_gan passes: the histogram of the first 2,048 renders (here all 20).
  np.testing.assert_allclose(train_gan.renders_colour_histogram(jnp.asarray(images)), target,
                             rtol=1e-6)
  step = nnx.jit(lambda s, x, k, r1: train_gan.train_step(
      s, x.astype(jnp.float32) / 127.5 - 1.0, k, cfg, r1, target), static_argnums=3)
  for i in range(4):
    want = step(a, jnp.asarray(images[idx[i]]), jax.random.fold_in(key, 6 + i), i == 0)
  got = nnx.jit(lambda s, im, ix: train_gan.train_chunk(s, im, ix, key, 6, target, cfg, True))(
      b, jnp.asarray(images), jnp.asarray(idx))
  assert set(got) == set(want) and "r1" not in want
  for k in want:  # the scan reassociates sums: 8e-5 apart after 4 steps at LLVM level 1 (tests)
    np.testing.assert_allclose(got[k], want[k], rtol=2e-4, atol=1e-5)
  # Adam with b1 = 0 moves every parameter by ~lr = 3e-3 a step whatever its gradient's size, so
  # where the scan's reassociated sums flip the sign of a near-zero gradient, that parameter ends
  # up to 2 * lr per step away (0.9% of one layer's at the tests' LLVM level 1); a missed or
  # repeated step would move nearly every parameter by ~lr.
  diff = np.concatenate([np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)).ravel()
                         for x, y in zip(jax.tree.leaves(nnx.state(a)),
                                         jax.tree.leaves(nnx.state(b)))])
  assert (diff > 1e-4).mean() < 0.02 and diff.max() < 8 * cfg.lr, ((diff > 1e-4).mean(), diff.max())
  assert [train_gan.chunk_end(t, 16, 40) for t in (0, 5, 16, 32, 39)] == [16, 16, 32, 40, 40]


def test_progress_sums_train_time_over_sessions(tmp_path):
  # Each train_gan call is one session; its entry is rewritten at each checkpoint (the last
  # write holds its wall time), and a second call in the same process adds a new entry.
  train_gan.write_progress(str(tmp_path), 100, "1000.000", 10.0)
  train_gan.write_progress(str(tmp_path), 200, "1000.000", 25.0)
  train_gan.write_progress(str(tmp_path), 300, "1030.500", 5.5)
  with open(tmp_path / "progress.json") as f:
    prog = json.load(f)
  assert prog == {"step": 300, "seconds": 30.5, "sessions": {"1000.000": 25.0, "1030.500": 5.5}}
