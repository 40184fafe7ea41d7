"""A meter on a pty or TCP line and the exporter's /metrics, for fault injection.

A :class:`Meter` thread sends a telegram every :data:`INTERVAL` seconds with a tariff-1
import register that rises with every telegram, so "recovered" means: /metrics shows a value
this meter really sent, and one sent after the fault ended. Backoff is capped at
:data:`BACKOFF_CAP` seconds; :data:`RECOVERY` (the cap, one read timeout, one meter interval
and a scrape) is the budget benchmarks/bench_recovery.py reports recovery times against.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator

from prometheus_client.parser import text_string_to_metric_families

from p1_exporter.meter.meterset import Meter as Driver
from p1_exporter.meter.reader import MAX_BLOCK, MeterConfig
from p1_exporter.web.app import ExporterApp
from p1_exporter.web.server import ExporterHTTPServer
from tests.helpers.fixtures import V5
from tests.helpers.reader import Pty, fast_config, open_pty
from tests.helpers.telegrams import KWH_LINE, with_crc
from tests.helpers.wait import wait_for

BACKOFF_CAP = 0.3
INTERVAL = 0.05
RECOVERY = BACKOFF_CAP + MAX_BLOCK + INTERVAL + 0.35
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
def serving(reader: Driver) -> Iterator[Metrics]:
    """The real HTTP server and routes in-process, for one reader."""
    server = ExporterHTTPServer("127.0.0.1:0", ExporterApp(lambda: [reader.snapshot]))
    server.start()
    try:
        yield Metrics(f"http://127.0.0.1:{server.server_address[1]}/metrics", reader.config.name)
    finally:
        server.shutdown()


def recovered(metrics: Metrics, meter: Meter, since: float, timeout: float = 10.0) -> float:
    """Wait until /metrics shows a value sent after ``since`` (a mark); return seconds taken.

    ``timeout`` only guards against a hang; how long recovery takes is for the caller to
    report (benchmarks/bench_recovery.py), not to assert.
    """
    began = time.monotonic()
    value = wait_for(
        lambda: (v := metrics.energy()) is not None and v >= since and v,
        timeout,
        f"a value >= {since}",
    )
    took = time.monotonic() - began
    assert value in meter.sent, f"{value} was never sent"
    return took


def config(url: str, **overrides: object) -> MeterConfig:
    values: dict[str, object] = {"backoff_cap": BACKOFF_CAP, "silence_timeout": 5.0}
    values.update(overrides)
    return fast_config(url, **values)
