"""A trained reference model (`model_best_<name>.pth.tar`) -> our encoders' checkpoint.

The file holds {epoch, model_state_dict, best_eval, recall_now, optimizer}; in the state dict
(DataParallel's `module.` prefix dropped by torch_files):
  image  `model_image.image_model.{0,2,5,7,10,12,14,17,19,21,24,26,28}` VGG16's 13 convs and `.30`
         the 3x3 projection to the embedding ([out, in, 3, 3] -> our HWIO);
  audio  `model_audio.audio_model.0` BatchNorm2d(1) (weight, bias, running_mean, running_var),
         `.1` the 40x1 conv [w_mel, 1, 40, 1], `.3` the 1x11 conv [w_local, w_mel, 1, 11], then one
         1x17 conv after each pool: `.6 .9 .12` (small) or `.6 .9 .12 .15 .18 .21` (large)
         ([out, in, 1, k] -> our 1-D [k, in, out] over time).
Our encoders are built from `config.model`; a shape that differs names the key and the config key
to change (the reference's are the paper preset's). The run's checkpoint gets the models item only,
with the file's validation score ((A_r5 + I_r5) / 2 of `recall_now`, else `best_eval`), so `--mode=eval` and `--config.train.init_from`
restore it like a trained run.
"""
import os

import jax.numpy as jnp
from etils import epath
from flax import nnx

from learning_words.common import checkpoints, errors
from learning_words.convert import torch_files
from learning_words.models import davenet, encoders

IMAGE = "model_image.image_model"
AUDIO = "model_audio.audio_model"
VGG_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
EMBED_INDEX = 30
AUDIO_STAGE_START, AUDIO_STAGE_STEP = 6, 3  # the conv after each pool: .6, .9, ...


def _set(param, value):
  param[...] = jnp.asarray(value)


def load_into(models: encoders.Encoders, state: dict, path: str = ""):
  """Fills our encoders (built from config.model) from the reference state dict (every key
  used, every shape checked)."""
  state = dict(state)
  img_hint = " (--config.model.image_widths / embed_dim)"
  aud_hint = " (--config.model.audio_kind / audio_widths / audio_kernel / embed_dim)"
  for conv, index in zip(list(models.image.convs) + [models.image.embed],
                         VGG_INDICES + (EMBED_INDEX,)):
    kh, kw, cin, cout = conv.kernel.shape
    w = torch_files.take(state, f"{IMAGE}.{index}.weight", (cout, cin, kh, kw), path, img_hint)
    _set(conv.kernel, w.transpose(2, 3, 1, 0))
    _set(conv.bias, torch_files.take(state, f"{IMAGE}.{index}.bias", (cout,), path, img_hint))
  a = models.audio
  norm = {"weight": a.norm.scale, "bias": a.norm.bias, "running_mean": a.norm.mean,
          "running_var": a.norm.var}
  for key, param in norm.items():
    _set(param, torch_files.take(state, f"{AUDIO}.0.{key}", (1,), path, aud_hint))
  state.pop(f"{AUDIO}.0.num_batches_tracked", None)
  n_mels, w_mel = a.mel.kernel.shape[1:]
  w = torch_files.take(state, f"{AUDIO}.1.weight", (w_mel, 1, n_mels, 1), path, aud_hint)
  _set(a.mel.kernel, w[:, 0, :, 0].T[None])
  _set(a.mel.bias, torch_files.take(state, f"{AUDIO}.1.bias", (w_mel,), path, aud_hint))
  stages = sum(f"{AUDIO}.{AUDIO_STAGE_START + AUDIO_STAGE_STEP * i}.weight" in state
               for i in range(max(davenet.AUDIO_POOLS.values())))
  kinds = [k for k, pools in davenet.AUDIO_POOLS.items() if pools == stages]
  if kinds and kinds[0] != a.kind:
    raise torch_files.ConversionError(
        f"{path}: the file's speech encoder is {kinds[0]!r} ({stages} pooled convs, keys "
        f"{AUDIO}.6 .. {AUDIO}.{AUDIO_STAGE_START + AUDIO_STAGE_STEP * (stages - 1)}); "
        f"the config's is {a.kind!r}: set --config.model.audio_kind={kinds[0]}")
  indices = [3] + [AUDIO_STAGE_START + AUDIO_STAGE_STEP * i for i in range(len(a.stages))]
  for conv, index in zip([a.local] + list(a.stages), indices):
    k, cin, cout = conv.kernel.shape
    w = torch_files.take(state, f"{AUDIO}.{index}.weight", (cout, cin, 1, k), path, aud_hint)
    _set(conv.kernel, w[:, :, 0, :].transpose(2, 1, 0))
    _set(conv.bias, torch_files.take(state, f"{AUDIO}.{index}.bias", (cout,), path, aud_hint))
  torch_files.check_consumed(state, path)


def check_config(model_cfg):
  """The reference's encoders differ from ours in settings no weight shape shows: refuse the ones
  that would run the converted weights as another function."""
  want = {"image_pools": 4, "mask_padding": False, "cosine": False}
  wrong = {k: v for k, v in want.items() if model_cfg.get(k, v) != v}
  if wrong:
    raise errors.ConfigError(
        "a reference model runs with " + " ".join(f"--config.model.{k}={v}" for k, v in
                                                  wrong.items())
        + " (now " + ", ".join(f"{k}={model_cfg.get(k)}" for k in wrong) + ")")


def file_score(obj: dict) -> float:
  """The checkpoint's validation score: (A_r5 + I_r5) / 2 of its own recall (`recall_now`) when
  the file has it, else `best_eval` (the best so far: the file's own for model_best_*)."""
  now = obj.get("recall_now")
  if isinstance(now, dict) and "A_r5" in now and "I_r5" in now:
    return (float(now["A_r5"]) + float(now["I_r5"])) / 2
  return float(obj.get("best_eval", 0.0) or 0.0)


def convert(path: str, config, run_dir: str, make_manager) -> dict:
  """Writes the reference model file `path` as run `run_dir`'s checkpoint (step = the file's
  epoch); make_manager(checkpoint folder) -> the trainer's Orbax manager. Returns
  {'step', 'score'}. A run that already has checkpoints is refused (name another run)."""
  folder = os.path.join(run_dir, "checkpoints")
  if epath.Path(folder).is_dir() and any(epath.Path(folder).iterdir()):
    raise errors.ConfigError(f"{run_dir} already has checkpoints: pass another "
                             "--config.convert.run (or remove that run)")
  check_config(config.model)
  obj = torch_files.load(path)
  models = encoders.Encoders(config.model, rngs=nnx.Rngs(0))
  load_into(models, torch_files.unwrap(obj, path), path)
  step = max(1, int(obj.get("epoch", 1) or 1))
  score = file_score(obj)
  manager = make_manager(folder)
  checkpoints.save(manager, step, {"models": models}, metrics={"score": score})
  manager.wait_until_finished()
  return {"step": step, "score": score}
