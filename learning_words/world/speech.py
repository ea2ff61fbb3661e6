"""Offline text-to-speech with eSpeak NG, driven through ctypes.

The synthetic world speaks its captions so the model hears audio, as in the
reference's `synth` variant. The `espeakng-loader` wheel bundles libespeak-ng and its
voice data, so nothing needs installing system-wide and no network is used.

eSpeak NG keeps global state and is not thread-safe: each process sets up its own
engine lazily (keyed on the process id, so forked or spawned workers never share one),
every utterance holds a module lock, and every utterance runs on a freshly loaded
library so the same (text, voice) always gives the same samples, whatever was spoken
before and in whichever process. Output is float32 mono at 16 kHz.

eSpeak NG also reports where each word starts (its word events: the character position in the
text and the sample where the word begins); `speak_timed` turns them into each word's start and end
in seconds, which the oracle world stores so a loss can find the frames of one word.
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
import tqdm
from etils import epy
with epy.lazy_imports():  # imported at first use: start-up time
  import scipy.signal

SAMPLE_RATE = 16000

# Constants from espeak-ng's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 0x02
_INITIALIZE_DONT_EXIT = 0x8000  # Without it a bad data path calls exit(1).
_POS_CHARACTER = 1
_CHARS_AUTO = 0
_PARAM_RATE = 1
_PARAM_PITCH = 3
_EE_OK = 0
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_MSG_TERMINATED = 6

# speak_many replaces a pool worker after this many chunks (<= 32 texts each).
_TASKS_PER_WORKER = 200



class _EventId(ctypes.Union):
  _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
  """speak_lib.h's espeak_EVENT (an array of them, ending with type 0, comes with each chunk)."""
  _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
              ("text_position", ctypes.c_int), ("length", ctypes.c_int),
              ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
              ("user_data", ctypes.c_void_p), ("id", _EventId)]


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


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
    self._words = []  # (0-based character position, first sample at the native rate)
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
    """Copies one chunk of synthesised int16 samples and its word events; returns 0 to go on."""
    i = 0
    while events and events[i].type not in (_EVENT_LIST_TERMINATED, _EVENT_MSG_TERMINATED):
      if events[i].type == _EVENT_WORD:
        self._words.append((events[i].text_position - 1, events[i].sample))
      i += 1
    if samples and count > 0:
      raw = ctypes.string_at(samples, count * ctypes.sizeof(ctypes.c_short))
      self._chunks.append(np.frombuffer(raw, dtype=np.int16).copy())
    return 0

  def synthesize(self, text, voice):
    """Returns the int16 waveform of `text` at the engine's native rate and its word events
    [(0-based character position in `text`, the word's first sample)]."""
    lib, _ = self._open()
    self._chunks, self._words = [], []
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
    words, self._words = self._words, []
    if status != _EE_OK:
      raise SpeechError(f"espeak_Synth failed with status {status} for {text!r}")
    if not chunks:
      raise SpeechError(f"eSpeak NG produced no audio for {text!r}")
    return np.concatenate(chunks), words


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
  return speak_timed(text, voice)[0]


def speak_timed(text, voice=DEFAULT_VOICE):
  """(waveform float32 [n] at 16 kHz, word times float32 [W, 2]): `text` spoken, and the start and
  end in seconds of each of its W space-separated words (word_times), NaN where eSpeak NG gave the
  word no event of its own (it merges some short words into the one before)."""
  if not isinstance(text, str) or not text.strip():
    raise SpeechError(f"cannot speak empty text {text!r}")
  with _lock:
    engine = _engine_for_this_process()
    pcm, events = engine.synthesize(text, voice)
    native_rate = engine.native_rate
  wav = pcm.astype(np.float32) / 32768.0
  g = math.gcd(native_rate, SAMPLE_RATE)
  wav = scipy.signal.resample_poly(wav, SAMPLE_RATE // g, native_rate // g)
  times = word_times(text, [(pos, sample / native_rate) for pos, sample in events],
                     len(pcm) / native_rate)
  return np.clip(wav, -1.0, 1.0).astype(np.float32), times


def word_times(text: str, events, duration: float) -> np.ndarray:
  """float32 [W, 2] start and end (seconds) of each space-separated word of `text`, from word
  events [(0-based character position, start in seconds)] of an utterance `duration` s long.
  An event belongs to the word holding its position, or to the next word when it points at the
  space before one. A word ends where the next event starts (the utterance's end after the last).
  Words without an event of their own: NaN."""
  starts = np.cumsum([0] + [len(w) + 1 for w in text.split(" ")])[:-1]
  ends = starts + np.array([len(w) for w in text.split(" ")])
  out = np.full((len(starts), 2), np.nan, np.float32)
  events = sorted((t, p) for p, t in events)
  for e, (t, pos) in enumerate(events):
    later = np.nonzero(ends > pos)[0]
    if not len(later) or not np.isnan(out[later[0], 0]):
      continue
    out[later[0]] = (t, events[e + 1][0] if e + 1 < len(events) else duration)
  return out


def _speak_item(item):
  """Speaks one (text, voice, timed) item; top-level so spawned workers can unpickle it."""
  text, voice, timed = item
  return speak_timed(text, voice) if timed else speak(text, voice)


def speak_many(texts, voices, workers=2, progress=True, timed=False):
  """Speaks each text with its voice, returning waveforms in the order of `texts` (with
  `timed`, (waveform, word times) as speak_timed).

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
  items = [(t, v, timed) for t, v in zip(texts, voices)]
  workers = min(int(workers), len(items))
  bar = dict(total=len(items), disable=not progress, desc="speaking", unit="utt")
  if workers <= 1 or multiprocessing.current_process().daemon:
    return [_speak_item(item) for item in tqdm.tqdm(items, **bar)]
  chunksize = max(1, min(32, len(items) // (workers * 8)))
  context = multiprocessing.get_context("spawn")
  with context.Pool(workers, maxtasksperchild=_TASKS_PER_WORKER) as pool:
    return list(tqdm.tqdm(pool.imap(_speak_item, items, chunksize=chunksize), **bar))
