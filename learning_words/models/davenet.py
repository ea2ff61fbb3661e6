"""The reference's "Davenet" encoders: a VGG16 image encoder and the small / large speech encoders.

Both map their input to a grid of `embed_dim` vectors, compared position by position in the
matchmap (learning_words/learner/matchmap.py):
  ImageEncoder  images [B,R,R,3] in [-1,1] -> [B,R/16,R/16,D]   (128 px -> 8x8)
  AudioEncoder  log-mel [B,T,40]           -> [B,T',D]          (T' = ceil(T / pooling_ratio))

Image: VGG16's 13 conv3x3+ReLU layers in five blocks, max-pooling 2x2 between blocks but not after
the last (the reference drops VGG's final pool to keep an 8x8 map), then a 3x3 conv to D and ReLU.
No pretrained weights: the reference builds VGG16 with `pretrained=False`.

Audio, following the reference's `DavenetAudio` / `DavenetAudioLarge` layer by layer:
  BatchNorm over the whole 1x40xT input (one channel: one mean / variance for all mel bins)
  conv 40x1 -> w_mel, conv 1x11 -> w_local, then `n_pools` times (maxpool 1x3/2 pad 1, conv 1x17),
  the last of those convs going to D; ReLU after every conv.
  small: 3 pools (1x17 convs 512, 512, D)          -> pooling ratio 8
  large: 6 pools (1x17 convs 512 x 5, D)           -> pooling ratio 64
The reference describes `large` as "three more (maxpool, conv 1x17 512) stages, pooling time by 32";
three more stages after small's three pools make six stride-2 pools, i.e. 64. The reference code
has exactly those six pools, and its trainer sizes the large encoder's output as 32 frames for the
2048-frame evaluation input (256 for small): 2048 / 64 = 32, 2048 / 8 = 256. So "32" is the output
length at 2048 frames, not the ratio: we keep the stage count (six pools, ratio 64).

A 40x1 conv spanning every mel bin is a per-frame linear map, so the audio path runs as 1-D convs
over time on [B,T,C]. Padding keeps each conv's length (torch padding k//2) and each pool gives
ceil(T/2) frames (torch MaxPool2d(3, 2, padding 1)).

Initialisation follows the reference's torch modules: nothing is pretrained, and under flax's
default (LeCun) init a plain 14-conv VGG would halve its activations' variance at every ReLU layer.
torchvision's VGG convs use
Kaiming-normal (fan_out, ReLU gain) with zero biases; the embedding conv and every audio conv use
torch's Conv default, weights and biases uniform in +-1/sqrt(fan_in).

BatchNorm: training uses batch statistics (nnx's default mode); evaluation must use the running
averages: `enc.eval()`, `nnx.view(enc, use_running_average=True)`, or
`enc(spec, use_running_average=True)`.
"""
import math

import jax
import jax.numpy as jnp
from flax import nnx

from learning_words.models import layers

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
N_MELS = 40
AUDIO_POOLS = {"small": 3, "large": 6}   # stride-2 time pools per kind (see the module docstring)
VGG16_DEPTHS = (2, 2, 3, 3, 3)           # conv layers per VGG16 block


def normalize_images(images):
  """Maps generator images [..., 3] in [-1, 1] to [0, 1], then ImageNet mean / std per channel."""
  mean = jnp.asarray(IMAGENET_MEAN, images.dtype)
  std = jnp.asarray(IMAGENET_STD, images.dtype)
  return ((images + 1.0) * 0.5 - mean) / std


def audio_pooling_ratio(kind: str) -> int:
  """How many input frames make one output frame of the `kind` speech encoder."""
  if kind not in AUDIO_POOLS:
    raise ValueError(f"unknown audio encoder kind {kind!r}; allowed: {sorted(AUDIO_POOLS)}")
  return 2 ** AUDIO_POOLS[kind]


