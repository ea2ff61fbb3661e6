"""`--mode=train_segmenter`: trains the per-pixel attribute segmenter on the ground-truth renders.

With `segmenter.crop` it trains on random square crops of that side (each with the coordinates of
its place in the whole render), which costs (crop / R)^2 of whole renders per step: the 128 px
segmenter's way to fit a CPU. It is scored on whole val renders either way.

Loss: the sum over heads (shape, colour, size, material) of the mean per-pixel softmax
cross-entropy; Adam with a cosine-decayed learning rate. Batches are drawn by indices that depend
only on (seed, step), so a resumed run sees exactly the batches the uninterrupted one would. After
training, the val split is scored (pixel accuracy on object pixels and on all pixels, confusion
matrices) and SEG_DIR/{eval.json, confusion.png, examples.png} are written; the weights folder
SEG_DIR/weights is written last, so its presence means the stage finished.
"""
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from learning_words.common import (assets, batching, checkpoints, errors, figures, jsonio,
                                   mesh as mesh_lib, periodic, writers)
from learning_words.data import clevr_scenes
from learning_words.data.vocabulary import ATTRIBUTES, COLOR_RGB, VOCAB
from learning_words.models.segmenter import Segmenter, crop_coordinates, predict, to_float

KEYS = ("image", *ATTRIBUTES)


class SegState(nnx.Module):
  """Everything a segmenter checkpoint holds: the network (params, batch stats) and Adam."""

  def __init__(self, cfg, seed: int):
    self.seg = Segmenter(cfg.widths, rngs=nnx.Rngs(seed))
    self.opt = nnx.Optimizer(self.seg, make_tx(cfg.lr, max(cfg.steps, 1)), wrt=nnx.Param)


@functools.lru_cache(maxsize=None)
def make_tx(lr: float, steps: int) -> optax.GradientTransformation:
  """Adam with a cosine-decayed rate. Cached: equal settings give the same (static) object, so
  states built apart share one compiled train step."""
  return optax.adam(optax.cosine_decay_schedule(lr, steps))


def compute_losses(logits: dict, labels: dict) -> dict:
  """{attr: mean softmax cross-entropy} of logits [B,R,R,C] against int labels [B,R,R]."""
  return {a: optax.softmax_cross_entropy_with_integer_labels(
      logits[a], labels[a].astype(jnp.int32)).mean() for a in ATTRIBUTES}


def crop_batch(arrays: dict, offsets, size: int) -> dict:
  """{key: [B,size,size,...]}: the square crop of each row of arrays {key: [B,R,R,...]} whose
  top-left pixel is offsets [B,2] (row, column), plus its "coordinates" in the whole image."""
  res = next(iter(arrays.values())).shape[1]
  offsets = np.asarray(offsets)
  span = np.arange(size)
  rows = (offsets[:, :1] + span)[:, :, None]  # [B,size,1]
  cols = (offsets[:, 1:] + span)[:, None, :]  # [B,1,size]
  b = np.arange(len(offsets))[:, None, None]
  out = {k: v[b, rows, cols] for k, v in arrays.items()}
  out["coordinates"] = crop_coordinates(offsets, size, res)
  return out


def crop_offsets(seed: int, step: int, batch: int, size: int, res: int) -> np.ndarray:
  """Top-left pixels [batch, 2] of the crops at `step`, a function of (seed, step) only (so a
  resumed run crops as the uninterrupted one), uniform over the places a crop fits."""
  return np.random.default_rng([seed, step, 1]).integers(0, res - size + 1, size=(batch, 2))


@nnx.jit
def train_step(s: SegState, images, labels: dict, coordinates=None) -> dict:
  """One Adam step on the summed per-head loss; returns losses and object-pixel accuracies.
  coordinates: where crops lie in their whole images (None: the images are whole)."""

  def loss_fn(seg):
    logits = seg(to_float(images), coordinates)
    terms = compute_losses(logits, labels)
    return sum(terms.values()), (terms, logits)

  (loss, (terms, logits)), grads = nnx.value_and_grad(loss_fn, has_aux=True)(s.seg)
  s.opt.update(s.seg, grads)
  out = {"loss": loss, **{f"loss_{a}": t for a, t in terms.items()}}
  on_object = labels["shape"] != 0  # every head shares the same foreground
  for a in ATTRIBUTES:
    hit = (jnp.argmax(logits[a], -1) == labels[a]) & on_object
    out[f"object_acc_{a}"] = hit.sum() / jnp.maximum(on_object.sum(), 1)
  return out


# ---------------------------------------------------------------------------
# Scoring (pure numpy).


