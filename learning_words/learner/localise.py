"""Where a caption's matchmap peaks on the image: on an object cell, on the grid's border.

Drawn negatives edit the image around the caption's peak (the argmax over cells and valid frames,
negatives.peak), so the method teaches attributes only when that peak lies on an object. Training
logs these shares on validation pairs; the `localisation` evaluator reports them on test pairs.
Object cells come from the caller (the attribute segmenter's labels, models.segmenter.to_cells).
"""
import collections
import functools

import jax
import numpy as np

from learning_words.learner import matchmap, negatives


@functools.partial(jax.jit, static_argnames=("cosine",))
def caption_peaks(img, aud, frames, cosine: bool):
  """(y, x) [B] of each pair's matchmap peak: img [B,h,w,D], aud [B,T,D], frames [B]."""
  _, y, x = negatives.peak(matchmap.matchmap(img, aud, cosine=cosine), frames)
  return y, x


def border_ring(h: int, w: int) -> np.ndarray:
  """bool [h, w]: the grid's outer ring."""
  ring = np.ones((h, w), bool)
  ring[1:-1, 1:-1] = False
  return ring


def peak_statistics(y, x, cells=None, grid=None) -> dict:
  """Where peaks (y, x) [P] land: the border share and its chance (the ring's share of the
  grid), the most common peak cells and, given the images' object cells [P,h,w], the share on an
  object cell, its chance (the mean share of object cells) and per pair whether it hit one
  (`items`); peak_share [h][w]: the share of peaks on each cell. grid: (h, w) when no cells are
  given."""
  y, x = np.asarray(y), np.asarray(x)
  h, w = np.asarray(cells).shape[1:] if cells is not None else grid
  ring = border_ring(h, w)
  common = collections.Counter(zip(y.tolist(), x.tolist())).most_common(4)
  share = np.zeros((h, w))
  np.add.at(share, (y, x), 1.0 / max(len(y), 1))
  out = {"on_border": float(ring[y, x].mean()), "chance_on_border": float(ring.mean()),
         "common_cells": [[int(a), int(b), n] for (a, b), n in common],
         "peak_share": share.round(4).tolist()}
  if cells is not None:
    cells = np.asarray(cells, bool)
    on_object = cells[np.arange(len(y)), y, x]
    out.update(on_object=float(on_object.mean()), chance_on_object=float(cells.mean()),
               items={"on_object": on_object.astype(int).tolist()})
  return out
