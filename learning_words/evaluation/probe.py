"""`probe`: do the image encoder's cell features carry the attributes the words name?

A linear probe (scikit-learn's multinomial logistic regression on standardised features) per
attribute category reads each object's shape, colour, size and material from the image feature at
the cell that holds the object's centroid (the matchmap grid's cell, the features the matchmap
compares with speech). It is fitted on the objects of the first `probe.fit_images` training pairs
and scored on the objects of the evaluated split's first `probe.images` pairs. Labels and
centroids are the world's ground truth where it stores scenes, else the attribute segmenter's
parse of the image.

Two reference rows read the same objects:
  random  the same architecture with freshly initialised weights (`probe.random_seed`): what the
          convolutions give before any training
  pixels  the raw RGB pixels of a window twice a cell's side around the centroid: what the image
          itself makes linearly readable at that place
Training that teaches attributes should read them at least as well as `random`. Chance is the
share of the most frequent value in the test objects (`majority`).
"""
import numpy as np
from etils import epy
from flax import nnx
with epy.lazy_imports():  # imported at first use: start-up time
  from sklearn import linear_model, pipeline, preprocessing

from learning_words.common import batching, errors, figures
from learning_words.data.vocabulary import ATTRIBUTES, VOCAB
from learning_words.evaluation import context
from learning_words.models import encoders
from learning_words.models import segmenter as seg_lib
from learning_words.world import parse


