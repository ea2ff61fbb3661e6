"""`edit_effect`: what the drawn negatives change, where they land, and what the model learned
from them.

On the first `captions` held-out pairs, negatives are drawn as in training (config.negatives;
cluster mode's concept arrays belong to training, so units are drawn at random here) at the
caption's peak (`peak`) and, with the same unit draws, at a random place (`random`) and on
another object than the peak's (`object`): the negatives.location controls. For each placement,
over the samples:

  accepted          share with an acceptable try (training gives the others no edited term)
  mask_on_object    share of the mask's grid cells that are object cells (segmenter.to_cells)
  accepted_object_masks / accepted_background_masks
                    acceptance of the samples whose mask is mostly (>= half its cells) on objects,
                    and of the others: an acceptance rule that favours background shows here
  changes           what the segmenter reads as changed between positive and accepted negative
                    (parse, then semantic.attribute_changes): nothing, one attribute of one
                    object, an object gone or added, several attributes, or objects moved
  specificity       does the model score the edit against its own caption more than against
                    others? own = s(I, A_i) - s(I_neg, A_i); other = the mean over j != i of
                    s(I, A_j) - s(I_neg, A_j) (accepted samples); own ~ other means the model
                    learned to spot edits, not words
"""
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from learning_words.common import batching, figures
from learning_words.evaluation import context, localisation, semantic
from learning_words.learner import drawing, negatives, recall
from learning_words.models import encoders
from learning_words.models import segmenter as seg_lib
from learning_words.world import parse

PLACEMENTS = negatives.PLACEMENTS
CHANGES = ("nothing", "one_attribute", "object_gone_or_added", "several", "moved")


def placement_config(config, location: str) -> ml_collections.FrozenConfigDict:
  """config with random-unit negatives at `location` (hashable: a static argument)."""
  c = config.copy_and_resolve_references()
  c.negatives.mode = "random"
  c.negatives.location = location
  return ml_collections.FrozenConfigDict(c)


@functools.partial(nnx.jit, static_argnames=("config",))
def draw_batch(models, g, z, spec, n_frames, objects, key, placement, config):
  """(negatives [B,R,R,3], masks [B,R,R], accepted [B], image features of the positives and the
  negatives [B,h,w,D], caption features [B,T',D], frames [B]) of one batch of held-out pairs;
  objects [B,h,w]: their object components (negatives.object_components); placement: an index
  into PLACEMENTS, an argument so that one compilation serves all three."""
  positives, x_layer = encoders.draw_positives(g, z, config.negatives.layer)
  img, aud, frames = encoders.embed(models, positives, spec, n_frames)
  mm = drawing.heat_matchmap(img, aud, config)
  neg, masks, accepted, _ = negatives.draw_negatives(g, z, x_layer, positives, mm, frames, key,
                                                     config.negatives, objects=objects,
                                                     placement=placement)
  return neg, masks, accepted, img, models.image(neg), aud, frames


def classify_change(before: dict, after: dict, max_shift: float) -> str:
  """One of CHANGES for two scene descriptions (positive, negative)."""
  if len(before["objects"]) != len(after["objects"]):
    return "object_gone_or_added"
  changes = semantic.attribute_changes(before, after, max_shift)
  if changes is None:
    return "moved"
  return {0: "nothing", 1: "one_attribute"}.get(len(changes), "several")


def specificity(sim_pos, sim_neg) -> tuple[np.ndarray, np.ndarray]:
  """(own [N], other [N]) from S_pos [N,N] = s(I_i, A_j) and S_neg [N,N] = s(I_neg_i, A_j): own =
  the diagonal of S_pos - S_neg, other = the mean of its row off the diagonal."""
  d = np.asarray(sim_pos, np.float64) - np.asarray(sim_neg, np.float64)
  n = d.shape[0]
  own = np.diag(d).copy()
  other = (d.sum(axis=1) - own) / max(n - 1, 1)
  return own, other


