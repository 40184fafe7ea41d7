"""The exporter's HTTP routes end to end.

Most tests scrape one real exporter process with two simulated meters of different
dialects (``home``: DSMR 5, ``shop``: Belgian). The staleness test runs the reader, the
routes and the HTTP server in this process, with a meter on a TCP socket on 127.0.0.1
that the test feeds or starves.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import re
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from p1_exporter import parse
from p1_exporter.core.render_json import format_json
from p1_exporter.meter.reader import MeterConfig, MeterReader
from p1_exporter.meter.snapshot import Snapshot
from p1_exporter.metrics.catalog import METRICS
from p1_exporter.metrics.collector import SELF_METRIC_PREFIXES
from p1_exporter.web.app import ExporterApp
from p1_exporter.web.messages import Request, Response
from p1_exporter.web.server import ExporterHTTPServer
from tests.helpers.exporter import ExporterProcess, http_get, scrape
from tests.helpers.fixtures import FIXTURES
from tests.helpers.metrics import promtool_metrics, series, value
from tests.helpers.reader import ManualDongle
from tests.helpers.wait import wait_for

METERS = {
    "home": "sim://?dialect=dsmr5&seed=11&interval=1",
    "shop": "sim://?dialect=belgian&seed=12&interval=1",
}
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text"


@pytest.fixture(scope="module")
def exporter() -> Iterator[ExporterProcess]:
    args = ["--web.listen-address", "127.0.0.1:0"]
    for name, url in METERS.items():
        args += ["--device", f"{name}={url}"]
    with ExporterProcess(args) as process:
        process.wait_listening()
        wait_for(
            lambda: all(value(scrape(process.url), "p1_up", meter=m) == 1.0 for m in METERS),
            what="both meters up",
        )
        yield process
        assert process.stop()[0] == 0


def families(text: str) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text)}


# -- /metrics ---------------------------------------------------------------------------


def test_metrics_serves_both_meters_with_their_own_label(exporter: ExporterProcess) -> None:
    reply = http_get(exporter.url)
    assert reply.status == 200
    assert reply.headers["Content-Type"] == TEXT_FORMAT
    found = series(reply.body.decode())
    for name, samples in found.items():
        for key in samples:
            labels = dict(key)
            if name.startswith(SELF_METRIC_PREFIXES) or not METRICS[name].per_meter:
                assert "meter" not in labels
            else:
                assert labels["meter"] in METERS, (name, labels)
    # The exporter process's own metrics, as every exporter has them.
    assert value(found, "process_cpu_seconds_total") is not None
    assert (value(found, "process_resident_memory_bytes") or 0) > 0
    assert any(name.startswith("python_gc_") for name in found)
    assert "python_info" in found
    for meter in METERS:
        assert value(found, "p1_up", meter=meter) == 1.0
        assert value(found, "p1_telegrams_total", meter=meter, result="ok")  # > 0
        assert value(found, "p1_energy_import_joules_total", meter=meter, tariff="1")
    # Dialect-specific series stay with their meter.
    assert value(found, "p1_demand_average_watts", meter="shop") is not None
    assert value(found, "p1_demand_average_watts", meter="home") is None
    assert value(found, "p1_gas_volume_cubic_meters_total", meter="home", channel="1")
    assert value(found, "p1_water_volume_cubic_meters_total", meter="shop", channel="2")


def test_promtool_accepts_live_text_format(exporter: ExporterProcess) -> None:
    reply = http_get(exporter.url)
    result = promtool_metrics(reply.body.decode())
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_openmetrics(exporter: ExporterProcess) -> None:
    reply = http_get(exporter.url, headers={"Accept": f"{OPENMETRICS}; version=1.0.0"})
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith(OPENMETRICS)
    text = reply.body.decode()
    assert text.endswith("# EOF\n")
    # Strict OpenMetrics parse (raises on any violation).
    parsed = {f.name: f for f in openmetrics_families(text)}  # type: ignore[no-untyped-call]
    classic = families(http_get(exporter.url).body.decode())
    assert {n: f.type for n, f in parsed.items()} == classic
    for family in parsed.values():
        if family.type == "counter":
            assert all(
                s.name in (family.name + "_total", family.name + "_created") for s in family.samples
            )
    # promtool 2.42 parses only the classic format: no parse error, and its only complaint
    # is that a counter's HELP is on the family name, which OpenMetrics writes without _total.
    result = promtool_metrics(text)
    assert result.returncode in (0, 3), result.stderr
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if line]
    counters = {name for name, spec in METRICS.items() if spec.type == "counter"} | {
        f"{name}_total"
        for name, kind in classic.items()
        if kind == "counter" and name.startswith(SELF_METRIC_PREFIXES)
    }
    for line in complaints:
        match = re.fullmatch(r"(\S+) no help text", line)
        assert match and match[1] in counters, line
    assert {re.sub(" no help text$", "", line) for line in complaints} == {
        f"{name}_total" for name, kind in classic.items() if kind == "counter"
    }


def test_gzip(exporter: ExporterProcess) -> None:
    reply = http_get(exporter.url, headers={"Accept-Encoding": "gzip"})
    assert reply.status == 200
    assert reply.headers["Content-Encoding"] == "gzip"
    text = gzip.decompress(reply.body).decode()
    plain = http_get(exporter.url)
    assert "Content-Encoding" not in plain.headers
    assert families(text) == families(plain.body.decode())
    assert {(n, k) for n, s in series(text).items() for k in s} == {
        (n, k) for n, s in series(plain.body.decode()).items() for k in s
    }


def test_head_and_post(exporter: ExporterProcess) -> None:
    get = http_get(exporter.url)
    head = http_get(exporter.url, method="HEAD")
    assert head.status == 200 and head.body == b""
    assert head.headers["Content-Type"] == TEXT_FORMAT
    # The same body, not sent: the length matches up to the values that moved meanwhile.
    assert abs(int(head.headers["Content-Length"]) - len(get.body)) < len(get.body) / 10
    assert http_get(exporter.url, "/healthz", method="HEAD").status == 200
    for path in ("/metrics", "/", "/healthz", "/api/v1/meters/home/telegram"):
        post = http_get(exporter.url, path, method="POST")
        assert post.status == 405, path
        assert post.headers["Allow"] == "GET, HEAD"


# -- other routes -------------------------------------------------------------------------


def test_healthz_when_all_fresh(exporter: ExporterProcess) -> None:
    reply = http_get(exporter.url, "/healthz")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.json() == {
        "status": "ok",
        "meters": {m: {"fresh": True, "reason": "ok"} for m in METERS},
    }


def test_landing_page(exporter: ExporterProcess) -> None:
    """/ is the live page: static HTML whose script fills in the meters (see
    test_live_page.py for what a browser shows)."""
    reply = http_get(exporter.url, "/")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "text/html; charset=utf-8"
    page = reply.body.decode()
    assert page.startswith("<!DOCTYPE html>")
    assert '<script src="static/live.js"></script>' in page
    assert reply.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert 'href="metrics"' in page and 'href="healthz"' in page
    assert 'href="api/v1/live"' in page
    index = http_get(exporter.url, "/index.html")
    assert index.status == 200 and b"<title>p1-exporter</title>" in index.body
    for path, kind in (("/static/live.js", "text/javascript"), ("/static/live.css", "text/css")):
        static = http_get(exporter.url, path)
        assert static.status == 200 and static.headers["Content-Type"].startswith(kind)


def test_live_api(exporter: ExporterProcess) -> None:
    reply = http_get(exporter.url, "/api/v1/live")
    assert reply.status == 200
    assert reply.headers["Cache-Control"] == "no-store"
    document = reply.json()
    assert [m["name"] for m in document["meters"]] == list(METERS)
    found = scrape(exporter.url)
    for meter in document["meters"]:
        assert meter["fresh"] is True and meter["source"] == METERS[meter["name"]]
        values = meter["values"]
        assert values["import_w"] >= 0 and values["export_w"] >= 0
        assert len(values["phases"]) == 3
        assert {d["kind"] for d in values["devices"]} >= {"gas"}
        power = meter["power"]
        assert power["step"] == 10 and power["slots"] == 2160 and power["type"] == "float32"
        watts = series_values(power)
        assert watts and all(w is None or -100_000 < w < 100_000 for w in watts)
        assert meter["today"]["complete"] is False  # the exporter started just now
        assert meter["today"]["since"] <= time.time()
        gas_series = value(
            found, "p1_gas_volume_cubic_meters_total", meter=meter["name"], channel="1"
        )
        assert series_values(meter["gas"])[-1] == pytest.approx(gas_series)
    belgian = document["meters"][1]["values"]["demand"]
    assert belgian["month_peak_w"] > 0
    # Only the points after `since`: the page asks for what it does not have yet.
    last = power["first"] + power["count"] - 1
    newer = http_get(exporter.url, f"/api/v1/live?since={last}&gas_since=99999999999")
    later = newer.json()["meters"][1]
    assert later["power"]["first"] >= last + 1 or later["power"]["count"] == 0
    assert later["gas"]["count"] == 0 and later["gas"]["data"] == ""


def series_values(series: dict[str, Any]) -> list[float | None]:
    """A chart series of /api/v1/live decoded: little-endian floats, NaN for gaps."""
    raw = base64.b64decode(series["data"])
    code = "<f" if series["type"] == "float32" else "<d"
    values = [v for (v,) in struct.iter_unpack(code, raw)]
    assert len(values) == series["count"]
    return [None if math.isnan(v) else v for v in values]


@pytest.mark.parametrize("query", ["since=-1", "since=abc", "gas_since=1e3", "since=" + "9" * 40])
def test_live_api_refuses_bad_slots(exporter: ExporterProcess, query: str) -> None:
    reply = http_get(exporter.url, f"/api/v1/live?{query}")
    assert reply.status == 400
    assert "must be a slot number" in reply.json()["error"]


def test_live_api_without_a_telegram_or_history() -> None:
    app = ExporterApp(lambda: [Snapshot("new", "test", 60.0)], histories={})
    document = json.loads(app(Request("GET", "/api/v1/live", {}, {})).body)
    meter = document["meters"][0]
    assert meter["values"] is None and meter["power"] is None and meter["today"] is None
    assert meter["fresh"] is False and meter["reason"] == "no validated telegram yet"


def test_meters_api(exporter: ExporterProcess) -> None:
    reply = http_get(exporter.url, "/api/v1/meters")
    assert reply.status == 200
    meters = reply.json()
    assert isinstance(meters, dict) and set(meters) == set(METERS)
    for name, url in METERS.items():
        state = meters[name]
        assert state["fresh"] is True and state["reason"] == "ok"
        assert state["source"] == url
        assert state["connected"] is True
        assert state["telegrams"]["ok"] >= 1 and state["telegrams"]["crc_error"] == 0
        assert 0 <= state["age_seconds"] < 60


@pytest.mark.parametrize(
    ("meter", "header"), [("home", "/SIM5\\2P1SIM-DSMR5"), ("shop", "/FLU5\\253769484_A")]
)
def test_telegram_api(exporter: ExporterProcess, meter: str, header: str) -> None:
    reply = http_get(exporter.url, f"/api/v1/meters/{meter}/telegram")
    assert reply.status == 200
    body = reply.json()
    assert isinstance(body, dict)
    assert body["meter"] == meter and body["fresh"] is True
    assert body["raw"].startswith(header + "\r\n") and "\r\n!" in body["raw"]
    assert isinstance(body["decoded"], dict) and body["decoded"]
    assert abs(body["received_at"] - time.time()) < 60


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/meters/garage/telegram", 404),
        ("/api/v1/meters//telegram", 404),
        ("/api/v1/meters/home", 404),
        ("/nope", 404),
        ("/metrics/extra", 404),
        ("/METRICS", 404),
    ],
)
def test_unknown_paths(exporter: ExporterProcess, path: str, status: int) -> None:
    reply = http_get(exporter.url, path)
    assert reply.status == status
    assert b"p1_up" not in reply.body


def test_unknown_meter_says_so(exporter: ExporterProcess) -> None:
    reply = http_get(exporter.url, "/api/v1/meters/garage/telegram")
    assert reply.json() == {"error": "no meter named 'garage'"}


def test_custom_telemetry_path() -> None:
    app = ExporterApp(lambda: [], telemetry_path="/p1/metrics")
    assert app(Request("GET", "/p1/metrics", {}, {})).status == 200
    assert app(Request("GET", "/metrics", {}, {})).status == 404


@pytest.mark.parametrize(
    "accept",
    [
        "application/openmetrics-text; version=x",
        "application/openmetrics-text; version=1.x",
    ],
)
def test_a_bad_openmetrics_version_gets_the_text_format(accept: str) -> None:
    reply = http_get_app(accept)
    assert reply.status == 200
    assert reply.content_type == http_get_app("").content_type == TEXT_FORMAT
    assert b"# EOF" not in reply.body and b"# TYPE p1_up gauge" in reply.body


def http_get_app(accept: str) -> Response:
    snap = Snapshot("main", "test", 60.0)
    return ExporterApp(lambda: [snap])(Request("GET", "/metrics", {}, {"Accept": accept}))


# -- staleness, end to end over HTTP ----------------------------------------------------------


def test_stale_meter_vanishes_and_comes_back() -> None:
    telegram = (FIXTURES / "v5.txt").read_bytes()
    dongle = ManualDongle()
    reader = MeterReader(MeterConfig(url=dongle.url, name="p1", stale_after=1.0))
    server = ExporterHTTPServer("127.0.0.1:0", ExporterApp(lambda: [reader.snapshot]))
    url = f"http://127.0.0.1:{server.server_address[1]}"
    reader.start()
    server.start()
    try:
        dongle.accept()
        health = http_get(url, "/healthz")
        assert health.status == 503
        assert health.json() == {
            "status": "stale",
            "meters": {"p1": {"fresh": False, "reason": "no validated telegram yet"}},
        }
        missing = http_get(url, "/api/v1/meters/p1/telegram")
        assert missing.status == 404
        assert missing.json() == {"error": "meter 'p1' has no validated telegram yet"}
        assert value(scrape(url), "p1_up", meter="p1") == 0.0

        for round_ in (1, 2):
            dongle.send(telegram)
            sent = time.monotonic()
            wait_for(lambda: value(scrape(url), "p1_up", meter="p1") == 1.0, 5, "fresh")
            found = scrape(url)
            assert value(found, "p1_power_import_watts", meter="p1") == 244.0
            assert value(found, "p1_telegrams_total", meter="p1", result="ok") == round_
            assert http_get(url, "/healthz").status == 200
            assert http_get(url, "/api/v1/meters/p1/telegram").json()["fresh"] is True

            wait_for(lambda: value(scrape(url), "p1_up", meter="p1") == 0.0, 5, "stale")
            assert time.monotonic() - sent >= 0.9
            found = scrape(url)
            assert "p1_power_import_watts" not in found
            assert "p1_meter_info" not in found
            assert value(found, "p1_source_connected", meter="p1") == 1.0
            health = http_get(url, "/healthz")
            assert health.status == 503
            state = health.json()["meters"]["p1"]
            assert state["fresh"] is False
            assert re.fullmatch(
                r"no validated telegram for \d+ s \(stale after 1 s\)", state["reason"]
            ), state
            # The last telegram stays available for debugging, marked as not fresh.
            kept = http_get(url, "/api/v1/meters/p1/telegram")
            assert kept.status == 200 and kept.json()["fresh"] is False
    finally:
        server.shutdown()
        reader.stop()
        dongle.close()


def test_telegram_api_decoded_matches_decode_json() -> None:
    """/api/v1/meters/<name>/telegram's "decoded" is decode --format json's document."""
    telegram = parse((FIXTURES / "fluvius_v171.txt").read_bytes())
    snap = Snapshot(
        "b", "test", 60.0, telegram=telegram, received_at=1.0, received_monotonic=time.monotonic()
    )
    response = ExporterApp(lambda: [snap])(Request("GET", "/api/v1/meters/b/telegram", {}, {}))
    assert response.status == 200
    body = json.loads(response.body)
    assert body["decoded"] == json.loads(format_json(telegram))
    assert body["raw"] == telegram.raw.decode("latin-1")
