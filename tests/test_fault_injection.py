"""Fault injection: after each fault the exporter serves correct values again, and counted it.

A meter thread sends a telegram every :data:`INTERVAL` seconds over a real pty or a
real TCP dongle, with a tariff-1 import register that rises with every telegram, so
"correct" means: a value this meter really sent, and one sent after the fault ended.
Values and counters are read through /metrics of the real HTTP server (in-process for
the serial faults, the real exporter process for the TCP dongle). The harness is
tests/helpers/faults.py; how long recovery takes is measured by benchmarks/bench_recovery.py.
"""

from __future__ import annotations

import logging
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from p1_exporter.meter.sources import SerialSettings, SerialSource
from p1_exporter.sim.uart import transcode
from tests.helpers.exporter import ROOT
from tests.helpers.faults import (
    BACKOFF_CAP,
    ENERGY,
    Meter,
    Metrics,
    PtyLine,
    config,
    recovered,
    serving,
    telegram,
)
from tests.helpers.fixtures import V5
from tests.helpers.net import free_port
from tests.helpers.reader import Dongle, point, running
from tests.helpers.telegrams import corrupt_crc
from tests.helpers.wait import wait_for


@pytest.fixture(autouse=True)
def no_reader_crash(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG, logger="p1_exporter.reader")
    yield caplog
    crashes = [r.getMessage() for r in caplog.records if "unexpected error" in r.getMessage()]
    assert not crashes


# -- the faults -------------------------------------------------------------------------


@pytest.mark.slow
def test_twenty_unplug_replug_cycles(tmp_path: Path) -> None:
    link = tmp_path / "ttyUSB-p1"
    line = PtyLine()
    point(link, line.path)
    with (
        Meter(line.write) as meter,
        running(config(str(link))) as reader,
        serving(reader) as metrics,
    ):
        recovered(metrics, meter, 0.0)
        for cycle in range(20):
            before = metrics.scrape()
            connects = before.count("p1_source_connects_total")
            errors = before.count("p1_source_errors_total")
            link.unlink()  # unplug: udev removes the link, the device node goes away
            line.unplug()
            wait_for(lambda: metrics.scrape().count("p1_source_connected") == 0)
            time.sleep(0.1 + 0.1 * (cycle % 3))  # unplugged long enough to back off
            line.plug()
            point(link, line.path)
            recovered(metrics, meter, meter.mark())
            after = metrics.scrape()
            assert after.count("p1_source_connects_total") == connects + 1
            assert after.count("p1_source_errors_total") >= errors + 1
            assert after.count("p1_up") == 1
        final = metrics.scrape()
        assert final.count("p1_source_connects_total") == 21
        assert final.count("p1_source_errors_total") >= 20
        assert final.count("p1_glitches_total") == 0
        assert final.count("p1_telegrams_total", result="crc_error") == 0
    line.unplug()


