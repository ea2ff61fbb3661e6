"""The tiny pipeline end to end: render -> train_gan -> train_segmenter -> build_data (+ report)."""
import json
import os

import numpy as np

from configs import tiny
from learning_words import audio, input_pipeline, pipeline
from learning_words.datasets import records


def test_tiny_pipeline_builds_a_readable_synthetic_dataset(tmp_path):
  c = tiny.get_config()
  c.gan.retrain = True
  todo = pipeline.run_pipeline(c, str(tmp_path))
  assert todo == ["train", "eval", "report"]
  folder = pipeline.dataset_dir(c, str(tmp_path))
  report = json.load(open(os.path.join(str(tmp_path), "data", "world_report.json")))
  built = report["build"]
  assert built["generated"] == 24 + 8 + 8
  assert built["parsed"] + built["skipped_no_object"] == built["generated"]
  assert 0 <= report["parsed_fraction"] <= 1 and set(report["tv"]) == {"shape", "color", "size",
                                                                       "material"}
  assert [e["layer"] for e in report["edits"]] == list(c.gan.diagnose_layers)
  total = 0
  for split, (start, num) in (("train", (0, 24)), ("val", (24, 8)), ("test", (32, 8))):
    if built["parsed"] == 0:
      break
    src = input_pipeline.open_source(folder, split)
    total += len(src)
    for k in range(len(src)):
      r = src[k]
      assert start <= r["id"] < start + num and r["z_index"] == r["id"]
      assert r["image"].shape == (16, 16, 3)
      wav = records.decode_pcm16(r["waveform"])
      assert len(wav) > 0.5 * audio.SAMPLE_RATE and np.sqrt(np.mean(wav ** 2)) > 1e-3  # speech
      assert r["text"].decode().endswith(".")
  assert total == built["parsed"]
  times = json.load(open(os.path.join(str(tmp_path), "pipeline_times.json")))
  assert set(times) >= {"render", "train_gan", "train_segmenter", "build_data"}
