"""Attribute maps -> scene descriptions, in exactly the format of `scenes.describe`.

Why: GAN images have no ground truth; the segmenter labels their pixels and this module turns
those labels into the objects a caption names. An object is a connected region of foreground
pixels that agree on all four attributes (shape, colour, size, material), so touching objects
that differ in any attribute come apart. Touching objects that share all four cannot be told
apart from maps alone: they come out as one object (pixels summed, centroid between them).

Segmenter noise is handled twice: regions smaller than `min_pixels` are not objects, but their
pixels join the nearest real object of the same foreground blob (a few edge pixels with a wrong
size do not split or shrink an object); isolated specks are dropped. Each object's attributes
are then the majority vote of its pixels.

Host-side numpy + scipy (it builds datasets, it is not in a train step); vectorised over the batch.
"""
from __future__ import annotations

import numpy as np
from etils import epy
with epy.lazy_imports():  # imported at first use: start-up time
  from scipy import ndimage, sparse
  from scipy.sparse import csgraph

from learning_words.data.vocabulary import ATTRIBUTES, VOCAB

# Regions of equal attributes are 4-connected (objects that meet only at a corner stay apart);
# foreground blobs (which pieces may join which object) are 8-connected. The 3-D structure has
# only its middle slice set, so blobs never connect across the batch axis.
_BLOB = np.zeros((3, 3, 3), bool)
_BLOB[1] = True


def encode_joint(maps: dict) -> np.ndarray:
  """One int per pixel that differs whenever any attribute label differs [B,R,R]."""
  code = np.zeros(maps[ATTRIBUTES[0]].shape, np.int64)
  for a in ATTRIBUTES:
    code = code * (1 + len(VOCAB[a])) + maps[a]
  return code


def label_regions(code: np.ndarray, foreground: np.ndarray) -> np.ndarray:
  """Labels 4-connected regions of equal code inside the foreground: int [B,R,R], 0 = none.

  One connected-components pass over the graph whose edges join equal-code foreground
  neighbours (right and down), for the whole batch at once.
  """
  index = np.arange(code.size).reshape(code.shape)
  src, dst = [], []
  for axis in (1, 2):
    head = [slice(None)] * 3
    tail = [slice(None)] * 3
    head[axis], tail[axis] = slice(None, -1), slice(1, None)
    head, tail = tuple(head), tuple(tail)
    same = foreground[head] & foreground[tail] & (code[head] == code[tail])
    src.append(index[head][same])
    dst.append(index[tail][same])
  src, dst = np.concatenate(src), np.concatenate(dst)
  graph = sparse.coo_matrix((np.ones(src.size, np.int8), (src, dst)), shape=(code.size,) * 2)
  _, component = csgraph.connected_components(graph, directed=False)
  component = component.reshape(code.shape)
  ids = np.unique(component[foreground])
  return np.where(foreground, np.searchsorted(ids, component) + 1, 0)


def absorb_small(regions: np.ndarray, foreground: np.ndarray, min_pixels: int) -> np.ndarray:
  """Drops regions of < min_pixels; their pixels join the nearest kept region of the same
  8-connected foreground blob, if any. Returns the new labels [B,R,R] (0 = none)."""
  sizes = np.bincount(regions.ravel())
  keep = sizes >= min_pixels
  keep[0] = False
  kept = np.where(keep[regions], regions, 0)
  loose = (regions > 0) & ~keep[regions]
  if not loose.any():
    return kept
  blobs, _ = ndimage.label(foreground, structure=_BLOB)
  for i in np.nonzero(loose.any(axis=(1, 2)))[0]:
    if not kept[i].any():
      continue
    # Nearest kept pixel of every pixel (Euclidean); a loose pixel joins it only when it lies
    # in the same blob (else the pixel is dropped).
    _, (rows, cols) = ndimage.distance_transform_edt(kept[i] == 0, return_indices=True)
    near = kept[i][rows, cols]
    join = loose[i] & (blobs[i][rows, cols] == blobs[i])
    kept[i] = np.where(join, near, kept[i])
  return kept


def vote(regions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
  """Majority non-background label of each region [n_regions + 1] (0 where it has none)."""
  n = int(regions.max()) + 1
  on = labels > 0
  counts = np.bincount(regions[on] * num_classes + labels[on], minlength=n * num_classes)
  counts = counts.reshape(n, num_classes)
  return np.where(counts.any(axis=1), counts.argmax(axis=1), 0)


def parse(maps: dict, min_pixels: int = 3) -> list[dict]:
  """{attr: int labels [B,R,R] or [R,R]} (1 + index, 0 = background) -> list of B scenes.

  Each scene: {'objects': [{'shape','color','size','material': word, 'x','y': centroid of
  the pixel centres / R, 'pixels': count}]}, ordered by x, like `scenes.describe`. A pixel is
  foreground when at least half of the heads call it an object.
  """
  maps = {a: np.asarray(maps[a]).astype(np.int64) for a in ATTRIBUTES}
  if maps[ATTRIBUTES[0]].ndim == 2:
    maps = {a: m[None] for a, m in maps.items()}
  n, res, _ = maps[ATTRIBUTES[0]].shape
  if n == 0:
    return []
  foreground = 2 * sum((maps[a] > 0).astype(int) for a in ATTRIBUTES) >= len(ATTRIBUTES)
  regions = label_regions(encode_joint(maps), foreground)
  regions = absorb_small(regions, foreground, max(int(min_pixels), 1))
  # Renumber the surviving regions 1..m, then per-region statistics with bincount.
  ids = np.unique(regions[regions > 0])
  regions = np.where(regions > 0, np.searchsorted(ids, regions) + 1, 0)
  m = int(regions.max()) + 1
  flat = regions.ravel()
  rows, cols = np.divmod(np.arange(res * res), res)
  count = np.bincount(flat, minlength=m)
  col_sum = np.bincount(flat, np.tile(cols + 0.5, n), m)
  row_sum = np.bincount(flat, np.tile(rows + 0.5, n), m)
  image = np.bincount(flat, np.repeat(np.arange(n), res * res), m) / np.maximum(count, 1)
  votes = {a: vote(regions, maps[a], 1 + len(VOCAB[a])) for a in ATTRIBUTES}
  scenes = [{'objects': []} for _ in range(n)]
  for r in range(1, m):
    if any(votes[a][r] == 0 for a in ATTRIBUTES):
      continue  # a head sees no object anywhere in this region
    obj = {a: VOCAB[a][votes[a][r] - 1] for a in ATTRIBUTES}
    obj.update(x=float(col_sum[r] / count[r] / res), y=float(row_sum[r] / count[r] / res),
               pixels=int(count[r]))
    scenes[int(round(image[r]))]['objects'].append(obj)
  for scene in scenes:
    scene['objects'].sort(key=lambda o: o['x'])
  return scenes
