"""Davenet encoders: the reference's layer shapes, output shapes, time pooling and valid frame
counts, BatchNorm modes, image normalisation.

The full-size encoders are checked abstractly (nnx.eval_shape, no compilation); runtime checks use
slim encoders with equal widths, because parameter init compiles once per distinct kernel shape.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from learning_words.models import davenet

SLIM_IMAGE = (8, 8, 8, 8, 8)
SLIM_AUDIO = (8, 8, 8)


def abstract(make):
  """(abstract module, {param path: shape}) without allocating or compiling anything."""
  module = nnx.eval_shape(make)
  flat = nnx.to_flat_state(nnx.state(module, nnx.Param))
  shapes = {"/".join(map(str, path)): v.shape for path, v in flat}
  return module, shapes


def abstract_output_shape(module, in_shape):
  graphdef, state = nnx.split(module)
  fn = lambda s, x: nnx.merge(graphdef, s)(x)
  return jax.eval_shape(fn, state, jax.ShapeDtypeStruct(in_shape, jnp.float32)).shape


def test_reference_image_encoder_layers():
  enc, shapes = abstract(lambda: davenet.ImageEncoder((64, 128, 256, 512, 512), 512,
                                                      rngs=nnx.Rngs(0)))
  vgg16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
  kernels, cin = [], 3
  for v in vgg16:
    if v != "M":
      kernels.append((3, 3, cin, v))
      cin = v
  assert [shapes[f"convs/{i}/kernel"] for i in range(len(kernels))] == kernels
  assert shapes["embed/kernel"] == (3, 3, 512, 512)
  n_params = sum(int(np.prod(s)) for s in shapes.values())
  # torchvision VGG16 features (14,714,688) + the 3x3 512->512 embedding conv with bias.
  assert n_params == 14_714_688 + 3 * 3 * 512 * 512 + 512
  assert abstract_output_shape(enc, (2, 128, 128, 3)) == (2, 8, 8, 512)


@pytest.mark.parametrize("kind,n_17,t_out", [("small", 3, 256), ("large", 6, 32)])
def test_reference_audio_encoder_layers(kind, n_17, t_out):
  enc, shapes = abstract(lambda: davenet.AudioEncoder(kind, (128, 256, 512), 512, rngs=nnx.Rngs(0)))
  assert shapes["mel/kernel"] == (1, 40, 128) and shapes["local/kernel"] == (11, 128, 256)
  cins = [256] + [512] * (n_17 - 1)
  assert [shapes[f"stages/{i}/kernel"] for i in range(n_17)] == [(17, c, 512) for c in cins]
  # The reference's torch layers: BatchNorm2d(1), conv 40x1, conv 1x11, n_17 convs 1x17.
  torch_layers = [(40 * 1, 1, 128), (11, 128, 256)] + [(17, c, 512) for c in cins]
  expected = 2 + sum(k * ci * co + co for k, ci, co in torch_layers)
  assert sum(int(np.prod(s)) for s in shapes.values()) == expected
  assert abstract_output_shape(enc, (2, 2048, 40)) == (2, t_out, 512)  # the reference's 256 / 32
  # Fewer middle widths repeat the last; all of them written out is the same network.
  for widths in [(128, 256, 512, 512), (128, 256) + (512,) * (n_17 - 1)]:
    _, same = abstract(lambda: davenet.AudioEncoder(kind, widths, 512, rngs=nnx.Rngs(0)))
    assert same == shapes
  with pytest.raises(ValueError, match="w_mid"):
    davenet.AudioEncoder(kind, (128, 256) + (512,) * n_17, 512, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def image_encoder():
  return davenet.ImageEncoder(SLIM_IMAGE, 8, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("res", [32, 128])
def test_image_encoder_shape(image_encoder, res):
  images = jax.random.uniform(jax.random.key(1), (2, res, res, 3), minval=-1, maxval=1)
  out = image_encoder(images)
  assert out.shape == (2, res // 16, res // 16, 8)
  assert float(out.min()) >= 0  # ReLU after the embedding conv


def test_image_normalisation_by_hand_and_first_conv_input(image_encoder):
  images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
  expected = np.empty_like(images)
  mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
  for c in range(3):  # [-1, 1] -> [0, 1] -> ImageNet normalisation, channel by channel
    expected[..., c] = ((images[..., c] + 1) / 2 - mean[c]) / std[c]
  np.testing.assert_allclose(davenet.normalize_images(jnp.asarray(images)), expected,
                             rtol=1e-5, atol=1e-5)

  # What the first conv actually receives inside the encoder.
  enc = nnx.clone(image_encoder)
  seen = []

  class Recorder(nnx.Module):
    def __init__(self, conv):
      self.conv = conv

    def __call__(self, x):
      seen.append(np.asarray(x))
      return self.conv(x)

  enc.convs[0] = Recorder(enc.convs[0])
  enc(jnp.asarray(images))
  np.testing.assert_allclose(seen[0], expected, rtol=1e-5, atol=1e-5)
  # The reference's dissection: the raw [-1, 1] images reach the first conv as they are.
  enc(jnp.asarray(images), normalize=False)
  np.testing.assert_allclose(seen[1], images, rtol=1e-6)


def test_pre_relu_features_are_the_last_conv_before_its_relu(image_encoder):
  images = jax.random.uniform(jax.random.key(2), (2, 32, 32, 3), minval=-1, maxval=1)
  pre = np.asarray(image_encoder(images, pre_relu=True))
  assert (pre < 0).any()  # not clipped
  np.testing.assert_allclose(np.maximum(pre, 0), np.asarray(image_encoder(images)), rtol=1e-6)


def test_initialisation_follows_torch(image_encoder):
  """VGG convs: N(0, 2/fan_out), zero bias; the other convs: U(+-1/sqrt(fan_in)) incl. biases."""
  k = np.asarray(image_encoder.convs[1].kernel[...])          # (3, 3, 8, 8): fan_out 72
  assert abs(k.mean()) < 0.03 and 0.85 < k.std() / np.sqrt(2 / 72) < 1.15
  assert not np.asarray(image_encoder.convs[1].bias[...]).any()
  enc = davenet.AudioEncoder("small", (8, 8, 8), 8, rngs=nnx.Rngs(0))
  for conv, fan_in in [(image_encoder.embed, 72), (enc.mel, 40), (enc.stages[0], 17 * 8)]:
    for p in (np.asarray(conv.kernel[...]), np.asarray(conv.bias[...])):
      assert np.abs(p).max() <= 1 / np.sqrt(fan_in) and np.abs(p).max() > 0.5 / np.sqrt(fan_in)


@pytest.mark.parametrize("kind,ratio", [("small", 8), ("large", 64)])
def test_audio_lengths_and_pooled_frames(kind, ratio):
  enc = davenet.AudioEncoder(kind, SLIM_AUDIO, 8, rngs=nnx.Rngs(0))
  assert enc.pooling_ratio == ratio == davenet.audio_pooling_ratio(kind)
  rng = np.random.default_rng(1)
  for t in (200, 256):  # 200: not a multiple of either ratio
    out = enc(jnp.asarray(rng.normal(size=(2, t, 40)), jnp.float32))
    t_out = out.shape[1]
    assert out.shape == (2, t_out, 8)
    assert t_out == int(np.ceil(t / ratio)) == davenet.pooled_length(t, ratio)
    # Includes 0 (empty) and t + 3 * ratio (a length that was not capped to the input).
    n_frames = np.concatenate([[0, 1, ratio - 1, ratio, t, t + 3 * ratio],
                               rng.integers(0, t + 1, 20)])
    got = np.asarray(davenet.pooled_frames(n_frames, t_out, enc))
    np.testing.assert_array_equal(got, davenet.pooled_frames(n_frames, t_out, ratio))
    for n, g in zip(n_frames, got):
      assert g == max(1, min(int(n) // ratio, t_out))
      assert 1 <= g <= t_out


def test_pool_time_matches_torch_semantics():
  """Max over windows of 3 centred on frames 0, 2, 4, ...; the padding never wins (even < 0)."""
  x = np.random.default_rng(3).normal(size=(1, 9, 2)).astype(np.float32) - 5.0
  got = np.asarray(davenet.pool_time(jnp.asarray(x)))
  assert got.shape == (1, 5, 2)
  for o in range(5):
    for c in range(2):
      window = [x[0, t, c] for t in (2 * o - 1, 2 * o, 2 * o + 1) if 0 <= t < 9]
      assert got[0, o, c] == max(window)


@pytest.mark.parametrize("frames", [8, 9])
def test_pools_match_flax_max_pool_values_and_gradients(frames):
  """pool_time and layers.max_pool2x2 against flax's max_pool (select-and-scatter gradient) on
  tie-free inputs, odd sizes included."""
  from learning_words.models import layers
  rng = np.random.default_rng(frames)
  pairs = [(davenet.pool_time, lambda x: nnx.max_pool(x, (3,), strides=(2,), padding=((1, 1),)),
            (2, frames, 3)),
           (layers.max_pool2x2, lambda x: nnx.max_pool(x, (2, 2), strides=(2, 2)),
            (2, frames, frames + 2, 3))]
  for ours, flax_pool, shape in pairs:
    x = jnp.asarray(rng.permutation(np.prod(shape)).reshape(shape).astype(np.float32))
    w = jnp.asarray(rng.normal(size=flax_pool(x).shape).astype(np.float32))
    np.testing.assert_array_equal(ours(x), flax_pool(x))
    np.testing.assert_array_equal(jax.grad(lambda x: (ours(x) * w).sum())(x),
                                  jax.grad(lambda x: (flax_pool(x) * w).sum())(x))


def test_max_pool2x2_sends_each_windows_cotangent_to_one_maximum_on_ties():
  """On windows with tied maxima (ReLU zeros, repeated values) the gradient is the cotangent on one
  element holding the window's maximum and 0 elsewhere: never split, never NaN (a numpy loop)."""
  from learning_words.models import layers
  rng = np.random.default_rng(0)
  x = rng.integers(0, 3, (2, 6, 5, 3)).astype(np.float32)  # few values: ties in most windows
  w = rng.normal(size=(2, 3, 2, 3)).astype(np.float32)
  grad = np.asarray(jax.grad(lambda x: (layers.max_pool2x2(x) * w).sum())(jnp.asarray(x)))
  assert np.all(grad[:, :, 4] == 0)  # the odd last column is dropped
  for b, i, j, c in np.ndindex(*w.shape):
    window = x[b, 2 * i:2 * i + 2, 2 * j:2 * j + 2, c]
    g = grad[b, 2 * i:2 * i + 2, 2 * j:2 * j + 2, c]
    assert np.count_nonzero(g) == 1 and g.sum() == w[b, i, j, c]
    assert window[g != 0][0] == window.max()


