"""The tiny pipeline end to end: render -> train_gan -> train_segmenter -> build_data -> train (two
loss kinds) -> eval -> report."""
import json
import os

import numpy as np

from configs import tiny
from learning_words import pipeline, workdir as wd
from learning_words.data import audio, input_pipeline
from learning_words.data import records


def test_tiny_pipeline_runs_every_stage(tmp_path):
  c = tiny.get_config()
  c.gan.retrain = True
  c.train.kinds = ("regular", "negatives_edited")
  assert pipeline.run_pipeline(c, str(tmp_path)) == []
  folder = wd.dataset_dir(c, str(tmp_path))
  report = json.load(open(os.path.join(str(tmp_path), "data", "world_report.json")))
  built = report["build"]
  assert built["generated"] == 24 + 8 + 8
  assert built["parsed"] + built["skipped_no_object"] == built["generated"]
  assert 0 <= report["parsed_fraction"] <= 1 and set(report["tv"]) == {"shape", "color", "size",
                                                                       "material"}
  assert [e["layer"] for e in report["edits"]] == list(c.gan.diagnose_layers)
  assert c.world.min_objects <= report["objects_per_image"]["renders"] <= c.world.max_objects
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
  assert set(times) == set(pipeline.STAGES)
  results = json.load(open(os.path.join(str(tmp_path), "report", "results.json")))
  for run in c.train.kinds:  # same budget: both runs end at the same step
    assert os.path.isdir(os.path.join(str(tmp_path), "runs", run, "checkpoints", "6"))
    ev = json.load(open(os.path.join(str(tmp_path), "runs", run, "eval", "retrieval.json")))
    assert results[run]["retrieval"]["A_r10"] == ev["A_r10"]
  assert os.path.isfile(os.path.join(str(tmp_path), "report", "report.md"))
