"""Golden files: the exact /metrics text for a fixture telegram, byte for byte.

Any change to a name, a HELP text, a label, the order or the number formatting shows up
here as a diff. Only lines that depend on the environment are normalised (explicitly,
by :func:`normalise`): ``p1_exporter_build_info``'s version labels and the value of
``p1_last_telegram_timestamp_seconds`` (arrival time on a live exporter).

To regenerate after a deliberate change, run::

    P1_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py

then review ``git diff tests/golden/`` as carefully as code.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from p1_exporter import parse
from p1_exporter.metrics.collector import telegram_exposition
from tests.helpers.exporter import run_exporter
from tests.helpers.fixtures import FIXTURES, V5, load

GOLDEN = Path(__file__).resolve().parent / "golden"
#: fixture -> golden file. v5: the Dutch reference; fluvius: Belgian capacity tariff,
#: gas on 24.2.3 and water; eon_hu: reactive energy, quadrants, power factor, frequency;
#: smarty_lux: Luxembourg apparent power, limiter in kVA, fuse supervision, M-Bus breakers.
CASES = {
    "v5.txt": "v5.metrics.txt",
    "fluvius_v171.txt": "fluvius_v171.metrics.txt",
    "v5_eon_hu.txt": "v5_eon_hu.metrics.txt",
    "smarty_lux.txt": "smarty_lux.metrics.txt",
}
_BUILD_INFO = re.compile(
    r'^p1_exporter_build_info\{python_version="[^"]*",version="[^"]*"\} ', re.MULTILINE
)
_LAST_TELEGRAM = re.compile(r"^(p1_last_telegram_timestamp_seconds\{[^}]*\}) \S+$", re.MULTILINE)


def normalise(text: str) -> str:
    """Replace the environment-dependent values with fixed placeholders."""
    text, builds = _BUILD_INFO.subn(
        'p1_exporter_build_info{python_version="PYTHON",version="VERSION"} ', text
    )
    assert builds == 1, "p1_exporter_build_info missing or changed shape"
    text, stamps = _LAST_TELEGRAM.subn(r"\1 TIMESTAMP", text)
    assert stamps >= 1, "p1_last_telegram_timestamp_seconds missing"
    return text


def check_golden(actual: str, golden_name: str) -> None:
    path = GOLDEN / golden_name
    if os.environ.get("P1_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(actual, encoding="utf-8", newline="\n")
        pytest.skip(f"rewrote {path}; review the diff")
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, (
        f"/metrics output differs from {path} (P1_UPDATE_GOLDEN=1 regenerates it)"
    )


@pytest.mark.parametrize(("fixture", "golden"), CASES.items())
def test_exposition_matches_golden(fixture: str, golden: str) -> None:
    telegram = parse(load(fixture))
    check_golden(normalise(telegram_exposition(telegram)), golden)


@pytest.mark.integration
def test_decode_command_prints_the_golden_text() -> None:
    result = run_exporter("decode", "--format", "metrics", str(FIXTURES / "v5.txt"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n\n")  # the exposition's own newline, then print's
    expected = (GOLDEN / "v5.metrics.txt").read_text(encoding="utf-8")
    assert normalise(result.stdout[:-1]) == expected


def test_normalise_touches_only_the_environment_lines() -> None:
    text = telegram_exposition(parse(V5))
    before, after = text.splitlines(), normalise(text).splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert [b for _, b in changed] == [
        'p1_last_telegram_timestamp_seconds{meter="main"} TIMESTAMP',
        'p1_exporter_build_info{python_version="PYTHON",version="VERSION"} 1.0',
    ]
