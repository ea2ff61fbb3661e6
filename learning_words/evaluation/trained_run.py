"""A trained run from Python: its encoders, and the matchmap and MISA score of an image and a
recording.

  run = learning_words.load_run("workdir", "regular")   # the best checkpoint by validation
  heat = run.matchmap(image, "caption.wav")              # [h, w, t]
  score = run.score(image, "caption.wav")                # MISA

It uses the evaluators' own pieces: the run's checkpoint through workdir.load_encoders, the
dataset's featurisation (16 kHz log-mels fitted to `data.eval_frames`) and the jitted encoder
passes, so a score here is the score the evaluators compute for the same pair.
"""
import functools
import os
import warnings

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath

from learning_words import workdir as wd
from learning_words.common import errors, jsonio, mesh as mesh_lib
from learning_words.data import audio
from learning_words.learner import matchmap as mm_lib
from learning_words.models import encoders

CONFIG_FILE = "config.json"  # in a run's folder: the config it was trained with


def write_run_config(run_dir: str, config) -> str:
  """Keeps the config a run was trained (or converted) with beside its checkpoints."""
  return jsonio.write_json(os.path.join(run_dir, CONFIG_FILE), config.to_dict())


def read_run_config(run_dir: str) -> ml_collections.ConfigDict:
  path = os.path.join(run_dir, CONFIG_FILE)
  if not epath.Path(path).is_file():
    raise errors.MissingError(f"{path}: the run's config is missing (runs trained before it was "
                              "kept); pass config= (e.g. configs.quickstart.get_config())")
  return ml_collections.ConfigDict(jsonio.read_json(path))


def image_size(config) -> int:
  """The side of the images the run was trained on."""
  return int(config.data.image_size if config.data.source == "official"
             else config.world.resolution)


@functools.partial(jax.jit, static_argnames=("cosine",))
def _match(img, aud, frames, cosine: bool):
  """img [h,w,D], aud [T,D], frames: the matchmap [h,w,T] and its MISA."""
  mm = mm_lib.matchmap(img[None], aud[None], cosine=cosine)
  return mm[0], mm_lib.misa(mm, frames[None])[0]


def check_rate(rate) -> int:
  """A sample rate: a positive whole number of Hz (44100.0 passes, 44100.7 does not)."""
  value = float(rate) if np.ndim(rate) == 0 and np.isreal(rate) else float("nan")
  if not np.isfinite(value) or value <= 0 or value != round(value):
    raise errors.InputError(f"the sample rate must be a positive whole number of Hz, got {rate!r}")
  return int(round(value))


