"""The method's stages in order, each cached in the workdir, and the modes that run them.

  render -> train_gan -> train_segmenter -> invert -> build_data -> train -> eval -> report

STAGES maps a name to (run, existing): run(config, workdir) does the stage's work; existing gives
its output when that already exists (the shipped generator counts), so `run_pipeline` skips it
(render, train_gan, train_segmenter, invert and build_data are cached; invert only runs for
the inverted worlds of the ladder; train resumes from its
checkpoints, eval and report always run). Each
stage's wall time goes to WORKDIR/pipeline_times.json for the report. TOOLS are modes that are not
stages (shipping trained weights into the package; converting the reference's PyTorch files).
"""
import os
import time
from typing import Callable, NamedTuple

import jax
from etils import epath

from learning_words import experiment, workdir as wd
from learning_words.common import assets, checkpoints, console, errors, files, jsonio, stopwatch
from learning_words.convert import (agreement, reference_encoders as ref_enc,
                                    reference_generator as ref_gen)
from learning_words.data import clevr_scenes, input_pipeline, official
from learning_words.evaluation import report as report_lib, runner, trained_run
from learning_words.learner import losses, train as train_lib
from learning_words.models import generator as gen_lib
from learning_words.world import (build_data as build_data_lib, invert as invert_lib, scenes,
                                  train_gan as gan_lib, train_segmenter as seg_lib)


def render(config, workdir: str) -> str:
  """Renders the scene dataset (clevr_scenes) for the GAN and the segmenter, or only its val split
  when both are at hand (wd.scenes_val_only); returns its folder."""
  builder = clevr_scenes.make_builder(config, wd.data_root(workdir), render=scenes.render_scenes,
                                      val_only=wd.scenes_val_only(config, workdir))
  builder.download_and_prepare()
  _publish(workdir, builder.data_dir)
  return builder.data_dir


def _publish(workdir: str, folder: str):
  """A dataset just built in the local mirror of a gs:// workdir goes up to the bucket."""
  if jax.process_index() == 0:
    wd.publish(workdir, folder)


def train_gan(config, workdir: str) -> str:
  """Trains (or resumes) the generator on the renders; returns the EMA generator's folder."""
  return gan_lib.train_gan(config, wd.path(workdir, "gan"), wd.scenes_dir(config, workdir))


def train_segmenter(config, workdir: str) -> str:
  """Trains (or resumes) the attribute segmenter on the renders; returns its weights folder."""
  return seg_lib.train_segmenter(config, wd.path(workdir, "segmenter"),
                                 wd.scenes_dir(config, workdir))


def invert(config, workdir: str) -> str:
  """Finds the latents of the renders the inverted worlds draw (world/invert.py)."""
  folder = wd.latents_dir(config, workdir)
  if folder is None:
    raise errors.MissingError("invert needs a generator: run --mode=train_gan first")
  return invert_lib.invert_renders(config, folder, wd.load_generator(config, workdir),
                                   wd.inverter_dir(config, workdir))


def _latents_done(config, workdir) -> str | None:
  if config.world.pairs not in wd.INVERTED or wd.data_source(config) == "official":
    return f"not needed by --config.world.pairs={config.world.pairs}"
  folder = wd.latents_dir(config, workdir)
  return folder if folder and (epath.Path(folder) / "latents.npy").is_file() else None


def build_data(config, workdir: str) -> str:
  """Builds the image / spoken-caption dataset (and, for the synthetic world, its report; for
  the official data with the official generator, their agreement check)."""
  if wd.data_source(config) == "official":
    folder = official.prepare(config, wd.data_root(workdir)).data_dir
    _publish(workdir, folder)
    if config.gan.official_weights:
      check_agreement(config, workdir, folder)
    return folder
  fingerprint = wd.weights_fingerprint(config, workdir)
  if fingerprint is None:
    raise errors.MissingError("build_data needs a generator and a segmenter: run "
                              "--mode=train_gan and --mode=train_segmenter first "
                              "(or --mode=pipeline)")
  folder = build_data_lib.build_synthetic(
      config, wd.data_root(workdir), wd.path(workdir, "data"), wd.scenes_dir(config, workdir),
      wd.load_generator(config, workdir), wd.load_segmenter(config, workdir), fingerprint,
      wd.load_latents(config, workdir))
  _publish(workdir, folder)
  return folder


