"""Structural checks of the Grafana dashboards and provisioning files.

Every dashboard must load, lay out its panels on Grafana's 24-column grid without overlaps,
query the templated Prometheus datasource, filter on job/instance/meter, refer only to
metrics the exporter serves or the rule files record, and contain PromQL that parses (checked
with ``promtool check rules`` on a throwaway rule file).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.binaries import require_binary
from tests.helpers.dashboards import (
    DASHBOARD_DIR,
    ROOT,
    Dashboard,
    Panel,
    dashboard_files,
    exported_metrics,
    iter_dashboard_queries,
    iter_panels,
    iter_variable_queries,
    load_dashboard,
    metric_names,
    recorded_names,
    selectors,
    substitute,
    variable_values,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
FILES = dashboard_files()
PROVISIONING = ROOT / "grafana" / "provisioning"


def _boards() -> list[Any]:
    return [pytest.param(path, id=path.stem) for path in FILES]


def _content_panels(board: Dashboard) -> list[Panel]:
    return [panel for panel in iter_panels(board) if panel["type"] != "row"]


def _rectangles_overlap(a: dict[str, int], b: dict[str, int]) -> bool:
    return (
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


def test_dashboards_are_there() -> None:
    names = {path.name for path in FILES}
    assert {"p1-home.json", "p1-phases.json", "p1-exporter-health.json"} <= names
    boards = [load_dashboard(path) for path in FILES]
    uids = [board["uid"] for board in boards]
    titles = [board["title"] for board in boards]
    assert len(set(uids)) == len(uids), uids
    assert len(set(titles)) == len(titles), titles


@pytest.mark.parametrize("path", _boards())
def test_dashboard_top_level(path: Path) -> None:
    board = load_dashboard(path)
    assert isinstance(board.get("uid"), str) and 0 < len(board["uid"]) <= 40
    assert board.get("title")
    assert 36 <= board["schemaVersion"] <= 41
    # Provisioned dashboards carry no numeric id and need no __inputs (no import wizard).
    assert board.get("id") is None
    assert "__inputs" not in board
    assert "p1-exporter" in board["tags"]
    assert board["time"]["to"] == "now"
    assert board["panels"], "a dashboard without panels"


@pytest.mark.parametrize("path", _boards())
def test_panel_ids_are_unique(path: Path) -> None:
    panels = list(iter_panels(load_dashboard(path)))
    assert all(isinstance(panel.get("id"), int) for panel in panels), [p["title"] for p in panels]
    ids: list[int] = [panel["id"] for panel in panels]
    duplicates = sorted({panel_id for panel_id in ids if ids.count(panel_id) > 1})
    assert not duplicates, f"duplicate panel ids {duplicates}"


@pytest.mark.parametrize("path", _boards())
def test_grid_positions(path: Path) -> None:
    board = load_dashboard(path)
    for panel in iter_panels(board):
        pos = panel.get("gridPos")
        assert isinstance(pos, dict), panel["title"]
        for key in ("x", "y", "w", "h"):
            assert isinstance(pos.get(key), int), (panel["title"], key)
        assert pos["x"] >= 0 and pos["y"] >= 0 and pos["w"] >= 1 and pos["h"] >= 1
        assert pos["x"] + pos["w"] <= 24, f"{panel['title']!r} is wider than the grid"
    # Panels shown together must not overlap: the top level, and each collapsed row's panels.
    layers = [board["panels"]] + [p["panels"] for p in board["panels"] if p.get("panels")]
    for layer in layers:
        for i, first in enumerate(layer):
            for second in layer[i + 1 :]:
                assert not _rectangles_overlap(first["gridPos"], second["gridPos"]), (
                    f"{first['title']!r} overlaps {second['title']!r}"
                )


@pytest.mark.parametrize("path", _boards())
def test_rows(path: Path) -> None:
    board = load_dashboard(path)
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert "panels" not in panel or not panel["panels"], panel["title"]
            continue
        assert panel["gridPos"]["w"] == 24 and panel["gridPos"]["h"] == 1
        # Grafana keeps panels inside a row only while it is collapsed.
        if panel["panels"]:
            assert panel["collapsed"] is True, panel["title"]
            for child in panel["panels"]:
                assert child["type"] != "row"
                assert child["gridPos"]["y"] > panel["gridPos"]["y"]


@pytest.mark.parametrize("path", _boards())
def test_panels_use_the_datasource_variable(path: Path) -> None:
    for panel in _content_panels(load_dashboard(path)):
        assert panel.get("datasource") == DATASOURCE, panel["title"]
        assert panel.get("targets"), f"{panel['title']!r} has no queries"
        ref_ids = [target.get("refId") for target in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids), panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource") == DATASOURCE, panel["title"]
            assert isinstance(target.get("expr"), str) and target["expr"].strip(), panel["title"]


@pytest.mark.parametrize("path", _boards())
def test_templating(path: Path) -> None:
    board = load_dashboard(path)
    variables = {var["name"]: var for var in board["templating"]["list"]}
    assert {"datasource", "job", "instance", "meter"} <= set(variables)
    datasource = variables["datasource"]
    assert datasource["type"] == "datasource" and datasource["query"] == "prometheus"
    for name in ("job", "instance", "meter"):
        var = variables[name]
        assert var["type"] == "query", name
        assert var["datasource"] == DATASOURCE, name
        assert var["query"].startswith("label_values(p1_up"), name
        assert var["query"].endswith(f", {name})"), name
    # Each selector narrows the next one.
    assert "$job" in variables["instance"]["query"]
    assert "$job" in variables["meter"]["query"] and "$instance" in variables["meter"]["query"]
    for name in ("instance", "meter"):
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"


@pytest.mark.parametrize("path", _boards())
def test_queries_filter_on_the_selector_variables(path: Path) -> None:
    """Every p1_ selector honours $job and $instance, and $meter unless it has no meter."""
    for panel in _content_panels(load_dashboard(path)):
        for target in panel["targets"]:
            for metric, labels in selectors(target["expr"]):
                assert {"job", "instance"} <= labels, (panel["title"], metric)
                if metric != "p1_exporter_build_info":
                    assert "meter" in labels, (panel["title"], metric)


def test_home_dashboard_today_and_prices() -> None:
    board = load_dashboard(DASHBOARD_DIR / "p1-home.json")
    # "Today" panels use $__range, which only means "today" with a range starting at midnight.
    assert board["time"]["from"] == "now/d"
    variables = {var["name"]: var for var in board["templating"]["list"]}
    for name in ("price_tariff1", "price_tariff2", "price_gas"):
        assert variables[name]["type"] in ("textbox", "constant", "custom"), name
        float(variable_values(board)[name])
    exprs = {
        panel["title"]: [t["expr"] for t in panel.get("targets", [])]
        for panel in iter_panels(board)
    }
    assert any(
        "$price_tariff1" in e and "$price_tariff2" in e for e in exprs["Electricity cost today"]
    )
    assert any("$price_gas" in e for e in exprs["Gas cost today"])
    assert all("[$__range]" in e for e in exprs["Import today"])
    # The per-day bars cover 30 days whatever the dashboard range is.
    daily = next(p for p in iter_panels(board) if p["title"].startswith("Energy per day"))
    assert daily["timeFrom"] == "30d" and daily["interval"] == "1d"
    # Belgian capacity tariff: a row with average demand, month peak and its time.
    row = next(p for p in board["panels"] if p["type"] == "row" and "capacity" in p["title"])
    used = set().union(*(metric_names(t["expr"]) for p in row["panels"] for t in p["targets"]))
    assert {
        "p1_demand_average_watts",
        "p1_demand_month_peak_watts",
        "p1_demand_month_peak_timestamp_seconds",
    } <= used


def test_phases_and_health_dashboards_cover_their_metrics() -> None:
    wanted = {
        "p1-phases.json": {
            "p1_phase_voltage_volts",
            "p1_phase_current_amperes",
            "p1_phase_power_import_watts",
            "p1_phase_power_export_watts",
        },
        "p1-exporter-health.json": {
            "p1_telegrams_total",
            "p1_last_telegram_timestamp_seconds",
            "p1_up",
            "p1_source_connects_total",
            "p1_bytes_read_total",
        },
    }
    for name, metrics in wanted.items():
        board = load_dashboard(DASHBOARD_DIR / name)
        used = set().union(
            *(metric_names(t["expr"]) for p in iter_panels(board) for t in p.get("targets", []))
        )
        assert metrics <= used, (name, metrics - used)
    health = load_dashboard(DASHBOARD_DIR / "p1-exporter-health.json")
    exprs = [t["expr"] for p in iter_panels(health) for t in p.get("targets", [])]
    assert any(e.startswith("time() - p1_last_telegram_timestamp_seconds") for e in exprs)


def test_metric_names_exist() -> None:
    known = set(exported_metrics()) | recorded_names()
    queries = list(iter_dashboard_queries())
    assert len(queries) > 40
    unknown = {
        (board, panel, name)
        for board, panel, expr in queries
        for name in metric_names(expr)
        if name not in known
    }
    assert not unknown, sorted(unknown)
    for board, var, query in iter_variable_queries():
        assert metric_names(query) <= known, (board, var)


def test_label_matchers_exist() -> None:
    metrics = exported_metrics()
    bad = {
        (board, panel, metric, label)
        for board, panel, expr in iter_dashboard_queries()
        for metric, labels in selectors(expr)
        for label in labels
        if metric in metrics and label not in metrics[metric]
    }
    assert not bad, sorted(bad)


def test_substitution_leaves_no_variables() -> None:
    for board, panel, expr in iter_dashboard_queries():
        assert "$" not in expr and "[[" not in expr, (board, panel, expr)
    assert (
        substitute(
            'rate(x{meter=~"$meter"}[$__rate_interval])', variable_values({}) | {"meter": "main"}
        )
        == 'rate(x{meter=~"main"}[1m])'
    )
    assert substitute("${__range_s}", variable_values({})) == "3600"
    with pytest.raises(KeyError):
        substitute("$nope", variable_values({}))


def test_queries_parse(tmp_path: Path) -> None:
    """promtool has no expression checker, so wrap every query in a recording rule."""
    promtool = require_binary("promtool")
    queries = list(iter_dashboard_queries())
    rules = [
        {"record": f"dashboard_check:query_{index}", "expr": expr}
        for index, (_, _, expr) in enumerate(queries)
    ]
    rule_file = tmp_path / "dashboard-queries.rules.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(rule_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    index = "\n".join(f"query_{i}: {b} / {p}: {e}" for i, (b, p, e) in enumerate(queries))
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n{index}"
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


def test_datasource_provisioning() -> None:
    config = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    assert config["apiVersion"] == 1
    (source,) = config["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert source["uid"] and source["isDefault"] is True
    assert source["jsonData"]["timeInterval"] == "15s"


def test_dashboard_provisioning_is_documented() -> None:
    config = yaml.safe_load((PROVISIONING / "dashboards" / "p1.yml").read_text())
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    assert path.startswith("/")
    docs = (ROOT / "docs" / "dashboards.md").read_text()
    assert path in docs
    assert "provisioning/datasources/prometheus.yml" in docs
    for name in ("price_tariff1", "price_tariff2", "price_gas", "$__range", "now/d"):
        assert name in docs, name