def confusion_matrix(truth, pred, num_classes: int) -> np.ndarray:
  """Counts [C,C] of (truth row, prediction column) over all pixels of int maps of equal shape."""
  truth, pred = np.asarray(truth, np.int64).ravel(), np.asarray(pred, np.int64).ravel()
  if truth.size and max(truth.max(), pred.max()) >= num_classes:
    raise ValueError(f"labels must be < {num_classes}, got up to {max(truth.max(), pred.max())}")
  flat = truth * num_classes + pred
  return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def score_confusion(confusion: np.ndarray) -> dict:
  """Pixel accuracy on object pixels (truth != 0, background predictions count as wrong) and on
  all pixels, from a confusion matrix whose class 0 is background."""
  c = np.asarray(confusion, np.float64)
  diag = np.diag(c)
  return {"object_accuracy": float(diag[1:].sum() / max(c[1:].sum(), 1.0)),
          "pixel_accuracy": float(diag.sum() / max(c.sum(), 1.0))}


def score_predictions(pred: dict, maps: dict) -> dict:
  """{attr: {object_accuracy, pixel_accuracy, classes, confusion}} of predicted vs true maps."""
  out = {}
  for a in ATTRIBUTES:
    classes = ("background", *VOCAB[a])
    conf = confusion_matrix(maps[a], pred[a], len(classes))
    out[a] = {**score_confusion(conf), "classes": list(classes), "confusion": conf.tolist()}
  return out


# ---------------------------------------------------------------------------
# Figures.

_PALETTE = np.array([(0, 0, 0), (230, 80, 60), (70, 170, 70), (70, 110, 230)], np.uint8)
_COLOR_PALETTE = np.array([(0, 0, 0)] + [COLOR_RGB[c] for c in VOCAB["color"]], np.uint8)


def colour_labels(attr: str, labels) -> np.ndarray:
  """int labels [...] -> uint8 RGB [...,3]: colours as named for 'color', a fixed palette else."""
  return (_COLOR_PALETTE if attr == "color" else _PALETTE)[np.asarray(labels)]


def draw_confusions(results: dict, cell: int = 38) -> np.ndarray:
  """One panel per head: row-normalised heat map with the row percentage in every cell."""
  font = ImageFont.load_default(size=11)
  panels = []
  for a in ATTRIBUTES:
    r = results[a]
    conf = np.asarray(r["confusion"], np.float64)
    frac = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    n, left, top = len(r["classes"]), 72, 38
    title = (f"{a}: object pixels {100 * r['object_accuracy']:.1f}%, all pixels "
             f"{100 * r['pixel_accuracy']:.1f}% (rows: truth, columns: prediction, row %)")
    width = max(left + n * cell, int(font.getlength(title)) + 4) + 8
    img = Image.new("RGB", (width, top + n * cell + 8), "white")
    d = ImageDraw.Draw(img)
    d.text((4, 2), title, "black", font)
    for j, name in enumerate(r["classes"]):
      d.text((left + j * cell + 2, top - 14), "bg" if j == 0 else name[:5], "black", font)
      d.text((4, top + j * cell + cell // 2 - 6), name[:11], "black", font)
    for i in range(n):
      for j in range(n):
        v = frac[i, j]
        fill = tuple(int(255 - v * (255 - c)) for c in (30, 80, 200))
        box = (left + j * cell, top + i * cell, left + (j + 1) * cell - 1, top + (i + 1) * cell - 1)
        d.rectangle(box, fill=fill, outline=(200, 200, 200))
        d.text((box[0] + 3, box[1] + cell // 2 - 6), f"{100 * v:.1f}",
               "white" if v > 0.5 else "black", font)
    panels.append(np.asarray(img))
  width = max(p.shape[1] for p in panels)
  return np.concatenate([np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0)),
                                constant_values=255) for p in panels])


def draw_examples(images, truth: dict, pred: dict, scale: int = 4) -> np.ndarray:
  """Rows of image | (truth, prediction) colour maps per head, with a header naming columns."""
  cols = [np.asarray(images)]
  names = ["image"]
  for a in ATTRIBUTES:
    cols += [colour_labels(a, truth[a]), colour_labels(a, pred[a])]
    names += [f"{a} true", f"{a} pred"]
  n, res = len(images), images.shape[1]
  tiles = np.stack(cols, 1).reshape(n * len(cols), res, res, 3)
  grid = figures.make_grid(tiles, cols=len(cols), scale=scale)
  header = Image.new("RGB", (grid.shape[1], 16), "white")
  d = ImageDraw.Draw(header)
  for k, name in enumerate(names):
    d.text((k * (res + 1) * scale + 4, 2), name, "black", ImageFont.load_default(size=11))
  return np.concatenate([np.asarray(header), grid])


# ---------------------------------------------------------------------------
# The stage.


