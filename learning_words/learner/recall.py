"""Retrieval recall: both ways over held-out pairs, from one similarity matrix (ranks in plain
numpy, vectorised: no loop over queries). Training validates with it and the `retrieval`
evaluator reports it. Keys follow the reference's code: A_r{k} is image->speech (an image query
retrieves captions: the audio is what is retrieved), I_r{k} speech->image; the model-selection
score is (A_r5 + I_r5) / 2, symmetric in the two.
"""
import jax
import numpy as np

from learning_words.learner import matchmap

KS = (1, 5, 10)
similarity = jax.jit(matchmap.similarity_matrix, static_argnames=("chunk", "cosine"))


def ranks(sim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Rank (0 = best) of the true match for image->speech rows and speech->image columns.

  sim [N, N] with sim[i, j] = s(image_i, caption_j) and the true pairs on the diagonal. Ties count
  against the query (an impostor scoring equal to the match ranks before it), so a constant
  similarity gives chance-level recall, not perfect recall.
  """
  diag = np.diag(sim)
  image_to_speech = (sim >= diag[:, None]).sum(1) - 1
  speech_to_image = (sim >= diag[None, :]).sum(0) - 1
  return image_to_speech, speech_to_image


def recalls(sim: np.ndarray, ks=KS) -> dict[str, float]:
  """{'A_r{k}': image->speech recall@k, 'I_r{k}': speech->image recall@k}, as the reference's
  code names them."""
  i2s, s2i = ranks(np.asarray(sim))
  out = {}
  for k in ks:
    out[f"A_r{k}"] = float(np.mean(i2s < k))
    out[f"I_r{k}"] = float(np.mean(s2i < k))
  return out


def score(rec: dict) -> float:
  """The reference's model-selection score: (A_r5 + I_r5) / 2."""
  return 0.5 * (rec["A_r5"] + rec["I_r5"])


def retrieval_metrics(img, aud, frames, cosine: bool) -> dict:
  """{A_r{k}, I_r{k}, score} of img [N,h,w,D] vs aud [N,T,D] (n_frames [N]), pair i <-> i."""
  sim = similarity(img, aud, frames, chunk=min(64, img.shape[0]), cosine=cosine)
  rec = recalls(np.asarray(sim))
  return {**rec, "score": score(rec)}
