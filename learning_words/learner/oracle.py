"""Oracle negatives: the renderer's own one-attribute edits, chosen in the train step.

On the renders' world every record stores, per object slot, the scene redrawn with one attribute
of that object changed (`variants`) and with that object moved while the caption stays the same
(`null_variants`), plus each object's visible pixels (`object_masks`); world/edit_variants.py
draws them. The step picks one per sample on the device and feeds it to the edited loss term in
place of the generator's drawn negative:

  oracle         the variant of the object under the caption's peak cell (the argmax over cells
                 and valid frames, as the drawn negatives' mask grows from), else the nearest one
  oracle_random  the variant of a uniformly drawn object
  oracle_null    the moved object nearest the peak: a false negative no caption word tells apart

Which object is "under the peak": the one with the most pixels in the peak cell; with none there,
the one whose nearest cell is closest to it (squared cell distance).

With `negatives.oracle_objects='all'` the step takes every object's stored edit instead of one
(`every_object`): each sample's K slots give K negatives, each with its own edited term, so the
oracle and its random-object control coincide (the null control moves every object in turn).
"""
import jax
import jax.numpy as jnp

from learning_words.learner import matchmap, negatives
from learning_words.models import encoders

MODES = ("oracle", "oracle_random", "oracle_null")


def picked_cells(batch: dict, pick, grid: int):
  """bool [B,g,g]: the cells of a g x g grid that hold any pixel of the picked slot's object (its
  place in the positive; the edit redraws it there)."""
  rows = jnp.arange(pick.shape[0])
  return matchmap.pixels_per_cell(batch["object_masks"][rows, pick], grid) > 0


def peak_object(counts, valid, y, x):
  """Index [B] of the object under (or nearest to) each peak cell (y, x) [B], among valid [B,K];
  counts [B,K,g,g] (matchmap.pixels_per_cell of the objects' masks)."""
  b, _, g, _ = counts.shape
  rows = jnp.arange(g)
  d2 = ((rows[None, :, None] - y[:, None, None]) ** 2
        + (rows[None, None, :] - x[:, None, None]) ** 2)  # [B,g,g]
  dist = jnp.where(counts > 0, d2[:, None], 1e9).min(axis=(2, 3)).astype(jnp.float32)  # [B,K]
  at_peak = counts[jnp.arange(b), :, y, x]  # [B,K]; fewer than 1e4 pixels in a cell
  score = dist * 1e4 - at_peak  # distance first, then pixels in the peak cell
  return jnp.argmin(jnp.where(valid, score, jnp.inf), axis=1)


def random_object(key, valid):
  """Index [B] of a uniformly drawn valid object (valid [B,K])."""
  u = jax.random.uniform(key, valid.shape)
  return jnp.argmax(jnp.where(valid, u, -1.0), axis=1)


def oracle_negatives(batch: dict, mm, frames, key, mode: str):
  """(negatives [B,R,R,3] in [-1,1], accepted bool [B], statistics, picked slot [B]) for `mode`
  (MODES) from the batch's stored edits and the heat matchmap mm [B,h,w,T] with valid frames [B].
  A sample with no valid edit is not accepted (its edited term is dropped, as for a rejected drawn
  negative)."""
  if mode not in MODES:
    raise ValueError(f"oracle mode must be one of {MODES}, got {mode!r}")
  images = batch["null_variants" if mode == "oracle_null" else "variants"]
  valid = batch["null_valid" if mode == "oracle_null" else "variant_valid"] > 0
  counts = matchmap.pixels_per_cell(batch["object_masks"], mm.shape[1])
  _, y, x = negatives.peak(mm, frames)
  if mode == "oracle_random":
    pick = random_object(key, valid)
  else:
    pick = peak_object(counts, valid, y, x)
  rows = jnp.arange(images.shape[0])
  neg = encoders.to_float(images[rows, pick])
  accepted = valid[rows, pick]
  on_peak = counts[rows, pick, y, x] > 0
  stats = {"accepted_rate": accepted.mean(),
           "on_peak_object": jnp.where(accepted, on_peak, False).sum() / jnp.maximum(
               accepted.sum(), 1)}
  return neg, accepted, stats, pick


def every_object(batch: dict, mode: str):
  """(negatives [B*K,R,R,3] in [-1,1], accepted bool [B*K], statistics, slot [B*K]): every object
  slot's stored edit (`mode` 'oracle_null': its moved copy) at once, row b*K + k for sample b's
  slot k. The caller pairs them with each sample's own arrays repeated K times (jnp.repeat)."""
  if mode not in MODES:
    raise ValueError(f"oracle mode must be one of {MODES}, got {mode!r}")
  images = batch["null_variants" if mode == "oracle_null" else "variants"]  # [B,K,R,R,3]
  valid = batch["null_valid" if mode == "oracle_null" else "variant_valid"] > 0  # [B,K]
  b, k = valid.shape
  neg = encoders.to_float(images.reshape(b * k, *images.shape[2:]))
  stats = {"accepted_rate": valid.any(axis=1).mean(),
           "edits_per_sample": valid.sum(axis=1).mean()}
  return neg, valid.reshape(-1), stats, jnp.tile(jnp.arange(k), b)


def changed_word_frames(batch: dict, pick, key, mode: str, ratio: int, t_out: int):
  """bool [B,T']: the audio encoder's output frames (pooling `ratio`, T' = t_out) that cover the
  caption word naming the edited attribute of the picked slot (batch 'word_frames' [B,K,4,2] in
  log-mel frames, batch 'changed' [B,K]). The null edit changes no word: a random attribute's
  word of the moved object stands in, so the control contrasts as many frames."""
  rows = jnp.arange(pick.shape[0])
  spans = batch["word_frames"][rows, pick].astype(jnp.int32)  # [B,4,2]
  if mode == "oracle_null":
    attr = jax.random.randint(key, pick.shape, 0, spans.shape[1])
  else:
    attr = jnp.maximum(batch["changed"][rows, pick].astype(jnp.int32), 0)
  return span_frames(spans[rows, attr], ratio, t_out)


def object_word_frames(batch: dict, pick, ratio: int, t_out: int):
  """bool [B,T']: the audio encoder's output frames that cover any caption word naming the picked
  slot's object (any of its four attributes' words; batch 'word_frames' [B,K,4,2])."""
  rows = jnp.arange(pick.shape[0])
  spans = batch["word_frames"][rows, pick].astype(jnp.int32)  # [B,4,2]
  return span_frames(spans, ratio, t_out).any(axis=1)


def span_frames(span, ratio: int, t_out: int):
  """bool [...,T']: the audio encoder's output frames (pooling `ratio`) that cover log-mel spans
  [..., 2] (start, end; a start of -1: no time, no frame)."""
  start, end = span[..., 0] // ratio, -(-span[..., 1] // ratio)
  t = jnp.arange(t_out)
  return (t >= start[..., None]) & (t < end[..., None]) & (span[..., :1] >= 0)
