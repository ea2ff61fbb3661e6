"""Metric writer: absl log lines plus TensorBoard event files through tensorboardX; and the reader
of those files' scalars (for the report's training curves).

CLU's writers import TensorFlow at package import, and accelerator hosts may lack it; tensorboardX
writes the same event files with protobuf alone. Only the main process writes. Reading needs no
TensorBoard either: an event file is a sequence of TFRecords (uint64 length, uint32 CRC, an Event
proto, uint32 CRC), parsed with tensorboardX's own Event proto.

A gs:// logdir: the event file is written in its local mirror and copied up whole at each flush
and at close (an object cannot be appended to; tensorboardX's own bucket writer uploads the same
way, but again from an exit hook, which stalls when the bucket is gone).
"""
import os
import struct
import time

import numpy as np
from absl import logging
from etils import epath

from learning_words.common import files


class StepRate:
  """Steps per second between calls; time spent on other work can be excluded."""

  def __init__(self, step: int):
    self._t, self._step = time.time(), step

  def exclude(self, seconds: float):
    self._t += seconds

  def __call__(self, step: int) -> float:
    now = time.time()
    rate = (step - self._step) / max(now - self._t, 1e-9)
    self._t, self._step = now, step
    return rate


class Writer:
  """write_scalars / write_images / flush / close, like CLU's MetricWriter."""

  def __init__(self, logdir, is_main: bool = True):
    self._writer, self._logdir = None, logdir
    if is_main:
      import tensorboardX  # pylint: disable=g-import-not-at-top
      self._writer = tensorboardX.SummaryWriter(logdir=os.fspath(files.mirror(logdir)))

  def write_scalars(self, step: int, scalars: dict):
    if self._writer is None:
      return
    logging.info("[%d] %s", step, ", ".join(f"{k}={float(v):.5g}" for k, v in scalars.items()))
    for key, value in scalars.items():
      self._writer.add_scalar(key, float(value), global_step=step)

  def write_images(self, step: int, images: dict):
    """images: {name: uint8 [h, w, 3]}."""
    if self._writer is None:
      return
    for key, value in images.items():
      self._writer.add_image(key, np.asarray(value), global_step=step, dataformats="HWC")

  def flush(self):
    if self._writer is not None:
      self._writer.flush()
      self._upload()

  def close(self):
    if self._writer is not None:
      self._writer.close()
      self._writer = None
      self._upload()

  def _upload(self):
    if files.is_cloud(self._logdir):
      files.upload(files.mirror(self._logdir), self._logdir)


def read_scalars(logdir) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{tag: (steps int [n], values float [n])} of the scalars in logdir's event files, by step.

  Files are read in name order (tensorboardX names them by creation time); a step written again
  (a resumed run redoes the steps after its last checkpoint) keeps its latest value. A truncated
  last record (a killed writer) is ignored. No event files: {}.
  """
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  series: dict[str, dict[int, float]] = {}
  folder = epath.Path(logdir)
  paths = sorted(folder.glob("events.out.tfevents.*")) if folder.is_dir() else []
  for path in paths:
    blob = path.read_bytes()
    pos = 0
    while pos + 12 <= len(blob):
      (length,) = struct.unpack_from("<Q", blob, pos)
      if pos + 12 + length + 4 > len(blob):
        break
      event = event_pb2.Event.FromString(blob[pos + 12:pos + 12 + length])
      pos += 12 + length + 4
      for value in event.summary.value:
        if value.WhichOneof("value") == "simple_value":
          series.setdefault(value.tag, {})[int(event.step)] = float(value.simple_value)
  out = {}
  for tag, points in series.items():
    steps = np.array(sorted(points), np.int64)
    out[tag] = (steps, np.array([points[s] for s in steps], np.float64))
  return out
