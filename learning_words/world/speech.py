"""Offline text-to-speech with eSpeak NG, driven through ctypes.

The synthetic world speaks its captions so the model hears audio, as in the
reference's `synth` variant. The `espeakng-loader` wheel bundles libespeak-ng and its
voice data, so nothing needs installing system-wide and no network is used.

eSpeak NG keeps global state and is not thread-safe: each process sets up its own
engine lazily (keyed on the process id, so forked or spawned workers never share one),
every utterance holds a module lock, and every utterance runs on a freshly loaded
library so the same (text, voice) always gives the same samples, whatever was spoken
before and in whichever process. Output is float32 mono at 16 kHz.
"""

from __future__ import annotations

import _ctypes
import ctypes
import dataclasses
import math
import multiprocessing
import os
import platform
import threading

import numpy as np
import scipy.signal
import tqdm

SAMPLE_RATE = 16000

# Constants from espeak-ng's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 0x02
_INITIALIZE_DONT_EXIT = 0x8000  # Without it a bad data path calls exit(1).
_POS_CHARACTER = 1
_CHARS_AUTO = 0
_PARAM_RATE = 1
_PARAM_PITCH = 3
_EE_OK = 0

# speak_many replaces a pool worker after this many chunks (<= 32 texts each).
_TASKS_PER_WORKER = 200

_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class SpeechError(RuntimeError):
  """Speech synthesis failed or was asked for something it cannot do."""


@dataclasses.dataclass(frozen=True)
class Voice:
  """An eSpeak NG voice name with its speaking rate (words/min) and pitch (0-100)."""
  name: str
  rate: int
  pitch: int


DEFAULT_VOICE = Voice("en-us", 170, 50)
# English voices accepted by espeak_SetVoiceByName with the bundled data (1.52). Also
# present: en-us-nyc, en-gb-x-gbclan, en-gb-x-gbcwmd; "en-gb" is not a voice name
# ("en" is British English).
ENGLISH_VOICES = ("en-us", "en", "en-029", "en-gb-scotland", "en-gb-x-rp")


class _Engine:
  """This process's handle on libespeak-ng and the callback collecting its audio.

  Each utterance loads a fresh copy of the library and unloads it afterwards.
  libespeak-ng keeps hidden state between utterances (a pitch-flutter phase and a
  noise generator, both private statics), so without the reload the same text and
  voice come out slightly different depending on what was spoken before. The reload
  costs about 1 ms; the library leaks ~2-3 KB of C heap per load (see speak_many).
  Unloading only resets state if nothing else in the process holds libespeak-ng.
  """

  def __init__(self):
    self.pid = os.getpid()
    self._chunks = []
    # Kept as an attribute: ctypes callbacks must outlive their registration.
    self._callback = _SynthCallback(self._collect)
    self._lib_path, self._data_path = _find_library()
    lib, self.native_rate = self._open()  # Fails here, on first use, if broken.
    self._close(lib)

  def _open(self):
    """Loads and initialises a fresh library instance; returns (lib, native rate)."""
    try:
      lib = ctypes.CDLL(self._lib_path)
      _declare_signatures(lib)
      rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                   self._data_path.encode(), _INITIALIZE_DONT_EXIT)
    except (OSError, AttributeError) as e:
      raise _describe_failure(e) from e
    if rate <= 0:
      _unload_library(lib._handle)  # pylint: disable=protected-access
      raise _describe_failure(
          f"espeak_Initialize returned {rate} with data {self._data_path}")
    return lib, rate

  @staticmethod
  def _close(lib):
    """Shuts the engine down and unloads the library, discarding its state."""
    lib.espeak_Terminate()
    _unload_library(lib._handle)  # pylint: disable=protected-access

  def _collect(self, samples, count, events):
    """Copies one chunk of synthesised int16 samples; returns 0 to continue."""
    del events
    if samples and count > 0:
      raw = ctypes.string_at(samples, count * ctypes.sizeof(ctypes.c_short))
      self._chunks.append(np.frombuffer(raw, dtype=np.int16).copy())
    return 0

  def synthesize(self, text, voice):
    """Returns the int16 waveform of `text` at the engine's native rate."""
    lib, _ = self._open()
    self._chunks = []
    try:
      lib.espeak_SetSynthCallback(self._callback)
      if lib.espeak_SetVoiceByName(voice.name.encode()) != _EE_OK:
        raise SpeechError(f"unknown eSpeak NG voice {voice.name!r}")
      lib.espeak_SetParameter(_PARAM_RATE, int(voice.rate), 0)
      lib.espeak_SetParameter(_PARAM_PITCH, int(voice.pitch), 0)
      data = text.encode("utf-8")
      status = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0,
                                _CHARS_AUTO, None, None)
      lib.espeak_Synchronize()
    finally:
      self._close(lib)
    chunks, self._chunks = self._chunks, []
    if status != _EE_OK:
      raise SpeechError(f"espeak_Synth failed with status {status} for {text!r}")
    if not chunks:
      raise SpeechError(f"eSpeak NG produced no audio for {text!r}")
    return np.concatenate(chunks)


