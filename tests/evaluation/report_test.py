"""`--mode=report`: the helpers against hand-written answers and plain loops, and the stage end to
end on a tiny workdir whose eval JSONs hold numbers written here: results.json must give them back
(and numpy's mean / std over the seeds), report.md must show them, the figures must decode."""
import json
import os
import re

import jax.numpy as jnp
import numpy as np
import pytest
import tensorboardX
from flax import nnx
from PIL import Image

from learning_words import pipeline
from learning_words.common import checkpoints, figures, jsonio, writers
from learning_words.data.vocabulary import ATTRIBUTES
from learning_words.evaluation import attributes, report
from learning_words.learner import train
from learning_words.models import generator as gen_lib
from tests.evaluation.evaluators_test import _config, _numpy_module


def test_seed_groups_and_their_spread():
  runs = ["edited_seed2", "regular", "edited", "edited_seed10", "hard_seed3", "x_seed1_seed2"]
  assert report.group_seeds(runs) == {"edited": ["edited", "edited_seed2", "edited_seed10"]}
  got = report.aggregate([0.2, float("nan"), 0.5, 0.8])
  assert got["n"] == 3 and got["mean"] == pytest.approx(0.5)
  assert got["std"] == pytest.approx(np.sqrt(((0.3 ** 2) * 2) / 2))  # ddof 1: / (n - 1)
  one = report.aggregate([0.25])
  assert one["mean"] == 0.25 and np.isnan(one["std"]) and one["n"] == 1
  assert report.aggregate([None, float("nan")])["n"] == 0
  flat = report.flatten_metrics({"a": 1, "b": {"c": 0.5, "d": None, "e": [1, 2]}, "f": "x",
                                 "g": True})
  assert sorted(flat) == ["a", "b/c", "b/d"] and np.isnan(flat.pop("b/d"))
  assert flat == {"a": 1, "b/c": 0.5}


def test_read_scalars_gives_back_what_the_writer_wrote(tmp_path):
  logdir = str(tmp_path)
  w = writers.Writer(logdir)
  w.write_scalars(2, {"loss": 1.5, "val/score": 0.25})
  w.write_scalars(4, {"loss": 1.0})
  w.write_images(4, {"img": np.zeros((4, 4, 3), np.uint8)})  # not a scalar: ignored
  w.close()
  # A resumed run: a later file (name order) that redoes step 4, then a record cut short.
  resumed = tensorboardX.SummaryWriter(logdir=logdir, filename_suffix=".resumed")
  resumed.add_scalar("loss", 0.75, global_step=4)
  resumed.add_scalar("loss", 0.5, global_step=6)
  resumed.close()
  path = [p for p in os.listdir(logdir) if p.endswith(".resumed")][0]
  with open(os.path.join(logdir, path), "ab") as f:
    f.write(np.array([1000], "<u8").tobytes() + b"\0" * 8)
  got = writers.read_scalars(logdir)
  assert sorted(got) == ["loss", "val/score"]
  assert got["loss"][0].tolist() == [2, 4, 6] and got["loss"][1].tolist() == [1.5, 0.75, 0.5]
  assert got["val/score"][0].tolist() == [2] and got["val/score"][1].tolist() == [0.25]
  assert writers.read_scalars(str(tmp_path / "none")) == {}


def test_heat_maps_match_a_loop():
  rng = np.random.default_rng(0)
  img = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
  aud = rng.normal(size=(3, 6, 5)).astype(np.float32)
  frames = np.array([6, 2, 0])  # no valid frame: the first one counts
  got = np.asarray(report.heat_maps(jnp.asarray(img), jnp.asarray(aud), jnp.asarray(frames)))
  assert got.shape == (2, 3, 3, 4)
  for n in range(2):
    for w in range(3):
      for y in range(3):
        for x in range(4):
          best = max(float(img[n, y, x] @ aud[w, t]) for t in range(max(frames[w], 1)))
          assert got[n, w, y, x] == pytest.approx(best, rel=1e-5, abs=1e-5)
  norm = report.normalise_per_image(np.array([[[[2.0, -1.0]], [[4.0, 1.0]]]]))
  np.testing.assert_allclose(norm, [[[[0.5, 0.0]], [[1.0, 0.25]]]])


