"""`--mode=eval`: the suite on runs' checkpoints, written to WORKDIR/runs/<run>/eval/.

Each run's encoders come from its Orbax checkpoint (the best by validation score, or the latest:
`config.evals.checkpoint` or `which`) and are evaluated on `config.evals.split`; the results go to
<evaluator>.json and eval.json (all of them) in the run's folder for that checkpoint
(workdir.eval_folder: eval/ for the best, eval_latest/ or eval_step<N>/ for another), so that a
later evaluation of the same checkpoint overwrites them and one of another never does. The dataset, generator and segmenter are
loaded once for all runs.
"""
import os

import jax
import jax.numpy as jnp
import ml_collections
from etils import epath

from learning_words import workdir as wd
from learning_words.common import console, jsonio, mesh as mesh_lib
from learning_words.data import input_pipeline
from learning_words.evaluation import context, suite, trained_run
from learning_words.models import generator as gen_lib


def make_context(config, models, g, data: dict, seg, cache_dir: str, latents=None,
                 scenes=None, fit=None) -> context.Context:
  """The evaluators' inputs: held-out pairs, the latent rows they use (the world's inverted
  latents, else the fixed z matrix), their ground-truth scenes if stored, and the models
  (switched to eval mode)."""
  rows = [data["z_index"]] + ([] if fit is None else [fit["z_index"]])
  z_table = jnp.asarray(gen_lib.latent_table(latents, 1 + max(int(r.max()) for r in rows),
                                             g.sizes[0]))
  models.eval()
  return context.Context(config=config, models=models, g=g, data=data, z_table=z_table, seg=seg,
                         cache_dir=cache_dir, scenes=scenes, fit=fit)


def with_run_model(config, run_dir: str):
  """config with the encoders' settings (`model`) the run was trained with, where its folder keeps
  them and they differ (a run trained with model overrides is evaluated as it was built)."""
  if not epath.Path(run_dir, trained_run.CONFIG_FILE).is_file():
    return config
  model = trained_run.read_run_config(run_dir).get("model")
  as_tuples = lambda d: {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
  if model is None or as_tuples(model.to_dict()) == as_tuples(config.model.to_dict()):
    return config
  out = config.copy_and_resolve_references()
  with out.unlocked():
    out.model = ml_collections.ConfigDict(as_tuples(model.to_dict()))
  console.say(f"[eval] {os.path.basename(run_dir)}: evaluated with the encoder settings it was "
              f"trained with ({os.path.join(run_dir, trained_run.CONFIG_FILE)}), not the preset's")
  return out


def load_fit_pairs(config, data_dir: str) -> dict:
  """The attribute probe's training pairs: the first evals.probe.fit_images of the train split,
  with their ground-truth scenes where the dataset stores them (else 'scenes' is None)."""
  fit = input_pipeline.load_eval_arrays(data_dir, "train", config.data.eval_frames,
                                        int(config.evals.probe.fit_images))
  return {**fit, "scenes": input_pipeline.load_scenes(data_dir, "train", fit["id"])}


def evaluation_meta(config, run: str, which: str, step: int, data_dir: str) -> dict:
  """What an evaluation was of: the run, its checkpoint and step, the dataset, split and seed."""
  return {"run": run, "checkpoint": which, "step": step, "dataset": data_dir,
          "split": config.evals.split, "seed": int(config.evals.seed)}


def stored_evaluation(config, workdir: str, run: str, which: str, names, data_dir: str):
  """A run's stored eval.json when it holds every evaluator of `names` for the same checkpoint
  step, dataset, split and seed as this evaluation would; else None."""
  run_dir = wd.path(workdir, "runs", run)
  stored = jsonio.read_json(os.path.join(wd.eval_folder(run_dir, which), "eval.json"))
  if not stored:
    return None
  _, step = wd.checkpoint_step(with_run_model(config, run_dir), run_dir, which)
  meta = evaluation_meta(config, run, which, step, data_dir)
  if any(stored.get(k) != v for k, v in meta.items()) or not set(names) <= set(stored["results"]):
    return None
  return {**meta, "results": {k: stored["results"][k] for k in names}}


def evaluate_runs(config, workdir: str, runs, which=None, reuse=False) -> dict:
  """{run: {metadata, 'results': the suite's output}} for the named runs. reuse: a run whose
  stored evaluation covers the same checkpoint and evaluators keeps it (a rerun pipeline)."""
  which = which or config.evals.checkpoint
  names = suite.check_names(config.evals.names)
  data_dir = wd.require_dataset(config, workdir)
  results = {}
  if reuse:
    for run in runs:
      stored = stored_evaluation(config, workdir, run, which, names, data_dir)
      if stored is not None:
        console.say(f"[eval] {run}: its evaluation of step {stored['step']} is kept "
                    "(--mode=eval computes it again)")
        results[run] = stored
    runs = [r for r in runs if r not in results]
    if not runs:
      return results
  # One device holds the generator and each run's encoders: restored weights keep the sharding
  # they were saved with (a trainer's mesh, or one device), and the evaluators' jitted passes
  # need them on the same devices.
  one = mesh_lib.make_mesh(jax.local_devices()[:1])
  g = wd.load_generator(config, workdir)
  mesh_lib.replicate(g, one)
  seg = wd.load_segmenter(config, workdir, required=False)
  data = input_pipeline.load_eval_arrays(data_dir, config.evals.split, config.data.eval_frames,
                                         suite.pairs_needed(config, names))
  cache = wd.cache_dir(workdir, data_dir, int(config.evals.seed))
  latents = wd.load_latents(config, workdir)
  scenes = input_pipeline.load_scenes(data_dir, config.evals.split, data["id"])
  fit = load_fit_pairs(config, data_dir) if "probe" in names else None
  for run in runs:
    run_config = with_run_model(config, wd.path(workdir, "runs", run))
    models, step = wd.load_encoders(run_config, wd.path(workdir, "runs", run), which)
    mesh_lib.replicate(models, one)
    ctx = make_context(run_config, models, g, data, seg, cache, latents, scenes, fit)
    meta = evaluation_meta(config, run, which, step, data_dir)
    out = suite.evaluate(ctx, names)
    if jax.process_index() == 0:
      folder = wd.eval_folder(wd.path(workdir, "runs", run), which)
      for name, metrics in out.items():
        jsonio.write_json(os.path.join(folder, f"{name}.json"),
                          {"evaluator": name, **meta, **metrics})
      jsonio.write_json(os.path.join(folder, "eval.json"), {**meta, "results": out})
    results[run] = {**meta, "results": out}
  return results
