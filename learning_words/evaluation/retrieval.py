"""`retrieval`: recall@{1,5,10} image->speech (A) and speech->image (I) over N held-out pairs, the
same measure training validates with (learner/recall.py), with its chance levels; `items` holds
each query's rank (the paired intervals of evaluation/intervals.py resample them)."""
import numpy as np

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
  sim = np.asarray(recall.similarity(img, aud, frames, chunk=min(64, n),
                                     cosine=bool(ctx.config.model.cosine)))
  rec = recall.recalls(sim)
  out = {"n_pairs": n, **rec, "score": recall.score(rec)}
  out.update({f"chance_r{k}": min(k, n) / n for k in recall.KS})
  image_to_speech, speech_to_image = recall.ranks(sim)
  out["items"] = {"A_rank": image_to_speech.tolist(), "I_rank": speech_to_image.tolist()}
  return out