def test_overlay_heat_colours_and_blends():
  images = np.full((1, 4, 4, 3), 100, np.uint8)
  heat = np.array([[[0.0, 1.0], [0.5, 1 / 3]]])  # 2x2 -> 4x4, nearest
  out = figures.overlay_heat(images, heat, alpha=0.5)
  hot = {0.0: (0, 0, 0), 1.0: (255, 255, 255), 0.5: (255, 127.5, 0), 1 / 3: (255, 0, 0)}
  for (y, x), h in np.ndenumerate(heat[0]):
    expected = np.round(0.5 * 100 + 0.5 * np.array(hot[h]))
    np.testing.assert_array_equal(out[0, 2 * y:2 * y + 2, 2 * x:2 * x + 2],
                                  np.broadcast_to(expected, (2, 2, 3)))


# ---------------------------------------------------------------------------
# The stage on a tiny workdir.

RUNS = ("edited", "edited_seed1", "regular")
META = {"checkpoint": "best", "step": 1, "dataset": "d", "split": "test", "seed": 0}


def _write_evals(run_dir: str, run: str, rng) -> dict:
  """Eval JSONs as --mode=eval writes them, with random numbers; returns {evaluator: metrics}."""
  u = lambda: float(np.round(rng.uniform(), 4))
  metrics = {
      "retrieval": {"n_pairs": 8, **{f"{d}_r{k}": u() for d in "AI" for k in (1, 5, 10)},
                    "score": u(), "chance_r1": 0.125, "seconds": 1.5},
      "edited_recall": {"n_captions": 8, "n_negatives": 9, "r1": u(), "r5": u(),
                        "mean_rank": 2.5, "draw": {"accepted_rate": u(), "p_start": 0.4}},
      "semantic": ({"skipped": "no attribute segmenter"} if run == "edited" else
                   {"n_captions": 8, "r1": u(), "r3": u(), "cache": "/c.npz",
                    "tries": {"max": 8}}),
      "attributes": {"n_images": 8, "voices": ["en-us"], "chance": 0.5,
                     "categories": {a: u() for a in ATTRIBUTES}, "mean": u(),
                     "words": {"red": {"category": "color", "score": None, "per_voice": [None],
                                       "n_with": 0, "n_without": 3}}},
  }
  for name, m in metrics.items():
    jsonio.write_json(os.path.join(run_dir, "eval", f"{name}.json"),
                      {"evaluator": name, "run": run, **META, **m})
  # A later evaluation of one evaluator rewrote eval.json: the report reads the per-evaluator files.
  jsonio.write_json(os.path.join(run_dir, "eval", "eval.json"),
                    {"run": run, **META, "results": {"retrieval": metrics["retrieval"]}})
  return metrics


def _expected(m: dict) -> dict:
  """What results.json must hold for one run's metrics, written out by hand."""
  out = {"retrieval": dict(m["retrieval"]),
         "edited_recall": {"n_captions": 8, "n_negatives": 9, "r1": m["edited_recall"]["r1"],
                           "r5": m["edited_recall"]["r5"], "mean_rank": 2.5,
                           "draw/accepted_rate": m["edited_recall"]["draw"]["accepted_rate"],
                           "draw/p_start": 0.4},
         "attributes": {"n_images": 8, "chance": 0.5, "mean": m["attributes"]["mean"],
                        **{f"categories/{a}": m["attributes"]["categories"][a] for a in ATTRIBUTES},
                        "words/red/score": None, "words/red/n_with": 0,
                        "words/red/n_without": 3}}
  if "skipped" not in m["semantic"]:
    out["semantic"] = {"n_captions": 8, "r1": m["semantic"]["r1"], "r3": m["semantic"]["r3"],
                       "tries/max": 8}
  return out


def _png(path: str) -> np.ndarray:
  with Image.open(path) as im:
    return np.asarray(im.convert("RGB"))


