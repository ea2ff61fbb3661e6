"""The one entry point.

  python -m learning_words.main --config=configs/NAME.py --workdir=DIR --mode=MODE \
      [--config.key=value ...]

Modes: `pipeline` (every available stage in order, skipping finished ones) or one stage by name.
`--mode=eval` evaluates every run under WORKDIR/runs (or `--config.train.name=RUN`) from its best
checkpoint (`--config.evals.checkpoint=latest` for the latest) with the evaluators named in
`--config.evals.names`, writing WORKDIR/runs/RUN/eval/*.json.
"""
import os
import sys

from absl import app, flags
from ml_collections import config_flags

# Config files import `configs.common`: make the repository root importable from any cwd.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from learning_words import distributed, pipeline  # pylint: disable=g-import-not-at-top

MODES = ("pipeline", *pipeline.STAGE_FNS, *pipeline.TOOL_FNS)

config_flags.DEFINE_config_file("config", None, "Config file (configs/NAME.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Where datasets, checkpoints and reports go.")
flags.DEFINE_enum("mode", "pipeline", MODES, "What to run.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  distributed.maybe_initialize()
  config, workdir = FLAGS.config, FLAGS.workdir
  os.makedirs(workdir, exist_ok=True)
  if FLAGS.mode == "pipeline":
    pipeline.run_pipeline(config, workdir)
  elif FLAGS.mode in pipeline.TOOL_FNS:
    print(pipeline.TOOL_FNS[FLAGS.mode](config, workdir))
  else:
    pipeline.run_stage(FLAGS.mode, config, workdir)


if __name__ == "__main__":
  app.run(main)
