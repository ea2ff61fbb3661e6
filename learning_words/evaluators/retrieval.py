"""`retrieval`: recall@{1,5,10} speech->image and image->speech over N held-out pairs.

The images are G(z_id) as in training; one similarity matrix [N, N] (chunked, jitted), then the
ranks of the true pairs (learning_words.retrieval, vectorised). Keys follow the reference: A_r{k}
is speech->image (an audio query retrieves images), I_r{k} image->speech; score = (A_r5 + I_r5) / 2.
"""
import numpy as np

from learning_words import retrieval, train
from learning_words.evaluators import common

KS = (1, 5, 10)


def recall_metrics(img, aud, frames, cosine: bool) -> dict:
  """Recall both ways of img [N,h,w,D] vs aud [N,T,D] (n_frames [N]), pair i <-> i."""
  sim = np.asarray(common.similarity(img, aud, frames, chunk=min(64, img.shape[0]), cosine=cosine))
  rec = retrieval.recalls(sim, KS)
  return {**rec, "score": retrieval.score(rec)}


def run(ctx: common.Context) -> dict:
  """Recall@{1,5,10} of the first `evals.retrieval.n_pairs` held-out pairs."""
  n = min(int(ctx.cfg.retrieval.n_pairs), len(ctx.data["z_index"]))
  if n == 0:
    raise ValueError("retrieval: no held-out pairs")
  img, aud, frames = train.encode_eval_set(ctx.models, ctx.g, ctx.z_table, ctx.take(n),
                                           int(ctx.cfg.batch_size), ctx.config)
  out = {"n_pairs": n, **recall_metrics(img, aud, frames, bool(ctx.config.model.cosine))}
  out.update({f"chance_r{k}": min(k, n) / n for k in KS})
  return out
