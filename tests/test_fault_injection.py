"""Fault injection: after each fault the exporter serves correct values again, and counted it.

A meter thread sends a telegram every :data:`INTERVAL` seconds over a real pty or a
real TCP dongle, with a tariff-1 import register that rises with every telegram, so
"correct" means: a value this meter really sent, and one sent after the fault ended.
Values and counters are read through /metrics of the real HTTP server (in-process for
the serial faults, the real exporter process for the TCP dongle). Backoff is capped at
:data:`BACKOFF_CAP` seconds; recovery must take at most :data:`RECOVERY` seconds: the
cap, one read timeout, one meter interval and a scrape.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from p1_exporter.meter.reader import MAX_BLOCK, MeterConfig, MeterReader
from p1_exporter.meter.sources import SerialSettings, SerialSource
from p1_exporter.sim.uart import transcode
from p1_exporter.web.app import ExporterApp
from p1_exporter.web.server import ExporterHTTPServer
from tests.readerutil import (
    V5,
    Dongle,
    Pty,
    corrupt_crc,
    fast_config,
    free_port,
    open_pty,
    point,
    running,
    wait_until,
    with_crc,
)

BACKOFF_CAP = 0.3
INTERVAL = 0.05
RECOVERY = BACKOFF_CAP + MAX_BLOCK + INTERVAL + 0.35
ROOT = Path(__file__).resolve().parent.parent
KWH_LINE = b"1-0:1.8.1(000004.426*kWh)"
CLOCK_LINE = b"0-0:1.0.0(170102192002W)"
ID_LINE = b"0-0:96.1.1(4B384547303034303436333935353037)"
ENERGY = "p1_energy_import_joules_total"

Shape = Callable[[bytes], bytes]


def telegram(wh: int, clock: bytes = CLOCK_LINE, ident: bytes = ID_LINE) -> bytes:
    """The v5 fixture with a tariff-1 import of ``wh`` watt-hours (and clock, id), signed."""
    body = V5.replace(KWH_LINE, b"1-0:1.8.1(%06d.%03d*kWh)" % divmod(wh, 1000))
    return with_crc(body.replace(CLOCK_LINE, clock).replace(ID_LINE, ident))


class Meter:
    """Sends a telegram every INTERVAL through ``write``; ``shape`` decides what goes out.

    ``shape`` gets the valid telegram and returns the bytes to send (``b""``: silence).
    Values of telegrams sent unchanged are recorded in ``sent`` (joules).
    """

    def __init__(self, write: Callable[[bytes], None], start_wh: int = 5_000_000) -> None:
        self.write = write
        self.wh = start_wh
        self.shape: Shape | None = None
        self.sent: set[float] = set()
        self.make: Callable[[int], bytes] = telegram
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Meter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)

    def mark(self) -> float:
        """The joules of the next telegram: any value at least this was sent after now."""
        with self._lock:
            return (self.wh + 7) * 3600.0

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL):
            with self._lock:
                self.wh += 7
                good = self.make(self.wh)
                data = good if self.shape is None else self.shape(good)
                if data == good:
                    self.sent.add(self.wh * 3600.0)
            if data:
                with contextlib.suppress(OSError):
                    self.write(data)


class PtyLine:
    """The meter's end of a pty that can be unplugged and replaced (writes never block)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pty: Pty | None = None
        self.plug()

    def plug(self) -> Pty:
        pty = open_pty()
        os.set_blocking(pty.master, False)
        with self._lock:
            self.pty = pty
        return pty

    def unplug(self) -> None:
        with self._lock:
            pty, self.pty = self.pty, None
        if pty is not None:
            pty.close()

    def write(self, data: bytes) -> None:
        with self._lock:  # never write to a closed (or reused) descriptor
            if self.pty is not None:
                with contextlib.suppress(BlockingIOError):  # nobody reads: the line drops it
                    os.write(self.pty.master, data)

    @property
    def path(self) -> str:
        assert self.pty is not None
        return self.pty.path


