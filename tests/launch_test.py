"""Launch scripts' dry runs (what they install, with which pins, on which JAX platform), the
constraints file, and when the entry point starts jax.distributed."""
import ast
import os
import re
import subprocess

from learning_words.common import distributed
from tests.conftest import ROOT


def _dry(script, *args, env=None):
  r = subprocess.run(["bash", f"launch/{script}", "--dry-run", *args], cwd=ROOT,
                     capture_output=True, text=True, timeout=60, env=env)
  assert r.returncode == 0, r.stderr
  return r.stdout


def test_tpu_vm_dry_run_creates_then_runs_on_every_worker():
  out = _dry("tpu_vm.sh", "lw", "us-central2-b", "v4-32", "configs/paper.py", "gs://b/lw",
             "--config.data.batch_size=64")
  create, ssh = [line for line in out.splitlines() if line.startswith("+ gcloud")]
  assert "tpu-vm create lw" in create and "--accelerator-type=v4-32" in create
  assert "tpu-vm ssh lw" in ssh and "--worker=all" in ssh
  assert ("learning_words.main --config=configs/paper.py --workdir=gs://b/lw --mode=pipeline "
          "--config.data.batch_size=64") in ssh
  # Each worker installs the TPU and GCS extras with the pins, then runs on the TPU or not at all.
  assert "source launch/_venv.sh tpu '[tpu,gcs]'" in ssh
  # The remote shell expands $VENV, which _venv.sh set there (default .venv).
  assert ssh.index("_venv.sh") < ssh.index("JAX_PLATFORMS=tpu $VENV/bin/python -m learning_words")


def test_slurm_dry_run_installs_cuda_jax_then_runs_one_process_per_gpu(tmp_path):
  env = {**os.environ, "VENV": str(tmp_path / "venv")}  # a venv that is not there yet
  out = _dry("slurm_gpu.sbatch", "configs/paper.py:natural", "/scratch/lw", env=env).splitlines()
  assert re.fullmatch(r"\+ \S*python3(\.\d+)? -m venv \S*/venv", out[0]), out
  assert out[2] == (f"+ {tmp_path}/venv/bin/python -m pip install -q -e .[cuda] "
                    "-c launch/constraints.txt")
  assert out[3] == "+ export JAX_PLATFORMS=cuda"
  assert out[4].startswith(f"+ srun --gpus-per-task=1 {tmp_path}/venv/bin/python -m "
                           "learning_words.main")
  assert "--config=configs/paper.py:natural --workdir=/scratch/lw --mode=pipeline" in out[4]


def test_every_script_runs_the_venv_it_set_up(tmp_path):
  # VENV=/some/folder installs there; the scripts must then run that folder's python, not .venv's.
  for script in ("test.sh", "quickstart.sh", "device_check.sh", "slurm_gpu.sbatch", "pin.sh"):
    with open(os.path.join(ROOT, "launch", script)) as f:
      text = f.read()
    assert ".venv/bin/python" not in text and "$VENV/bin/python" in text, script
  venv = tmp_path / "elsewhere"
  (venv / "bin").mkdir(parents=True)
  stamp = subprocess.run(["bash", "-c", "cat setup.py launch/constraints.txt | sha1sum"], cwd=ROOT,
                         capture_output=True, text=True).stdout[:12]
  (venv / f".installed-{stamp}-test").touch()  # set up already: the script goes straight on
  fake = venv / "bin" / "python"
  fake.write_text("#!/bin/sh\necho ran $0 \"$@\"\n")
  fake.chmod(0o755)
  r = subprocess.run(["bash", "launch/test.sh", "-k", "nothing"], cwd=ROOT, capture_output=True,
                     text=True, timeout=60, env={**os.environ, "VENV": str(venv)})
  assert r.returncode == 0 and r.stdout.startswith(f"ran {fake} -m pytest"), (r.stdout, r.stderr)


def _requirement_names(extra=None):
  """The distribution names setup.py installs (install_requires, or one extra), read with ast."""
  with open(os.path.join(ROOT, "setup.py")) as f:
    call = next(n for n in ast.walk(ast.parse(f.read())) if isinstance(n, ast.Call)
                and getattr(n.func, "id", "") == "setup")
  kw = {k.arg: ast.literal_eval(k.value) for k in call.keywords
        if k.arg in ("install_requires", "extras_require")}
  reqs = kw["install_requires"] if extra is None else kw["extras_require"][extra]
  return {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0] for r in reqs}


def test_constraints_pin_every_requirement_exactly():
  norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # PEP 503
  with open(os.path.join(ROOT, "launch", "constraints.txt")) as f:
    pins = dict(line.strip().split("==") for line in f if line.strip() and line[0] != "#")
  pinned = {norm(k) for k in pins}
  assert all(re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", v) for v in pins.values()), pins
  for name in _requirement_names() | _requirement_names("test"):
    assert norm(name) in pinned, f"{name} is not pinned in launch/constraints.txt"
  assert not any(norm(k).startswith(("nvidia-", "cuda-")) for k in pins)  # [cuda] resolves its own
  for script in ("test.sh", "quickstart.sh"):  # both README commands install through _venv.sh
    with open(os.path.join(ROOT, "launch", script)) as f:
      assert 'source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"' in f.read()
  with open(os.path.join(ROOT, "launch", "_venv.sh")) as f:
    assert "CONSTRAINTS=${CONSTRAINTS-launch/constraints.txt}" in f.read()


def test_multiprocess_detection():
  assert not distributed.is_multiprocess({})
  assert not distributed.is_multiprocess({"SLURM_NTASKS": "1", "TPU_WORKER_HOSTNAMES": "h0"})
  assert distributed.is_multiprocess({"SLURM_NTASKS": "16"})
  assert distributed.is_multiprocess({"TPU_WORKER_HOSTNAMES": "h0,h1,h2,h3"})
  assert distributed.is_multiprocess({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"})
  assert not distributed.maybe_initialize({})
