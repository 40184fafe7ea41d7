"""Exposition text read back with prometheus_client's strict parser, one value at a time,
and checked by ``promtool check metrics``."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.binaries import require_binary

LabelKey = frozenset[tuple[str, str]]


def series(text: str) -> dict[str, dict[LabelKey, float]]:
    """Exposition text -> {sample name: {frozenset of labels: value}} (strict parser)."""
    found: dict[str, dict[LabelKey, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = frozenset(sample.labels.items())
            assert key not in found.get(sample.name, {}), f"duplicate series {sample}"
            found.setdefault(sample.name, {})[key] = sample.value
    return found


def value(found: Mapping[str, Mapping[LabelKey, float]], name: str, **labels: str) -> float | None:
    """One series' value, or None when the series is absent."""
    return found.get(name, {}).get(frozenset(labels.items()))


def promtool_metrics(text: str) -> subprocess.CompletedProcess[str]:
    """``promtool check metrics`` on ``text`` (skips, or fails under CI, without promtool)."""
    return subprocess.run(
        [require_binary("promtool"), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