class Metrics:
    """Scrapes a /metrics URL and reads series of one meter."""

    def __init__(self, url: str, meter: str) -> None:
        self.url = url
        self.meter = meter
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}

    def scrape(self) -> Metrics:
        with urllib.request.urlopen(self.url, timeout=5) as response:
            text = response.read().decode()
        self.samples = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
        return self

    def get(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset({"meter": self.meter, **labels}.items())))

    def count(self, name: str, **labels: str) -> int:
        value = self.get(name, **labels)
        assert value is not None, f"{name} {labels} missing"
        return int(value)

    def energy(self) -> float | None:
        return self.scrape().get(ENERGY, tariff="1")


@contextlib.contextmanager
def serving(reader: MeterReader) -> Iterator[Metrics]:
    """The real HTTP server and routes in-process, for one reader."""
    server = ExporterHTTPServer("127.0.0.1:0", ExporterApp(lambda: [reader.snapshot]))
    server.start()
    try:
        yield Metrics(f"http://127.0.0.1:{server.server_address[1]}/metrics",
                      reader.config.name)
    finally:
        server.shutdown()


def recovered(metrics: Metrics, meter: Meter, since: float, timeout: float = 5.0) -> float:
    """Wait until /metrics shows a value sent after ``since`` (a mark); return seconds taken."""
    began = time.monotonic()
    value = wait_until(lambda: (v := metrics.energy()) is not None and v >= since and v,
                       timeout=timeout)
    took = time.monotonic() - began
    assert value, f"no value >= {since} within {timeout} s"
    assert value in meter.sent, f"{value} was never sent"
    return took


@pytest.fixture(autouse=True)
def no_reader_crash(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG, logger="p1_exporter.reader")
    yield caplog
    crashes = [r.getMessage() for r in caplog.records if "unexpected error" in r.getMessage()]
    assert not crashes


def config(url: str, **overrides: object) -> MeterConfig:
    values: dict[str, object] = {"backoff_cap": BACKOFF_CAP, "silence_timeout": 5.0}
    values.update(overrides)
    return fast_config(url, **values)


# -- the faults -------------------------------------------------------------------------


def test_twenty_unplug_replug_cycles(tmp_path: Path) -> None:
    link = tmp_path / "ttyUSB-p1"
    line = PtyLine()
    point(link, line.path)
    times = []
    with Meter(line.write) as meter, running(config(str(link))) as reader, \
            serving(reader) as metrics:
        recovered(metrics, meter, 0.0)
        for cycle in range(20):
            before = metrics.scrape()
            connects = before.count("p1_source_connects_total")
            errors = before.count("p1_source_errors_total")
            link.unlink()  # unplug: udev removes the link, the device node goes away
            line.unplug()
            assert wait_until(lambda: metrics.scrape().count("p1_source_connected") == 0)
            time.sleep(0.1 + 0.1 * (cycle % 3))  # unplugged long enough to back off
            line.plug()
            point(link, line.path)
            times.append(recovered(metrics, meter, meter.mark()))
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
    print(f"\nreplug -> correct value: max {max(times):.3f} s, mean "
          f"{sum(times) / len(times):.3f} s over {len(times)} cycles (bound {RECOVERY:.2f} s)")
    assert max(times) <= RECOVERY, times


