"""Exporter RSS over a long run with many meters, ours beside the landed version (issue 14).

Run: ``.venv/bin/python benchmarks/bench_meters_rss.py`` (default: 500 TCP meters each,
10 minutes, scraped every 15 s as Prometheus would; ``--minutes``/``--meters`` to change,
``--kind sim`` for ``sim://`` meters; ``--landed PATH`` for the landed tree:
``git worktree add /tmp/landed c1b43a7``).

Both exporters run at once, each a child process with the same meters (one telegram a
second each, from a pool of simulated telegrams that move like a real meter's, served by
a local TCP server on 127.0.0.1). RSS is sampled every minute; the table shows it
side by side, with the growth from the first minute (warm: every meter up, every parse memo
filled) to the last. The parse memos are bounded per stream (``core.parser.MEMO_SIZE``), so
after the first minute a growth well under ``meters x MEMO_SIZE`` is the expected answer.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_meters import START, Exporter, TelegramServer  # noqa: E402

from p1_exporter.core.parser import MEMO_SIZE  # noqa: E402
from p1_exporter.sim.meter import SimulatedMeter  # noqa: E402


def scraper(exporter: Exporter, stop: threading.Event, interval: float) -> None:
    """Scrape every ``interval`` seconds until ``stop`` (failures only cost that scrape)."""
    while not stop.wait(interval):
        with contextlib.suppress(OSError):
            exporter.scrape(timeout=interval)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=500)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--scrape-interval", type=float, default=15.0)
    parser.add_argument("--landed", type=Path, default=Path("/tmp/landed"))
    parser.add_argument("--kind", choices=["tcp", "sim"], default="tcp")
    args = parser.parse_args()
    server = None
    if args.kind == "tcp":
        meter = SimulatedMeter("dsmr5", seed=1, start=START)
        pool = [meter.telegram_at(START + i) for i in range(300)]
        server = TelegramServer(pool, max_connections=4 * args.meters)
        devices = [server.url] * args.meters
    else:
        devices = [f"sim://?dialect=dsmr5&seed={n}&interval=1" for n in range(args.meters)]
    trees = {"this": ROOT}
    if (args.landed / "p1_exporter").is_dir():
        trees["landed"] = args.landed
    else:
        print(f"(no landed tree at {args.landed}: this version only)")
    exporters = {name: Exporter(tree, devices) for name, tree in trees.items()}
    stop = threading.Event()
    for exporter in exporters.values():
        exporter.start()
        threading.Thread(
            target=scraper, args=(exporter, stop, args.scrape_interval), daemon=True
        ).start()
    print(
        f"{args.meters} {args.kind} meters each, {args.minutes} min, scraped every "
        f"{args.scrape_interval:g} s; memo bound {MEMO_SIZE // 1024} KiB per stream"
    )
    print("minute  " + "  ".join(f"{name:>12}" for name in exporters) + "   (RSS MiB)")
    samples: dict[str, list[float]] = {name: [] for name in exporters}
    try:
        for minute in range(1, args.minutes + 1):
            time.sleep(60)
            row = []
            for name, exporter in exporters.items():
                alive = exporter.proc is not None and exporter.proc.poll() is None
                rss = exporter.rss_mib() if alive else float("nan")
                samples[name].append(rss)
                row.append(f"{rss:12.1f}")
            print(f"{minute:6d}  " + "  ".join(row), flush=True)
    finally:
        stop.set()
        for exporter in exporters.values():
            if exporter.proc is not None and exporter.proc.poll() is None:
                exporter.terminate()
        if server is not None:
            server.close()
    for name, values in samples.items():
        if len(values) >= 2:
            print(
                f"{name}: RSS minute 1 -> {len(values)}: {values[0]:.1f} -> {values[-1]:.1f} MiB "
                f"(growth {values[-1] - values[0]:+.1f} MiB, "
                f"{(values[-1] - values[0]) * 1024 / args.meters:+.1f} KiB per meter)"
            )


if __name__ == "__main__":
    main()
