"""Host arrays through a jitted function in fixed-size batches, and the trainers' batch indices.

The last batch is padded by repeating its last row, so each jitted function is traced once per
shape; host loops run over batches, never over samples.
"""
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm


def map_batches(fn, arrays, batch: int, desc: str | None = None, indexed: bool = False):
  """fn over host arrays (equal leading length) in batches of `batch` rows; returns fn's output
  pytree concatenated over the real rows (device arrays). desc: a progress bar's label (none if
  None). indexed: call fn(batch_index, *arrays) (for per-batch random keys)."""
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
    if desc is not None:  # the bar counts finished batches, not dispatched ones
      jax.block_until_ready(out)
    outs.append(jax.tree.map(lambda o, keep=batch - pad: o[:keep], out))
  return jax.tree.map(lambda *xs: jnp.concatenate(xs), *outs)


def batch_indices(seed: int, step: int, n: int, batch: int) -> np.ndarray:
  """The global batch's indices into n training examples at `step` (a function of seed and step
  only, so a resumed run sees exactly the batches the uninterrupted one would)."""
  return np.random.default_rng([seed, step]).integers(0, n, size=batch)


def host_batch_indices(seed: int, step: int, n: int, batch: int) -> np.ndarray:
  """This host's share of batch_indices(seed, step, n, batch)."""
  per_host = batch // jax.process_count()
  host = jax.process_index()
  return batch_indices(seed, step, n, batch)[host * per_host:(host + 1) * per_host]
