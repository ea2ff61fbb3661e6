"""`--mode=train`: the speech and image encoders learn words from pairs and drawn negatives.

One jitted step over the mesh (batch on 'data', models / optimizer / generator replicated): the
frozen generator redraws the positives G(z_i) from their ids, the encoders embed images and
spectrograms, the in-batch similarity matrix gives the random / hardest impostors, and for the
edited kinds `drawing.draw` draws each positive's negative inside the step from the current
matchmap (in cluster mode, ablating the units `clustering.compute_concepts` ranks for each
sample's concept cluster; recomputed between steps every few epochs). The generator is never in
the optimizer nor in the checkpoint; its outputs are under stop_gradient. Orbax keeps the latest
checkpoints plus the best by (A_r5 + I_r5) / 2 on validation, with the input pipeline's state (and
the concept arrays in cluster mode), so a killed run resumes to the same result.
"""
import functools
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx
from tqdm import tqdm

from learning_words.common import (batching, checkpoints, errors, figures, jsonio,
                                   mesh as mesh_lib, periodic, stopwatch, writers)
from learning_words.data import input_pipeline
from learning_words.learner import (clustering, drawing, localise, losses, matchmap, negatives,
                                    oracle, recall)
from learning_words.models import encoders
from learning_words.models import generator as gen_lib
from learning_words.models import segmenter as seg_lib

EDITED_KINDS = ("negatives_edited", "negatives_both")


def train_seed(config) -> int:
  """The seed of a run's initial weights, batch order and step keys: `train.seed`, or `seed`
  (which also draws the world's captions and voices) when train.seed is -1."""
  return int(config.seed) if int(config.train.seed) < 0 else int(config.train.seed)


class TrainState(nnx.Module):
  """What a training checkpoint holds (the generator is not part of it)."""

  def __init__(self, config, steps_per_epoch: int):
    self.models = encoders.Encoders(config.model, rngs=nnx.Rngs(train_seed(config)))
    self.opt = nnx.Optimizer(self.models, make_optimizer(config.train, steps_per_epoch),
                             wrt=nnx.Param)


def make_lr(cfg, steps_per_epoch: int) -> optax.Schedule:
  """lr, divided by 10 every `lr_decay_epochs` epochs (the reference's step decay), after a linear
  warm-up from 0 over `warmup_epochs` (0: none, the reference)."""
  decay = optax.exponential_decay(cfg.lr, max(1, cfg.lr_decay_epochs * steps_per_epoch), 0.1,
                                  staircase=True)
  warmup = int(round(float(cfg.warmup_epochs) * steps_per_epoch))
  if warmup <= 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, cfg.lr, warmup), decay], [warmup])


def make_optimizer(cfg, steps_per_epoch: int) -> optax.GradientTransformation:
  """SGD with momentum; weight decay added to the gradient before momentum, as torch's SGD does."""
  if cfg.optimizer == "adam":  # a CPU-preset alternative; the reference uses SGD
    return optax.chain(optax.add_decayed_weights(cfg.weight_decay),
                       optax.adam(make_lr(cfg, steps_per_epoch)))
  if cfg.optimizer != "sgd":
    raise errors.ConfigError("--config.train.optimizer must be 'sgd' or 'adam', "
                             f"got {cfg.optimizer!r}")
  return optax.chain(optax.add_decayed_weights(cfg.weight_decay),
                     optax.sgd(make_lr(cfg, steps_per_epoch), momentum=cfg.momentum))


class PositiveCache(NamedTuple):
  """The positives G(z) of every latent row, drawn once (train.cache_positives)."""
  images: Any  # [N_z, R, R, 3] in [-1, 1]
  layer: Any  # [N_z, h_l, w_l, C]: the intervention layer's activations (edited kinds), or None


