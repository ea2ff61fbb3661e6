"""Metric writer: absl log lines plus TensorBoard event files through tensorboardX.

CLU's writers import TensorFlow at package import, and accelerator hosts may lack it; tensorboardX
writes the same event files with protobuf alone. Only the main process writes.
"""
import time

import numpy as np
from absl import logging


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

  def __init__(self, logdir: str, is_main: bool = True):
    self._writer = None
    if is_main:
      import tensorboardX  # pylint: disable=g-import-not-at-top
      self._writer = tensorboardX.SummaryWriter(logdir=logdir)

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

  def close(self):
    if self._writer is not None:
      self._writer.close()
