"""The oracle negatives' in-step choice against a plain loop over the batch."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from learning_words.learner import oracle


def _batch(rng, b=12, k=4, r=16):
  """Random object masks (some slots empty), variants and validity."""
  masks = np.zeros((b, k, r, r), np.uint8)
  for i in range(b):
    for j in range(k):
      if rng.random() < 0.75:
        y0, x0 = rng.integers(0, r - 3, size=2)
        h, w = rng.integers(1, 6, size=2)
        masks[i, j, y0:y0 + h, x0:x0 + w] = 1
  valid = (masks.any(axis=(2, 3)) & (rng.random((b, k)) < 0.9)).astype(np.uint8)
  return {"object_masks": masks, "variant_valid": valid,
          "null_valid": (valid & (rng.random((b, k)) < 0.8)).astype(np.uint8),
          "variants": rng.integers(0, 256, (b, k, r, r, 3), dtype=np.uint8),
          "null_variants": rng.integers(0, 256, (b, k, r, r, 3), dtype=np.uint8)}


def _loop_choice(masks, valid, y, x, grid):
  """The rule, written out: the valid object with the most pixels in the peak cell; with none
  there, the one whose nearest occupied cell is closest (squared cell distance); ties: lowest
  slot. -1 when nothing is valid."""
  r = masks.shape[-1]
  s = r // grid
  best, best_key = -1, None
  for j in range(masks.shape[0]):
    if not valid[j]:
      continue
    counts = np.zeros((grid, grid), int)
    for a in range(grid):
      for c in range(grid):
        counts[a, c] = int(masks[j, a * s:(a + 1) * s, c * s:(c + 1) * s].sum())
    occupied = [(a, c) for a in range(grid) for c in range(grid) if counts[a, c] > 0]
    dist = min(((a - y) ** 2 + (c - x) ** 2 for a, c in occupied), default=10 ** 9)
    key = (dist, -counts[y, x])
    if best_key is None or key < best_key:
      best, best_key = j, key
  return best


def _matchmap_peaking_at(ys, xs, grid, t=5):
  """A matchmap [B,g,g,T] whose single maximum over cells and frames is at (ys, xs)."""
  mm = np.zeros((len(ys), grid, grid, t), np.float32)
  for i, (y, x) in enumerate(zip(ys, xs)):
    mm[i, y, x, 2] = 1.0
  return jnp.asarray(mm)


@pytest.mark.parametrize("mode", ["oracle", "oracle_null"])
def test_choice_at_the_peak_matches_a_loop(mode):
  rng = np.random.default_rng(0)
  grid = 4
  batch = _batch(rng)
  b = batch["object_masks"].shape[0]
  ys, xs = rng.integers(0, grid, b), rng.integers(0, grid, b)
  frames = jnp.full((b,), 5)
  neg, accepted, stats = oracle.oracle_negatives(
      {k: jnp.asarray(v) for k, v in batch.items()}, _matchmap_peaking_at(ys, xs, grid), frames,
      jax.random.key(0), mode)
  images = batch["null_variants" if mode == "oracle_null" else "variants"]
  valid = batch["null_valid" if mode == "oracle_null" else "variant_valid"]
  for i in range(b):
    j = _loop_choice(batch["object_masks"][i], valid[i], ys[i], xs[i], grid)
    assert bool(accepted[i]) == (j >= 0)
    if j >= 0:
      np.testing.assert_allclose(np.asarray(neg[i]), images[i, j] / 127.5 - 1.0, atol=1e-6)
  assert float(stats["accepted_rate"]) == pytest.approx(np.mean([v.any() for v in valid]))


def test_random_choice_draws_every_valid_object_and_no_other():
  rng = np.random.default_rng(1)
  batch = _batch(rng, b=6)
  jb = {k: jnp.asarray(v) for k, v in batch.items()}
  mm = _matchmap_peaking_at([0] * 6, [0] * 6, 4)
  seen = [set() for _ in range(6)]
  for s in range(60):
    neg, accepted, _ = oracle.oracle_negatives(jb, mm, jnp.full((6,), 5), jax.random.key(s),
                                               "oracle_random")
    for i in range(6):
      if not batch["variant_valid"][i].any():
        assert not bool(accepted[i])
        continue
      hits = [j for j in range(4)
              if np.allclose(np.asarray(neg[i]), batch["variants"][i, j] / 127.5 - 1.0, atol=1e-6)]
      assert len(hits) == 1 and batch["variant_valid"][i, hits[0]]
      seen[i].add(hits[0])
  for i in range(6):
    assert seen[i] == set(np.nonzero(batch["variant_valid"][i])[0].tolist())