def test_report_on_a_tiny_workdir(data_dir, official_layout, tmp_path):
  workdir = str(tmp_path)
  c = _config(official_layout[0])
  c.evals.split = "test"  # 2 pairs: the figures show both
  os.symlink(os.path.dirname(os.path.dirname(os.path.dirname(data_dir))),
             os.path.join(workdir, "data"))
  checkpoints.save_weights(os.path.join(workdir, "gan", "generator_ema"), _numpy_module(
      lambda: gen_lib.Generator(c.gan.sizes, rngs=nnx.Rngs(0)), 7))
  state = _numpy_module(lambda: train.TrainState(c, steps_per_epoch=1), 0)
  rng = np.random.default_rng(3)
  written = {}
  for run in RUNS:
    run_dir = os.path.join(workdir, "runs", run)
    manager = train.make_checkpoint_manager(os.path.join(run_dir, "checkpoints"), 2)
    checkpoints.save(manager, 1, {"models": state.models, "opt": state.opt},
                     metrics={"score": 0.5})
    manager.wait_until_finished()
    written[run] = _write_evals(run_dir, run, rng)
  for run, losses in (("regular", [1.0, 0.5]), ("edited", [2.0, 1.25])):
    w = writers.Writer(os.path.join(workdir, "runs", run, "tensorboard"))
    for step, loss, tries in zip((2, 4), losses, (1.0, 2.0)):
      w.write_scalars(step, {"loss": loss, "neg/accepted_rate": 0.5, "neg/mean_tries": tries}
                      if run == "edited" else {"loss": loss})
    w.write_scalars(4, {"val/score": 0.1})
    w.close()
  times = {"render": 1.5, "train": 20.25}
  with open(os.path.join(workdir, "pipeline_times.json"), "w") as f:
    json.dump(times, f)

  path = pipeline.run_stage("report", c, workdir)
  assert path == os.path.join(workdir, "report", "report.md")
  folder = os.path.dirname(path)
  with open(os.path.join(folder, "results.json")) as f:
    results = json.load(f)
  assert set(results) == set(RUNS) | {"_groups", "_pipeline_seconds"}
  for run in RUNS:
    assert results[run] == _expected(written[run]), run
  assert results["_pipeline_seconds"] == times
  group = results["_groups"]["edited"]
  assert list(results["_groups"]) == ["edited"] and group["runs"] == ["edited", "edited_seed1"]
  seeds = [written[r] for r in group["runs"]]
  for name, metric in (("retrieval", "A_r5"), ("edited_recall", "r1"), ("attributes", "mean")):
    values = [m[name][metric] for m in seeds]
    assert group[name][metric]["n"] == 2
    assert group[name][metric]["mean"] == pytest.approx(np.mean(values))
    assert group[name][metric]["std"] == pytest.approx(np.std(values, ddof=1))
  only = written["edited_seed1"]["semantic"]["r1"]  # the other seed skipped semantic
  assert group["semantic"]["r1"] == {"mean": only, "std": None, "n": 1}
  assert group["attributes"]["words/red/score"] == {"mean": None, "std": None, "n": 0}

  with open(os.path.join(folder, "report.md")) as f:
    md = f.read()
  r = written["regular"]["retrieval"]
  assert ("| regular | 1 | best (step 1) | " +
          " | ".join(f"{r[k]:.3f}" for k in ("A_r1", "A_r5", "A_r10", "I_r1", "I_r5", "I_r10"))
          + " |") in md
  e = [m["edited_recall"] for m in seeds]
  assert ("| **edited** (mean ± std) | 2 | – | " + " | ".join(
      f"{np.mean([x[k] for x in e]):.3f} ± {np.std([x[k] for x in e], ddof=1):.3f}"
      for k in ("r1", "r5")) + " |") in md
  assert "| edited | 1 | skipped | – | – |" in md and "- edited: no attribute segmenter" in md
  assert f"| **edited** (mean ± std) | 1 | – | {only:.3f} | " in md
  assert "| render | 1.5 |" in md and "| train | 20.2 |" in md
  # this report's own time is in the table and in its total
  own = float(re.search(r"\| report \| ([0-9.]+) \|", md).group(1))
  total = float(re.search(r"\| total \| ([0-9.]+) \|", md).group(1))
  assert own > 0 and abs(total - (21.75 + own)) <= 0.1
  # The drawn negatives' training statistics: means over the logged steps, '–' where not logged.
  assert "| edited | 0.500 | 1.500 | – | – | – |" in md and "| regular | " not in md.split(
      "## Drawn negatives in training")[1].split("##")[0]
  for i, entry in official_layout[1].items():
    if entry["split"] == "test":
      assert entry["text"] in md  # the figures' captions

  res = c.data.image_size  # 16 px; drawn 4x larger, 1 px (scaled) white borders
  height = figures.LABEL_HEIGHT + 4 * (2 * (res + 1) + 1)  # 2 test pairs, a row each
  for run in RUNS:
    neg = _png(os.path.join(folder, "figures", f"{run}_negatives.png"))
    words = _png(os.path.join(folder, "figures", f"{run}_words.png"))
    assert neg.shape == (height, 4 * (3 * (res + 1) + 1), 3)
    assert words.shape == (height, 4 * ((1 + len(attributes.WORDS)) * (res + 1) + 1), 3)

    def cell(img, row, col):
      top, left = figures.LABEL_HEIGHT + 4 * (1 + row * (res + 1)), 4 * (1 + col * (res + 1))
      return img[top:top + 4 * res, left:left + 4 * res]

    for row in range(2):
      assert set(np.unique(cell(neg, row, 2))) <= {0, 255}  # the mask column is binary
      np.testing.assert_array_equal(cell(words, row, 0), cell(neg, row, 0))  # the same positives
    assert f"![{run}: positive, negative, mask](figures/{run}_negatives.png)" in md
  for tag in ("loss", "val/score", "neg/accepted_rate"):
    assert _png(os.path.join(folder, "figures", report.curve_file(tag))).shape == (320, 640, 3)
    assert f"(figures/{report.curve_file(tag)})" in md
  assert not os.path.exists(os.path.join(folder, "figures", report.curve_file("val/A_r5")))
  with open(os.path.join(workdir, "pipeline_times.json")) as f:
    assert set(json.load(f)) == {"render", "train", "report"}