def _agreement_file(workdir: str) -> str:
  return wd.path(workdir, "data", "generator_agreement.json")


def check_agreement(config, workdir: str, data_dir: str) -> dict:
  """The converted official generator against the official images (convert/agreement.py);
  written to WORKDIR/data/generator_agreement.json when they agree, else an InputError."""
  n = int(config.gan.agreement_ids)
  first = input_pipeline.load_eval_arrays(data_dir, "train", int(config.data.eval_frames), n)
  result = agreement.check(wd.load_generator(config, workdir), first["image"],
                           first["z_index"], float(config.gan.agreement_min_gain))
  console.say(f"[build_data] generator and data agree: mean PSNR {result['psnr']:.1f} dB over "
              f"the first {result['n']} train ids, {result['gain']:+.1f} dB over mismatched ids")
  jsonio.write_json(_agreement_file(workdir), {**result, "generator": _generator_print(workdir)})
  return result


def _generator_print(workdir: str) -> str:
  return checkpoints.fingerprint_folders(wd.official_generator_dir(workdir))


def _data_built(config, workdir) -> str | None:
  folder = wd.dataset_dir(config, workdir)
  if folder and wd.data_source(config) == "official" and config.gan.official_weights:
    checked = jsonio.read_json(_agreement_file(workdir))  # {} when never checked
    return folder if checked.get("generator") == _generator_print(workdir) else None
  return folder


NEEDS_NO_GENERATOR = ("render", "train_segmenter", "build_data", "convert", "ship_segmenter")


def prepare_official_generator(config, workdir: str, mode: str = "pipeline"):
  """With --config.gan.official_weights: converts the file (once; again when the file changed)
  into WORKDIR/gan/official and sets config.gan.sizes to its widths, so every stage builds the
  generator the file holds. On the official data every mode that draws images needs it."""
  if not config.gan.official_weights:
    if wd.data_source(config) == "official" and mode not in NEEDS_NO_GENERATOR:
      raise errors.ConfigError(
          "--config.data.source=official needs --config.gan.official_weights=generator.pth: the "
          "official images are that generator's G(z_i), and every stage that redraws positives "
          "or draws negatives must use it (see docs/official_data.md)")
    return
  folder = wd.official_generator_dir(workdir)
  if not ref_gen.converted_from(folder, config.gan.official_weights):
    console.say(f"[convert] {config.gan.official_weights} -> {folder}")
    ref_gen.convert(config.gan.official_weights, folder)
  sizes = ref_gen.read_sizes(folder)
  layers = gen_lib.layer_names(sizes)
  if config.gan.intervention_layer not in layers:
    raise errors.ConfigError(f"--config.gan.intervention_layer={config.gan.intervention_layer} is "
                             f"not a layer of {config.gan.official_weights} ({', '.join(layers)})")
  res = gen_lib.resolution_of(sizes)
  if wd.data_source(config) == "official" and res != int(config.data.image_size):
    raise errors.ConfigError(f"{config.gan.official_weights} draws {res} px images; set "
                             f"--config.data.image_size={res} (now {config.data.image_size})")
  config.gan.sizes = tuple(sizes)