def draw_positive_cache(g, z_table, config, sharding=None) -> PositiveCache | None:
  """G(z) of every row of z_table when `train.cache_positives` (else None): a pair's positive is
  the same image every epoch, so the step reads it instead of redrawing it; the edited kinds also
  keep the intervention layer's activations that their negatives are redrawn from (the negatives
  themselves are still drawn by the generator inside the step)."""
  if not config.train.cache_positives or stored_positives(config):
    return None
  layer = config.negatives.layer
  draw = nnx.jit(lambda g, z: encoders.draw_positives(g, z, layer))
  rows = np.arange(z_table.shape[0])
  images, acts = batching.map_batches(lambda zi: draw(g, z_table[zi]), (rows,),
                                      int(config.data.batch_size), desc="positives")
  if config.loss.kind not in EDITED_KINDS:
    acts = None
  put = (lambda x: x) if sharding is None else (lambda x: jax.device_put(x, sharding))
  return PositiveCache(put(images), None if acts is None else put(acts))


def train_step(state: TrainState, g, z_table, batch, key, config, concept_arrays=None,
               cache: PositiveCache | None = None, groups: int = 1, objects=None):
  """One SGD step; returns the logged scalars (every loss term and the negatives' statistics).
  concept_arrays: clustering.ConceptArrays, needed in cluster mode only; cache: the positives
  drawn once (draw_positive_cache), else the step draws them; groups: the mesh's devices (one
  queue of candidate renders each, negatives.first_acceptable); objects: every latent row's
  object components [N_z,h,w] (object_table; the random-object control only)."""
  kind = config.loss.kind
  every_object = config.negatives.oracle_objects == "all"
  k_neg, k_loss = jax.random.split(key)
  if stored_positives(config):
    positives = encoders.to_float(batch["image"])
  elif cache is not None:
    z = z_table[batch["z_index"]]
    positives = cache.images[batch["z_index"]]
    x_layer = None if cache.layer is None else cache.layer[batch["z_index"]]
  else:
    z = z_table[batch["z_index"]]
    positives, x_layer = encoders.draw_positives(g, z, config.negatives.layer)

  def loss_fn(models):
    img, aud, frames = encoders.embed(models, positives, batch["spec"], batch["n_frames"])
    sim = matchmap.similarity_matrix(img, aud, frames, chunk=img.shape[0],
                                     cosine=config.model.cosine)
    s_edit, accepted, stats = None, None, {}
    ebatch = batch  # the arrays each negative is paired with (one row per negative)
    if kind in EDITED_KINDS and config.negatives.mode in oracle.MODES and every_object:
      neg, accepted, stats, pick = oracle.every_object(batch, config.negatives.mode)
      slots = batch["variant_valid"].shape[1]
      rep = lambda x: jnp.repeat(x, slots, axis=0)  # sample b's arrays, once per slot
      ebatch = {k: rep(batch[k]) for k in ("object_masks", "word_frames", "changed")
                if k in batch}
      img, aud, frames = rep(img), rep(aud), rep(frames)
    elif kind in EDITED_KINDS and config.negatives.mode in oracle.MODES:
      mm = drawing.heat_matchmap(img, aud, config)
      neg, accepted, stats, pick = oracle.oracle_negatives(batch, mm, frames, k_neg,
                                                           config.negatives.mode)
    elif kind in EDITED_KINDS:
      mm = drawing.heat_matchmap(img, aud, config)
      neg, masks, accepted, stats = drawing.draw(
          g, z, x_layer, positives, jax.lax.stop_gradient(img), jax.lax.stop_gradient(aud), mm,
          frames, k_neg, config, concept_arrays, groups,
          None if objects is None else objects[batch["z_index"]])
    edited = invariance = None
    if kind in EDITED_KINDS:  # the negative (oracle or drawn) scored against its caption
      img_neg = models.image(neg)
      mm_neg = matchmap.matchmap(img_neg, aud, cosine=config.model.cosine)
      s_edit = matchmap.misa(mm_neg, frames)
    if s_edit is not None and config.loss.edited_score in ("frames", "word", "peak"):
      if config.loss.edited_cells == "all" and config.loss.edited_score != "peak":
        region = None
      elif config.negatives.mode in oracle.MODES:  # the edited object's cells
        region = oracle.picked_cells(ebatch, pick, img.shape[1])
      else:  # the drawn negative's ablation mask, on the matchmap's grid
        region = matchmap.pixels_per_cell(masks > 0, img.shape[1]) > 0
      cells = region if config.loss.edited_cells == "edited" else None
      # Each frame's best cell: anywhere (the reference's max), or where the edit is only.
      best = (losses.frame_scores if cells is None
              else lambda m: losses.region_frame_scores(m, cells))
      mm_pos = matchmap.matchmap(img, aud, cosine=config.model.cosine)
      pos_frames, neg_frames = best(mm_pos), best(mm_neg)
      if region is not None:  # an edit with no cell in view (an object out of view): no term
        accepted = accepted & region.any(axis=(1, 2))
    in_caption = jnp.arange(aud.shape[1])[None, :] < frames[:, None]
    if s_edit is not None and config.loss.edited_score == "frames":
      edited = losses.frame_edited(pos_frames, neg_frames, frames, config.loss.base,
                                   config.loss.margin, edited_temperature(config))
    elif s_edit is not None and config.loss.edited_score == "peak":
      # The frames whose best cell lies on the edit (chosen by the matchmap, not differentiated).
      word = losses.peak_frames(jax.lax.stop_gradient(mm_pos), region) & in_caption
      edited = losses.word_edited(pos_frames, neg_frames, word, config.loss.base,
                                  config.loss.margin, edited_temperature(config))
      accepted = accepted & word.any(axis=1)
      stats["peak_frames"] = word.sum(axis=1).mean()
    elif s_edit is not None and config.loss.edited_score == "word":
      word = oracle.changed_word_frames(ebatch, pick, jax.random.fold_in(k_neg, 1),
                                        config.negatives.mode, models.audio.pooling_ratio,
                                        aud.shape[1])
      word = word & in_caption
      edited = losses.word_edited(pos_frames, neg_frames, word, config.loss.base,
                                  config.loss.margin, edited_temperature(config))
      accepted = accepted & word.any(axis=1)
      stats["word_frames"] = word.sum(axis=1).mean()
      if config.loss.edited_invariance > 0:
        keep = in_caption & ~oracle.object_word_frames(ebatch, pick, models.audio.pooling_ratio,
                                                       aud.shape[1])
        # Through the speech encoder only: the frames learn where not to look, while the image
        # features keep what the edit changed (held still through both, they lose it).
        fixed = lambda x: losses.frame_scores(matchmap.matchmap(
            jax.lax.stop_gradient(x), aud, cosine=config.model.cosine))
        inv = losses.frame_invariance(fixed(img), fixed(img_neg), keep, edited_temperature(config))
        invariance = jnp.sum(jnp.where(accepted, inv, 0.0)) / jnp.maximum(accepted.sum(), 1)
    loss, terms = losses.compute_loss(kind, sim, k_loss, s_edit, config.loss.margin,
                                      config.loss.base, config.loss.temperature, accepted,
                                      config.loss.edited_weight, edited_temperature(config),
                                      edited)
    if invariance is not None:
      loss = loss + config.loss.edited_invariance * invariance
      terms = {**terms, "invariance": invariance}
    return loss, {**terms, **{f"neg/{k}": v for k, v in stats.items()}}

  (loss, logs), grads = nnx.value_and_grad(loss_fn, has_aux=True)(state.models)
  state.opt.update(state.models, grads)
  return {"loss": loss, **logs}


