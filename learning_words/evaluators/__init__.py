"""The evaluation suite (`--mode=eval`): plug-ins named in `config.evals.names`.

  retrieval      recall@{1,5,10} speech->image and image->speech over N held-out pairs
  edited_recall  the positive among 9 GAN-edited negatives (random units): R@1, R@5
  semantic       the positive among 4 negatives with one attribute of one object changed: R@1, R@3
  attributes     the paper's Table 1: attribute words vs test images with / without them

Each evaluator is `run(ctx: common.Context) -> dict` (JSON-able), deterministic for
`config.evals.seed`. `run_all` restores a run's encoders from its Orbax checkpoint (the best by
validation score, or the latest: `config.evals.checkpoint` or `which`), evaluates them on
`config.evals.split` and writes WORKDIR/runs/<run>/eval/<evaluator>.json and eval/eval.json (all
of them; a later evaluation of the same run overwrites them, and says which checkpoint it used).
`evaluate_models` is the same without checkpoints or files, for callers that hold the models (the
train loop). `semantic` and `attributes` need the attribute segmenter (WORKDIR/segmenter/weights);
without one (e.g. an official dataset evaluated in a workdir that never trained one) they are
recorded as skipped.
"""
import os
import time

import jax
import jax.numpy as jnp
from absl import logging
from flax import nnx

from learning_words import pipeline, segmenter_train, train
from learning_words.evaluators import attributes, common, edited_recall, retrieval, semantic
from learning_words.models import generator as gen_lib

EVALUATORS = {"retrieval": retrieval.run, "edited_recall": edited_recall.run,
              "semantic": semantic.run, "attributes": attributes.run}
NEEDS_SEGMENTER = ("semantic", "attributes")


def check_names(names) -> tuple[str, ...]:
  names = tuple(names)
  unknown = [n for n in names if n not in EVALUATORS]
  if unknown:
    raise ValueError(f"--config.evals.names: unknown evaluators {unknown}; "
                     f"known: {list(EVALUATORS)}")
  return names


def pairs_needed(config, names) -> int:
  """How many held-out pairs the named evaluators read (the first ones of the split)."""
  e = config.evals
  sizes = {"retrieval": e.retrieval.n_pairs, "edited_recall": e.edited_recall.captions,
           "semantic": e.semantic.captions, "attributes": e.attributes.pool}
  return max([int(sizes[n]) for n in names] + [1])


def cache_dir(workdir: str, data_dir: str, seed: int) -> str:
  """WORKDIR/eval_cache/<dataset>_<seed>; <dataset> names the dataset folder (builder, config,
  version), so each test set has its own cache."""
  parts = os.path.normpath(data_dir).split(os.sep)[-3:]
  return os.path.join(workdir, "eval_cache", "_".join(parts + [str(seed)]))


def make_context(config, workdir: str, models, g, data_dir: str, seg=None, names=None,
                 data=None) -> common.Context:
  """The evaluators' inputs: the first held-out pairs of `config.evals.split` (or `data`), the
  z rows they use, and the models (switched to eval mode)."""
  names = check_names(config.evals.names if names is None else names)
  if data is None:
    data = train.load_eval_arrays(data_dir, config.evals.split, config.data.eval_frames,
                                  pairs_needed(config, names))
  z_table = jnp.asarray(gen_lib.standard_z(1 + int(data["z_index"].max()), g.sizes[0]))
  models.eval()
  return common.Context(config=config, models=models, g=g, data=data, z_table=z_table, seg=seg,
                        cache_dir=cache_dir(workdir, data_dir, int(config.evals.seed)))


def evaluate(ctx: common.Context, names=None) -> dict:
  """{evaluator: its metrics (with 'seconds'), or {'skipped': why}} for the named evaluators."""
  out = {}
  for name in check_names(ctx.cfg.names if names is None else names):
    if name in NEEDS_SEGMENTER and ctx.seg is None:
      out[name] = {"skipped": "no attribute segmenter (WORKDIR/segmenter/weights): run "
                              "--mode=train_segmenter first"}
      continue
    start = time.time()
    out[name] = {**EVALUATORS[name](ctx), "seconds": round(time.time() - start, 2)}
    logging.info("eval %s: %s", name, {k: v for k, v in out[name].items()
                                       if isinstance(v, (int, float))})
  return out