def test_tcp_dongle_restarts_under_the_real_exporter(tmp_path: Path) -> None:
    dongle = Dongle()
    port = free_port()
    cfg = tmp_path / "p1.yml"
    cfg.write_text(
        f"meters:\n  - name: dongle\n    device: {dongle.url}\n    backoff_cap: {BACKOFF_CAP}\n"
        f"    silence_timeout: 5\n    stale_after: 5\nweb:\n  listen_address: 127.0.0.1:{port}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "p1_exporter", "--config", str(cfg),
                             "--log.level", "warn"], cwd=ROOT, env=env,
                            stderr=subprocess.PIPE, text=True)
    metrics = Metrics(f"http://127.0.0.1:{port}/metrics", "dongle")
    times = []
    try:
        def send(data: bytes) -> None:
            dongle.send(data)

        with Meter(send) as meter:
            assert wait_until(lambda: dongle.clients == 1, timeout=10)
            recovered(metrics, meter, 0.0, timeout=10)
            for restart in range(1, 4):
                dongle.stop()  # reboots: connection closed, then refused for a while
                time.sleep(0.8)  # more than the cap: at least one refused attempt
                dongle.start()
                times.append(recovered(metrics, meter, meter.mark()))
                now = metrics.scrape()
                assert now.count("p1_source_connects_total") == restart + 1
                assert now.count("p1_source_errors_total") >= 2 * restart  # closed, refused
        assert proc.poll() is None
    finally:
        proc.terminate()
        _, log = proc.communicate(timeout=5)
        dongle.stop()
    print(f"\ndongle back -> correct value: {', '.join(f'{t:.3f}' for t in times)} s "
          f"(bound {RECOVERY:.2f} s)")
    assert max(times) <= RECOVERY, times
    assert "Traceback" not in log


def test_silent_meter_goes_stale_then_comes_back() -> None:
    line = PtyLine()
    with Meter(line.write) as meter, \
            running(config(line.path, stale_after=1.0, silence_timeout=0.5)) as reader, \
            serving(reader) as metrics:
        recovered(metrics, meter, 0.0)
        assert metrics.scrape().count("p1_up") == 1
        errors = metrics.count("p1_source_errors_total")
        meter.shape = lambda good: b""
        assert wait_until(lambda: metrics.scrape().count("p1_up") == 0, timeout=3)
        assert metrics.get(ENERGY, tariff="1") is None  # values withdrawn, not frozen
        assert wait_until(lambda: metrics.scrape().count("p1_source_errors_total") > errors)
        meter.shape = None
        took = recovered(metrics, meter, meter.mark())
        assert metrics.scrape().count("p1_up") == 1
    line.unplug()
    assert took <= RECOVERY


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
    with Meter(line.write) as meter, running(config(line.path)) as reader, \
            serving(reader) as metrics:
        recovered(metrics, meter, 0.0)
        ok = metrics.scrape().count("p1_telegrams_total", result="ok")
        meter.shape = with_garbage
        assert wait_until(lambda: sum(bursts.values()) >= 30, timeout=5)
        meter.shape = None
        took = recovered(metrics, meter, meter.mark())
        after = metrics.scrape()
        assert after.count("p1_telegrams_total", result="malformed") == bursts["torn"]
        assert after.count("p1_telegrams_total", result="ok") >= ok + 30
        assert after.count("p1_telegrams_total", result="crc_error") == 0
        assert after.count("p1_source_errors_total") == 0
    line.unplug()
    assert took <= RECOVERY


def test_crc_storm_is_counted_and_never_published() -> None:
    line = PtyLine()
    storm = {"left": 40}

    def corrupted(good: bytes) -> bytes:
        if storm["left"] == 0:
            return b""  # quiet until the test has looked
        storm["left"] -= 1
        return corrupt_crc(good)

    with Meter(line.write) as meter, running(config(line.path)) as reader, \
            serving(reader) as metrics:
        recovered(metrics, meter, 0.0)
        crc_errors = metrics.scrape().count("p1_telegrams_total", result="crc_error")
        meter.shape = corrupted
        assert wait_until(lambda: storm["left"] == 0, timeout=5)
        assert wait_until(lambda: metrics.scrape().count("p1_telegrams_total",
                                                         result="crc_error") == crc_errors + 40)
        assert metrics.energy() == max(meter.sent)  # the last good one, throughout the storm
        assert metrics.count("p1_up") == 1
        meter.shape = None
        took = recovered(metrics, meter, meter.mark())
        after = metrics.scrape()
        assert after.count("p1_telegrams_total", result="crc_error") == crc_errors + 40
        assert after.count("p1_source_errors_total") == 0
    line.unplug()
    assert took <= RECOVERY


