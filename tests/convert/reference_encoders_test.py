"""A trained reference model file converts to our encoders' checkpoint: embeddings of the same
image and spectrogram against a PyTorch model written here in the reference's Sequential layout
(VGG16's 13 convs at indices 0..28, the projection at 30; BatchNorm2d(1), a 40x1 conv, a 1x11 conv
and a 1x17 conv after each max pool), BatchNorm in eval mode; the checkpoint restores as a run's
best; a missing key and a wrong shape fail naming the key."""
import jax
import numpy as np
import pytest
import torch
from flax import nnx
from torch import nn

from configs import tiny
from learning_words import pipeline, workdir as wd
from learning_words.common import errors
from learning_words.convert import reference_encoders as ref_enc, torch_files
from learning_words.learner import train
from learning_words.models import davenet, encoders

IMAGE_WIDTHS = (4, 6, 8, 8, 10)
EMBED = 12


def image_model() -> nn.Sequential:
  layers, cin = [], 3
  for block, (width, depth) in enumerate(zip(IMAGE_WIDTHS, (2, 2, 3, 3, 3))):
    if block:
      layers.append(nn.MaxPool2d(2, 2))
    for _ in range(depth):
      layers += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU()]
      cin = width
  layers += [nn.Conv2d(cin, EMBED, 3, padding=1), nn.ReLU()]
  return nn.Sequential(*layers)


def audio_model(kind: str, widths=(5, 7, 9)) -> nn.Sequential:
  w_mel, w_local, w_mid = widths
  layers = [nn.BatchNorm2d(1), nn.Conv2d(1, w_mel, (40, 1)), nn.ReLU(),
            nn.Conv2d(w_mel, w_local, (1, 11), padding=(0, 5)), nn.ReLU()]
  pools = davenet.AUDIO_POOLS[kind]
  cin = w_local
  for i in range(pools):
    cout = EMBED if i == pools - 1 else w_mid
    layers += [nn.MaxPool2d((1, 3), (1, 2), padding=(0, 1)),
               nn.Conv2d(cin, cout, (1, 17), padding=(0, 8)), nn.ReLU()]
    cin = cout
  return nn.Sequential(*layers)


class Reference(nn.Module):
  def __init__(self, kind):
    super().__init__()
    self.model_image = nn.Module()
    self.model_image.image_model = image_model()
    self.model_audio = nn.Module()
    self.model_audio.audio_model = audio_model(kind)


def config(kind):
  c = tiny.get_config()
  c.model.image_widths, c.model.image_pools, c.model.embed_dim = IMAGE_WIDTHS, 4, EMBED
  c.model.audio_kind, c.model.audio_widths = kind, (5, 7, 9)
  c.model.audio_kernel, c.model.mask_padding, c.model.cosine = 17, False, False
  return c


def reference(kind, seed=0) -> Reference:
  torch.manual_seed(seed)
  ref = Reference(kind).eval()
  bn = ref.model_audio.audio_model[0]
  bn.running_mean.fill_(0.3)
  bn.running_var.fill_(2.5)
  bn.weight.data.fill_(1.7)
  bn.bias.data.fill_(-0.2)
  return ref


