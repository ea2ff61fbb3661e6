"""Concept clusters of embedding dimensions and the generator dissection that ranks units for them.

Cluster-guided negatives (REFERENCE.md "Clusters and dissection"), re-run every few epochs:
  1. data points: at each training pair's matchmap peak (t, y, x), img[y, x] * aud[t]  [N, D];
  2. clusters: groups of embedding dimensions that fire together -- each dimension binarised at
     its 99th percentile, 1 - Jaccard overlap between dimensions, average-linkage agglomerative
     clustering (scipy), clusters of fewer than `min_size` dimensions dropped; a centroid is the
     cluster's indicator vector / its size (the reference's), projected on standardised features;
  3. dissection: per generator unit at the intervention layer, the IoU between its thresholded
     activation map and each cluster's segmentation of generated images; units ranked per cluster.
Feature extraction and IoU accumulation are batched jnp (jittable); the clustering runs on the host.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.cluster import hierarchy
from scipy.spatial import distance

from learning_words.learner import matchmap as mm_lib, negatives


class Clusters(NamedTuple):
  """Concept clusters: centroids [K,D], members (K index arrays), the points' mean/std [D]."""
  centroids: np.ndarray
  members: list
  mean: np.ndarray
  std: np.ndarray


def peak_products(img_feats, aud_feats, n_frames):
  """img[b, y, x] * aud[b, t] at each pair's matchmap peak -> [B, D].

  img_feats [B,h,w,D], aud_feats [B,T,D], n_frames [B] valid encoder frames.
  """
  t, y, x = negatives.peak(mm_lib.matchmap(img_feats, aud_feats), n_frames)
  b = jnp.arange(img_feats.shape[0])
  return img_feats[b, y, x] * aud_feats[b, t]


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
  """Groups of co-firing dimensions of points [N,D] (see the module docstring)."""
  points = np.asarray(points, np.float64)
  d = points.shape[1]
  dist = 1.0 - jaccard(binarise(points, percentile))
  np.fill_diagonal(dist, 0.0)
  tree = hierarchy.linkage(distance.squareform(dist, checks=False), method="average")
  labels = hierarchy.cut_tree(tree, n_clusters=min(int(n_clusters), d)).ravel()
  groups = [np.flatnonzero(labels == label) for label in np.unique(labels)]
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


def unit_thresholds(unit_acts, quantile: float = 0.99) -> np.ndarray:
  """Per unit, the `quantile` of its activations over all images and positions -> [C]."""
  acts = np.asarray(unit_acts)
  return np.quantile(acts.reshape(-1, acts.shape[-1]), quantile, axis=0).astype(np.float32)


@jax.jit
def count_overlaps(unit_acts, thresholds, cluster_masks):
  """(intersection, union) pixel counts [K,C] of thresholded units vs cluster segmentations.

  unit_acts [B,h_l,w_l,C], cluster_masks [B,h,w,K]: both made binary at the finer of the two grids
  (nearest neighbour), so neither side is inflated by an any-overlap downsampling.
  """
  side = max(unit_acts.shape[1], cluster_masks.shape[1])
  units = negatives.resize_mask(unit_acts > thresholds, side)  # [B, side, side, C]
  seg = negatives.resize_mask(cluster_masks, side)  # [B, side, side, K]
  inter = jnp.einsum("byxc,byxk->kc", units, seg, precision=jax.lax.Precision.HIGHEST)
  union = jnp.sum(seg, axis=(0, 1, 2))[:, None] + jnp.sum(units, axis=(0, 1, 2))[None, :] - inter
  return inter, union


def unit_iou(unit_acts, cluster_masks, quantile: float = 0.99, chunk: int = 128) -> np.ndarray:
  """IoU [K,C] of each unit's top-quantile map with each cluster's segmentation, over all images.

  unit_acts [N,h_l,w_l,C] and cluster_masks [N,h,w,K] (host arrays, e.g. N ~ 1,000 generated
  images) are counted in jitted chunks of `chunk` images (the last one padded, so one trace).
  """
  unit_acts, cluster_masks = np.asarray(unit_acts), np.asarray(cluster_masks)
  thresholds = unit_thresholds(unit_acts, quantile)
  n = unit_acts.shape[0]
  chunk = max(1, min(int(chunk), n))
  inter = union = 0.0
  for start in range(0, n, chunk):
    acts, masks = unit_acts[start:start + chunk], cluster_masks[start:start + chunk]
    pad = chunk - acts.shape[0]
    if pad:  # padded images: no unit active (-inf), no cluster present
      acts = np.concatenate([acts, np.full((pad,) + acts.shape[1:], -np.inf, acts.dtype)])
      masks = np.concatenate([masks, np.zeros((pad,) + masks.shape[1:], masks.dtype)])
    i, u = count_overlaps(acts, thresholds, masks)
    inter, union = inter + np.asarray(i, np.float64), union + np.asarray(u, np.float64)
  return np.where(union > 0, inter / np.maximum(union, 1.0), 0.0)


def rank_units(unit_acts, cluster_masks, quantile: float = 0.99, chunk: int = 128) -> np.ndarray:
  """Units per cluster by IoU, best first -> int32 [K,C] (the `ranking` of draw_negatives)."""
  iou = unit_iou(unit_acts, cluster_masks, quantile, chunk)
  return np.argsort(-iou, axis=1, kind="stable").astype(np.int32)
