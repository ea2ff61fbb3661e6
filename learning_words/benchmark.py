"""Step throughput, FLOPs and recall time of a config, written as JSON.

  python -m learning_words.benchmark --config=configs/quickstart.py --out=bench.json \
      [--config.data.batch_size=8] [--steps=10] [--peer=torch]

For `regular` and `negatives_edited`: training's own compiled step (the trainer's function,
weights state and dispatch: each step is queued before the host waits for the previous one), its
mean wall time over --steps steps after warm-up, samples/s, FLOPs per step (XLA's cost analysis
of the lowered step, before it is split over the devices; and the analytic count of
learner/flops.py) and the achieved FLOP/s of each; their ratio; and the
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

With --warm_run=WORKDIR/runs/regular, both steps again from that run's best checkpoint (and the
workdir's generator): the edited step's cost depends on how many candidate renders the weights
need, so `warm` holds the ratio at trained weights beside `edited_over_regular` at random ones.
With --workdir, `train.<kind>.trained_run` compares the step alone with the workdir's own run of
that kind: the median steps/s of its later logged intervals and its profile's step seconds.
With --scaling, how cost grows (`scaling`): recall time and peak memory at 500 / 1,000 / 2,000 /
5,000 pairs (each size in a fresh process) with the fitted exponent, the train steps' seconds per
sample at batch 8 / 32 / 128, and with --workdir the data build's records/s with 1 and 2 speech
processes. `machine` (and `machine_after`) record the CPU model, the cores and the load average; a
load above the core count prints a warning.

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
import platform
import subprocess
import sys
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
from learning_words.models import segmenter as seg_lib
from learning_words.world import pairs

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
flags.DEFINE_string("warm_run", None, "A trained run's folder (e.g. WORKDIR/runs/regular): also "
                    "time both steps from its best checkpoint's encoders (with --workdir: and the "
                    "workdir's generator).")
flags.DEFINE_bool("scaling", False, "Also measure how cost grows: recall time and peak memory at "
                  "500 to 5,000 pairs, the step per sample at batch 8 / 32 / 128, and (with "
                  "--workdir) the data build's records/s with 1 and 2 speech processes.")
flags.DEFINE_list("scaling_pairs", ["500", "1000", "2000", "5000"], "Pair counts of --scaling's "
                  "recall timings.")
flags.mark_flags_as_required(["config", "out"])
FLAGS = flags.FLAGS
files.emulator_defaults()  # before any storage client starts


def make_batch(config, mesh, rng):
  """A random global batch of the config's shapes."""
  b, t = config.data.batch_size, config.data.train_frames
  batch = {"id": np.arange(b), "z_index": np.arange(b),
           "image": np.zeros((b, config.world.resolution, config.world.resolution, 3), np.uint8),
           "spec": rng.normal(size=(b, t, 40)).astype(np.float32),
           "n_frames": np.full((b,), t, np.int32)}
  sharding = mesh_lib.batch_sharding(mesh)
  return {k: jax.device_put(v, sharding) for k, v in batch.items()}


