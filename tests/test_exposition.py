"""CachedExposition: the same bytes as the P1 collector, from pieces cached per snapshot.

Every fixture telegram, several meters, stale and fresh ones, both formats: the cached
path must give exactly what prometheus_client's encoders give for the collector, and
promtool must accept it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from p1_exporter import parse
from p1_exporter.meter.snapshot import Snapshot
from p1_exporter.metrics.catalog import METRICS
from p1_exporter.metrics.collector import SELF_METRIC_PREFIXES, make_registry
from p1_exporter.metrics.exposition import CachedExposition
from tests.helpers.fixtures import FIXTURES
from tests.helpers.metrics import promtool_metrics, series, value
from tests.helpers.telegrams import EXTRAS, make_telegram

TELEGRAMS = {path.name: path.read_bytes() for path in sorted(FIXTURES.glob("*.txt"))}
TELEGRAMS["extras"] = EXTRAS
#: A text message and a meter name with every character the formats must escape.
ODD = '"quoted" \\ back\nslash'
MESSAGE = make_telegram(
    "1-3:0.2.8(50)",
    "0-0:96.1.1(4B38)",
    "1-0:1.7.0(00.500*kW)",
    f"0-0:96.13.0({ODD.encode().hex().upper()})",
)
TELEGRAMS["message"] = MESSAGE


def snapshot(name: str, raw: bytes | None, *, fresh: bool = True, **fields: object) -> Snapshot:
    ago = 1.0 if fresh else 120.0
    return Snapshot(
        name,
        "test",
        60.0,
        telegram=None if raw is None else parse(raw),
        received_at=1.7e9 + 0.25,
        received_monotonic=time.monotonic() - ago,
        **fields,  # type: ignore[arg-type]
    )


def both_ways(snaps: list[Snapshot]) -> list[tuple[bytes, bytes]]:
    """(cached, collector) for the text and the OpenMetrics format, P1 families only."""
    cached = CachedExposition(lambda: snaps, self_metrics=False)
    registry = make_registry(lambda: snaps, self_metrics=False)
    return [
        (cached.text(), generate_latest(registry)),
        (cached.openmetrics(), openmetrics_latest(registry)),  # type: ignore[no-untyped-call]
    ]


@pytest.mark.parametrize("name", TELEGRAMS)
def test_each_fixture_alone_is_byte_for_byte_the_collector(name: str) -> None:
    for fresh in (True, False):
        for cached, expected in both_ways([snapshot("main", TELEGRAMS[name], fresh=fresh)]):
            assert cached == expected


def test_all_fixtures_as_many_meters_fresh_and_stale_mixed() -> None:
    snaps = [
        snapshot(
            f"m{i}",
            raw,
            fresh=i % 3 != 1,
            telegrams=MappingProxyType(
                {"ok": i, "crc_error": 1, "malformed": 0, "too_large": 2, "rejected": 0}
            ),
            bytes_read=10**12 + i,
            connects=i,
            connected=bool(i % 2),
            glitches=3,
        )
        for i, raw in enumerate(list(TELEGRAMS.values()) * 3)
    ]
    snaps.append(snapshot("never", None))  # no telegram yet
    snaps.append(snapshot(ODD, MESSAGE))  # a meter name that needs escaping
    for cached, expected in both_ways(snaps):
        assert cached == expected
        assert b'p1_up{meter="m1"} 0.0\n' in cached  # stale ones are in the mix


def test_runs_of_meters_of_one_kind_keep_meter_order_in_each_family() -> None:
    """Meters of one kind in a row are joined as a run; families still list every meter
    in the order the snapshots come."""
    kinds = (
        ["v5.txt"] * 3
        + ["fluvius_v171.txt"] * 2
        + ["v5.txt"] * 2
        + ["v5_eon_hu.txt"]
        + ["v5.txt"] * 2
    )
    snaps = [snapshot(f"z{9 - i}", TELEGRAMS[kind], fresh=i != 6) for i, kind in enumerate(kinds)]
    for cached, expected in both_ways(snaps):
        assert cached == expected
        up = [line for line in cached.decode().splitlines() if line.startswith("p1_up{")]
        assert up == [
            f'p1_up{{meter="z{9 - i}"}} {0.0 if i == 6 else 1.0}' for i in range(len(kinds))
        ]


@settings(max_examples=60, deadline=None)
@given(
    names=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=4, unique=True),
    picks=st.lists(st.sampled_from(sorted(TELEGRAMS)), min_size=4, max_size=4),
    fresh=st.lists(st.booleans(), min_size=4, max_size=4),
)
def test_any_meter_names_and_telegrams(
    names: list[str], picks: list[str], fresh: list[bool]
) -> None:
    snaps = [
        snapshot(name, TELEGRAMS[pick], fresh=up)
        for name, pick, up in zip(names, picks, fresh, strict=False)
    ]
    for cached, expected in both_ways(snaps):
        assert cached == expected


def test_a_new_snapshot_replaces_the_cached_pieces_and_staleness_is_per_scrape() -> None:
    current = [snapshot("main", TELEGRAMS["v5.txt"])]
    cached = CachedExposition(lambda: current, self_metrics=False)
    registry = make_registry(lambda: current, self_metrics=False)
    assert value(series(cached.text().decode()), "p1_power_import_watts", meter="main") == 244.0
    current[0] = snapshot(
        "main", TELEGRAMS["v5.txt"].replace(b"01.193*kW", b"02.193*kW"), bytes_read=77
    )
    text = cached.text()
    assert text == generate_latest(registry)
    assert value(series(text.decode()), "p1_bytes_read_total", meter="main") == 77.0
    # The same snapshot object turns stale with time: its values drop out at that scrape.
    short = dataclasses.replace(current[0], stale_after=0.3, received_monotonic=time.monotonic())
    current[0] = short
    assert value(series(cached.text().decode()), "p1_up", meter="main") == 1.0
    time.sleep(0.35)
    found = series(cached.text().decode())
    assert value(found, "p1_up", meter="main") == 0.0
    assert set(found) == {
        n
        for n, spec in METRICS.items()  # no HTTP server: no auth counter
        if spec.health and n != "p1_exporter_http_auth_failures_total"
    }
    assert cached.text() == generate_latest(registry)


def test_memory_is_one_entry_per_meter_with_only_its_current_series() -> None:
    """Many snapshots, a label that changes each time, meters that go away: the cache
    holds one entry per current meter, and each entry only the series it serves now."""
    current: list[Snapshot] = []
    cached = CachedExposition(lambda: current, self_metrics=False)
    for round_ in range(200):
        message = f"message {round_}".encode().hex().upper()
        raw = make_telegram(
            "1-3:0.2.8(50)", "0-0:96.1.1(4B38)", "1-0:1.7.0(00.500*kW)", f"0-0:96.13.0({message})"
        )
        current[:] = [snapshot(f"m{i}", raw) for i in range(5 if round_ < 150 else 2)]
        assert f"message {round_}" in cached.text().decode()
    series_now = len([line for line in cached.text().splitlines() if not line.startswith(b"#")])
    entries = cached._entries
    assert set(entries) == {"m0", "m1"}
    build_info = 1
    assert sum(len(entry.series) for entry in entries.values()) == series_now - build_info


def test_a_value_that_cannot_be_exported_costs_only_its_meter(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = snapshot("good", TELEGRAMS["v5.txt"])
    telegram = parse(TELEGRAMS["v5.txt"])
    registers = dict(telegram.registers)
    registers["1-0:1.7.0"] = registers["1-0:1.7.0"]._replace(value=10**400)
    bad = dataclasses.replace(
        snapshot("bad", None, fresh=True),
        telegram=dataclasses.replace(telegram, registers=MappingProxyType(registers)),
    )
    cached = CachedExposition(lambda: [good, bad], self_metrics=False)
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            found = series(cached.text().decode())
            assert value(found, "p1_power_import_watts", meter="good") == 244.0
            assert value(found, "p1_power_import_watts", meter="bad") is None
            assert value(found, "p1_up", meter="bad") == 1.0
    errors = [r for r in caplog.records if "values left out of /metrics" in r.getMessage()]
    assert len(errors) == 1 and "meter bad" in errors[0].getMessage()


ACCEPT = [
    "",
    "text/plain",
    "application/openmetrics-text",
    "application/openmetrics-text; version=1.0.0",
    "application/openmetrics-text; version=1.0.0; escaping=dots",
    "application/openmetrics-text; version=2.0.0",
    "text/plain; version=1.0.0; escaping=values",
    "text/plain; version=1.0.0; escaping=dots",
    "*/*",
    "application/openmetrics-text; version=1.0.0; escaping=allow-utf-8",
    "application/openmetrics-text; version=1.0.0; escaping=values",
    "text/plain; version=1.0.0; escaping=allow-utf-8",
    # What Prometheus 3 sends by default.
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3",
]


@pytest.mark.parametrize("accept", ACCEPT)
def test_every_encoder_gets_what_prometheus_client_would_write(accept: str) -> None:
    snaps = [
        snapshot("home", TELEGRAMS["v5.txt"]),
        snapshot("shop", TELEGRAMS["fluvius_v171.txt"]),
        snapshot("barn", TELEGRAMS["v5_eon_hu.txt"], fresh=False),
    ]
    cached = CachedExposition(lambda: snaps, self_metrics=False)
    encoder, _ = choose_encoder(accept)
    assert cached.encode(encoder) == encoder(make_registry(lambda: snaps, self_metrics=False))
    # Escaping that renames metrics (dots) and other OpenMetrics versions are served by
    # the registry; everything else from the cache.
    keywords = encoder.keywords if isinstance(encoder, functools.partial) else {}
    from_cache = keywords.get("escaping") != "dots" and keywords.get("version") != "2.0.0"
    if accept.startswith("application/openmetrics-text") and "escaping=values" in accept:
        from_cache = False
    assert bool(cached._entries) == from_cache


def test_with_the_process_metrics_the_p1_part_comes_first_unchanged() -> None:
    snaps = [snapshot("home", TELEGRAMS["v5.txt"])]
    cached = CachedExposition(lambda: snaps)
    p1_only = CachedExposition(lambda: snaps, self_metrics=False)
    text, part = cached.text(), p1_only.text()
    assert text.startswith(part)
    own = {f.name for f in text_string_to_metric_families(text[len(part) :].decode())}
    assert own and all(name.startswith(SELF_METRIC_PREFIXES) for name in own)
    om, part = cached.openmetrics(), p1_only.openmetrics()[: -len(b"# EOF\n")]
    assert om.startswith(part) and om.endswith(b"# EOF\n") and om.count(b"# EOF") == 1
    own_om = {
        f.name
        for f in openmetrics_families(  # type: ignore[no-untyped-call]
            om[len(part) :].decode()
        )
    }
    assert own_om and all(name.startswith(SELF_METRIC_PREFIXES) for name in own_om)


def test_promtool_accepts_the_cached_exposition_of_many_meters() -> None:
    snaps = [
        snapshot(f"m{i}", raw, fresh=i % 4 != 0)
        for i, raw in enumerate(list(TELEGRAMS.values()) * 2)
    ]
    cached = CachedExposition(lambda: snaps)
    result = promtool_metrics(cached.text().decode())
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    text = cached.openmetrics().decode()
    parsed = list(openmetrics_families(text))  # type: ignore[no-untyped-call]  # strict parse
    assert len({f.name for f in parsed}) == len(parsed)
    # promtool (2.42) reads OpenMetrics as the classic format: its only complaint may be
    # that a counter's HELP is on the family name, which OpenMetrics writes without _total.
    result = promtool_metrics(text)
    assert result.returncode in (0, 3), result.stderr
    for line in (result.stdout + result.stderr).splitlines():
        assert line.endswith("_total no help text"), line


def test_a_snapshot_prepared_ahead_is_served_without_rendering_again() -> None:
    current = [snapshot("home", TELEGRAMS["v5.txt"]), snapshot("shop", TELEGRAMS["smarty_lux.txt"])]
    cached = CachedExposition(lambda: current, self_metrics=False)
    cached.text()
    current[0] = snapshot("home", TELEGRAMS["v5_eon_hu.txt"])
    cached.prepare(current[0])
    entry = cached._entries["home"]
    assert entry.snapshot is current[0] and entry.fresh is not None
    pieces = entry.fresh
    registry = make_registry(lambda: current, self_metrics=False)
    assert cached.text() == generate_latest(registry)
    assert cached.openmetrics() == openmetrics_latest(registry)  # type: ignore[no-untyped-call]
    assert cached._entries["home"] is entry and entry.fresh is pieces


def test_scrapes_in_threads_while_meters_publish_come_and_go() -> None:
    """No locks: scrapes in four threads while snapshots are replaced and meters leave and
    come back; every body is whole (each meter once, all of its families) and none fails."""
    raws = [TELEGRAMS["v5.txt"], TELEGRAMS["fluvius_v171.txt"], TELEGRAMS["smarty_lux.txt"]]
    telegrams = [parse(raw) for raw in raws]
    state: dict[str, list[Snapshot]] = {"now": []}

    def publish(round_: int) -> None:
        count = 6 if round_ % 10 else 3  # every tenth round half the meters are gone
        state["now"] = [
            Snapshot(
                f"m{i}",
                "test",
                60.0,
                telegram=telegrams[(i + round_) % 3],
                received_at=1.7e9 + round_,
                bytes_read=round_,
                received_monotonic=time.monotonic(),
            )
            for i in range(count)
        ]

    publish(0)
    cached = CachedExposition(lambda: state["now"], self_metrics=False)
    failures: list[BaseException] = []
    bodies: list[bytes] = []

    rounds = [0]
    done = threading.Event()

    def publisher() -> None:
        while not done.is_set() and rounds[0] < 100_000:
            rounds[0] += 1
            publish(rounds[0])

    def scraper(openmetrics: bool) -> None:
        try:
            for _ in range(40):
                bodies.append(cached.openmetrics() if openmetrics else cached.text())
                time.sleep(0.001)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=scraper, args=(n % 2 == 1,)) for n in range(4)]
    publishing = threading.Thread(target=publisher)
    publishing.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    done.set()
    publishing.join(10)
    assert not failures
    assert len(bodies) == 160 and rounds[0] > 10
    for body in bodies:
        text = body.decode()
        if text.endswith("# EOF\n"):
            families = list(openmetrics_families(text))  # type: ignore[no-untyped-call]
        else:
            families = list(text_string_to_metric_families(text))
        up = next(f for f in families if f.name == "p1_up")
        meters = [s.labels["meter"] for s in up.samples]
        assert len(meters) in (3, 6) and len(set(meters)) == len(meters)
        info = next(f for f in families if f.name == "p1_meter_info")
        assert sorted(s.labels["meter"] for s in info.samples) == sorted(meters)
    assert len(cached._entries) <= 6
