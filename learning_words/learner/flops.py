"""Analytic FLOPs of one train step, from the config's shapes alone.

Counts what dominates the step: convolutions, dense layers and matchmaps, 2 FLOPs per
multiply-add, and (as XLA's cost analysis does) only the taps that fall inside the input, not
those on zero padding. Training a layer costs its forward pass, the gradient of its weights (as
much again) and the gradient of its input (as much again) except at a network's first layer,
whose input needs none. Elementwise work (activations, norms, pools, the optimizer) is left out.
On CPU this is checked against XLA's own count; on GPUs, where XLA's count leaves out cuDNN
convolutions, it is the benchmark's only count.
"""
from learning_words.models import davenet, generator as gen_lib


def valid_taps(n_in: int, kernel: int, pad_lo: int, n_out: int) -> int:
  """Sum over the n_out output positions (stride 1) of the kernel taps inside the input."""
  return sum(sum(0 <= o + j - pad_lo < n_in for j in range(kernel)) for o in range(n_out))


def conv2d(res: int, kernel: int, cin: int, cout: int, pad: int | None = None,
           res_in: int | None = None) -> float:
  """Forward FLOPs of a square conv on one [res_in, res_in, cin] input (default: res, "same")."""
  res_in = res if res_in is None else res_in
  pad = (kernel - 1) // 2 if pad is None else pad
  return 2.0 * valid_taps(res_in, kernel, pad, res) ** 2 * cin * cout


def conv1d(t: int, kernel: int, cin: int, cout: int) -> float:
  """Forward FLOPs of a "same" conv over t frames of one sequence."""
  return 2.0 * valid_taps(t, kernel, (kernel - 1) // 2, t) * cin * cout


def image_encoder(model_cfg, res: int) -> list[float]:
  """Per-layer forward FLOPs of davenet.ImageEncoder on one res x res image."""
  out, cin = [], 3
  depths = model_cfg.get("image_depths", davenet.VGG16_DEPTHS)
  for block, (width, depth) in enumerate(zip(model_cfg.image_widths, depths)):
    if 0 < block <= model_cfg.image_pools:
      res //= 2
    for _ in range(depth):
      out.append(conv2d(res, 3, cin, int(width)))
      cin = int(width)
  return out + [conv2d(res, 3, cin, int(model_cfg.embed_dim))]


def audio_encoder(model_cfg, frames: int) -> list[float]:
  """Per-layer forward FLOPs of davenet.AudioEncoder on one caption of `frames` frames."""
  n_pools = davenet.AUDIO_POOLS[model_cfg.audio_kind]
  widths = [int(w) for w in model_cfg.audio_widths]
  mids = widths[2:] + widths[-1:] * (n_pools - 1 - len(widths[2:]))
  out = [conv1d(frames, 1, davenet.N_MELS, widths[0]), conv1d(frames, 11, widths[0], widths[1])]
  kernel = int(model_cfg.get("audio_kernel", 17))
  t = frames
  for cin, cout in zip([widths[1]] + mids, mids + [int(model_cfg.embed_dim)]):
    t = -(-t // 2)
    out.append(conv1d(t, kernel, cin, cout))
  return out


def generator(sizes, after: str | None = None) -> float:
  """Forward FLOPs of gen_lib.Generator for one z, or of render_from(after) (the layers after
  `after` and the RGB output)."""
  sizes = [int(s) for s in sizes]
  layers = [conv2d(4, 4, sizes[0], sizes[1], pad=3, res_in=1), conv2d(4, 3, sizes[1], sizes[1])]
  res = 4
  for prev, depth in zip(sizes[1:-1], sizes[2:]):
    res *= 2
    layers += [conv2d(res, 3, prev, depth), conv2d(res, 3, depth, depth)]
  start = 0 if after is None else gen_lib.layer_names(sizes).index(after) + 1
  return sum(layers[start:]) + conv2d(res, 1, sizes[-1], 3)


def trained(per_layer: list[float], first_needs_grad: bool = False) -> float:
  """Forward plus backward FLOPs of a network being trained: 3x each layer, 2x the first unless
  its input needs a gradient."""
  return 3.0 * sum(per_layer) - (0.0 if first_needs_grad else per_layer[0])


def train_step(config, kind: str | None = None, renders: float | None = None) -> dict:
  """{part: FLOPs} of one train step of `kind` (default config.loss.kind) on the global batch,
  and their 'total'. Positives come from the generator unless data.positives is 'stored' or
  train.cache_positives reads them from the cache. renders: candidate tries rendered per sample
  (the step's `neg/renders`; they depend on the data), default all negatives.candidates."""
  kind = kind or config.loss.kind
  m, b = config.model, int(config.data.batch_size)
  stored = config.data.get("positives", "generator") == "stored"
  res = int(config.world.resolution) if stored else gen_lib.resolution_of(config.gan.sizes)
  hw = (res // 2 ** int(m.image_pools)) ** 2
  frames = int(config.data.train_frames)
  t_out = davenet.pooled_length(frames, davenet.audio_pooling_ratio(m.audio_kind))
  pair = 2.0 * hw * t_out * int(m.embed_dim)  # one matchmap
  image = image_encoder(m, res)
  cached = bool(config.train.get("cache_positives", False))
  parts = {"generator": 0.0 if stored or cached else b * generator(config.gan.sizes),
           "image_encoder": b * trained(image),
           "audio_encoder": b * trained(audio_encoder(m, frames)),
           "matchmaps": 3.0 * b * b * pair}
  if kind in ("negatives_edited", "negatives_both"):
    k = float(config.negatives.candidates if renders is None else renders)
    parts["negatives"] = (k * b * generator(config.gan.sizes, config.negatives.layer)  # candidates
                          + b * pair                                   # the mask's matchmap
                          + b * trained(image) + 3.0 * b * pair)       # scoring the negatives
  parts["total"] = sum(parts.values())
  return parts
