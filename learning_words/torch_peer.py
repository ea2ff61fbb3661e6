"""The benchmark's peer: our `regular` train step written in PyTorch, for `--peer=torch`.

The same computation as learner/train.train_step for `regular`: the frozen generator draws the
positives G(z) (once, before the timed steps, under train.cache_positives, as ours), the image
and speech encoders embed them and the spectrograms, the matchmaps' MISA gives the in-batch
similarity matrix, the config's base loss (triplet with random impostors, or the in-batch
softmax) is back-propagated and the config's optimizer (SGD with momentum or Adam, both with the
L2 weight decay) steps. Built from our own modules' parameters, so both sides
start from the same weights; layouts are NCHW / NCT as torch prefers. The learning-rate schedule
is left out (a constant rate costs the same).

torch is an optional extra (`pip install -e .[torch]`): only this module imports it, and only the
benchmark imports this module (torch itself only where it is installed).
"""
from __future__ import annotations  # the annotations name torch, which may not be installed

import numpy as np

from learning_words.common import errors
from learning_words.models import davenet

try:
  import torch
  import torch.nn.functional as F
except ImportError:  # the optional [torch] extra is not installed: Peer() says so
  torch = F = None


def _tensor(x, grad: bool = False) -> torch.Tensor:
  t = torch.from_numpy(np.array(x, np.float32))
  return t.requires_grad_(grad)


def _conv2d_weight(conv, scale=None):
  """An HWIO kernel (times its equalised-lr scale, if any) as torch's OIHW."""
  k = np.asarray(conv.kernel[...]) * (1.0 if scale is None else float(np.asarray(scale[...])))
  return np.transpose(k, (3, 2, 0, 1))


def _pixel_norm(x):
  return x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + 1e-8)


def _valid(n, t: int) -> torch.Tensor:
  """[B, t] float: 1 before each sequence's end."""
  return (torch.arange(t)[None, :] < n[:, None]).float()


