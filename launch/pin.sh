#!/usr/bin/env bash
# Rewrites launch/constraints.txt, the exact versions the launch scripts install: the newest
# releases that setup.py admits go into a fresh venv, the test suite runs with them, and only if it
# passes are their versions written. CUDA libraries (nvidia-*, cuda-*, triton) are left out: the
# [cuda] extra resolves its own.
#   bash launch/pin.sh [pytest args]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export VENV="${TMPDIR:-/tmp}/learning_words_pin_$$" CONSTRAINTS=
source launch/_venv.sh test "[test]"
"$VENV/bin/python" -m pytest -n 2 --dist loadfile -q tests "$@"
{
  echo "# The exact versions the test suite passed with (Python $("$VENV/bin/python" -c \
'import platform; print(platform.python_version())')); written by: bash launch/pin.sh"
  "$VENV/bin/python" -m pip freeze --exclude-editable | grep -viE '^(nvidia-|cuda-|triton==)'
} > launch/constraints.txt
rm -rf "$VENV"
echo "[pin] wrote launch/constraints.txt"
