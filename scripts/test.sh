#!/bin/sh
# Set up a virtual environment and run every check: ruff, mypy and the test suite.
# Extra arguments go to pytest, e.g. `sh scripts/test.sh -k framing -x`.
# PYTHON and VENV choose the interpreter and the venv (scripts/venv.sh), e.g.
# `PYTHON=/usr/bin/python3 VENV=.venv-debian sh scripts/test.sh`.
set -eu
cd "$(dirname "$0")/.."
. scripts/venv.sh
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test]'
echo "== ruff"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
echo "== mypy"
"$VENV/bin/mypy"
echo "== pytest"
exec "$VENV/bin/python" -m pytest "$@"
