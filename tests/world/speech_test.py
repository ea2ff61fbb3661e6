"""Tests for learning_words.world.speech: eSpeak NG synthesis through ctypes.

Oracles: signal statistics (RMS, length), the voice files shipped in the
espeakng-loader data, and in-process synthesis for the multi-process path.
"""

import os

import espeakng_loader
import numpy as np
import pytest

from learning_words.world import speech

CAPTION = "there is a big red shiny ball to the left of a large cyan rubber cylinder."


def _rms(wav):
  return float(np.sqrt(np.mean(np.square(wav, dtype=np.float64))))


def test_speak_returns_audible_16khz_float32():
  wav = speech.speak(CAPTION)
  assert speech.SAMPLE_RATE == 16000
  assert wav.dtype == np.float32 and wav.ndim == 1
  assert 1.0 < len(wav) / 16000 < 10.0  # A 14-word caption at 170 words/min.
  assert _rms(wav) > 0.02
  assert np.abs(wav).max() <= 1.0


def test_longer_text_gives_longer_audio():
  short = "a small gray cube."
  long = "a small gray cube. a small gray cube. a small gray cube."
  assert len(speech.speak(long)) > 2.5 * len(speech.speak(short))


def test_voices_differ():
  us = speech.speak(CAPTION, speech.Voice("en-us", 170, 50))
  scottish = speech.speak(CAPTION, speech.Voice("en-gb-scotland", 170, 50))
  high = speech.speak(CAPTION, speech.Voice("en-us", 170, 80))
  fast = speech.speak(CAPTION, speech.Voice("en-us", 220, 50))
  assert len(us) != len(scottish) or not np.array_equal(us, scottish)
  assert not np.array_equal(us[:len(high)], high[:len(us)])
  assert len(fast) < 0.9 * len(us)


def test_same_voice_is_deterministic_across_utterances():
  voice = speech.Voice("en-029", 150, 40)
  first = speech.speak(CAPTION, voice)
  speech.speak("something else entirely, spoken in between.",
               speech.Voice("en-gb-x-rp", 190, 65))
  np.testing.assert_array_equal(speech.speak(CAPTION, voice), first)


def test_default_voices_exist_in_bundled_data_and_speak():
  lang_files = {name.lower() for _, _, files in
                os.walk(os.path.join(espeakng_loader.get_data_path(), "lang"))
                for name in files}
  for name in speech.ENGLISH_VOICES:
    assert name in lang_files
    assert _rms(speech.speak("one blue cube.", speech.Voice(name, 170, 50))) > 0.02


def test_unknown_voice_raises():
  with pytest.raises(speech.SpeechError, match="xx-nowhere"):
    speech.speak("hello", speech.Voice("xx-nowhere", 170, 50))


@pytest.mark.parametrize("text", ["", "   \n"])
def test_empty_text_raises(text):
  with pytest.raises(speech.SpeechError):
    speech.speak(text)


def test_choose_voice_draws_within_ranges():
  rng = np.random.default_rng(3)
  voices = [speech.choose_voice(rng, rate_range=(140, 200), pitch_range=(30, 70))
            for _ in range(200)]
  assert {v.name for v in voices} == set(speech.ENGLISH_VOICES)
  assert all(140 <= v.rate <= 200 and 30 <= v.pitch <= 70 for v in voices)
  assert min(v.rate for v in voices) < 150 and max(v.rate for v in voices) > 190
  again = speech.choose_voice(np.random.default_rng(3))
  assert again == voices[0]


def test_speak_many_pool_matches_in_process():
  rng = np.random.default_rng(5)
  texts = [f"there are {n} small shiny spheres." for n in
           ("two", "three", "four", "five", "six", "seven")]
  voices = [speech.choose_voice(rng) for _ in texts]
  pooled = speech.speak_many(texts, voices, workers=2, progress=False)
  assert len(pooled) == len(texts)
  for text, voice, wav in zip(texts, voices, pooled):
    np.testing.assert_array_equal(wav, speech.speak(text, voice))


def test_speak_many_rejects_mismatched_voices():
  with pytest.raises(ValueError):
    speech.speak_many(["a", "b"], [speech.Voice("en", 170, 50)], workers=1)


def test_broken_library_path_names_the_package(monkeypatch):
  monkeypatch.setattr(espeakng_loader, "get_library_path",
                      lambda: "/nonexistent/libespeak-ng.so")
  monkeypatch.setattr(speech, "_engine", None)
  with pytest.raises(speech.SpeechError, match="espeakng-loader") as error:
    speech.speak("hello")
  assert "/nonexistent/libespeak-ng.so" in str(error.value)


def test_missing_data_names_the_package(monkeypatch):
  def missing():
    raise RuntimeError("data path not exists at /nowhere")
  monkeypatch.setattr(espeakng_loader, "get_data_path", missing)
  monkeypatch.setattr(speech, "_engine", None)
  with pytest.raises(speech.SpeechError, match="espeakng-loader.*/nowhere"):
    speech.speak("hello")


def test_word_times_fall_on_the_spoken_words():
  """Slow speech with commas leaves silences between the words: each word's time span starts at
  its voiced stretch (an energy envelope, independent of eSpeak NG's events) and holds it, and the
  last word ends with the recording."""
  wav, times = speech.speak_timed("red, blue, green, yellow.", speech.Voice("en-us", 80, 50))
  assert times.shape == (4, 2)
  assert times[-1, 1] == pytest.approx(len(wav) / speech.SAMPLE_RATE, abs=2e-3)
  hop = speech.SAMPLE_RATE // 100
  energy = np.sqrt(np.convolve(wav.astype(np.float64) ** 2, np.ones(hop) / hop, "same"))[::hop]
  voiced = np.flatnonzero(np.diff(np.concatenate([[0], (energy > 0.01).astype(int), [0]])))
  segments = voiced.reshape(-1, 2) / 100.0  # [onset, offset) seconds of each voiced stretch
  assert len(segments) == 4
  for (start, end), (onset, offset) in zip(times, segments):
    assert abs(start - onset) <= 0.04
    assert offset <= end + 0.02


def test_word_times_from_events_by_hand():
  text = "of the big cube."
  # eSpeak NG merged 'the' into 'of'; the last event points at the space before its word
  events = [(0, 0.0), (7, 0.3), (10, 0.5)]
  times = speech.word_times(text, events, 1.0)
  np.testing.assert_allclose(times[[0, 2, 3]], [[0.0, 0.3], [0.3, 0.5], [0.5, 1.0]])
  assert np.isnan(times[1]).all()
