"""`semantic`: can the model tell its caption's image from ones where one attribute changed?

Per caption, the positive G(z) plus `negatives` (4) images in each of which exactly one attribute
of one object changed, as read by the attribute segmenter; the positive's rank among the 5 by MISA
with the caption gives R@1 and R@3 (chance 0.2 and 0.6). R@1 needs the positive to beat all four
negatives at once, so it hides progress: `pairwise` is the share of (caption, negative) pairs in
which the positive scores strictly higher (chance 0.5), overall and per category of the changed
attribute (`pairwise_by`), pooled over the pairs.

Negatives do not depend on the model: they are generated once per test set and seed and cached
(WORKDIR/eval_cache/<dataset>_<seed>/semantic_<key>.npz, key = a hash of the generator and
segmenter weights, the ids and the settings), so every checkpoint compared sees the same images.
The package ships the quickstart's file (common/assets.py): a fresh quickstart whose ids and
weights give the same key copies it instead of searching (any other key is built as above).
Generation, in rounds (host loop over rounds and batches; the generator and segmenter run in
fixed-size jitted batches): each caption still short of negatives gets up to `per_round` candidate
edits, each ablating random units (p ~ U(p_range)) of the intervention layer inside one randomly
chosen parsed object's mask (binary at the layer's resolution, any overlap); the segmenter reads
each candidate and `one_attribute_change` keeps those whose parse equals the positive's but for
exactly one attribute of one object. At most `max_tries` candidates per caption; captions left
short (or with no parsed object) are not scored, and counted. The cache stores the edits (layer
masks and unit selections), from which the scoring re-renders the same negatives.

On the renders' world (stored positives, no latent) the renderer draws the negatives instead:
each one attribute of one visible object changed, exact by construction (run_rendered).
"""
import functools
import hashlib
import io
import json
import os

import jax.numpy as jnp
import numpy as np
from absl import logging
from etils import epath, epy
from flax import nnx
with epy.lazy_imports():  # imported at first use: start-up time
  from scipy import optimize

from learning_words.common import assets, batching, checkpoints, errors, figures, files
from learning_words.data.vocabulary import ATTRIBUTES, VOCAB
from learning_words.evaluation import context
from learning_words.learner import matchmap, negatives
from learning_words.models import encoders
from learning_words.models import generator as gen_lib
from learning_words.models import segmenter as seg_lib
from learning_words.world import edit_variants, parse

KS = (1, 3)


# ---------------------------------------------------------------------------
# The one-attribute filter (pure, host-side).


def match_objects(before: dict, after: dict, max_shift: float):
  """Pairs (i, j) of objects of two scene descriptions with the same number of objects, matched
  by centroid (least total distance); None when the counts differ or a pair moved more than
  `max_shift` (in image widths)."""
  a, b = before["objects"], after["objects"]
  if len(a) != len(b):
    return None
  if not a:
    return []
  pa = np.array([[o["x"], o["y"]] for o in a])
  pb = np.array([[o["x"], o["y"]] for o in b])
  dist = np.linalg.norm(pa[:, None] - pb[None], axis=-1)
  rows, cols = optimize.linear_sum_assignment(dist)
  if dist[rows, cols].max() > max_shift:
    return None
  return list(zip(rows.tolist(), cols.tolist()))


def attribute_changes(before: dict, after: dict, max_shift: float):
  """[(object index in `before`, attribute), ...] that differ between matched objects, or None
  when the objects do not correspond (see match_objects)."""
  pairs = match_objects(before, after, max_shift)
  if pairs is None:
    return None
  return [(i, a) for i, j in pairs for a in ATTRIBUTES
          if before["objects"][i][a] != after["objects"][j][a]]


def one_attribute_change(before: dict, after: dict, max_shift: float):
  """(object index, attribute) when `after` is `before` with exactly one attribute of one object
  changed (same objects, none moved more than max_shift); else None."""
  changes = attribute_changes(before, after, max_shift)
  return changes[0] if changes is not None and len(changes) == 1 else None


def object_mask(maps: dict, obj: dict) -> np.ndarray:
  """Pixels [R,R] of one image's label maps {attr: [R,R]} whose four labels are obj's values (a
  twin with the same four values is included: editing both changes two objects, which the filter
  then rejects)."""
  return np.logical_and.reduce(
      [np.asarray(maps[a]) == 1 + VOCAB[a].index(obj[a]) for a in ATTRIBUTES])