def make_step_fn(config, devices: int):
  """The jitted train step as training calls it: step_fn(state, g, z_table, batch, key, *,
  concept_arrays, cache, objects) -> logs, updating `state` in place (the benchmark times this
  same function)."""
  return nnx.jit(functools.partial(train_step, config=config, groups=devices))


def edited_temperature(config) -> float:
  """The edited term's temperature: loss.edited_temperature, or the base's when it is 0."""
  t = float(config.loss.edited_temperature)
  return t if t > 0 else float(config.loss.temperature)


def stored_positives(config) -> bool:
  """Whether the positives are the records' images (data.positives), checked against the loss:
  drawn negatives need the latent that drew the positive, oracle negatives the stored edits."""
  if config.data.positives not in ("generator", "stored"):
    raise errors.ConfigError("--config.data.positives must be 'generator' or 'stored', got "
                             f"{config.data.positives!r}")
  stored = config.data.positives == "stored"
  edited = config.loss.kind in EDITED_KINDS
  if edited and config.negatives.mode in oracle.MODES:
    if not stored or not config.world.get("edit_variants", False):
      raise errors.ConfigError(
          f"--config.negatives.mode={config.negatives.mode} takes its negatives from the renders' "
          "stored edits: it needs --config.world.pairs=renders --config.world.edit_variants=True "
          "--config.data.positives=stored")
  elif stored and edited:
    raise errors.ConfigError(f"--config.loss.kind={config.loss.kind} draws its negatives from the "
                             "positive's latent: it needs --config.data.positives=generator")
  return stored


