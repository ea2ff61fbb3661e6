"""JSON files, local or on a bucket: numpy values made plain, NaN written as null, never half a
file (common/files.write_bytes)."""
import json
import math

import numpy as np
from etils import epath

from learning_words.common import files


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


def write_json(path, obj):
  """Writes obj (made JSON-able) to path, creating the folder; returns path."""
  files.write_bytes(path, json.dumps(to_jsonable(obj), indent=1, default=str).encode())
  return path


def read_json(path: str, default=None):
  """A JSON file's content, or `default` ({} if None) when the file does not exist."""
  p = epath.Path(path)
  if not p.is_file():
    return {} if default is None else default
  return json.loads(p.read_text())