def object_table(scenes: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(image row [M], centroid (x, y) in [0, 1) [M,2], labels int [M,4] (value index per
  ATTRIBUTES)) of every object of the scenes, image by image."""
  rows, xy, labels = [], [], []
  for i, scene in enumerate(scenes):
    for obj in scene["objects"]:
      rows.append(i)
      xy.append((obj["x"], obj["y"]))
      labels.append([VOCAB[a].index(obj[a]) for a in ATTRIBUTES])
  return (np.asarray(rows, np.int64), np.asarray(xy, np.float64).reshape(-1, 2),
          np.asarray(labels, np.int64).reshape(-1, len(ATTRIBUTES)))


def centroid_cells(xy, grid: int) -> np.ndarray:
  """(row, column) [M,2] of the grid cell holding each centroid xy [M,2] (x, y in [0, 1))."""
  cells = np.floor(np.asarray(xy, np.float64) * grid).astype(np.int64)
  return np.clip(cells[:, ::-1], 0, grid - 1)


def cell_features(features, rows, cells) -> np.ndarray:
  """features [N,h,w,D] at each object's cell: rows [M], cells [M,2] -> [M,D]."""
  features = np.asarray(features)
  return features[rows, cells[:, 0], cells[:, 1]]


def pixel_windows(images, rows, xy, side: int) -> np.ndarray:
  """The raw pixels of a side x side window centred on each object's centroid, the image padded
  by edge values: images [N,R,R,3] uint8 -> [M, side * side * 3] float in [0, 1]."""
  images = np.asarray(images)
  half = side // 2
  padded = np.pad(images, ((0, 0), (half, side), (half, side), (0, 0)), mode="edge")
  r = images.shape[1]
  centre = np.clip(np.floor(np.asarray(xy) * r).astype(np.int64), 0, r - 1)  # (x, y) pixels
  out = [padded[i, cy:cy + side, cx:cx + side] for i, (cx, cy) in zip(rows, centre)]
  return np.asarray(out, np.float64).reshape(len(out), -1) / 255.0


def fit_score(train_x, train_y, test_x, test_y, max_iter: int = 2000) -> tuple[float, np.ndarray]:
  """(test accuracy, per-object correctness [M_test]) of a logistic probe fitted on (train_x,
  train_y). A label absent from the training objects can never be predicted (a miss)."""
  if len(np.unique(train_y)) < 2:  # one class: the probe can only say it
    pred = np.full(len(test_y), train_y[0] if len(train_y) else -1)
  else:
    probe = pipeline.make_pipeline(preprocessing.StandardScaler(),
                                   linear_model.LogisticRegression(max_iter=max_iter))
    pred = probe.fit(train_x, train_y).predict(test_x)
  correct = np.asarray(pred == test_y, np.float64)
  return float(correct.mean()) if len(correct) else float("nan"), correct


def read_objects(features_of, images, scenes, grid: int, side: int) -> dict:
  """{'features': {row: [M,D]}, 'labels' [M,4]} for every object of the scenes, the feature rows
  named by features_of ({row: image features [N,h,w,D]}) plus 'pixels'."""
  rows, xy, labels = object_table(scenes)
  cells = centroid_cells(xy, grid)
  feats = {name: cell_features(f, rows, cells) for name, f in features_of.items()}
  feats["pixels"] = pixel_windows(images, rows, xy, side)
  return {"features": feats, "labels": labels}


def probe_rows(train: dict, test: dict) -> dict:
  """{row: {'categories': {attribute: accuracy}, 'mean'}} and the trained row's per-object
  correctness, from read_objects' output of the two splits."""
  out, correct = {}, {}
  for name in test["features"]:
    cats = {}
    for j, a in enumerate(ATTRIBUTES):
      cats[a], correct[(name, a)] = fit_score(train["features"][name], train["labels"][:, j],
                                              test["features"][name], test["labels"][:, j])
    out[name] = {"categories": cats, "mean": float(np.nanmean(list(cats.values())))}
  return out, correct


def majority(labels) -> dict:
  """{attribute: share of the most frequent value} of labels [M,4]."""
  return {a: float(np.bincount(labels[:, j]).max() / len(labels)) if len(labels) else float("nan")
          for j, a in enumerate(ATTRIBUTES)}


def images_and_scenes(ctx: context.Context, data: dict, scenes) -> tuple[np.ndarray, list]:
  """uint8 images [N,R,R,3] of held-out-like pairs (stored, or drawn from their latents) and
  their scene descriptions (ground truth where given, else the segmenter's parse)."""
  batch = int(ctx.cfg.batch_size)
  images = data["image"] if ctx.stored else figures.to_uint8(batching.map_batches(
      lambda zi: encoders.generate(ctx.g, ctx.z_table[zi]), (data["z_index"],), batch,
      desc="probe: images"))
  if scenes is None:
    if ctx.seg is None:
      raise errors.MissingError("probe needs the attribute segmenter (WORKDIR/segmenter/weights) "
                                "or a world that stores its scenes: run --mode=train_segmenter")
    scenes = parse.parse(seg_lib.predict(ctx.seg, images), ctx.config.world.parse_min_pixels)
  return np.asarray(images), list(scenes)


def run(ctx: context.Context) -> dict:
  """Probe accuracy per category for the trained encoder, a random one and the pixels."""
  cfg = ctx.cfg.probe
  if ctx.fit is None:
    raise errors.MissingError("probe needs training pairs to fit on (Context.fit)")
  n_fit, n_test = int(cfg.fit_images), int(cfg.images)
  fit_images, fit_scenes = images_and_scenes(ctx, {k: v[:n_fit] for k, v in ctx.fit.items()
                                                   if k != "scenes"},
                                             None if ctx.fit.get("scenes") is None
                                             else ctx.fit["scenes"][:n_fit])
  test_images, test_scenes = images_and_scenes(
      ctx, ctx.take(n_test), None if ctx.scenes is None else ctx.scenes[:n_test])
  random_models = encoders.Encoders(ctx.config.model, rngs=nnx.Rngs(int(cfg.random_seed)))
  random_models.eval()
  batch = int(ctx.cfg.batch_size)
  features = lambda models, images: batching.map_batches(
      lambda im: encoders.embed_stored_images(models, im), (images,), batch)
  grid = int(np.asarray(features(ctx.models, test_images[:1])).shape[1])
  side = 2 * (test_images.shape[1] // grid)
  parts = [read_objects({"trained": features(ctx.models, images),
                         "random": features(random_models, images)}, images, scenes, grid, side)
           for images, scenes in ((fit_images, fit_scenes), (test_images, test_scenes))]
  rows, correct = probe_rows(*parts)
  labels = parts[1]["labels"]
  return {"labels": "truth" if ctx.scenes is not None else "segmenter",
          "n_fit_objects": int(len(parts[0]["labels"])), "n_objects": int(len(labels)),
          **rows["trained"], "random": rows["random"], "pixels": rows["pixels"],
          "chance": majority(labels),
          "items": {"correct": np.stack([correct[("trained", a)] for a in ATTRIBUTES],
                                        axis=1).tolist()}}
