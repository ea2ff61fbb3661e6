"""Launch scripts' dry runs, and when the entry point starts jax.distributed."""
import subprocess

from learning_words.common import distributed
from tests.conftest import ROOT


def _dry(script, *args):
  r = subprocess.run(["bash", f"launch/{script}", "--dry-run", *args], cwd=ROOT,
                     capture_output=True, text=True, timeout=60)
  assert r.returncode == 0, r.stderr
  return r.stdout


def test_tpu_vm_dry_run_creates_then_runs_on_every_worker():
  out = _dry("tpu_vm.sh", "lw", "us-central2-b", "v4-32", "configs/paper.py", "/mnt/lw",
             "--config.data.batch_size=64")
  create, ssh = [line for line in out.splitlines() if line.startswith("+ gcloud")]
  assert "tpu-vm create lw" in create and "--accelerator-type=v4-32" in create
  assert "tpu-vm ssh lw" in ssh and "--worker=all" in ssh
  assert ("learning_words.main --config=configs/paper.py --workdir=/mnt/lw --mode=pipeline "
          "--config.data.batch_size=64") in ssh


def test_slurm_dry_run_runs_one_process_per_gpu():
  out = _dry("slurm_gpu.sbatch", "configs/paper.py:natural", "/scratch/lw")
  assert out.startswith("+ srun --gpus-per-task=1")
  assert "--config=configs/paper.py:natural --workdir=/scratch/lw --mode=pipeline" in out


def test_multiprocess_detection():
  assert not distributed.is_multiprocess({})
  assert not distributed.is_multiprocess({"SLURM_NTASKS": "1", "TPU_WORKER_HOSTNAMES": "h0"})
  assert distributed.is_multiprocess({"SLURM_NTASKS": "16"})
  assert distributed.is_multiprocess({"TPU_WORKER_HOSTNAMES": "h0,h1,h2,h3"})
  assert distributed.is_multiprocess({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"})
  assert not distributed.maybe_initialize({})
