"""The benchmark writes the promised JSON keys with sane values (a small config, 1 timed step, the
torch peer included), and its analytic FLOP count is within 10% of XLA's."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import tiny
from learning_words import benchmark
from learning_words.learner import flops
from tests.conftest import ROOT


# Wide enough that convolutions dominate, as in every real preset.
OVERRIDES = {"data.batch_size": 8, "model.image_widths": (16, 16, 32, 32, 32),
             "model.audio_widths": (32, 64, 64), "model.embed_dim": 32,
             "gan.sizes": (32, 32, 32, 16), "data.train_frames": 256}


def test_benchmark_json_on_tiny(tmp_path):
  out = tmp_path / "bench.json"
  flags = [f"--config.{k}={v}".replace(" ", "") for k, v in OVERRIDES.items()]
  r = subprocess.run([sys.executable, "-m", "learning_words.benchmark", "--config=configs/tiny.py",
                      f"--out={out}", "--steps=1", "--recall_pairs=40", "--peer=torch", *flags],
                     cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  # Library INFO lines (Orbax's) go to the log file beside the JSON, not to the console.
  assert "INFO" not in r.stdout + r.stderr and "orbax" not in (r.stdout + r.stderr).lower()
  logs = list((tmp_path / "logs").glob("benchmark_*.log"))
  assert len(logs) == 1
  res = json.loads(out.read_text())
  config = tiny.get_config()
  for k, v in OVERRIDES.items():
    section, key = k.split(".")
    config[section][key] = v
  for kind in ("regular", "negatives_edited"):
    for key in ("step_time_s", "samples_per_s", "flops_per_step", "flops_per_s",
                "analytic_flops_per_step", "analytic_flops_per_s"):
      assert res[kind][key] > 0
    assert abs(res[kind]["samples_per_s"] * res[kind]["step_time_s"] - 8) < 1e-6
    # The analytic count (learner/flops.py) against XLA's of the lowered step, the whole step's
    # (the tests run under 8 CPU devices). XLA counts the candidate renders' while loop once: one
    # round, one render per sample.
    xla, ours = res[kind]["flops_per_step"], flops.train_step(config, kind, renders=1)["total"]
    assert abs(ours - xla) / xla < 0.10, (kind, ours, xla)
  drawn = res["negatives_edited"]["negatives"]
  assert 1 <= drawn["renders"] <= config.negatives.candidates
  assert 0 <= drawn["accepted_rate"] <= 1
  # Drawing negatives adds generator passes and an image-encoder pass: strictly more work.
  assert res["negatives_edited"]["flops_per_step"] > res["regular"]["flops_per_step"]
  assert res["edited_over_regular"] > 0 and res["recall_40_s"] > 0
  assert res["peer_regular_step_s"] > 0
  # What ran it, and how busy the machine was before and after.
  for m in (res["machine"], res["machine_after"]):
    assert m["cpu"] and m["cores"] == os.cpu_count() and len(m["load_average"]) == 3
    assert m["busy"] == (m["load_average"][0] > m["cores"])
  assert abs(res["ours_over_peer"] * res["peer_regular_step_s"]
             - res["regular"]["step_time_s"]) < 1e-9


def test_benchmark_imports_without_torch():
  # torch is an optional extra: with it blocked (as where it is not installed), the benchmark
  # still imports, and only --peer=torch needs it.
  code = ("import importlib.abc, sys\n"
          "class NoTorch(importlib.abc.MetaPathFinder):\n"
          "  def find_spec(self, name, path, target=None):\n"
          "    if name.split('.')[0] == 'torch':\n"
          "      raise ModuleNotFoundError(name)\n"
          "sys.meta_path.insert(0, NoTorch())\n"
          "import learning_words.benchmark\n"
          "from learning_words import torch_peer\n"
          "assert torch_peer.torch is None\n")
  r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                     timeout=120)
  assert r.returncode == 0, r.stderr[-3000:]


def test_device_check_runs_on_the_cpu_without_timings(tmp_path):
  # What launch/device_check.sh runs on an accelerator, at the tiny preset's size (one timed step
  # per part, no training): every part of the script runs and both files are written.
  r = subprocess.run([sys.executable, "-m", "learning_words.device_check", f"--out={tmp_path}",
                      "--config=configs/tiny.py", "--skip_timings", "--batches=8",
                      "--peak_tflops=2.0"], cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  res = json.loads((tmp_path / "device_check.json").read_text())
  rows = res["steps"]
  assert [(x["dtype"], x["kind"]) for x in rows] == [
      (d, k) for d in ("float32", "bfloat16") for k in ("regular", "negatives_edited")]
  for x in rows:
    assert x["batch"] == 8 and x["peak_tflops"] == 2.0
    assert x["utilisation"] == x["analytic_flops_per_s"] / 2e12
  md = (tmp_path / "device_check.md").read_text().splitlines()
  assert md[0].startswith("# Device check: cpu") and len([l for l in md if l.startswith("| 8 |")]) == 4
  assert res["training"] == []
  dry = subprocess.run(["bash", "launch/device_check.sh", "--dry-run", "/out", "--batches=8"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
  assert dry.returncode == 0, dry.stderr
  assert "pip install -q -e .[cuda] -c launch/constraints.txt" in dry.stdout
  assert dry.stdout.splitlines()[-2:] == [
      "+ export JAX_PLATFORMS=cuda",
      "+ .venv/bin/python -m learning_words.device_check --config=configs/paper.py --out=/out "
      "--train_steps=300 --batches=8"]


def test_device_check_tables_by_hand():
  from learning_words import device_check  # pylint: disable=g-import-not-at-top
  result = {"device": "gpu", "device_count": 1, "jax": "0", "steps": [],
            "recall": {"pairs": {"500": {"seconds": 0.5, "peak_rss_mb": 900.0}},
                       "time_exponent": 1.93},
            "training": [{"dtype": "float32", "kind": "regular", "steps_per_s": 4.0,
                          "step_alone_steps_per_s": 5.0, "loader_share": 0.2, "score": 0.1,
                          "A_r5": 0.2, "I_r5": 0.3,
                          "profile": {"step_s": 60.0, "loader_s": 15.0, "total_s": 75.0,
                                      "steps": 300}}]}
  md = device_check.markdown(result)
  assert "| 500 | 0.50 | 900 |" in md and "Time grows as pairs ** 1.93." in md
  assert "| float32 | regular | 4.00 | 5.00 | 20.0% | 0.1000 | 0.2000 | 0.3000 |" in md
  assert md[-2].endswith("float32 regular: step 60.0 s, loader 15.0 s, total 75.0 s")


def test_device_peaks_are_looked_up_by_name():
  from learning_words import device_check  # pylint: disable=g-import-not-at-top
  assert device_check.peak_tflops("NVIDIA H200", "bfloat16") == 989.4
  assert device_check.peak_tflops("NVIDIA H100 80GB HBM3", "float32") == 494.5
  assert device_check.peak_tflops("TPU v4", "float32") == 275.0
  assert device_check.peak_tflops("cpu", "float32") is None
  assert device_check.peak_tflops("cpu", "float32", given=3.0) == 3.0


def test_storage_timings_on_the_emulator(gcs, data_dir):
  """--storage: checkpoint and dataset timings, local and on the bucket; the bucket's copy of the
  dataset is the local one byte for byte."""
  del gcs  # running
  from etils import epath  # pylint: disable=g-import-not-at-top
  from learning_words.common import files  # pylint: disable=g-import-not-at-top
  from learning_words import benchmark  # pylint: disable=g-import-not-at-top
  got = benchmark.time_storage(tiny.get_config(), "gs://lw-test/bench", data_dir, repeats=1,
                               records=5)
  for where in ("local", "bucket"):
    assert got[where]["save_s"] > 0 and got[where]["restore_s"] > 0
  assert got["checkpoint_mb"] > 0 and got["dataset"]["records"] == 5
  assert got["dataset"]["bucket_records_per_s"] > 0 and got["dataset"]["local_records_per_s"] > 0
  local = {p.name: p.read_bytes() for p in epath.Path(data_dir).iterdir()}
  remote = {p.name: p.read_bytes() for p in epath.Path("gs://lw-test/bench/dataset").iterdir()}
  assert json.loads(remote.pop(files.MANIFEST)) == {k: len(v) for k, v in local.items()}
  assert local == remote


def test_busy_machine_warns_and_a_quiet_one_does_not():
  quiet = {"cores": 2, "load_average": [1.5, 1.0, 1.0], "busy": False}
  busy = {"cores": 2, "load_average": [12.3, 8.0, 4.0], "busy": True}
  assert benchmark.busy_warning(quiet) is None
  assert "load average 12.3 on 2 cores" in benchmark.busy_warning(busy)


def test_recall_scaling_sizes_in_their_own_processes():
  x = np.array([100, 300, 1000])
  assert benchmark.power_law_exponent(x, 3e-6 * x ** 2.0) == pytest.approx(2.0)
  got = benchmark.recall_scaling(sizes=(16, 32))
  assert set(got["pairs"]) == {"16", "32"}
  for v in got["pairs"].values():
    assert v["seconds"] > 0 and v["peak_rss_mb"] > 50  # a jax process holds more than 50 MB
  assert np.isfinite(got["time_exponent"])