def validate(models, g, z_table, val: dict, config, cells=None) -> dict:
  """Recall@{1,5,10} both ways on the validation pairs, and the score (recall.retrieval_metrics);
  where the captions' matchmaps peak (the matchmap that places the negatives): peak_border, and
  peak_object given the pairs' object cells [N,h,w]."""
  models.eval()
  img, aud, frames = encoders.embed_pairs(models, g, z_table, val, config.data.batch_size,
                                          config.negatives.layer, stored_positives(config))
  models.train()
  out = recall.retrieval_metrics(img, aud, frames, cosine=bool(config.model.cosine))
  y, x = batching.map_batches(
      lambda i, a, f: localise.caption_peaks(i, a, f, cosine=negatives.heat_cosine(config)),
      (img, aud, frames), int(config.data.batch_size))
  peaks = localise.peak_statistics(y, x, cells, grid=img.shape[1:3])
  out["peak_border"] = peaks["on_border"]
  if cells is not None:
    out["peak_object"] = peaks["on_object"]
  return out


def object_cells(g, z_table, z_index, config, segmenter, images=None) -> np.ndarray | None:
  """Object cells bool [N,h,w] on the matchmap grid of the images G(z_table[z_index]) (or the
  given uint8 / [-1, 1] images), read by the attribute segmenter (None without one)."""
  if segmenter is None:
    return None
  if images is None:
    images = batching.map_batches(lambda zi: encoders.generate(g, z_table[zi]), (z_index,),
                                  int(config.data.batch_size), desc="object cells")
  images = figures.to_uint8(images) if np.asarray(images).dtype != np.uint8 else images
  grid = images.shape[1] // 2 ** int(config.model.image_pools)
  return seg_lib.to_cells(seg_lib.foreground(seg_lib.predict(segmenter, images)), grid)


def object_table(g, z_table, config, segmenter, cache: PositiveCache | None):
  """Every latent row's object components int8 [N_z,h,w] (negatives.object_components), for the
  random-object control (negatives.location='object'); None otherwise."""
  if config.negatives.get("location", "peak") != "object" or config.loss.kind not in EDITED_KINDS:
    return None
  if segmenter is None:
    raise errors.MissingError("--config.negatives.location=object reads each training image's "
                              "objects with the attribute segmenter (WORKDIR/segmenter/weights): "
                              "run --mode=train_segmenter")
  rows = np.arange(z_table.shape[0])
  cells = object_cells(g, z_table, rows, config, segmenter,
                       None if cache is None else np.asarray(cache.images))
  return jnp.asarray(negatives.object_components(cells))


def max_z_index(source) -> int:
  """Largest z row a split refers to (the fixed z table is built up to it)."""
  return max(int(r["z_index"]) for r in source.__getitems__(list(range(len(source)))))


