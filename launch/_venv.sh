# Sourced by the launch scripts: create or update .venv (Python >= 3.11) and install the package.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
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
if [ ! -x .venv/bin/python ]; then
  PY="$(pick_python)"
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
STAMP=.venv/.installed-$(cat setup.py | sha1sum | cut -c1-12)-${1:-base}
if [ ! -f "$STAMP" ]; then
  echo "[setup] installing learning_words${2:-} into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".${2:-}"
  touch "$STAMP"
fi
