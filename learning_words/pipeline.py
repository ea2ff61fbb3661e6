"""The pipeline's stages, each cached in the workdir; `run_pipeline` runs them in order.

A finished stage (its output exists) is skipped; each run's wall time is recorded in
WORKDIR/pipeline_times.json for the report.
"""
import json
import os
import time

from absl import logging

from learning_words import build_data as build_data_lib, gan_train, segmenter_train
from learning_words import train as train_lib
from learning_words.datasets import clevr_scenes, official

# In order. Stages without a function here are still to come (see README "Status").
STAGES = ("render", "train_gan", "train_segmenter", "build_data", "train", "eval", "report")


def data_dir(workdir: str) -> str:
  return os.path.join(workdir, "data")


def scenes_dir(config, workdir: str) -> str:
  """Folder of the rendered scene dataset for this config."""
  return clevr_scenes.make_builder(config, data_dir(workdir)).data_dir


def generator_dir(config, workdir: str) -> str | None:
  """The generator the later stages use: the shipped one unless `gan.retrain`, else the workdir's."""
  shipped = gan_train.shipped_dir(config)
  if not config.gan.retrain and os.path.isdir(shipped):
    return shipped
  trained = os.path.join(workdir, "gan", "generator_ema")
  return trained if os.path.isdir(trained) else None


def render(config, workdir: str) -> str:
  """Renders the scene dataset (clevr_scenes) for the GAN and the segmenter; returns its folder."""
  builder = clevr_scenes.make_builder(config, data_dir(workdir))
  builder.download_and_prepare()
  return builder.data_dir


def train_gan(config, workdir: str) -> str:
  """Trains (or resumes) the generator on the renders; returns the EMA generator's folder."""
  return gan_train.train_gan(config, workdir, scenes_dir(config, workdir))


def segmenter_dir(workdir: str) -> str:
  """The segmenter weights written by train_segmenter."""
  return os.path.join(workdir, "segmenter", "weights")


def train_segmenter(config, workdir: str) -> str:
  """Trains (or resumes) the attribute segmenter on the renders; returns its weights folder."""
  return segmenter_train.train_segmenter(config, workdir, scenes_dir(config, workdir))


def build_data(config, workdir: str) -> str:
  """Builds the image / spoken-caption dataset (and, for the synthetic world, its report)."""
  if config.data.source == "official":
    return official.prepare(config, data_dir(workdir)).data_dir
  if config.data.source != "synthetic":
    raise ValueError(f"--config.data.source must be 'synthetic' or 'official', got "
                     f"{config.data.source!r}")
  g_dir, seg_dir = generator_dir(config, workdir), segmenter_dir(workdir)
  if g_dir is None or not os.path.isdir(seg_dir):
    raise FileNotFoundError("build_data needs a generator and a segmenter: run --mode=train_gan "
                            "and --mode=train_segmenter first (or --mode=pipeline)")
  g = gan_train.load_generator(g_dir, config.gan.sizes)
  seg = segmenter_train.load_segmenter(seg_dir, config)
  return build_data_lib.build_synthetic(config, data_dir(workdir), scenes_dir(config, workdir), g, seg)


def dataset_dir(config, workdir: str) -> str | None:
  """Folder of the image / spoken-caption dataset this config trains on (None if not built)."""
  if config.data.source == "official":
    folder = official.make_builder(config, data_dir(workdir)).data_dir
    return folder if os.path.isfile(os.path.join(folder, "dataset_info.json")) else None
  g_dir, seg_dir = generator_dir(config, workdir), segmenter_dir(workdir)
  if g_dir is None or not os.path.isdir(seg_dir):
    return None
  g = gan_train.load_generator(g_dir, config.gan.sizes)
  seg = segmenter_train.load_segmenter(seg_dir, config)
  folder = build_data_lib.make_builder(config, data_dir(workdir), g, seg).data_dir
  return folder if os.path.isfile(os.path.join(folder, "dataset_info.json")) else None


def load_frozen_generator(config, workdir: str):
  """The generator that draws positives and negatives (shipped, or trained in the workdir)."""
  g_dir = generator_dir(config, workdir)
  if g_dir is None:
    raise FileNotFoundError("no generator: run --mode=train_gan (or --mode=pipeline "
                            "--config.gan.retrain=True) first")
  return gan_train.load_generator(g_dir, config.gan.sizes)


