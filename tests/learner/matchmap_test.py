"""Matchmap, MISA and the chunked similarity matrix against plain per-element Python loops."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from learning_words.learner import matchmap as mm_lib


def loop_matchmap(img, aud, cosine):
  """img [h,w,D], aud [T,D] -> [h,w,T], one dot product at a time."""
  h, w, _ = img.shape
  out = np.zeros((h, w, aud.shape[0]))
  for i in range(h):
    for j in range(w):
      for t in range(aud.shape[0]):
        a, b = img[i, j].astype(np.float64), aud[t].astype(np.float64)
        if cosine:
          a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
        out[i, j, t] = float(np.dot(a, b))
  return out


def loop_misa(m, n):
  """MISA of one matchmap [h,w,T] with n valid frames."""
  per_frame = [max(m[i, j, t] for i in range(m.shape[0]) for j in range(m.shape[1]))
               for t in range(min(n, m.shape[2]))]
  return sum(per_frame) / len(per_frame)


def random_features(seed, b, h, w, t, d):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(b, h, w, d)).astype(np.float32),
          rng.normal(size=(b, t, d)).astype(np.float32))


@pytest.mark.parametrize("cosine", [False, True])
def test_matchmap_and_misa(cosine):
  img, aud = random_features(0, 3, 3, 2, 5, 4)
  n_frames = np.array([5, 1, 3])
  got = np.asarray(mm_lib.matchmap(jnp.asarray(img), jnp.asarray(aud), cosine=cosine))
  assert got.shape == (3, 3, 2, 5)
  expected = np.stack([loop_matchmap(img[b], aud[b], cosine) for b in range(3)])
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  if cosine:
    assert np.abs(got).max() <= 1 + 1e-5
  sims = np.asarray(mm_lib.misa(jnp.asarray(got), jnp.asarray(n_frames)))
  np.testing.assert_allclose(sims, [loop_misa(expected[b], n_frames[b]) for b in range(3)],
                             rtol=1e-5, atol=1e-5)


def test_misa_ignores_padded_frames():
  img, aud = random_features(1, 2, 2, 2, 6, 3)
  m = mm_lib.matchmap(jnp.asarray(img), jnp.asarray(aud))
  n = jnp.array([4, 2])
  spoiled = m.at[0, :, :, 4:].set(1e6).at[1, :, :, 2:].set(-1e6)  # only padded frames change
  np.testing.assert_allclose(mm_lib.misa(spoiled, n), mm_lib.misa(m, n), rtol=1e-6)


@pytest.mark.parametrize("cosine", [False, True])
def test_similarity_matrix_chunked(cosine):
  rng = np.random.default_rng(2)
  img, _ = random_features(3, 7, 2, 3, 1, 4)     # N = 7 images, chunk 3: padded to 9
  _, aud = random_features(4, 5, 1, 1, 6, 4)     # M = 5 captions of 6 frames
  n_frames = rng.integers(1, 7, 5)
  got = np.asarray(mm_lib.similarity_matrix(jnp.asarray(img), jnp.asarray(aud),
                                            jnp.asarray(n_frames), chunk=3, cosine=cosine))
  assert got.shape == (7, 5)
  expected = np.array([[loop_misa(loop_matchmap(img[i], aud[j], cosine), n_frames[j])
                        for j in range(5)] for i in range(7)])
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_similarity_matrix_memory_at_paper_shapes():
  """500 images (8x8x512) x 500 captions (128 frames x 512): compiled, not run."""
  img = jax.ShapeDtypeStruct((500, 8, 8, 512), jnp.float32)
  aud = jax.ShapeDtypeStruct((500, 128, 512), jnp.float32)
  n = jax.ShapeDtypeStruct((500,), jnp.int32)
  compiled = jax.jit(mm_lib.similarity_matrix).lower(img, aud, n).compile()
  stats = compiled.memory_analysis()
  if stats is None:
    pytest.skip("this backend reports no memory analysis")
  assert stats.temp_size_in_bytes < 3 * 2 ** 30


def test_pixels_per_cell_counts_each_cells_pixels():
  rng = np.random.default_rng(3)
  masks = rng.random((2, 3, 16, 16)) < 0.3  # [B,K,R,R]
  grid = 4
  got = np.asarray(mm_lib.pixels_per_cell(jnp.asarray(masks), grid))
  assert got.shape == (2, 3, grid, grid)
  side = 16 // grid
  for b, k, y, x in np.ndindex(2, 3, grid, grid):
    want = sum(int(masks[b, k, y * side + i, x * side + j])
               for i in range(side) for j in range(side))
    assert got[b, k, y, x] == want
