#!/usr/bin/env bash
# Sets up .venv (if needed) and runs the whole method on the embedded synthetic Audio-CLEVR world.
#   bash launch/quickstart.sh [WORKDIR] [--config.key=value ...]
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh" base ""
WORKDIR=workdir
if [ $# -gt 0 ] && [[ "$1" != --* ]]; then WORKDIR="$1"; shift; fi
export PYTHONUNBUFFERED=1
exec "$VENV/bin/python" -m learning_words.main --config=configs/quickstart.py \
  --workdir="$WORKDIR" --mode=pipeline "$@"
