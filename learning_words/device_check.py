"""One prepared accelerator run: step timings with utilisation, and short training with the real
loader, written to OUT/device_check.json and OUT/device_check.md (results are added as they come,
so a run cut short keeps what it measured).

  bash launch/device_check.sh OUT [--peak_tflops=X]
  python -m learning_words.device_check --config=configs/paper.py --out=OUT [--train_steps=300]

1. The paper preset's `regular` and `negatives_edited` train steps (training's own jitted step,
   random weights, no data needed) at --batches in each of --dtypes (model.dtype): step time,
   samples/s and utilisation, the analytic FLOP count's rate over the device's peak for that dtype
   (PEAK_TFLOPS by device name, or --peak_tflops); then recall at 500 to 5,000 pairs at the
   paper's shapes (time, peak memory, the fitted exponent).
2. --train_steps steps of quickstart training in --workdir (its dataset is built first if missing)
   with the real loader, in each dtype: steps/s end to end beside the step alone (the loader's
   share of the time), where the time went (the training profile), and the validation numbers
   after the same training.
--skip_timings runs every part once at the smallest size (one timed step, no training) with the
given --config: the suite runs it on the CPU with the tiny preset so that it cannot rot.
"""
import json
import os

import jax
from absl import app, flags
from ml_collections import config_flags

from learning_words import benchmark, pipeline, workdir as wd
from learning_words.common import jsonio, stopwatch

# --config (the preset whose steps are timed), --out (here: a folder), --steps, --workdir and
# --train_steps are the benchmark's flags; launch/device_check.sh passes the paper preset.
config_flags.DEFINE_config_file("train_config", "configs/quickstart.py",
                                "The preset trained with the real loader.", lock_config=True)
flags.DEFINE_list("batches", ["8", "32", "128"], "Global batch sizes of the step timings.")
flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "model.dtype values to compare.")
flags.DEFINE_float("peak_tflops", 0.0, "The device's peak TFLOP/s (0: looked up by name).")
flags.DEFINE_bool("skip_timings", False, "One step per part and no training (the suite's run).")
FLAGS = flags.FLAGS

# Dense peaks in TFLOP/s by device kind: (float32 as JAX runs it by default, i.e. TF32 tensor
# cores on NVIDIA GPUs; bfloat16). From the vendors' data sheets (SXM parts for NVIDIA).
PEAK_TFLOPS = {"H200": (494.5, 989.4), "H100": (494.5, 989.4), "A100": (156.0, 312.0),
               "L4": (60.0, 121.0), "TPU v4": (275.0, 275.0), "TPU v5 lite": (197.0, 197.0),
               "TPU v5p": (459.0, 459.0), "TPU v6 lite": (918.0, 918.0)}


def peak_tflops(kind: str, dtype: str, given: float = 0.0) -> float | None:
  """The device's peak for dtype: `given` if set, else PEAK_TFLOPS's entry whose name the device
  kind contains (None when unknown)."""
  if given > 0:
    return given
  for name, (f32, bf16) in PEAK_TFLOPS.items():
    if name.lower() in kind.lower():
      return bf16 if dtype == "bfloat16" else f32
  return None