@pytest.mark.parametrize("frames", [3, 8, 12])
def test_conv_time_matches_flax_conv_when_the_kernel_outgrows_the_input(frames):
  """Values and gradients of conv_time against flax's own "SAME" conv, for inputs shorter than
  the kernel (the windowed matmul) and as long (the conv itself)."""
  conv = davenet.make_torch_default_conv(6, 5, (9,), rngs=nnx.Rngs(1))
  x = jax.random.normal(jax.random.key(frames), (2, frames, 6))
  np.testing.assert_allclose(davenet.conv_time(conv, x), conv(x), rtol=1e-5, atol=1e-6)
  gd, state = nnx.split(conv)
  loss = lambda f: jax.grad(lambda st, x: (f(nnx.merge(gd, st), x) ** 2).sum(), argnums=(0, 1))
  ours, theirs = loss(davenet.conv_time)(state, x), loss(lambda c, x: c(x))(state, x)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_unknown_audio_kind():
  with pytest.raises(ValueError, match="small"):
    davenet.AudioEncoder("huge", SLIM_AUDIO, 8, rngs=nnx.Rngs(0))


def test_batchnorm_train_and_eval_modes():
  enc = davenet.AudioEncoder("small", SLIM_AUDIO, 8, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(2), (2, 64, 40)) * 3.0 + 5.0
  train_out = enc(x)  # training mode: batch statistics, and the running averages move
  np.testing.assert_allclose(enc.norm.mean[...], [0.1 * float(x.mean())], rtol=1e-5)
  # Batch statistics make the output blind to an affine change of the whole input.
  np.testing.assert_allclose(enc(x * 2.0 - 7.0), train_out, rtol=1e-4, atol=1e-4)

  # Eval: a known running mean / variance. Normalising the input by hand and running with
  # identity statistics (mean 0, var 1 - eps) must give the same output.
  m, v, eps = 4.0, 6.0, 1e-5
  enc.norm.mean[...] = jnp.full((1,), m)
  enc.norm.var[...] = jnp.full((1,), v)
  enc.eval()
  eval_out = enc(x)
  assert not np.allclose(eval_out, train_out, atol=1e-3)
  np.testing.assert_allclose(enc(x, use_running_average=True), eval_out, rtol=1e-6)
  enc.norm.mean[...] = jnp.zeros((1,))
  enc.norm.var[...] = jnp.full((1,), 1.0 - eps)
  np.testing.assert_allclose(enc((x - m) / np.sqrt(v + eps)), eval_out, rtol=1e-4, atol=1e-5)
  enc.train()
  enc(x)
  assert float(enc.norm.mean[0]) != 0.0  # back in training mode: the statistics move again