def test_slow_link_one_byte_at_a_time() -> None:
    line = PtyLine()
    with running(config(line.path)) as reader, serving(reader) as metrics:
        assert wait_until(lambda: reader.snapshot.connected)
        for wh in (5_000_100, 5_000_200):
            data = telegram(wh)
            for byte in data:
                line.write(bytes((byte,)))
                time.sleep(0.0005)
            assert wait_until(lambda wh=wh: metrics.energy() == wh * 3600.0)  # type: ignore[misc]
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
        with running(config(line.path, detect_timeout=0.6), source) as reader, \
                serving(reader) as metrics:
            began = time.monotonic()
            recovered(metrics, meter, 0.0, timeout=5)
            took = time.monotonic() - began
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
    assert took <= 0.6 + RECOVERY


def test_inverted_line_then_fixed(no_reader_crash: pytest.LogCaptureFixture) -> None:
    """The other wiring fault: the P1 signal not inverted, at the right speed."""
    line = PtyLine()
    with Meter(line.write) as meter, \
            running(config(line.path, settings=SerialSettings(115200, 8, "N"))) as reader, \
            serving(reader) as metrics:
        meter.shape = lambda good: transcode(good, "115200-8N1", "115200-8N1", inverted=True)
        time.sleep(1.0)
        snap = metrics.scrape()
        assert snap.count("p1_telegrams_total", result="ok") == 0
        assert snap.count("p1_bytes_read_total") > 5000 and metrics.energy() is None
        meter.shape = None
        took = recovered(metrics, meter, meter.mark())
        log = [r.getMessage() for r in no_reader_crash.records]
        assert sum("not inverted" in m for m in log) == 1
        assert reader.snapshot.settings == "115200 8N1"
    line.unplug()
    assert took <= RECOVERY


def test_meter_clock_jumping_backwards_keeps_values_flowing() -> None:
    """The exporter publishes the meter clock as sent, even backwards, and nothing else
    changes: freshness is the exporter's own monotonic clock, and registers still rise."""
    line = PtyLine()
    clock = {"line": b"0-0:1.0.0(240301120000W)"}
    with Meter(line.write) as meter, running(config(line.path)) as reader, \
            serving(reader) as metrics:
        meter.make = lambda wh: telegram(wh, clock=clock["line"])
        recovered(metrics, meter, 0.0)
        first = metrics.scrape().get("p1_meter_clock_timestamp_seconds")
        clock["line"] = b"0-0:1.0.0(240301110000W)"  # one hour back
        took = recovered(metrics, meter, meter.mark())
        assert first is not None
        assert metrics.scrape().get("p1_meter_clock_timestamp_seconds") == first - 3600
        took_more = recovered(metrics, meter, meter.mark())  # and values keep coming
        after = metrics.scrape()
        assert after.get("p1_meter_clock_timestamp_seconds") == first - 3600
        assert after.count("p1_up") == 1 and after.count("p1_glitches_total") == 0
        assert after.count("p1_telegrams_total", result="ok") >= 3
        assert after.count("p1_source_errors_total") == 0
        assert took_more <= RECOVERY
    line.unplug()
    assert took <= RECOVERY


def test_replaced_meter_is_accepted_and_logged_once(
    no_reader_crash: pytest.LogCaptureFixture,
) -> None:
    line = PtyLine()
    new_id = b"0-0:96.1.1(4E45572D4D455445522D30303031)"  # "NEW-METER-0001"
    with Meter(line.write) as meter, running(config(line.path)) as reader, \
            serving(reader) as metrics:
        recovered(metrics, meter, 0.0)
        meter.make = lambda wh: telegram(wh - 5_000_000, ident=new_id)  # starts near zero
        began = time.monotonic()
        assert wait_until(lambda: (metrics.energy() or 1e12) < 1e8)
        took = time.monotonic() - began
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
    assert took <= RECOVERY