def train(config, workdir: str) -> dict:
  """Trains the encoders with `config.loss.kind` in WORKDIR/runs/<name>; returns validation recall."""
  folder = dataset_dir(config, workdir)
  if folder is None:
    raise FileNotFoundError("no image / spoken-caption dataset: run --mode=build_data first")
  return train_lib.train_loop(config, train_lib.run_dir_of(config, workdir), folder,
                              load_frozen_generator(config, workdir))


def evaluate(config, workdir: str) -> dict:
  """Evaluates the run named by --config.train.name, else every run under WORKDIR/runs, from its
  best (or latest: --config.evals.checkpoint=latest) checkpoint; writes WORKDIR/runs/<run>/eval/."""
  # Imported here: the evaluators build on this module's loaders (dataset_dir, generator_dir).
  from learning_words import evaluators  # pylint: disable=g-import-not-at-top
  runs = [config.train.name] if config.train.name else evaluators.list_runs(workdir)
  if not runs:
    raise FileNotFoundError(f"no runs with checkpoints under {workdir}/runs: "
                            "run --mode=train first")
  return evaluators.evaluate_runs(config, workdir, runs)


def report(config, workdir: str) -> str:
  """Writes WORKDIR/report/ (report.md, results.json, PNG figures) comparing every run with
  checkpoints; returns the folder."""
  from learning_words import report as report_lib  # pylint: disable=g-import-not-at-top
  return report_lib.write_report(config, workdir)


def is_done(stage: str, config, workdir: str) -> bool:
  """Whether a stage's output already exists in the workdir (or, for the GAN, is shipped)."""
  if stage == "render":
    return os.path.isfile(os.path.join(scenes_dir(config, workdir), "dataset_info.json"))
  if stage == "train_gan":
    return generator_dir(config, workdir) is not None
  if stage == "train_segmenter":
    return os.path.isdir(segmenter_dir(workdir))
  if stage == "build_data":
    return dataset_dir(config, workdir) is not None
  return False


STAGE_FNS = {"render": render, "train_gan": train_gan, "train_segmenter": train_segmenter,
             "build_data": build_data, "train": train, "eval": evaluate,
             "report": report}


# Modes that are not pipeline stages.
TOOL_FNS = {"ship_gan": gan_train.ship_generator}


def available_stages(config) -> list[str]:
  """Stages that can run for this config, in order."""
  del config
  return ["render", "train_gan", "train_segmenter", "build_data"]


def run_stage(stage: str, config, workdir: str):
  """Runs one stage and records its wall time."""
  start = time.time()
  logging.info("stage %s: starting", stage)
  result = STAGE_FNS[stage](config, workdir)
  seconds = time.time() - start
  logging.info("stage %s: done in %.1f s -> %s", stage, seconds, result)
  _record_time(workdir, stage, seconds)
  return result


def run_pipeline(config, workdir: str) -> list[str]:
  """Runs every available stage in order, skipping finished ones; returns the stages not run."""
  todo = [s for s in STAGES if s not in available_stages(config)]
  for i, stage in enumerate(available_stages(config)):
    if is_done(stage, config, workdir):
      print(f"[pipeline] {stage}: already done, skipping", flush=True)
      continue
    if stage == "train_gan" and not config.gan.retrain:
      print(f"[pipeline] train_gan: no shipped generator at {gan_train.shipped_dir(config)} and "
            "none trained in the workdir. Training one takes hours on a CPU: run again with "
            "--config.gan.retrain=True (resumable) or --mode=train_gan. Stopping here.", flush=True)
      skipped = available_stages(config)[i:]
      print(f"[pipeline] not run: {', '.join(skipped)}; still to come (not implemented yet): "
            f"{', '.join(todo)}", flush=True)
      return skipped + todo
    print(f"[pipeline] {stage}: running", flush=True)
    run_stage(stage, config, workdir)
  print(f"[pipeline] stages still to come (not implemented yet): {', '.join(todo)}", flush=True)
  return todo


def _record_time(workdir: str, stage: str, seconds: float):
  path = os.path.join(workdir, "pipeline_times.json")
  times = {}
  if os.path.isfile(path):
    with open(path) as f:
      times = json.load(f)
  times[stage] = round(seconds, 3)
  os.makedirs(workdir, exist_ok=True)
  with open(path, "w") as f:
    json.dump(times, f, indent=1)
