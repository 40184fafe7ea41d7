#!/bin/sh
# Set up a virtual environment and run the exporter with its built-in simulated meter.
# Then open http://localhost:9357/ . Extra arguments go to p1-exporter.
set -eu
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
exec .venv/bin/p1-exporter --demo "$@"
