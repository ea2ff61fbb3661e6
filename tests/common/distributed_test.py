"""A real multi-process run: two local processes join with jax.distributed, build one mesh over
both, take two tiny train steps on a global batch, and end with the single-process parameters."""
import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
from flax import nnx

from learning_words.learner import train
from tests.common import _two_process_worker as worker

TIMEOUT_S = 240  # for both workers together (compiling the tiny step takes ~20-50 s on 2 cores)


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _start_workers(tmp_path, n: int = 2):
  """n worker processes joined on 127.0.0.1, two CPU devices each; returns [(process, i)]."""
  port = _free_port()
  # Own environment: the pytest process forces 8 devices (conftest.py); each worker gets 2.
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in f]
  flags = " ".join(flags + ["--xla_force_host_platform_device_count=2"])
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": worker.ROOT, "XLA_FLAGS": flags}
  env.pop("JAX_COORDINATOR_ADDRESS", None)
  procs = []
  for i in range(n):
    # Logs to files, not pipes: a full pipe would block a worker that nobody reads yet.
    with open(tmp_path / f"process{i}.log", "w") as log:
      procs.append(subprocess.Popen(
          [sys.executable, os.path.abspath(worker.__file__), str(tmp_path / f"process{i}.npz"),
           str(port), str(i), str(n)],
          env=env, cwd=worker.ROOT, stdout=log, stderr=subprocess.STDOUT))
  return procs


def _wait(procs, tmp_path):
  """Waits for the workers; on a failure or the deadline kills the rest (SIGKILL: JAX catches
  SIGTERM) and fails with every worker's log."""
  deadline = time.time() + TIMEOUT_S
  while any(p.poll() is None for p in procs):
    if time.time() > deadline or any(p.poll() not in (None, 0) for p in procs):
      break
    time.sleep(0.2)
  for p in procs:
    if p.poll() is None:
      p.kill()
    p.wait()
  if any(p.returncode != 0 for p in procs):
    logs = [f"--- process {i} (rc {p.returncode}) ---\n"
            + (tmp_path / f"process{i}.log").read_text()[-6000:] for i, p in enumerate(procs)]
    raise AssertionError(f"a worker failed or passed {TIMEOUT_S} s:\n" + "\n".join(logs))


def test_two_processes_match_one_process(tmp_path):
  procs = _start_workers(tmp_path)
  try:
    # The reference runs here while the workers compile: one process, one device, whole batch.
    config = worker.make_config()
    ref_losses, ref_params, _ = worker.run_steps(config, jax.devices()[:1],
                                                 worker.make_global_batch(config))
  finally:
    _wait(procs, tmp_path)
  results = [np.load(tmp_path / f"process{i}.npz") for i in range(2)]
  half = config.data.batch_size // 2
  for i, r in enumerate(results):
    np.testing.assert_array_equal(r["n_devices"], [4, 2])  # one 4-device mesh over both
    np.testing.assert_array_equal(r["rows"], [i * half, (i + 1) * half])  # process i: i-th half
  got = [[r[f"p{k}"] for k in range(len(ref_params))] for r in results]
  # Both processes ran one replicated computation: bit-identical losses and parameters.
  np.testing.assert_array_equal(results[0]["losses"], results[1]["losses"])
  for a, b in zip(*got):
    np.testing.assert_array_equal(a, b)
  # Against one device the gradient sums run in another order (~1e-6 relative in the gradient),
  # which after rounding leaves parameters apart by about one float32 ulp (measured: at most
  # 3e-8, |p| <= 1). rtol 1e-6 + atol 1e-7 is ~8 ulp; rtol 1e-5 would be too loose to mean
  # anything, since two SGD steps move the parameters by only 1e-6 to 3e-4.
  np.testing.assert_allclose(results[0]["losses"], ref_losses, rtol=1e-6)
  for a, b in zip(got[0], ref_params):
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  # Every parameter leaf moved by more than that tolerance, so the comparison above can tell.
  init = jax.tree.leaves(nnx.state(train.TrainState(config, steps_per_epoch=3).models, nnx.Param))
  for a, b in zip(init, ref_params):
    assert not np.allclose(np.asarray(a), b, rtol=1e-6, atol=1e-7)
