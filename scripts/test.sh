#!/bin/sh
# Set up a virtual environment and run every check: ruff, mypy and the test suite.
# Extra arguments go to pytest, e.g. `sh scripts/test.sh -k framing -x`.
set -eu
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
exec .venv/bin/python -m pytest "$@"