class TrainedRun:
  """A run's encoders (eval mode, on one device) with the config they were trained with."""

  def __init__(self, config, models, step: int, folder: str):
    self.config, self.models, self.step, self.folder = config, models, step, folder

  def __repr__(self):
    return f"TrainedRun({self.folder!r}, step={self.step})"

  def _image(self, image) -> jax.Array:
    """uint8 [H,W,3] (0-255) or float [H,W,3] (0-1), any size -> float [R,R,3] in [-1, 1].
    Integer images of another dtype must hold 0-255; anything else is refused, never guessed."""
    x = np.asarray(image)
    if x.ndim != 3 or x.shape[-1] != 3:
      raise errors.InputError(f"an image must be [H, W, 3] (RGB), got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
      raise errors.InputError(f"the image is empty (shape {x.shape})")
    if np.issubdtype(x.dtype, np.integer) or x.dtype == bool:
      if x.dtype != np.uint8 and (x.min() < 0 or x.max() > 255):
        raise errors.InputError(f"an integer image must hold values in [0, 255], got "
                                f"[{x.min()}, {x.max()}] ({x.dtype})")
      x = x.astype(np.float32) / 255.0 if x.dtype != bool else x.astype(np.float32)
    elif np.issubdtype(x.dtype, np.floating):
      if not np.all(np.isfinite(x)):
        raise errors.InputError("the image contains NaN or infinite values")
      if x.min() < 0 or x.max() > 1:
        raise errors.InputError(f"a float image must hold values in [0, 1], got "
                                f"[{x.min():.3g}, {x.max():.3g}] (for 0-255 pass uint8)")
    else:
      raise errors.InputError(f"an image must be uint8 or float, got dtype {x.dtype}")
    # As the dataset's uint8 images enter the encoder (models.segmenter.to_float).
    x = x.astype(np.float32) * 2 - 1
    r = image_size(self.config)
    if x.shape[:2] != (r, r):
      x = jax.image.resize(jnp.asarray(x), (r, r, 3), "linear", antialias=True)
    return jnp.asarray(x)

  def features(self, recording):
    """(log-mel [F,40] fitted to data.eval_frames, valid frames) of a path, a (waveform,
    sample rate) pair, or a 16 kHz waveform."""
    if isinstance(recording, (str, os.PathLike)):
      wav, name = audio.load_wav(recording), os.fspath(recording)
    elif isinstance(recording, tuple):
      if len(recording) != 2:
        raise errors.InputError(f"a recording tuple must be (waveform, sample_rate), got "
                                f"{len(recording)} items")
      wav, rate = recording
      if np.ndim(wav) == 0 and np.ndim(rate) >= 1:  # scipy.io.wavfile.read's (rate, data)
        raise errors.InputError("a recording tuple is (waveform, sample_rate); this looks like "
                                "(sample_rate, waveform), as scipy.io.wavfile.read returns")
      name = "waveform"
      wav = audio.resample(self.mono(np.asarray(wav), name), check_rate(rate))
    else:
      wav, name = self.mono(np.asarray(recording), "waveform"), "waveform"
    spec = audio.log_mel_spectrogram(wav, name=name)
    frames = int(self.config.data.eval_frames)
    if spec.shape[0] > frames:
      warnings.warn(f"{name}: the recording lasts {spec.shape[0] / 100:.2f} s; only its first "
                    f"{frames / 100:.2f} s are scored (data.eval_frames = {frames})", stacklevel=3)
    return audio.pad_or_crop(spec, frames)

  @staticmethod
  def mono(wav, name):
    """A 1-D waveform, or a [samples, channels] one downmixed by the channel mean (as a stereo
    file is); then checked (non-empty, finite)."""
    if wav.ndim == 2 and wav.shape[1] <= 8 < wav.shape[0]:
      wav = wav.mean(axis=1)
    return audio.check_waveform(wav, name)

  def embed_image(self, image) -> np.ndarray:
    """Image features [h, w, D]."""
    return np.asarray(encoders.embed_stored_images(self.models, self._image(image)[None])[0])

  def _audio(self, recording):
    spec, n = self.features(recording)
    aud, frames = encoders.embed_audio(self.models, jnp.asarray(spec)[None],
                                       jnp.asarray([n], jnp.int32))
    return aud[0], frames[0]

  def embed_audio(self, recording) -> np.ndarray:
    """Speech features [t, D] of the recording's t valid output frames."""
    aud, frames = self._audio(recording)
    return np.asarray(aud[:int(frames)])

  def _scored(self, image, recording):
    img = encoders.embed_stored_images(self.models, self._image(image)[None])[0]
    aud, frames = self._audio(recording)
    heat, score = _match(img, aud, frames, cosine=bool(self.config.model.cosine))
    return np.asarray(heat[..., :int(frames)]), float(score)

  def matchmap(self, image, recording) -> np.ndarray:
    """The matchmap [h, w, t]: each image cell against each valid speech frame."""
    return self._scored(image, recording)[0]

  def score(self, image, recording) -> float:
    """MISA: for each speech frame the best image cell, averaged over the frames."""
    return self._scored(image, recording)[1]


def load_run(workdir: str, run: str, checkpoint: str | int = "best", config=None) -> TrainedRun:
  """The run WORKDIR/runs/<run> at its best checkpoint by validation (or 'latest', a kept step,
  or a checkpoint folder's path). config: the run's config when it has no config.json."""
  folder = wd.path(os.fspath(workdir), "runs", run)
  if not epath.Path(folder).is_dir():
    runs = wd.list_runs(os.fspath(workdir))
    raise errors.MissingError(f"{folder}: no such run; runs here: {', '.join(runs) or 'none'}")
  config = read_run_config(folder) if config is None else config
  models, step = wd.load_encoders(config, folder, str(checkpoint))
  mesh_lib.replicate(models, mesh_lib.make_mesh(jax.local_devices()[:1]))
  models.eval()
  return TrainedRun(config, models, step, folder)
