"""Reading the reference's PyTorch files as numpy state dicts (PyTorch only here, imported lazily:
it is an optional extra, `pip install -e .[torch]`, needed for conversion and nothing else).

A state dict may come wrapped (`{'state_dict': ...}` for generators, `{'model_state_dict': ...}`
in the reference trainer's `model_best_<name>.pth.tar`) and with DataParallel's `module.` prefix.
"""
import os

import numpy as np

from learning_words.common import errors

WRAPPERS = ("state_dict", "model_state_dict")
PREFIX = "module."


class ConversionError(errors.InputError):
  """A reference file does not hold what the converter expects; the message names the key."""


def load(path: str) -> dict:
  """The file's top-level object (a dict), read on the CPU without running pickled code."""
  if not os.path.isfile(path):
    raise errors.MissingError(f"{path}: no such file")
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise errors.InputError("converting the reference's files needs PyTorch: pip install -e "
                            "'.[torch]' (CPU wheel: --index-url "
                            "https://download.pytorch.org/whl/cpu)") from e
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except TypeError as e:  # torch.load without weights_only: an old PyTorch
    raise errors.InputError(f"reading {path} needs PyTorch >= 1.13 (torch.load(weights_only=True))"
                            f"; this one is {torch.__version__}") from e
  except Exception as e:  # pickle, zip or torch errors: all mean "not a readable state dict"
    raise ConversionError(f"{path}: not a readable PyTorch state dict ({e})") from e
  if not isinstance(obj, dict):
    raise ConversionError(f"{path}: holds a {type(obj).__name__}, not a state dict")
  return obj


def unwrap(obj: dict, path: str = "") -> dict:
  """{key: float32 numpy array}: the state dict inside a wrapper, `module.` prefixes dropped;
  integer counters (BatchNorm's num_batches_tracked) kept as they are."""
  for key in WRAPPERS:
    if key in obj and isinstance(obj[key], dict):
      obj = obj[key]
      break
  out = {}
  for key, value in obj.items():
    if not hasattr(value, "shape"):
      raise ConversionError(f"{path}: key {key!r} is not a tensor ({type(value).__name__})")
    name = key[len(PREFIX):] if key.startswith(PREFIX) else key
    try:
      if hasattr(value, "detach"):  # a tensor; bfloat16 / float16 go through float32
        value = value.detach().cpu()
        value = value.float() if value.is_floating_point() else value
      array = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
    except (TypeError, RuntimeError) as e:
      raise ConversionError(f"{path}: key {key!r} cannot be read as an array ({e})") from e
    out[name] = array if array.dtype.kind in "iub" else array.astype(np.float32)
  return out


def read_state_dict(path: str) -> dict:
  """load + unwrap: the file's state dict as numpy arrays."""
  return unwrap(load(path), path)


def take(state: dict, key: str, shape, path: str, hint: str = "") -> np.ndarray:
  """state[key] (removed from state) after checking its shape; a missing key or a wrong shape
  fails naming the key."""
  if key not in state:
    raise ConversionError(f"{path}: missing key {key!r}{hint}")
  value = state.pop(key)
  if tuple(value.shape) != tuple(shape):
    raise ConversionError(f"{path}: key {key!r} has shape {tuple(value.shape)}, expected "
                          f"{tuple(shape)}{hint}")
  return value


def check_consumed(state: dict, path: str):
  """Fails naming the keys no converter rule took (a different architecture or a wrong file)."""
  left = sorted(k for k in state if not k.endswith("num_batches_tracked"))
  if left:
    raise ConversionError(f"{path}: unknown keys {left[:8]}{' ...' if len(left) > 8 else ''}")