def evaluate_models(config, workdir: str, models, g, data_dir: str, seg=None, names=None) -> dict:
  """Runs the evaluators on models in hand (e.g. from the train loop); writes nothing but the
  semantic negatives' cache. The models are left in eval mode."""
  ctx = make_context(config, workdir, models, g, data_dir, seg, names)
  return evaluate(ctx, names)


def restore_encoders(config, run_dir: str, which: str):
  """(train.Encoders, step) of a run's best or latest checkpoint."""
  if which not in ("best", "latest"):
    raise ValueError(f"--config.evals.checkpoint must be 'best' or 'latest', got {which!r}")
  folder = os.path.join(run_dir, "checkpoints")
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"{folder}: no checkpoints; train the run first (--mode=train)")
  manager = train.make_checkpoint_manager(folder, int(config.train.keep_checkpoints))
  step = manager.best_step() if which == "best" else manager.latest_step()
  if step is None:
    raise FileNotFoundError(f"{folder}: no {which} checkpoint")
  # Built abstractly, then filled by the restore: no random initialisation (the schedule's
  # steps_per_epoch does not change any shape).
  state = nnx.eval_shape(lambda: train.TrainState(config, steps_per_epoch=1))
  train.restore(manager, state, step=step)
  return state.models, int(step)


def load_models(config, workdir: str):
  """(the frozen generator, the attribute segmenter in eval mode or None) of the workdir."""
  seg_dir = pipeline.segmenter_dir(config, workdir)
  seg = None if seg_dir is None else segmenter_train.load_segmenter(seg_dir, config)
  return pipeline.load_frozen_generator(config, workdir), seg


def list_runs(workdir: str) -> list[str]:
  """Names of the runs under WORKDIR/runs that have checkpoints."""
  root = os.path.join(workdir, "runs")
  if not os.path.isdir(root):
    return []
  return sorted(r for r in os.listdir(root) if os.path.isdir(os.path.join(root, r, "checkpoints")))


def evaluate_runs(config, workdir: str, runs, which=None) -> dict:
  """run_all for several runs, loading the dataset, generator and segmenter once."""
  which = which or config.evals.checkpoint
  names = check_names(config.evals.names)
  data_dir = pipeline.dataset_dir(config, workdir)
  if data_dir is None:
    raise FileNotFoundError("no image / spoken-caption dataset: run --mode=build_data first")
  g, seg = load_models(config, workdir)
  data = train.load_eval_arrays(data_dir, config.evals.split, config.data.eval_frames,
                                pairs_needed(config, names))
  results = {}
  for run in runs:
    models, step = restore_encoders(config, os.path.join(workdir, "runs", run), which)
    ctx = make_context(config, workdir, models, g, data_dir, seg, names, data=data)
    meta = {"run": run, "checkpoint": which, "step": step, "dataset": data_dir,
            "split": config.evals.split, "seed": int(config.evals.seed)}
    out = evaluate(ctx, names)
    if jax.process_index() == 0:
      folder = os.path.join(workdir, "runs", run, "eval")
      for name, metrics in out.items():
        common.write_json(os.path.join(folder, f"{name}.json"),
                          {"evaluator": name, **meta, **metrics})
      common.write_json(os.path.join(folder, "eval.json"), {**meta, "results": out})
    results[run] = {**meta, "results": out}
  return results


def run_all(config, workdir: str, run_name: str, which=None) -> dict:
  """Evaluates one run's best or latest checkpoint (default: config.evals.checkpoint) with every
  evaluator in config.evals.names; writes its JSON files and returns the combined dict."""
  return evaluate_runs(config, workdir, [run_name], which)[run_name]