def test_tables_show_chance_levels_and_say_why_a_cell_is_empty():
  runs = ["a", "b"]
  evals = {"a": {"attributes": {"checkpoint": "best", "step": 3, "chance": 0.5, "mean": 0.7,
                                "n_pairs": 40, "categories": {"color": 0.6}}},
           "b": {"attributes": {"checkpoint": "best", "step": 3, "chance": 0.5,
                                "mean": None, "n_pairs": 0, "empty": "no pair: why"}}}
  results = {r: {"attributes": report.flatten_metrics({k: v for k, v in e["attributes"].items()
                                                       if k not in report.META})}
             for r, e in evals.items()}
  results["_groups"] = {}
  lines = report.evaluator_table("attributes", results, evals, runs)
  assert "| a | 1 | best (step 3) | 0.600 | 0.700 | 40 |" in lines
  assert "| b | 1 | best (step 3), empty | – | – | 0 |" in lines
  assert "| *chance* | | | 0.500 | 0.500 |  |" in lines  # a count has no chance level
  assert "- b: no pair: why" in lines
  retrieval = {"chance_r1": 0.25, "chance_r5": 1.0, "A_r1": 0.5}
  assert report.chance_of("A_r1", retrieval) == report.chance_of("I_r1", retrieval) == 0.25
  assert report.chance_of("on_object", {"chance_on_object": 0.2}) == 0.2
  assert report.chance_of("by_similarity/dot/on_object", {"chance_on_object": 0.2}) == 0.2
  assert report.chance_of("categories/size", {"chance_categories/size": 0.3, "chance": 0.1}) == 0.3
  assert report.chance_of("ratio", {"chance": 0.1}) is None


def test_wall_time_table_adds_stages_and_shows_each_runs_training_parts():
  times = {"build_data": 100.0, "train": 300.5,
           "train_runs": {"regular": {"step_s": 200.0, "loader_s": 40.0, "compile_s": 5.0,
                                      "other_s": 1.0, "total_s": 246.0, "steps": 620}}}
  lines = report.pipeline_table(times)
  assert "| total | 400.5 |" in lines  # the runs' parts are not stages
  header = next(line for line in lines if line.startswith("| run |"))
  assert header == "| run | steps | step | loader | compile | other | total |"
  assert "| regular | 620 | 200.0 | 40.0 | 5.0 | 1.0 | 246.0 |" in lines
