"""`edited_recall`: can the model tell its caption's image from GAN-edited versions of it?

The reference protocol (docs/differences.md): per caption, the positive G(z) plus 9
negatives drawn by the generator with random units inside the region the evaluated model matches
the caption to (negatives.draw_negatives in random mode with the reference's evaluation retries:
p starts at evals.edited_recall.p and rises by evals.edited_recall.p_step on a failed try that
does not lower the threshold; a caption's negative that no try made acceptable is the last try,
counted in draw.accepted_rate); the positive's
rank among the 10 images by MISA with the caption gives R@1 and R@5 (chance 0.1 and 0.5).

One jitted call per batch of captions draws all of its negatives ([B * 9] samples, every candidate
strength in one generator call) and scores them; the key of batch i is fold_in(key(seed), i).
"""
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from learning_words.common import batching
from learning_words.evaluation import context
from learning_words.learner import matchmap, negatives
from learning_words.models import encoders

KS = (1, 5)


def negatives_config(config) -> ml_collections.FrozenConfigDict:
  """config.negatives in random mode with the evaluation's p schedule (hashable: a static arg)."""
  cfg = ml_collections.ConfigDict(config.negatives.to_dict())
  cfg.mode = "random"
  cfg.p = float(config.evals.edited_recall.p)
  cfg.p_step = float(config.evals.edited_recall.p_step)
  return ml_collections.FrozenConfigDict(cfg)


@functools.partial(nnx.jit, static_argnames=("cfg", "count", "cosine", "heat_cosine"))
def score_batch(models, g, z, spec, n_frames, key, cfg, count: int, cosine: bool,
                heat_cosine: bool):
  """(positive MISA [B], negatives' MISA [B, count], draw statistics) of one batch of captions;
  cosine: the scoring similarity; heat_cosine: the similarity of the matchmap placing the masks."""
  positives, x_layer = encoders.draw_positives(g, z, cfg.layer)
  img, aud, frames = encoders.embed(models, positives, spec, n_frames)
  pos = matchmap.misa(matchmap.matchmap(img, aud, cosine=cosine), frames)
  mm = matchmap.matchmap(img, aud, cosine=heat_cosine)
  rep = lambda v: jnp.repeat(v, count, axis=0)  # [B * count], sample-major
  neg, _, _, stats = negatives.draw_negatives(g, rep(z), rep(x_layer), rep(positives), rep(mm),
                                           rep(frames), key, cfg)
  b = z.shape[0]
  neg_scores = context.score_pairs(models, neg.reshape((b, count) + neg.shape[1:]), aud, frames,
                                  cosine)
  return pos, neg_scores, stats


def run(ctx: context.Context) -> dict:
  """R@1 and R@5 of each positive among its drawn negatives over the first `captions` pairs."""
  ecfg = ctx.cfg.edited_recall
  n = min(int(ecfg.captions), len(ctx.data["z_index"]))
  count = int(ecfg.negatives)
  if n == 0:
    raise ValueError("edited_recall: no held-out pairs")
  data = ctx.take(n)
  cfg = negatives_config(ctx.config)
  key = jax.random.key(int(ctx.cfg.seed))
  batch = int(ctx.cfg.batch_size)

  def fn(i, z_index, spec, n_frames):
    pos, neg, stats = score_batch(ctx.models, ctx.g, ctx.z_table[z_index], spec, n_frames,
                                  jax.random.fold_in(key, i), cfg=cfg, count=count,
                                  cosine=bool(ctx.config.model.cosine),
                                  heat_cosine=negatives.heat_cosine(ctx.config))
    # Batch means, one copy per row so that map_batches keeps the real rows' share (the padded
    # last batch's means include its repeated rows: exact when n is a multiple of the batch).
    return pos, neg, {k: jnp.broadcast_to(v, pos.shape) for k, v in stats.items()}

  pos, neg, stats = batching.map_batches(fn, (data["z_index"], data["spec"], data["n_frames"]),
                                       batch, desc="edited_recall", indexed=True)
  ranks = context.positive_ranks(pos, neg)
  out = {"n_captions": n, "n_negatives": count, **context.recall_at(ranks, KS),
         "mean_rank": float(np.mean(ranks))}
  out.update({f"chance_r{k}": min(k, count + 1) / (count + 1) for k in KS})
  out["draw"] = {k: float(np.mean(np.asarray(v))) for k, v in stats.items()}
  out["draw"]["p_start"] = cfg.p
  return out