def test_masked_padding_encodes_each_recording_as_at_its_own_length():
  """Oracle: each recording run alone at its own length (no padding at all), in eval mode."""
  enc = davenet.AudioEncoder("small", (8, 8, 8), 8, rngs=nnx.Rngs(0), mask_padding=True)
  enc.eval()
  rng = np.random.default_rng(0)
  lengths = [37, 50, 64]
  spec = np.zeros((3, 96, davenet.N_MELS), np.float32)  # padded with the loudest value (0 dB)
  for i, n in enumerate(lengths):
    spec[i, :n] = rng.uniform(-80, 0, (n, davenet.N_MELS))
  batch = np.asarray(enc(jnp.asarray(spec), jnp.asarray(lengths)))
  for i, n in enumerate(lengths):
    alone = np.asarray(enc(jnp.asarray(spec[i:i + 1, :n])))[0]
    np.testing.assert_allclose(batch[i, :alone.shape[0]], alone, rtol=1e-5, atol=1e-5)
    assert np.all(batch[i, alone.shape[0]:] == 0)
  # Without the mask (the reference) the padding leaks into the last valid frames.
  enc.mask_padding = False
  leaky = np.asarray(enc(jnp.asarray(spec), jnp.asarray(lengths)))
  alone = np.asarray(enc(jnp.asarray(spec[:1, :lengths[0]])))[0]
  assert not np.allclose(leaky[0, :alone.shape[0]], alone, atol=1e-5)


