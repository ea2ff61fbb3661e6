"""Waveform loading and the reference log-mel featurisation.

Speech enters the model as a time-major log-mel spectrogram computed exactly as the
reference does (see docs/differences.md), so checkpoints and numbers stay
comparable. Unlike the reference, which silently substitutes zeros for unreadable
audio, every problem raises `AudioError` naming the file.

Only numpy, scipy and soundfile are used here: no JAX, no librosa (librosa is the
test oracle for the spectrogram).
"""

from __future__ import annotations

import functools
import math
import os
import struct

import numpy as np
from etils import epy
with epy.lazy_imports():  # imported at first use: start-up time
  import scipy.fft
  import scipy.signal
import soundfile

from learning_words.common import errors

SAMPLE_RATE = 16000

_PREEMPHASIS = 0.97
_WINDOW_SECONDS = 0.025
_HOP_SECONDS = 0.010
FRAMES_PER_SECOND = 100  # log-mel frames a second: frame t is centred on t * _HOP_SECONDS
_FMIN_HZ = 20.0
_AMIN = 1e-10
_TOP_DB = 80.0
# Data chunk sizes that streaming writers use for "unknown length".
_UNKNOWN_DATA_SIZES = (0, 0xFFFFFFFF)


class AudioError(errors.InputError):
  """A waveform or audio file is unusable; the message names it and the problem."""


def _fail(name, problem):
  """Builds an AudioError whose message starts with the file (or given) name."""
  return AudioError(f"{name}: {problem}")


# ---------------------------------------------------------------------------
# Loading.


def _read_riff_data_sizes(path):
  """Returns (declared, present) byte counts of a RIFF/RIFX WAV's data chunk.

  Why: libsndfile silently shortens a WAV whose data chunk promises more bytes than
  the file holds, so a truncated file would load as a shorter clip. Returns None when
  the file is not RIFF WAV or has no data chunk (libsndfile then judges it).
  """
  file_size = os.path.getsize(path)
  with open(path, "rb") as f:
    head = f.read(12)
    if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RIFX"):
      return None
    order = "<" if head[:4] == b"RIFF" else ">"
    pos = 12
    while pos + 8 <= file_size:
      f.seek(pos)
      chunk_id, size = struct.unpack(order + "4sI", f.read(8))
      if chunk_id == b"data":
        return size, file_size - (pos + 8)
      pos += 8 + size + (size & 1)  # Chunks are padded to an even length.
  return None


def _check_not_truncated(path):
  """Raises AudioError when a WAV header promises more audio than the file holds."""
  sizes = _read_riff_data_sizes(path)
  if sizes is None:
    return
  declared, present = sizes
  if declared not in _UNKNOWN_DATA_SIZES and declared > present:
    raise _fail(path, f"truncated WAV: data chunk declares {declared} bytes but "
                f"only {present} are present")


def resample(wav, source_rate, target_rate=SAMPLE_RATE):
  """Resamples with a polyphase filter at the reduced integer ratio."""
  if source_rate == target_rate:
    return wav
  g = math.gcd(int(source_rate), int(target_rate))
  out = scipy.signal.resample_poly(wav, target_rate // g, source_rate // g)
  return out.astype(np.float32)


def load_wav(path, sample_rate=SAMPLE_RATE):
  """Reads an audio file as float32 mono at `sample_rate`.

  Any PCM depth or float encoding soundfile understands is scaled to [-1, 1];
  multichannel audio is downmixed by the channel mean; another rate is resampled.
  Raises AudioError (naming `path`) for a missing, empty, truncated, non-audio or
  non-finite file.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise _fail(path, "file not found")
  if not os.path.isfile(path):
    raise _fail(path, "not a regular file")
  if os.path.getsize(path) == 0:
    raise _fail(path, "empty file (0 bytes)")
  try:
    _check_not_truncated(path)
  except OSError as e:
    raise _fail(path, f"cannot read file ({e})") from e
  try:
    with soundfile.SoundFile(path) as f:
      expected = f.frames
      source_rate = f.samplerate
      data = f.read(dtype="float32", always_2d=True)
  except (soundfile.SoundFileError, RuntimeError) as e:
    raise _fail(path, f"not a readable audio file ({e})") from e
  if expected == 0 or data.shape[0] == 0:
    raise _fail(path, "no audio frames")
  if data.shape[0] < expected:
    raise _fail(path, f"truncated: header declares {expected} frames, "
                f"read {data.shape[0]}")
  if not np.all(np.isfinite(data)):
    raise _fail(path, "contains NaN or infinite samples")
  wav = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
  return resample(np.ascontiguousarray(wav), source_rate, sample_rate)


def check_waveform(wav, name):
  """Validates an in-memory waveform (1-D, non-empty, finite); returns it as float32."""
  wav = np.asarray(wav)
  if wav.ndim != 1:
    raise _fail(name, f"waveform must be 1-D, got shape {wav.shape}")
  if wav.size == 0:
    raise _fail(name, "empty waveform")
  if not np.issubdtype(wav.dtype, np.number) or np.iscomplexobj(wav):
    raise _fail(name, f"waveform must be real-valued, got dtype {wav.dtype}")
  if not np.all(np.isfinite(wav)):
    raise _fail(name, "waveform contains NaN or infinite samples")
  return wav.astype(np.float32, copy=False)


# ---------------------------------------------------------------------------
# Features.


def _hz_to_slaney_mel(hz):
  """Maps Hz to Slaney's mel scale: linear below 1 kHz, logarithmic above."""
  hz = np.asarray(hz, dtype=np.float64)
  linear = hz / (200.0 / 3.0)
  log_step = np.log(6.4) / 27.0
  logarithmic = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / log_step
  return np.where(hz >= 1000.0, logarithmic, linear)


def _slaney_mel_to_hz(mel):
  """Inverts `_hz_to_slaney_mel`."""
  mel = np.asarray(mel, dtype=np.float64)
  log_step = np.log(6.4) / 27.0
  linear = mel * (200.0 / 3.0)
  logarithmic = 1000.0 * np.exp(log_step * (mel - 15.0))
  return np.where(mel >= 15.0, logarithmic, linear)


@functools.lru_cache(maxsize=8)  # the same few filterbanks for every recording
def _mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax):
  """Returns [n_mels, n_fft//2 + 1] triangular Slaney filters, area-normalised.

  Filter edges are equally spaced on the Slaney mel scale between fmin and fmax; each
  triangle is scaled by 2 / (bandwidth in Hz) so every filter has roughly unit area.
  """
  bin_hz = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
  edges_hz = _slaney_mel_to_hz(
      np.linspace(_hz_to_slaney_mel(fmin), _hz_to_slaney_mel(fmax), n_mels + 2))
  lo, mid, hi = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
  rising = (bin_hz[None, :] - lo) / (mid - lo)
  falling = (hi - bin_hz[None, :]) / (hi - mid)
  weights = np.maximum(0.0, np.minimum(rising, falling))
  return weights * (2.0 / (hi - lo))


