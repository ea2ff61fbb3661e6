"""Progressive GAN building blocks (equalised-learning-rate convolutions, pixel norm) and the
max pools the encoders and the segmenter share.

Weights are drawn from N(0, 1) and scaled at run time by gain / sqrt(fan_in) (equalised learning
rate, Karras et al. 2018). The scale is kept as a non-trained `WScale` variable, computed at build
time; the reference's files do not store it either (it computes the same gain / sqrt(fan_in)), so
their weights convert one to one (learning_words/convert/reference_generator.py).
"""
import math

import jax
import jax.numpy as jnp
from flax import nnx


class WScale(nnx.Variable):
  """A per-layer constant (not trained, not in the optimizer)."""


def pixel_norm(x, eps=1e-8):
  """Normalises each position's feature vector to unit RMS over channels. x: [..., C]."""
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


def upsample2x(x):
  """Nearest-neighbour 2x upsampling. x: [B, h, w, C] -> [B, 2h, 2w, C]."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def downsample2x(x):
  """2x2 average pooling. x: [B, h, w, C] -> [B, h/2, w/2, C]."""
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def max_pool2x2(x):
  """2x2 max pooling, stride 2. x: [B, h, w, C] -> [B, h//2, w//2, C] (an odd last row or column
  is dropped, as VALID pooling does).

  Two pairwise selects (rows, then columns) rather than `nnx.max_pool`: the same values, and a
  gradient without select-and-scatter (on CPU, for a 32 px batch of 32, nnx.max_pool took 4.2 ms
  forward and backward, a reshape and max 1.2 ms, these selects under half of that). Each window's
  cotangent goes to one element (on a tie, the first of the pair) and nothing divides:
  `jnp.max`'s gradient divides it by the count of the window's elements equal to the maximum, and
  compiled at LLVM's optimisation level 0 that gave NaN gradients in the segmenter's sharded step
  (the same count guarded against 0 gave finite ones)."""
  b, h, w, c = x.shape
  x = x[:, :h // 2 * 2, :w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2, c)
  rows = _first_max(x[:, :, 0], x[:, :, 1])  # [B, h/2, w/2, 2, C]
  return _first_max(rows[..., 0, :], rows[..., 1, :])


def _first_max(a, b):
  """max(a, b) elementwise, its gradient going to a where a >= b and to b elsewhere."""
  return jnp.where(a >= b, a, b)


class EqConv(nnx.Module):
  """Conv (NHWC, HWIO kernel) with equalised learning rate and a bias added after the scale."""

  def __init__(self, cin: int, cout: int, kernel: int, *, rngs: nnx.Rngs, padding=None,
               gain: float = math.sqrt(2.0)):
    self.kernel = nnx.Param(jax.random.normal(rngs.params(), (kernel, kernel, cin, cout)))
    self.bias = nnx.Param(jnp.zeros((cout,)))
    self.scale = WScale(jnp.asarray(gain / math.sqrt(cin * kernel * kernel), jnp.float32))
    pad = kernel // 2 if padding is None else padding
    self.padding = ((pad, pad), (pad, pad))

  def __call__(self, x):
    y = jax.lax.conv_general_dilated(
        x, self.kernel[...] * self.scale[...], (1, 1), self.padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + self.bias[...]


class EqDense(nnx.Module):
  """Dense layer with equalised learning rate."""

  def __init__(self, cin: int, cout: int, *, rngs: nnx.Rngs, gain: float = math.sqrt(2.0)):
    self.kernel = nnx.Param(jax.random.normal(rngs.params(), (cin, cout)))
    self.bias = nnx.Param(jnp.zeros((cout,)))
    self.scale = WScale(jnp.asarray(gain / math.sqrt(cin), jnp.float32))

  def __call__(self, x):
    return x @ (self.kernel[...] * self.scale[...]) + self.bias[...]
