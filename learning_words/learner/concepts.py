"""Concept clusters of embedding dimensions and the generator dissection that ranks units for them.

Cluster-guided negatives (docs/differences.md), re-run every few epochs:
  1. data points: at each training pair's matchmap peak (t, y, x), img[y, x] * aud[t]  [N, D];
  2. clusters: groups of embedding dimensions that fire together -- each dimension binarised at
     its 99th percentile, 1 - Jaccard overlap between dimensions, average-linkage agglomerative
     clustering (scipy) of the dimensions that fire at all, cut in proportion to them, clusters
     of fewer than `min_size` dimensions dropped; a centroid is the
     cluster's indicator vector / its size (the reference's), projected on standardised features;
  3. dissection: per generator unit at the intervention layer, the IoU between its thresholded
     activation map and each cluster's segmentation of generated images, both upsampled
     bilinearly, each unit thresholded at its IQR-maximising level; units ranked per cluster.
Feature extraction and IoU accumulation are batched jnp (jittable); the clustering runs on the host.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from etils import epy
with epy.lazy_imports():  # imported at first use: start-up time
  from scipy.cluster import hierarchy
  from scipy.spatial import distance



class Clusters(NamedTuple):
  """Concept clusters: centroids [K,D], members (K index arrays), the points' mean/std [D]."""
  centroids: np.ndarray
  members: list
  mean: np.ndarray
  std: np.ndarray


def binarise(points, percentile: float = 99.0) -> np.ndarray:
  """Each dimension of points [N,D] above its own percentile -> bool [N,D]."""
  points = np.asarray(points)
  return points > np.percentile(points, percentile, axis=0)


def jaccard(active) -> np.ndarray:
  """Dimension-dimension Jaccard overlap |i & j| / |i | j| of active bool [N,D] -> [D,D].

  Dimensions never active overlap nothing (0), themselves included.
  """
  a = np.asarray(active, np.float64)
  inter = a.T @ a
  count = np.diag(inter)
  union = count[:, None] + count[None, :] - inter
  return np.where(union > 0, inter / np.maximum(union, 1.0), 0.0)


def cluster_dimensions(points, n_clusters: int = 250, percentile: float = 99.0,
                       min_size: int = 4) -> Clusters:
  """Groups of co-firing dimensions of points [N,D] (see the module docstring).

  n_clusters is per D dimensions: the dimensions that never fire (never above their percentile,
  as ReLU leaves many of a young model's) are singletons at distance 1 that average linkage would
  cut off first, so the live ones are cut into n_clusters * live / D clusters (the reference's
  clusters-to-dimensions ratio on the dimensions that can form clusters).
  """
  points = np.asarray(points, np.float64)
  d = points.shape[1]
  active = binarise(points, percentile)
  live = np.flatnonzero(active.any(0))
  groups = []
  if len(live) >= 2:
    dist = 1.0 - jaccard(active[:, live])
    np.fill_diagonal(dist, 0.0)
    tree = hierarchy.linkage(distance.squareform(dist, checks=False), method="average")
    n_cut = min(len(live), max(1, round(min(int(n_clusters), d) * len(live) / d)))
    labels = hierarchy.cut_tree(tree, n_clusters=n_cut).ravel()
    groups = [live[labels == label] for label in np.unique(labels)]
  members = sorted((m for m in groups if len(m) >= min_size), key=lambda m: (-len(m), m[0]))
  centroids = np.zeros((len(members), d), np.float32)
  for i, m in enumerate(members):
    centroids[i, m] = 1.0 / len(m)  # indicator / n: the mean of the cluster's dimensions
  return Clusters(centroids, members, points.mean(0).astype(np.float32),
                  points.std(0).astype(np.float32))


def project_clusters(feats, centroids, mean, std):
  """Standardised features [..., D] projected on each centroid -> scores [..., K]."""
  std = jnp.asarray(std)
  z = (feats - mean) / jnp.where(std > 0, std, 1.0)
  return z @ jnp.asarray(centroids).T


SCORE_MAX = 4.0  # the reference clips a sample's cluster scores to [0, 4]


def cluster_scores(feats, centroids, mean, std):
  """A sample's score per cluster: project_clusters clipped to [0, SCORE_MAX] -> [..., K]."""
  return jnp.clip(project_clusters(feats, centroids, mean, std), 0.0, SCORE_MAX)


def segment_clusters(img_feats, centroids, mean, std, threshold: float = 0.5):
  """Where each cluster is present in image features [B,h,w,D] -> bool [B,h,w,K]."""
  return project_clusters(img_feats, centroids, mean, std) > threshold


def sample_clusters(key, scores, candidates: int):
  """Cluster per (candidate, sample) -> int [K,B]: candidate 0 takes the best-scoring cluster of
  the peak product (scores [B, n_clusters]); later ones are sampled in proportion to the score
  clipped at 0 (uniformly where no score is positive), as the reference's retries do."""
  best = jnp.argmax(scores, axis=-1)
  weights = jnp.maximum(scores, 0.0)
  weights = jnp.where(jnp.sum(weights, -1, keepdims=True) > 0, weights, 1.0)
  drawn = jax.random.categorical(key, jnp.log(weights), axis=-1,
                                 shape=(candidates - 1,) + best.shape)
  return jnp.concatenate([best[None], drawn], axis=0)