def test_masked_batchnorm_statistics_ignore_the_padding():
  enc = davenet.AudioEncoder("small", (8, 8, 8), 8, rngs=nnx.Rngs(0), mask_padding=True)
  rng = np.random.default_rng(1)
  spec = rng.uniform(-80, 0, (2, 40, davenet.N_MELS)).astype(np.float32)
  lengths = np.array([25, 40])
  padded = spec.copy()
  padded[0, 25:] = 0.0
  enc(jnp.asarray(padded), jnp.asarray(lengths))  # train mode: updates the running statistics
  valid = np.concatenate([spec[0, :25].ravel(), spec[1].ravel()])
  # momentum 0.9 from mean 0 / var 1: one update moves them 10% toward the batch's (torch's
  # unbiased variance aside: flax uses the biased one).
  np.testing.assert_allclose(float(enc.norm.mean[...][0]), 0.1 * valid.mean(), rtol=1e-4)
  np.testing.assert_allclose(float(enc.norm.var[...][0]), 0.9 + 0.1 * valid.var(), rtol=1e-4)


@pytest.mark.parametrize("kernel", [5, 17])
def test_receptive_field_by_gradient(kernel):
  """Oracle: the input frames an output frame's gradient reaches (eval mode, so BatchNorm does not
  mix frames), counted against the hand-computed field 11 + sum over 3 pools of 2 * 2**i and
  (kernel - 1) * 2**(i + 1)."""
  by_hand = 11 + sum(2 * 2 ** i + (kernel - 1) * 2 ** (i + 1) for i in range(3))
  assert davenet.receptive_field("small", kernel) == by_hand
  enc = davenet.AudioEncoder("small", (8, 8, 8), 8, rngs=nnx.Rngs(0), kernel=kernel)
  enc.eval()
  assert enc.stages[0].kernel.shape[0] == kernel
  t = 8 * 64
  spec = jnp.asarray(np.random.default_rng(0).uniform(-80, 0, (1, t, davenet.N_MELS)), jnp.float32)
  grad = jax.grad(lambda s: jnp.sum(enc(s)[0, 32]))(spec)  # the output frame at the middle
  reached = np.nonzero(np.any(np.asarray(grad[0]) != 0, axis=-1))[0]
  # ReLUs can zero a few edge frames' gradients; the span never exceeds the field.
  assert reached.max() - reached.min() + 1 <= by_hand
  assert reached.max() - reached.min() + 1 >= by_hand - 8


