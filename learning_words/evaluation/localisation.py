"""`localisation` and `word_pointing`: does the matchmap point at what is said?

Drawn negatives edit the image where the caption's matchmap peaks, so the method only teaches
attributes when that peak lies on an object. Both evaluators read the matchmap on the feature grid
(h x w cells, 8 x 8 in every preset) of the training features (after the last ReLU) and label the
cells from the attribute segmenter's pixel maps of the images: a cell is an object cell when any
of its pixels is foreground (at least half of the segmenter's heads call it an object, as
world/parse.py does), and holds a word when any of its pixels carries that word's label.

`localisation`: over the first `n_pairs` held-out pairs, the caption's peak (the argmax over cells
and valid frames that the negatives' mask grows from, negatives.peak) is on an object cell
(`on_object`, chance: the mean share of object cells) or on the grid's outer ring (`on_border`,
chance: the ring's share of the grid); `peak_share` and `object_share` map, per cell, the share
of captions that peak there and of images with an object there (the report draws them). Given for the matchmap the negatives draw from (top level)
and, under `by_similarity`, for the dot product and the cosine of the same features.

`word_pointing` (the pointing game): each attribute word's recording (the word test's, one per
voice) against the test images that hold the word by the word test's protocol ("with" images,
attributes.protocol_images); a hit when the word's peak cell holds the word. Chance: the mean share
of the image's cells that hold the word. Pooled per category like the word test; `ratio` is the
score over its chance.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from learning_words.common import batching, figures
from learning_words.data.vocabulary import ATTRIBUTES, VOCAB
from learning_words.evaluation import attributes, context
from learning_words.learner import localise, matchmap, negatives
from learning_words.models import encoders
from learning_words.models import segmenter as seg_lib

SIMILARITIES = ("dot", "cosine")


# ---------------------------------------------------------------------------
# Word cells (pure, host-side).


def word_cells(maps: dict, grid: int) -> np.ndarray:
  """bool [P, 15, grid, grid]: the cells holding each word of attributes.WORDS."""
  cols = [np.asarray(maps[a]) == 1 + i for a in ATTRIBUTES for i in range(len(VOCAB[a]))]
  return seg_lib.to_cells(np.stack(cols, axis=1), grid)


# ---------------------------------------------------------------------------
# Peaks (jitted).


@functools.partial(jax.jit, static_argnames=("cosine",))
def word_peaks(img, aud, frames, cosine: bool):
  """(y, x) [B, W] of each word's peak on each image: img [B,h,w,D], aud [W,T,D], frames [W]."""
  if cosine:
    img, aud = matchmap.normalize_features(img), matchmap.normalize_features(aud)
  mm = jnp.einsum("bhwd,ktd->bkhwt", img, aud)
  b, k, h, w, t = mm.shape
  valid = jnp.arange(t)[None, :] < jnp.clip(frames, 1, t)[:, None]  # [W, T]
  heat = jnp.max(jnp.where(valid[None, :, None, None, :], mm, -jnp.inf), axis=-1)
  y, x = jnp.unravel_index(jnp.argmax(heat.reshape(b, k, h * w), axis=-1), (h, w))
  return y, x


# ---------------------------------------------------------------------------
# Label maps (memoised: several evaluators read the same test images).


def test_maps(ctx: context.Context, n: int) -> dict:
  """The segmenter's label maps {attr: [n,R,R]} of the first n test images (G(z) or stored)."""
  memo = ctx.memo.get("label_maps")
  if memo is not None and len(memo[ATTRIBUTES[0]]) >= n:
    return {a: v[:n] for a, v in memo.items()}
  if ctx.seg is None:
    raise ValueError("localisation needs the attribute segmenter")
  z_index = ctx.data["z_index"][:n]
  images = ctx.data["image"][:n] if ctx.stored else figures.to_uint8(batching.map_batches(
      lambda zi: encoders.generate(ctx.g, ctx.z_table[zi]), (z_index,), int(ctx.cfg.batch_size),
      desc="localisation: images"))
  ctx.memo["label_maps"] = seg_lib.predict(ctx.seg, images)
  return ctx.memo["label_maps"]


# ---------------------------------------------------------------------------
# The evaluators.