def to_layer_masks(masks, size: int) -> np.ndarray:
  """Binary pixel masks [N,R,R] -> bool [N,size,size]: a cell is on if any of its pixels is."""
  masks = np.asarray(masks, np.float32)
  ry = negatives.resize_matrix(masks.shape[1], size)
  rx = negatives.resize_matrix(masks.shape[2], size)
  return np.einsum("yh,nhw,xw->nyx", ry, masks, rx) > 0


# ---------------------------------------------------------------------------
# Generation (cached).


@functools.partial(nnx.jit, static_argnames=("layer",))
def render_edits(g, z, layer_masks, units, layer: str):
  """G(z) with units [B,C] ablated (r = 0) inside layer_masks [B,h_l,w_l] at `layer`."""
  x = g.features(z, [layer])[layer]
  a = layer_masks[..., None] * units[:, None, None, :]
  return g.render_from(layer, x * (1.0 - a))


def _images(fn, arrays, batch: int, desc: str) -> np.ndarray:
  """uint8 images from a jitted generator function over host arrays in fixed batches."""
  return figures.to_uint8(batching.map_batches(fn, arrays, batch, desc=desc))


def settings(ctx: context.Context, z_index) -> dict:
  """Everything the negatives depend on (the cache key is its hash)."""
  s = ctx.cfg.semantic
  return {"fingerprint": checkpoints.fingerprint_values(nnx.state(ctx.g), nnx.state(ctx.seg),
                                                         ctx.config.world.parse_min_pixels),
          "z_index": [int(i) for i in z_index], "layer": ctx.config.negatives.layer,
          "negatives": int(s.negatives), "max_tries": int(s.max_tries),
          "per_round": int(s.per_round), "p_range": [float(p) for p in s.p_range],
          "max_shift": float(s.max_shift), "seed": int(ctx.cfg.seed)}


