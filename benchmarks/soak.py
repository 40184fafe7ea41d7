"""Soak: a million telegrams through the real reader path, as fast as it can, watching RSS.

Run: ``.venv/bin/python benchmarks/soak.py`` (``--telegrams``, ``--pool``).

A :class:`MeterReader` (its thread, framer, CRC, parser with its memos, glitch guard,
diagnostics, snapshot publishing) reads from :class:`ReplaySource`, an in-memory
source that hands out one telegram per read. The telegrams are made from a pool of
simulated DSMR 5 telegrams (an hour of a household: power, voltages and currents vary
from telegram to telegram); every cumulative register, the gas reading and the clock
are rewritten so they keep rising across the whole run and the CRC is recomputed, so
all telegrams are distinct and valid and the glitch guard never fires. An in-process
HTTP server is scraped once a second meanwhile, so the scrape path is part of the soak.

RSS (``/proc/self/statm``) is sampled twice a second. Reported: telegrams per second,
RSS at start, once warm (after ``--warmup`` telegrams: memos and caches full), at the
end and at most, the growth from warm to end, and the least-squares slope of RSS over
the warm part. Exits 1 if a telegram was refused or lost, or RSS grew 1 MiB or more.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from p1_exporter.core.clock import format_meter_time
from p1_exporter.core.crc import crc16_arc
from p1_exporter.meter.glitch import is_cumulative
from p1_exporter.meter.reader import MeterConfig, MeterReader
from p1_exporter.sim import SimulatedMeter
from p1_exporter.web.app import ExporterApp
from p1_exporter.web.server import ExporterHTTPServer

START = 1_700_000_000.0
_NUMBER = re.compile(
    rb"^(?P<code>\d-\d:\d+\.\d+\.\d+)\((?:\d{12}[SW]\)\()?(?P<num>\d+(?:\.\d+)?)(?=[*)])",
    re.MULTILINE,
)
_CLOCK = re.compile(rb"^0-0:1\.0\.0\((?P<num>\d{12}[SW])\)", re.MULTILINE)
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Resident set size of this process."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * _PAGE


class Template:
    """One pool telegram cut around its rising numbers and its clock."""

    def __init__(self, telegram: bytes) -> None:
        body = telegram[: telegram.rindex(b"\n!") + 2]
        self.pieces: list[bytes] = []
        self.slots: list[tuple[str, int, int, int]] = []  # code, digits, width, decimals
        pos = 0
        matches = [
            m
            for m in _NUMBER.finditer(body)
            if is_cumulative(m["code"].decode()) or b":24.2." in m["code"]
        ]
        matches += list(_CLOCK.finditer(body))
        for match in sorted(matches, key=lambda m: m.start("num")):
            self.pieces.append(body[pos : match.start("num")])
            text = match["num"].decode()
            if match.re is _CLOCK:
                self.slots.append(("clock", 0, 0, 0))
            else:
                whole, _, fraction = text.partition(".")
                self.slots.append(
                    (
                        match["code"].decode(),
                        int(whole + fraction),
                        len(whole + fraction),
                        len(fraction),
                    )
                )
            pos = match.end("num")
        self.pieces.append(body[pos:])


class ReplaySource:
    """An in-memory meter: telegram ``i`` is pool template ``i % len(pool)``, rising."""

    description = "replay:memory"

    def __init__(self, telegrams: int, pool: list[bytes]) -> None:
        self.total = telegrams
        self.templates = [Template(t) for t in pool]
        self.span: dict[str, int] = {}
        for index, slot in enumerate(self.templates[0].slots):
            code = slot[0]
            values = [t.slots[index][1] for t in self.templates]
            self.span[code] = max(values) - min(values) + 1
        self.sent = 0
        self.finished = False
        self.last_kwh = 0.0

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def make(self, number: int) -> bytes:
        """Telegram ``number`` of the run, signed."""
        template = self.templates[number % len(self.templates)]
        wraps = number // len(self.templates)
        out = bytearray()
        for piece, (code, digits, width, decimals) in zip(
            template.pieces, template.slots, strict=False
        ):
            out += piece
            if code == "clock":
                out += format_meter_time(START + number).encode()
                continue
            text = str(digits + wraps * self.span[code]).zfill(width)
            if decimals:
                text = f"{text[:-decimals]}.{text[-decimals:]}"
            if code == "1-0:1.8.1":
                self.last_kwh = float(text)
            out += text.encode()
        out += template.pieces[-1]
        return bytes(out) + b"%04X\r\n" % crc16_arc(bytes(out))

    def read(self, timeout: float) -> bytes:
        if self.sent >= self.total:
            self.finished = True
            time.sleep(timeout)
            return b""
        data = self.make(self.sent)
        self.sent += 1
        return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--telegrams", type=int, default=1_000_000)
    parser.add_argument("--pool", type=int, default=3600, help="simulated telegrams to vary")
    parser.add_argument(
        "--warmup",
        type=int,
        default=300_000,
        help="telegrams before RSS counts as warm (the meter-time cache "
        "fills in 4096 minutes: 245,760 telegrams at one a second)",
    )
    args = parser.parse_args()

    meter = SimulatedMeter("dsmr5", seed=7, start=START)
    pool = [meter.telegram_at(START + i) for i in range(args.pool)]
    source = ReplaySource(args.telegrams, pool)
    check = source.make(args.pool * 3 + 5)
    assert check.endswith(b"\r\n") and crc16_arc(check[: check.rindex(b"!") + 1])

    reader = MeterReader(MeterConfig(url="replay:memory", name="soak", stale_after=3600.0), source)
    server = ExporterHTTPServer("127.0.0.1:0", ExporterApp(lambda: [reader.snapshot]))
    url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
    samples: list[tuple[float, int, int]] = []  # seconds, telegrams ok, rss
    stop = threading.Event()
    scrapes = [0, 0]  # ok, failed

    def sample() -> None:
        while not stop.wait(0.5):
            samples.append((time.monotonic(), reader.snapshot.telegrams["ok"], rss_bytes()))

    def scrape() -> None:
        while not stop.wait(1.0):
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    response.read()
                scrapes[0] += 1
            except OSError:
                scrapes[1] += 1

    rss_start = rss_bytes()
    server.start()
    threads = [threading.Thread(target=f, daemon=True) for f in (sample, scrape)]
    began = time.monotonic()
    reader.start()
    for thread in threads:
        thread.start()
    last = began
    while not source.finished:
        time.sleep(0.2)
        now = time.monotonic()
        if now - last >= 15:
            last = now
            done = reader.snapshot.telegrams["ok"]
            print(
                f"  {done:>9,} telegrams, {done / (now - began):,.0f}/s, "
                f"RSS {rss_bytes() / 2**20:.2f} MiB",
                flush=True,
            )
    assert wait_for(
        lambda: (
            reader.snapshot.telegrams["ok"]
            + sum(v for k, v in reader.snapshot.telegrams.items() if k != "ok")
            >= args.telegrams
        )
    )
    elapsed = time.monotonic() - began
    stop.set()
    reader.stop()
    server.shutdown()
    samples.append((time.monotonic(), reader.snapshot.telegrams["ok"], rss_bytes()))
    snap = reader.snapshot

    warm = [(t, n, r) for t, n, r in samples if n >= args.warmup]
    rss_warm = warm[0][2] if warm else samples[0][2]
    rss_end = samples[-1][2]
    slope = _slope([(n, r) for _, n, r in warm])
    growth = rss_end - rss_warm
    telegram = snap.telegram
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}"
    )
    print(
        f"telegrams: {snap.telegrams['ok']:,} ok of {args.telegrams:,} "
        f"({dict(snap.telegrams)}), glitches {snap.glitches}, source errors "
        f"{snap.source_errors}, bytes {snap.bytes_read:,}"
    )
    print(
        f"time: {elapsed:.1f} s, {args.telegrams / elapsed:,.0f} telegrams/s "
        f"({elapsed / args.telegrams * 1e6:.1f} us each); scrapes meanwhile: {scrapes[0]} ok, "
        f"{scrapes[1]} failed"
    )
    print(
        f"RSS: start {rss_start / 2**20:.2f} MiB, warm (after {args.warmup:,}) "
        f"{rss_warm / 2**20:.2f} MiB, end {rss_end / 2**20:.2f} MiB, max "
        f"{max(r for _, _, r in samples) / 2**20:.2f} MiB"
    )
    print(
        f"RSS growth warm -> end: {growth / 1024:+.0f} KiB (goal: under 1024 KiB); "
        f"slope over the warm part: {slope * 100_000 / 1024:+.1f} KiB per 100,000 telegrams"
    )
    good = (
        snap.telegrams["ok"] == args.telegrams
        and snap.glitches == 0
        and telegram is not None
        and telegram.value("1-0:1.8.1") == source.last_kwh * 3.6e6
        and scrapes[1] == 0
    )
    if not good:
        print("FAILED: telegrams refused, lost or wrong, or a scrape failed")
    return 0 if good and growth < 2**20 else 1


def wait_for(condition: object, timeout: float = 10.0) -> bool:
    """Poll ``condition`` (a callable) until true or ``timeout`` seconds pass."""
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _slope(points: list[tuple[int, int]]) -> float:
    """Least-squares slope of RSS bytes per telegram."""
    if len(points) < 2:
        return 0.0
    count = len(points)
    mean_x = sum(x for x, _ in points) / count
    mean_y = sum(y for _, y in points) / count
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var


if __name__ == "__main__":
    sys.exit(main())
