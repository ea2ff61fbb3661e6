"""The reference's generator files convert to our Generator: images, every named layer and an
intervened output against a PyTorch forward written here from the file's key layout (pixel norm,
conv scaled by gain / sqrt(in * k * k), bias, leaky ReLU 0.2, nearest 2x up; output gain 1);
old-style names, the {'state_dict': ...} wrapper and DataParallel's prefix; a missing key and a
wrong shape fail naming the key."""
import math

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import nnx

from learning_words.common import checkpoints
from learning_words.convert import reference_generator as ref_gen, torch_files
from learning_words.models import generator as gen_lib

SIZES = (12, 16, 8, 6)  # z 12; 4x4 16, 8x8 8, 16x16 6: every width differs -> 16 px


def reference_file(sizes=SIZES, seed=0) -> dict:
  """Random weights in the reference's key layout (torch tensors)."""
  g = torch.Generator().manual_seed(seed)
  out, n = {}, 2 * (len(sizes) - 1)
  for i in range(n):
    cin = sizes[0] if i == 0 else sizes[1 + (i - 1) // 2]
    cout, k = sizes[1 + i // 2], 4 if i == 0 else 3
    out[f"layer{i + 1}.conv.weight"] = torch.randn(cout, cin, k, k, generator=g)
    out[f"layer{i + 1}.wscale.b"] = 0.1 * torch.randn(cout, generator=g)
  res = 4 * 2 ** (len(sizes) - 2)
  out[f"output_{res}x{res}.conv.weight"] = torch.randn(3, sizes[-1], 1, 1, generator=g)
  out[f"output_{res}x{res}.wscale.b"] = 0.1 * torch.randn(3, generator=g)
  return out


def oracle(state: dict, z, intervene=None):
  """({layer: activation NHWC}, image NHWC) of the reference generator, in torch."""
  x = torch.from_numpy(np.asarray(z))[:, :, None, None]
  acts, i = {}, 0
  norm = lambda x: x / torch.sqrt(torch.mean(x ** 2, dim=1, keepdim=True) + 1e-8)
  while f"layer{i + 1}.conv.weight" in state:
    w, b = state[f"layer{i + 1}.conv.weight"], state[f"layer{i + 1}.wscale.b"]
    x = norm(x)
    if i >= 2 and i % 2 == 0:
      x = F.interpolate(x, scale_factor=2, mode="nearest")
    k = w.shape[-1]
    x = F.conv2d(x, w, padding=3 if i == 0 else 1) * (math.sqrt(2) / math.sqrt(w.shape[1] * k * k))
    x = F.leaky_relu(x + b[None, :, None, None], 0.2)
    name = f"layer{i + 1}"
    if intervene and intervene[0] == name:
      a, r = (torch.from_numpy(np.asarray(v)) for v in intervene[1:])
      x = x * (1 - a.permute(0, 3, 1, 2)) + a.permute(0, 3, 1, 2) * r[None, :, None, None]
    acts[name] = x.permute(0, 2, 3, 1).numpy()
    i += 1
  out = next(k for k in state if k.startswith("output_") and k.endswith("conv.weight"))
  w, b = state[out], state[out.replace("conv.weight", "wscale.b")]
  y = F.conv2d(norm(x), w) / math.sqrt(w.shape[1]) + b[None, :, None, None]
  return acts, torch.clamp(y, -1, 1).permute(0, 2, 3, 1).numpy()


def rel_err(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def test_converted_generator_matches_the_reference_forward(tmp_path):
  state = reference_file()
  path = str(tmp_path / "generator.pth")
  torch.save(state, path)
  folder = str(tmp_path / "converted")
  assert ref_gen.convert(path, folder) == SIZES  # widths read from the shapes
  assert ref_gen.read_sizes(folder) == SIZES
  g = checkpoints.restore_weights(lambda: gen_lib.Generator(SIZES, rngs=nnx.Rngs(1)), folder)
  z = gen_lib.standard_z(5, SIZES[0])
  acts, image = oracle(state, z)
  assert rel_err(g(jnp.asarray(z)), image) < 1e-4
  ours = g.features(jnp.asarray(z), list(acts))
  assert set(ours) == {f"layer{i}" for i in range(1, 7)}
  for name in acts:
    assert rel_err(ours[name], acts[name]) < 1e-4, name
  # An intervention at layer4 (8x8): half the units ablated to fixed values in a corner.
  rng = np.random.default_rng(0)
  a = np.zeros((5, 8, 8, 8), np.float32)
  a[:, :4, :4, ::2] = 1.0
  r = rng.normal(size=8).astype(np.float32)
  _, intervened = oracle(state, z, ("layer4", a, r))
  got = g(jnp.asarray(z), interventions={"layer4": (jnp.asarray(a), jnp.asarray(r))})
  assert rel_err(got, intervened) < 1e-4
  assert rel_err(intervened, image) > 1e-3  # the edit changed the image


def test_old_names_wrapper_and_prefix_convert_alike(tmp_path):
  state = reference_file(seed=1)
  z = jnp.asarray(gen_lib.standard_z(3, SIZES[0]))
  want = np.asarray(ref_gen.to_generator(torch_files.unwrap(state))(z))
  old = {}
  for key, value in state.items():
    if key.startswith("layer"):
      n, rest = key[len("layer"):].split(".", 1)
      old[f"features.{int(n) - 1}.{rest}"] = value
    else:
      old["output." + key.split(".", 1)[1]] = value
  variants = {"old": old, "wrapped": {"state_dict": state},
              "prefixed": {"module." + k: v for k, v in state.items()}}
  for name, obj in variants.items():
    path = str(tmp_path / f"{name}.pth")
    torch.save(obj, path)
    got = ref_gen.to_generator(torch_files.read_state_dict(path), path)
    assert got.sizes == SIZES, name
    np.testing.assert_array_equal(np.asarray(got(z)), want, err_msg=name)


def test_missing_key_and_wrong_shape_name_the_key(tmp_path):
  state = torch_files.unwrap(reference_file())
  missing = {k: v for k, v in state.items() if k != "layer3.wscale.b"}
  with pytest.raises(torch_files.ConversionError, match="missing key 'layer3.wscale.b'"):
    ref_gen.to_generator(missing, "g.pth")
  wrong = dict(state)
  wrong["layer4.conv.weight"] = np.zeros((8, 8, 3, 1), np.float32)
  with pytest.raises(torch_files.ConversionError, match=r"'layer4.conv.weight' has shape \(8, 8, 3, "
                     r"1\), expected \(8, 8, 3, 3\)"):
    ref_gen.to_generator(wrong, "g.pth")
  extra = dict(state, **{"layer2.conv.bias": np.zeros(16, np.float32)})
  with pytest.raises(torch_files.ConversionError, match="unknown keys.*layer2.conv.bias"):
    ref_gen.to_generator(extra, "g.pth")
  path = str(tmp_path / "not_a_model.pth")
  with open(path, "w") as f:
    f.write("hello")
  with pytest.raises(torch_files.ConversionError, match="not_a_model.pth: not a readable"):
    torch_files.read_state_dict(path)