def run(ctx: context.Context) -> dict:
  """`localisation` of the first `evals.localisation.n_pairs` held-out pairs' caption peaks."""
  n = min(int(ctx.cfg.localisation.n_pairs), len(ctx.data["z_index"]))
  if n == 0:
    raise ValueError("localisation: no held-out pairs")
  img, aud, frames = encoders.embed_pairs(ctx.models, ctx.g, ctx.z_table, ctx.take(n),
                                          int(ctx.cfg.batch_size), ctx.config.negatives.layer,
                                          ctx.stored)
  cells = seg_lib.to_cells(seg_lib.foreground(test_maps(ctx, n)), img.shape[1])
  by = {}
  for name in SIMILARITIES:
    y, x = batching.map_batches(
        lambda i, a, f: localise.caption_peaks(i, a, f, cosine=name == "cosine"),
        (img, aud, frames), int(ctx.cfg.batch_size))
    by[name] = localise.peak_statistics(y, x, cells)
  used = "cosine" if negatives.heat_cosine(ctx.config) else "dot"
  out = {"n_pairs": n, "similarity": used, **by[used],
         "object_share": cells.mean(axis=0).round(4).tolist()}  # [h][w]: images with an object
  out["by_similarity"] = {k: {m: v for m, v in d.items() if m not in ("items", "peak_share")}
                          for k, d in by.items()}
  return out


def pointing_hits(cells, with_, y, x) -> np.ndarray:
  """Per "with" image of one word, whether its peak (y, x) [P] holds the word: cells [P,h,w]."""
  with_ = np.asarray(with_, int)
  return np.asarray(cells, bool)[with_, np.asarray(y)[with_], np.asarray(x)[with_]]


def run_pointing(ctx: context.Context) -> dict:
  """`word_pointing` of the word test's recordings on its "with" images (the module docstring)."""
  s = attributes.word_similarities(ctx)
  img = s["image_features"]
  if ctx.cfg.attributes.pre_relu:  # the word test's features; pointing reads the trained ones
    img = jax.nn.relu(img)
  maps = test_maps(ctx, img.shape[0])
  cells = word_cells(maps, img.shape[1])  # [P, 15, h, w]
  cosine = negatives.heat_cosine(ctx.config)
  aud, frames = s["word_features"]
  y, x = batching.map_batches(lambda i: word_peaks(i, aud, frames, cosine=cosine), (img,),
                              int(ctx.cfg.batch_size))
  n_voices = len(s["voices"])
  y, x = (np.asarray(v).reshape(img.shape[0], len(attributes.WORDS), n_voices) for v in (y, x))
  words, per_category = {}, {a: [[], []] for a in ATTRIBUTES}
  items = []
  for w_i, w in enumerate(attributes.WORDS):
    with_, _ = attributes.protocol_images(s["pixels"][:, w_i], attributes.CATEGORY[w],
                                          s["resolution"], int(ctx.cfg.attributes.images))
    hits = np.concatenate([pointing_hits(cells[:, w_i], with_, y[:, w_i, v], x[:, w_i, v])
                           for v in range(n_voices)])
    chance = np.tile(cells[with_, w_i].mean(axis=(1, 2)), n_voices)
    words[w] = {"category": attributes.CATEGORY[w], "n": int(len(hits)),
                "score": float(hits.mean()) if len(hits) else float("nan"),
                "chance": float(chance.mean()) if len(hits) else float("nan")}
    per_category[attributes.CATEGORY[w]][0].append(hits)
    per_category[attributes.CATEGORY[w]][1].append(chance)
    items.append(hits.astype(int))
  cats, chances = {}, {}
  for a, (hits, chance) in per_category.items():
    hits, chance = np.concatenate(hits), np.concatenate(chance)
    cats[a] = float(hits.mean()) if len(hits) else float("nan")
    chances[a] = float(chance.mean()) if len(hits) else float("nan")
  finite = [a for a in ATTRIBUTES if np.isfinite(cats[a])]
  mean = float(np.mean([cats[a] for a in finite])) if finite else float("nan")
  chance = float(np.mean([chances[a] for a in finite])) if finite else float("nan")
  return {"similarity": "cosine" if cosine else "dot", "categories": cats,
          "chance_categories": chances, "mean": mean, "chance": chance,
          "ratio": mean / chance if chance > 0 else float("nan"),
          "n": int(sum(len(i) for i in items)), "words": words,
          "items": {"hit": np.concatenate(items).tolist() if items else []}}
