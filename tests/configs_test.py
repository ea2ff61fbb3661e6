"""Every preset builds, and the entry point accepts overrides and rejects bad modes / keys."""
import importlib
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

PRESETS = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "configs"))
                 if f.endswith(".py") and f not in ("__init__.py", "common.py"))


def test_presets_are_the_expected_ones():
  assert {"tiny", "quickstart", "paper_synth", "paper_natural"} <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_builds(name):
  config = importlib.import_module(f"configs.{name}").get_config()
  assert 16 <= config.world.resolution <= 128
  assert config.data.on_bad_audio in ("error", "skip")
  assert config.data.source in ("synthetic", "official")
  assert config.data.train_frames <= config.data.eval_frames
  assert 4 * 2 ** (len(config.gan.sizes) - 2) == config.world.resolution  # G draws the world's size


def test_paper_presets_follow_the_reference():
  for name in ("paper_synth", "paper_natural"):
    c = importlib.import_module(f"configs.{name}").get_config()
    assert (c.data.image_size, c.data.train_frames, c.data.eval_frames) == (128, 1024, 2048)
  assert importlib.import_module("configs.paper_natural").get_config().data.official_variant == "natural"


def _main(*args):
  return subprocess.run([sys.executable, "-m", "learning_words.main", *args],
                        cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_unknown_mode_is_a_clear_error(tmp_path):
  r = _main("--config=configs/tiny.py", f"--workdir={tmp_path}", "--mode=fly")
  assert r.returncode != 0
  assert "--mode" in r.stderr and "pipeline" in r.stderr  # names the flag and the valid modes


def test_unknown_config_key_is_a_clear_error(tmp_path):
  r = _main("--config=configs/tiny.py", f"--workdir={tmp_path}", "--mode=render",
            "--config.world.no_such_key=3")
  assert r.returncode != 0
  assert "no_such_key" in r.stderr


def test_pipeline_renders_then_stops_without_a_generator(tmp_path):
  r = _main("--config=configs/tiny.py", f"--workdir={tmp_path}", "--mode=pipeline",
            "--config.world.num_train=10", "--config.world.num_val=3")
  assert r.returncode == 0, r.stderr[-3000:]
  assert "retrain=True" in r.stdout  # says how to get a generator (none is shipped at 16 px)
  assert "not run: train_gan, train_segmenter" in r.stdout
  built = [d for d, _, files in os.walk(tmp_path / "data") if "dataset_info.json" in files]
  assert len(built) == 1 and "_n10_3_" in built[0]  # the override reached the dataset
  r2 = _main("--config=configs/tiny.py", f"--workdir={tmp_path}", "--mode=pipeline",
             "--config.world.num_train=10", "--config.world.num_val=3")
  assert r2.returncode == 0 and "render: already done" in r2.stdout
