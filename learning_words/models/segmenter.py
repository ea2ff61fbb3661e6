"""The attribute segmenter: per pixel, shape / colour / size / material (class 0 = background).

Why: the paper labels GAN images with a segmenter trained on ground-truth renders, to write their
captions and to pick test images that contain an attribute. A small 2-level U-Net suffices for the
synthetic world. Two coordinate channels (x, y in [-1, 1]) join the image because an object's size
on screen depends on its row under perspective, which a translation-invariant net cannot see.

BatchNorm: training uses batch statistics (the default mode); evaluation must use the running
averages, e.g. `nnx.view(seg, use_running_average=True)` (as `predict` does) or `seg.eval()`.
"""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from learning_words.common import batching
from learning_words.data.vocabulary import ATTRIBUTES, VOCAB
from learning_words.models import layers


def crop_coordinates(offsets, size: int, res: int) -> np.ndarray:
  """The coordinates [B, size, size, 2] of square crops of R px images whose top-left pixels are
  offsets [B, 2] (row, column): each crop keeps its place in the whole image, so a net trained on
  crops sees the rows (and the perspective) it will see on whole images."""
  t = (np.arange(res, dtype=np.float32) + 0.5) / res * 2.0 - 1.0
  offsets = np.asarray(offsets)
  span = np.arange(size)
  y = t[offsets[:, :1] + span]  # [B, size]
  x = t[offsets[:, 1:] + span]
  return np.stack(np.broadcast_arrays(x[:, None, :], y[:, :, None]), axis=-1)


def make_coordinates(batch: int, res: int) -> jax.Array:
  """Pixel-centre coordinates [B, R, R, 2] (x = column, y = row), each in [-1, 1]: the crop of the
  whole image."""
  return jnp.asarray(crop_coordinates(np.zeros((batch, 2), np.int64), res, res))


class ConvBlock(nnx.Module):
  """Two 3x3 conv -> BatchNorm -> ReLU layers: [B,h,w,cin] -> [B,h,w,cout]."""

  def __init__(self, cin: int, cout: int, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(cin, cout, (3, 3), use_bias=False, rngs=rngs)
    self.norm1 = nnx.BatchNorm(cout, momentum=0.9, rngs=rngs)
    self.conv2 = nnx.Conv(cout, cout, (3, 3), use_bias=False, rngs=rngs)
    self.norm2 = nnx.BatchNorm(cout, momentum=0.9, rngs=rngs)

  def __call__(self, x):
    x = jax.nn.relu(self.norm1(self.conv1(x)))
    return jax.nn.relu(self.norm2(self.conv2(x)))


class Segmenter(nnx.Module):
  """U-Net with two poolings (R -> R/2 -> R/4) and one 1x1 head per attribute.

  widths: channels at R, R/2 and R/4. Works for any R divisible by 4.
  """

  def __init__(self, widths=(16, 32, 64), *, rngs: nnx.Rngs):
    w0, w1, w2 = widths
    self.enc0 = ConvBlock(3 + 2, w0, rngs=rngs)
    self.enc1 = ConvBlock(w0, w1, rngs=rngs)
    self.mid = ConvBlock(w1, w2, rngs=rngs)
    self.dec1 = ConvBlock(w2 + w1, w1, rngs=rngs)
    self.dec0 = ConvBlock(w1 + w0, w0, rngs=rngs)
    self.heads = nnx.Dict({a: nnx.Conv(w0, 1 + len(VOCAB[a]), (1, 1), rngs=rngs)
                           for a in ATTRIBUTES})

  def __call__(self, images, coordinates=None) -> dict:
    """images [B,R,R,3] in [-1,1] -> {attr: logits [B,R,R,1+len(VOCAB[attr])]}. coordinates
    [B,R,R,2]: where the pixels lie in the whole image (default: the images are whole)."""
    b, res = images.shape[0], images.shape[1]
    if res % 4 or images.shape[2] != res:
      raise ValueError(f"need square images with a side divisible by 4, got {images.shape}")
    if coordinates is None:
      coordinates = make_coordinates(b, res)
    x = jnp.concatenate([images, coordinates.astype(images.dtype)], axis=-1)
    f0 = self.enc0(x)
    f1 = self.enc1(layers.max_pool2x2(f0))
    f2 = self.mid(layers.max_pool2x2(f1))
    u1 = self.dec1(jnp.concatenate([layers.upsample2x(f2), f1], axis=-1))
    u0 = self.dec0(jnp.concatenate([layers.upsample2x(u1), f0], axis=-1))
    return {a: self.heads[a](u0) for a in ATTRIBUTES}


def to_float(images):
  """uint8 images -> float32 in [-1, 1]; float images are taken to be in [-1, 1] already."""
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 127.5 - 1.0
  return images.astype(jnp.float32)


@nnx.jit
def _predict_batch(seg, images):
  """Labels of one batch: float images [B,R,R,3] -> {attr: int32 [B,R,R]} (seg in eval mode)."""
  logits = seg(images)
  return {a: jnp.argmax(logits[a], -1).astype(jnp.int32) for a in ATTRIBUTES}


def predict(seg: Segmenter, images, batch_size: int = 256) -> dict:
  """images [B,R,R,3] (uint8, or float in [-1,1]) -> {attr: numpy int32 labels [B,R,R]}.

  Runs in eval mode (BatchNorm running averages) in jitted batches of a fixed size (the last one
  padded) of float images, so any B and either dtype compile once.
  """
  n = images.shape[0]
  if not n:
    return {a: np.zeros((0,) + tuple(images.shape[1:3]), np.int32) for a in ATTRIBUTES}
  view = nnx.view(seg, use_running_average=True)
  labels = batching.map_batches(lambda x: _predict_batch(view, to_float(x)), (images,),
                                max(1, min(batch_size, n)))
  return {a: np.asarray(v) for a, v in labels.items()}


def foreground(maps: dict) -> np.ndarray:
  """Object pixels bool [P,R,R] of label maps {attr: [P,R,R]}: at least half the heads call the
  pixel an object (world/parse.py's rule)."""
  votes = sum((np.asarray(maps[a]) > 0).astype(int) for a in ATTRIBUTES)
  return 2 * votes >= len(ATTRIBUTES)


def to_cells(pixels, grid: int) -> np.ndarray:
  """bool [..., R, R] -> bool [..., grid, grid]: a cell of the feature grid is on when any of its
  pixels is."""
  pixels = np.asarray(pixels)
  r = pixels.shape[-1]
  if r % grid:
    raise ValueError(f"{r} px images do not tile into a {grid}x{grid} grid")
  s = r // grid
  return pixels.reshape(pixels.shape[:-2] + (grid, s, grid, s)).any(axis=(-3, -1))