def _describe_failure(error):
  """Formats a load failure with the package and platform, for bug reports."""
  return SpeechError(
      f"cannot load eSpeak NG from the 'espeakng-loader' package on "
      f"{platform.system()} {platform.machine()}: {error}")


def _declare_signatures(lib):
  """Sets ctypes argument and return types of the functions used."""
  lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                    ctypes.c_int]
  lib.espeak_Initialize.restype = ctypes.c_int
  lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
  lib.espeak_SetSynthCallback.restype = None
  lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
  lib.espeak_SetVoiceByName.restype = ctypes.c_int
  lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
  lib.espeak_SetParameter.restype = ctypes.c_int
  lib.espeak_Synth.argtypes = [
      ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
      ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p]
  lib.espeak_Synth.restype = ctypes.c_int
  lib.espeak_Synchronize.argtypes = []
  lib.espeak_Synchronize.restype = ctypes.c_int
  lib.espeak_Terminate.argtypes = []
  lib.espeak_Terminate.restype = ctypes.c_int


def _find_library():
  """Returns (library path, data path) of the bundled eSpeak NG, checking they exist."""
  try:
    import espeakng_loader  # pylint: disable=g-import-not-at-top
    lib_path = espeakng_loader.get_library_path()
    data_path = espeakng_loader.get_data_path()
  except (ImportError, OSError, RuntimeError) as e:
    raise _describe_failure(e) from e
  if not os.path.isfile(lib_path):
    raise _describe_failure(f"no library file at {lib_path}")
  if not os.path.isfile(os.path.join(data_path, "phontab")):
    raise _describe_failure(f"no voice data (phontab) under {data_path}")
  return lib_path, data_path


def _unload_library(handle):
  """Unloads a ctypes-loaded library so its next load starts from clean state."""
  unload = getattr(_ctypes, "dlclose", None) or getattr(_ctypes, "FreeLibrary")
  unload(handle)


_lock = threading.Lock()
_engine = None


def _reset_lock_in_child():
  """Gives a forked child a fresh lock, in case the fork happened mid-utterance."""
  global _lock
  _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
  os.register_at_fork(after_in_child=_reset_lock_in_child)


def _engine_for_this_process():
  """Returns this process's engine, creating it on first use. Caller holds _lock."""
  global _engine
  if _engine is None or _engine.pid != os.getpid():
    _engine = _Engine()
  return _engine


def choose_voice(rng, voices=ENGLISH_VOICES, rate_range=(140, 200),
                 pitch_range=(30, 70)):
  """Draws a voice name, rate and pitch uniformly (ranges inclusive)."""
  name = voices[int(rng.integers(len(voices)))]
  rate = int(rng.integers(rate_range[0], rate_range[1] + 1))
  pitch = int(rng.integers(pitch_range[0], pitch_range[1] + 1))
  return Voice(name, rate, pitch)


def speak(text, voice=DEFAULT_VOICE):
  """Synthesises `text` as a float32 waveform in [-1, 1] at 16 kHz."""
  if not isinstance(text, str) or not text.strip():
    raise SpeechError(f"cannot speak empty text {text!r}")
  with _lock:
    engine = _engine_for_this_process()
    pcm = engine.synthesize(text, voice)
    native_rate = engine.native_rate
  wav = pcm.astype(np.float32) / 32768.0
  g = math.gcd(native_rate, SAMPLE_RATE)
  wav = scipy.signal.resample_poly(wav, SAMPLE_RATE // g, native_rate // g)
  return np.clip(wav, -1.0, 1.0).astype(np.float32)


def _speak_item(item):
  """Speaks one (text, voice) pair; top-level so spawned workers can unpickle it."""
  return speak(*item)


def speak_many(texts, voices, workers=2, progress=True):
  """Speaks each text with its voice, returning waveforms in the order of `texts`.

  `voices` is one Voice for all texts or one per text. workers > 1 uses a spawn pool
  (fresh interpreters, so no engine state is inherited); workers <= 1, or a call from
  a daemonic worker (which may not have children), runs in this process. Pool
  workers are replaced every `_TASKS_PER_WORKER` chunks to bound the C heap that
  libespeak-ng leaks on each load (~2-3 KB per utterance).
  """
  texts = list(texts)
  if isinstance(voices, Voice):
    voices = [voices] * len(texts)
  voices = list(voices)
  if len(voices) != len(texts):
    raise ValueError(f"got {len(texts)} texts but {len(voices)} voices")
  items = list(zip(texts, voices))
  workers = min(int(workers), len(items))
  bar = dict(total=len(items), disable=not progress, desc="speaking", unit="utt")
  if workers <= 1 or multiprocessing.current_process().daemon:
    return [_speak_item(item) for item in tqdm.tqdm(items, **bar)]
  chunksize = max(1, min(32, len(items) // (workers * 8)))
  context = multiprocessing.get_context("spawn")
  with context.Pool(workers, maxtasksperchild=_TASKS_PER_WORKER) as pool:
    return list(tqdm.tqdm(pool.imap(_speak_item, items, chunksize=chunksize), **bar))