def share(mask) -> float:
  mask = np.asarray(mask)
  return float(mask.mean()) if mask.size else float("nan")


def summarise(ctx, maps, neg, masks, accepted, sim_pos, sim_neg, objects) -> dict:
  """One placement's numbers (the module docstring) from host arrays; maps: the segmenter's
  labels of the positives."""
  grid = objects.shape[1]
  mask_cells = seg_lib.to_cells(np.asarray(masks) > 0.5, grid)
  on_object = (mask_cells & objects).sum(axis=(1, 2)) / np.maximum(mask_cells.sum(axis=(1, 2)), 1)
  accepted = np.asarray(accepted, bool)
  ok = np.nonzero(accepted)[0]
  maps_pos = {a: v[ok] for a, v in maps.items()}
  maps_neg = seg_lib.predict(ctx.seg, figures.to_uint8(neg[ok]))
  min_pixels = ctx.config.world.parse_min_pixels
  before, after = parse.parse(maps_pos, min_pixels), parse.parse(maps_neg, min_pixels)
  max_shift = float(ctx.cfg.semantic.max_shift)
  kinds = [classify_change(b, a, max_shift) for b, a in zip(before, after)]
  own, other = specificity(sim_pos, sim_neg)
  mostly_object = on_object >= 0.5
  return {"n": int(len(accepted)), "accepted": share(accepted),
          "mask_on_object": float(on_object.mean()), "mask_area": float(np.mean(masks)),
          "accepted_object_masks": share(accepted[mostly_object]),
          "accepted_background_masks": share(accepted[~mostly_object]),
          "object_masks": share(mostly_object),
          "changes": {k: kinds.count(k) / max(len(kinds), 1) for k in CHANGES},
          "specificity": {"own": float(own[ok].mean()) if len(ok) else float("nan"),
                          "other": float(other[ok].mean()) if len(ok) else float("nan"),
                          "own_above_other": share(own[ok] > other[ok])}}


def run(ctx: context.Context) -> dict:
  """`edit_effect` of the first `evals.edit_effect.captions` held-out pairs (module docstring)."""
  n = min(int(ctx.cfg.edit_effect.captions), len(ctx.data["z_index"]))
  if n < 2:
    raise ValueError("edit_effect: needs at least 2 held-out pairs")
  data = ctx.take(n)
  batch = int(ctx.cfg.batch_size)
  key = jax.random.key(int(ctx.cfg.seed))
  maps = localisation.test_maps(ctx, n)
  res = maps[next(iter(maps))].shape[-1]
  objects = seg_lib.to_cells(seg_lib.foreground(maps),
                             res // 2 ** int(ctx.config.model.image_pools))
  components = negatives.object_components(objects)
  # a mask placed without regard to the image: its cells are object cells this often
  out = {"captions": n, "chance_mask_on_object": float(np.mean(objects))}
  cfg = placement_config(ctx.config, "peak")  # random units; the placement is an argument
  for index, location in enumerate(PLACEMENTS):
    neg, masks, accepted, img, img_neg, aud, frames = batching.map_batches(
        lambda i, zi, spec, nf, obj, index=index: draw_batch(
            ctx.models, ctx.g, ctx.z_table[zi], spec, nf, obj, jax.random.fold_in(key, i),
            jnp.int32(index), config=cfg),
        (data["z_index"], data["spec"], data["n_frames"], components), batch, indexed=True,
        desc=f"edit_effect: {location}")
    cosine = bool(ctx.config.model.cosine)
    sim_pos = recall.similarity(img, aud, frames, chunk=min(64, n), cosine=cosine)
    sim_neg = recall.similarity(img_neg, aud, frames, chunk=min(64, n), cosine=cosine)
    out[location] = summarise(ctx, maps, np.asarray(neg), np.asarray(masks),
                              np.asarray(accepted), np.asarray(sim_pos), np.asarray(sim_neg),
                              objects)
  return out
