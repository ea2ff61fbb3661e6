"""The trained pair of encoders, and the passes every phase makes through them: embedding pairs
whose images the frozen generator draws from z (training, validation, evaluation, concepts).

The generator's images are always drawn through the intervention layer (G's features at `layer`,
then the rest of G), exactly as in the train step, so an image embedded anywhere is the image
trained on.
"""
import functools

import jax
import jax.numpy as jnp
from flax import nnx

from learning_words.common import batching, errors
from learning_words.models import davenet
from learning_words.models.segmenter import to_float


COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(cfg):
  """config.model.dtype -> the encoders' convolution dtype (parameters stay float32)."""
  name = cfg.get("dtype", "float32")
  if name not in COMPUTE_DTYPES:
    raise errors.ConfigError(f"--config.model.dtype={name!r}: choose one of "
                             f"{sorted(COMPUTE_DTYPES)}")
  return COMPUTE_DTYPES[name]


class Encoders(nnx.Module):
  """The trained models: image and speech encoders (config.model). Their convolutions compute in
  config.model.dtype (bfloat16 for accelerators); parameters, the speech BatchNorm and the
  embeddings (hence matchmaps and losses) stay float32."""

  def __init__(self, cfg, *, rngs: nnx.Rngs):
    dtype = compute_dtype(cfg)
    self.image = davenet.ImageEncoder(cfg.image_widths, cfg.embed_dim, rngs=rngs,
                                      pools=cfg.image_pools, dtype=dtype,
                                      padding=cfg.get("image_padding", "zeros"),
                                      depths=cfg.get("image_depths", davenet.VGG16_DEPTHS),
                                      embed_kernel=cfg.get("image_embed_kernel", 3))
    self.audio = davenet.AudioEncoder(cfg.audio_kind, cfg.audio_widths, cfg.embed_dim, rngs=rngs,
                                      mask_padding=cfg.get("mask_padding", False),
                                      kernel=cfg.get("audio_kernel", 17), dtype=dtype,
                                      out_relu=cfg.get("audio_out_relu", True))


def embed(models: Encoders, images, spec, n_frames):
  """images [B,R,R,3] in [-1,1], spec [B,T,40] -> (img [B,h,w,D], aud [B,T',D], frames [B])."""
  img = models.image(images)
  aud = models.audio(spec, n_frames)
  return img, aud, davenet.pooled_frames(n_frames, aud.shape[1], models.audio.pooling_ratio)


def draw_positives(g, z, layer: str):
  """(positives [B,R,R,3], the intervention layer's activations) from one generator pass."""
  x = g.features(z, [layer])[layer]
  return jax.lax.stop_gradient(g.render_from(layer, x)), jax.lax.stop_gradient(x)


@nnx.jit
def generate(g, z):
  """G(z[B,Z]) -> images [B,R,R,3] in [-1,1]."""
  return g(z)


@functools.partial(nnx.jit, static_argnames=("layer",))
def embed_generated(models, g, z, spec, n_frames, layer: str):
  """embed() of the pairs (G(z), spec): compiled once per shape."""
  return embed(models, draw_positives(g, z, layer)[0], spec, n_frames)


@functools.partial(nnx.jit, static_argnames=("layer", "pre_relu"))
def embed_generated_images(models, g, z, layer: str, pre_relu: bool = False):
  """Image features [B,h,w,D] of G(z[B,Z]) (pre_relu: before the encoder's last ReLU)."""
  return models.image(draw_positives(g, z, layer)[0], pre_relu=pre_relu)


@nnx.jit
def embed_audio(models, spec, n_frames):
  """spec [B,T,40], n_frames [B] -> (audio features [B,T',D], valid output frames [B])."""
  aud = models.audio(spec, n_frames)
  return aud, davenet.pooled_frames(n_frames, aud.shape[1], models.audio.pooling_ratio)


@nnx.jit
def embed_stored(models, images, spec, n_frames):
  """embed() of the pairs (stored uint8 images [B,R,R,3], spec): compiled once per shape."""
  return embed(models, to_float(images), spec, n_frames)


@functools.partial(nnx.jit, static_argnames=("pre_relu",))
def embed_stored_images(models, images, pre_relu: bool = False):
  """Image features [B,h,w,D] of stored uint8 images [B,R,R,3]."""
  return models.image(to_float(images), pre_relu=pre_relu)


def embed_pairs(models, g, z_table, pairs: dict, batch: int, layer: str, stored: bool = False):
  """(img [N,h,w,D], aud [N,T',D], frames [N]) of host pairs {z_index, spec, n_frames} [N]
  (stored: their {image} instead of G(z)), in jitted batches of `batch` (the models' mode is the
  caller's)."""
  if stored:
    return batching.map_batches(lambda im, spec, n: embed_stored(models, im, spec, n),
                                (pairs["image"], pairs["spec"], pairs["n_frames"]), batch)
  return batching.map_batches(
      lambda zi, spec, n_frames: embed_generated(models, g, z_table[zi], spec, n_frames,
                                                 layer=layer),
      (pairs["z_index"], pairs["spec"], pairs["n_frames"]), batch)
