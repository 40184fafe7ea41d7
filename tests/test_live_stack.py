"""The bundle proven live: simulator -> exporter -> a real Prometheus with the rules loaded.

A simulated DSMR 5 meter streams over TCP (like a network dongle) to a real exporter
process, next to a simulated Belgian meter read in-process (``sim://``), so that every
dashboard panel, the capacity-tariff row included, has a meter that feeds it. Debian's
Prometheus scrapes the exporter every second with both rule files loaded. Then:

- every dashboard query (Grafana variables filled in, the meter variable set to both meters as
  "All" would) and every recording rule returns data through Prometheus's HTTP API;
- driving the simulator into a power spike shows P1PowerSpike pending, then firing. The copy
  of the alert rules that this test loads shortens that alert's ``for:`` from 5m to 4s; the
  expression and threshold are the shipped ones.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from p1_exporter.sim.meter import SimulatedMeter
from p1_exporter.sim.outputs import TcpSink
from tests.helpers.binaries import require_binary
from tests.helpers.dashboards import ALERTING_RULES, RECORDING_RULES, iter_dashboard_queries
from tests.helpers.wait import wait_for

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

SPIKE_FOR = "4s"
_NEGATIVE_OFFSET = re.compile(r"offset\s+-(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


@dataclass
class Stack:
    prometheus: str  # base URL
    exporter: str
    meter: SimulatedMeter

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        body = http_json(f"{self.prometheus}/api/v1/query?{urllib.parse.urlencode(params)}")
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Any]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": str(step)}
        body = http_json(f"{self.prometheus}/api/v1/query_range?{urllib.parse.urlencode(params)}")
        assert body["status"] == "success", body
        result: list[Any] = body["data"]["result"]
        return result

    def alerts(self, name: str) -> list[dict[str, Any]]:
        body = http_json(f"{self.prometheus}/api/v1/alerts")
        return [a for a in body["data"]["alerts"] if a["labels"]["alertname"] == name]


def _shortened_rules(target: Path) -> Path:
    rules = yaml.safe_load(ALERTING_RULES.read_text())
    found = False
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "P1PowerSpike":
                rule["for"] = SPIKE_FOR
                found = True
    assert found, "P1PowerSpike is missing from the alert rules"
    target.write_text(yaml.safe_dump(rules, sort_keys=False))
    return target


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus = require_binary("prometheus")
    tmp = tmp_path_factory.mktemp("stack")
    meter = SimulatedMeter("dsmr5", seed=11, start=time.time())
    sink = TcpSink("127.0.0.1", 0)
    stop = threading.Event()

    def feed() -> None:
        while not stop.is_set():
            sink.write(meter.telegram_at(time.time()))
            sink.wait(0.5)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    exporter_port, prometheus_port = free_port(), free_port()
    exporter = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "p1_exporter",
            "--device",
            f"main={sink.url}",
            "--device",
            "be=sim://?dialect=belgian&seed=5&interval=1",
            "--web.listen-address",
            f"127.0.0.1:{exporter_port}",
            "--log.level",
            "warn",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(_shortened_rules(tmp / "alerts.yml")), str(RECORDING_RULES)],
        "scrape_configs": [
            {"job_name": "p1", "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}
        ],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    server = subprocess.Popen(
        [
            prometheus,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        live = Stack(
            f"http://127.0.0.1:{prometheus_port}", f"http://127.0.0.1:{exporter_port}", meter
        )
        wait_for(
            lambda: len(live.query("p1_up == 1")) == 2,
            60,
            "both meters up",
            interval=0.5,
            retry_on=(OSError,),
        )
        # Enough history for rate() over [1m] windows and the 1s recording rules.
        wait_for(
            lambda: live.query("count_over_time(p1_up[1m]) >= 12"),
            60,
            "a dozen scrapes",
            interval=0.5,
            retry_on=(OSError,),
        )
        yield live
    finally:
        stop.set()
        for proc in (server, exporter):
            proc.terminate()
        for proc in (server, exporter):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        sink.close()


def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    empty = []
    now = time.time()
    queries = list(iter_dashboard_queries({"meter": "main|be"}))
    assert len(queries) > 40
    for board, panel, expr in queries:
        shift = sum(int(n) * _UNIT_SECONDS[u] for n, u in _NEGATIVE_OFFSET.findall(expr))
        if shift:
            # A bar with "offset -1d" drawn at time t shows the day that starts at t; the
            # newest bar with data is drawn one offset before now. Evaluate it there.
            result = stack.query_range(expr, now - shift - 30, now - shift, 5)
        else:
            result = stack.query(expr, at=now)
        if not result:
            empty.append(f"{board} / {panel}: {expr}")
    assert not empty, "queries without data:\n" + "\n".join(empty)


def test_every_recording_rule_returns_data(stack: Stack) -> None:
    names = []
    for path in (ALERTING_RULES, RECORDING_RULES):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names += [rule["record"] for rule in group["rules"] if "record" in rule]
    assert names
    # Night-only helpers exist between 01:00 and 05:00 local time by design.
    night_only = {n for n in names if n.endswith(":night")}
    missing = [name for name in names if name not in night_only and not stack.query(name)]
    assert not missing, f"recording rules without data: {missing}"
    net = stack.query('meter:p1_power_net_watts{meter="main"}')
    imported = stack.query('p1_power_import_watts{meter="main"}')
    assert net and imported


def test_power_spike_alert_goes_pending_then_firing(stack: Stack) -> None:
    threshold = float(stack.query("p1:threshold_power_spike_watts")[0]["value"][1])
    assert not stack.alerts("P1PowerSpike"), "spike alert active before the spike"
    stack.meter.force_import_watts = threshold + 1500
    try:
        pending = wait_for(
            lambda: [a for a in stack.alerts("P1PowerSpike") if a["state"] == "pending"],
            30,
            "P1PowerSpike pending",
            interval=0.5,
            retry_on=(OSError,),
        )
        assert pending[0]["labels"]["meter"] == "main"
        assert pending[0]["labels"]["severity"] == "warning"
        firing = wait_for(
            lambda: [a for a in stack.alerts("P1PowerSpike") if a["state"] == "firing"],
            30,
            "P1PowerSpike firing",
            interval=0.5,
            retry_on=(OSError,),
        )
        assert float(firing[0]["value"]) == pytest.approx(threshold + 1500)
        assert "meter main" in firing[0]["annotations"]["summary"]
    finally:
        stack.meter.force_import_watts = None
    wait_for(
        lambda: not stack.alerts("P1PowerSpike"),
        30,
        "P1PowerSpike resolved",
        interval=0.5,
        retry_on=(OSError,),
    )
