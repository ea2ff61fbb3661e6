"""Two tiny train steps on a fixed synthetic global batch, in one process or as one of several.

As a script it is one process of a local multi-process run (tests/common/distributed_test.py
starts two, with the repository root on PYTHONPATH):

  PYTHONPATH=ROOT python tests/common/_two_process_worker.py OUT.npz PORT PROCESS_ID NUM_PROCESSES

It joins 127.0.0.1:PORT with jax.distributed.initialize, feeds its share of the global batch, and
writes the final parameters and losses to OUT.npz. The test imports the same functions to run the
single-process reference, so both sides build exactly the same state, generator and batch.
"""
import functools
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from configs import tiny
from learning_words.common import mesh as mesh_lib
from learning_words.data import input_pipeline
from learning_words.learner import train
from learning_words.models import generator as gen_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

STEPS = 2
N_Z = 64


def make_config():
  """The tiny preset, training with drawn (edited) negatives so the step exercises all of it."""
  c = tiny.get_config()
  c.loss.kind = "negatives_edited"
  c.negatives.threshold = 0.2  # the tiny random generator rarely reaches the default 0.95
  return c


def make_global_batch(config, seed: int = 0) -> dict:
  """A deterministic synthetic global batch with input_pipeline.BATCH_KEYS."""
  rng = np.random.default_rng(seed)
  b, t, r = config.data.batch_size, config.data.train_frames, config.data.image_size
  return {"id": np.arange(b, dtype=np.int64),
          "z_index": rng.integers(0, N_Z, size=b).astype(np.int64),
          "image": rng.integers(0, 256, size=(b, r, r, 3)).astype(np.uint8),
          "spec": rng.normal(size=(b, t, 40)).astype(np.float32),
          "n_frames": rng.integers(t // 2, t + 1, size=b).astype(np.int32)}


def local_rows(mesh, global_size: int) -> slice:
  """The rows of the global batch that this process's devices hold under P('data')."""
  idx = mesh_lib.batch_sharding(mesh).addressable_devices_indices_map((global_size,))
  starts = [i[0].start or 0 for i in idx.values()]
  stops = [global_size if i[0].stop is None else i[0].stop for i in idx.values()]
  return slice(min(starts), max(stops))


def run_steps(config, devices, global_batch: dict):
  """STEPS train steps over a mesh of `devices`; returns (losses [STEPS], params, rows fed here).

  Params come back as host numpy arrays (gathered across processes when the mesh spans several).
  """
  mesh = mesh_lib.make_mesh(devices)
  rows = local_rows(mesh, config.data.batch_size)
  assert rows.stop - rows.start == config.data.batch_size // jax.process_count(), rows
  local = {k: v[rows] for k, v in global_batch.items()}
  state = train.TrainState(config, steps_per_epoch=3)
  g = gen_lib.Generator(config.gan.sizes, rngs=nnx.Rngs(7))
  mesh_lib.replicate(state, mesh)
  mesh_lib.replicate(g, mesh)
  z_table = jax.device_put(jnp.asarray(gen_lib.standard_z(N_Z, config.gan.sizes[0])),
                           jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
  step = nnx.jit(functools.partial(train.train_step, config=config))
  batch = input_pipeline.make_global(local, mesh)
  losses = []
  for i in range(STEPS):
    logs = step(state, g, z_table, batch, jax.random.key(i))
    # Un-synchronised back-to-back multi-process steps can hang on CPU (STACK_NOTES.md).
    losses.append(float(jax.block_until_ready(logs["loss"])))
  params = [np.asarray(multihost_utils.process_allgather(x, tiled=True))
            for x in jax.tree.leaves(nnx.state(state.models, nnx.Param))]
  return np.asarray(losses), params, rows


def main(argv):
  out, port, process_id, num_processes = argv[1], int(argv[2]), int(argv[3]), int(argv[4])
  jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=num_processes,
                             process_id=process_id, initialization_timeout=120)
  config = make_config()
  losses, params, rows = run_steps(config, jax.devices(), make_global_batch(config))
  np.savez(out, losses=losses, rows=np.array([rows.start, rows.stop]),
           n_devices=np.array([jax.device_count(), jax.local_device_count()]),
           **{f"p{i}": p for i, p in enumerate(params)})
  jax.distributed.shutdown()


if __name__ == "__main__":
  main(sys.argv)
