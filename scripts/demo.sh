#!/bin/sh
# Set up a virtual environment and run the exporter with its built-in simulated meter.
# Then open http://localhost:9357/ . Extra arguments go to p1-exporter.
# PYTHON and VENV choose the interpreter and the venv (scripts/venv.sh).
set -eu
cd "$(dirname "$0")/.."
. scripts/venv.sh
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e .
exec "$VENV/bin/p1-exporter" --demo "$@"