def convert(config, workdir: str) -> dict:
  """`--mode=convert`: the official generator (gan.official_weights) and / or a trained
  reference model (convert.model_file, into WORKDIR/runs/<convert.run>)."""
  if not config.gan.official_weights and not config.convert.model_file:
    raise errors.ConfigError("--mode=convert needs --config.gan.official_weights=generator.pth "
                             "and / or --config.convert.model_file=model_best_<name>.pth.tar")
  out = {}
  if config.gan.official_weights:
    out["generator"] = {"folder": wd.official_generator_dir(workdir),
                        "sizes": list(config.gan.sizes)}
  if config.convert.model_file:
    run_dir = wd.path(workdir, "runs", config.convert.run)
    saved = ref_enc.convert(config.convert.model_file, config, run_dir,
                            lambda d: train_lib.make_checkpoint_manager(
                                d, int(config.train.keep_checkpoints)))
    trained_run.write_run_config(run_dir, config)
    out["model"] = {"run": config.convert.run, "folder": run_dir, **saved}
  return out


def run_configs(config) -> list:
  """The config of each run the train stage makes, in order: the reproduce experiment's warm-ups
  and arms (experiment.run_configs) when `experiment.seeds` is set, else one per loss kind of
  `train.kinds` (default: `loss.kind`), named after its kind when there are several."""
  if experiment.enabled(config):
    return [c for _, c, _ in experiment.run_configs(config)]
  kinds = tuple(config.train.kinds) or (config.loss.kind,)
  for kind in kinds:
    if kind not in losses.LOSS_KINDS:
      raise errors.ConfigError(
          f"--config.train.kinds: unknown loss kind {kind!r}; allowed: "
          f"{', '.join(losses.LOSS_KINDS)} (quote each name: \"--config.train.kinds=('regular',"
          f"'negatives_edited')\")")
  out = []
  for kind in kinds:
    c = config.copy_and_resolve_references()
    c.loss.kind = kind
    if len(kinds) > 1:
      c.train.name = kind
    out.append(c)
  return out


def run_name(config) -> str:
  return config.train.name or config.loss.kind


def train(config, workdir: str) -> dict:
  """Trains each run of run_configs with the same seed and budget in WORKDIR/runs/<run>; returns
  the last validation recall per run."""
  folder = wd.require_dataset(config, workdir)
  g = wd.load_generator(config, workdir)
  latents = wd.load_latents(config, workdir)
  segmenter = wd.load_segmenter(config, workdir, required=False)
  results = {}
  for c in run_configs(config):
    name = run_name(c)
    console.say(f"[train] run {name} in {wd.path(workdir, 'runs', name)}")
    if jax.process_index() == 0:
      trained_run.write_run_config(wd.path(workdir, "runs", name), c)
    results[name] = train_lib.train_loop(c, wd.path(workdir, "runs", name), folder, g,
                                         latents=latents, segmenter=segmenter)
    r = results[name]
    if r.get("profile", {}).get("steps") and jax.process_index() == 0:  # where the time went
      path = wd.path(workdir, "pipeline_times.json")
      times = jsonio.read_json(path)
      jsonio.write_json(path, {**times, "train_runs": {**times.get("train_runs", {}),
                                                       name: r["profile"]}})
      console.say(f"[train] run {name}: {r['profile']['steps']} steps; "
                  f"{stopwatch.describe({k: v for k, v in r['profile'].items() if k != 'steps'})}")
    where = (f", captions peak on objects {r['peak_object']:.3f}" if "peak_object" in r else "")
    loss = "" if r["loss"] is None else f"; last logged loss {r['loss']:.3f}"
    console.say(f"[train] run {name}: validation score {r['score']:.4f} (chance "
                f"{r['chance_score']:.4f}; A_r5 {r['A_r5']:.4f}, I_r5 {r['I_r5']:.4f}{where}, on "
                f"the border {r['peak_border']:.3f}){loss} (chance {r['chance_loss']:.3f}: every "
                "pair scored alike)")
  input_pipeline.release_log_mels()  # the runs' shared log-mels; evaluation needs the memory
  return results


