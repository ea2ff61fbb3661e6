"""Step throughput, FLOPs and recall time of a config, written as JSON.

  python -m learning_words.benchmark --config=configs/quickstart.py --out=bench.json \
      [--config.data.batch_size=8] [--steps=10] [--peer=torch]

For `regular` and `negatives_edited`: the compiled train step's median wall time after warm-up,
samples/s, FLOPs per step (XLA's cost analysis counts one device's share: it is scaled by the
device count; and the analytic count of learner/flops.py, the only one on GPUs, where XLA's
leaves out cuDNN convolutions) and the achieved FLOP/s of each; their ratio; and the
time of validation recall over 500 pairs at the paper's shapes (8x8x512 images, 2048 frames through
the large speech encoder -> 32 x 512). Weights are random, so no dataset or trained generator is
needed. The regular step's speed does not depend on them; the edited step's does a little: it
renders only the candidate tries still needed (negatives.first_acceptable), so its JSON carries
the drawn negatives' statistics (`negatives`: accepted_rate, mean_tries, renders per sample...),
the analytic count uses the measured renders, and XLA's count holds one round of renders.
With --peer=torch, the same regular step in PyTorch (torch_peer.py, built from the same initial
weights, same batch) is timed after ours: `peer_regular_step_s` and `ours_over_peer`.

With --workdir=DIR (a workdir holding the config's built dataset, e.g. the quickstart's), the host
side too: `loader` holds the featurisation's records/s on one core, from the waveform (a first
epoch) and from the kept log-mels (later epochs), and the grain loader's records/s for each
--loader_workers count on the first epoch; `train` holds training's steps/s end to end (the real
loader, validation excluded) for each kind, over --train_steps steps after the first logged
interval, beside the step alone (`step_alone_steps_per_s`) and their ratio (`loader_share`: the
fraction of training's time the step does not explain).

With --storage=gs://BUCKET/PATH (the [gcs] extra), what a bucket workdir costs: `storage` holds
the median wall time of saving (until written) and restoring a training checkpoint (the
config's encoders and optimizer, random weights) in a local temporary folder and under the
bucket path, and with --workdir, of reading the dataset's training records from the bucket's
copy (uploaded first) against the local files, plus the one-off upload and download. --steps=0
skips the step timings.
"""
import json
import os
import pathlib
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from flax import nnx
from ml_collections import config_flags

from learning_words import torch_peer, workdir as wd
from learning_words.common import checkpoints, console, files, jsonio, mesh as mesh_lib, writers
from learning_words.data import input_pipeline
from learning_words.learner import flops as flops_lib, matchmap, recall, train
from learning_words.models import generator as gen_lib

config_flags.DEFINE_config_file("config", None, "Config file (configs/NAME.py).", lock_config=True)
flags.DEFINE_string("out", None, "JSON file to write.")
flags.DEFINE_integer("steps", 10, "Timed steps per loss kind (after 2 warm-up steps).")
flags.DEFINE_integer("recall_pairs", 500, "Pairs in the recall timing (the reference's 500).")
flags.DEFINE_enum("peer", "", ["", "torch"], "Also time the regular step written in PyTorch "
                  "(learning_words/torch_peer.py; needs the [torch] extra).")
flags.DEFINE_string("workdir", None, "A workdir with the config's built dataset: also time the "
                    "input pipeline and training end to end.")
flags.DEFINE_list("loader_workers", ["0", "1", "2"], "grain worker counts to time the loader with.")
flags.DEFINE_integer("loader_batches", 20, "Batches per loader timing (after one warm-up batch).")
flags.DEFINE_integer("train_steps", 60, "Timed training steps per kind with --workdir.")
flags.DEFINE_string("storage", None, "gs://BUCKET/PATH: also time checkpoints (and, with "
                    "--workdir, dataset reads) there against a local folder.")
flags.mark_flags_as_required(["config", "out"])
FLAGS = flags.FLAGS


