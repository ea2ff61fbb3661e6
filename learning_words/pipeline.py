"""The pipeline's stages, each cached in the workdir; `run_pipeline` runs them in order.

A finished stage (its output exists) is skipped; each run's wall time is recorded in
WORKDIR/pipeline_times.json for the report.
"""
import json
import os
import time

from absl import logging

from learning_words import assets, build_data as build_data_lib, gan_train, segmenter_train
from learning_words import train as train_lib
from learning_words.datasets import clevr_scenes, official

# In order.
STAGES = ("render", "train_gan", "train_segmenter", "build_data", "train", "eval", "report")


def data_dir(workdir: str) -> str:
  return os.path.join(workdir, "data")


def scenes_dir(config, workdir: str) -> str:
  """Folder of the rendered scene dataset for this config."""
  return clevr_scenes.make_builder(config, data_dir(workdir)).data_dir


def generator_dir(config, workdir: str) -> str | None:
  """The generator the later stages use: the shipped one unless `gan.retrain`, else the workdir's."""
  return _weights_dir("generator", config.gan.retrain, config,
                      os.path.join(workdir, "gan", "generator_ema"))


def segmenter_dir(config, workdir: str) -> str | None:
  """The segmenter the later stages use: the shipped one unless `segmenter.retrain`, else the
  workdir's."""
  return _weights_dir("segmenter", config.segmenter.retrain, config,
                      os.path.join(workdir, "segmenter", "weights"))


def _weights_dir(kind: str, retrain: bool, config, trained: str) -> str | None:
  shipped = assets.shipped_dir(kind, config)
  if not retrain and os.path.isdir(shipped):
    return shipped
  return trained if os.path.isdir(trained) else None


def render(config, workdir: str) -> str:
  """Renders the scene dataset (clevr_scenes) for the GAN and the segmenter; returns its folder."""
  builder = clevr_scenes.make_builder(config, data_dir(workdir))
  builder.download_and_prepare()
  return builder.data_dir


def train_gan(config, workdir: str) -> str:
  """Trains (or resumes) the generator on the renders; returns the EMA generator's folder."""
  return gan_train.train_gan(config, workdir, scenes_dir(config, workdir))


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
  g_dir, seg_dir = generator_dir(config, workdir), segmenter_dir(config, workdir)
  if g_dir is None or seg_dir is None:
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
  g_dir, seg_dir = generator_dir(config, workdir), segmenter_dir(config, workdir)
  if g_dir is None or seg_dir is None:
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
  """Trains one run per loss kind in `config.train.kinds` (default: `config.loss.kind`) with the
  same seed and budget, each in WORKDIR/runs/<kind> (or <train.name>); returns validation recall
  per run."""
  folder = dataset_dir(config, workdir)
  if folder is None:
    raise FileNotFoundError("no image / spoken-caption dataset: run --mode=build_data first")
  g = load_frozen_generator(config, workdir)
  results = {}
  for c in run_configs(config):
    print(f"[pipeline] train: run {train_lib.run_dir_of(c, workdir)}", flush=True)
    results[c.train.name or c.loss.kind] = train_lib.train_loop(
        c, train_lib.run_dir_of(c, workdir), folder, g)
  return results


def run_configs(config) -> list:
  """The config of each run the train stage makes: one per loss kind of `train.kinds`."""
  kinds = tuple(config.train.kinds) or (config.loss.kind,)
  out = []
  for kind in kinds:
    c = config.copy_and_resolve_references()
    c.loss.kind = kind
    if len(kinds) > 1:
      c.train.name = kind
    out.append(c)
  return out


def evaluate(config, workdir: str) -> dict:
  """Evaluates the train stage's runs (`train.kinds` or `train.name`), else every run under
  WORKDIR/runs, from its best (or latest: --config.evals.checkpoint=latest) checkpoint; writes WORKDIR/runs/<run>/eval/."""
  # Imported here: the evaluators build on this module's loaders (dataset_dir, generator_dir).
  from learning_words import evaluators  # pylint: disable=g-import-not-at-top
  if config.train.kinds or config.train.name:
    runs = [c.train.name or c.loss.kind for c in run_configs(config)]
  else:
    runs = evaluators.list_runs(workdir)
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
    return segmenter_dir(config, workdir) is not None
  if stage == "build_data":
    return dataset_dir(config, workdir) is not None
  return False


STAGE_FNS = {"render": render, "train_gan": train_gan, "train_segmenter": train_segmenter,
             "build_data": build_data, "train": train, "eval": evaluate,
             "report": report}


# Modes that are not pipeline stages.
TOOL_FNS = {"ship_gan": gan_train.ship_generator, "ship_segmenter": segmenter_train.ship_segmenter}


def available_stages(config) -> list[str]:
  """Stages that can run for this config, in order."""
  del config
  return list(STAGES)


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
  """Runs every stage in order, skipping finished ones; returns the stages not run (empty unless
  it stops at train_gan for want of a generator)."""
  stages = available_stages(config)
  for i, stage in enumerate(stages):
    if is_done(stage, config, workdir):
      print(f"[pipeline] {stage}: already done, skipping", flush=True)
      continue
    if stage == "train_gan" and not config.gan.retrain:
      print(f"[pipeline] train_gan: no shipped generator at {assets.shipped_dir('generator', config)} "
            "and none trained in the workdir. Training one takes hours on a CPU: run again with "
            "--config.gan.retrain=True (resumable) or --mode=train_gan. Stopping here; not run: "
            f"{', '.join(stages[i:])}", flush=True)
      return stages[i:]
    print(f"[pipeline] {stage}: running", flush=True)
    run_stage(stage, config, workdir)
  print(f"[pipeline] done; times per stage in {os.path.join(workdir, 'pipeline_times.json')}",
        flush=True)
  return []


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
