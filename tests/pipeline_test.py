"""The tiny pipeline end to end in a gs:// workdir (a local GCS emulator): render -> train_gan ->
train_segmenter -> build_data -> train (two loss kinds) -> eval -> report; then, in the same
workdir, the ladder's L0 (renders, stored positives) and L2 (inverted latents, edited negatives
trained from them) by their overrides, and the reproduce experiment (one seed, a warm-up and two
arms). And the bucket going away in the middle of a checkpoint save."""
import contextlib
import io
import json
import os
import re
import time

import jax
import numpy as np
import pytest
import soundfile as sf
from etils import epath
from flax import nnx
from PIL import Image

from configs import tiny
from learning_words import pipeline, workdir as wd
from learning_words.common import checkpoints, errors, files
from learning_words.data import audio, input_pipeline
from learning_words.data import records
from learning_words.learner import recall
from learning_words.models import encoders
from tests.conftest import ROOT
from learning_words.world import invert as invert_lib, pairs as build_pairs


def _json(*parts):
  return json.loads(epath.Path(*parts).read_text())


def _isdir(*parts) -> bool:
  return epath.Path(*parts).is_dir()


@pytest.fixture(scope="module")
def tiny_bucket(gcs, tmp_path_factory):
  """(config, workdir, local cache) of the tiny pipeline run in gs://lw-test/tiny."""
  del gcs  # running
  cache = str(tmp_path_factory.mktemp("lw_cache"))
  patch = pytest.MonkeyPatch()
  patch.setenv("LW_CACHE", cache)
  c = tiny.get_config()
  c.gan.retrain = True
  c.train.kinds = ("regular", "negatives_edited")
  # Checkpoints at epoch ends (3 steps) and the trainers' last step only: each costs about a
  # second more on the emulator than on a local disk.
  c.train.checkpoint_every, c.gan.checkpoint_every, c.segmenter.checkpoint_every = 3, 4, 4
  workdir = "gs://lw-test/tiny"
  assert pipeline.run_pipeline(c, workdir) == []
  yield c, workdir, cache
  patch.undo()


