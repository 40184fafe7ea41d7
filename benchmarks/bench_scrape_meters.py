"""/metrics cost at 10, 100 and 500 meters, cached beside uncached; parse-memo bytes per stream.

Run: ``.venv/bin/python benchmarks/bench_scrape_meters.py`` (``--quick`` for fewer scrapes).

In process, no HTTP: each meter is a snapshot built from a parsed telegram (a realistic
DSMR 5 stream whose voltages, currents and powers move, plus the Belgian, Hungarian and
Luxembourg fixtures), 1 in 20 meters stale. One scrape is the whole /metrics body with
the process's own metrics, as the exporter serves it. Columns, per format:
- uncached: prometheus_client's encoder over the P1 collector (the landed path);
- cached, all new: every meter published a new snapshot since the last scrape (1
  telegram/s scraped every 15 s: the usual case), so each is rendered at this scrape;
- cached, unchanged: no new snapshot since the last scrape (or rendered ahead with
  ``CachedExposition.prepare``): the scrape only joins bytes.
CPU is this process's CPU time per scrape, latency its wall time (median of the scrapes).

Then the parse memo of one stream (deep size, peak over 20,000 telegrams) on a realistic
stream and on a repeating one, for the landed parser (``--landed``, default /work/main)
and this one, with the parse cost per telegram.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from p1_exporter.core.telegram import Telegram
    from p1_exporter.meter.snapshot import Snapshot

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def scrape_figures(quick: bool) -> None:
    sys.path.insert(0, str(ROOT))
    print("scrape of N meters, whole /metrics body (ms: median CPU / median latency)")
    header = (
        f"{'meters':>6} {'format':<12} {'uncached':>17} {'cached, all new':>17} "
        f"{'cached, unchanged':>18} {'size':>10} {'render ahead':>14}"
    )
    print(header)
    print("-" * len(header))
    for count in (10, 100, 500):
        rounds = (5 if count == 500 else 10) if quick else (15 if count == 500 else 40)
        for row in Meters(count).rows(rounds):
            print(row)


class Meters:
    """``count`` meters publishing snapshots; scraped the landed way and the cached way."""

    def __init__(self, count: int) -> None:
        from prometheus_client.exposition import generate_latest
        from prometheus_client.openmetrics.exposition import generate_latest as om_latest

        from p1_exporter import parse
        from p1_exporter.metrics.collector import make_registry
        from p1_exporter.metrics.exposition import CachedExposition

        self.count = count
        self.tick = 0
        self.stream = [parse(raw) for raw in _streams().realistic_stream(300)]
        self.others = [
            parse((ROOT / "tests" / "fixtures" / name).read_bytes())
            for name in ("fluvius_v171.txt", "v5_eon_hu.txt", "smarty_lux.txt")
        ]
        self.current: list[Snapshot] = []
        self.publish_all()
        self.cached = CachedExposition(self.snapshots)
        self.registry = make_registry(self.snapshots)
        self.encoders: list[tuple[str, Callable[..., bytes]]] = [
            ("text 0.0.4", generate_latest),
            ("openmetrics", om_latest),
        ]
        # Same bytes (without the process metrics, whose values move), or no figures.
        p1_cached = CachedExposition(self.snapshots, self_metrics=False)
        p1_registry = make_registry(self.snapshots, self_metrics=False)
        for _, encoder in self.encoders:
            assert p1_cached.encode(encoder) == encoder(p1_registry)

    def snapshots(self) -> list[Snapshot]:
        return self.current

    def publish_all(self) -> None:
        """Every meter publishes a new snapshot (1 in 20 of them stale: silent for 60 s)."""
        from p1_exporter.meter.snapshot import Snapshot

        self.tick += 1
        now = time.monotonic()
        self.current = [
            Snapshot(
                f"meter-{m:04d}",
                "sim://",
                10.0,
                telegram=self.telegram(m),
                received_at=1.7e9 + self.tick,
                bytes_read=1000 * self.tick + m,
                connects=1,
                connected=True,
                received_monotonic=now - (60.0 if m % 20 == 19 else 0.5),
            )
            for m in range(self.count)
        ]

    def telegram(self, meter: int) -> Telegram:
        if meter % 5 == 4:
            return self.others[meter % 3]
        return self.stream[(meter * 7 + self.tick) % len(self.stream)]

    def rows(self, rounds: int) -> list[str]:
        rows = []
        for name, encoder in self.encoders:
            old = measure(functools.partial(encoder, self.registry), self.publish_all, rounds)
            new = measure(functools.partial(self.cached.encode, encoder), self.publish_all, rounds)
            warm = measure(functools.partial(self.cached.encode, encoder), lambda: None, rounds)
            self.publish_all()
            start = time.process_time()
            for snap in self.current:
                self.cached.prepare(snap)
            ahead = (time.process_time() - start) / self.count * 1e6
            rows.append(
                f"{self.count:>6} {name:<12} {old[0]:>7.1f} / {old[1]:>7.1f} "
                f"{new[0]:>7.1f} / {new[1]:>7.1f} {warm[0]:>7.2f} / {warm[1]:>7.2f}  "
                f"{warm[2] / 1024:>7.0f} KiB {ahead:>6.0f} us/meter"
            )
        return rows


def measure(
    scrape: Callable[[], bytes], before: Callable[[], None], rounds: int
) -> tuple[float, float, int]:
    """Median CPU ms and latency ms of ``scrape`` (``before`` runs untimed ahead of each),
    and the body size."""
    cpu, wall, size = [], [], 0
    for _ in range(rounds):
        before()
        c0, w0 = time.process_time(), time.perf_counter()
        size = len(scrape())
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return statistics.median(cpu) * 1e3, statistics.median(wall) * 1e3, size


def _streams() -> ModuleType:
    """This checkout's tests/streams.py, loaded by path (p1_exporter may be another's)."""
    spec = importlib.util.spec_from_file_location("streams", ROOT / "tests" / "streams.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def memo_figures(count: int) -> dict[str, float]:
    """Memo peak bytes and parse us per telegram for this process's p1_exporter."""
    from p1_exporter import TelegramStream

    streams = _streams()
    out: dict[str, float] = {}
    for name, frames in (
        ("realistic", list(streams.realistic_stream(count))),
        ("repeating", list(streams.repeating_stream(count))),
    ):
        stream = TelegramStream(sticky_crc=True)
        peak = 0
        for index, frame in enumerate(frames):
            (outcome,) = stream.feed(frame)
            assert outcome.telegram is not None
            if index % 200 == 0:
                peak = max(peak, streams.memo_bytes(stream.memo))
        peak = max(peak, streams.memo_bytes(stream.memo))
        timed = frames[:5000]
        best = float("inf")
        for _ in range(3):
            stream = TelegramStream(sticky_crc=True)
            start = time.process_time()
            for frame in timed:
                stream.feed(frame)
            best = min(best, (time.process_time() - start) / len(timed))
        out[f"{name}_bytes"] = peak
        out[f"{name}_us"] = best * 1e6
    return out


