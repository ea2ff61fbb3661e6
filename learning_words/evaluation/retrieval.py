"""`retrieval`: recall@{1,5,10} speech->image and image->speech over N held-out pairs, the same
measure training validates with (learner/recall.py), with its chance levels."""
from learning_words.evaluation import context
from learning_words.learner import recall
from learning_words.models import encoders


def run(ctx: context.Context) -> dict:
  """Recall@{1,5,10} of the first `evals.retrieval.n_pairs` held-out pairs."""
  n = min(int(ctx.cfg.retrieval.n_pairs), len(ctx.data["z_index"]))
  if n == 0:
    raise ValueError("retrieval: no held-out pairs")
  img, aud, frames = encoders.embed_pairs(ctx.models, ctx.g, ctx.z_table, ctx.take(n),
                                          int(ctx.cfg.batch_size), ctx.config.negatives.layer,
                                          ctx.stored)
  out = {"n_pairs": n, **recall.retrieval_metrics(img, aud, frames, bool(ctx.config.model.cosine))}
  out.update({f"chance_r{k}": min(k, n) / n for k in recall.KS})
  return out
