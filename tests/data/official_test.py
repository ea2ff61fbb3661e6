"""The official-layout builder on a fixture written by the test (TTS audio), and its bad inputs."""
import json
import os
import shutil

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from configs import tiny
from learning_words.data import audio
from learning_words.data import official
from tests.conftest import FIXTURE_SPLITS


def _config(root, **data):
  c = tiny.get_config()
  c.data.source = "official"
  c.data.official_dir = root
  for k, v in data.items():
    c.data[k] = v
  return c


def _read_all(builder, split):
  src = builder.as_data_source(split)
  return {int(r["id"]): r for r in (src[i] for i in range(len(src)))}


def test_builds_every_split_and_records_match_the_files(official_layout, tmp_path):
  root, entries = official_layout
  builder = official.prepare(_config(os.path.dirname(root)), str(tmp_path))  # parent/synth/ found
  for split, ids in FIXTURE_SPLITS.items():
    recs = _read_all(builder, split)
    assert sorted(recs) == sorted(ids)
    for i, r in recs.items():
      assert r["z_index"] == i
      assert r["text"].decode() == entries[i]["text"]
      pcm, sr = sf.read(os.path.join(root, "audio", f"{i}.wav"), dtype="int16")
      assert sr == 16000
      np.testing.assert_array_equal(r["waveform"], pcm)
      with Image.open(os.path.join(root, "images", f"{i}.jpg")) as im:
        np.testing.assert_array_equal(r["image"], np.asarray(im.convert("RGB")))


def test_resamples_downmixes_and_converts_bad_formats(official_layout, tmp_path):
  src_root, _ = official_layout
  root = str(tmp_path / "layout")
  shutil.copytree(src_root, root)
  path = os.path.join(root, "audio", "3.wav")
  mono, sr = sf.read(path, dtype="float32")
  t_old = np.arange(len(mono)) / sr
  t_new = np.arange(int(len(mono) * 44100 / sr)) / 44100
  resampled = np.interp(t_new, t_old, mono)  # the oracle: linear interpolation to 44.1 kHz
  sf.write(path, np.stack([resampled, resampled], 1), 44100, subtype="PCM_24")
  builder = official.prepare(_config(root), str(tmp_path / "data"))
  rec = _read_all(builder, "train")[3]
  got = rec["waveform"].astype(np.float32) / 32768
  assert abs(len(got) - len(mono)) <= 2
  n = min(len(got), len(mono))
  # Band-limited resampling vs the original: close in energy and strongly correlated.
  assert np.corrcoef(got[:n], mono[:n])[0, 1] > 0.95


@pytest.mark.parametrize("damage", ["missing_audio", "not_audio", "missing_image"])
def test_bad_files_raise_naming_the_file_or_are_skipped_and_counted(official_layout, tmp_path,
                                                                      damage):
  src_root, _ = official_layout
  root = str(tmp_path / "layout")
  shutil.copytree(src_root, root)
  bad = {"missing_audio": "audio/5.wav", "not_audio": "audio/5.wav",
         "missing_image": "images/5.jpg"}[damage]
  os.remove(os.path.join(root, bad))
  if damage == "not_audio":
    with open(os.path.join(root, bad), "w") as f:
      f.write("this is not a wav file")
  with pytest.raises((official.DataError, audio.AudioError), match="5"):
    official.prepare(_config(root), str(tmp_path / "data_error"))
  try:
    official.prepare(_config(root), str(tmp_path / "data_error"))
  except (official.DataError, audio.AudioError) as e:
    assert os.path.basename(bad) in str(e)
  builder = official.prepare(_config(root, on_bad_audio="skip"), str(tmp_path / "data_skip"))
  assert [(d["split"], d["id"]) for d in builder.skipped] == [("train", "5")]
  with open(os.path.join(builder.data_dir, "skipped.json")) as f:  # each entry names its split
    assert [(d["split"], d["id"]) for d in json.load(f)] == [("train", "5")]
  assert sorted(_read_all(builder, "train")) == [i for i in FIXTURE_SPLITS["train"] if i != 5]


def test_missing_layout_names_the_flag(tmp_path):
  with pytest.raises(official.DataError, match="official_dir"):
    official.prepare(_config(str(tmp_path)), str(tmp_path / "data"))
  with pytest.raises(official.DataError, match="official_dir"):
    official.prepare(_config(""), str(tmp_path / "data"))
