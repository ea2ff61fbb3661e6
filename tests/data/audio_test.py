"""Tests for learning_words.audio: loading edge cases and the reference featurisation.

librosa's mel filterbank over a frame-by-frame numpy STFT is the independent oracle for the
spectrogram; files are written by the tests with soundfile (or by hand for broken ones) into
tmp_path.
"""

import os

import librosa
import numpy as np
import pytest
import soundfile as sf

from learning_words.data import audio
from learning_words.world import speech


def _oracle_log_mel(wav):
  """The reference log-mel, as [T, 40]: librosa's Slaney mel filterbank over a frame-by-frame
  numpy STFT. (librosa's own stft and power_to_db compile numba kernels on first use: about 24 s
  in a fresh environment, against 2 s for the filterbank.)"""
  y = wav.astype(np.float64) - wav.mean()
  y = np.append(y[0], y[1:] - 0.97 * y[:-1])
  padded = np.pad(y, 200, mode="reflect")  # centred frames
  window = 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(400) / 399)  # symmetric Hamming
  frames = [padded[t * 160:t * 160 + 400] * window for t in range(1 + len(y) // 160)]
  power = np.stack([np.abs(np.fft.rfft(frame)) ** 2 for frame in frames], axis=1)  # [201, T]
  mel = librosa.filters.mel(sr=16000, n_fft=400, n_mels=40, fmin=20) @ power
  db = 10 * np.log10(np.maximum(mel, 1e-10)) - 10 * np.log10(mel.max())
  return np.maximum(db, db.max() - 80.0).T


def _assert_matches_oracle(wav):
  """Checks shape, dtype and values (where not clipped by top_db) against the oracle."""
  got = audio.log_mel_spectrogram(wav)
  want = _oracle_log_mel(wav)
  assert got.dtype == np.float32
  assert got.shape == want.shape == (1 + len(wav) // 160, 40)
  unclipped = want > want.max() - 80.0 + 0.01
  assert unclipped.mean() > 0.5
  assert np.abs(got - want)[unclipped].max() < 0.05


def _sine(freq, rate, seconds, amplitude=0.5):
  """Returns a float64 sine at `freq` Hz sampled at `rate`."""
  t = np.arange(int(rate * seconds)) / rate
  return amplitude * np.sin(2 * np.pi * freq * t)


def _dominant_hz(wav, rate):
  """Returns the frequency of the largest FFT magnitude."""
  spectrum = np.abs(np.fft.rfft(wav))
  return np.fft.rfftfreq(len(wav), 1.0 / rate)[np.argmax(spectrum)]


def test_log_mel_matches_librosa_on_noise():
  rng = np.random.default_rng(0)
  wav = (0.1 * rng.standard_normal(16000 * 2 + 77) + 0.03).astype(np.float32)
  _assert_matches_oracle(wav)


def test_log_mel_matches_librosa_on_speech():
  wav = speech.speak("there is a big red shiny ball to the left of a cyan cube.")
  _assert_matches_oracle(wav)


@pytest.mark.parametrize("length", [201, 320, 479, 16000, 16159])
def test_log_mel_frame_count(length):
  wav = np.random.default_rng(length).standard_normal(length)
  assert audio.log_mel_spectrogram(wav).shape == (1 + length // 160, 40)


def test_log_mel_rejects_too_short_waveform():
  with pytest.raises(audio.AudioError, match="clip_7"):
    audio.log_mel_spectrogram(np.ones(200), name="clip_7")


def test_pad_or_crop_crops_at_offset():
  spec = np.arange(10, dtype=np.float64).reshape(5, 2)
  out, n = audio.pad_or_crop(spec, 3, offset=1)
  np.testing.assert_array_equal(out, [[2, 3], [4, 5], [6, 7]])
  assert n == 3 and out.dtype == np.float32


def test_pad_or_crop_pads_at_end():
  spec = np.arange(10, dtype=np.float64).reshape(5, 2)
  out, n = audio.pad_or_crop(spec, 7)
  np.testing.assert_array_equal(
      out, [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [0, 0], [0, 0]])
  assert n == 5


def test_pad_or_crop_offset_then_pad():
  spec = np.arange(10, dtype=np.float64).reshape(5, 2)
  out, n = audio.pad_or_crop(spec, 4, offset=3)
  np.testing.assert_array_equal(out, [[6, 7], [8, 9], [0, 0], [0, 0]])
  assert n == 2


def test_pad_or_crop_rejects_bad_offset():
  with pytest.raises(ValueError):
    audio.pad_or_crop(np.zeros((5, 2)), 3, offset=5)


def _write_bytes(path, data):
  """Writes raw bytes, for files soundfile would refuse to produce."""
  with open(path, "wb") as f:
    f.write(data)
  return str(path)


def _truncated(path):
  """Writes a valid 1 s WAV then keeps only its first half."""
  sf.write(path, _sine(440, 16000, 1.0), 16000, subtype="PCM_16")
  data = open(path, "rb").read()
  return _write_bytes(path, data[:len(data) // 2])


def _header_only(path):
  sf.write(path, np.zeros(0), 16000, subtype="PCM_16")
  return str(path)


def _with_nan(path):
  wav = _sine(440, 16000, 0.5)
  wav[100] = np.nan
  sf.write(path, wav, 16000, subtype="FLOAT")
  return str(path)


@pytest.mark.parametrize("make", [
    lambda p: str(p),  # Missing: never written.
    lambda p: _write_bytes(p, b""),
    _header_only,
    _truncated,
    lambda p: _write_bytes(p, b"this is a caption, not audio\n" * 20),
    _with_nan,
], ids=["missing", "empty", "header_only", "truncated", "text", "nan"])
def test_load_wav_bad_file_raises_naming_it(tmp_path, make):
  path = make(tmp_path / "utterance_42.wav")
  with pytest.raises(audio.AudioError, match="utterance_42.wav"):
    audio.load_wav(path)


@pytest.mark.parametrize("rate,freq", [(22050, 440.0), (8000, 300.0)])
def test_load_wav_resamples(tmp_path, rate, freq):
  path = str(tmp_path / "rate.wav")
  sf.write(path, _sine(freq, rate, 1.0), rate, subtype="PCM_16")
  wav = audio.load_wav(path)
  assert wav.dtype == np.float32 and wav.ndim == 1
  assert abs(len(wav) - 16000) <= 1
  assert abs(_dominant_hz(wav, 16000) - freq) <= 1.0


def test_load_wav_downmixes_stereo_by_mean(tmp_path):
  path = str(tmp_path / "stereo.wav")
  rng = np.random.default_rng(1)
  stereo = np.stack([_sine(440, 16000, 0.5), 0.3 * rng.standard_normal(8000)], axis=1)
  sf.write(path, stereo.astype(np.float32), 16000, subtype="FLOAT")
  want = stereo.astype(np.float32).mean(axis=1)
  np.testing.assert_allclose(audio.load_wav(path), want, atol=1e-7)


@pytest.mark.parametrize("subtype,atol", [
    ("PCM_U8", 1.0 / 128), ("PCM_16", 1.0 / 2**15), ("PCM_24", 1.0 / 2**23),
    ("PCM_32", 1e-7), ("FLOAT", 1e-7)])
def test_load_wav_depths_scale_to_unit_range(tmp_path, subtype, atol):
  path = str(tmp_path / f"{subtype}.wav")
  sine = _sine(440, 16000, 0.25)
  sf.write(path, sine, 16000, subtype=subtype)
  wav = audio.load_wav(path)
  assert wav.dtype == np.float32
  np.testing.assert_allclose(wav, sine, atol=atol)


def test_load_wav_directory_raises(tmp_path):
  with pytest.raises(audio.AudioError, match=os.path.basename(tmp_path)):
    audio.load_wav(tmp_path)


@pytest.mark.parametrize("wav", [np.zeros((2, 100)), np.zeros(0), np.array([0.0, np.inf])],
                         ids=["2d", "empty", "inf"])
def test_check_waveform_rejects(wav):
  with pytest.raises(audio.AudioError, match="caption 9"):
    audio.check_waveform(wav, "caption 9")


def test_check_waveform_returns_float32():
  out = audio.check_waveform(np.array([0, 1, -1], dtype=np.int64), "ints")
  assert out.dtype == np.float32
  np.testing.assert_array_equal(out, [0.0, 1.0, -1.0])