def test_tiny_pipeline_runs_every_stage(tiny_bucket, tmp_path):
  c, workdir, cache = tiny_bucket
  folder = wd.dataset_dir(c, workdir)
  _dataset_cached_from_the_bucket(c, folder, workdir, cache)
  report = _json(workdir, "data", "world_report.json")
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
  times = _json(workdir, "pipeline_times.json")
  runs = times.pop("train_runs")  # where each run's training time went
  assert set(times) == set(pipeline.STAGES) - {"invert"}  # only the inverted worlds invert
  for run in c.train.kinds:
    assert runs[run]["steps"] == 6 and runs[run]["total_s"] <= times["train"]
  results = _json(workdir, "report", "results.json")
  for run in c.train.kinds:  # same budget: both runs end at the same step
    assert _isdir(workdir, "runs", run, "checkpoints", "6")
    ev = _json(workdir, "runs", run, "eval", "retrieval.json")
    assert results[run]["retrieval"]["A_r10"] == ev["A_r10"]
    events = list(epath.Path(workdir, "runs", run, "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().length > 0
  assert epath.Path(workdir, "report", "report.md").is_file()
  assert list(epath.Path(workdir, "logs").glob("*.log")) == []  # main writes logs, not stages
  # Run again, the pipeline finds everything done: no run trains or is evaluated again (each
  # evaluation, its timings included, stays as written).
  evaluations = {run: epath.Path(workdir, "runs", run, "eval", "eval.json").read_text()
                 for run in c.train.kinds}
  assert pipeline.run_pipeline(c, workdir) == []
  assert _json(workdir, "pipeline_times.json")["train_runs"] == runs
  for run in c.train.kinds:
    assert epath.Path(workdir, "runs", run, "eval", "eval.json").read_text() == evaluations[run]
  _readme_snippet(c, workdir, str(tmp_path))
  _ladder_rungs(c, workdir)
  _experiment(c, workdir)


def _dataset_cached_from_the_bucket(c, folder, workdir, cache):
  """The dataset is read from the local cache, whose files equal the bucket's copy byte for
  byte; once the cache is gone, the next lookup fetches it again from the bucket."""
  assert folder.startswith(cache)
  rel = os.path.relpath(folder, os.path.join(cache, "gs", "lw-test", "tiny", "data"))
  local = {p.name: p.read_bytes() for p in epath.Path(folder).iterdir()}
  remote = {p.name: p.read_bytes() for p in epath.Path(workdir, "data", rel).iterdir()}
  # the bucket's copy adds the manifest of the files' sizes, written last (its completeness)
  manifest = json.loads(remote.pop(files.MANIFEST))
  assert local == remote and "dataset_info.json" in remote
  assert manifest == {name: len(data) for name, data in remote.items()}
  for p in epath.Path(folder).iterdir():
    p.unlink()
  assert wd.dataset_dir(c, workdir) == folder
  fetched = {p.name: p.read_bytes() for p in epath.Path(folder).iterdir()}
  assert json.loads(fetched.pop(files.MANIFEST)) == manifest and fetched == remote


def _readme_snippet(c, workdir, tmp_path):
  """The README's load-and-score snippet on a test pair of the trained `regular` run: its matchmap
  and score equal a plain loop's over the run's embeddings, and the score equals the one the
  evaluators compute for the same pair (stored image, recording from the record)."""
  with open(os.path.join(ROOT, "README.md")) as f:
    block = next(b for b in re.findall(r"```python\n(.*?)```", f.read(), re.S) if "load_run" in b)
  rec = input_pipeline.open_source(wd.dataset_dir(c, workdir), "test")[0]
  here = tmp_path
  block = block.replace('"workdir"', repr(workdir))  # the snippet's workdir is the bucket
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
    assert _isdir(workdir, "runs", run, "checkpoints", "3")  # 24 / 8 steps
  results = _json(workdir, "report", "results.json")
  assert results["warmup_seed0"] == {}  # a starting point, not evaluated
  for run in ("regular_seed0", "edited_random_location_seed0"):
    assert set(results[run]) == {"retrieval", "edited_recall"}
  md = epath.Path(workdir, "report", "report.md").read_text()
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
  ev = _json(workdir, "runs", "L0", "eval", "eval.json")["results"]
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
  assert _isdir(workdir, "runs", "L2", "checkpoints", "3")
  assert pipeline.STAGES["invert"].existing(l2, workdir) == wd.latents_dir(l2, workdir)
  # The inverter trained by the stage was kept for this generator; a second inversion restores it
  # (no training) and finds the same latents.
  existing, trained = wd.inverter_dir(l2, workdir)
  assert existing == trained and _isdir(trained)
  again = os.path.join(workdir, "latents_again")
  invert_lib.invert_renders(l2, again, g, (existing, trained))
  again_latents = np.load(io.BytesIO(epath.Path(again, "latents.npy").read_bytes()))
  np.testing.assert_allclose(again_latents, latents, rtol=1e-5, atol=1e-5)
  assert _json(again, "invert.json")["encoder_curve"] == []


def _encoder_leaves(c, run_dir, which):
  models, step = wd.load_encoders(c, run_dir, which)
  return [np.asarray(x) for x in jax.tree.leaves(nnx.state(models))], step


def _fault_run(c, name: str, monkeypatch):
  """A `regular` run named `name` on the tiny bucket, with tensorstore's retries of a failed
  request shortened from minutes to milliseconds."""
  f = c.copy_and_resolve_references()
  f.train.kinds, f.train.name, f.loss.kind = (), name, "regular"
  from orbax.checkpoint._src.serialization import tensorstore_utils  # pylint: disable=g-import-not-at-top
  fast = {"max_retries": 2, "initial_delay": "10ms", "max_delay": "50ms"}
  monkeypatch.setitem(tensorstore_utils._BASE_TS_CONTEXT, "gcs_request_retries", fast)  # pylint: disable=protected-access
  monkeypatch.setitem(tensorstore_utils._DEFAULT_OCDBT_TS_CONTEXT, "gcs_request_retries", fast)  # pylint: disable=protected-access
  return f


def _resumes_to_the_uninterrupted_run(c, f, workdir: str, run_dir: str):
  """Running the stage again goes on from step 3 and ends equal to the `regular` run."""
  assert checkpoints.make_manager(os.path.join(run_dir, "checkpoints")).all_steps() == [3]
  pipeline.run("train", f, workdir)
  got, step = _encoder_leaves(f, run_dir, "latest")
  want, want_step = _encoder_leaves(c, wd.path(workdir, "runs", "regular"), "latest")
  assert step == want_step == 6
  for a, b in zip(got, want, strict=True):
    np.testing.assert_array_equal(a, b)


def test_bucket_gone_mid_checkpoint_save_then_resume_is_bit_identical(tiny_bucket, gcs,
                                                                      monkeypatch):
  """The emulator dies at the upload of step 6's OCDBT manifest (its arrays are written by then):
  the run ends in one StorageError line within seconds; after a restart the run goes on from
  step 3, the last complete checkpoint, and ends equal to the uninterrupted `regular` run."""
  c, workdir, _ = tiny_bucket
  f = _fault_run(c, "fault", monkeypatch)
  gcs.stop()
  gcs.start(die_on=r"^POST .*name=[^&]*runs%2Ffault%2Fcheckpoints%2F6%2F[^&]*manifest\.ocdbt")
  start = time.time()
  with pytest.raises(errors.StorageError) as e:
    pipeline.run("train", f, workdir)
  assert time.time() - start < 60
  assert gcs.proc.poll() is not None  # it died where it was told to
  message = str(e.value)
  assert "\n" not in message and message.startswith(f"{workdir}: the bucket stopped answering (")
  assert message.endswith("run the same command again to go on from the last complete checkpoint")
  gcs.start()
  run_dir = wd.path(workdir, "runs", "fault")
  partial = epath.Path(run_dir, "checkpoints", "6")
  assert partial.is_dir() and any(partial.iterdir())  # the save had begun
  # Saved before it: step 3, the first epoch's end.
  _resumes_to_the_uninterrupted_run(c, f, workdir, run_dir)


def test_a_write_the_bucket_refuses_mid_checkpoint_ends_in_one_line_then_resumes(tiny_bucket, gcs,
                                                                                 monkeypatch):
  """The storage answers 404 to the upload of step 6's OCDBT manifest (as after a restart that
  forgot the upload in progress), a failure that is no lost connection: the run still ends in one
  StorageError line naming the refused write, and the same command goes on from step 3."""
  c, workdir, _ = tiny_bucket
  f = _fault_run(c, "refused", monkeypatch)
  gcs.stop()
  gcs.start(die_on=r"404:^POST .*name=[^&]*runs%2Frefused%2Fcheckpoints%2F6%2F[^&]*manifest\.ocdbt")
  try:
    with pytest.raises(errors.StorageError) as e:
      pipeline.run("train", f, workdir)
  finally:
    gcs.stop()
    gcs.start()
  message = str(e.value)
  assert "\n" not in message and message.startswith(f"{workdir}: the bucket refused a write (")
  assert "404" in message
  assert message.endswith("run the same command again to go on from the last complete checkpoint")
  _resumes_to_the_uninterrupted_run(c, f, workdir, wd.path(workdir, "runs", "refused"))
