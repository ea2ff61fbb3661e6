"""Concepts: planted co-firing groups are recovered; Jaccard, peak products, segmentation and unit
IoU against loops; run centres against scipy; the IQR of 2x2 tables by hand; a planted unit gets
its level and ranks first for its cluster."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from learning_words.learner import clustering, concepts, matchmap


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


def test_cluster_dimensions_cuts_live_dimensions_in_proportion():
  """32 dead dimensions (never above their percentile) beside the 32 planted ones: 32 clusters per
  64 dimensions cut the 32 live ones into the same 16 clusters, so the groups are kept."""
  points = planted_points()
  dead = np.zeros((points.shape[0], 32), np.float32)
  points = np.concatenate([dead[:, :16], points, dead[:, 16:]], axis=1)
  clusters = concepts.cluster_dimensions(points, n_clusters=32, percentile=99, min_size=4)
  assert sorted(map(list, clusters.members)) == [list(range(16 + g * 6, 16 + g * 6 + 6))
                                                 for g in range(3)]
  # Every dimension dead: no cluster (and no error).
  assert len(concepts.cluster_dimensions(np.zeros((10, 8)), 4).members) == 0


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
  product = lambda i, a, n: clustering.peak_product(i, a, matchmap.matchmap(i, a), n)
  got = np.asarray(jax.jit(product)(img, aud, n_frames))
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


def test_run_centres_match_scipy_labels():
  rng = np.random.default_rng(5)
  values = rng.random((30, 16)).astype(np.float32)
  values[0] = 0.0  # no run at all
  centres, ok = (np.asarray(v) for v in concepts.run_centres(jnp.asarray(values)))
  for b in range(30):
    on = values[b] > 0.5 * values[b].max()
    labels, n = ndimage.label(on, structure=np.ones(3))
    want = [np.array(np.where(labels == i + 1)).mean().round().astype(int) for i in range(n)]
    assert ok[b].sum() == n and centres[b][ok[b]].tolist() == want
  assert not ok[0].any()


def test_upsample_is_bilinear_on_pixel_centres_with_clamped_edges():
  rng = np.random.default_rng(6)
  maps = rng.normal(size=(2, 3, 5, 4)).astype(np.float32)
  got = np.asarray(concepts.upsample(jnp.asarray(maps), 8))

  def coord(i, n_in):
    src = min(max((i + 0.5) * n_in / 8 - 0.5, 0.0), n_in - 1.0)
    lo = int(np.floor(src))
    return lo, min(lo + 1, n_in - 1), src - lo

  for y in range(8):
    y0, y1, wy = coord(y, 3)
    for x in range(8):
      x0, x1, wx = coord(x, 5)
      want = ((1 - wy) * ((1 - wx) * maps[:, y0, x0] + wx * maps[:, y0, x1])
              + wy * ((1 - wx) * maps[:, y1, x0] + wx * maps[:, y1, x1]))
      np.testing.assert_allclose(got[:, y, x], want, rtol=1e-5, atol=1e-6)


def test_count_level_overlaps_matches_loop():
  rng = np.random.default_rng(7)
  units = rng.random((3, 4, 4, 2)).astype(np.float32)
  seg = rng.random((3, 4, 4, 3)) < 0.4
  levels = np.array([[0.2, 0.5, 0.9], [0.1, 0.6, 0.7]], np.float32)
  inter, above, present = (np.asarray(v) for v in concepts.count_level_overlaps(
      jnp.asarray(units), jnp.asarray(levels), jnp.asarray(seg)))
  for k in range(3):
    assert present[k] == seg[..., k].sum()
    for c in range(2):
      for l in range(3):
        on = units[..., c] > levels[c, l]
        assert above[c, l] == on.sum() and inter[k, c, l] == (on & seg[..., k]).sum()


def test_information_quality_ratio_by_hand():
  total = 100.0
  # cluster k vs unit c at one level: identical halves, independent halves, and a 2x2 table
  # [[0.3, 0.1], [0.2, 0.4]] (rows: cluster on / off; columns: unit on / off).
  inter = np.array([50.0, 25.0, 30.0])[:, None, None]
  above = np.array([[50.0]])
  present = np.array([50.0, 50.0, 40.0])
  iqr, agree = concepts.information_quality_ratio(inter, np.broadcast_to(above, (1, 1)),
                                                  present, total)
  assert iqr[0, 0, 0] == pytest.approx(1.0) and agree[0, 0, 0] == pytest.approx(1.0)
  assert iqr[1, 0, 0] == pytest.approx(0.0, abs=1e-12) and agree[1, 0, 0] == pytest.approx(0.5)
  cells = [[0.3, 0.1], [0.2, 0.4]]
  rows, cols = [0.4, 0.6], [0.5, 0.5]
  mi = sum(cells[j][i] * math.log(cells[j][i] / (rows[j] * cols[i]))
           for j in range(2) for i in range(2))
  je = -sum(cells[j][i] * math.log(cells[j][i]) for j in range(2) for i in range(2))
  assert iqr[2, 0, 0] == pytest.approx(mi / je) and agree[2, 0, 0] == pytest.approx(0.7)


def test_planted_unit_gets_its_level_and_ranks_first():
  """Unit 2 is above 1.5 exactly where cluster 1 is, with a lower plateau (1.0) elsewhere on a
  third of the pixels: its chosen level separates the two and it ranks first for cluster 1."""
  rng = np.random.default_rng(8)
  n, s, c, k = 20, 8, 4, 3
  seg = rng.random((n, s, s, k)) < 0.3
  units = rng.random((n, s, s, c)).astype(np.float32) * 0.5
  units[..., 2] = np.where(seg[..., 1], 1.5 + 0.1 * rng.random((n, s, s)),
                           np.where(rng.random((n, s, s)) < 0.33, 1.0, 0.2))
  levels = concepts.quantile_levels(units)
  assert levels.shape == (c, len(concepts.IQR_FRACS))
  np.testing.assert_allclose(levels[2], np.quantile(units[..., 2], 1 - concepts.IQR_FRACS),
                             rtol=1e-5)
  inter, above, present = (np.asarray(v, np.float64) for v in concepts.count_level_overlaps(
      jnp.asarray(units), jnp.asarray(levels), jnp.asarray(seg)))
  total = n * s * s
  iqr, agree = concepts.information_quality_ratio(inter, above, present, total)
  chosen = concepts.choose_unit_levels(iqr, agree, levels, present / total)
  assert 1.0 <= levels[2, chosen[2]] < 1.5  # between the plateau and the cluster's values
  iou = concepts.iou_at_levels(inter, above, present, chosen)
  assert iou[1, 2] == pytest.approx(1.0)
  ranking = concepts.rank_units(iou)
  assert ranking[1, 0] == 2 and sorted(ranking[0]) == list(range(c))