def run_centres(values, threshold: float = 0.5):
  """Runs of values [B,N] above threshold * the row's max, along the (flattened) axis, as the
  reference labels its time-averaged matchmaps; each run's centre index (the mean index, rounded
  half to even) -> (centres int [B,M], valid bool [B,M]), M = ceil(N / 2), runs in order."""
  b, n = values.shape
  m = (n + 1) // 2
  on = values > threshold * jnp.max(values, axis=1, keepdims=True)
  start = on & ~jnp.pad(on, ((0, 0), (1, 0)))[:, :-1]
  run = jnp.where(on, jnp.cumsum(start, axis=1), 0)  # 1.. for each run, 0 outside
  member = (run[..., None] == jnp.arange(1, m + 1)).astype(jnp.float32)  # [B,N,M]
  count = jnp.sum(member, axis=1)
  total = jnp.einsum("bnm,n->bm", member, jnp.arange(n, dtype=jnp.float32))
  return jnp.round(total / jnp.maximum(count, 1.0)).astype(jnp.int32), count > 0


# Dissection (gandissect as the reference runs it): unit maps and cluster scores upsampled
# bilinearly to a common grid; per unit, the activation level among the quantiles 1 - IQR_FRACS
# that maximises the information quality ratio (mutual information / joint entropy) with its
# best-matching cluster; units ranked per cluster by IoU at that level.
IQR_FRACS = np.logspace(-3, 0, 100)


def upsample(maps, size: int):
  """Bilinear [B,h,w,C] -> [B,size,size,C] on pixel centres, edges clamped (the reference's
  grid_sample with border padding)."""
  return jax.image.resize(maps, (maps.shape[0], size, size, maps.shape[3]), "bilinear")


def quantile_levels(unit_maps, fracs=IQR_FRACS) -> np.ndarray:
  """Per unit, its activations' quantiles at 1 - fracs -> [C, L]. unit_maps [..., C]."""
  flat = np.asarray(unit_maps, np.float64).reshape(-1, np.shape(unit_maps)[-1])
  return np.quantile(flat, 1.0 - np.asarray(fracs), axis=0).T.astype(np.float32)


@jax.jit
def count_level_overlaps(unit_maps, levels, seg):
  """Pixel counts over a chunk of images: (inter [K,C,L]: unit above level l and cluster k,
  above [C,L]: unit above level l, present [K]: cluster k). unit_maps [n,S,S,C], levels [C,L],
  seg bool [n,S,S,K]; one image at a time (its [S*S, C*L] indicator fits in memory)."""
  c, l = levels.shape
  k = seg.shape[-1]

  def add(totals, image):
    units, clusters = image
    above = (units.reshape(-1, c)[:, :, None] > levels).astype(jnp.float32).reshape(-1, c * l)
    clusters = clusters.reshape(-1, k).astype(jnp.float32)
    inter = jnp.dot(clusters.T, above, precision=jax.lax.Precision.HIGHEST)
    return (totals[0] + inter, totals[1] + above.sum(0), totals[2] + clusters.sum(0)), None

  zeros = (jnp.zeros((k, c * l)), jnp.zeros(c * l), jnp.zeros(k))
  (inter, above, present), _ = jax.lax.scan(add, zeros, (unit_maps, seg))
  return inter.reshape(k, c, l), above.reshape(c, l), present


def information_quality_ratio(inter, above, present, total):
  """(IQR, agreement) [K,C,L] of the 2x2 tables (cluster present?, unit above level?) over
  `total` pixels: mutual information / joint entropy (0 where undefined), and the fraction of
  pixels on which unit and cluster agree."""
  inter = np.asarray(inter, np.float64) / total
  pred = np.asarray(above, np.float64)[None] / total  # [1,C,L]
  truth = np.asarray(present, np.float64)[:, None, None] / total  # [K,1,1]
  cells = [[inter, truth - inter], [pred - inter, 1.0 - truth - pred + inter]]
  cells = [[np.clip(v, 0.0, 1.0) for v in row] for row in cells]
  rows = [cells[0][0] + cells[0][1], cells[1][0] + cells[1][1]]
  cols = [cells[0][0] + cells[1][0], cells[0][1] + cells[1][1]]
  mi = je = 0.0
  with np.errstate(divide="ignore", invalid="ignore"):
    for j in range(2):
      for i in range(2):
        p = cells[j][i]
        mi = mi + np.nan_to_num(p * np.log(p / (rows[j] * cols[i])))
        je = je - np.nan_to_num(p * np.log(p))
    iqr = np.nan_to_num(np.maximum(mi, 0.0) / np.maximum(je, 0.0))
  return iqr, cells[0][0] + cells[1][1]


def choose_unit_levels(iqr, agreement, levels, present_frac) -> np.ndarray:
  """Per unit, the index [C] of its level: over the levels where the unit agrees with a cluster
  on more than 80% of pixels and the level is positive (and never the last, the 1.0 quantile;
  clusters on under 0.1% of pixels left out), the level of the cluster with the highest IQR."""
  q = np.array(iqr, np.float64)
  q[..., -1] = 0.0
  q[np.asarray(present_frac) < 1e-3] = 0.0
  q[np.asarray(agreement) <= 0.8] = 0.0
  q[:, np.asarray(levels) <= 0.0] = 0.0
  best_level = q.argmax(axis=2)  # [K, C]
  best_cluster = q.max(axis=2).argmax(axis=0)  # [C]
  return best_level[best_cluster, np.arange(q.shape[1])]


def iou_at_levels(inter, above, present, level_index) -> np.ndarray:
  """IoU [K,C] of each unit above its chosen level with each cluster (0 where the union is)."""
  c = np.arange(np.shape(above)[0])
  i = np.asarray(inter, np.float64)[:, c, level_index]
  union = (np.asarray(present, np.float64)[:, None]
           + np.asarray(above, np.float64)[c, level_index] - i)
  return np.where(union > 0, i / np.maximum(union, 1e-12), 0.0)


def rank_units(iou) -> np.ndarray:
  """Units per cluster by IoU, best first -> int32 [K,C] (the `ranking` of draw_negatives)."""
  return np.argsort(-np.asarray(iou), axis=1, kind="stable").astype(np.int32)