def evaluate(config, workdir: str, reuse: bool = False) -> dict:
  """Evaluates the run `train.name`, or the train stage's runs (`train.kinds`), else every run under
  WORKDIR/runs, from its best (or latest: --config.evals.checkpoint=latest) checkpoint; or the
  checkpoint folder --config.evals.checkpoint=RUN/checkpoints/STEP (its results go to
  WORKDIR/runs/<RUN's name>/eval/). reuse (a rerun pipeline): runs already evaluated at the same
  checkpoint with the same evaluators keep their numbers."""
  given = wd.checkpoint_folder(config.evals.checkpoint)
  if given is not None:  # one checkpoint folder's path: its run, evaluated with this workdir's data
    runs = [os.path.basename(given[0])]
  elif config.train.name:  # one named run, whatever runs the preset trains
    runs = [config.train.name]
  elif experiment.enabled(config):  # the arms; the warm-ups are only their starting points
    runs = [name for name, _, warmup in experiment.run_configs(config) if not warmup]
  elif config.train.kinds:
    runs = [run_name(c) for c in run_configs(config)]
  else:
    runs = wd.list_runs(workdir)
  if not runs:
    raise errors.MissingError(f"no runs with checkpoints under {wd.path(workdir, 'runs')}: "
                              "run --mode=train first")
  return runner.evaluate_runs(config, workdir, runs, reuse=reuse)


def report(config, workdir: str) -> str:
  """Writes WORKDIR/report/ (report.md, results.json, PNG figures); returns report.md's path."""
  return report_lib.write_report(config, workdir)


class Stage(NamedTuple):
  run: Callable  # (config, workdir) -> its result
  existing: Callable  # (config, workdir) -> its output if already there (then skipped), or None


def _built(folder: str) -> str | None:
  return folder if (epath.Path(folder) / "dataset_info.json").is_file() else None


def _renders_done(config, workdir) -> str | None:
  """The renders' folder; on the official data, where only the segmenter trains on renders, a
  note once a segmenter is at hand (e.g. the shipped 128 px one): no renders are needed."""
  folder = _built(wd.scenes_dir(config, workdir))
  if folder is None and wd.data_source(config) == "official":
    seg = wd.segmenter_weights_dir(config, workdir)
    if seg is not None:
      return f"not needed: official data, and the segmenter is {seg}"
  return folder


def _always_runs(config, workdir) -> None:
  del config, workdir


def _weights_done(kind: str, find: Callable) -> Callable:
  """existing() of the generator or segmenter stage: why it does not run."""
  def existing(config, workdir) -> str | None:
    folder = find(config, workdir)
    if folder is None:
      return None
    if kind == "generator" and config.gan.official_weights:
      return f"not needed: the reference's generator, converted, is {folder}"
    if folder == assets.shipped_dir(kind, config):
      return f"not needed: the shipped {kind} is {folder}"
    return f"already done: {folder}"
  return existing


STAGES = {
    "render": Stage(render, _renders_done),
    "train_gan": Stage(train_gan, _weights_done("generator", wd.generator_dir)),
    "train_segmenter": Stage(train_segmenter, _weights_done("segmenter",
                                                            wd.segmenter_weights_dir)),
    "invert": Stage(invert, _latents_done),
    "build_data": Stage(build_data, _data_built),
    "train": Stage(train, _always_runs),
    "eval": Stage(evaluate, _always_runs),
    "report": Stage(report, _always_runs),
}

TOOLS = {
    "convert": convert,
    "ship_gan": lambda c, w: gan_lib.ship_generator(c, wd.path(w, "gan"),
                                                    wd.path(w, "data", "world_report.json")),
    "ship_segmenter": lambda c, w: seg_lib.ship_segmenter(c, wd.path(w, "segmenter"),
                                                          wd.path(w, "pipeline_times.json")),
    "ship_inverter": lambda c, w: invert_lib.ship_inverter(c, wd.inverter_dir(c, w)[1],
                                                           wd.generator_dir(c, w)),
}
MODES = ("pipeline", *STAGES, *TOOLS)


