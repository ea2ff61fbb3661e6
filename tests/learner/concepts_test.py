"""Concepts: planted co-firing groups are recovered; Jaccard, peak products, segmentation and unit
IoU against loops; a planted unit ranks first for its cluster."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from learning_words.learner import concepts


def planted_points(n=3000, groups=3, size=6, noise_dims=14, seed=0):
  """Points whose dims 6g..6g+5 fire together (shared amplitude) for group g; the rest is noise."""
  rng = np.random.default_rng(seed)
  d = groups * size + noise_dims
  points = np.abs(rng.normal(size=(n, d))) * 0.3
  for g in range(groups):
    on = rng.random(n) < 0.05
    amplitude = rng.uniform(2, 4, size=n)
    points[on, g * size:(g + 1) * size] += (amplitude[on, None]
                                           + 0.05 * rng.normal(size=(on.sum(), size)))
  # Two noise dims that fire as a pair: a cluster too small to keep.
  pair = rng.random(n) < 0.03
  points[pair, -2:] += 5.0
  return points.astype(np.float32)


def test_cluster_dimensions_recovers_planted_groups():
  points = planted_points()
  # 3 groups + 12 lone noise dims + 1 pair: cut into exactly those 16 clusters.
  clusters = concepts.cluster_dimensions(points, n_clusters=16, percentile=99, min_size=4)
  assert sorted(map(list, clusters.members)) == [list(range(g * 6, g * 6 + 6)) for g in range(3)]
  assert clusters.centroids.shape == (3, points.shape[1])
  for c, m in zip(clusters.centroids, clusters.members):
    np.testing.assert_allclose(c[m], 1.0 / len(m), rtol=1e-6)  # indicator / n, as the reference
    assert set(np.flatnonzero(c)) == set(m)
  np.testing.assert_allclose(clusters.mean, points.mean(0), rtol=1e-5)
  np.testing.assert_allclose(clusters.std, points.std(0), rtol=1e-5)


def test_jaccard_matches_loop():
  rng = np.random.default_rng(1)
  active = rng.random((50, 7)) < 0.3
  active[:, 6] = False  # a dimension never active
  got = concepts.jaccard(active)
  for i in range(7):
    for j in range(7):
      both = sum(active[n, i] and active[n, j] for n in range(50))
      either = sum(active[n, i] or active[n, j] for n in range(50))
      assert np.isclose(got[i, j], both / either if either else 0.0)
  assert (concepts.binarise(np.arange(200.0)[:, None], 99).sum()) == 2


def test_peak_products_matches_loop():
  rng = np.random.default_rng(2)
  img = rng.normal(size=(3, 4, 5, 6)).astype(np.float32)
  aud = rng.normal(size=(3, 8, 6)).astype(np.float32)
  n_frames = np.array([8, 4, 1])
  got = np.asarray(jax.jit(concepts.peak_products)(img, aud, n_frames))
  for b in range(3):
    scores = {(t, y, x): img[b, y, x] @ aud[b, t]
              for t in range(n_frames[b]) for y in range(4) for x in range(5)}
    t, y, x = max(scores, key=scores.get)
    np.testing.assert_allclose(got[b], img[b, y, x] * aud[b, t], rtol=1e-6)


def test_segment_clusters_matches_loop():
  rng = np.random.default_rng(3)
  feats = rng.normal(size=(2, 3, 4, 10)).astype(np.float32)
  centroids = np.zeros((3, 10), np.float32)
  for k, dims in enumerate(([0, 1, 2, 3], [4, 5, 6, 7], [2, 8, 9, 5])):
    centroids[k, dims] = 0.5
  mean = 0.2 * rng.normal(size=10).astype(np.float32)
  std = rng.uniform(0.5, 1, 10).astype(np.float32)
  got = np.asarray(jax.jit(concepts.segment_clusters)(feats, centroids, mean, std))
  assert got.shape == (2, 3, 4, 3) and got.dtype == bool
  for b in range(2):
    for y in range(3):
      for x in range(4):
        for k in range(3):
          score = sum((feats[b, y, x, d] - mean[d]) / std[d] * centroids[k, d] for d in range(10))
          assert got[b, y, x, k] == (score > 0.5)
  assert 0.1 < got.mean() < 0.9


def test_cluster_scores_are_clipped_projections():
  rng = np.random.default_rng(3)
  feats = rng.normal(size=(20, 6)).astype(np.float32) * 3
  centroids = rng.normal(size=(4, 6)).astype(np.float32)
  mean, std = rng.normal(size=6).astype(np.float32), rng.uniform(0.3, 1, 6).astype(np.float32)
  got = np.asarray(concepts.cluster_scores(feats, centroids, mean, std))
  for b in range(20):
    for k in range(4):
      raw = sum((feats[b, d] - mean[d]) / std[d] * centroids[k, d] for d in range(6))
      assert got[b, k] == pytest.approx(min(max(raw, 0.0), 4.0), abs=1e-4)
  assert (got == 0).any() and (got == 4).any()  # both clips exercised


def test_sample_clusters_first_is_best_and_draws_only_positive_scores():
  scores = jnp.asarray([[0.1, 2.0, -1.0, 0.5], [-1.0, -2.0, -0.5, -3.0]])
  got = np.asarray(concepts.sample_clusters(jax.random.key(0), scores, 200))
  assert got.shape == (200, 2) and list(got[0]) == [1, 2]
  assert set(got[1:, 0]) == {0, 1, 3}  # never the negative-score cluster
  assert abs((got[1:, 0] == 1).mean() - 2.0 / 2.6) < 0.1
  assert set(got[1:, 1]) == {0, 1, 2, 3}  # nothing positive: uniform


def test_unit_iou_matches_loop_and_planted_unit_ranks_first():
  rng = np.random.default_rng(4)
  n, side, grid, units, k = 40, 8, 4, 6, 3
  seg = np.zeros((n, grid, grid, k), bool)  # cluster masks on the 4x4 image-feature grid
  for i in range(n):
    for c in range(k):
      y, x = rng.integers(0, grid - 1, size=2)
      seg[i, y:y + 2, x:x + 2, c] = rng.random() < 0.7
  acts = rng.random((n, side, side, units)).astype(np.float32)
  up = np.kron(seg[..., 1], np.ones((1, 2, 2))).astype(bool)  # cluster 1 at the unit grid
  acts[..., 4] = np.where(up, 2.0 + rng.random(up.shape), rng.random(up.shape))
  q = 0.9
  iou = concepts.unit_iou(acts, seg, quantile=q, chunk=16)  # 40 = 16 + 16 + 8 (padded)
  thr = np.quantile(acts.reshape(-1, units), q, axis=0)
  for c in range(k):
    for u in range(units):
      on = acts[..., u] > thr[u]
      cl = np.kron(seg[..., c], np.ones((1, 2, 2))).astype(bool)
      np.testing.assert_allclose(iou[c, u], (on & cl).sum() / (on | cl).sum(), rtol=1e-6)
  ranking = concepts.rank_units(acts, seg, quantile=q, chunk=16)
  assert ranking.shape == (k, units) and ranking[1, 0] == 4
  for c in range(k):
    assert sorted(ranking[c]) == list(range(units))
    assert (np.diff(iou[c][ranking[c]]) <= 0).all()
