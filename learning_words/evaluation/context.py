"""What the evaluators share: their input (Context), and scoring a positive among its negatives.

Every model call goes through a jitted function of fixed batch shape (batching.map_batches), so
host loops run over batches, never over samples.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from learning_words.learner import matchmap


@dataclasses.dataclass
class Context:
  """Everything an evaluator reads. models: encoders.Encoders in eval mode; g: the frozen
  generator; data: held-out pairs as from input_pipeline.load_eval_arrays (id, z_index, image,
  spec [N,T,40], n_frames); z_table [n_z, z_dim]: rows of the fixed z matrix covering
  data['z_index']; seg: the attribute segmenter or None (then `semantic` and `attributes` are
  skipped); cache_dir: where generated test material is kept (WORKDIR/eval_cache/...); scenes:
the held-out pairs' ground-truth scene descriptions where the world stores them (else None: the
word test reads the images with the segmenter); memo: what several evaluators share, computed by
the first that needs it (the word tests' similarities); fit: training pairs (as data, plus their
'scenes' or None) that the attribute probe is fitted on, or None."""
  config: object
  models: object
  g: object
  data: dict
  z_table: jax.Array
  seg: object = None
  cache_dir: str = ""

  scenes: list | None = None
  fit: dict | None = None
  memo: dict = dataclasses.field(default_factory=dict)

  @property
  def cfg(self):
    return self.config.evals

  @property
  def stored(self) -> bool:
    """Whether the positives are the records' images (data.positives='stored'), not G(z)."""
    return self.config.data.positives == "stored"

  def take(self, n: int) -> dict:
    """The first n held-out pairs."""
    return {k: v[:n] for k, v in self.data.items()}


def score_pairs(models, images, aud, frames, cosine: bool):
  """MISA of each caption against each of its own images: images [B,K,R,R,3] in [-1,1], aud
  [B,T',D], frames [B] -> [B,K]. Traced inside the evaluators' jitted batch functions."""
  b, k = images.shape[:2]
  img = models.image(images.reshape((b * k,) + images.shape[2:]))
  rep = lambda v: jnp.repeat(v, k, axis=0)  # sample-major, like images.reshape
  return matchmap.misa(matchmap.matchmap(img, rep(aud), cosine=cosine), rep(frames)).reshape(b, k)


def frame_scores_pairs(models, images, aud, cosine: bool):
  """Per frame, the best cell's similarity of each caption against each of its own images:
  images [B,K,R,R,3] in [-1,1], aud [B,T',D] -> [B,K,T'] (MISA before its mean over frames)."""
  b, k = images.shape[:2]
  img = models.image(images.reshape((b * k,) + images.shape[2:]))
  mm = matchmap.matchmap(img, jnp.repeat(aud, k, axis=0), cosine=cosine)
  return jnp.max(mm, axis=(1, 2)).reshape(b, k, -1)


def positive_ranks(pos, neg) -> np.ndarray:
  """Rank (0 = first) of each positive among its negatives: pos [N], neg [N,K] -> int [N].

  Ties count against the positive (a negative scoring equal ranks before it), as recall.ranks
  does, so a model that scores everything alike is at chance or below, never perfect.
  """
  pos, neg = np.asarray(pos), np.asarray(neg)
  return (neg >= pos[:, None]).sum(axis=1)


def recall_at(ranks, ks) -> dict:
  """{'r{k}': fraction of ranks < k}; NaN when there are no ranks."""
  ranks = np.asarray(ranks)
  return {f"r{k}": float(np.mean(ranks < k)) if ranks.size else float("nan") for k in ks}