def make_batch(config, mesh, rng):
  """A random global batch of the config's shapes."""
  b, t = config.data.batch_size, config.data.train_frames
  batch = {"id": np.arange(b), "z_index": np.arange(b),
           "image": np.zeros((b, config.world.resolution, config.world.resolution, 3), np.uint8),
           "spec": rng.normal(size=(b, t, 40)).astype(np.float32),
           "n_frames": np.full((b,), t, np.int32)}
  sharding = mesh_lib.batch_sharding(mesh)
  return {k: jax.device_put(v, sharding) for k, v in batch.items()}


def time_step(config, kind: str, steps: int) -> dict:
  """Compiles the train step for `kind` and times it (median of `steps` calls)."""
  config = config.copy_and_resolve_references()
  config.loss.kind = kind
  mesh = mesh_lib.make_mesh()
  state = train.TrainState(config, steps_per_epoch=100)
  g = gen_lib.Generator(config.gan.sizes, rngs=nnx.Rngs(1))
  mesh_lib.replicate(state, mesh)
  mesh_lib.replicate(g, mesh)
  graphdef, st = nnx.split((state, g))

  def pure(st, z_table, batch, key, cache):
    state, g = nnx.merge(graphdef, st)
    logs = train.train_step(state, g, z_table, batch, key, config, cache=cache)
    return nnx.state((state, g)), logs

  z_table = jnp.asarray(gen_lib.standard_z(config.data.batch_size, g.sizes[0]))
  cache = train.draw_positive_cache(g, z_table, config)  # train.cache_positives: read, not drawn
  batch = make_batch(config, mesh, np.random.default_rng(0))
  t0 = time.time()
  compiled = jax.jit(pure, donate_argnums=0).lower(st, z_table, batch, jax.random.key(0),
                                                   cache).compile()
  compile_s = time.time() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get("flops", float("nan"))) * mesh.devices.size  # per device -> the step's
  times, neg = [], []
  for i in range(steps + 2):
    t0 = time.time()
    st, logs = compiled(st, z_table, batch, jax.random.key(i), cache)
    jax.block_until_ready((st, logs))
    times.append(time.time() - t0)
    neg.append({k[4:]: float(v) for k, v in logs.items() if k.startswith("neg/")})
  step_s = float(np.median(times[2:]))
  # The candidate renders depend on the data (a work queue); XLA counts its loop body once.
  negatives = {k: float(np.mean([n[k] for n in neg[2:]])) for k in neg[0]}
  analytic = flops_lib.train_step(config, kind, negatives.get("renders"))["total"]
  out = {"negatives": negatives} if negatives else {}
  return {**out, "step_time_s": step_s, "samples_per_s": config.data.batch_size / step_s,
          "flops_per_step": flops, "flops_per_s": flops / step_s,
          "analytic_flops_per_step": analytic, "analytic_flops_per_s": analytic / step_s,
          "compile_s": compile_s,
          "batch_size": config.data.batch_size}


def time_peer(config, steps: int) -> dict:
  """Median wall time of the torch peer's regular step (after 2 warm-up steps) on a batch of the
  config's shapes, from the same initial weights as time_step's."""
  config = config.copy_and_resolve_references()
  state = train.TrainState(config, steps_per_epoch=100)
  g = gen_lib.Generator(config.gan.sizes, rngs=nnx.Rngs(1))
  peer = torch_peer.Peer(config, state.models, g)
  b, t = config.data.batch_size, config.data.train_frames
  torch = torch_peer.torch
  z = torch.from_numpy(gen_lib.standard_z(b, g.sizes[0]).astype(np.float32))
  spec = torch.from_numpy(np.random.default_rng(0).normal(size=(b, t, 40)).astype(np.float32))
  n_frames = torch.full((b,), t, dtype=torch.long)
  images = peer.generate(z) if config.train.cache_positives else None  # drawn once, as ours
  times = []
  for _ in range(steps + 2):
    t0 = time.time()
    peer.step(z, spec, n_frames, images)
    times.append(time.time() - t0)
  return {"step_time_s": float(np.median(times[2:])), "torch": torch.__version__,
          "threads": torch.get_num_threads()}


