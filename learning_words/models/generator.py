"""Progressive GAN generator with named layers and unit interventions (the frozen draughtsman).

`sizes = [z_dim, depth@4x4, depth@8x8, ...]` as in the reference: resolution 4 * 2**(len(sizes)-2).
Layers follow the Progressive GAN naming so official weights convert one to one:
  layer1   pixel norm(z) -> 4x4 conv (padding 3) on the 1x1 input -> 4x4      (depth@4)
  layer2   pixel norm -> 3x3 conv                                  4x4      (depth@4)
  layer3   pixel norm -> nearest 2x up -> 3x3 conv                 8x8      (depth@8)
  layer4   pixel norm -> 3x3 conv                                  8x8      (depth@8)
  ...      (two layers per resolution)
  output   pixel norm -> 1x1 conv to RGB (gain 1, no activation)
Every conv has an equalised learning rate and, but for the output, a leaky ReLU (0.2).

An intervention at a layer is `(a[B,h,w,C] in [0,1], r[C])` applied to the layer's output as
`x * (1 - a) + a * r`. Masks should be binary at the layer's resolution: the next pixel norm undoes
a uniform fractional scaling of all channels at a position.
"""
import numpy as np
import jax
import jax.numpy as jnp
from flax import nnx

from learning_words.models import layers


def resolution_of(sizes) -> int:
  return 4 * 2 ** (len(sizes) - 2)


def layer_names(sizes) -> list[str]:
  """Names of the intervenable layers, in order."""
  return [f"layer{i + 1}" for i in range(2 * (len(sizes) - 1))]


def layer_shapes(sizes) -> dict[str, tuple[int, int, int]]:
  """{layer name: (h, w, C)} of each layer's output."""
  out = {}
  for i, name in enumerate(layer_names(sizes)):
    res = 4 * 2 ** (i // 2)
    out[name] = (res, res, sizes[1 + i // 2])
  return out


def standard_z(n: int, z_dim: int, seed: int = 1) -> np.ndarray:
  """The reference's fixed z matrix: RandomState(seed).standard_normal(n*z_dim) as (n, z_dim).

  Row i is the same whatever n, so file id i always draws the same image.
  """
  return np.random.RandomState(seed).standard_normal(n * z_dim).reshape(n, z_dim).astype(np.float32)


def latent_table(latents, n_z: int, z_dim: int) -> np.ndarray:
  """The latent table the pairs' z_index rows index: a world's inverted latents [n, Z] when
  given, else the reference's fixed z matrix (n_z rows, at least one)."""
  if latents is not None:
    return np.asarray(latents, np.float32)
  return standard_z(max(n_z, 1), z_dim)


class GenLayer(nnx.Module):
  """pixel norm -> (optional 2x up) -> equalised conv -> leaky ReLU."""

  def __init__(self, cin, cout, kernel, *, rngs, upsample=False, padding=None):
    self.conv = layers.EqConv(cin, cout, kernel, rngs=rngs, padding=padding)
    self.upsample = upsample

  def __call__(self, x):
    x = layers.pixel_norm(x)
    if self.upsample:
      x = layers.upsample2x(x)
    return jax.nn.leaky_relu(self.conv(x), 0.2)


class OutputLayer(nnx.Module):
  """pixel norm -> 1x1 equalised conv to RGB (gain 1), no activation."""

  def __init__(self, cin, *, rngs):
    self.conv = layers.EqConv(cin, 3, 1, rngs=rngs, gain=1.0)

  def __call__(self, x):
    return self.conv(layers.pixel_norm(x))


class Generator(nnx.Module):
  """G(z[B, z_dim]) -> images [B, R, R, 3] in [-1, 1]."""

  def __init__(self, sizes, *, rngs: nnx.Rngs):
    self.sizes = tuple(int(s) for s in sizes)
    self.names = layer_names(self.sizes)
    blocks = [GenLayer(self.sizes[0], self.sizes[1], 4, rngs=rngs, padding=3),
              GenLayer(self.sizes[1], self.sizes[1], 3, rngs=rngs)]
    for prev, depth in zip(self.sizes[1:-1], self.sizes[2:]):
      blocks.append(GenLayer(prev, depth, 3, rngs=rngs, upsample=True))
      blocks.append(GenLayer(depth, depth, 3, rngs=rngs))
    self.blocks = nnx.List(blocks)
    self.output = OutputLayer(self.sizes[-1], rngs=rngs)

  def _run(self, x, start: int, interventions, keep=()):
    kept = {}
    for i in range(start, len(self.names)):
      x = self.blocks[i](x)
      name = self.names[i]
      if interventions and name in interventions:
        a, r = interventions[name]
        x = x * (1.0 - a) + a * r
      if name in keep:
        kept[name] = x
    return x, kept

  def _to_image(self, x):
    y = self.output(x)
    # Clipped to [-1, 1] with a straight-through gradient, so GAN training still sees the slope.
    return y + jax.lax.stop_gradient(jnp.clip(y, -1.0, 1.0) - y)

  def __call__(self, z, interventions=None):
    x, _ = self._run(z[:, None, None, :], 0, interventions)
    return self._to_image(x)

  def features(self, z, names, interventions=None) -> dict:
    """{name: activation [B, h, w, C]} of the named layers (after any intervention there)."""
    _, kept = self._run(z[:, None, None, :], 0, interventions, keep=tuple(names))
    return kept

  def render_from(self, name: str, x, interventions=None):
    """Images from layer `name`'s output x (interventions at later layers only): the negatives
    reuse the positive pass up to the intervention layer and recompute only what follows."""
    x, _ = self._run(x, self.names.index(name) + 1, interventions)
    return self._to_image(x)
