"""Cluster-guided negatives in training (`negatives.mode == 'cluster'`; docs/differences.md, the
drawing of a negative and its concept clusters).

`compute_concepts` runs between steps (before the first one, then every `concepts.every_epochs`):
  1. the peak products of up to `concepts.max_points` training pairs (jitted, fixed-size batches),
     and the image features at the same peaks, whose mean / std standardise features (the
     reference takes image-feature points, at the centres of its matched runs);
  2. clusters of embedding dimensions (`concepts.cluster_dimensions`, scipy on the host);
  3. a dissection of the generator's units at `negatives.layer` on `concepts.dissect_images`
     generated images G(z_i), ids 0..n-1 of the fixed z table, against each cluster's
     segmentation of the image features -> units ranked per cluster (`concepts.rank_units`).
Its result is padded to `padded_clusters(config)` clusters (padded centroids are zero rows, hence
invalid), so the jitted step sees the same shapes after every recomputation and compiles once.
In the step, `choose_clusters` picks each sample's cluster per candidate from the projection of the
sample's standardised image feature at the peak on the (valid) centroids, clipped to [0, 4], as
the reference scores it. Everything is deterministic given the encoders,
the generator and the data, so a recomputation from the same model gives identical arrays.
"""
import functools
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx
from jax.experimental import multihost_utils

from learning_words.common import batching, checkpoints
from learning_words.learner import concepts, matchmap as mm_lib, negatives
from learning_words.models import encoders
from learning_words.models import generator as gen_lib


class ConceptArrays(NamedTuple):
  """What the step needs, with a fixed number K of (padded) clusters."""
  centroids: Any  # [K, D] float32; zero rows are padding, not clusters (see valid_clusters)
  mean: Any  # [D] float32: the image features' mean at the data points' peaks (features are
  std: Any  # [D] float32   standardised with these before projecting)
  ranking: Any  # [K, C] int32: units of the intervention layer per cluster, best first


