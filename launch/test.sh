#!/usr/bin/env bash
# Sets up .venv (if needed) and runs the unit tests: bash launch/test.sh [pytest args]
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh" test "[test]"
export PYTHONUNBUFFERED=1
exec "$VENV/bin/python" -m pytest -n 2 --dist loadfile -q --durations=15 tests "$@"
