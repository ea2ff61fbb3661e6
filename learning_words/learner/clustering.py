"""Cluster-guided negatives in training (`negatives.mode == 'cluster'`; REFERENCE.md "Drawing a
negative" step 4 and "Clusters and dissection").

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

  With dot-product matchmaps this is `concepts.peak_products`; taking mm lets the step use the
  matchmap (and so the peak) that the negative is drawn from, cosine or not.
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


@functools.partial(nnx.jit, static_argnames=("layer", "cosine"))
def pair_points(models, g, z, spec, n_frames, layer: str, cosine: bool):
  """(peak products [B, D], image features at the peaks [B, D]) of pairs (G(z), spec): the step's
  positives, embeddings and matchmap."""
  images = encoders.draw_positives(g, z, layer)[0]
  img, aud, frames = encoders.embed(models, images, spec, n_frames)
  mm = mm_lib.matchmap(img, aud, cosine=cosine)
  return peak_product(img, aud, mm, frames), peak_image_feature(img, mm, frames)


@functools.partial(nnx.jit, static_argnames=("layer", "threshold"))
def dissection_maps(models, g, z, centroids, mean, std, layer: str, threshold: float):
  """(unit activations [B,h_l,w_l,C] at `layer`, cluster segmentations bool [B,h,w,K]) of G(z)."""
  acts = g.features(z, [layer])[layer]
  img = models.image(g.render_from(layer, acts))
  return acts, concepts.segment_clusters(img, centroids, mean, std, threshold)


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
    points, feats = _batched(
        lambda *a: pair_points(models, g, *a, layer=layer, cosine=bool(config.model.cosine)),
        (z, data["spec"][:n], data["n_frames"][:n]), batch)
    if jax.process_count() > 1:
      points = np.asarray(multihost_utils.process_allgather(points, tiled=True))
      feats = np.asarray(multihost_utils.process_allgather(feats, tiled=True))
    if int(cc.n_clusters) >= d:
      logging.warning("concepts.n_clusters=%d >= embed_dim=%d: every dimension is its own cluster "
                      "and none has min_size=%d dimensions", cc.n_clusters, d, cc.min_size)
    clusters = concepts.cluster_dimensions(points, cc.n_clusters, cc.percentile, cc.min_size)
    kept = len(clusters.members)
    if kept > k:  # cannot happen: kept clusters have >= min_size of the d dimensions
      raise AssertionError(f"{kept} clusters kept > {k} padded")
    centroids = np.zeros((k, d), np.float32)
    centroids[:kept] = clusters.centroids
    mean, std = feats.mean(0).astype(np.float32), feats.std(0).astype(np.float32)
    z_d = gen_lib.standard_z(int(cc.dissect_images), g.sizes[0])
    acts, masks = _batched(
        lambda zz: dissection_maps(models, g, zz, jnp.asarray(centroids), jnp.asarray(mean),
                                   jnp.asarray(std), layer=layer,
                                   threshold=float(cc.segment_threshold)),
        (z_d,), batch)
    ranking = concepts.rank_units(acts, masks, cc.quantile, cc.chunk)
    # Padding rows (every row when no cluster is kept): the most active units first.
    ranking[kept:] = np.argsort(-acts.mean(axis=(0, 1, 2)), kind="stable").astype(np.int32)
  finally:
    models.train()
  logging.info("concepts: %d clusters kept of %d points, %d units ranked on %d images (%.1f s)",
               kept, len(points), ranking.shape[1], len(z_d), time.time() - t0)
  return ConceptArrays(centroids, mean, std, ranking)


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