def time_step(config, kind: str, steps: int, g=None, warm_run: str | None = None) -> dict:
  """Times training's own jitted step (train.make_step_fn: the same function, weights state and
  dispatch as the trainer) for `kind`: `steps` calls after 2 warm-up ones, each dispatched before
  the host waits for the previous step's loss, as the train loop does. g: the generator (default:
  random weights); warm_run: a run folder whose best checkpoint's encoders replace the random ones
  (the edited step's cost depends on how many candidate renders the weights need)."""
  config = config.copy_and_resolve_references()
  config.loss.kind = kind
  mesh = mesh_lib.make_mesh()
  state = train.TrainState(config, steps_per_epoch=100)
  if warm_run:
    train.init_from_run(state, warm_run)
  g = gen_lib.Generator(config.gan.sizes, rngs=nnx.Rngs(1)) if g is None else g
  mesh_lib.replicate(state, mesh)
  mesh_lib.replicate(g, mesh)
  step_fn = train.make_step_fn(config, mesh.size)
  z_table = jnp.asarray(gen_lib.standard_z(config.data.batch_size, g.sizes[0]))
  cache = train.draw_positive_cache(g, z_table, config)  # train.cache_positives: read, not drawn
  batch = make_batch(config, mesh, np.random.default_rng(0))
  cost = step_fn.lower(state, g, z_table, batch, jax.random.key(0), cache=cache).cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get("flops", float("nan")))  # the lowered step: all devices' work together
  t0 = time.time()
  jax.block_until_ready(step_fn(state, g, z_table, batch, jax.random.key(0), cache=cache))
  compile_s = time.time() - t0  # trace, compile and one step
  jax.block_until_ready(step_fn(state, g, z_table, batch, jax.random.key(1), cache=cache))
  logs, pending = [], None
  t0 = time.time()
  for i in range(steps):
    out = step_fn(state, g, z_table, batch, jax.random.key(2 + i), cache=cache)
    if pending is not None:
      jax.block_until_ready(pending)
    pending = out["loss"]
    logs.append(out)
  jax.block_until_ready(pending)
  step_s = (time.time() - t0) / max(steps, 1)
  neg = [{k[4:]: float(v) for k, v in out.items() if k.startswith("neg/")} for out in logs]
  # The candidate renders depend on the data (a work queue); XLA counts its loop body once.
  negatives = {k: float(np.mean([n[k] for n in neg])) for k in neg[0]} if neg else {}
  analytic = flops_lib.train_step(config, kind, negatives.get("renders"))["total"]
  out = {"negatives": negatives} if negatives else {}
  return {**out, "step_time_s": step_s, "samples_per_s": config.data.batch_size / step_s,
          "flops_per_step": flops, "flops_per_s": flops / step_s,
          "analytic_flops_per_step": analytic, "analytic_flops_per_s": analytic / step_s,
          "compile_s": compile_s, "batch_size": config.data.batch_size,
          "weights": warm_run or "random"}