def padded_clusters(config) -> int:
  """K: the most clusters the data supports -- `concepts.n_clusters`, but no more than
  embed_dim // min_size (kept clusters have at least min_size of the embed_dim dimensions)."""
  cc = config.concepts
  return max(1, min(int(cc.n_clusters), int(config.model.embed_dim) // max(1, int(cc.min_size))))


def valid_clusters(centroids):
  """bool [K]: the rows of centroids [K, D] that are clusters (padding rows are zero)."""
  return jnp.any(jnp.asarray(centroids) != 0, axis=-1)


def peak_product(img, aud, mm, n_frames):
  """img[b, y, x] * aud[b, t] at the peak (t, y, x) of the given matchmaps mm [B,h,w,T] -> [B, D].

  Taking mm lets the step use the matchmap (and so the peak) that the negative is drawn from,
  cosine or not.
  """
  t, y, x = negatives.peak(mm, n_frames)
  b = jnp.arange(img.shape[0])
  return img[b, y, x] * aud[b, t]


def peak_image_feature(img, mm, n_frames):
  """img[b, y, x] at the peak (t, y, x) of the matchmaps mm [B,h,w,T] -> [B, D]."""
  _, y, x = negatives.peak(mm, n_frames)
  return img[jnp.arange(img.shape[0]), y, x]


def choose_clusters(key, feature, arrays: ConceptArrays, candidates: int):
  """Each sample's cluster per candidate -> int [candidates, B] (the `cluster` of draw_negatives).

  feature [B, D]: the sample's image feature at the peak. Scores are concepts.cluster_scores
  (standardised, projected on the centroids, clipped to [0, 4]; padded clusters -inf);
  `concepts.sample_clusters` takes the best for candidate 0 and samples the rest in
  proportion to the scores. Where no valid score is positive, sample_clusters falls back to
  a uniform draw over all K rows: such draws of padded rows are redrawn uniformly over the valid
  clusters. With no valid cluster at all, every row of the ranking is the fallback ranking.
  """
  centroids = jnp.asarray(arrays.centroids)
  valid = valid_clusters(centroids)
  scores = concepts.cluster_scores(feature, centroids, arrays.mean, arrays.std)
  scores = jnp.where(valid, scores, -jnp.inf)
  k_sample, k_fill = jax.random.split(key)
  chosen = concepts.sample_clusters(k_sample, scores, candidates)
  logits = jnp.where(valid | ~jnp.any(valid), 0.0, -jnp.inf)
  fill = jax.random.categorical(k_fill, logits, shape=chosen.shape)
  return jnp.where(valid[chosen], chosen, fill)


def image_points(img, mm, n_frames):
  """The reference's image-feature data points of pairs: image features [B,M,D] at the centres of
  the runs of the time-averaged matchmap (mean over valid frames, flattened over h*w) above half its
  max, and which are runs, bool [B,M] (concepts.run_centres)."""
  b, h, w, t = mm.shape
  valid = (jnp.arange(t)[None, :] < jnp.clip(n_frames, 1, t)[:, None]).astype(mm.dtype)
  mean = jnp.sum(mm * valid[:, None, None, :], -1) / jnp.sum(valid, -1)[:, None, None]
  centre, ok = concepts.run_centres(mean.reshape(b, h * w))
  feats = img.reshape(b, h * w, -1)[jnp.arange(b)[:, None], centre]
  return feats, ok


@functools.partial(nnx.jit, static_argnames=("layer", "cosine"))
def pair_points(models, g, z, spec, n_frames, layer: str, cosine: bool):
  """(peak products [B,D], image points [B,M,D] and their validity [B,M]) of pairs (G(z), spec):
  the step's positives, embeddings and matchmap."""
  images = encoders.draw_positives(g, z, layer)[0]
  img, aud, frames = encoders.embed(models, images, spec, n_frames)
  mm = mm_lib.matchmap(img, aud, cosine=cosine)
  return (peak_product(img, aud, mm, frames), *image_points(img, mm, frames))


@functools.partial(nnx.jit, static_argnames=("layer", "size"))
def dissection_maps(models, g, z, centroids, mean, std, layer: str, size: int):
  """(unit activations at `layer`, cluster scores of the image features) of G(z), both upsampled
  bilinearly to [B,size,size,...]. As in the reference, the generator's [-1, 1] output enters the
  image encoder without ImageNet normalisation."""
  acts = g.features(z, [layer])[layer]
  img = models.image(g.render_from(layer, acts), normalize=False)
  scores = concepts.project_clusters(img, centroids, mean, std)
  return concepts.upsample(acts, size), concepts.upsample(scores, size)


def _batched(fn, arrays, batch: int):
  """batching.map_batches, its outputs (a tuple) as numpy."""
  out = batching.map_batches(fn, arrays, batch)
  return tuple(np.asarray(o) for o in (out if isinstance(out, tuple) else (out,)))


def _host(x) -> np.ndarray:
  """A replicated array on the host (this host's copy where it spans several hosts)."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    x = x.addressable_data(0)
  return np.asarray(x)


def compute_concepts(models, g, z_table, data: dict, config) -> ConceptArrays:
  """Clusters and unit rankings from the current encoders (see the module docstring).

  models: encoders.Encoders (evaluated in eval mode, so batch statistics are neither used nor
  updated; left in train mode after); g: the frozen generator; z_table [N_z, Z]; data: host arrays
  z_index, spec, n_frames of training pairs (this host's; all hosts' points are gathered).
  """
  cc, layer = config.concepts, config.negatives.layer
  batch = int(config.data.batch_size)
  k, d = padded_clusters(config), int(config.model.embed_dim)
  n = min(len(data["z_index"]), int(cc.max_points))
  if n == 0:
    raise ValueError("compute_concepts: no training pairs")
  t0 = time.time()
  models.eval()
  try:
    z = _host(z_table)[np.asarray(data["z_index"][:n])]
    points, feats, ok = _batched(
        lambda *a: pair_points(models, g, *a, layer=layer,
                                cosine=negatives.heat_cosine(config)),
        (z, data["spec"][:n], data["n_frames"][:n]), batch)
    feats = feats[ok][:int(cc.max_points)]  # in pair order, as the reference collects them
    if jax.process_count() > 1:
      points = np.asarray(multihost_utils.process_allgather(points, tiled=True))
    if int(cc.n_clusters) >= d:
      logging.warning("concepts.n_clusters=%d >= embed_dim=%d: every dimension is its own cluster "
                      "and none has min_size=%d dimensions", cc.n_clusters, d, cc.min_size)
    clusters = concepts.cluster_dimensions(points, cc.n_clusters, cc.percentile, cc.min_size)
    kept = len(clusters.members)
    if kept > k:  # cannot happen: kept clusters have >= min_size of the d dimensions
      raise AssertionError(f"{kept} clusters kept > {k} padded")
    centroids = np.zeros((k, d), np.float32)
    centroids[:kept] = clusters.centroids
    mean, std = _gathered_moments(feats, d)
    ranking = dissect(models, g, centroids, mean, std, config)
  finally:
    models.train()
  logging.info("concepts: %d clusters kept of %d points, %d units ranked on %d images (%.1f s)",
               kept, len(points), ranking.shape[1], int(cc.dissect_images), time.time() - t0)
  return ConceptArrays(centroids, mean, std, ranking)


def _gathered_moments(feats, d: int):
  """Mean and std [D] of this host's image points, over every host's (float32)."""
  stats = np.array([len(feats), *np.sum(feats, 0, dtype=np.float64),
                    *np.sum(np.square(feats, dtype=np.float64), 0)]) if len(feats) else np.zeros(
                        1 + 2 * d)
  if jax.process_count() > 1:
    stats = np.asarray(multihost_utils.process_allgather(stats)).sum(0)
  n = max(stats[0], 1.0)
  mean = stats[1:1 + d] / n
  var = np.maximum(stats[1 + d:] / n - mean ** 2, 0.0)
  return mean.astype(np.float32), np.sqrt(var).astype(np.float32)


def dissect(models, g, centroids, mean, std, config) -> np.ndarray:
  """The unit ranking [K,C] of each cluster (concepts' dissection) on `concepts.dissect_images`
  generated images G(z_i), ids 0..n-1 of the fixed z table, counted in chunks of
  `concepts.chunk` images; the units' candidate levels come from the first chunk. Padding rows
  of centroids (no cluster) rank the most active units first."""
  cc, layer = config.concepts, config.negatives.layer
  size = int(cc.dissect_size)
  chunk = max(1, min(int(cc.chunk), int(cc.dissect_images)))
  z_d = gen_lib.standard_z(int(cc.dissect_images), g.sizes[0])
  maps = lambda zz: dissection_maps(models, g, zz, jnp.asarray(centroids), jnp.asarray(mean),
                                    jnp.asarray(std), layer=layer, size=size)
  levels = inter = above = present = None
  activity = 0.0
  for start in range(0, len(z_d), chunk):
    acts, scores = _batched(maps, (z_d[start:start + chunk],), int(config.data.batch_size))
    seg = scores > float(cc.segment_threshold)
    if levels is None:
      levels = concepts.quantile_levels(acts)
    activity = activity + acts.sum(axis=(0, 1, 2))
    pad = chunk - len(acts)  # padded images: no unit above any level, no cluster (one trace)
    if pad:
      acts = np.concatenate([acts, np.full((pad,) + acts.shape[1:], -np.inf, acts.dtype)])
      seg = np.concatenate([seg, np.zeros((pad,) + seg.shape[1:], bool)])
    i, a, p = (np.asarray(v, np.float64) for v in concepts.count_level_overlaps(
        jnp.asarray(acts), jnp.asarray(levels), jnp.asarray(seg)))
    inter, above, present = ((i, a, p) if inter is None else
                             (inter + i, above + a, present + p))
  total = len(z_d) * size * size
  iqr, agreement = concepts.information_quality_ratio(inter, above, present, total)
  chosen = concepts.choose_unit_levels(iqr, agreement, levels, present / total)
  ranking = concepts.rank_units(concepts.iou_at_levels(inter, above, present, chosen))
  padding = ~np.any(centroids != 0, axis=-1)
  ranking[padding] = np.argsort(-activity, kind="stable").astype(np.int32)
  return ranking


def replicate(host: ConceptArrays, mesh) -> ConceptArrays:
  """Host concept arrays -> jax.Arrays replicated over the mesh (the step's input)."""
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  return ConceptArrays(*(jax.device_put(np.asarray(a), sharding) for a in host))


def n_kept(host: ConceptArrays) -> int:
  """How many of the padded clusters are clusters."""
  return int(np.sum(np.any(np.asarray(host.centroids) != 0, axis=-1)))


def restore_saved(manager, step: int):
  """The concept arrays saved with checkpoint `step` (item 'concepts', saved as
  host._asdict()), or None where it holds none."""
  saved = checkpoints.restore_arrays(manager, step, "concepts")
  return None if saved is None else ConceptArrays(**saved)