@functools.lru_cache(maxsize=8)
def _hamming(n: int) -> np.ndarray:
  return scipy.signal.windows.hamming(n, sym=True)


def _power_spectrogram(wav, n_fft, hop):
  """Returns the [T, n_fft//2 + 1] power of centred, Hamming-windowed frames."""
  padded = np.pad(wav, n_fft // 2, mode="reflect")
  frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
  window = _hamming(n_fft)
  spectrum = scipy.fft.rfft(frames * window, axis=1)  # 3x numpy's rfft at n_fft 400, float64
  return spectrum.real ** 2 + spectrum.imag ** 2


def _power_to_db(power):
  """Converts power to dB relative to its maximum, floored `_TOP_DB` below it."""
  db = 10.0 * np.log10(np.maximum(_AMIN, power))
  db -= 10.0 * np.log10(max(_AMIN, float(power.max())))
  return np.maximum(db, db.max() - _TOP_DB)


def log_mel_spectrogram(wav, sample_rate=SAMPLE_RATE, n_mels=40, *, name="waveform"):
  """Returns the reference [T, n_mels] float32 log-mel spectrogram of `wav`.

  Pipeline: remove DC, pre-emphasis 0.97, centred STFT (25 ms symmetric Hamming
  window, 10 ms hop, reflect padding; 400/160 samples at 16 kHz so
  T = 1 + len // 160), power, Slaney mel filterbank (fmin 20 Hz, fmax sr/2), dB
  relative to the maximum with an 80 dB floor.

  Reflect padding needs more than n_fft//2 samples (201 at 16 kHz, 12.5 ms); shorter
  waveforms raise AudioError naming `name` rather than being zero-padded, since a clip
  that short is broken data, not speech.
  """
  wav = check_waveform(wav, name).astype(np.float64)
  n_fft = int(round(_WINDOW_SECONDS * sample_rate))
  hop = int(round(_HOP_SECONDS * sample_rate))
  if wav.size <= n_fft // 2:
    raise _fail(name, f"waveform of {wav.size} samples is too short: need at least "
                f"{n_fft // 2 + 1} (n_fft//2 + 1) for centred reflect-padded frames")
  wav = wav - wav.mean()
  emphasised = np.concatenate([wav[:1], wav[1:] - _PREEMPHASIS * wav[:-1]])
  power = _power_spectrogram(emphasised, n_fft, hop)
  filters = _mel_filterbank(sample_rate, n_fft, n_mels, _FMIN_HZ, sample_rate / 2.0)
  return _power_to_db(power @ filters.T).astype(np.float32)


def pad_or_crop(spec, target, offset=0):
  """Fits a [T, F] spectrogram to exactly `target` frames.

  Keeps frames [offset, offset + target) and zero-pads at the end when fewer remain.
  Returns (out [target, F] float32, n_frames) where n_frames counts the real frames
  kept, so models can mask the padding.
  """
  spec = np.asarray(spec)
  if spec.ndim != 2:
    raise ValueError(f"spectrogram must be [T, F], got shape {spec.shape}")
  if target <= 0:
    raise ValueError(f"target must be positive, got {target}")
  if not 0 <= offset < max(spec.shape[0], 1):
    raise ValueError(f"offset {offset} outside [0, {spec.shape[0]}) frames")
  kept = spec[offset:offset + target]
  if kept.shape[0] == target:  # one copy (the caller may keep the spectrogram it cropped)
    return np.array(kept, dtype=np.float32), target
  out = np.zeros((target, spec.shape[1]), dtype=np.float32)
  out[:kept.shape[0]] = kept
  return out, int(kept.shape[0])