def test_bfloat16_compute_keeps_float32_parameters_and_embeddings():
  """model.dtype='bfloat16': the same float32 parameters as the float32 encoders (same init),
  convolutions in bfloat16, float32 embeddings within bfloat16's precision of the float32 ones,
  float32 gradients; the windowed conv path too (kernel longer than its input); a bad name is a
  ConfigError naming the key."""
  from configs import tiny  # pylint: disable=g-import-not-at-top
  from learning_words.common import errors  # pylint: disable=g-import-not-at-top
  from learning_words.models import encoders  # pylint: disable=g-import-not-at-top
  cfg = tiny.get_config().model
  cfg.mask_padding, cfg.audio_kernel = True, 33  # 64 frames pool to 8: the windowed conv
  models = {}
  for name in ("float32", "bfloat16"):
    cfg.dtype = name
    models[name] = encoders.Encoders(cfg, rngs=nnx.Rngs(0))
  f32, b16 = (nnx.state(models[n], nnx.Param) for n in ("float32", "bfloat16"))
  for a, b in zip(jax.tree.leaves(f32), jax.tree.leaves(b16)):
    assert b.dtype == jnp.float32
    np.testing.assert_array_equal(a, b)
  assert models["bfloat16"].image.convs[0].dtype == jnp.bfloat16
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
  spec = jnp.asarray(rng.normal(size=(2, 64, 40)), jnp.float32)
  n_frames = jnp.array([64, 40])

  def loss(m):
    img, aud, _ = encoders.embed(m, images, spec, n_frames)
    return jnp.mean(img ** 2) + jnp.mean(aud ** 2), (img, aud)

  grad = nnx.jit(nnx.grad(loss, has_aux=True))  # one compile per dtype, not one per op
  out = {n: grad(m) for n, m in models.items()}
  for want, got in zip(out["float32"][1], out["bfloat16"][1]):
    assert got.dtype == jnp.float32
    rel = float(jnp.linalg.norm(got - want) / jnp.linalg.norm(want))
    assert 0 < rel < 0.05, rel  # bfloat16 keeps 8 bits of mantissa: about 0.4% per rounding
  grads = jax.tree.leaves(nnx.state(out["bfloat16"][0], nnx.Param))
  assert grads and all(g.dtype == jnp.float32 for g in grads)
  cfg.dtype = "float16"
  with pytest.raises(errors.ConfigError, match="model.dtype"):
    encoders.Encoders(cfg, rngs=nnx.Rngs(0))


def test_signed_speech_frames_are_the_last_conv_before_its_relu():
  """out_relu=False: the reference's frames before their last ReLU (the same weights clipped at 0
  give the reference's), padding still zero with mask_padding."""
  rng = np.random.default_rng(2)
  spec = jnp.asarray(rng.uniform(-80, 0, (2, 64, davenet.N_MELS)).astype(np.float32))
  lengths = jnp.asarray([64, 40])
  ref = davenet.AudioEncoder("small", (8, 8, 8), 8, rngs=nnx.Rngs(0), mask_padding=True)
  signed = davenet.AudioEncoder("small", (8, 8, 8), 8, rngs=nnx.Rngs(0), mask_padding=True,
                                out_relu=False)
  ref.eval(), signed.eval()
  got, want = np.asarray(signed(spec, lengths)), np.asarray(ref(spec, lengths))
  assert (got < 0).any()
  np.testing.assert_allclose(np.maximum(got, 0), want, rtol=1e-6, atol=1e-7)
  assert not got[1, -(-40 // 8):].any()  # past the second recording's end
