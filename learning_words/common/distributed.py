"""Multi-process JAX: initialise `jax.distributed` when the environment says there are several
processes (a TPU pod slice, a SLURM job with several tasks, or an explicit coordinator)."""
import os

import jax
from absl import logging


def is_multiprocess(env=None) -> bool:
  """Whether this process is one of several (decided from the environment alone)."""
  env = os.environ if env is None else env
  if env.get("JAX_COORDINATOR_ADDRESS"):
    return True
  if int(env.get("SLURM_NTASKS", "1") or 1) > 1:
    return True
  hosts = env.get("TPU_WORKER_HOSTNAMES", "")
  return len([h for h in hosts.split(",") if h]) > 1


def maybe_initialize(env=None) -> bool:
  """Calls jax.distributed.initialize() (it reads SLURM's / the TPU's settings) when
  multi-process."""
  if not is_multiprocess(env):
    return False
  jax.distributed.initialize()
  logging.info("jax.distributed: process %d of %d, %d devices in all", jax.process_index(),
               jax.process_count(), jax.device_count())
  return True