class Peer:
  """Our regular step in torch, from our Encoders `models` and Generator `g` (config: the run's)."""

  def __init__(self, config, models, g):
    if torch is None:
      raise errors.ConfigError("--peer=torch needs PyTorch: pip install -e '.[torch]'")
    self.config = config
    m = models
    self.gen = []  # (weight, bias, padding, upsample) per block; frozen
    for block in g.blocks:
      self.gen.append((_tensor(_conv2d_weight(block.conv, block.conv.scale)),
                       _tensor(block.conv.bias[...]), block.conv.padding[0][0], block.upsample))
    self.gen_out = (_tensor(_conv2d_weight(g.output.conv, g.output.conv.scale)),
                    _tensor(g.output.conv.bias[...]))
    self.image = [(_tensor(_conv2d_weight(c), True), _tensor(c.bias[...], True))
                  for c in list(m.image.convs) + [m.image.embed]]
    self.pools, self.depths = m.image.pools, m.image.depths
    # torch's names for the image convs' padding (F.pad modes; zeros: the convs' own padding).
    self.image_pad = {"SAME": None, "REFLECT": "reflect", "CIRCULAR": "circular"}[
        m.image.embed.padding]
    a = m.audio
    conv1d = lambda c: (_tensor(np.transpose(np.asarray(c.kernel[...]), (2, 1, 0)), True),
                        _tensor(c.bias[...], True))
    self.norm = (_tensor(a.norm.scale[...], True), _tensor(a.norm.bias[...], True))
    self.audio = [conv1d(a.mel), conv1d(a.local)] + [conv1d(c) for c in a.stages]
    self.mask_padding, self.ratio, self.out_relu = a.mask_padding, a.pooling_ratio, a.out_relu
    params = [p for pair in self.image + self.audio + [self.norm] for p in pair]
    t = config.train
    if t.optimizer == "adam":
      self.opt = torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    else:
      self.opt = torch.optim.SGD(params, lr=t.lr, momentum=t.momentum,
                                 weight_decay=t.weight_decay)

  def generate(self, z):
    """G(z [B,Z]) -> images [B,3,R,R] in [-1, 1] (the generator is frozen: no graph)."""
    with torch.no_grad():
      return self._generate(z)

  def _generate(self, z):
    x = z[:, :, None, None]
    for w, b, pad, up in self.gen:
      x = _pixel_norm(x)
      if up:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
      x = F.leaky_relu(F.conv2d(x, w, b, padding=pad), 0.2)
    return torch.clamp(F.conv2d(_pixel_norm(x), *self.gen_out), -1.0, 1.0)

  def embed_images(self, images):
    """[B,3,R,R] in [-1, 1] -> [B,D,h,w]."""
    mean = torch.tensor(davenet.IMAGENET_MEAN)[None, :, None, None]
    std = torch.tensor(davenet.IMAGENET_STD)[None, :, None, None]
    x = ((images + 1.0) * 0.5 - mean) / std
    i = 0
    for block, depth in enumerate(self.depths):
      if 0 < block <= self.pools:
        x = F.max_pool2d(x, 2)
      for _ in range(depth):
        x = F.relu(self._image_conv(x, self.image[i]))
        i += 1
    return F.relu(self._image_conv(x, self.image[-1]))

  def _image_conv(self, x, weights):
    """One 3x3 image conv with the encoder's padding."""
    if self.image_pad is None:
      return F.conv2d(x, *weights, padding=1)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode=self.image_pad), *weights)

  def embed_audio(self, spec, n_frames):
    """spec [B,T,40] -> [B,D,T'] (one BatchNorm channel over every value, batch statistics)."""
    n = n_frames if self.mask_padding else None
    keep = lambda x, n: x if n is None else x * _valid(n, x.shape[-1])[:, None, :]
    x = spec.transpose(1, 2)  # [B, 40, T]
    if n is None:
      mean, var = x.mean(), x.var(unbiased=False)
    else:
      w = _valid(n, x.shape[-1])[:, None, :].expand_as(x)
      mean = (x * w).sum() / w.sum()
      var = (x * x * w).sum() / w.sum() - mean * mean
    scale, bias = self.norm
    x = keep((x - mean) * torch.rsqrt(var + 1e-5) * scale + bias, n)
    for j, (w_, b_) in enumerate(self.audio):
      if j >= 2:
        if n is not None:
          n = -(-n // 2)
        x = keep(F.max_pool1d(x, 3, 2, padding=1), n)
      x = F.conv1d(x, w_, b_, padding=w_.shape[-1] // 2)
      x = keep(x if j == len(self.audio) - 1 and not self.out_relu else F.relu(x), n)
    return x

  def similarity(self, img, aud, n_frames):
    """S [B,B]: MISA of image i against caption j (cosine matchmaps per config.model.cosine)."""
    img = img.flatten(2).transpose(1, 2)  # [B, hw, D]
    aud = aud.transpose(1, 2)             # [B, T', D]
    if self.config.model.cosine:
      img = img * torch.rsqrt((img * img).sum(-1, keepdim=True) + 1e-8)
      aud = aud * torch.rsqrt((aud * aud).sum(-1, keepdim=True) + 1e-8)
    best = torch.einsum("ipd,jtd->ijpt", img, aud).amax(dim=2)  # [B, B, T']
    frames = torch.clamp(n_frames // self.ratio, 1, aud.shape[1])
    valid = _valid(frames, aud.shape[1])[None]  # [1, B, T']
    return (best * valid).sum(-1) / valid.sum(-1)

  def loss(self, z, spec, n_frames, impostors=None, images=None):
    """The regular loss on one batch; impostors: (image j [B], caption k [B]) for the triplet
    base (default: drawn uniformly among the other B - 1, as learner/losses.py draws them);
    images: the positives when drawn beforehand (train.cache_positives), else G(z)."""
    images = self.generate(z) if images is None else images
    sim = self.similarity(self.embed_images(images), self.embed_audio(spec, n_frames),
                          n_frames)
    b = sim.shape[0]
    pos, anchors = torch.diagonal(sim), torch.arange(b)
    if self.config.loss.base == "softmax":
      logits = sim / self.config.loss.temperature
      return 0.5 * (F.cross_entropy(logits, anchors) + F.cross_entropy(logits.T, anchors))
    if impostors is None:
      offsets = torch.randint(1, b, (2, b))
      impostors = ((anchors + offsets[0]) % b, (anchors + offsets[1]) % b)
    j, k = impostors
    margin = self.config.loss.margin
    return (F.relu(margin + sim[j, anchors] - pos).mean()
            + F.relu(margin + sim[anchors, k] - pos).mean())

  def step(self, z, spec, n_frames, images=None) -> float:
    """One optimizer step; returns the loss. images: as in `loss`."""
    self.opt.zero_grad(set_to_none=True)
    loss = self.loss(z, spec, n_frames, images=images)
    loss.backward()
    self.opt.step()
    return float(loss.detach())
