"""Mistakes on the command line end in one line and exit status 2, creating nothing; --help exits
0 with the usage line intact. Through `python -m learning_words.main` in a subprocess."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(*args):
  return subprocess.run([sys.executable, "-m", "learning_words.main", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, says", [
    (["--config=configs/tiny.py", "--mode=report", "--config.evals.chekpoint=latest"],
     "unknown config key 'chekpoint' (did you mean \"checkpoint\""),
    (["--config=configs/nonexistent.py", "--mode=report"],
     "--config=configs/nonexistent.py: no such file; the presets: configs/{"),
    (["--config=configs/tiny.py", "--mode=bogus"], "flag --mode=bogus: value should be one of"),
    (["--config=configs/tiny.py", "--config.train.epochs=abc"],
     "flag --config.train.epochs=abc: invalid literal for int()"),
    (["--mode=report"], "flag --config=None"),
])
def test_a_mistake_is_one_line_exit_2_and_creates_nothing(tmp_path, args, says):
  workdir = tmp_path / "w"
  out = main(*args, f"--workdir={workdir}")
  assert out.returncode == 2, out.stderr
  lines = (out.stdout + out.stderr).strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], lines
  assert not workdir.exists()


def test_help_exits_0_with_the_usage_on_its_own_lines():
  out = main("--help")
  assert out.returncode == 0 and not out.stderr
  lines = out.stdout.splitlines()
  usage = next(l for l in lines if "python -m learning_words.main" in l)
  assert usage.strip().endswith("--mode=MODE")
  assert any(l.strip().startswith("--workdir:") for l in lines)


def test_an_unknown_loss_kind_in_the_run_list_stops_before_any_stage(tmp_path):
  # Unquoted names inside a tuple flag reach the config as one string, not a loss kind.
  workdir = tmp_path / "w"
  out = main("--config=configs/tiny.py", "--config.train.kinds=(regular,negatives_edited)",
             f"--workdir={workdir}")
  assert out.returncode == 2, out.stderr
  lines = (out.stdout + out.stderr).strip().splitlines()
  assert lines[-1].startswith("error: --config.train.kinds: unknown loss kind "), lines
  assert "'regular','negatives_edited'" in lines[-1]
  assert not (workdir / "data").exists() and not (workdir / "runs").exists()
