"""The benchmark writes the promised JSON keys with sane values (a small config, 1 timed step, the
torch peer included), and its analytic FLOP count is within 10% of XLA's."""
import json
import subprocess
import sys

from configs import tiny
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
    # The analytic count (learner/flops.py) against XLA's, which the benchmark scales from one
    # device's share to the step (the tests run under 8 CPU devices). XLA counts the candidate
    # renders' while loop once: one round, one render per sample.
    xla, ours = res[kind]["flops_per_step"], flops.train_step(config, kind, renders=1)["total"]
    assert abs(ours - xla) / xla < 0.10, (kind, ours, xla)
  drawn = res["negatives_edited"]["negatives"]
  assert 1 <= drawn["renders"] <= config.negatives.candidates
  assert 0 <= drawn["accepted_rate"] <= 1
  # Drawing negatives adds generator passes and an image-encoder pass: strictly more work.
  assert res["negatives_edited"]["flops_per_step"] > res["regular"]["flops_per_step"]
  assert res["edited_over_regular"] > 0 and res["recall_40_s"] > 0
  assert res["peer_regular_step_s"] > 0
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