def train_segmenter(config, seg_dir: str, scenes_dir: str) -> str:
  """Trains (or resumes) the segmenter in `seg_dir` to `config.segmenter.steps` on the renders of
  `scenes_dir`, scores it on their val split, returns the weights folder SEG_DIR/weights."""
  cfg = config.segmenter
  train = clevr_scenes.load_arrays(scenes_dir, "train", KEYS)
  res = train["image"].shape[1]
  if cfg.crop and (cfg.crop % 4 or not 0 < cfg.crop <= res):
    raise errors.ConfigError(f"--config.segmenter.crop={cfg.crop}: must be 0 (whole renders) or "
                             f"a multiple of 4 up to the render side {res}")
  logging.info("train_segmenter: %d training renders %s, %s", len(train["image"]),
               train["image"].shape[1:], f"crops of {cfg.crop} px" if cfg.crop else "whole")
  mesh = mesh_lib.make_mesh()
  s = SegState(cfg, config.seed)
  manager = checkpoints.make_manager(os.path.join(seg_dir, "checkpoints"))
  start = checkpoints.restore(manager, {"state": s})
  mesh_lib.replicate(s, mesh)
  sharding = mesh_lib.batch_sharding(mesh)
  host = jax.process_index()
  writer = writers.Writer(os.path.join(seg_dir, "tensorboard"), host == 0)
  bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="train_segmenter",
             disable=host != 0, dynamic_ncols=True)
  step_rate = writers.StepRate(start)
  for step in bar:
    idx = batching.host_batch_indices(config.seed, step, len(train["image"]), cfg.batch_size)
    rows = {k: train[k][idx] for k in KEYS}
    if cfg.crop:
      rows = crop_batch(rows, crop_offsets(config.seed, step, len(idx), cfg.crop, res), cfg.crop)
    batch = {k: jax.make_array_from_process_local_data(sharding, v) for k, v in rows.items()}
    terms = train_step(s, batch["image"], {a: batch[a] for a in ATTRIBUTES},
                       batch.get("coordinates"))
    done = step + 1
    if periodic.itstime(done, cfg.log_every, cfg.steps):
      terms = {k: float(v) for k, v in terms.items()}
      rate = step_rate(done)
      writer.write_scalars(done, {**terms, "steps_per_s": rate})
      bar.set_postfix(loss=f"{terms['loss']:.3f}", it_s=f"{rate:.2f}",
                      acc="/".join(f"{terms[f'object_acc_{a}']:.3f}" for a in ATTRIBUTES))
    if periodic.itstime(done, cfg.checkpoint_every, cfg.steps):
      checkpoints.save(manager, done, {"state": s})
      writer.flush()  # the events so far reach the workdir (a bucket's copy too)
  manager.wait_until_finished()

  val = clevr_scenes.load_arrays(scenes_dir, "val", KEYS)
  pred = predict(s.seg, val["image"])
  results = score_predictions(pred, val)
  writer.write_scalars(cfg.steps, {f"val_{k}_{a}": results[a][k] for a in ATTRIBUTES
                                   for k in ("object_accuracy", "pixel_accuracy")})
  writer.close()
  if host == 0:
    jsonio.write_json(os.path.join(seg_dir, "eval.json"),
                      {"steps": cfg.steps, "num_val": len(val["image"]), **results})
    figures.save_png(os.path.join(seg_dir, "confusion.png"), draw_confusions(results))
    few = slice(0, 8)
    figures.save_png(os.path.join(seg_dir, "examples.png"), draw_examples(
        val["image"][few], {a: val[a][few] for a in ATTRIBUTES},
        {a: pred[a][few] for a in ATTRIBUTES}))
  logging.info("train_segmenter: val object accuracy %s",
               {a: round(results[a]["object_accuracy"], 4) for a in ATTRIBUTES})
  out = os.path.join(seg_dir, "weights")
  checkpoints.save_weights(out, s.seg)
  return out


def ship_segmenter(config, seg_dir: str, pipeline_times_json: str) -> str:
  """Ships SEG_DIR's trained segmenter as the package's default, with its provenance (steps,
  training wall time and the held-out accuracies per head)."""
  scores = jsonio.read_json(os.path.join(seg_dir, "eval.json"))
  times = jsonio.read_json(pipeline_times_json)
  return assets.ship("segmenter", os.path.join(seg_dir, "weights"), config, {
      "segmenter_config": config.segmenter.to_dict(),
      "command": "python -m learning_words.main --config=PRESET --workdir=WORKDIR "
                 "--mode=train_segmenter --config.segmenter.retrain=True, with the world_config "
                 "and segmenter_config recorded here",
      "steps": scores.get("steps"), "train_seconds": times.get("train_segmenter"),
      "val_images": scores.get("num_val"),
      "accuracy": {a: {k: scores[a][k] for k in ("object_accuracy", "pixel_accuracy")}
                   for a in ATTRIBUTES if a in scores},
  })
