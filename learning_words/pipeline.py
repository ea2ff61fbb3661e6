"""The pipeline's stages, each cached in the workdir; `run_pipeline` runs them in order.

A finished stage (its output exists) is skipped; each run's wall time is recorded in
WORKDIR/pipeline_times.json for the report.
"""
import json
import os
import time

from absl import logging

from learning_words import gan_train
from learning_words.datasets import clevr_scenes, official

# In order. Stages without a function here are still to come (see README "Status").
STAGES = ("render", "train_gan", "train_segmenter", "build_data", "train", "eval", "report")


def data_dir(workdir: str) -> str:
  return os.path.join(workdir, "data")


def scenes_dir(config, workdir: str) -> str:
  """Folder of the rendered scene dataset for this config."""
  return clevr_scenes.make_builder(config, data_dir(workdir)).data_dir


def generator_dir(workdir: str) -> str:
  """The EMA generator written by train_gan."""
  return os.path.join(workdir, "gan", "generator_ema")


def render(config, workdir: str) -> str:
  """Renders the scene dataset (clevr_scenes) for the GAN and the segmenter; returns its folder."""
  builder = clevr_scenes.make_builder(config, data_dir(workdir))
  builder.download_and_prepare()
  return builder.data_dir


def train_gan(config, workdir: str) -> str:
  """Trains (or resumes) the generator on the renders; returns the EMA generator's folder."""
  return gan_train.train_gan(config, workdir, scenes_dir(config, workdir))


def build_data(config, workdir: str) -> str:
  """Builds the image / spoken-caption dataset; returns its folder."""
  if config.data.source == "official":
    return official.prepare(config, data_dir(workdir)).data_dir
  if config.data.source == "synthetic":
    raise NotImplementedError(
        "the synthetic Audio CLEVRGAN needs the trained generator and segmenter (still to come); "
        "use --config.data.source=official with --config.data.official_dir=DIR meanwhile")
  raise ValueError(f"--config.data.source must be 'synthetic' or 'official', got "
                   f"{config.data.source!r}")


def is_done(stage: str, config, workdir: str) -> bool:
  """Whether a stage's output already exists in the workdir."""
  if stage == "render":
    return os.path.isfile(os.path.join(scenes_dir(config, workdir), "dataset_info.json"))
  if stage == "train_gan":
    return os.path.isdir(generator_dir(workdir))
  if stage == "build_data" and config.data.source == "official":
    builder = official.make_builder(config, data_dir(workdir))
    return os.path.isfile(os.path.join(builder.data_dir, "dataset_info.json"))
  return False


STAGE_FNS = {"render": render, "train_gan": train_gan, "build_data": build_data}


def available_stages(config) -> list[str]:
  """Stages that can run for this config, in order."""
  out = ["render", "train_gan"]
  if config.data.source == "official":
    out.append("build_data")
  return out


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
  """Runs every available stage in order, skipping finished ones; returns the stages still to come."""
  for stage in available_stages(config):
    if is_done(stage, config, workdir):
      print(f"[pipeline] {stage}: already done, skipping", flush=True)
      continue
    print(f"[pipeline] {stage}: running", flush=True)
    run_stage(stage, config, workdir)
  todo = [s for s in STAGES if s not in available_stages(config)]
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
