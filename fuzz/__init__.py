"""Fuzzing of the telegram core and the collector (see docs/reliability.md).

``fuzz.harness`` holds the seeds, the mutators and the oracles; ``python -m fuzz.run``
is the long run; ``tests/test_fuzz.py`` runs a short, derandomized part in the suite.
"""
