"""Progressive GAN discriminator (and the VAE-GAN encoder that shares its trunk).

`sizes = [depth@4x4, depth@8x8, ..., depth@R]` (the generator's sizes[1:], usually narrower):
fromRGB 1x1 conv at R, then per resolution two 3x3 convs and 2x average pooling down to 4x4, then
minibatch standard deviation (one extra channel), a 3x3 conv, and two dense layers to `out` values
(1 logit for the discriminator; 2 * z_dim for the encoder's mean and log-variance).
"""
import jax
import jax.numpy as jnp
from flax import nnx

from learning_words.models import layers


def minibatch_stddev(x, group: int = 4):
  """Appends the mean over features of the within-group std as one channel. x: [B,h,w,C]."""
  b, h, w, c = x.shape
  g = min(group, b)
  if b % g:
    g = 1
  y = x.reshape(g, b // g, h, w, c)
  std = jnp.sqrt(jnp.var(y, axis=0) + 1e-8)            # [B/g, h, w, C]
  s = jnp.mean(std, axis=(1, 2, 3))                    # [B/g]
  s = jnp.tile(s, g)[:, None, None, None]              # [B, 1, 1, 1] (group member b -> b % (B/g))
  return jnp.concatenate([x, jnp.broadcast_to(s, (b, h, w, 1))], axis=-1)


class Discriminator(nnx.Module):
  """images [B, R, R, 3] in [-1, 1] -> [B, out]."""

  def __init__(self, sizes, *, rngs: nnx.Rngs, out: int = 1, stddev: bool = True):
    sizes = tuple(int(s) for s in sizes)
    self.from_rgb = layers.EqConv(3, sizes[-1], 1, rngs=rngs)
    convs = []
    for hi, lo in zip(sizes[::-1][:-1], sizes[::-1][1:]):  # R .. 8: depth hi -> lo, then pool
      convs.append(layers.EqConv(hi, hi, 3, rngs=rngs))
      convs.append(layers.EqConv(hi, lo, 3, rngs=rngs))
    self.convs = nnx.List(convs)
    self.stddev = stddev
    d = sizes[0]
    self.final_conv = layers.EqConv(d + int(stddev), d, 3, rngs=rngs)
    self.dense = layers.EqDense(16 * d, d, rngs=rngs)
    self.head = layers.EqDense(d, out, rngs=rngs, gain=1.0)

  def __call__(self, x):
    act = lambda v: jax.nn.leaky_relu(v, 0.2)
    x = act(self.from_rgb(x))
    for i in range(0, len(self.convs), 2):
      x = act(self.convs[i + 1](act(self.convs[i](x))))
      x = layers.downsample2x(x)
    if self.stddev:
      x = minibatch_stddev(x)
    x = act(self.final_conv(x))
    x = act(self.dense(x.reshape(x.shape[0], -1)))
    return self.head(x)
