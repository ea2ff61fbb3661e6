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
  neg, accepted, stats, _ = oracle.oracle_negatives(
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
    neg, accepted, _, _ = oracle.oracle_negatives(jb, mm, jnp.full((6,), 5), jax.random.key(s),
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


@pytest.mark.parametrize("mode", ["oracle", "oracle_null"])
def test_every_object_gives_each_slot_in_sample_order(mode):
  """negatives.oracle_objects='all': row b*K + k is sample b's slot k (its moved copy for the null
  control), accepted exactly where that slot is valid, and its slot index is k."""
  rng = np.random.default_rng(2)
  batch = _batch(rng, b=5)
  jb = {k: jnp.asarray(v) for k, v in batch.items()}
  neg, accepted, stats, slot = oracle.every_object(jb, mode)
  images = batch["null_variants" if mode == "oracle_null" else "variants"]
  valid = batch["null_valid" if mode == "oracle_null" else "variant_valid"]
  row = 0
  for b in range(5):
    for k in range(4):
      np.testing.assert_allclose(np.asarray(neg[row]), images[b, k] / 127.5 - 1.0, atol=1e-6)
      assert bool(accepted[row]) == bool(valid[b, k]) and int(slot[row]) == k
      row += 1
  assert float(stats["edits_per_sample"]) == pytest.approx(valid.sum() / 5)


def test_changed_word_frames_by_hand():
  """The picked slot's changed attribute's word, in log-mel frames, mapped to encoder frames
  (pooling 4: frames [s // 4, ceil(e / 4))); a slot whose word has no time gives no frame; the
  null edit takes one of the moved object's timed words."""
  spans = np.full((3, 2, 4, 2), -1, np.int16)
  spans[0, 1, 2] = (9, 17)   # sample 0, slot 1, attribute 2 (size): log-mel frames 9..16
  spans[1, 0, 0] = (0, 4)    # sample 1, slot 0, shape
  spans[2, 0, :] = [(8, 12), (12, 16), (16, 20), (20, 24)]
  changed = np.array([[0, 2], [0, 1], [3, 3]], np.int8)
  batch = {"word_frames": jnp.asarray(spans), "changed": jnp.asarray(changed)}
  pick = jnp.asarray([1, 1, 0])
  got = np.asarray(oracle.changed_word_frames(batch, pick, jax.random.key(0), "oracle", 4, 8))
  want = np.zeros((3, 8), bool)
  want[0, 2:5] = True        # 9 // 4 = 2 .. ceil(17 / 4) = 5
  want[2, 5:6] = True        # material (3): frames 20..23 -> 5
  np.testing.assert_array_equal(got, want)  # sample 1: slot 1's colour word has no time
  null = np.asarray(oracle.changed_word_frames(batch, jnp.asarray([0, 0, 0]), jax.random.key(1),
                                               "oracle_null", 4, 8))[2]
  assert null.sum() == 1 and np.flatnonzero(null)[0] in (2, 3, 4, 5)


def test_object_word_frames_by_hand():
  """Every timed word of the picked slot's object, in encoder frames (pooling 4); untimed
  attributes add none."""
  spans = np.full((2, 2, 4, 2), -1, np.int16)
  spans[0, 1, 0] = (0, 4)     # sample 0, slot 1: shape word at log-mel 0..3 -> frame 0
  spans[0, 1, 3] = (9, 17)    # and material at 9..16 -> frames 2..4
  spans[0, 0, 1] = (20, 24)   # slot 0 (not picked)
  spans[1, 0, 2] = (28, 29)   # sample 1, slot 0: size at 28 -> frame 7
  batch = {"word_frames": jnp.asarray(spans)}
  got = np.asarray(oracle.object_word_frames(batch, jnp.asarray([1, 0]), 4, 8))
  want = np.zeros((2, 8), bool)
  want[0, [0, 2, 3, 4]] = True
  want[1, 7] = True
  np.testing.assert_array_equal(got, want)
