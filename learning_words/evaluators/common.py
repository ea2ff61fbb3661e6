"""What the evaluators share: the evaluation context, fixed-size jitted batches, the rank of a
positive among its negatives, and JSON output.

Every model call goes through a jitted function of fixed batch shape (the last batch padded by
repeating its last row, so each function is traced once per shape); host loops run over batches,
never over samples.
"""
import dataclasses
import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from learning_words import matchmap, train
from learning_words.models import davenet


@dataclasses.dataclass
class Context:
  """Everything an evaluator reads. models: train.Encoders in eval mode; g: the frozen generator;
  data: held-out pairs as from train.load_eval_arrays (id, z_index, image, spec [N,T,40], n_frames);
  z_table [n_z, z_dim]: rows of the fixed z matrix covering data['z_index']; seg: the attribute
  segmenter or None (then `semantic` and `attributes` are skipped); cache_dir: where generated
  test material is kept (WORKDIR/eval_cache/<dataset>_<seed>)."""
  config: object
  models: object
  g: object
  data: dict
  z_table: jax.Array
  seg: object = None
  cache_dir: str = ""

  @property
  def cfg(self):
    return self.config.evals

  def take(self, n: int) -> dict:
    """The first n held-out pairs."""
    return {k: v[:n] for k, v in self.data.items()}


def map_batches(fn, arrays, batch: int, desc: str | None = None, indexed: bool = False):
  """fn over host arrays in batches of `batch` rows (the last padded by repeating its last row);
  returns fn's output pytree concatenated over the real rows (device arrays). indexed: call
  fn(batch_index, *arrays) (for per-batch random keys)."""
  n = len(arrays[0])
  outs = []
  for start in tqdm(range(0, n, batch), desc=desc, disable=desc is None or jax.process_index() != 0,
                    dynamic_ncols=True, leave=False):
    part = [np.asarray(a[start:start + batch]) for a in arrays]
    pad = batch - len(part[0])
    if pad:
      part = [np.concatenate([p, np.repeat(p[-1:], pad, 0)]) for p in part]
    args = [jnp.asarray(p) for p in part]
    out = fn(start // batch, *args) if indexed else fn(*args)
    outs.append(jax.tree.map(lambda o, keep=batch - pad: o[:keep], out))
  return jax.tree.map(lambda *xs: jnp.concatenate(xs), *outs)


@nnx.jit
def generate(g, z):
  """G(z[B,Z]) -> images [B,R,R,3] in [-1,1]."""
  return g(z)


@functools.partial(nnx.jit, static_argnames=("layer",))
def embed_generated_images(models, g, z, layer: str):
  """Image features [B,h,w,D] of G(z[B,Z]) (drawn through `layer`, as in training)."""
  return models.image(train.draw_positives(g, z, layer)[0])


@nnx.jit
def embed_audio(models, spec, n_frames):
  """spec [B,T,40], n_frames [B] -> (audio features [B,T',D], valid output frames [B])."""
  aud = models.audio(spec)
  return aud, davenet.pooled_frames(n_frames, aud.shape[1], models.audio.pooling_ratio)


similarity = jax.jit(matchmap.similarity_matrix, static_argnames=("chunk", "cosine"))


def score_pairs(models, images, aud, frames, cosine: bool):
  """MISA of each caption against each of its own images: images [B,K,R,R,3] in [-1,1], aud
  [B,T',D], frames [B] -> [B,K]. Traced inside the evaluators' jitted batch functions."""
  b, k = images.shape[:2]
  img = models.image(images.reshape((b * k,) + images.shape[2:]))
  rep = lambda v: jnp.repeat(v, k, axis=0)  # sample-major, like images.reshape
  return matchmap.misa(matchmap.matchmap(img, rep(aud), cosine=cosine), rep(frames)).reshape(b, k)


def positive_ranks(pos, neg) -> np.ndarray:
  """Rank (0 = first) of each positive among its negatives: pos [N], neg [N,K] -> int [N].

  Ties count against the positive (a negative scoring equal ranks before it), as retrieval.ranks
  does, so a model that scores everything alike is at chance or below, never perfect.
  """
  pos, neg = np.asarray(pos), np.asarray(neg)
  return (neg >= pos[:, None]).sum(axis=1)


def recall_at(ranks, ks) -> dict:
  """{'r{k}': fraction of ranks < k}; NaN when there are no ranks."""
  ranks = np.asarray(ranks)
  return {f"r{k}": float(np.mean(ranks < k)) if ranks.size else float("nan") for k in ks}


def to_jsonable(x):
  """Nested dicts / lists / numpy values -> plain JSON values; NaN and inf become None."""
  if isinstance(x, dict):
    return {str(k): to_jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [to_jsonable(v) for v in x]
  if isinstance(x, np.ndarray):
    return to_jsonable(x.tolist())
  if isinstance(x, (bool, np.bool_)):
    return bool(x)
  if isinstance(x, (int, np.integer)):
    return int(x)
  if isinstance(x, (float, np.floating)):
    return float(x) if math.isfinite(x) else None
  return x


def write_json(path: str, obj: dict):
  """Writes obj (made JSON-able) to path, creating the folder."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path, "w") as f:
    json.dump(to_jsonable(obj), f, indent=1)
