"""The Prometheus rule files and example configuration, checked and unit-tested with promtool.

``promtool test rules`` runs tests/rules/*.test.yml: each alert must fire on its trigger and
stay silent otherwise, and each recording rule must give the expected numbers. The checks here
also make sure every alert and recording rule has such a test, and that the summer-time rule
for local time agrees with the exporter's own clock code.
"""

from __future__ import annotations

import calendar
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from p1_exporter.core.clock import is_eu_summer_time
from tests.helpers.binaries import require_binary
from tests.helpers.dashboards import (
    ALERTING_RULES,
    RECORDING_RULES,
    ROOT,
    exported_metrics,
    metric_names,
    recorded_names,
)

RULE_FILES = (ALERTING_RULES, RECORDING_RULES)
TEST_FILES = sorted((ROOT / "tests" / "rules").glob("*.test.yml"))
EXAMPLE_CONFIG = ROOT / "prometheus.yml.example"
ALERTING_DOC = ROOT / "docs" / "alerting.md"
SEVERITIES = {"critical", "warning", "info"}
# level:metric:operations, with the operations part optional.
RECORD_NAME = re.compile(r"^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*(:[a-z0-9_]+)?$")
THRESHOLD_EXPR = re.compile(r"^vector\(-?[0-9]+(\.[0-9]+)?\)$")


def _rules(path: Path) -> list[dict[str, Any]]:
    groups = yaml.safe_load(path.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules(ALERTING_RULES) if "alert" in rule]


def _records(path: Path) -> list[dict[str, Any]]:
    return [rule for rule in _rules(path) if "record" in rule]


def _unit_tests() -> list[dict[str, Any]]:
    return [test for path in TEST_FILES for test in yaml.safe_load(path.read_text())["tests"]]


def _promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(path: Path) -> None:
    result = _promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_there_are_unit_tests() -> None:
    assert len(TEST_FILES) >= 3, TEST_FILES


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
@pytest.mark.slow
def test_promtool_unit_tests(path: Path) -> None:
    result = _promtool("test", "rules", path.name, cwd=path.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_fires_and_stays_silent_in_some_test() -> None:
    fired: set[str] = set()
    silent: set[str] = set()
    for test in _unit_tests():
        for case in test.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else silent).add(case["alertname"])
    names = {rule["alert"] for rule in _alerts()}
    assert len(names) >= 13
    assert not names - fired, f"never seen firing: {sorted(names - fired)}"
    assert not names - silent, f"never seen silent: {sorted(names - silent)}"
    assert not (fired | silent) - names, "tests name alerts that do not exist"


def test_every_recording_rule_is_checked_in_some_test() -> None:
    tested = {
        case["expr"].strip() for test in _unit_tests() for case in test.get("promql_expr_test", [])
    }
    records = [rule["record"] for rule in _records(RECORDING_RULES)]
    records += [
        rule["record"]
        for rule in _records(ALERTING_RULES)
        if not rule["record"].startswith("p1:threshold_")
    ]
    untested = [name for name in records if name not in tested]
    assert not untested, untested


def test_alerts_have_severity_and_annotations() -> None:
    for rule in _alerts():
        assert rule["alert"].startswith("P1"), rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        for key in ("summary", "description"):
            assert rule["annotations"].get(key, "").strip(), (rule["alert"], key)


def test_recording_rule_names() -> None:
    for path in RULE_FILES:
        for rule in _records(path):
            assert RECORD_NAME.match(rule["record"]), rule["record"]


def test_thresholds_are_plain_numbers_used_by_alerts_and_documented() -> None:
    thresholds = [r for r in _records(ALERTING_RULES) if r["record"].startswith("p1:threshold_")]
    assert len(thresholds) >= 10
    alert_exprs = "\n".join(rule["expr"] for rule in _alerts())
    docs = ALERTING_DOC.read_text()
    for rule in thresholds:
        assert THRESHOLD_EXPR.match(rule["expr"].strip()), rule["record"]
        assert rule["record"] in alert_exprs, f"{rule['record']} is used by no alert"
        assert rule["record"] in docs, f"{rule['record']} is not in docs/alerting.md"
    for rule in _alerts():
        assert f"### {rule['alert']}" in docs, f"{rule['alert']} is not in docs/alerting.md"