@functools.lru_cache(maxsize=8)
def _train_max_z_index(data_dir: str, records: int) -> int:
  """max_z_index of a dataset's train split, read once per process (every record is read: 5 s on
  the quickstart's 6,000), so the runs of one stage or experiment share it. The folder's name
  holds its build config, so the same folder with as many records holds the same ids."""
  del records  # part of the key only
  return max_z_index(input_pipeline.open_source(data_dir, "train"))


def make_checkpoint_manager(directory: str, keep: int):
  """Latest `keep` checkpoints plus the best by validation score. Items: models, opt, data (the
  input pipeline's position) and, in cluster mode, the concept arrays the run is using (so a
  resume between recomputations is exact)."""
  return checkpoints.make_manager(directory, keep, best_metric="score",
                                  items=("models", "opt", "data", "concepts"))


def init_from_run(state: TrainState, run_dir: str):
  """Starts the encoders from another run's best (else latest) checkpoint; fresh optimizer."""
  manager = make_checkpoint_manager(os.path.join(run_dir, "checkpoints"), keep=2)
  step = manager.best_step() or manager.latest_step()
  if step is None:
    raise errors.MissingError(f"--config.train.init_from: no checkpoint in {run_dir}/checkpoints; "
                              "train that run first")
  checkpoints.restore(manager, {"models": state.models}, step)
  logging.info("initialised the encoders from %s step %d", run_dir, step)


