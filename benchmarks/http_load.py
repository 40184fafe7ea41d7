"""HTTP under load and abuse, against the real exporter process.

Run: ``.venv/bin/python benchmarks/http_load.py`` (``--seconds``, ``--scrapers``,
``--processes``; ``--quick`` for a short pass).

Starts ``python -m p1_exporter`` on 127.0.0.1 with a simulated meter sending 10
telegrams a second and default web settings (request timeout 10 s, 512 connections, 64
per client address).
Scrapers are threads spread over several client processes, each on its own keep-alive
connection asking for gzip, as Prometheus does. Phases:

1. ``load, paced``: ``--scrapers`` scrapers, each scraping once a second, ``--seconds``;
2. ``load, flat out``: the same scrapers back to back (throughput and queueing);
3. ``slow clients``: 20 slowloris clients (a request line, then one header byte every
   0.5 s, never finished; reconnecting when dropped) while 10 paced scrapers run;
4. ``malformed``: bad request lines, methods, versions, oversized request lines and
   headers, too many headers, binary and TLS bytes, as fast as one process can send
   them, while 10 paced scrapers run; every answer's status is counted;
5. ``idle flood``: 200 sockets that connect and send nothing (reconnecting when
   dropped) while 10 paced scrapers run: over the connection limits, silent sockets make
   room for new connections, so scrapes are not turned away.

For each phase: scrapes, p50/p99/max latency, errors (503 and others), and whether the
reader kept up (``p1_telegrams_total{result="ok"}`` grew by 10 a second). At the end:
the exporter's thread count back to its idle value, its peak RSS, and that it still runs.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from multiprocessing.pool import AsyncResult
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TELEGRAMS_PER_SECOND = 10.0

Result = tuple[list[float], dict[str, int]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(port: int, tries: int = 100) -> None:
    """Wait until something accepts on ``port`` (at most ``tries`` tenths of a second),
    then a second more for the first telegram."""
    for _ in range(tries):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    time.sleep(1.0)


def percentiles_ms(latencies: list[float]) -> tuple[float, float, float]:
    """p50, p99 and max of ``latencies`` (seconds, sorted in place) in ms; NaN when empty."""
    latencies.sort()
    count = len(latencies)
    if not count:
        return float("nan"), float("nan"), float("nan")
    return (
        statistics.median(latencies) * 1000,
        latencies[min(count - 1, int(count * 0.99))] * 1000,
        latencies[-1] * 1000,
    )


# -- client processes -------------------------------------------------------------------


def scrapers(
    port: int,
    threads: int,
    seconds: float,
    period: float | None,
    start: float,
) -> Result:
    """``threads`` scrapers in this process; each returns latencies and error counts."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    lock = threading.Lock()

    def one(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        mine: list[float] = []
        failed: Counter[str] = Counter()
        next_at = start + (index * (period or 0) / max(threads, 1)) % (period or 1)
        end = start + seconds
        while True:
            if period:
                pause = next_at - time.time()
                if pause > 0:
                    time.sleep(pause)
                next_at += period
            if time.time() >= end:
                break
            began = time.perf_counter()
            try:
                conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
                response = conn.getresponse()
                body = response.read()
                if response.status != 200 or not body:
                    failed[str(response.status)] += 1
                    conn.close()
                    continue
            except (OSError, http.client.HTTPException) as exc:
                failed[type(exc).__name__] += 1
                conn.close()
                continue
            mine.append(time.perf_counter() - began)
        conn.close()
        with lock:
            latencies.extend(mine)
            errors.update(failed)

    workers = [threading.Thread(target=one, args=(i,)) for i in range(threads)]
    time.sleep(max(0.0, start - time.time()))
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return latencies, dict(errors)


def slowloris(port: int, clients: int, seconds: float) -> dict[str, int]:
    """Clients that start a request and never finish it; count how the server ends them."""
    counts: Counter[str] = Counter()
    end = time.time() + seconds
    socks: dict[socket.socket, float] = {}

    def connect() -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        sock.setblocking(False)
        socks[sock] = time.time()
        counts["opened"] += 1

    for _ in range(clients):
        connect()
    while time.time() < end:
        time.sleep(0.5)
        for sock in list(socks):
            try:
                sock.send(b"a")
                data = sock.recv(4096)
                if data or data == b"":
                    counts["closed by server" if not data else "answered"] += 1
                    counts["held ms total"] += int((time.time() - socks.pop(sock)) * 1000)
                    sock.close()
                    connect()
            except BlockingIOError:
                pass
            except OSError:
                counts["closed by server"] += 1
                counts["held ms total"] += int((time.time() - socks.pop(sock)) * 1000)
                sock.close()
                connect()
    for sock in socks:
        sock.close()
    return dict(counts)


def idle_flood(port: int, clients: int, seconds: float) -> dict[str, int]:
    """Sockets that connect and say nothing; reconnect when the server drops them."""
    counts: Counter[str] = Counter()
    end = time.time() + seconds
    socks: set[socket.socket] = set()

    def connect() -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            counts["connect failed"] += 1
            return
        sock.setblocking(False)
        socks.add(sock)
        counts["opened"] += 1

    for _ in range(clients):
        connect()
    while time.time() < end:
        time.sleep(0.2)
        for sock in list(socks):
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data.startswith(b"HTTP/1.1 503"):
                counts["503"] += 1
            elif data:
                counts["other answer"] += 1
            counts["closed by server"] += 1
            socks.discard(sock)
            sock.close()
            if time.time() < end:
                connect()
    for sock in socks:
        sock.close()
    return dict(counts)


H = b"Host: x\r\n"
BAD_REQUESTS: dict[str, bytes] = {
    "binary": b"\x00\x01\x02\xff\xfe garbage\r\n\r\n",
    "no target": b"GET\r\n\r\n",
    "no Host (HTTP/1.1)": b"GET /metrics HTTP/1.1\r\n\r\n",
    "method FOO": b"FOO /metrics HTTP/1.1\r\n" + H + b"\r\n",
    "POST with body": b"POST /metrics HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello",
    "HTTP/9.9": b"GET /metrics HTTP/9.9\r\n" + H + b"\r\n",
    "HTTP/1.1 garbage": b"GET /metrics HTTP/1.x\r\n" + H + b"\r\n",
    "request line 70 KB": b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n" + H + b"\r\n",
    "header 70 KB": b"GET /metrics HTTP/1.1\r\n" + H + b"X-Big: " + b"b" * 70_000 + b"\r\n\r\n",
    "150 headers": b"GET /metrics HTTP/1.1\r\n"
    + H
    + b"".join(b"X-H%d: v\r\n" % i for i in range(150))
    + b"\r\n",
    "header without colon": b"GET /metrics HTTP/1.1\r\n" + H + b"No colon here\r\n\r\n",
    "huge Content-Length": b"GET /metrics HTTP/1.1\r\n"
    + H
    + b"Content-Length: 99999999999\r\n\r\n",
    "two Content-Lengths": b"GET /metrics HTTP/1.1\r\n"
    + H
    + b"Content-Length: 3\r\nContent-Length: 30\r\n\r\n",
    "2000 query fields": b"GET /metrics?" + b"a=1&" * 2000 + b" HTTP/1.1\r\n" + H + b"\r\n",
    "percent junk": b"GET /%ff%00%%zz/../../etc/passwd HTTP/1.1\r\n" + H + b"\r\n",
    "absolute URL": b"GET http://evil.example/metrics HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    "TLS hello": bytes.fromhex("16030100a5010000a10303") + bytes(160),
    "NUL in header": b"GET /metrics HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n",
    "bad basic auth": b"GET /metrics HTTP/1.1\r\n" + H + b"Authorization: Basic !!!!\r\n\r\n",
    "bad OpenMetrics version": b"GET /metrics HTTP/1.1\r\n"
    + H
    + b"Accept: application/openmetrics-text; version=x\r\n\r\n",
    "pipelined junk": b"GET /healthz HTTP/1.1\r\n" + H + b"\r\n\x16\x03\x01junk\r\n\r\n",
}


def malformed(port: int, seconds: float) -> dict[str, dict[str, int]]:
    """Send every bad request in turn for ``seconds``; count the status lines per kind."""
    results: dict[str, Counter[str]] = {name: Counter() for name in BAD_REQUESTS}
    end = time.time() + seconds
    while time.time() < end:
        for name, payload in BAD_REQUESTS.items():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                    sock.sendall(payload)
                    sock.shutdown(socket.SHUT_WR)
                    data = b""
                    while chunk := sock.recv(65536):
                        data += chunk
            except TimeoutError:
                results[name]["timeout"] += 1
                continue
            except OSError as exc:
                results[name][type(exc).__name__] += 1
                continue
            statuses = re.findall(rb"HTTP/1\.[01] (\d{3})", data)
            key = "+".join(s.decode() for s in statuses) or "closed without answer"
            results[name][key] += 1
    return {name: dict(counter) for name, counter in results.items()}


# -- the exporter -----------------------------------------------------------------------


def metric(port: int, pattern: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    match = re.search(pattern + r" (\S+)", text)
    return float(match[1]) if match else float("nan")


def ok_telegrams(port: int) -> float:
    return metric(port, r'p1_telegrams_total\{meter="main",result="ok"\}')


def proc_status(pid: int, field: str) -> int:
    match = re.search(rf"{field}:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
    return int(match[1]) if match else -1


def summary(name: str, result: Result, seconds: float, kept: str) -> None:
    latencies, errors = result
    count = len(latencies)
    p50, p99, top = percentiles_ms(latencies)
    shown = ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) or "0"
    print(
        f"{name:<22} {count:>7} {count / seconds:>7.1f} {p50:>8.2f} {p99:>8.2f} "
        f"{top:>8.2f}  {kept:<14} errors: {shown}",
        flush=True,
    )


def start_exporter(port: int) -> subprocess.Popen[bytes]:
    """This tree's exporter on ``port`` with one simulated meter at 10 telegrams/s."""
    exe = [
        sys.executable,
        "-m",
        "p1_exporter",
        "--device",
        "sim://?interval=0.1&seed=3",
        "--web.listen-address",
        f"127.0.0.1:{port}",
        "--log.level",
        "warn",
    ]
    return subprocess.Popen(exe, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--abuse-seconds", type=float, default=15.0)
    parser.add_argument("--processes", type=int, default=5, help="client processes")
    parser.add_argument("--quick", action="store_true", help="5 s phases")
    args = parser.parse_args()
    if args.quick:
        args.seconds = args.abuse_seconds = 5.0
    port = free_port()
    pool = multiprocessing.get_context("fork").Pool(args.processes + 3)
    proc = start_exporter(port)
    failures = 0
    try:
        wait_listening(port)
        idle_threads = proc_status(proc.pid, "Threads")
        print(
            f"machine: {os.cpu_count()} cores, Python {platform.python_version()}; exporter "
            f"pid {proc.pid}, 1 simulated meter at {TELEGRAMS_PER_SECOND:g} telegrams/s, "
            f"{idle_threads} threads idle"
        )
        print(
            f"{'phase':<22} {'scrapes':>7} {'/s':>7} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'max ms':>8}  {'reader kept up':<14}"
        )

        def phase(
            name: str,
            scrapers_n: int,
            seconds: float,
            period: float | None,
            abuse: Callable[[float], AsyncResult[object]] | None = None,
        ) -> object:
            nonlocal failures
            start = time.time() + 0.5
            per = [
                scrapers_n // args.processes + (i < scrapers_n % args.processes)
                for i in range(args.processes)
            ]
            before, began = ok_telegrams(port), time.monotonic()
            jobs = [pool.apply_async(scrapers, (port, n, seconds, period, start)) for n in per if n]
            side = abuse(seconds) if abuse else None
            latencies: list[float] = []
            errors: Counter[str] = Counter()
            for job in jobs:
                got, bad = job.get()
                latencies += got
                errors.update(bad)
            extra = side.get() if side else None
            got_ok = ok_telegrams(port) - before
            expected = (time.monotonic() - began) * TELEGRAMS_PER_SECOND
            kept = f"{got_ok:.0f}/{expected:.0f}"
            if got_ok < 0.9 * expected:
                failures += 1
            if not name.startswith("idle flood"):  # over the limit, 503 is the answer
                failures += sum(errors.values())
            summary(name, (latencies, dict(errors)), seconds, kept)
            return extra

        phase("load, paced 1/s", args.scrapers, args.seconds, 1.0)
        phase("load, flat out", args.scrapers, args.seconds, None)
        slow = phase(
            "slow clients (20)",
            10,
            args.abuse_seconds,
            1.0,
            lambda s: pool.apply_async(slowloris, (port, 20, s)),
        )
        print(f"  slowloris: {slow}")
        bad = phase(
            "malformed requests",
            10,
            args.abuse_seconds,
            1.0,
            lambda s: pool.apply_async(malformed, (port, s)),
        )
        assert isinstance(bad, dict)
        for name, statuses in bad.items():
            print(f"  {name:<22} {statuses}")
        flood = phase(
            "idle flood (200)",
            10,
            args.abuse_seconds,
            1.0,
            lambda s: pool.apply_async(idle_flood, (port, 200, s)),
        )
        print(f"  idle flood: {flood}")
        time.sleep(11.0)  # the request timeout: every abusive connection is gone now
        after = phase("after the abuse", 10, 5.0, 1.0)
        del after
        threads = proc_status(proc.pid, "Threads")
        print(
            f"exporter still running: {proc.poll() is None}; threads {threads} "
            f"(idle {idle_threads}); peak RSS {proc_status(proc.pid, 'VmHWM') / 1024:.1f} MiB"
        )
        if proc.poll() is not None or threads > idle_threads + 2:
            failures += 1
    finally:
        pool.terminate()
        proc.terminate()
        proc.wait(5)
    print("OK" if not failures else f"FAILED ({failures})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
