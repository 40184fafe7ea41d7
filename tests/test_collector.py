"""P1Collector: meter values only while fresh, health always, one series set per meter, and
the counters a real MeterReader publishes (fed over TCP on 127.0.0.1) as /metrics shows them.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from collections.abc import Iterator
from types import MappingProxyType

import pytest
from prometheus_client import REGISTRY
from prometheus_client.exposition import generate_latest

from p1_exporter import parse
from p1_exporter.meter.reader import MeterConfig, MeterReader
from p1_exporter.meter.snapshot import Snapshot
from p1_exporter.metrics.catalog import METRICS
from p1_exporter.metrics.collector import (
    SELF_METRIC_PREFIXES,
    P1Collector,
    iter_metric_names,
    make_registry,
)
from tests.helpers.fixtures import BELGIAN, V5
from tests.helpers.metrics import LabelKey, series, value
from tests.helpers.reader import ManualDongle
from tests.helpers.telegrams import make_telegram
from tests.helpers.wait import wait_for

# The HTTP server's auth counter comes only with a server (see the test at the end).
HEALTH = {
    name
    for name, spec in METRICS.items()
    if spec.health and name != "p1_exporter_http_auth_failures_total"
}


def text_of(snapshots: list[Snapshot]) -> str:
    """The P1 collector's exposition (the process's own metrics are tested on their own)."""
    return generate_latest(make_registry(lambda: snapshots, self_metrics=False)).decode()


def fresh(name: str, raw: bytes = V5, stale_after: float = 60.0) -> Snapshot:
    return Snapshot(
        name,
        "test",
        stale_after,
        telegram=parse(raw),
        received_at=1.7e9,
        received_monotonic=time.monotonic(),
    )


def stale(name: str, raw: bytes = V5, stale_after: float = 60.0) -> Snapshot:
    return Snapshot(
        name,
        "test",
        stale_after,
        telegram=parse(raw),
        received_at=1.7e9,
        received_monotonic=time.monotonic() - stale_after - 0.5,
    )


def meter_values(found: dict[str, dict[LabelKey, float]], meter: str) -> set[str]:
    """Names of the non-health metrics that have a series for ``meter``."""
    return {
        name
        for name, samples in found.items()
        if name not in HEALTH and any(("meter", meter) in key for key in samples)
    }


def test_fresh_telegram_gives_values() -> None:
    found = series(text_of([fresh("main")]))
    assert value(found, "p1_up", meter="main") == 1.0
    assert value(found, "p1_power_import_watts", meter="main") == 244.0
    assert value(found, "p1_last_telegram_timestamp_seconds", meter="main") == 1.7e9


def test_stale_telegram_withdraws_values_but_keeps_health() -> None:
    found = series(text_of([stale("main")]))
    assert meter_values(found, "main") == set()
    assert set(found) == HEALTH
    assert value(found, "p1_up", meter="main") == 0.0
    # When the last good telegram came stays visible, for "silent since" alerts.
    assert value(found, "p1_last_telegram_timestamp_seconds", meter="main") == 1.7e9
    assert value(found, "p1_stale_after_seconds", meter="main") == 60.0


def test_staleness_is_decided_at_each_scrape() -> None:
    snap = fresh("main", stale_after=0.3)
    registry = make_registry(lambda: [snap])
    assert value(series(generate_latest(registry).decode()), "p1_up", meter="main") == 1.0
    time.sleep(0.35)
    found = series(generate_latest(registry).decode())
    assert value(found, "p1_up", meter="main") == 0.0
    assert "p1_power_import_watts" not in found


def test_snapshot_freshness_boundary() -> None:
    snap = Snapshot("m", "test", 10.0, received_monotonic=100.0)
    assert snap.fresh(109.999)
    assert not snap.fresh(110.0)  # exactly stale_after old: stale
    assert snap.age(99.0) == 0.0  # a clock step back never gives a negative age
    assert not Snapshot("m", "test", 10.0).fresh(0.0)  # never had a telegram


def test_several_meters_each_with_own_label() -> None:
    found = series(text_of([fresh("home"), fresh("shop", BELGIAN), stale("barn")]))
    assert value(found, "p1_up", meter="home") == 1.0
    assert value(found, "p1_up", meter="shop") == 1.0
    assert value(found, "p1_up", meter="barn") == 0.0
    assert value(found, "p1_demand_average_watts", meter="shop") == 2351.0
    assert value(found, "p1_demand_average_watts", meter="home") is None
    assert value(found, "p1_power_import_watts", meter="home") == 244.0
    assert meter_values(found, "barn") == set()
    for name, samples in found.items():
        for key in samples:
            meters = [v for k, v in key if k == "meter"]
            if name == "p1_exporter_build_info":
                assert meters == []
            else:
                assert meters in (["home"], ["shop"], ["barn"]), (name, key)
    assert len(found["p1_exporter_build_info"]) == 1
    assert len(found["p1_telegrams_total"]) == 3 * 5


def test_each_family_once_in_catalog_order() -> None:
    registry = make_registry(lambda: [fresh("a"), fresh("b", BELGIAN)])
    names = list(iter_metric_names(registry))
    assert len(names) == len(set(names))
    catalog = [m.removesuffix("_total") if METRICS[m].type == "counter" else m for m in METRICS]
    p1_names = [n for n in names if not n.startswith(SELF_METRIC_PREFIXES)]
    assert p1_names == [n for n in catalog if n in names]
    assert p1_names == names[: len(p1_names)]  # the process's own metrics come after


def test_registry_has_the_process_and_python_self_metrics() -> None:
    snaps = [fresh("main")]
    found = series(generate_latest(make_registry(lambda: snaps)).decode())
    own = {name for name in found if name.startswith(SELF_METRIC_PREFIXES)}
    assert {
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "python_info",
        "python_gc_collections_total",
    } <= own
    assert found["process_resident_memory_bytes"][frozenset()] > 0
    (python_info,) = found["python_info"]
    assert ("version", platform.python_version()) in python_info
    # Apart from them, the exposition is exactly the P1 collector's.
    p1_only = series(text_of(snaps))
    assert {name: v for name, v in found.items() if name not in own} == p1_only
    assert not any(name.startswith("p1_") for name in own)


def test_collector_reads_snapshots_at_each_scrape() -> None:
    current: list[Snapshot] = []
    registry = make_registry(lambda: current, self_metrics=False)
    assert series(generate_latest(registry).decode()).keys() == {"p1_exporter_build_info"}
    current.append(fresh("late"))
    assert value(series(generate_latest(registry).decode()), "p1_up", meter="late") == 1.0


def test_registry_is_private() -> None:
    make_registry(lambda: [fresh("main")])
    assert REGISTRY.get_sample_value("p1_up", {"meter": "main"}) is None
    collector = P1Collector(lambda: [fresh("main")])
    assert {m.name for m in collector.collect()} >= {"p1_up", "p1_power_import_watts"}


# -- counters from a real reader ---------------------------------------------------------

EQUIPMENT = "0-0:96.1.1(4B384547303034303436333935353037)"


def small(import_kwh: str, *extra: str) -> bytes:
    return make_telegram(
        "1-3:0.2.8(50)",
        "0-0:1.0.0(240115083000W)",
        EQUIPMENT,
        f"1-0:1.8.1({import_kwh}*kWh)",
        "1-0:1.8.2(000001.000*kWh)",
        "1-0:1.7.0(00.500*kW)",
        *extra,
    )


@pytest.fixture
def dongle() -> Iterator[ManualDongle]:
    line = ManualDongle()
    yield line
    line.close()


@pytest.mark.integration
def test_reader_counters_through_the_collector(dongle: ManualDongle) -> None:
    reader = MeterReader(
        MeterConfig(
            url=dongle.url, name="tcp", stale_after=30, backoff_initial=0.05, backoff_cap=0.1
        )
    )
    registry = make_registry(lambda: [reader.snapshot])

    def scrape() -> dict[str, dict[LabelKey, float]]:
        return series(generate_latest(registry).decode())

    def count(name: str, **labels: str) -> float | None:
        return value(scrape(), name, meter="tcp", **labels)

    reader.start()
    try:
        dongle.accept()
        wait_for(lambda: count("p1_source_connected") == 1.0, what="connected")
        assert count("p1_source_connects_total") == 1.0
        assert count("p1_up") == 0.0

        good = small("000010.000")
        bad_crc = good.replace(b"000010.000", b"000010.001")
        odd = small("000010.500", "1-0:99.99.9(123)", "this is no line")
        lower = small("000009.000")
        noise = b"\x00\xff line noise before the first telegram \r\n"
        sent = noise + good + bad_crc + odd + lower
        dongle.send(sent)
        wait_for(lambda: count("p1_bytes_read_total") == len(sent), what="all bytes read")
        found = scrape()
        assert value(found, "p1_garbage_bytes_total", meter="tcp") == len(noise)
        assert value(found, "p1_telegrams_total", meter="tcp", result="ok") == 3.0
        assert value(found, "p1_telegrams_total", meter="tcp", result="crc_error") == 1.0
        assert value(found, "p1_unknown_obis_lines_total", meter="tcp") == 1.0
        assert value(found, "p1_malformed_lines_total", meter="tcp") == 1.0
        assert value(found, "p1_glitches_total", meter="tcp") == 1.0
        assert value(found, "p1_up", meter="tcp") == 1.0
        # The register that went backwards is withheld; the rest of the telegram is served.
        assert value(found, "p1_energy_import_joules_total", meter="tcp", tariff="1") is None
        assert value(found, "p1_energy_import_joules_total", meter="tcp", tariff="2") == 3.6e6
        assert value(found, "p1_power_import_watts", meter="tcp") == 500.0
        assert value(found, "p1_source_errors_total", meter="tcp") == 0.0

        dongle.hang_up()
        wait_for(lambda: count("p1_source_errors_total") == 1.0, what="disconnect counted")
        dongle.accept()
        wait_for(lambda: count("p1_source_connects_total") == 2.0, what="reconnected")
        assert count("p1_source_connected") == 1.0
        assert count("p1_up") == 1.0  # a reconnect alone does not make the meter stale
        # A new connection gets a new framer; the garbage count carries on across them.
        more_noise = b"~~~~~~~~~~"
        dongle.send(more_noise + small("000011.000"))
        wait_for(lambda: count("p1_telegrams_total", result="ok") == 4.0, what="4th telegram")
        assert count("p1_garbage_bytes_total") == len(noise) + len(more_noise)
    finally:
        reader.stop()


def test_a_value_that_cannot_be_exported_costs_only_its_meter(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = fresh("good")
    bad_telegram = parse(V5)
    registers = dict(bad_telegram.registers)
    # A value no float can hold: the exposition would raise OverflowError on it.
    registers["1-0:1.7.0"] = registers["1-0:1.7.0"]._replace(value=10**400)
    bad = dataclasses.replace(
        fresh("bad"),
        telegram=dataclasses.replace(bad_telegram, registers=MappingProxyType(registers)),
    )
    registry = make_registry(lambda: [good, bad])
    for _ in range(3):
        found = series(generate_latest(registry).decode())
        assert value(found, "p1_power_import_watts", meter="good") == 244.0
        assert meter_values(found, "bad") == set()
        assert value(found, "p1_up", meter="bad") == 1.0  # health stays
    errors = [r for r in caplog.records if "values left out of /metrics" in r.getMessage()]
    assert len(errors) == 1 and "meter bad" in errors[0].getMessage()


def test_auth_failures_come_from_the_server_without_a_meter_label() -> None:
    registry = make_registry(lambda: [stale("main")], lambda: {"invalid": 7, "busy": 2})
    found = series(generate_latest(registry).decode())
    assert found["p1_exporter_http_auth_failures_total"] == {
        frozenset({("reason", "missing")}): 0.0,
        frozenset({("reason", "invalid")}): 7.0,
        frozenset({("reason", "busy")}): 2.0,
    }
    assert "p1_exporter_http_auth_failures_total" not in series(text_of([stale("main")]))
