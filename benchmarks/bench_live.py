"""The live page's cost: exporter RSS with 6 h of history, and /metrics beside page pollers.

Run: ``.venv/bin/python benchmarks/bench_live.py`` (``--meters 1,50``, ``--seconds 15``).

For each meter count it starts the real exporter as a child process (this file with
``--serve``): :func:`p1_exporter.commands.serve.build` with that many simulated DSMR 5
meters (one telegram a second each). Before serving, the child fills every meter's
history with 6 h of telegrams 10 s apart through ``MeterHistory.add``, the method the
readers' listener calls, so the ring buffers are full; it reports its RSS before
building the exporter, before filling and after. Then, with the page "open" (one client
loads /, its script and styles and the full JSON, as a browser does), one scraper fetches
/metrics ten times a second in three phases of ``--seconds`` each:

1. ``alone``: no other client;
2. ``5 pages``: 5 pollers as the page polls (``/api/v1/live?since=...`` every 2 s);
3. ``5 flat out``: 5 pollers fetching the full JSON back to back (far beyond any page).

It prints the scrape latency (p50/p99/max) of each phase, the JSON sizes, and the
exporter's RSS (VmRSS) and peak (VmHWM) at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_load  # noqa: E402  (free_port is shared with the other benchmarks)

HOURS = 6


def status_kib(pid: int | str, field: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"{field}:\s+(\d+) kB", text)
    return int(match[1]) if match else -1


# -- the exporter child ------------------------------------------------------------------


def serve(meters: int, port: int) -> None:
    """The exporter with ``meters`` simulated meters and full histories (child process)."""
    from p1_exporter import parse
    from p1_exporter.commands.config import load_config
    from p1_exporter.commands.serve import build
    from p1_exporter.logs.setup import setup_logging
    from p1_exporter.sim.meter import SimulatedMeter
    from p1_exporter.web.app import ExporterApp

    argv = ["--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warn"]
    for index in range(meters):
        argv += ["--device", f"m{index}=sim://?dialect=dsmr5&seed={index}&interval=1"]
    config = load_config(argv, {})
    setup_logging(config.log_level, config.log_format)
    bare = status_kib("self", "VmRSS")
    meters_set, server = build(config)
    app = server.handler
    assert isinstance(app, ExporterApp)
    before = status_kib("self", "VmRSS")
    now = time.time()
    start = now - HOURS * 3600
    simulated = SimulatedMeter("dsmr5", seed=1, start=start)
    histories = list(app.histories.values())
    t = start
    while t < now - 10:  # one telegram per 10 s slot, into every meter's history
        telegram = parse(simulated.telegram_at(t))
        for history in histories:
            history.add(telegram, t)
        t += 10
    filled = status_kib("self", "VmRSS")
    ring_bytes = sum(h.nbytes for h in histories)
    meters_set.start()  # the meters' event loop in a thread of its own
    server.start()
    print(
        json.dumps(
            {
                "rss_bare_kib": bare,
                "rss_empty_kib": before,
                "rss_filled_kib": filled,
                "ring_bytes": ring_bytes,
            }
        ),
        flush=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    meters_set.stop()
    server.shutdown()


# -- clients -----------------------------------------------------------------------------


def get(conn: http.client.HTTPConnection, path: str) -> bytes:
    conn.request("GET", path, headers={"Accept-Encoding": "identity"})
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        raise RuntimeError(f"{path}: HTTP {response.status}")
    return body


def open_page(port: int) -> tuple[int, dict[str, Any]]:
    """What a browser loads when the page opens; returns its bytes and the full JSON."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    total = 0
    for path in ("/", "/static/live.js", "/static/live.css"):
        total += len(get(conn, path))
    document = json.loads(get(conn, "/api/v1/live"))
    conn.close()
    return total, document


def next_since(document: dict[str, Any]) -> tuple[int, int]:
    meters = document["meters"]
    assert isinstance(meters, list)
    power = [m["power"]["first"] + m["power"]["count"] - 1 for m in meters if m["power"]["count"]]
    gas = [m["gas"]["first"] + m["gas"]["count"] - 1 for m in meters if m["gas"]["count"]]
    return min(power) - 1, min(gas) - 1


def pollers(
    port: int, count: int, seconds: float, period: float | None, sizes: list[int]
) -> threading.Thread:
    """``count`` page pollers in threads: like the page (``period``), or full JSON flat out."""

    def one() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        end = time.monotonic() + seconds
        since: tuple[int, int] | None = None
        while time.monotonic() < end:
            path = "/api/v1/live"
            if period is not None and since is not None:
                path += f"?since={since[0]}&gas_since={since[1]}"
            body = get(conn, path)
            sizes.append(len(body))
            if period is not None:
                since = next_since(json.loads(body))
                time.sleep(period)
        conn.close()

    threads = [threading.Thread(target=one) for _ in range(count)]

    def run() -> None:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    runner = threading.Thread(target=run)
    runner.start()
    return runner


def scrape_phase(port: int, seconds: float) -> dict[str, float]:
    latencies, errors = http_load.scrapers(port, 1, seconds, 0.1, time.time() + 0.05)
    p50, p99, top = http_load.percentiles_ms(latencies)
    return {
        "scrapes": len(latencies),
        "errors": sum(errors.values()),
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": top,
    }


def measure(meters: int, seconds: float) -> None:
    port = http_load.free_port()
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(meters), "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        ready = json.loads(child.stdout.readline())
        time.sleep(3)  # every meter has a telegram
        page_bytes, document = open_page(port)
        full = len(json.dumps(document, separators=(",", ":")))
        points = sum(m["power"]["count"] for m in document["meters"])
        print(f"\n== {meters} meter(s): {HOURS} h of history, {points} power points served")
        print(
            f"ring buffers: {ready['ring_bytes']} B in all "
            f"({ready['ring_bytes'] // meters} B per meter)"
        )
        print(
            f"exporter RSS: {ready['rss_bare_kib']} KiB before building the exporter, "
            f"{ready['rss_empty_kib']} KiB built (ring buffers are allocated up front), "
            f"{ready['rss_filled_kib']} KiB with 6 h of history"
        )
        print(f"page: {page_bytes} B (HTML, script, styles); full JSON {full} B")
        print(
            f"{'phase':<12} {'scrapes':>7} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'max ms':>8}  JSON per poll"
        )
        for name, count, period in (
            ("alone", 0, None),
            ("5 pages", 5, 2.0),
            ("5 flat out", 5, None),
        ):
            sizes: list[int] = []
            runner = pollers(port, count, seconds, period, sizes) if count else None
            result = scrape_phase(port, seconds)
            if runner is not None:
                runner.join()
            size = f"{min(sizes)}-{max(sizes)} B, {len(sizes)} polls" if sizes else "-"
            print(
                f"{name:<12} {result['scrapes']:>7.0f} {result['errors']:>6.0f} "
                f"{result['p50_ms']:>8.2f} {result['p99_ms']:>8.2f} {result['max_ms']:>8.2f}"
                f"  {size}"
            )
        print(
            f"exporter RSS at the end: {status_kib(child.pid, 'VmRSS')} KiB "
            f"(peak {status_kib(child.pid, 'VmHWM')} KiB)"
        )
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", default="1,50", help="meter counts, comma-separated")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each phase")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.port)
        return
    import platform

    print(
        f"bench_live: Python {platform.python_version()}, {args.seconds:g} s per phase, "
        "1 scraper at 10 scrapes/s"
    )
    for meters in (int(m) for m in args.meters.split(",")):
        measure(meters, args.seconds)


if __name__ == "__main__":
    main()
