"""Every preset builds (from any working directory), and the entry point accepts overrides,
rejects bad modes / keys / workdirs in one clear line, and keeps library chatter off the
terminal."""
import importlib
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

PRESETS = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "configs"))
                 if f.endswith(".py") and f != "__init__.py")


def test_presets_are_the_expected_ones():
  assert {"tiny", "quickstart", "paper"} <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_builds(name):
  config = importlib.import_module(f"configs.{name}").get_config()
  assert 16 <= config.world.resolution <= 128
  assert config.data.on_bad_audio in ("error", "skip")
  assert config.data.source in ("synthetic", "official")
  assert config.data.train_frames <= config.data.eval_frames
  assert 4 * 2 ** (len(config.gan.sizes) - 2) == config.world.resolution  # G draws the world's size


def test_paper_presets_follow_the_reference():
  paper = importlib.import_module("configs.paper")
  for variant in ("synth", "natural"):
    c = paper.get_config(variant)
    assert (c.data.image_size, c.data.train_frames, c.data.eval_frames) == (128, 1024, 2048)
    assert c.data.official_variant == variant
  assert paper.get_config().data.official_variant == "synth"
  with pytest.raises(ValueError, match="natural"):
    paper.get_config("recorded")


def _main(*args, cwd=ROOT):
  return subprocess.run([sys.executable, "-m", "learning_words.main", *args],
                        cwd=cwd, capture_output=True, text=True, timeout=120)


def test_a_preset_loads_from_any_directory_and_a_url_workdir_is_refused(tmp_path):
  # From another directory, with an argument: the preset imports learning_words.defaults, not a
  # sibling file, so no sys.path entry is needed. The URL workdir is refused in one line.
  r = _main(f"--config={os.path.join(ROOT, 'configs', 'paper.py')}:natural",
            "--workdir=s3://bucket/lw", cwd=tmp_path)
  assert r.returncode == 2, r.stderr[-3000:]
  assert r.stderr.strip().splitlines() == [r.stderr.strip()]  # one line
  assert r.stderr.startswith("error: --workdir=s3://bucket/lw: s3:// is not supported")
  assert not os.path.exists(tmp_path / "s3:")  # nothing written in a folder named 's3:'


def test_a_missing_stage_output_is_one_line_and_its_traceback_goes_to_the_log(tmp_path):
  r = _main("--config=configs/tiny.py", f"--workdir={tmp_path}", "--mode=train")
  assert r.returncode == 2
  last = r.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and "--mode=build_data" in last and "Traceback" not in r.stderr
  log = last.split("(details: ")[1].rstrip(")")
  assert os.path.dirname(log) == os.path.join(str(tmp_path), "logs")
  with open(log) as f:
    assert "Traceback" in f.read()
  verbose = _main("--config=configs/tiny.py", f"--workdir={tmp_path}", "--mode=train",
                  "--verbosity=1")
  assert verbose.returncode != 0 and "Traceback" in verbose.stderr


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
  assert r2.returncode == 0 and "[render] already done" in r2.stdout
  # The terminal: stage lines only, no library INFO lines; those are in the run's log file.
  lines = [l for l in (r.stdout + r2.stdout).splitlines() if l.strip()]
  assert all(l.startswith("[") for l in lines) and len(lines) < 12, lines
  assert "INFO" not in r.stderr + r2.stderr and "Using custom data configuration" not in r.stderr
  logs = sorted(os.listdir(tmp_path / "logs"))
  assert len(logs) == 2
  with open(tmp_path / "logs" / logs[0]) as f:
    assert "Using custom data configuration" in f.read()


def test_a_bad_audio_file_is_one_line_naming_it_and_the_flag_that_skips(official_layout, tmp_path):
  root = str(tmp_path / "synth")
  shutil.copytree(official_layout[0], root)
  bad = os.path.join(root, "audio", "5.wav")
  with open(bad, "wb") as f:
    f.write(b"RIFF\x00\x00\x00\x00WAVEnot audio")
  r = _main("--config=configs/tiny.py", f"--workdir={tmp_path / 'work'}", "--mode=build_data",
            "--config.data.source=official", f"--config.data.official_dir={root}")
  assert r.returncode == 2
  assert "Traceback" not in r.stderr
  last = r.stderr.strip().splitlines()[-1]
  assert last.startswith(f"error: {bad}: ") and "--config.data.on_bad_audio=skip" in last


def test_a_bucket_workdir_keeps_the_log_of_a_command_that_failed(gcs, tmp_path):
  """The entry point on a gs:// workdir (the emulator): a stage output that is missing ends in one
  line, and the log file, written locally, is in the bucket afterwards with the traceback."""
  del gcs  # running
  from etils import epath  # pylint: disable=g-import-not-at-top
  env = {**os.environ, "LW_CACHE": str(tmp_path)}
  r = subprocess.run([sys.executable, "-m", "learning_words.main", "--config=configs/tiny.py",
                      "--workdir=gs://lw-test/cli", "--mode=report"], cwd=ROOT, env=env,
                     capture_output=True, text=True, timeout=120)
  assert r.returncode == 2, r.stderr[-3000:]
  line = r.stderr.strip()
  assert line.splitlines() == [line] and line.startswith("error: no runs with checkpoints under "
                                                         "gs://lw-test/cli/runs")
  log = line.split("(details: ")[1].rstrip(")")
  assert log.startswith("gs://lw-test/cli/logs/report_")
  text = epath.Path(log).read_text()
  assert "Traceback" in text and "MissingError" in text
  assert (epath.Path(str(tmp_path), "gs", "lw-test", "cli", "logs") / log.rsplit("/", 1)[1]
          ).read_text() == text  # the local mirror's copy, written while it ran
