"""/metrics latency under concurrent scrapers, and the running exporter's peak RSS.

Run: ``.venv/bin/python benchmarks/bench_scrape.py`` (``--seconds``, ``--scrapers``).

Starts the real exporter as a child process on 127.0.0.1 with a simulated meter sending
10 telegrams per second, then runs two phases with ``--scrapers`` client threads, each on
its own keep-alive connection:
- paced: every scraper scrapes once per ``--period`` seconds (default 0.5 s, i.e. 40
  scrapes/s from 20 scrapers: far beyond any real Prometheus set-up), spread over the period;
- flat out: every scraper scrapes back to back, which measures throughput and queueing.
It prints p50/p99/max latency, errors, throughput, whether the reader kept up (telegrams
counted vs. expected), and the exporter's peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import http.client
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_load  # noqa: E402  (the scraper threads are shared with the abuse benchmark)


def run_phase(port: int, scrapers: int, seconds: float, period: float | None) -> dict[str, float]:
    """Latency figures for ``scrapers`` keep-alive clients (see http_load.scrapers)."""
    latencies, errors = http_load.scrapers(port, scrapers, seconds, period, time.time() + 0.1)
    count = len(latencies)
    p50, p99, top = http_load.percentiles_ms(latencies)
    return {
        "scrapes": count,
        "errors": sum(errors.values()),
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": top,
        "per_second": count / seconds,
    }


def vm_hwm_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match[1]) if match else -1


def ok_telegrams(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    match = re.search(r'p1_telegrams_total\{meter="main",result="ok"\} (\S+)', text)
    return int(float(match[1])) if match else -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapers", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--period",
        type=float,
        default=0.5,
        help="seconds between one scraper's scrapes in the paced phase",
    )
    args = parser.parse_args()
    port = http_load.free_port()
    proc = http_load.start_exporter(port)
    try:
        http_load.wait_listening(port)
        print(
            f"exporter pid {proc.pid}: 1 simulated meter at 10 telegrams/s; "
            f"{args.scrapers} scrapers, {args.seconds:g} s per phase"
        )
        print(
            f"{'phase':<24} {'scrapes':>8} {'/s':>7} {'errors':>6} {'p50 ms':>7} "
            f"{'p99 ms':>7} {'max ms':>7} {'telegrams ok':>13}"
        )
        for name, period in ((f"paced (1 per {args.period:g} s)", args.period), ("flat out", None)):
            before, started = ok_telegrams(port), time.monotonic()
            result = run_phase(port, args.scrapers, args.seconds, period)
            got = ok_telegrams(port) - before
            expected = (time.monotonic() - started) * 10
            print(
                f"{name:<24} {result['scrapes']:>8.0f} {result['per_second']:>7.1f} "
                f"{result['errors']:>6.0f} {result['p50_ms']:>7.2f} {result['p99_ms']:>7.2f} "
                f"{result['max_ms']:>7.2f} {got:>6d}/{expected:<6.0f}"
            )
        print(f"exporter peak RSS (VmHWM): {vm_hwm_kib(proc.pid) / 1024:.1f} MiB")
    finally:
        proc.terminate()
        proc.wait(5)


if __name__ == "__main__":
    main()