def rel_err(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


@pytest.mark.parametrize("kind", ["small", "large"])
def test_converted_encoders_match_the_reference_model(kind, tmp_path, capsys):
  ref = reference(kind)
  path = str(tmp_path / "model_best_x.pth.tar")
  dp = nn.DataParallel(ref)  # keys with the module. prefix, as the reference saves them
  torch.save({"epoch": 7, "model_state_dict": dp.state_dict(), "best_eval": 0.42,
              "recall_now": 0.4, "optimizer": {}}, path)
  c = config(kind)
  c.convert.model_file, c.convert.run = path, "reference"
  out = pipeline.run("convert", c, str(tmp_path))  # --mode=convert
  run_dir = str(tmp_path / "runs" / "reference")
  assert out["model"] == {"run": "reference", "folder": run_dir, "step": 7, "score": 0.42}
  assert (f"[convert] the reference's model -> run reference in {run_dir} (step 7, score 0.42); "
          "evaluate it with --mode=eval --config.train.name=reference") in capsys.readouterr().out
  models, step = wd.load_encoders(c, run_dir, "best")  # what --mode=eval restores
  assert step == 7
  with pytest.raises(errors.ConfigError, match="already has checkpoints.*convert.run"):
    pipeline.run("convert", c, str(tmp_path))  # never mixed into an existing run
  if kind == "small":  # --config.train.init_from=reference starts from the same weights
    fresh = train.TrainState(c, steps_per_epoch=3)
    train.init_from_run(fresh, run_dir)
    for a, b in zip(jax.tree.leaves(nnx.state(fresh.models)), jax.tree.leaves(nnx.state(models))):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  models.eval()
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, size=(2, 32, 32, 3)).astype(np.float32)
  spec = rng.normal(size=(2, 200, 40)).astype(np.float32)
  with torch.no_grad():
    # The reference's loader feeds ImageNet-normalised [0, 1] images; ours normalises [-1, 1].
    mean = torch.tensor(davenet.IMAGENET_MEAN)[None, :, None, None]
    std = torch.tensor(davenet.IMAGENET_STD)[None, :, None, None]
    x = (torch.from_numpy(images).permute(0, 3, 1, 2) + 1) / 2
    want_img = ref.model_image.image_model((x - mean) / std).permute(0, 2, 3, 1).numpy()
    a = ref.model_audio.audio_model(torch.from_numpy(spec).permute(0, 2, 1)[:, None])
    want_aud = a[:, :, 0, :].permute(0, 2, 1).numpy()  # [B, D, 1, T'] -> [B, T', D]
  assert rel_err(models.image(images), want_img) < 1e-4
  assert rel_err(models.audio(spec), want_aud) < 1e-4
  assert float(np.abs(want_aud).max()) > 0  # not a dead network


def test_missing_key_and_wrong_shape_name_the_key():
  ref = reference("small")
  state = torch_files.unwrap({"model_state_dict": nn.DataParallel(ref).state_dict()})
  models = encoders.Encoders(config("small").model, rngs=nnx.Rngs(0))
  missing = {k: v for k, v in state.items() if k != "model_audio.audio_model.9.bias"}
  with pytest.raises(torch_files.ConversionError,
                     match="missing key 'model_audio.audio_model.9.bias'"):
    ref_enc.load_into(models, missing, "m.pth.tar")
  wrong = dict(state)
  wrong["model_image.image_model.30.weight"] = np.zeros((16, 10, 3, 3), np.float32)
  with pytest.raises(torch_files.ConversionError,
                     match=r"'model_image.image_model.30.weight' has shape \(16, 10, 3, 3\), "
                           r"expected \(12, 10, 3, 3\).*embed_dim"):
    ref_enc.load_into(models, wrong, "m.pth.tar")
  large = torch_files.unwrap({"model_state_dict": reference("large").state_dict()})
  with pytest.raises(torch_files.ConversionError, match="speech encoder is 'large'.*audio_kind=large"):
    ref_enc.load_into(models, large, "m.pth.tar")  # a large file into a small config


def test_convert_mode_needs_a_file_and_the_reference_settings(tmp_path):
  with pytest.raises(errors.ConfigError, match="official_weights.*model_file"):
    pipeline.run("convert", tiny.get_config(), str(tmp_path))
  c = config("small")
  c.model.image_pools, c.model.cosine = 2, True  # shapes alike, another function
  with pytest.raises(errors.ConfigError, match="image_pools=4 --config.model.cosine=False"):
    ref_enc.check_config(c.model)
  # The checkpoint's own recall when the file has it, else the best so far.
  assert ref_enc.file_score({"recall_now": {"A_r5": 0.2, "I_r5": 0.4}, "best_eval": 0.5}) == \
      pytest.approx(0.3)
  assert ref_enc.file_score({"best_eval": 0.5}) == 0.5
