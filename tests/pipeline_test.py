"""The tiny pipeline end to end: render -> train_gan -> train_segmenter -> build_data -> train (two
loss kinds) -> eval -> report; then, in the same workdir, the ladder's L0 (renders, stored
positives) and L2 (inverted latents, edited negatives trained from them) by their overrides, and
the reproduce experiment (one seed, a warm-up and two arms)."""
import contextlib
import io
import json
import os
import re

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from configs import tiny
from learning_words import pipeline, workdir as wd
from learning_words.data import audio, input_pipeline
from learning_words.data import records
from learning_words.learner import recall
from learning_words.models import encoders
from tests.conftest import ROOT
from learning_words.world import invert as invert_lib, pairs as build_pairs


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
  assert set(times) == set(pipeline.STAGES) - {"invert"}  # only the inverted worlds invert
  results = json.load(open(os.path.join(str(tmp_path), "report", "results.json")))
  for run in c.train.kinds:  # same budget: both runs end at the same step
    assert os.path.isdir(os.path.join(str(tmp_path), "runs", run, "checkpoints", "6"))
    ev = json.load(open(os.path.join(str(tmp_path), "runs", run, "eval", "retrieval.json")))
    assert results[run]["retrieval"]["A_r10"] == ev["A_r10"]
  assert os.path.isfile(os.path.join(str(tmp_path), "report", "report.md"))
  _readme_snippet(c, str(tmp_path))
  _ladder_rungs(c, str(tmp_path))
  _experiment(c, str(tmp_path))


def _readme_snippet(c, workdir):
  """The README's load-and-score snippet on a test pair of the trained `regular` run: its matchmap
  and score equal a plain loop's over the run's embeddings, and the score equals the one the
  evaluators compute for the same pair (stored image, recording from the record)."""
  with open(os.path.join(ROOT, "README.md")) as f:
    block = next(b for b in re.findall(r"```python\n(.*?)```", f.read(), re.S) if "load_run" in b)
  rec = input_pipeline.open_source(wd.dataset_dir(c, workdir), "test")[0]
  here = os.path.join(workdir, "snippet")
  os.makedirs(here)
  os.symlink(workdir, os.path.join(here, "workdir"))
  Image.fromarray(np.asarray(rec["image"])).save(os.path.join(here, "scene.png"))
  sf.write(os.path.join(here, "caption.wav"), records.decode_pcm16(rec["waveform"]),
           audio.SAMPLE_RATE, subtype="PCM_16")
  cwd, scope = os.getcwd(), {}
  os.chdir(here)
  try:
    with contextlib.redirect_stdout(io.StringIO()) as printed:
      exec(block, scope)  # pylint: disable=exec-used
    run, image = scope["run"], scope["image"]
    img, aud = run.embed_image(image), run.embed_audio("caption.wav")
  finally:
    os.chdir(cwd)
  heat = scope["heat"]
  loop = np.zeros(heat.shape)
  for y, x, t in np.ndindex(*heat.shape):
    loop[y, x, t] = sum(float(img[y, x, d]) * float(aud[t, d]) for d in range(img.shape[-1]))
  np.testing.assert_allclose(heat, loop, rtol=1e-4, atol=1e-4)
  score = float(printed.getvalue().split(")")[-1])
  assert score == pytest.approx(loop.max(axis=(0, 1)).mean(), rel=1e-4, abs=1e-5)
  models, _ = wd.load_encoders(c, os.path.join(workdir, "runs", "regular"), "best")
  models.eval()
  pair = input_pipeline.load_eval_arrays(wd.dataset_dir(c, workdir), "test",
                                         c.data.eval_frames, 1)
  e_img, e_aud, e_frames = encoders.embed_pairs(models, None, None, pair, 1, "", stored=True)
  sim = recall.similarity(e_img, e_aud, e_frames, chunk=1, cosine=bool(c.model.cosine))
  assert score == pytest.approx(float(np.asarray(sim)[0, 0]), rel=1e-4, abs=1e-5)