def time_recall(n: int = 500, h: int = 8, t: int = 32, d: int = 512, repeats: int = 3) -> float:
  """Seconds for recall@k over n pairs at the paper's embedding shapes (similarity + ranks)."""
  rng = np.random.default_rng(0)
  img = jnp.asarray(rng.random((n, h, h, d), np.float32))
  aud = jnp.asarray(rng.random((n, t, d), np.float32))
  frames = jnp.asarray(rng.integers(t // 2, t + 1, size=n), jnp.int32)
  sim_fn = jax.jit(lambda a, b, f: matchmap.similarity_matrix(a, b, f, chunk=64))
  jax.block_until_ready(sim_fn(img, aud, frames))  # compile
  times = []
  for _ in range(repeats):
    t0 = time.time()
    recall.recalls(np.asarray(sim_fn(img, aud, frames)))
    times.append(time.time() - t0)
  return float(np.median(times))


def time_featurise(config, source, n: int = 64) -> dict:
  """records/s of one core's featurisation: from the waveform, and from the kept log-mel."""
  records = [source[i] for i in range(min(n, len(source)))]
  feat = input_pipeline.Featurise(config.data.train_frames, True, cache_bytes=2**40)
  rng = np.random.default_rng(0)
  rates = {}
  for name in ("from_waveform", "from_cache"):  # the first pass fills the cache
    t0 = time.time()
    for r in records:
      feat.random_map(r, rng)
    rates[f"{name}_records_per_s"] = len(records) / (time.time() - t0)
  return rates


def time_loader(config, source, workers, batches: int) -> dict:
  """{worker count: records/s} of the training loader's first epoch (log-mels computed)."""
  out = {}
  b = config.data.batch_size
  for w in workers:
    loader = input_pipeline.make_loader(source, batch_size=b, frames=config.data.train_frames,
                                        train=True, seed=0, worker_count=w, cache_gb=0.0)
    it = iter(loader)
    next(it)  # workers started, first batch out
    t0 = time.time()
    for _ in range(batches):
      next(it)
    out[str(w)] = batches * b / (time.time() - t0)
    del it, loader
  return out


def time_training(config, workdir: str, data_dir: str, kind: str, steps: int) -> dict:
  """Training's steps/s end to end (train_loop, its loader and drawn negatives) in a scratch run:
  the median of the rates it logs every log_every steps, the first interval (compilation) left
  out; validation and checkpoints are pushed past the timed steps. Also the validation numbers
  (score, A_r5, I_r5) at the end."""
  c = config.copy_and_resolve_references()
  c.loss.kind = kind
  c.train.log_every = max(1, steps // 6)
  c.train.checkpoint_every = c.train.image_every = 10**9
  c.train.epochs = max(int(c.train.epochs), 1 + steps * c.data.batch_size
                       // max(1, len(input_pipeline.open_source(data_dir, "train"))))
  g = wd.load_generator(c, workdir)
  with tempfile.TemporaryDirectory() as run_dir:
    val = train.train_loop(c, run_dir, data_dir, g, max_steps=steps + c.train.log_every,
                           latents=wd.load_latents(c, workdir))
    rates = writers.read_scalars(os.path.join(run_dir, "tensorboard"))["steps_per_s"][1]
  return {"steps_per_s": float(np.median(rates[1:])), "logged_rates": [float(r) for r in rates],
          **{k: float(val[k]) for k in ("score", "A_r5", "I_r5")}}


def _median_time(fn, repeats: int) -> float:
  times = []
  for i in range(repeats):
    t0 = time.time()
    fn(i)
    times.append(time.time() - t0)
  return float(np.median(times))


def time_storage(config, remote: str, data_dir: str | None = None, repeats: int = 3,
                 records: int = 200) -> dict:
  """Checkpoint save / restore under `remote` (a gs:// path) and in a local temporary folder;
  with data_dir, reading `records` training records from the bucket's copy and locally."""
  state = train.TrainState(config, steps_per_epoch=1)
  items = {"models": state.models, "opt": state.opt}
  out = {"repeats": repeats}
  with tempfile.TemporaryDirectory() as local:
    for name, root in (("local", local), ("bucket", remote)):
      manager = checkpoints.make_manager(os.path.join(root, "checkpoints"), keep=repeats)
      def save(i, manager=manager):
        checkpoints.save(manager, i + 1, items)
        manager.wait_until_finished()
      out[name] = {"save_s": _median_time(save, repeats),
                   "restore_s": _median_time(
                       lambda i, m=manager: checkpoints.restore(m, items, i + 1), repeats)}
      manager.close()
    out["checkpoint_mb"] = sum(p.stat().st_size for p in
                               pathlib.Path(local, "checkpoints", "1").rglob("*")
                               if p.is_file()) / 2**20
  if data_dir:
    copy = os.path.join(remote, "dataset")
    t0 = time.time()
    files.upload(data_dir, copy)
    upload_s = time.time() - t0
    read = {}
    for name, folder in (("local", data_dir), ("bucket", copy)):
      source = input_pipeline.open_source(folder, "train")
      n = min(records, len(source))
      source[0]  # pylint: disable=pointless-statement  # opened
      t0 = time.time()
      for k in range(n):
        source[k]  # pylint: disable=pointless-statement
      read[f"{name}_records_per_s"] = n / (time.time() - t0)
    with tempfile.TemporaryDirectory() as back:
      t0 = time.time()
      files.download(copy, back)
      download_s = time.time() - t0
    out["dataset"] = {"records": n, **read, "upload_s": upload_s, "download_s": download_s,
                      "mb": sum(p.stat().st_size for p in pathlib.Path(data_dir).rglob("*")
                                if p.is_file()) / 2**20}
  return out


def main(argv):
  del argv
  # Library INFO lines (Orbax, TFDS) go to a log file beside the JSON, as the main job's do.
  log = console.setup(os.path.join(os.path.dirname(os.path.abspath(FLAGS.out)), "logs"),
                      "benchmark", FLAGS.verbosity >= 1)
  print(f"benchmark: log {log}", flush=True)
  out = {"device": str(jax.devices()[0]),
         "device_count": jax.device_count()}
  if FLAGS.storage:
    files.check(FLAGS.storage, "--storage")
    data_dir = wd.require_dataset(FLAGS.config, FLAGS.workdir) if FLAGS.workdir else None
    out["storage"] = time_storage(FLAGS.config, FLAGS.storage, data_dir)
    print("storage", json.dumps(out["storage"]), flush=True)
  if FLAGS.steps <= 0:
    jsonio.write_json(os.path.abspath(FLAGS.out), out)
    return
  for kind in ("regular", "negatives_edited"):
    out[kind] = time_step(FLAGS.config, kind, FLAGS.steps)
    print(kind, json.dumps(out[kind]), flush=True)
  out["edited_over_regular"] = (out["negatives_edited"]["step_time_s"]
                                / out["regular"]["step_time_s"])
  if FLAGS.peer:
    out["peer"] = time_peer(FLAGS.config, FLAGS.steps)
    out["peer_regular_step_s"] = out["peer"]["step_time_s"]
    out["ours_over_peer"] = out["regular"]["step_time_s"] / out["peer_regular_step_s"]
  out["recall_500_s" if FLAGS.recall_pairs == 500 else f"recall_{FLAGS.recall_pairs}_s"] = (
      time_recall(FLAGS.recall_pairs))
  if FLAGS.workdir:
    data_dir = wd.require_dataset(FLAGS.config, FLAGS.workdir)
    source = input_pipeline.open_source(data_dir, "train")
    out["loader"] = {**time_featurise(FLAGS.config, source),
                     "workers_records_per_s": time_loader(
                         FLAGS.config, source, [int(w) for w in FLAGS.loader_workers],
                         FLAGS.loader_batches),
                     "batch_size": FLAGS.config.data.batch_size}
    print("loader", json.dumps(out["loader"]), flush=True)
    out["train"] = {}
    for kind in ("regular", "negatives_edited"):
      got = time_training(FLAGS.config, FLAGS.workdir, data_dir, kind, FLAGS.train_steps)
      alone = 1.0 / out[kind]["step_time_s"]
      out["train"][kind] = {**got, "step_alone_steps_per_s": alone,
                            "loader_share": 1.0 - got["steps_per_s"] / alone}
      print("train", kind, json.dumps(out["train"][kind]), flush=True)
  jsonio.write_json(os.path.abspath(FLAGS.out), out)
  print(json.dumps({k: v for k, v in out.items() if not isinstance(v, dict)}), flush=True)


if __name__ == "__main__":
  app.run(main)