def pooled_length(n_in: int, ratio: int) -> int:
  """Output length T' = ceil(T / ratio) of an encoder with pooling `ratio` on T = n_in frames."""
  return -(-int(n_in) // int(ratio))


def pooled_frames(n_frames, t_out: int, ratio_or_encoder):
  """Valid output frames per caption: clip(n_frames // ratio, 1, t_out).

  n_frames: [B] true input lengths; t_out: the encoder's output length T' (`aud.shape[1]`);
  ratio_or_encoder: the pooling ratio or an encoder with `pooling_ratio`. The reference divides by
  the ratio (integer division); we also keep at least one frame, so a caption shorter than one
  output frame still has a defined MISA (the reference takes a mean over zero frames: NaN), and at
  most T' (already true when n_frames <= T; the cap guards lengths that were not capped to T).
  """
  ratio = getattr(ratio_or_encoder, "pooling_ratio", ratio_or_encoder)
  return jnp.clip(jnp.asarray(n_frames) // ratio, 1, int(t_out)).astype(jnp.int32)


# The image encoder's border: zeros (the reference's VGG), or padding that carries no constant
# border signal (reflected or wrapped-around features).
IMAGE_PADDING = {"zeros": "SAME", "reflect": "REFLECT", "circular": "CIRCULAR"}


def image_padding(name: str) -> str:
  """config.model.image_padding -> the convolutions' padding."""
  if name not in IMAGE_PADDING:
    raise ValueError(f"unknown image padding {name!r}; allowed: {sorted(IMAGE_PADDING)}")
  return IMAGE_PADDING[name]


def make_vgg_conv(cin: int, cout: int, *, rngs: nnx.Rngs, dtype=None,
                  padding: str = "SAME") -> nnx.Conv:
  """3x3 conv initialised as torchvision's VGG: N(0, 2 / fan_out) weights, zero biases.
  dtype: the compute dtype (parameters stay float32)."""
  init = jax.nn.initializers.variance_scaling(2.0, "fan_out", "normal")
  return nnx.Conv(cin, cout, (3, 3), padding=padding, kernel_init=init, rngs=rngs, dtype=dtype)


def make_torch_default_conv(cin: int, cout: int, kernel, *, rngs: nnx.Rngs,
                            dtype=None, padding: str = "SAME") -> nnx.Conv:
  """Conv (length-keeping padding) with torch's default init: weights and biases
  U(+-1/sqrt(fan_in)). dtype: the compute dtype (parameters stay float32)."""
  bound = 1.0 / math.sqrt(cin * math.prod(kernel))
  bias_init = lambda key, shape, dtype=jnp.float32: jax.random.uniform(
      key, shape, dtype, -bound, bound)
  return nnx.Conv(cin, cout, tuple(kernel), padding=padding, rngs=rngs, bias_init=bias_init,
                  kernel_init=jax.nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
                  dtype=dtype)


def receptive_field(kind: str, kernel: int = 17) -> int:
  """Input frames one output frame of the speech encoder depends on: the 1x11 conv, then per
  pool (window 3, stride 2) a conv of `kernel` frames, each widening it by (k - 1) x stride."""
  field, stride = 11, 1
  for _ in range(AUDIO_POOLS[kind]):
    field += 2 * stride
    stride *= 2
    field += (int(kernel) - 1) * stride
  return field


def conv_time(conv: nnx.Conv, x):
  """conv(x) over time, x [B,T,C] ("SAME" padding). When the kernel is longer than the input, as
  one matmul over explicit windows instead: XLA:CPU's convolution takes ~50x longer there (16
  frames, kernel 17, 512 channels, batch 8: 2.4 s against 48 ms forward and backward; the paper
  preset's last speech conv at 1,024 training frames)."""
  k, t = conv.kernel.shape[0], x.shape[1]
  if t >= k:
    return conv(x)
  lo = (k - 1) // 2
  dtype = conv.dtype or x.dtype
  padded = jnp.pad(x.astype(dtype), ((0, 0), (lo, k - 1 - lo), (0, 0)))
  windows = jnp.stack([padded[:, j:j + t] for j in range(k)], axis=2)  # [B,T,k,C]
  return (jnp.einsum("btkc,kco->bto", windows, conv.kernel[...].astype(dtype))
          + conv.bias[...].astype(dtype))


def valid_mask(n_frames, t: int):
  """[B, t] float: 1 for frames before each recording's end (n_frames [B]), else 0."""
  return (jnp.arange(t)[None, :] < jnp.asarray(n_frames)[:, None]).astype(jnp.float32)


def pool_time(x):
  """Max pool 3 / stride 2 / pad 1 over time: [B,T,C] -> [B,ceil(T/2),C].

  Output i is max(x[2i-1], x[2i], x[2i+1]): the frames, padded with -inf, are paired and each
  pair meets the next pair's first frame. Built from maxima rather than `nnx.max_pool`, whose
  gradient XLA computes by select-and-scatter (on CPU 5.8 against 33 ms, forward and backward,
  at 512 frames x 128 channels, batch 32)."""
  b, t, c = x.shape
  n = -(-t // 2)
  padded = jnp.pad(x, ((0, 0), (1, 2 * n + 1 - t), (0, 0)), constant_values=-jnp.inf)
  pairs = padded.reshape(b, n + 1, 2, c)  # (x[2i-1], x[2i]) for i = 0..n
  return jnp.maximum(jnp.maximum(pairs[:, :n, 0], pairs[:, :n, 1]), pairs[:, 1:, 0])


class ImageEncoder(nnx.Module):
  """VGG16 conv features (last pool removed) -> 3x3 conv to embed_dim -> ReLU.

  widths: the five VGG16 block widths, (64, 128, 256, 512, 512) for the reference; slim presets
  shrink them. pools: 2x max-pools between blocks, 4 in the reference (128 px -> 8x8); 32 px
  presets use 2 so the matchmap keeps the reference's 8x8 grid (the first blocks then pool).
  Images [B,R,R,3] in [-1,1] -> [B,R/2**pools,R/2**pools,embed_dim], float32 whatever the
  convolutions compute in (dtype; parameters stay float32). padding: IMAGE_PADDING's name, the
  border of every conv ('zeros': the reference). depths: conv layers per block, VGG16's (2, 2, 3,
  3, 3) for the reference; fewer layers after the last pool shrink what one cell of the output
  grid sees (its receptive field); embed_kernel: the last conv's side (3 in the reference, 1 adds
  nothing to it).
  """

  def __init__(self, widths=(64, 128, 256, 512, 512), embed_dim: int = 512, *, rngs: nnx.Rngs,
               pools: int = 4, dtype=None, padding: str = "zeros", depths=VGG16_DEPTHS,
               embed_kernel: int = 3):
    depths = tuple(int(d) for d in depths)
    if len(widths) != len(VGG16_DEPTHS) or len(depths) != len(VGG16_DEPTHS):
      raise ValueError(f"need {len(VGG16_DEPTHS)} block widths and depths, got {widths}, "
                       f"{depths}")
    pad = image_padding(padding)
    convs, cin = [], 3
    for width, depth in zip(widths, depths):
      for _ in range(depth):
        convs.append(make_vgg_conv(cin, int(width), rngs=rngs, dtype=dtype, padding=pad))
        cin = int(width)
    self.convs = nnx.List(convs)
    k = int(embed_kernel)
    self.embed = make_torch_default_conv(cin, embed_dim, (k, k), rngs=rngs, dtype=dtype,
                                         padding=pad)
    self.embed_dim = embed_dim
    self.pools = pools
    self.depths = depths

  def __call__(self, images, pre_relu: bool = False, normalize: bool = True):
    """pre_relu: the last conv's output before its ReLU (the reference's attribute test);
    normalize=False: the images enter as they are, as the reference's dissection feeds them."""
    x = normalize_images(images) if normalize else images
    i = 0
    for block, depth in enumerate(self.depths):
      if 0 < block <= self.pools:  # pool between blocks only: VGG16's fifth pool is dropped
        x = layers.max_pool2x2(x)
      for _ in range(depth):
        x = jax.nn.relu(self.convs[i](x))
        i += 1
    x = self.embed(x).astype(jnp.float32)  # [B, R/2**pools, R/2**pools, D]
    return x if pre_relu else jax.nn.relu(x)


class AudioEncoder(nnx.Module):
  """Speech encoder: log-mel [B,T,40] -> [B,ceil(T/pooling_ratio),embed_dim].

  kind: 'small' (3 pools, ratio 8) or 'large' (6 pools, ratio 64).
  widths: (w_mel, w_local, *w_mid): channels of the 40x1 conv, the 1x11 conv, then of the 1x17
  convs before the last (which gives embed_dim); when fewer w_mid than those convs are given, the
  last one repeats. The reference's are (128, 256, 512) (= (128, 256, 512, 512), or with all five
  of large's written out).
  kernel: the time width of the convs after each pool (the reference's 17). It sets how much of
  a caption one output frame sees: 249 input frames for small at 17 (about 5 spoken words of our
  TTS), 81 at 5 (one or two), see `receptive_field`.
  dtype: the convolutions' compute dtype (parameters, the BatchNorm and the output stay float32).
  out_relu: the ReLU after the last conv (the reference's); without it the frames are signed.
  """

  def __init__(self, kind: str = "large", widths=(128, 256, 512), embed_dim: int = 512, *,
               rngs: nnx.Rngs, mask_padding: bool = False, kernel: int = 17, dtype=None,
               out_relu: bool = True):
    self.pooling_ratio = audio_pooling_ratio(kind)
    self.out_relu = bool(out_relu)
    self.mask_padding = bool(mask_padding)
    self.kind = kind
    self.embed_dim = embed_dim
    n_pools = AUDIO_POOLS[kind]
    widths = tuple(int(w) for w in widths)
    if not 3 <= len(widths) <= n_pools + 1:
      raise ValueError(
          f"need (w_mel, w_local, 1 to {n_pools - 1} w_mid) for {kind!r}, got {widths}")
    w_mel, w_local, mids = widths[0], widths[1], list(widths[2:])
    mids += mids[-1:] * (n_pools - 1 - len(mids))
    # Momentum / epsilon as torch's BatchNorm2d defaults (momentum 0.1 there is 0.9 here).
    self.norm = nnx.BatchNorm(1, momentum=0.9, epsilon=1e-5, rngs=rngs)
    self.mel = make_torch_default_conv(N_MELS, w_mel, (1,), rngs=rngs, dtype=dtype)
    self.local = make_torch_default_conv(w_mel, w_local, (11,), rngs=rngs, dtype=dtype)
    cins, couts = [w_local] + mids, mids + [embed_dim]
    self.stages = nnx.List([make_torch_default_conv(ci, co, (int(kernel),), rngs=rngs,
                                                    dtype=dtype) for ci, co in zip(cins, couts)])

  def __call__(self, spec, n_frames=None, use_running_average: bool | None = None):
    """spec [B,T,40] -> [B,T',D]; use_running_average overrides the module's train / eval mode.

    With `mask_padding` and n_frames [B] (true input lengths), the frames past each recording's
    end are kept at zero after every layer and left out of the BatchNorm statistics: the valid
    output frames are then exactly those of the recording encoded at its own length (the convs'
    zero padding), whatever it was padded to. Without it (the reference), padded frames enter
    the convolutions and the statistics as spectrogram values.
    """
    if spec.shape[-1] != N_MELS:
      raise ValueError(f"expected [B, T, {N_MELS}] log-mel features, got {spec.shape}")
    n = jnp.asarray(n_frames) if self.mask_padding and n_frames is not None else None
    keep = lambda x, n: x if n is None else x * valid_mask(n, x.shape[1])[..., None].astype(
        x.dtype)
    # One BatchNorm channel over all B*T*40 values, as BatchNorm2d(1) on the 1x40xT input.
    x = spec[..., None]
    mask = None if n is None else jnp.broadcast_to(
        valid_mask(n, x.shape[1])[:, :, None, None] > 0, x.shape)
    x = keep(self.norm(x, use_running_average=use_running_average, mask=mask)[..., 0], n)
    x = keep(jax.nn.relu(self.mel(x)), n)
    x = keep(jax.nn.relu(self.local(x)), n)
    for i, conv in enumerate(self.stages):
      if n is not None:
        n = -(-n // 2)  # ceil: the frames a stride-2 pool keeps of a recording of n frames
      # Masked again before the conv: the pool's window at frame n reaches the last valid frame.
      x = conv_time(conv, keep(pool_time(x), n))
      last = i == len(self.stages) - 1
      x = keep(x if last and not self.out_relu else jax.nn.relu(x), n)
    return x.astype(jnp.float32)
