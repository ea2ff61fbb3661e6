# Sourced by the launch scripts: create or update a venv (Python >= 3.11) and install the package
# with the exact versions the test suite passed with (launch/constraints.txt).
#   source launch/_venv.sh NAME EXTRAS     e.g. source launch/_venv.sh test "[test]"
# VENV (default .venv) picks the folder; CONSTRAINTS= (empty) installs the newest releases that
# setup.py admits (launch/pin.sh); LW_DRY_RUN=1 prints the commands instead of running them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV=${VENV:-.venv}
CONSTRAINTS=${CONSTRAINTS-launch/constraints.txt}
pick_python() {
  for py in "${PYTHON:-}" python3.12 python3.11 python3.13 python3; do
    [ -n "$py" ] || continue
    # Quiet: a pyenv shim of a version that is not installed prints "command not found".
    if command -v "$py" >/dev/null 2>&1 \
        && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
      echo "$py"; return 0
    fi
  done
  echo "error: need Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2
  return 1
}
venv_run() {  # runs its arguments, or prints them under LW_DRY_RUN=1
  if [ "${LW_DRY_RUN:-0}" = 1 ]; then echo "+ $*"; else "$@"; fi
}
PIN=()
[ -n "$CONSTRAINTS" ] && PIN=(-c "$CONSTRAINTS")
if [ ! -x "$VENV/bin/python" ]; then
  PY="$(pick_python)"
  [ "${LW_DRY_RUN:-0}" = 1 ] || echo "[setup] creating $VENV with $($PY --version)"
  venv_run "$PY" -m venv "$VENV"
fi
STAMP=$VENV/.installed-$(cat setup.py "${CONSTRAINTS:-/dev/null}" | sha1sum | cut -c1-12)-${1:-base}
if [ ! -f "$STAMP" ] || [ "${LW_DRY_RUN:-0}" = 1 ]; then
  [ "${LW_DRY_RUN:-0}" = 1 ] || echo "[setup] installing learning_words${2:-} into $VENV${CONSTRAINTS:+ (pinned: $CONSTRAINTS)}"
  venv_run "$VENV/bin/python" -m pip install -q --upgrade pip
  venv_run "$VENV/bin/python" -m pip install -q -e ".${2:-}" "${PIN[@]}"
  [ "${LW_DRY_RUN:-0}" = 1 ] || touch "$STAMP"
fi