def cpu_model() -> str:
  """The CPU's model name (/proc/cpuinfo), else what platform says."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def machine() -> dict:
  """What ran the benchmark and how busy it was: CPU model, cores, load averages (1, 5, 15 min)."""
  cores = os.cpu_count() or 1
  load = [round(v, 2) for v in os.getloadavg()]
  return {"cpu": cpu_model(), "cores": cores, "load_average": load, "busy": load[0] > cores}


def busy_warning(m: dict) -> str | None:
  """One line when the load average exceeds the cores: timings (and the peer ratio most of all,
  as torch's threads thrash on shared cores) then measure the other work too."""
  if not m["busy"]:
    return None
  return (f"benchmark: warning: load average {m['load_average'][0]:.1f} on {m['cores']} cores: "
          "other work shares the CPU, so these timings (the torch peer's most of all) are not "
          "the machine's; rerun on a quiet machine")


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


def recall_scaling(sizes=(500, 1000, 2000, 5000)) -> dict:
  """{pairs: {seconds, peak_rss_mb}} of time_recall at each size, each in a fresh process (its
  peak resident memory is then its own), and the exponent of a power-law fit of time on size."""
  out = {}
  for n in sizes:
    code = ("import json, resource; from learning_words import benchmark; "
            f"s = benchmark.time_recall({n}, repeats=1); "
            "print(json.dumps({'seconds': s, 'peak_rss_mb': "
            "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out[str(n)] = json.loads(done.stdout.strip().splitlines()[-1])
  return {"pairs": out, "time_exponent": power_law_exponent(
      [int(n) for n in out], [v["seconds"] for v in out.values()])}


def power_law_exponent(x, y) -> float:
  """The slope of log y on log x (least squares): y grows as x ** slope."""
  return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def step_scaling(config, steps: int, batches=(8, 32, 128)) -> dict:
  """{kind: {batch: seconds per sample}} of time_step at each global batch size."""
  out = {}
  for kind in ("regular", "negatives_edited"):
    out[kind] = {}
    for b in batches:
      c = config.copy_and_resolve_references()
      c.data.batch_size = b
      out[kind][str(b)] = time_step(c, kind, steps)["step_time_s"] / b
  return out


def build_scaling(config, workdir: str, n: int = 64, workers=(1, 2)) -> dict:
  """records/s of the data build's pair making (draw or render, read, caption, speak) for `n`
  pairs with each count of speech processes."""
  g = wd.load_generator(config, workdir)
  seg = wd.load_segmenter(config, workdir, required=False)
  predict = None if seg is None else (lambda images: seg_lib.predict(seg, images))
  out = {}
  for w in workers:
    c = config.copy_and_resolve_references()
    c.speech.workers = w
    t0 = time.time()
    recs, _ = pairs.make_pairs(g, predict, np.arange(n), seed=c.seed, speech_cfg=c.speech,
                               relation_prob=c.world.relation_prob,
                               min_pixels=c.world.parse_min_pixels, progress=False,
                               kind=c.world.pairs, world_cfg=c.world)
    out[str(w)] = len(recs) / (time.time() - t0)
  return {"records_per_s": out, "pairs": n}


def trained_run_rates(workdir: str, kind: str) -> dict | None:
  """What a trained run of `kind` in the workdir logged: the median steps/s of its second half of
  logged intervals (log-mels cached, compilation long past; an interval holding a validation is
  slower, the median leaves it out) and, from its profile, the compiled step's seconds per step."""
  run = wd.path(workdir, "runs", kind)
  rates = writers.read_scalars(os.path.join(run, "tensorboard")).get("steps_per_s")
  if rates is None or not len(rates[1]):
    return None
  later = rates[1][len(rates[1]) // 2:]
  out = {"later_steps_per_s": float(np.median(later)), "run": run}
  profile = jsonio.read_json(os.path.join(run, "train_profile.json"))
  if profile.get("steps"):
    out["step_s_per_step"] = profile["step_s"] / profile["steps"]
  return out


def time_recall(n: int = 500, h: int = 8, t: int = 32, d: int = 512, repeats: int = 3) -> float:
  """Seconds for recall@k over n pairs at the paper's embedding shapes (similarity + ranks)."""
  rng = np.random.default_rng(0)
  img = jnp.asarray(rng.random((n, h, h, d), np.float32))
  aud = jnp.asarray(rng.random((n, t, d), np.float32))
  frames = jnp.asarray(rng.integers(t // 2, t + 1, size=n), jnp.int32)
  # Compiled ahead, not by a first call: at 5,000 pairs one call costs minutes on a CPU.
  sim_fn = jax.jit(lambda a, b, f: matchmap.similarity_matrix(a, b, f, chunk=64)).lower(
      img, aud, frames).compile()
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
          **{k: float(val[k]) for k in ("score", "A_r5", "I_r5")}, "profile": val["profile"]}


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
         "device_count": jax.device_count(), "machine": machine()}
  if busy_warning(out["machine"]):
    print(busy_warning(out["machine"]), flush=True)
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
  if FLAGS.warm_run:  # the edited step's cost depends on the tries the weights need
    g = wd.load_generator(FLAGS.config, FLAGS.workdir) if FLAGS.workdir else None
    out["warm"] = {kind: time_step(FLAGS.config, kind, FLAGS.steps, g, FLAGS.warm_run)
                   for kind in ("regular", "negatives_edited")}
    out["warm"]["edited_over_regular"] = (out["warm"]["negatives_edited"]["step_time_s"]
                                          / out["warm"]["regular"]["step_time_s"])
    print("warm", json.dumps(out["warm"]), flush=True)
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
      trained = trained_run_rates(FLAGS.workdir, kind)
      if trained:  # the workdir's own run: its later epochs against the step alone
        out["train"][kind]["trained_run"] = {
            **trained, "step_alone_over_later": alone / trained["later_steps_per_s"]}
      print("train", kind, json.dumps(out["train"][kind]), flush=True)
  if FLAGS.scaling:
    out["scaling"] = {"recall": recall_scaling([int(n) for n in FLAGS.scaling_pairs]),
                      "step_s_per_sample": step_scaling(
        FLAGS.config, FLAGS.steps)}
    if FLAGS.workdir:
      out["scaling"]["build"] = build_scaling(FLAGS.config, FLAGS.workdir)
    print("scaling", json.dumps(out["scaling"]), flush=True)
  out["machine_after"] = machine()
  if busy_warning(out["machine_after"]):
    print(busy_warning(out["machine_after"]), flush=True)
  jsonio.write_json(os.path.abspath(FLAGS.out), out)
  print(json.dumps({k: v for k, v in out.items() if not isinstance(v, dict)}), flush=True)


if __name__ == "__main__":
  app.run(main)