def _experiment(c, workdir):
  """The reproduce experiment, one seed, two arms, one epoch each, in the tiny workdir."""
  e = c.copy_and_resolve_references()
  e.train.kinds = ()
  e.experiment.seeds, e.experiment.arms = (0,), ("regular", "edited_random_location")
  e.experiment.warmup_epochs = e.experiment.branch_epochs = 1
  e.evals.names = ("retrieval", "edited_recall")
  for stage in ("train", "eval", "report"):
    pipeline.run_stage(stage, e, workdir)
  for run in ("warmup_seed0", "regular_seed0", "edited_random_location_seed0"):
    assert os.path.isdir(os.path.join(workdir, "runs", run, "checkpoints", "3"))  # 24 / 8 steps
  results = json.load(open(os.path.join(workdir, "report", "results.json")))
  assert results["warmup_seed0"] == {}  # a starting point, not evaluated
  for run in ("regular_seed0", "edited_random_location_seed0"):
    assert set(results[run]) == {"retrieval", "edited_recall"}
  md = open(os.path.join(workdir, "report", "report.md")).read()
  r = results["regular_seed0"]["retrieval"]
  row = next(line for line in md.splitlines() if line.startswith("| regular_seed0 | 1 | best"))
  assert row.split(" | ")[3:5] == [f"{r['A_r1']:.3f}", f"{r['A_r5']:.3f}"]
  assert "| edited_random_location_seed0 | " in md.split("## Drawn negatives in training")[1]


def _ladder_rungs(c, workdir):
  """L0 and L2 in the workdir of a finished tiny pipeline (its generator and segmenter)."""
  l0 = c.copy_and_resolve_references()
  l0.world.pairs, l0.data.positives = "renders", "stored"
  l0.train.kinds, l0.train.name, l0.train.epochs = (), "L0", 1
  l0.evals.names = ("retrieval", "edited_recall", "attributes")
  for stage in ("build_data", "train", "eval"):  # the renders, GAN and segmenter are there
    pipeline.run_stage(stage, l0, workdir)
  folder = wd.dataset_dir(l0, workdir)
  assert "_renders_" in folder
  src = input_pipeline.open_source(folder, "test")
  ev = json.load(open(os.path.join(workdir, "runs", "L0", "eval", "eval.json")))["results"]
  assert ev["attributes"]["labels"] == "truth" and 0 <= ev["attributes"]["mean"] <= 1
  assert "skipped" in ev["edited_recall"] and np.isfinite(ev["retrieval"]["A_r10"])
  assert all(int(src[k]["z_index"]) == -1 for k in range(len(src)))
  l2 = c.copy_and_resolve_references()
  l2.world.pairs, l2.world.invert_steps, l2.world.invert_batch = "inverted_parsed", 3, 16
  l2.train.kinds, l2.train.name, l2.loss.kind = (), "L2", "negatives_edited"
  l2.train.epochs = 1
  assert pipeline.STAGES["invert"].existing(l2, workdir) is None
  for stage in ("invert", "build_data", "train"):
    pipeline.run_stage(stage, l2, workdir)
  latents = wd.load_latents(l2, workdir)
  assert latents.shape == (24 + 8 + 8, c.gan.sizes[0])
  src = input_pipeline.open_source(wd.dataset_dir(l2, workdir), "train")
  g = wd.load_generator(l2, workdir)
  rec = src[0]  # the stored image is the generator's drawing of the pair's latent row
  np.testing.assert_array_equal(
      rec["image"], build_pairs.draw_images(g, latents[int(rec["z_index"])][None])[0])
  assert os.path.isdir(os.path.join(workdir, "runs", "L2", "checkpoints", "3"))
  assert pipeline.STAGES["invert"].existing(l2, workdir) == wd.latents_dir(l2, workdir)
  # The inverter trained by the stage was kept for this generator; a second inversion restores it
  # (no training) and finds the same latents.
  existing, trained = wd.inverter_dir(l2, workdir)
  assert existing == trained and os.path.isdir(trained)
  again = os.path.join(workdir, "latents_again")
  invert_lib.invert_renders(l2, again, g, (existing, trained))
  np.testing.assert_allclose(np.load(os.path.join(again, "latents.npy")), latents, rtol=1e-5,
                             atol=1e-5)
  assert json.load(open(os.path.join(again, "invert.json")))["encoder_curve"] == []