def markdown(result: dict) -> list[str]:
  """The tables of device_check.md."""
  lines = [f"# Device check: {result['device']} ({result['device_count']} devices, JAX "
           f"{result['jax']})", "", "## Train steps", "",
           "| batch | dtype | kind | step (ms) | samples/s | analytic TFLOP/s | utilisation |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
  for row in result["steps"]:
    util = "–" if row["utilisation"] is None else f"{row['utilisation']:.1%}"
    lines.append(f"| {row['batch']} | {row['dtype']} | {row['kind']} | "
                 f"{1e3 * row['step_time_s']:.1f} | {row['samples_per_s']:.0f} | "
                 f"{row['analytic_flops_per_s'] / 1e12:.2f} | {util} |")
  if result.get("recall"):
    lines += ["", "## Recall at the paper's shapes", "",
              "| pairs | seconds | peak memory (MB) |", "| --- | --- | --- |"]
    lines += [f"| {n} | {v['seconds']:.2f} | {v['peak_rss_mb']:.0f} |"
              for n, v in result["recall"]["pairs"].items()]
    lines += ["", f"Time grows as pairs ** {result['recall']['time_exponent']:.2f}."]
  if result["training"]:
    lines += ["", "## Training with the real loader", "",
              "| dtype | kind | steps/s | step alone (steps/s) | loader's share | validation "
              "score | A_r5 | I_r5 |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in result["training"]:
      lines.append(f"| {row['dtype']} | {row['kind']} | {row['steps_per_s']:.2f} | "
                   f"{row['step_alone_steps_per_s']:.2f} | {row['loader_share']:.1%} | "
                   f"{row['score']:.4f} | {row['A_r5']:.4f} | {row['I_r5']:.4f} |")
    lines += ["", "Where each short training's time went (seconds): "
              + "; ".join(f"{row['dtype']} {row['kind']}: "
                          + stopwatch.describe({k: v for k, v in row["profile"].items()
                                                if k != "steps"})
                          for row in result["training"] if "profile" in row)]
  return lines + [""]


def main(argv):
  del argv
  os.makedirs(FLAGS.out, exist_ok=True)
  kind = jax.devices()[0].device_kind
  result = {"device": kind, "device_count": jax.device_count(), "jax": jax.__version__,
            "machine": benchmark.machine(), "steps": [], "training": []}
  batches = [int(b) for b in FLAGS.batches][:1 if FLAGS.skip_timings else None]
  steps = 1 if FLAGS.skip_timings else FLAGS.steps

  def save():
    jsonio.write_json(os.path.join(FLAGS.out, "device_check.json"), result)
    with open(os.path.join(FLAGS.out, "device_check.md"), "w") as f:
      f.write("\n".join(markdown(result)))

  for dtype in FLAGS.dtypes:
    for batch in batches:
      c = FLAGS.config.copy_and_resolve_references()
      c.data.batch_size, c.model.dtype = batch, dtype
      for loss in ("regular", "negatives_edited"):
        t = benchmark.time_step(c, loss, steps)
        peak = peak_tflops(kind, dtype, FLAGS.peak_tflops)
        result["steps"].append({
            "batch": batch, "dtype": dtype, "kind": loss, **t, "peak_tflops": peak,
            "utilisation": None if peak is None else t["analytic_flops_per_s"] / (peak * 1e12)})
        print("step", json.dumps(result["steps"][-1]), flush=True)
        save()
  if not FLAGS.skip_timings:
    result["recall"] = benchmark.recall_scaling()  # 500 to 5,000 pairs at the paper's shapes
    print("recall", json.dumps(result["recall"]), flush=True)
    save()
    workdir = FLAGS.workdir or os.path.join(FLAGS.out, "workdir")
    base = FLAGS.train_config
    if wd.dataset_dir(base, workdir) is None:
      for stage in ("render", "build_data"):
        pipeline.run_stage(stage, base, workdir)
    data_dir = wd.require_dataset(base, workdir)
    for dtype in FLAGS.dtypes:
      c = base.copy_and_resolve_references()
      c.model.dtype = dtype
      for loss in ("regular", "negatives_edited"):
        alone = 1.0 / benchmark.time_step(c, loss, FLAGS.steps)["step_time_s"]
        got = benchmark.time_training(c, workdir, data_dir, loss, FLAGS.train_steps)
        result["training"].append({"dtype": dtype, "kind": loss, **got,
                                   "step_alone_steps_per_s": alone,
                                   "loader_share": 1.0 - got["steps_per_s"] / alone})
        print("training", json.dumps(result["training"][-1]), flush=True)
        save()
  save()
  print("\n".join(markdown(result)), flush=True)


if __name__ == "__main__":
  app.run(main)
