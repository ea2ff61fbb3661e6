"""Drawn negatives in the configured mode, and the example rows that figures show.

Random mode is negatives.draw_negatives as is; cluster mode first picks each sample's clusters
per candidate from its image feature at the peak (clustering.choose_clusters) and draws with the
concept arrays' unit ranking. The train step, its TensorBoard images and the report all draw through here.
"""
import jax

from learning_words.learner import clustering, matchmap, negatives
from learning_words.models import encoders


def heat_matchmap(img, aud, config):
  """The matchmap [B,h,w,T] the negatives' masks are placed by (heat_cosine), no gradient."""
  mm = matchmap.matchmap(img, aud, cosine=negatives.heat_cosine(config))
  return jax.lax.stop_gradient(mm)


def draw(g, z, x_layer, positives, img, aud, mm, frames, key, config, concept_arrays=None,
         groups: int = 1, objects=None):
  """(negatives [B,R,R,3], masks [B,R,R], accepted [B], statistics) of the positives G(z) (see
  the module docstring and negatives.draw_negatives); concept_arrays: clustering.ConceptArrays,
  needed in cluster mode only; groups: negatives.first_acceptable's work queues (one per device);
  objects: the positives' object components [B,h,w] (negatives.location='object' only)."""
  if config.negatives.mode != "cluster":
    return negatives.draw_negatives(g, z, x_layer, positives, mm, frames, key, config.negatives,
                                    groups=groups, objects=objects)
  if concept_arrays is None:
    raise ValueError("negatives.mode='cluster' needs the concept arrays "
                     "(clustering.compute_concepts)")
  k_units, k_clusters = jax.random.split(key)
  feature = clustering.peak_image_feature(img, mm, frames)
  cluster = clustering.choose_clusters(k_clusters, feature, concept_arrays,
                                       int(config.negatives.candidates))
  return negatives.draw_negatives(g, z, x_layer, positives, mm, frames, k_units, config.negatives,
                                  ranking=concept_arrays.ranking, cluster=cluster, groups=groups,
                                  objects=objects)


def draw_examples(models, g, z, spec, n_frames, key, config, concept_arrays=None, objects=None):
  """(positives, drawn negatives [B,R,R,3] in [-1,1], masks [B,R,R]) for figures."""
  positives, x_layer = encoders.draw_positives(g, z, config.negatives.layer)
  img, aud, frames = encoders.embed(models, positives, spec, n_frames)
  mm = heat_matchmap(img, aud, config)
  neg, masks, _, _ = draw(g, z, x_layer, positives, img, aud, mm, frames, key, config,
                          concept_arrays, objects=objects)
  return positives, neg, masks