def build_negatives(ctx: context.Context, z_index) -> dict:
  """Generates the negatives' edits for the captions of z_index [N] (see the module docstring).

  Returns numpy arrays: layer_masks bool [N,K,h_l,w_l], units bool [N,K,C], found bool [N,K],
  tries int [N] (candidates examined until the K-th was accepted, or all of them), n_objects [N],
  changed_object / changed_attr int [N,K] (index into the positive's parse / ATTRIBUTES; -1 when
  not found).
  """
  s = ctx.cfg.semantic
  k_neg, per_round, max_tries = int(s.negatives), int(s.per_round), int(s.max_tries)
  layer = ctx.config.negatives.layer
  hl, _, c = gen_lib.layer_shapes(ctx.g.sizes)[layer]
  batch = int(ctx.cfg.batch_size)
  z_index = np.asarray(z_index)
  n = len(z_index)
  z_of = lambda idx: ctx.z_table[idx]
  positives = _images(lambda i: encoders.generate(ctx.g, z_of(i)), (z_index,), batch,
                      "semantic: positives")
  maps = seg_lib.predict(ctx.seg, positives)
  scenes = parse.parse(maps, ctx.config.world.parse_min_pixels)
  # Every parsed object's mask at the layer's resolution; caption i's are first[i]:first[i + 1].
  first = np.concatenate([[0], np.cumsum([len(sc["objects"]) for sc in scenes])]).astype(np.int64)
  pixels = [object_mask({a: maps[a][i] for a in ATTRIBUTES}, o)
            for i, sc in enumerate(scenes) for o in sc["objects"]]
  obj_masks = to_layer_masks(np.stack(pixels) if pixels else
                             np.zeros((0,) + maps["shape"].shape[1:], bool), hl)
  n_objects = np.diff(first)

  out = {"layer_masks": np.zeros((n, k_neg, hl, hl), bool), "units": np.zeros((n, k_neg, c), bool),
         "found": np.zeros((n, k_neg), bool), "tries": np.zeros(n, np.int64),
         "n_objects": n_objects, "changed_object": np.full((n, k_neg), -1, np.int64),
         "changed_attr": np.full((n, k_neg), -1, np.int64)}
  n_found = np.zeros(n, np.int64)
  rng = np.random.default_rng([int(ctx.cfg.seed), 2019])
  lo, hi = (float(p) for p in s.p_range)
  for round_ in range(-(-max_tries // max(per_round, 1))):
    todo = np.nonzero((n_found < k_neg) & (n_objects > 0) & (out["tries"] < max_tries))[0]
    if not len(todo):
      break
    cand = np.repeat(todo, np.minimum(per_round, max_tries - out["tries"][todo]))
    obj = first[cand] + rng.integers(n_objects[cand])
    units = rng.random((len(cand), c)) < rng.uniform(lo, hi, (len(cand), 1))
    edits = _images(lambda i, m, u: render_edits(ctx.g, z_of(i), m, u, layer=layer),
                    (z_index[cand], obj_masks[obj].astype(np.float32), units.astype(np.float32)),
                    batch, f"semantic: candidates, round {round_ + 1}")
    edited = parse.parse(seg_lib.predict(ctx.seg, edits), ctx.config.world.parse_min_pixels)
    for j, i in enumerate(cand):  # host bookkeeping over parsed candidates (no model calls)
      if n_found[i] == k_neg:
        continue
      out["tries"][i] += 1
      change = one_attribute_change(scenes[i], edited[j], float(s.max_shift))
      if change is None:
        continue
      slot = n_found[i]
      out["layer_masks"][i, slot], out["units"][i, slot] = obj_masks[obj[j]], units[j]
      out["found"][i, slot] = True
      out["changed_object"][i, slot] = change[0]
      out["changed_attr"][i, slot] = ATTRIBUTES.index(change[1])
      n_found[i] += 1
  return out


def load_or_build(ctx: context.Context, z_index) -> tuple[dict, str]:
  """The cached negatives for these captions and settings, built (and cached) when missing."""
  info = settings(ctx, z_index)
  key = hashlib.sha1(json.dumps(info, sort_keys=True).encode()).hexdigest()[:12]
  path = os.path.join(ctx.cache_dir, f"semantic_{key}.npz")
  shipped = assets.shipped_semantic_negatives(os.path.basename(path))
  if not epath.Path(path).is_file() and shipped:  # the quickstart's, shipped: same key, same edits
    files.write_bytes(path, epath.Path(shipped).read_bytes())
    logging.info("semantic: negatives from the package's copy %s", shipped)
  if epath.Path(path).is_file():
    with np.load(io.BytesIO(epath.Path(path).read_bytes())) as f:
      return {k: f[k] for k in f.files if k != "settings"}, path
  out = build_negatives(ctx, z_index)
  buf = io.BytesIO()
  np.savez_compressed(buf, settings=json.dumps(info), **out)
  files.write_bytes(path, buf.getvalue())  # never half a cache file
  return out, path


# ---------------------------------------------------------------------------
# Scoring.


def pairwise_accuracy(pos, neg, changed) -> dict:
  """Own image against each one-attribute negative: pos [N], neg [N,K] scores, changed [N,K] the
  changed attribute (index into ATTRIBUTES). {'pairwise': share of pairs with pos > neg (ties
  count against the positive), 'pairwise_by': {attribute: that share over its pairs (NaN when
  none)}, 'pairwise_ties': share of exact ties, 'items': per pair (caption-major) its credit, category and caption row}."""
  pos, neg, changed = np.asarray(pos), np.asarray(neg), np.asarray(changed, np.int64)
  credit = (pos[:, None] > neg).astype(np.float64)
  by = {a: float(credit[changed == i].mean()) if (changed == i).any() else float("nan")
        for i, a in enumerate(ATTRIBUTES)}
  return {"pairwise": float(credit.mean()) if credit.size else float("nan"), "pairwise_by": by,
          "chance_pairwise": 0.5,
          # an edit the score cannot see at all (the changed cells are no frame's best)
          "pairwise_ties": float((pos[:, None] == neg).mean()) if credit.size else float("nan"),
          "items": {"pair_credit": credit.ravel().tolist(),
                    "pair_category": changed.ravel().tolist(),
                    "pair_caption": np.repeat(np.arange(len(pos)), neg.shape[1]).tolist()}}


def score_summary(pos, neg, changed, complete) -> dict:
  """R@k, mean rank and pairwise accuracy of the complete captions (rows `complete` of the
  evaluated ones), with the per-item arrays the paired intervals resample."""
  ranks = context.positive_ranks(pos, neg)
  pair = pairwise_accuracy(pos, neg, changed)
  items = {"caption": np.asarray(complete).tolist(), "rank": ranks.tolist(), **pair.pop("items")}
  return {**context.recall_at(ranks, KS), "mean_rank": float(np.mean(ranks)), **pair,
          "items": items}


def empty_summary() -> dict:
  return {**context.recall_at([], KS), "mean_rank": float("nan"), "pairwise": float("nan"),
          "pairwise_ties": float("nan"),
          "pairwise_by": {a: float("nan") for a in ATTRIBUTES}, "chance_pairwise": 0.5}


@functools.partial(nnx.jit, static_argnames=("layer", "cosine"))
def score_batch(models, g, z, spec, n_frames, layer_masks, units, layer: str, cosine: bool):
  """(positive MISA [B], negatives' MISA [B,K]) with the negatives re-rendered from their edits:
  layer_masks [B,K,h_l,w_l], units [B,K,C]."""
  positives, x = encoders.draw_positives(g, z, layer)
  img, aud, frames = encoders.embed(models, positives, spec, n_frames)
  pos = matchmap.misa(matchmap.matchmap(img, aud, cosine=cosine), frames)
  b, k = units.shape[:2]
  a = layer_masks[..., None] * units[:, :, None, None, :]  # [B,K,h_l,w_l,C]
  edited = (x[:, None] * (1.0 - a)).reshape((b * k,) + x.shape[1:])
  neg = g.render_from(layer, edited)
  return pos, context.score_pairs(models, neg.reshape((b, k) + neg.shape[1:]), aud, frames, cosine)


@functools.partial(nnx.jit, static_argnames=("cosine",))
def score_rendered(models, positives, negatives_, spec, n_frames, cosine: bool):
  """(positive MISA [B], negatives' MISA [B,K]) of stored positives [B,R,R,3] and negatives
  [B,K,R,R,3] (uint8)."""
  img, aud, frames = encoders.embed(models, encoders.to_float(positives), spec, n_frames)
  pos = matchmap.misa(matchmap.matchmap(img, aud, cosine=cosine), frames)
  return pos, context.score_pairs(models, encoders.to_float(negatives_), aud, frames, cosine)


@functools.partial(nnx.jit, static_argnames=("cosine",))
def score_rendered_words(models, positives, negatives_, spec, n_frames, word, cosine: bool):
  """(own [B,K], negative [B,K]): each image's mean best-cell score over the frames word
  [B,K,T'] (bool) of the word naming negative k's change (0 where the word has no frame)."""
  img, aud, _ = encoders.embed(models, encoders.to_float(positives), spec, n_frames)
  own = jnp.max(matchmap.matchmap(img, aud, cosine=cosine), axis=(1, 2))[:, None]  # [B,1,T']
  neg = context.frame_scores_pairs(models, encoders.to_float(negatives_), aud, cosine)
  w = word.astype(own.dtype)
  mean = lambda x: (x * w).sum(-1) / jnp.maximum(w.sum(-1), 1.0)
  return mean(own), mean(neg)


def word_masks(word_frames, slots, changed, ratio: int, t_out: int) -> np.ndarray:
  """bool [N,K,T']: the audio encoder's output frames (pooling `ratio`) of the caption word that
  names negative k's change: word_frames [N,S,4,2] log-mel spans per object slot and attribute,
  slots / changed [N,K] the changed slot and attribute (-1: none)."""
  rows = np.arange(len(slots))[:, None]
  span = np.asarray(word_frames)[rows, np.maximum(slots, 0), np.maximum(changed, 0)]  # [N,K,2]
  start, end = span[..., 0] // ratio, -(-span[..., 1] // ratio)
  t = np.arange(t_out)
  ok = (span[..., 0] >= 0) & (slots >= 0) & (changed >= 0)
  return (t >= start[..., None]) & (t < end[..., None]) & ok[..., None]


def run_rendered(ctx: context.Context) -> dict:
  """The test on the renders' world (stored positives): the renderer draws each caption's
  negatives (world/edit_variants.semantic_negatives), one attribute of one object changed by
  construction, so no segmenter reads them."""
  n = min(int(ctx.cfg.semantic.captions), len(ctx.data["id"]))
  data = ctx.take(n)
  k_neg = int(ctx.cfg.semantic.negatives)
  neg, found, changed, slots = edit_variants.semantic_negatives(ctx.config.world, ctx.config.seed,
                                                                data["id"], k_neg)
  complete = np.nonzero(found.all(axis=1))[0]
  out = {"n_candidates_captions": n, "n_captions": len(complete), "n_negatives": k_neg,
         "n_incomplete": int(n - len(complete)), "negatives_from": "renderer"}
  if len(complete):
    pos, neg_scores = batching.map_batches(
        lambda im, ng, sp, nf: score_rendered(ctx.models, im, ng, sp, nf,
                                              cosine=bool(ctx.config.model.cosine)),
        [data["image"][complete], neg[complete], data["spec"][complete],
         data["n_frames"][complete]], int(ctx.cfg.batch_size), desc="semantic: scoring")
    out.update(score_summary(pos, neg_scores, changed[complete], complete))
    if "word_frames" in data:
      word = word_only(ctx, data, neg, complete, slots, changed)
      out["items"].update(word.pop("items"))
      out.update(word)
  else:
    out.update(empty_summary())
    out["empty"] = f"no caption of {n} got {k_neg} distinct one-attribute renders"
  out.update({f"chance_r{k}": min(k, k_neg + 1) / (k_neg + 1) for k in KS})
  out["changed"] = {a: int((changed == i).sum()) for i, a in enumerate(ATTRIBUTES)}
  return out


def word_only(ctx: context.Context, data: dict, neg, complete, slots, changed) -> dict:
  """`pairwise_word`: the same pairs scored on the frames of the word that names the change only
  (the world's stored word timings); pairs whose word has no frame are left out. Not a score a
  caption alone gives (it is told which word changed): it separates what the image features know
  of the word from what MISA's mean over every frame lets through."""
  ratio = ctx.models.audio.pooling_ratio
  t_out = -(-data["spec"].shape[1] // ratio)
  word = word_masks(data["word_frames"][complete], slots[complete], changed[complete], ratio,
                    t_out)
  own, other = batching.map_batches(
      lambda im, ng, sp, nf, w: score_rendered_words(ctx.models, im, ng, sp, nf, w,
                                                     cosine=bool(ctx.config.model.cosine)),
      [data["image"][complete], neg[complete], data["spec"][complete],
       data["n_frames"][complete], word], int(ctx.cfg.batch_size), desc="semantic: word frames")
  has = word.any(-1)
  credit = np.asarray(own) > np.asarray(other)
  attr = changed[complete]
  by = {a: float(credit[has & (attr == i)].mean()) if (has & (attr == i)).any() else float("nan")
        for i, a in enumerate(ATTRIBUTES)}
  return {"pairwise_word": float(credit[has].mean()) if has.any() else float("nan"),
          "pairwise_word_by": by, "pairwise_word_pairs": int(has.sum()),
          "items": {"word_credit": credit.astype(np.float64).ravel().tolist(),
                    "word_category": np.where(has, attr, -1).ravel().tolist(),  # -1: no word
                    "word_caption": np.repeat(np.arange(len(complete)),
                                              credit.shape[1]).tolist()}}


def run(ctx: context.Context) -> dict:
  """R@1, R@3 and pairwise accuracy of each positive against its one-attribute negatives
  (complete captions only)."""
  if ctx.stored and ctx.config.world.pairs == "renders":
    return run_rendered(ctx)
  if ctx.seg is None:
    raise errors.MissingError("semantic needs the attribute segmenter (WORKDIR/segmenter/weights): "
                              "run --mode=train_segmenter")
  s = ctx.cfg.semantic
  n = min(int(s.captions), len(ctx.data["z_index"]))
  data = ctx.take(n)
  neg, path = load_or_build(ctx, data["z_index"])
  complete = np.nonzero(neg["found"].all(axis=1))[0]
  k_neg = neg["found"].shape[1]
  out = {"n_candidates_captions": n, "n_captions": len(complete),
         "n_no_object": int((neg["n_objects"] == 0).sum()),
         "n_incomplete": int(((neg["n_objects"] > 0) & ~neg["found"].all(axis=1)).sum()),
         "n_negatives": k_neg, "cache": path}
  if len(complete):
    rows = [data[k][complete] for k in ("z_index", "spec", "n_frames")]
    rows += [neg[k][complete].astype(np.float32) for k in ("layer_masks", "units")]
    pos, neg_scores = batching.map_batches(
        lambda zi, sp, nf, m, u: score_batch(ctx.models, ctx.g, ctx.z_table[zi], sp, nf, m, u,
                                             layer=ctx.config.negatives.layer,
                                             cosine=bool(ctx.config.model.cosine)),
        rows, int(ctx.cfg.batch_size), desc="semantic: scoring")
    out.update(score_summary(pos, neg_scores, neg["changed_attr"][complete], complete))
  else:
    out.update(empty_summary())
    out["empty"] = (f"no caption of {n} got {k_neg} one-attribute negatives: "
                    f"{out['n_no_object']} images held no parsed object, {out['n_incomplete']} "
                    f"found fewer within {int(s.max_tries)} tries "
                    f"(--config.evals.semantic.max_tries)")
  out.update({f"chance_r{k}": min(k, k_neg + 1) / (k_neg + 1) for k in KS})
  tried = neg["n_objects"] > 0
  out["tries"] = {"total": int(neg["tries"].sum()), "accepted": int(neg["found"].sum()),
                  "acceptance_rate": float(neg["found"].sum() / max(neg["tries"].sum(), 1)),
                  "mean_per_complete_caption": float(np.mean(neg["tries"][complete]))
                  if len(complete) else float("nan"),
                  "max": int(neg["tries"][tried].max()) if tried.any() else 0}
  out["changed"] = {a: int((neg["changed_attr"] == i).sum()) for i, a in enumerate(ATTRIBUTES)}
  return out