def memo_in(root: Path, count: int) -> dict[str, float]:
    """memo_figures() in a child process that imports ``root``'s p1_exporter."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import bench_scrape_meters as b; "
        "print(json.dumps(b.memo_figures(int(sys.argv[2]))))"
    )
    env = {**os.environ, "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", code, str(root), str(count)],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode:
        raise SystemExit(f"memo figures under {root} failed:\n{result.stderr}")
    figures: dict[str, float] = json.loads(result.stdout)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer scrapes and telegrams")
    parser.add_argument(
        "--landed",
        type=Path,
        default=Path("/work/main"),
        help="checkout of the landed exporter, for the memo figures",
    )
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}")
    scrape_figures(args.quick)
    count = 5000 if args.quick else 20_000
    print(
        f"\nparse memo of one stream: peak bytes over {count:,} telegrams "
        "(deep size), parse CPU us per telegram"
    )
    header = f"{'parser':<14} {'realistic':>12} {'us':>7} {'repeating':>12} {'us':>7}"
    print(header)
    print("-" * len(header))
    rows = [("this branch", ROOT)]
    if (args.landed / "p1_exporter").is_dir():
        rows.insert(0, ("landed", args.landed))
    for name, root in rows:
        figures = memo_in(root, count)
        print(
            f"{name:<14} {figures['realistic_bytes'] / 1024:>8.0f} KiB "
            f"{figures['realistic_us']:>7.1f} {figures['repeating_bytes'] / 1024:>8.0f} KiB "
            f"{figures['repeating_us']:>7.1f}"
        )


if __name__ == "__main__":
    main()
