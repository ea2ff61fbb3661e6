"""The reference's Progressive GAN (`generator.pth`) -> our `models.generator.Generator` weights.

Reference keys: `layer{i}.conv.weight` [out, in, k, k] (layer1 k = 4 on the 1x1 z map, padding 3;
the rest 3x3), `layer{i}.wscale.b` [out], `output_RxR.conv.weight` [3, in, 1, 1] and
`output_RxR.wscale.b`; older files name the layers `features.{i-1}` and the output `output`.
The equalised-lr scale gain / sqrt(fan_in) is computed by both implementations, never stored,
so a conv weight maps to our HWIO kernel by a transpose and `wscale.b` to the bias. The widths
[z_dim, depth@4x4, depth@8x8, ...] follow from the weight shapes.
"""
import hashlib
import os
import re

import jax.numpy as jnp
from flax import nnx

from learning_words.common import checkpoints, jsonio
from learning_words.convert import torch_files
from learning_words.models import generator as gen_lib

SIZES_FILE = "sizes.json"  # beside the converted weights: the widths read from the file


def rename_old(state: dict) -> dict:
  """Older names (`features.{i}.*`, `output.*`) -> `layer{i+1}.*`, `output_RxR.*`."""
  if not any(k.startswith("features.") for k in state):
    return state
  out, n = {}, 0
  for key, value in state.items():
    m = re.fullmatch(r"features\.(\d+)\.(.*)", key)
    if m:
      out[f"layer{int(m.group(1)) + 1}.{m.group(2)}"] = value
      n = max(n, int(m.group(1)) + 1)
    elif not key.startswith("output."):
      out[key] = value
  res = gen_lib.resolution_of([0] * (n // 2 + 1))
  for key, value in state.items():
    if key.startswith("output."):
      out[f"output_{res}x{res}.{key[len('output.'):]}"] = value
  return out


def sizes_of(state: dict, path: str = "") -> tuple:
  """[z_dim, depth@4x4, depth@8x8, ...] from the conv weights' shapes."""
  sizes, i = [], 0
  while f"layer{i + 1}.conv.weight" in state:
    w = state[f"layer{i + 1}.conv.weight"]
    if w.ndim != 4:
      raise torch_files.ConversionError(f"{path}: key 'layer{i + 1}.conv.weight' has shape "
                                        f"{tuple(w.shape)}, expected [out, in, k, k]")
    if i == 0:
      sizes.append(int(w.shape[1]))
    if i % 2 == 0:
      sizes.append(int(w.shape[0]))
    i += 1
  if i < 2 or i % 2:
    raise torch_files.ConversionError(
        f"{path}: found conv weights for layers 1..{i}; a Progressive GAN generator has an even "
        "number (two per resolution), from key 'layer1.conv.weight' on")
  return tuple(sizes)


def to_generator(state: dict, path: str = "") -> gen_lib.Generator:
  """Our Generator holding the reference state dict's weights (every key used, every shape
  checked; the message names the key)."""
  state = dict(rename_old(state))
  sizes = sizes_of(state, path)
  g = gen_lib.Generator(sizes, rngs=nnx.Rngs(0))
  res = gen_lib.resolution_of(sizes)
  convs = [(f"layer{i + 1}", block.conv) for i, block in enumerate(g.blocks)]
  convs.append((f"output_{res}x{res}", g.output.conv))
  for name, conv in convs:
    kh, kw, cin, cout = conv.kernel.shape
    w = torch_files.take(state, f"{name}.conv.weight", (cout, cin, kh, kw), path)
    conv.kernel[...] = jnp.asarray(w.transpose(2, 3, 1, 0))  # [out,in,kh,kw] -> HWIO
    conv.bias[...] = jnp.asarray(torch_files.take(state, f"{name}.wscale.b", (cout,), path))
  torch_files.check_consumed(state, path)
  return g


def _source(path: str) -> dict:
  """What identifies the file a folder was converted from: its path and the hash of its bytes."""
  h = hashlib.sha1()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return {"source": os.path.abspath(path), "sha1": h.hexdigest()}


def convert(path: str, out_dir: str) -> tuple:
  """Writes the generator of reference file `path` to `out_dir` (our weights folder, plus
  sizes.json with the widths and the source file); returns its sizes."""
  g = to_generator(torch_files.read_state_dict(path), path)
  checkpoints.save_weights(out_dir, g)
  jsonio.write_json(os.path.join(out_dir, SIZES_FILE), {"sizes": list(g.sizes), **_source(path)})
  return g.sizes


def converted_from(folder: str, path: str) -> bool:
  """Whether `folder` holds the conversion of the file at `path` as it is now."""
  saved = jsonio.read_json(os.path.join(folder, SIZES_FILE))
  if not saved or not os.path.isfile(path):
    return False
  return all(saved.get(k) == v for k, v in _source(path).items())


def read_sizes(folder: str) -> tuple | None:
  """The sizes a converted folder's generator was built with (None: not a converted folder)."""
  saved = jsonio.read_json(os.path.join(folder, SIZES_FILE))
  return tuple(int(s) for s in saved["sizes"]) if saved else None

