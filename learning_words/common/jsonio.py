"""JSON files: numpy values made plain, NaN written as null, writes atomic (a killed run never
leaves half a file)."""
import json
import math
import os
import socket

import numpy as np


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


def write_json(path: str, obj) -> str:
  """Writes obj (made JSON-able) to path, creating the folder; returns path."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = f"{path}.{socket.gethostname()}.{os.getpid()}.tmp"  # several processes may write it
  with open(tmp, "w") as f:
    json.dump(to_jsonable(obj), f, indent=1, default=str)
  os.replace(tmp, path)
  return path


def read_json(path: str, default=None):
  """A JSON file's content, or `default` ({} if None) when the file does not exist."""
  if not os.path.isfile(path):
    return {} if default is None else default
  with open(path) as f:
    return json.load(f)