@pytest.mark.slow
def test_tcp_dongle_restarts_under_the_real_exporter(tmp_path: Path) -> None:
    dongle = Dongle()
    port = free_port()
    cfg = tmp_path / "p1.yml"
    cfg.write_text(
        f"meters:\n  - name: dongle\n    device: {dongle.url}\n    backoff_cap: {BACKOFF_CAP}\n"
        f"    silence_timeout: 5\n    stale_after: 5\nweb:\n  listen_address: 127.0.0.1:{port}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "p1_exporter", "--config", str(cfg), "--log.level", "warn"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = Metrics(f"http://127.0.0.1:{port}/metrics", "dongle")
    try:

        def send(data: bytes) -> None:
            dongle.send(data)

        with Meter(send) as meter:
            wait_for(lambda: dongle.clients == 1)
            recovered(metrics, meter, 0.0)
            for restart in range(1, 4):
                dongle.stop()  # reboots: connection closed, then refused for a while
                time.sleep(0.8)  # more than the cap: at least one refused attempt
                dongle.start()
                recovered(metrics, meter, meter.mark())
                now = metrics.scrape()
                assert now.count("p1_source_connects_total") == restart + 1
                assert now.count("p1_source_errors_total") >= 2 * restart  # closed, refused
        assert proc.poll() is None
    finally:
        proc.terminate()
        _, log = proc.communicate(timeout=5)
        dongle.stop()
    assert "Traceback" not in log


@pytest.mark.slow
def test_silent_meter_goes_stale_then_comes_back() -> None:
    line = PtyLine()
    with (
        Meter(line.write) as meter,
        running(config(line.path, stale_after=1.0, silence_timeout=0.5)) as reader,
        serving(reader) as metrics,
    ):
        recovered(metrics, meter, 0.0)
        assert metrics.scrape().count("p1_up") == 1
        errors = metrics.count("p1_source_errors_total")
        meter.shape = lambda good: b""
        wait_for(lambda: metrics.scrape().count("p1_up") == 0)
        assert metrics.get(ENERGY, tariff="1") is None  # values withdrawn, not frozen
        wait_for(lambda: metrics.scrape().count("p1_source_errors_total") > errors)
        meter.shape = None
        recovered(metrics, meter, meter.mark())
        assert metrics.scrape().count("p1_up") == 1
    line.unplug()


@pytest.mark.slow
def test_garbage_bursts_are_counted_and_values_stay_true() -> None:
    rng = random.Random(3)
    noise = bytes(b for b in range(256) if b not in b"/!")
    bursts = {"torn": 0, "noise": 0}

    def with_garbage(good: bytes) -> bytes:
        burst = bytes(rng.choice(noise) for _ in range(rng.randrange(1, 300)))
        kind = rng.choice(("torn", "noise"))
        if bursts["torn"] + bursts["noise"] >= 30:
            return good
        bursts[kind] += 1
        return (b"/" + burst if kind == "torn" else burst) + good

    line = PtyLine()
    with (
        Meter(line.write) as meter,
        running(config(line.path)) as reader,
        serving(reader) as metrics,
    ):
        recovered(metrics, meter, 0.0)
        ok = metrics.scrape().count("p1_telegrams_total", result="ok")
        meter.shape = with_garbage
        wait_for(lambda: sum(bursts.values()) >= 30)
        meter.shape = None
        recovered(metrics, meter, meter.mark())
        after = metrics.scrape()
        assert after.count("p1_telegrams_total", result="malformed") == bursts["torn"]
        assert after.count("p1_telegrams_total", result="ok") >= ok + 30
        assert after.count("p1_telegrams_total", result="crc_error") == 0
        assert after.count("p1_source_errors_total") == 0
    line.unplug()


@pytest.mark.slow
def test_crc_storm_is_counted_and_never_published() -> None:
    line = PtyLine()
    storm = {"left": 40}

    def corrupted(good: bytes) -> bytes:
        if storm["left"] == 0:
            return b""  # quiet until the test has looked
        storm["left"] -= 1
        return corrupt_crc(good)

    with (
        Meter(line.write) as meter,
        running(config(line.path)) as reader,
        serving(reader) as metrics,
    ):
        recovered(metrics, meter, 0.0)
        crc_errors = metrics.scrape().count("p1_telegrams_total", result="crc_error")
        meter.shape = corrupted
        wait_for(lambda: storm["left"] == 0)
        wait_for(
            lambda: (
                metrics.scrape().count("p1_telegrams_total", result="crc_error") == crc_errors + 40
            )
        )
        assert metrics.energy() == max(meter.sent)  # the last good one, throughout the storm
        assert metrics.count("p1_up") == 1
        meter.shape = None
        recovered(metrics, meter, meter.mark())
        after = metrics.scrape()
        assert after.count("p1_telegrams_total", result="crc_error") == crc_errors + 40
        assert after.count("p1_source_errors_total") == 0
    line.unplug()


@pytest.mark.slow
def test_slow_link_one_byte_at_a_time() -> None:
    line = PtyLine()
    with running(config(line.path)) as reader, serving(reader) as metrics:
        wait_for(lambda: reader.snapshot.connected)
        for wh in (5_000_100, 5_000_200):
            data = telegram(wh)
            for byte in data:
                line.write(bytes((byte,)))
                time.sleep(0.0005)
            wait_for(lambda wh=wh: metrics.energy() == wh * 3600.0)  # type: ignore[misc]
        snap = metrics.scrape()
        assert snap.count("p1_telegrams_total", result="ok") == 2
        assert snap.count("p1_bytes_read_total") == len(telegram(5_000_100)) * 2
        assert snap.count("p1_telegrams_total", result="malformed") == 0
        assert snap.count("p1_source_errors_total") == 0
    line.unplug()


def _wire(settings: SerialSettings) -> str:
    return f"{settings.baudrate}-{settings.bytesize}{settings.parity}{settings.stopbits}"


def test_wrong_serial_settings_then_right_ones(no_reader_crash: pytest.LogCaptureFixture) -> None:
    """A DSMR 5 meter (115200 8N1) while the reader starts at 9600 7E1 (auto-detection).

    The meter thread emulates the line: it sends what a UART with the reader's current
    settings receives (:func:`~p1_exporter.sim.uart.transcode`). Ptys of some kernels
    refuse 7E1: then the refusal is the fault, counted as a source error.
    """
    line = PtyLine()
    source = SerialSource(line.path)
    source.next_settings()  # start on the wrong candidate
    assert str(source.settings) == "9600 7E1"
    with Meter(line.write) as meter:
        meter.shape = lambda good: transcode(good, "115200-8N1", _wire(source.settings))
        with (
            running(config(line.path, detect_timeout=0.6), source) as reader,
            serving(reader) as metrics,
        ):
            recovered(metrics, meter, 0.0)
            snap = reader.snapshot
            assert snap.settings == "115200 8N1"
            log = [r.getMessage() for r in no_reader_crash.records]
            if snap.source_errors:  # this kernel's pty refused 7E1
                assert any("does not accept 9600 7E1" in m for m in log)
            else:  # garbage read at 9600 7E1, then a switch after detect_timeout
                assert any("trying 115200 8N1" in m for m in log)
                read = metrics.scrape().count("p1_bytes_read_total")
                assert read > snap.telegrams["ok"] * len(V5)
            assert metrics.scrape().count("p1_up") == 1
    line.unplug()


@pytest.mark.slow
def test_inverted_line_then_fixed(no_reader_crash: pytest.LogCaptureFixture) -> None:
    """The other wiring fault: the P1 signal not inverted, at the right speed."""
    line = PtyLine()
    with (
        Meter(line.write) as meter,
        running(config(line.path, settings=SerialSettings(115200, 8, "N"))) as reader,
        serving(reader) as metrics,
    ):
        meter.shape = lambda good: transcode(good, "115200-8N1", "115200-8N1", inverted=True)
        time.sleep(1.0)
        snap = metrics.scrape()
        assert snap.count("p1_telegrams_total", result="ok") == 0
        assert snap.count("p1_bytes_read_total") > 5000 and metrics.energy() is None
        meter.shape = None
        recovered(metrics, meter, meter.mark())
        log = [r.getMessage() for r in no_reader_crash.records]
        assert sum("not inverted" in m for m in log) == 1
        assert reader.snapshot.settings == "115200 8N1"
    line.unplug()


def test_meter_clock_jumping_backwards_keeps_values_flowing() -> None:
    """The exporter publishes the meter clock as sent, even backwards, and nothing else
    changes: freshness is the exporter's own monotonic clock, and registers still rise."""
    line = PtyLine()
    clock = {"line": b"0-0:1.0.0(240301120000W)"}
    with (
        Meter(line.write) as meter,
        running(config(line.path)) as reader,
        serving(reader) as metrics,
    ):
        meter.make = lambda wh: telegram(wh, clock=clock["line"])
        recovered(metrics, meter, 0.0)
        first = metrics.scrape().get("p1_meter_clock_timestamp_seconds")
        clock["line"] = b"0-0:1.0.0(240301110000W)"  # one hour back
        recovered(metrics, meter, meter.mark())
        assert first is not None
        assert metrics.scrape().get("p1_meter_clock_timestamp_seconds") == first - 3600
        recovered(metrics, meter, meter.mark())  # and values keep coming
        after = metrics.scrape()
        assert after.get("p1_meter_clock_timestamp_seconds") == first - 3600
        assert after.count("p1_up") == 1 and after.count("p1_glitches_total") == 0
        assert after.count("p1_telegrams_total", result="ok") >= 3
        assert after.count("p1_source_errors_total") == 0
    line.unplug()


def test_replaced_meter_is_accepted_and_logged_once(
    no_reader_crash: pytest.LogCaptureFixture,
) -> None:
    line = PtyLine()
    new_id = b"0-0:96.1.1(4E45572D4D455445522D30303031)"  # "NEW-METER-0001"
    with (
        Meter(line.write) as meter,
        running(config(line.path)) as reader,
        serving(reader) as metrics,
    ):
        recovered(metrics, meter, 0.0)
        meter.make = lambda wh: telegram(wh - 5_000_000, ident=new_id)  # starts near zero
        wait_for(lambda: (metrics.energy() or 1e12) < 1e8)
        time.sleep(0.3)  # more telegrams from the new meter
        after = metrics.scrape()
        assert after.count("p1_glitches_total") == 0
        info = [labels for (name, labels), _ in after.samples.items() if name == "p1_meter_info"]
        assert dict(info[0])["equipment_id"] == "NEW-METER-0001"
        value = metrics.energy()
        assert value is not None and value < 1e8 and value + 5_000_000 * 3600.0 in meter.sent
    line.unplug()
    log = [r.getMessage() for r in no_reader_crash.records]
    assert sum("meter replaced" in m for m in log) == 1