def test_rules_use_known_metrics() -> None:
    known = set(exported_metrics()) | recorded_names()
    for path in RULE_FILES:
        for rule in _rules(path):
            unknown = metric_names(rule["expr"]) - known
            assert not unknown, (rule.get("alert") or rule.get("record"), unknown)


def _dst_switches(year: int) -> list[int]:
    """01:00 UTC on the last Sundays of March and October."""
    moments = []
    for month in (3, 10):
        last = calendar.monthrange(year, month)[1]
        day = last - (calendar.weekday(year, month, last) + 1) % 7
        moments.append(calendar.timegm((year, month, day, 1, 0, 0, 0, 0, 0)))
    return moments


def test_utc_offset_rule_follows_eu_summer_time(tmp_path: Path) -> None:
    """Evaluate p1:local_utc_offset_hours's expression around every switch from 2020 to 2035.

    promtool's clock can be set to any moment through eval_time (seconds since 1970), so the
    expression is evaluated directly, against the exporter's own summer-time rule.
    """
    (expr,) = [
        r["expr"] for r in _records(ALERTING_RULES) if r["record"] == "p1:local_utc_offset_hours"
    ]
    moments: list[int] = []
    for year in range(2020, 2036):
        for switch in _dst_switches(year):
            moments += [switch - 3600, switch - 1, switch, switch + 1, switch + 86400]
        moments.append(calendar.timegm((year, 1, 15, 12, 0, 0, 0, 0, 0)))
        moments.append(calendar.timegm((year, 7, 15, 23, 30, 0, 0, 0, 0)))
    cases = [
        {
            "expr": expr,
            "eval_time": f"{moment}s",
            "exp_samples": [{"labels": "{}", "value": 2 if is_eu_summer_time(moment) else 1}],
        }
        for moment in moments
    ]
    (tmp_path / "none.rules.yml").write_text("groups: []\n")
    test = {
        "rule_files": ["none.rules.yml"],
        # Nothing to evaluate between the checks: keep promtool's rule loop short.
        "evaluation_interval": "100000h",
        "tests": [{"interval": "1m", "promql_expr_test": cases}],
    }
    (tmp_path / "dst.test.yml").write_text(yaml.safe_dump(test))
    result = _promtool("test", "rules", "dst.test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sum(1 for c in cases if c["exp_samples"][0]["value"] == 2) > len(cases) / 3


def _example_variant() -> str:
    """The example config with its commented TLS/basic auth job swapped in for the plain one."""
    lines = EXAMPLE_CONFIG.read_text().splitlines()
    begin = lines.index("  # BEGIN TLS and basic auth variant")
    end = lines.index("  # END TLS and basic auth variant")
    job = lines.index("  - job_name: p1")
    variant = [
        line[:2] + line[4:] if re.match(r"^  # [- ]", line) else line
        for line in lines[begin + 1 : end]
    ]
    return "\n".join(lines[:job] + variant + lines[end + 1 :]) + "\n"


def test_example_config() -> None:
    result = _promtool("check", "config", EXAMPLE_CONFIG.name)
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    assert config["rule_files"] == [RECORDING_RULES.name, ALERTING_RULES.name]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "p1" and job["scrape_interval"] == "15s"
    assert job["static_configs"][0]["targets"] == ["localhost:9357"]


def test_example_config_tls_variant(tmp_path: Path) -> None:
    text = _example_variant()
    config = yaml.safe_load(text)
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "p1" and job["scrape_interval"] == "15s"
    assert job["scheme"] == "https"
    assert job["tls_config"]["ca_file"]
    assert job["basic_auth"]["username"] and job["basic_auth"]["password_file"]
    (tmp_path / "prometheus.yml").write_text(text)
    for path in RULE_FILES:
        (tmp_path / path.name).write_text(path.read_text())
    result = _promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