def run_stage(stage: str, config, workdir: str, **kwargs):
  """Runs one stage, says when it starts and ends, and records its wall time."""
  console.say(f"[{stage}] started")
  start = time.time()
  result = STAGES[stage].run(config, workdir, **kwargs)
  seconds = time.time() - start
  shown = f": {result}" if isinstance(result, str) else ""
  console.say(f"[{stage}] done in {seconds:.1f} s{shown}")
  path = wd.path(workdir, "pipeline_times.json")
  jsonio.write_json(path, {**jsonio.read_json(path), stage: round(seconds, 3)})
  return result


def run_pipeline(config, workdir: str) -> list[str]:
  """Runs every stage in order, skipping finished ones, then prints the results and where the
  report is; returns the stages not run (empty unless it stops at train_gan for want of a
  generator)."""
  start = time.time()
  names = list(STAGES)
  for i, stage in enumerate(names):
    existing = STAGES[stage].existing(config, workdir)
    if existing is not None:
      why = existing if existing.startswith(("not needed", "already done")) else (
          f"already done: {existing}")
      console.say(f"[{stage}] {why}, skipped")
      continue
    if stage == "train_gan" and not config.gan.retrain:
      console.say(f"[train_gan] no shipped generator at {assets.shipped_dir('generator', config)} "
                  "and none trained in the workdir. Training one takes hours on a CPU: run again "
                  "with --config.gan.retrain=True (resumable) or --mode=train_gan. Stopping here; "
                  f"not run: {', '.join(names[i:])}")
      return names[i:]
    run_stage(stage, config, workdir, **({"reuse": True} if stage == "eval" else {}))
  console.say(f"[pipeline] done in {time.time() - start:.1f} s.")
  say_results(config, workdir, f"every number: {wd.path(workdir, 'report')}/results.json")
  console.say(f"Report: {wd.path(workdir, 'report', 'report.md')}")
  return []


def say_results(config, workdir: str, where: str, runs=None):
  """Prints the evaluators' tables of the runs (default: all), chance levels and notes
  included."""
  console.say(f"Results on the {config.evals.split} split ({where}):")
  for line in report_lib.results_tables(workdir, runs, config.evals.checkpoint):
    if line:
      console.say(line)


def run(mode: str, config, workdir: str):
  """Runs `mode`: the whole pipeline, one stage, or a tool (whose result is printed). A gs://
  workdir whose bucket stops answering ends in a StorageError (one line)."""
  try:
    return _run(mode, config, workdir)
  except errors.UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    error = files.storage_error(workdir, e)
    if error is None:
      raise
    raise error from e


def _run(mode: str, config, workdir: str):
  if mode in ("pipeline", "train"):
    run_configs(config)  # a bad run list fails before any work
  prepare_official_generator(config, workdir, mode)
  if mode == "pipeline":
    return run_pipeline(config, workdir)
  if mode in TOOLS:
    result = TOOLS[mode](config, workdir)
    for line in tool_lines(mode, result):
      console.say(line)
    return result
  result = run_stage(mode, config, workdir)
  if mode == "eval":
    say_results(config, workdir, "each run's numbers: "
                f"{wd.path(workdir, 'runs', '<run>', 'eval')}/<evaluator>.json", runs=list(result))
  elif mode == "report":
    say_results(config, workdir, f"every number: {wd.path(workdir, 'report')}/results.json")
  return result


def tool_lines(mode: str, result) -> list[str]:
  """What a tool made, one line each."""
  if mode != "convert":
    return [f"[{mode}] wrote {result}"]
  lines = []
  if "generator" in result:
    gen = result["generator"]
    lines.append(f"[convert] the reference's generator -> {gen['folder']} (widths "
                 f"{gen['sizes']}); the pipeline uses it with --config.gan.official_weights")
  if "model" in result:
    m = result["model"]
    extra = ", ".join(f"{k} {v}" for k, v in m.items() if k not in ("run", "folder"))
    lines.append(f"[convert] the reference's model -> run {m['run']} in {m['folder']}"
                 + (f" ({extra})" if extra else "") + f"; evaluate it with --mode=eval "
                 f"--config.train.name={m['run']}")
  return lines
