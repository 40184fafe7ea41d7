"""PromQL queries of the Grafana dashboards, with Grafana's variables filled in.

Shared by the structural dashboard tests and by tests that run every query against a live
Prometheus. Also says which metric names the dashboards and rule files may use: those in the
exporter's catalog (p1_exporter/metrics/catalog.py) and those the rule files record.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from p1_exporter.metrics.catalog import METRICS

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
ALERTING_RULES = ROOT / "p1-exporter.rules.yml"
RECORDING_RULES = ROOT / "p1-exporter.recording.rules.yml"

#: Grafana's built-in variables as a 15 s scrape interval and a one-hour range give them.
BUILTIN_VALUES: dict[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}
#: The dashboards' selector variables, as set for the default single-meter setup.
SELECTOR_VALUES: dict[str, str] = {"job": "p1", "instance": ".*", "meter": "main"}

#: Target labels Prometheus adds to every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})

_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_P1_NAME = re.compile(r"(?<![\w:])p1_[a-z0-9_]+(?![\w:])")
_RECORDED_NAME = re.compile(r"(?<![\w:.])[a-zA-Z_][a-zA-Z0-9_]*:[a-zA-Z0-9_:]*[a-zA-Z0-9_]")
_SELECTOR = re.compile(r"(?<![\w:])(p1_[a-z0-9_]+)(?![\w:])\s*(?:\{([^}]*)\})?")
_MATCHER = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")

Dashboard = dict[str, Any]
Panel = dict[str, Any]


def exported_metrics() -> dict[str, frozenset[str]]:
    """Every series name the exporter serves (from its catalog) -> the labels it may carry."""
    metrics: dict[str, frozenset[str]] = {}
    for name, spec in METRICS.items():
        labels = frozenset(spec.labels) | TARGET_LABELS
        metrics[name] = labels | {"meter"} if spec.per_meter else labels
    return metrics


def recorded_names() -> set[str]:
    """Names of the series recorded by the two rule files."""
    names: set[str] = set()
    for path in (ALERTING_RULES, RECORDING_RULES):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names.update(rule["record"] for rule in group["rules"] if "record" in rule)
    return names


def strip_strings(expr: str) -> str:
    """``expr`` with its string literals emptied, so label values cannot look like names."""
    return _STRING.sub('""', expr)


def metric_names(expr: str) -> set[str]:
    """p1_ metric names and recorded (colon) names that ``expr`` refers to."""
    bare = strip_strings(expr)
    return set(_P1_NAME.findall(bare)) | set(_RECORDED_NAME.findall(bare))


def selectors(expr: str) -> list[tuple[str, frozenset[str]]]:
    """(metric, label names it is matched on) for each p1_ metric in ``expr``, in order.

    A metric written without braces gets an empty set.
    """
    return [
        (match.group(1), frozenset(_MATCHER.findall(match.group(2) or "")))
        for match in _SELECTOR.finditer(strip_strings(expr))
    ]


def dashboard_files() -> list[Path]:
    """The dashboard JSON files, sorted by name."""
    return sorted(DASHBOARD_DIR.glob("*.json"))


def load_dashboard(path: Path) -> Dashboard:
    """Parse one dashboard file."""
    board: Dashboard = json.loads(path.read_text(encoding="utf-8"))
    return board


def iter_panels(board: Dashboard) -> Iterator[Panel]:
    """Every panel, rows included, with the panels of collapsed rows after their row."""
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def variable_values(
    board: Dashboard, selector_values: dict[str, str] | None = None
) -> dict[str, str]:
    """What each variable of ``board`` stands for in the substituted queries."""
    selected = {**SELECTOR_VALUES, **(selector_values or {})}
    values = dict(BUILTIN_VALUES)
    for var in board.get("templating", {}).get("list", []):
        name = var["name"]
        if name in selected:
            values[name] = selected[name]
        elif var["type"] in ("textbox", "constant", "custom"):
            current = var.get("current") or {}
            value = current.get("value", var.get("query", ""))
            values[name] = ",".join(value) if isinstance(value, list) else str(value)
        elif var["type"] == "query" and var.get("includeAll"):
            values[name] = var.get("allValue") or ".*"
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace Grafana variables (``$x``, ``${x}``, ``${x:fmt}``, ``[[x]]``) in ``expr``.

    Raises KeyError naming a variable that ``values`` does not know.
    """

    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name not in values:
            raise KeyError(f"unknown Grafana variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(repl, expr)


def iter_dashboard_queries(
    selector_values: dict[str, str] | None = None,
) -> Iterator[tuple[str, str, str]]:
    """(dashboard title, panel title, PromQL with variables substituted) for every target.

    The per-day and per-hour bar panels use ``offset -1d`` / ``offset -1h`` so that each bar
    sits at the start of its period. Evaluated as an instant query at "now" their window lies
    in the future and they return nothing; run them as range queries (step 1d or 1h), as
    Grafana does, to get data.
    """
    for path in dashboard_files():
        board = load_dashboard(path)
        values = variable_values(board, selector_values)
        for panel in iter_panels(board):
            for target in panel.get("targets", []):
                yield board["title"], panel.get("title", ""), substitute(target["expr"], values)


def iter_variable_queries() -> Iterator[tuple[str, str, str]]:
    """(dashboard title, variable name, label_values query) for every query variable."""
    for path in dashboard_files():
        board = load_dashboard(path)
        for var in board.get("templating", {}).get("list", []):
            if var["type"] == "query":
                query = var["query"]
                text = query["query"] if isinstance(query, dict) else query
                yield board["title"], var["name"], str(text)
