"""Every checkpoint of the project, through Orbax: one manager for every trainer (GAN, segmenter,
encoders), its named items, and single weight folders (the shipped or trained generator and
segmenter).

A trainer's checkpoint is a Composite of named items: an nnx module or optimizer (its nnx.state),
a grain iterator (its position, so a resume reads the same batches), or a dict of arrays. Modules
are restored into the structure they already have (often built with nnx.eval_shape: no random
initialisation runs, which costs seconds of compilation per weight shape on a CPU).
"""
import hashlib
import logging
import os

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from flax import nnx

from learning_words.common import files

FINGERPRINT = "FINGERPRINT"  # in a weights folder: the hash of its values

# Orbax writes a replicated array cooperatively by default: each of R replicas saves 1/R of it,
# cut on the device by an eager slice per array and replica (each new shape compiled once). For
# our weights (kilobytes to a few megabytes per array) that costs more than it saves: with 8 CPU
# devices a save of the tiny encoders ran hundreds of slices. Arrays whose share per replica
# would be under this size are written whole by one replica, as on one device.
REPLICA_PARALLEL_MIN_BYTES = 4 << 20
_absl_logger = logging.getLogger("absl")  # where Orbax warns of the override, on every import
_level = _absl_logger.level
_absl_logger.setLevel(logging.ERROR)
try:
  ocp.type_handlers.register_type_handler(
      jax.Array, ocp.type_handlers.ArrayHandler(
          min_slice_bytes_for_replica_parallel=REPLICA_PARALLEL_MIN_BYTES), override=True)
finally:
  _absl_logger.setLevel(_level)


def make_manager(directory: str, keep: int = 2, best_metric: str | None = None,
                 items=None) -> ocp.CheckpointManager:
  """Keeps the latest `keep` checkpoints, and also the best by metrics[best_metric] (highest)
  when best_metric is given (save with metrics=). items: the item names, when known."""
  if best_metric is None:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
  else:
    metric = lambda m: m[best_metric]
    policy = ocp.checkpoint_managers.AnyPreservationPolicy([
        ocp.checkpoint_managers.LatestN(n=keep),
        ocp.checkpoint_managers.BestN(get_metric_fn=metric, reverse=False, n=1)])
    options = ocp.CheckpointManagerOptions(preservation_policy=policy, create=True,
                                           best_fn=metric, best_mode="max")
  return ocp.CheckpointManager(files.absolute(directory), item_names=items, options=options)


def _is_iterator(x) -> bool:
  return hasattr(x, "get_state") and hasattr(x, "set_state")


def _save_arg(x):
  if _is_iterator(x):
    return grain.checkpoint.CheckpointSave(x)
  if isinstance(x, dict):
    return ocp.args.StandardSave({k: np.asarray(v) for k, v in x.items()})
  return ocp.args.StandardSave(nnx.state(x))


def _abstract(module):
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, nnx.state(module))


def save(manager: ocp.CheckpointManager, step: int, items: dict, metrics: dict | None = None):
  """Saves checkpoint `step` of {name: module, optimizer, grain iterator or dict of arrays}."""
  args = ocp.args.Composite(**{k: _save_arg(v) for k, v in items.items()})
  manager.save(step, args=args, metrics=metrics)


def restore(manager: ocp.CheckpointManager, items: dict, step: int | None = None) -> int:
  """Fills {name: module, optimizer or grain iterator} from checkpoint `step` (default: the
  latest); returns its step, or 0 (nothing restored) when there is no checkpoint."""
  step = manager.latest_step() if step is None else step
  if step is None:
    return 0
  args = {k: grain.checkpoint.CheckpointRestore(v) if _is_iterator(v)
          else ocp.args.StandardRestore(_abstract(v)) for k, v in items.items()}
  restored = manager.restore(step, args=ocp.args.Composite(**args))
  for name, target in items.items():
    if not _is_iterator(target):
      nnx.update(target, restored[name])
  return int(step)


def restore_arrays(manager: ocp.CheckpointManager, step: int, name: str) -> dict | None:
  """The dict of arrays saved as item `name` of checkpoint `step`, or None where it has none."""
  try:
    saved = manager.restore(step, args=ocp.args.Composite(**{name: ocp.args.StandardRestore()}))
  except KeyError:  # no such item in that checkpoint
    return None
  return {k: np.asarray(v) for k, v in saved[name].items()}


def save_weights(path: str, module):
  """Writes a module's nnx.state (weights, batch statistics) to the folder `path`, with the
  hash of their values in path/FINGERPRINT (what names datasets built from them)."""
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(files.absolute(path), nnx.state(module), force=True)
  files.write_bytes(epath.Path(path) / FINGERPRINT, fingerprint_values(nnx.state(module)).encode())


_SHAPES = {}  # key -> (graphdef, state of shapes) of abstract_module


def abstract_module(make, key: str | None = None):
  """The module `make()` builds, as shapes only (nnx.eval_shape: no random initialisation runs),
  a new instance each call. With a `key` (a string of what the shapes depend on), its structure
  is traced once per key in a process: tracing a model's constructor takes about 0.3 s on a CPU,
  and an evaluation or a report restores the same models many times."""
  if key is None:
    return nnx.eval_shape(make)
  if key not in _SHAPES:
    _SHAPES[key] = nnx.split(nnx.eval_shape(make))
  return nnx.merge(*_SHAPES[key], copy=True)  # new Variables: restores never share them


def restore_weights(make, path: str, key: str | None = None):
  """The module `make()` builds, with the weights saved at `path` by save_weights (its shapes
  from abstract_module, traced once per `key`)."""
  module = abstract_module(make, key)
  with ocp.StandardCheckpointer() as ckptr:
    nnx.update(module, ckptr.restore(files.absolute(path), _abstract(module)))
  return module


def fingerprint_values(*trees) -> str:
  """Short hash of the values of pytrees of arrays (e.g. weights in hand)."""
  h = hashlib.sha1()
  for tree in trees:
    for leaf in jax.tree.leaves(tree):
      h.update(np.asarray(leaf).tobytes())
  return h.hexdigest()[:8]


def fingerprint_folders(*paths, extra=()) -> str:
  """Short hash of weight folders (and `extra` values), read without loading the weights: each
  folder's FINGERPRINT (the hash of its values, written by save_weights), else the hash of its
  files (Orbax names its data files anew at each save, so that fallback is only for folders
  that are never rewritten, e.g. weights shipped before FINGERPRINT existed)."""
  h = hashlib.sha1()
  for path in paths:
    mark = epath.Path(path) / FINGERPRINT
    if mark.is_file():
      h.update(mark.read_bytes())
      continue
    for root, dirs, files in os.walk(path):
      dirs.sort()
      for name in sorted(files):
        full = os.path.join(root, name)
        h.update(os.path.relpath(full, path).encode())
        with open(full, "rb") as f:
          h.update(f.read())
  h.update(repr(tuple(extra)).encode())
  return h.hexdigest()[:8]