def train_loop(config, run_dir: str, data_dir: str, g: gen_lib.Generator, max_steps=None,
               devices=None, latents=None, segmenter=None) -> dict:
  """Trains `config.train.epochs` epochs (or stops after `max_steps`, as a crash would); returns
  the last validation metrics (a finished run returns them from RESULT_FILE without building
  anything). `devices`: the mesh's devices (default: all); latents: the world's
  latent table (inverted worlds; default: the fixed z matrix); segmenter: the attribute
  segmenter, to log how often validation captions peak on objects (val/peak_object)."""
  cfg = config.train
  watch = stopwatch.Stopwatch()  # where the time goes: the run's profile (train_profile.json)
  stored_positives(config)  # a bad combination fails before any work
  src = input_pipeline.open_source(data_dir, "train")
  if config.loss.edited_score not in ("misa", "frames", "word", "peak"):
    raise errors.ConfigError(f"--config.loss.edited_score={config.loss.edited_score!r}: choose "
                             "'misa' (the reference), 'frames', 'word' or 'peak'")
  oracle_run = config.loss.kind in EDITED_KINDS and config.negatives.mode in oracle.MODES
  if config.loss.edited_score == "word" and config.loss.kind in EDITED_KINDS and not oracle_run:
    raise errors.ConfigError("--config.loss.edited_score=word needs the renderer's edits, which "
                             "know the word they change: --config.negatives.mode=oracle (or "
                             "oracle_random, oracle_null) with an edited --config.loss.kind")
  if config.loss.edited_cells not in ("all", "edited"):
    raise errors.ConfigError(f"--config.loss.edited_cells={config.loss.edited_cells!r}: choose "
                             "'all' (the reference) or 'edited'")
  if (config.loss.edited_cells == "edited" and config.loss.kind in EDITED_KINDS
      and config.loss.edited_score not in ("frames", "word", "peak")):
    raise errors.ConfigError("--config.loss.edited_cells=edited compares the two images frame by "
                             "frame where the edit is: it needs --config.loss.edited_score=frames "
                             "or peak (or word, with oracle negatives)")
  if (config.loss.edited_invariance > 0 and config.loss.kind in EDITED_KINDS
      and not (oracle_run and config.loss.edited_score == "word")):
    raise errors.ConfigError("--config.loss.edited_invariance needs the word timings of the "
                             "renderer's edits: --config.loss.edited_score=word with oracle "
                             "negatives and an edited --config.loss.kind")
  if oracle_run and config.loss.edited_score == "word" and "word_frames" not in src[0]:
    raise errors.MissingError(f"{data_dir}: this dataset stores no word timings; build it again "
                              "with this version (--mode=build_data)")
  if config.negatives.oracle_objects not in ("one", "all"):
    raise errors.ConfigError(f"--config.negatives.oracle_objects="
                             f"{config.negatives.oracle_objects!r}: choose 'one' (the object the "
                             "mode picks) or 'all' (every object's edit)")
  if oracle_run and "variants" not in src[0]:
    raise errors.MissingError(f"{data_dir}: no stored edits in this dataset; build it with "
                              "--config.world.edit_variants=True (--mode=build_data)")
  mesh = mesh_lib.make_mesh(devices)
  if config.data.batch_size % mesh.size:
    raise errors.ConfigError(f"--config.data.batch_size={config.data.batch_size} must be a "
                             f"multiple of the {mesh.size} devices")
  steps_per_epoch = len(src) // config.data.batch_size
  if steps_per_epoch == 0:
    raise errors.ConfigError(f"{data_dir}: {len(src)} training pairs < --config.data.batch_size="
                             f"{config.data.batch_size}")
  total = cfg.epochs * steps_per_epoch
  manager = make_checkpoint_manager(os.path.join(run_dir, "checkpoints"), cfg.keep_checkpoints)
  finished = finished_result(run_dir, manager, total)
  if finished is not None and max_steps is None:  # nothing to train: skip the set-up as well
    logging.info("%s: finished at step %d; its last validation is reused",
                 os.path.basename(run_dir), total)
    return {**finished, "profile": {"steps": 0}}
  state = TrainState(config, steps_per_epoch)
  if cfg.init_from:
    init_from_run(state, os.path.join(os.path.dirname(run_dir), cfg.init_from))
  loader = input_pipeline.make_loader(src, batch_size=config.data.batch_size,
                                      frames=config.data.train_frames, train=True,
                                      seed=train_seed(config),
                                      worker_count=config.data.worker_count,
                                      cache_gb=config.data.spec_cache_gb,
                                      cache_name=os.path.abspath(data_dir))
  it = iter(loader)
  start = checkpoints.restore(manager, {"models": state.models, "opt": state.opt, "data": it})
  mesh_lib.replicate(state, mesh)
  mesh_lib.replicate(g, mesh)
  val = input_pipeline.load_eval_arrays(data_dir, "val", config.data.eval_frames, cfg.val_pairs)
  n_z = 0 if latents is not None else 1 + max(int(val["z_index"].max()),
                                              _train_max_z_index(data_dir, len(src)))
  z_table = jax.device_put(jnp.asarray(gen_lib.latent_table(latents, n_z, g.sizes[0])),
                           jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
  cache = draw_positive_cache(g, z_table, config, z_table.sharding)
  val_cells = object_cells(g, z_table, val["z_index"], config, segmenter,
                           val["image"] if stored_positives(config) else None)
  objects = object_table(g, z_table, config, segmenter, cache)
  if objects is not None:
    objects = jax.device_put(objects, z_table.sharding)
  step_fn = make_step_fn(config, mesh.size)
  examples_fn = nnx.jit(functools.partial(drawing.draw_examples, config=config))  # compiled once
  host = jax.process_index()
  writer = writers.Writer(os.path.join(run_dir, "tensorboard"), host == 0)
  key = jax.random.key(train_seed(config))
  end = total if max_steps is None else min(total, max_steps)
  # Cluster mode: concepts from the current encoders before the first step and every
  # `concepts.every_epochs` epochs; a resume in between restores the arrays the run was using.
  use_concepts = config.negatives.mode == "cluster" and config.loss.kind in EDITED_KINDS
  concept_host = concept_arrays = None
  if use_concepts:
    concept_data = input_pipeline.load_eval_arrays(
        data_dir, "train", config.data.train_frames,
        -(-int(config.concepts.max_points) // jax.process_count()))
    every = max(1, int(config.concepts.every_epochs)) * steps_per_epoch
    concept_host = clustering.restore_saved(manager, start) if start % every else None
    if concept_host is None:
      if start % every:
        logging.warning("checkpoint %d holds no concept arrays: recomputing them from the restored "
                        "model, so this resume differs from an uninterrupted run", start)
      concept_host = _compute_concepts(writer, start, state, g, z_table, concept_data, config)
    concept_arrays = clustering.replicate(concept_host, mesh)
  # The bar counts finished steps: a step is counted once its loss is ready, which the host waits
  # for only after dispatching the next one (one step stays queued on the device).
  bar = tqdm(total=end, initial=start, desc=f"train {os.path.basename(run_dir)}",
             disable=host != 0, dynamic_ncols=True)
  chance = losses.chance_loss(config.loss.kind, config.data.batch_size, config.loss.margin,
                              config.loss.base, config.loss.temperature)
  metrics, score, step_rate, pending = {}, 0.0, writers.StepRate(start), None
  accepted_seen, last_loss = [], None
  trace = profile_window(cfg, start, end)
  watch.add("setup", watch.summary()["other_s"])
  for step in range(start, end):
    if use_concepts and step > start and periodic.itstime(step, every):
      t_concepts = time.time()
      with watch("concepts"):
        concept_host = _compute_concepts(writer, step, state, g, z_table, concept_data, config)
        concept_arrays = clustering.replicate(concept_host, mesh)
      step_rate.exclude(time.time() - t_concepts)  # steps_per_s counts the steps only
    if trace and step == trace[0]:
      jax.profiler.start_trace(os.path.join(run_dir, "profile"))
    with watch("loader"):
      batch = input_pipeline.make_global(next(it), mesh)
    # The first call traces and compiles; later ones only dispatch, and the step's own time is
    # spent waiting for its loss below.
    with watch("compile" if step == start else "step"):
      logs = step_fn(state, g, z_table, batch, jax.random.fold_in(key, step),
                     concept_arrays=concept_arrays, cache=cache, objects=objects)
    with watch("step"):
      if pending is not None:
        jax.block_until_ready(pending)
    if pending is not None:
      bar.update(1)
    pending = logs["loss"]
    done = step + 1
    if trace and done == trace[1]:
      jax.block_until_ready(pending)
      jax.profiler.stop_trace()
      logging.info("profiler trace of steps %d-%d in %s", trace[0] + 1, trace[1],
                   os.path.join(run_dir, "profile"))
    if periodic.itstime(done, cfg.log_every, end):
      with watch("step"):
        logs = {k: float(v) for k, v in logs.items()}
      rate = step_rate(done)
      lr = float(make_lr(cfg, steps_per_epoch)(done))
      writer.write_scalars(done, {**logs, "lr": lr, "steps_per_s": rate})
      accepted = ({"accepted": f"{logs['neg/accepted_rate']:.2f}"}
                  if "neg/accepted_rate" in logs else {})  # samples with an edited term
      if accepted:
        accepted_seen.append(logs["neg/accepted_rate"])
      last_loss = logs["loss"]
      bar.set_postfix(loss=f"{logs['loss']:.3f}", chance=f"{chance:.3f}", it_s=f"{rate:.2f}",
                      **accepted)
    if (config.loss.kind in EDITED_KINDS and not oracle_run
        and periodic.itstime(done, cfg.image_every)):
      with watch("images"):
        _write_images(writer, done, examples_fn, state, g, z_table, batch, key, concept_arrays,
                      objects)
    epoch_end = periodic.itstime(done, steps_per_epoch, end)
    if epoch_end:
      with watch("validation"):
        metrics = validate(state.models, g, z_table, val, config, val_cells)
        score = metrics["score"]
        writer.write_scalars(done, {f"val/{k}": v for k, v in metrics.items()})
    if epoch_end or periodic.itstime(done, cfg.checkpoint_every):
      items = {"models": state.models, "opt": state.opt, "data": it}
      if concept_host is not None:
        items["concepts"] = concept_host._asdict()
      with watch("checkpoint"):
        checkpoints.save(manager, done, items, metrics={"score": score})
        writer.flush()  # the events so far reach the workdir (a bucket's copy too)
  if pending is not None:
    with watch("step"):
      jax.block_until_ready(pending)
    bar.update(1)
  bar.close()
  if not metrics:  # nothing left to train (a finished run): report its last state
    with watch("validation"):
      metrics = validate(state.models, g, z_table, val, config, val_cells)
  with watch("checkpoint"):
    manager.wait_until_finished()
  writer.close()
  profile = {**watch.summary(), "steps": end - start}
  logging.info("%s: %d steps; %s", os.path.basename(run_dir), end - start,
               stopwatch.describe(profile))
  if host == 0 and end > start:
    jsonio.write_json(os.path.join(run_dir, "train_profile.json"), profile)
  if accepted_seen and max(accepted_seen) == 0:
    logging.warning("%s: no drawn negative was accepted at any logged step (accepted 0.00), so "
                    "this run trained as `regular` does; draw more tries "
                    "(--config.negatives.candidates) or lower --config.negatives.threshold",
                    os.path.basename(run_dir))
  n_val = int(val["n_frames"].shape[0])
  result = {**metrics, "loss": last_loss, "chance_loss": chance,
            "chance_score": min(5, n_val) / max(n_val, 1)}
  if host == 0 and end == total:
    jsonio.write_json(os.path.join(run_dir, RESULT_FILE), {**result, "step": total})
  return {**result, "profile": profile}


RESULT_FILE = "train_result.json"  # a finished run's last validation, so a rerun skips its set-up


def finished_result(run_dir: str, manager, total: int) -> dict | None:
  """The stored last validation of a run whose latest checkpoint is step `total`, else None."""
  stored = jsonio.read_json(os.path.join(run_dir, RESULT_FILE))
  if stored.get("step") != total or manager.latest_step() != total:
    return None
  return {k: v for k, v in stored.items() if k != "step"}


def profile_window(cfg, start: int, end: int) -> tuple[int, int] | None:
  """(first, last) of the steps train.profile_steps asks jax.profiler to trace, as step indices
  [first, last) within this call's [start, end); None when off or outside it."""
  spec = str(cfg.get("profile_steps", "") or "")
  if not spec:
    return None
  try:
    first, last = (int(v) for v in spec.split(":"))
  except ValueError as e:
    raise errors.ConfigError(f"--config.train.profile_steps={spec!r}: give FIRST:LAST, e.g. "
                             "'10:20' traces steps 11 to 20") from e
  first, last = max(first, start), min(last, end)
  return (first, last) if first < last else None


def _compute_concepts(writer, step, state, g, z_table, data, config):
  """clustering.compute_concepts from the current encoders (host arrays), logged."""
  t = time.time()
  host = clustering.compute_concepts(state.models, g, z_table, data, config)
  writer.write_scalars(step, {"concepts/n_clusters": clustering.n_kept(host),
                              "concepts/seconds": time.time() - t})
  return host


def _write_images(writer, step, examples_fn, state, g, z_table, batch, key,
                  concept_arrays=None, objects=None):
  """positive | drawn negative | mask for the first few samples of the batch."""
  n = min(4, batch["z_index"].shape[0])
  pos, neg, masks = examples_fn(
      state.models, g, z_table[batch["z_index"][:n]], batch["spec"][:n], batch["n_frames"][:n],
      jax.random.fold_in(jax.random.fold_in(key, step), 1), concept_arrays=concept_arrays,
      objects=None if objects is None else objects[batch["z_index"][:n]])
  mask_rgb = jnp.repeat(masks[..., None] * 2.0 - 1.0, 3, axis=-1)
  rows = figures.to_uint8(jnp.concatenate([pos, neg, mask_rgb], axis=2))
  writer.write_images(step, {"negatives": figures.make_grid(np.asarray(rows), cols=1, scale=2)})
