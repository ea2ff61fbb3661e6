"""The main job's console: stage lines, progress bars and the warnings that matter on the
terminal; everything else (absl / Orbax / TFDS INFO lines, Python warnings) in a log file.

Terminal: warnings and errors logged from this package's own files, and errors from anywhere.
Log file (WORKDIR/logs/<mode>_<time>_<host>_<pid>.log): every record at INFO and above, with its
traceback. With a gs:// workdir the file is written in its local mirror (common/files.mirror)
and copied to the bucket by `keep_log` (main calls it when the command ends, however it ends).
verbose (--verbosity=1 or more): the terminal shows everything too, as absl prints it.
"""
import logging as std_logging
import os
import socket
import sys
import time

import jax
import tqdm
from absl import logging

from learning_words.common import files

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_verbose = False
_log = None  # (where the log file is written, where it is kept)


class _OwnWarnings(std_logging.Filter):
  """Passes errors, and warnings raised in this package's files."""

  def filter(self, record) -> bool:
    return record.levelno >= std_logging.ERROR or (
        record.levelno >= std_logging.WARNING and record.pathname.startswith(_PACKAGE))


def setup(log_dir, mode: str, verbose: bool) -> str:
  """Routes logging as the module docstring says; returns the log file's path (where it is
  kept: on the bucket for a gs:// workdir)."""
  global _verbose, _log
  _verbose = verbose
  local_dir = files.mirror(log_dir)
  local_dir.mkdir(parents=True, exist_ok=True)
  # Named without asking jax for the process index: that would start the backend, whose first
  # INFO lines would reach the terminal before the handlers below are in place.
  name = f"{mode}_{time.strftime('%Y%m%d-%H%M%S')}_{socket.gethostname()}_{os.getpid()}.log"
  path = os.path.join(log_dir, name)
  _log = (local_dir / name, path)
  root = std_logging.getLogger()
  to_file = std_logging.FileHandler(local_dir / name)
  to_file.setFormatter(logging.PythonFormatter())
  to_file.setLevel(std_logging.INFO)
  root.addHandler(to_file)
  root.setLevel(min(root.level or std_logging.INFO, std_logging.INFO))
  std_logging.captureWarnings(True)
  if not verbose:
    absl_handler = logging.get_absl_handler()
    root.removeHandler(absl_handler)
    terminal = std_logging.StreamHandler(sys.stderr)
    terminal.setFormatter(std_logging.Formatter("%(levelname)s: %(message)s"))
    terminal.addFilter(_OwnWarnings())
    root.addHandler(terminal)
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    tfds.disable_progress_bar()  # TFDS's own bars; the stages draw theirs
  return path


PROGRESS_EVERY_S = 30  # outside a terminal: a progress bar writes at most this often


def pace_progress(stream=None):
  """Outside a terminal (SLURM output, nohup, CI logs) every progress-bar refresh would be kept
  as text: there, bars update every PROGRESS_EVERY_S seconds (the default mininterval of every
  tqdm bar), so a log holds each stage's line and a few progress lines. A TQDM_MININTERVAL the
  user set is kept."""
  stream = sys.stderr if stream is None else stream
  if (hasattr(stream, "isatty") and stream.isatty()) or "TQDM_MININTERVAL" in os.environ:
    return
  cls = tqdm.tqdm
  if getattr(cls.__init__, "_paced", False):
    return
  init = cls.__init__  # tqdm read its TQDM_* defaults when first imported: set this one here

  def paced(self, *args, **kwargs):
    kwargs.setdefault("mininterval", PROGRESS_EVERY_S)
    init(self, *args, **kwargs)

  paced._paced = True
  cls.__init__ = paced


def keep_log():
  """Copies the log file to the bucket (a gs:// workdir; locally it is already in place)."""
  if _log is not None and files.is_cloud(_log[1]):
    for handler in std_logging.getLogger().handlers:
      handler.flush()
    files.write_bytes(_log[1], _log[0].read_bytes())


def local_log():
  """Where this command's log file is being written."""
  return _log[0] if _log else None


def say(text: str):
  """One line on the terminal (first process only), also kept in the log file."""
  logging.info("%s", text)
  if not _verbose and jax.process_index() == 0:
    print(text, flush=True)
