"""The one entry point.

  python -m learning_words.main --config=configs/NAME.py --workdir=DIR --mode=MODE
      [--config.key=value ...] [--verbosity=1]

Modes: `pipeline` (every stage in order, skipping finished ones) or one stage by name
(pipeline.STAGES), or a tool (pipeline.TOOLS). `--mode=eval` evaluates the preset's runs
(`train.kinds`, or the experiment's arms; every run under WORKDIR/runs when it names none, or
`--config.train.name=RUN`) from its best checkpoint (`--config.evals.checkpoint=`
`latest`, a kept step, or a checkpoint folder's path RUN/checkpoints/STEP) with the evaluators
named in `--config.evals.names`, writing WORKDIR/runs/RUN/eval/*.json, and prints their tables.
The first line names the JAX backend and the device count. The terminal shows stages, progress
and warnings; everything else goes to WORKDIR/logs/ (`--verbosity=1`: everything on the terminal too). A bad file, flag or
missing stage output ends in one line saying what to do, and exit status 2.
"""
import os
import re
import sys

import jax
from absl import app, flags, logging
from etils import epath
from ml_collections import config_flags

from learning_words import pipeline, workdir as wd
from learning_words.common import console, distributed, errors, files

files.emulator_defaults()  # before any storage client starts
config_flags.DEFINE_config_file("config", None, "Config file (configs/NAME.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Where datasets, checkpoints and reports go: a folder or "
                    "gs://BUCKET/PATH (with the [gcs] extra).")
flags.DEFINE_enum("mode", "pipeline", pipeline.MODES, "What to run.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  console.pace_progress()
  verbose = FLAGS.verbosity >= 1
  log = None
  bucket_gone = False
  try:
    wd.check(FLAGS.workdir)
    files.reach(FLAGS.workdir)
    try:
      epath.Path(FLAGS.workdir).mkdir(parents=True, exist_ok=True)
    except Exception as e:  # pylint: disable=broad-except
      error = files.storage_error(FLAGS.workdir, e)
      if error is None:
        raise
      raise error from e
    log = console.setup(wd.path(FLAGS.workdir, "logs"), FLAGS.mode, verbose)
    caught = files.start_storage(FLAGS.workdir)
    if caught:
      logging.info("the storage client, starting: %s", caught)
    distributed.maybe_initialize()
    console.say(f"[{FLAGS.mode}] JAX {jax.__version__} on {jax.default_backend()}: "
                f"{jax.device_count()} devices in {jax.process_count()} processes; workdir "
                f"{FLAGS.workdir}; log {log}")
    pipeline.run(FLAGS.mode, FLAGS.config, FLAGS.workdir)
  except errors.UserError as e:
    if verbose:
      raise
    if log:  # the traceback, for the log file only (INFO stays off the terminal)
      logging.info("stopped by %s", type(e).__name__, exc_info=True)
    # A bucket that stopped answering will not take the log either: name the local copy.
    bucket_gone = isinstance(e, errors.StorageError) and files.is_cloud(log or "")
    details = console.local_log() if bucket_gone else log
    print(f"error: {e}" + (f" (details: {details})" if details else ""), file=sys.stderr)
    sys.exit(2)
  except Exception:  # a bug: its traceback on the terminal (as Python prints it) and in the log
    if log and not verbose:
      logging.info("crashed", exc_info=True)
    raise
  finally:
    try:
      if not bucket_gone:
        console.keep_log()
    except Exception:  # pylint: disable=broad-except
      print(f"note: the log could not be copied to {log}; it is kept at "
            f"{console.local_log()}", file=sys.stderr)


HELP_FLAGS = ("--help", "-h", "-?", "--helpshort", "--helpfull")


def refuse(text: str):
  """A mistake on the command line: one line, exit status 2, nothing created."""
  print(f"error: {text} (python -m learning_words.main --help shows the flags; the config keys "
        "are in docs/configs.md)", file=sys.stderr)
  sys.exit(2)


def config_key_error(e: Exception) -> str:
  """ml_collections' unknown-key error (a KeyError or AttributeError whose text is the key and
  maybe a suggestion on a second line) as one line."""
  text = str(e).replace("\\n", "\n").replace("\\'", "'")
  key = re.search(r"'([^'\s]+)'", text)
  hint = re.search(r"(Did you mean [^?]*\?)", text)
  return (f"unknown config key {key.group(1) if key else text.strip()!r}"
          + (f" ({hint.group(1)[0].lower() + hint.group(1)[1:]})" if hint else ""))


def parse_flags(argv):
  """absl's flag parsing, with the config file loaded at once, so that a bad flag, value, key or
  config file ends in one line with exit status 2 before anything is created; --help prints the
  usage and the flags and exits 0."""
  if any(a in HELP_FLAGS for a in argv[1:]):
    print(__doc__.strip() + "\n\nFlags:\n" + FLAGS.module_help(sys.modules[__name__]))
    sys.exit(0)
  try:
    rest = FLAGS(argv)
  except flags.Error as e:
    refuse(str(e).replace("\n", " "))
  except (KeyError, AttributeError) as e:
    refuse(config_key_error(e))
  except (TypeError, ValueError) as e:
    refuse(" ".join(str(e).split()))
  try:
    FLAGS.config.get("seed")  # a file that failed to load raises only when it is read
  except (OSError, SyntaxError, ImportError) as e:
    path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), "?")
    file = path.split(":", 1)[0]
    presets = ", ".join(sorted(p.name for p in epath.Path("configs").glob("[a-z]*.py")))
    refuse(f"--config={path}: " + (f"no such file{'; the presets: configs/{' + presets + '}' if presets else ''}"
                                   if not os.path.exists(file) else
                                   f"cannot load it ({' '.join(str(e).split())})"))
  except (KeyError, AttributeError) as e:
    refuse(config_key_error(e))
  except (TypeError, ValueError, flags.Error) as e:
    refuse(" ".join(str(e).split()))
  return rest


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
