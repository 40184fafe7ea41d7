"""Many meters in one exporter process, ours beside the landed version, in one run (issue 14).

Run: ``.venv/bin/python benchmarks/bench_meters.py`` (``--quick`` for a shorter run,
``--landed PATH`` for the landed tree: ``git -C /work/main worktree add /tmp/landed-meters
c1b43a7``).

Phases, each bounded in time, each run for this tree and then for the landed one:
- N TCP meters (N = 10, 100, 500, 1000; ``--quick``: 10, 100, 1000): a local asyncio TCP
  server on 127.0.0.1 serves every connection one telegram a second (simulated DSMR 5
  telegrams, valid CRC, each connection at its own phase), at most ``--max-connections``
  connections. The exporter (a child process, ``--device mI=socket://...`` each) is timed
  until every meter has counted a valid telegram (capped at ``--up-timeout``); then, over a
  steady window: CPU (% of one core), RSS, /metrics latency (3 scrapes); then the server
  stops sending and, once the counts settle, telegrams sent minus telegrams counted ok is
  the number dropped; finally SIGTERM and the seconds until the process exited.
- 1,000 ``sim://`` meters (telegrams generated inside the exporter), the same figures
  (dropped: n/a, nothing outside counts what a simulated meter sent).
- Idle: one TCP meter at 1 telegram/s scraped every 15 s on a keep-alive connection, both
  versions side by side for ``--idle-seconds``: CPU-seconds per hour, extrapolated, and how
  many scrapes reused their connection.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from p1_exporter.sim.meter import SimulatedMeter  # noqa: E402

START = 1_718_143_200.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
_OK = re.compile(r"^p1_telegrams_total\{([^}]*)\} (\S+)$", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- the meters' side: a bounded TCP telegram server -------------------------------------------


class TelegramServer:
    """An asyncio TCP server in a thread: one telegram a second to each connection."""

    def __init__(self, pool: list[bytes], max_connections: int, interval: float = 1.0) -> None:
        self.pool = pool
        self.max_connections = max_connections
        self.interval = interval
        self.sent = 0
        self.connections = 0
        self.refused = 0
        self.sending = True
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        self._ready.wait(5)

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.connections >= self.max_connections:
            self.refused += 1
            writer.close()
            return
        self.connections += 1
        rng = random.Random()
        index = rng.randrange(len(self.pool))
        try:
            await asyncio.sleep(rng.uniform(0, self.interval))  # each meter at its own phase
            while True:
                if self.sending:
                    writer.write(self.pool[index % len(self.pool)])
                    index += 1
                    self.sent += 1
                    await asyncio.wait_for(writer.drain(), 5.0)
                await asyncio.sleep(self.interval)
        except (OSError, asyncio.TimeoutError, asyncio.CancelledError):
            pass  # the exporter went away, or the server is shutting down
        finally:
            self.connections -= 1
            writer.close()

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)


# -- the exporter process ---------------------------------------------------------------------


@dataclass
class Exporter:
    """``python -m p1_exporter`` from ``tree`` with these devices, on a port of its own."""

    tree: Path
    devices: list[str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(self.tree)}
        args = [
            sys.executable,
            "-m",
            "p1_exporter",
            "--log.level",
            "error",
            "--web.listen-address",
            f"127.0.0.1:{self.port}",
        ]
        for index, url in enumerate(self.devices):
            args += ["--device", f"m{index}={url}"]
        self.proc = subprocess.Popen(
            args,
            env=env,
            cwd=tempfile.gettempdir(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu(self) -> float:
        """CPU seconds (user + system) so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def scrape(self, timeout: float = 30.0) -> tuple[str, float]:
        """/metrics text and seconds taken (a fresh connection)."""
        began = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", "/metrics")
            body = conn.getresponse().read().decode()
        finally:
            conn.close()
        return body, time.monotonic() - began

    def terminate(self, timeout: float = 15.0) -> float | None:
        """SIGTERM; seconds until exit, or None (killed) after ``timeout``."""
        assert self.proc is not None
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        return time.monotonic() - began


def ok_counts(text: str) -> dict[str, float]:
    """Telegrams counted ok, per meter."""
    counts: dict[str, float] = {}
    for labels, value in _OK.findall(text):
        found = dict(_LABEL.findall(labels))
        if found.get("result") == "ok":
            counts[found.get("meter", "")] = float(value)
    return counts


# -- the phases -------------------------------------------------------------------------------


@dataclass
class Row:
    version: str
    kind: str
    meters: int
    up_seconds: float | None = None
    up_count: int = 0
    cpu_percent: float = 0.0
    rss_mib: float = 0.0
    scrape_median: float | None = None
    scrape_max: float | None = None
    dropped: str = "n/a"
    sigterm: float | None = None


def phase(
    version: str, tree: Path, kind: str, count: int, pool: list[bytes], args: argparse.Namespace
) -> Row:
    row = Row(version, kind, count)
    server = TelegramServer(pool, args.max_connections) if kind == "tcp" else None
    devices = (
        [server.url] * count if server else [f"sim://?seed={i}&interval=1" for i in range(count)]
    )
    exporter = Exporter(tree, devices)
    began = time.monotonic()
    exporter.start()
    try:
        deadline = began + args.up_timeout
        while time.monotonic() < deadline:
            if exporter.proc is not None and exporter.proc.poll() is not None:
                print(f"  {version} exited with {exporter.proc.returncode}", flush=True)
                return row
            try:
                text, _ = exporter.scrape(timeout=max(1.0, deadline - time.monotonic()))
            except OSError:
                time.sleep(0.5)
                continue
            up = sum(1 for value in ok_counts(text).values() if value > 0)
            row.up_count = up
            if up >= count:
                row.up_seconds = time.monotonic() - began
                break
            time.sleep(1.0)
        cpu0, t0 = exporter.cpu(), time.monotonic()
        time.sleep(args.steady)
        row.cpu_percent = 100 * (exporter.cpu() - cpu0) / (time.monotonic() - t0)
        row.rss_mib = exporter.rss_mib()
        latencies = []
        for _ in range(3):
            with contextlib.suppress(OSError):
                latencies.append(exporter.scrape(timeout=30.0)[1])
        if latencies:
            row.scrape_median = statistics.median(latencies)
            row.scrape_max = max(latencies)
        if server is not None:
            server.sending = False
            settle = time.monotonic() + 15.0
            counted, last = -1.0, -2.0
            while time.monotonic() < settle and counted != last:
                time.sleep(2.0)
                last = counted
                with contextlib.suppress(OSError):
                    counted = sum(ok_counts(exporter.scrape(timeout=20.0)[0]).values())
            row.dropped = f"{server.sent - int(counted)} of {server.sent}"
        row.sigterm = exporter.terminate()
    finally:
        if exporter.proc is not None and exporter.proc.poll() is None:
            exporter.proc.kill()
            exporter.proc.wait()
        if server is not None:
            server.close()
    return row


def idle(trees: dict[str, Path], pool: list[bytes], seconds: float) -> dict[str, str]:
    """One meter at 1/s, scraped every 15 s on one keep-alive connection, all versions at once."""
    server = TelegramServer(pool, 10)
    exporters = {name: Exporter(tree, [server.url]) for name, tree in trees.items()}
    results: dict[str, str] = {}
    try:
        for exporter in exporters.values():
            exporter.start()
        time.sleep(5.0)  # started, connected, first telegrams
        cpu0 = {name: e.cpu() for name, e in exporters.items()}
        conns = {
            name: http.client.HTTPConnection("127.0.0.1", e.port, timeout=10)
            for name, e in exporters.items()
        }
        reused = dict.fromkeys(exporters, 0)
        scrapes = dict.fromkeys(exporters, 0)
        began = time.monotonic()
        while True:
            for name, conn in conns.items():
                had_socket = conn.sock is not None
                try:
                    conn.request("GET", "/metrics")
                    conn.getresponse().read()
                    reused[name] += had_socket
                except (OSError, http.client.HTTPException):
                    conn.close()  # closed by the server while idle: a new connection
                    conn.request("GET", "/metrics")
                    conn.getresponse().read()
                scrapes[name] += 1
            if time.monotonic() - began + 15.0 > seconds:
                break
            time.sleep(15.0)
        elapsed = time.monotonic() - began
        for name, exporter in exporters.items():
            used = exporter.cpu() - cpu0[name]
            results[name] = (
                f"{used / elapsed * 3600:6.2f} CPU-s/hour over {elapsed:.0f} s "
                f"({used:.2f} s); {reused[name]} of {scrapes[name]} scrapes reused "
                "their connection"
            )
            conns[name].close()
    finally:
        for exporter in exporters.values():
            if exporter.proc is not None and exporter.proc.poll() is None:
                exporter.terminate()
        server.close()
    return results


def fmt(value: float | None, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes, shorter windows")
    parser.add_argument(
        "--landed",
        type=Path,
        default=Path("/tmp/landed-meters"),
        help="the landed tree (commit c1b43a7) to run beside this one",
    )
    parser.add_argument("--sizes", type=int, nargs="*", help="TCP meter counts")
    parser.add_argument("--sim", type=int, default=1000, help="sim:// meters (0: skip)")
    parser.add_argument(
        "--up-timeout", type=float, default=60.0, help="longest wait for all meters to be up (s)"
    )
    parser.add_argument("--steady", type=float, default=20.0, help="steady window (s)")
    parser.add_argument(
        "--landed-name", default="landed c1b43a7", help="how the other tree is labelled"
    )
    parser.add_argument("--idle-seconds", type=float, default=120.0, help="0: skip idle")
    parser.add_argument("--max-connections", type=int, default=1100)
    args = parser.parse_args()
    default = [10, 100, 1000] if args.quick else [10, 100, 500, 1000]
    sizes = default if args.sizes is None else args.sizes  # `--sizes` alone: none
    if args.quick:
        args.steady = min(args.steady, 10.0)
        args.idle_seconds = min(args.idle_seconds, 60.0)
    trees = {"this tree": ROOT}
    if (args.landed / "p1_exporter").is_dir():
        trees[args.landed_name] = args.landed
    else:
        print(f"no landed tree at {args.landed}: measuring this tree only", flush=True)
    meter = SimulatedMeter("dsmr5", seed=3, start=START)
    pool = [meter.telegram_at(START + i) for i in range(300)]

    print(
        f"{os.cpu_count()} CPUs; steady window {args.steady:g} s; up wait capped at "
        f"{args.up_timeout:g} s",
        flush=True,
    )
    header = (
        f"{'version':<15} {'kind':<4} {'meters':>6} {'all up':>8} {'up':>5} "
        f"{'CPU %':>6} {'RSS MiB':>8} {'scrape p50':>10} {'max':>7} "
        f"{'SIGTERM':>8}  dropped (sent-counted)"
    )
    rows: list[Row] = []
    plan = [("tcp", n) for n in sizes] + ([("sim", args.sim)] if args.sim else [])
    for kind, count in plan:
        for version, tree in trees.items():
            print(f"-- {version}: {count} {kind} meters", flush=True)
            row = phase(version, tree, kind, count, pool, args)
            rows.append(row)
            print(header)
            print(
                f"{row.version:<15} {row.kind:<4} {row.meters:>6} "
                f"{fmt(row.up_seconds, '7.1f', 'never'):>8} {row.up_count:>5} "
                f"{row.cpu_percent:6.1f} {row.rss_mib:8.1f} "
                f"{fmt(row.scrape_median, '9.3f')}s {fmt(row.scrape_max, '6.3f')}s "
                f"{fmt(row.sigterm, '7.2f', 'killed')}s  {row.dropped}",
                flush=True,
            )
    print("\nsummary")
    print(header)
    for row in rows:
        print(
            f"{row.version:<15} {row.kind:<4} {row.meters:>6} "
            f"{fmt(row.up_seconds, '7.1f', 'never'):>8} {row.up_count:>5} "
            f"{row.cpu_percent:6.1f} {row.rss_mib:8.1f} "
            f"{fmt(row.scrape_median, '9.3f')}s {fmt(row.scrape_max, '6.3f')}s "
            f"{fmt(row.sigterm, '7.2f', 'killed')}s  {row.dropped}"
        )
    if args.idle_seconds > 0:
        print(
            f"\nidle: one TCP meter at 1 telegram/s, scraped every 15 s, {args.idle_seconds:g} s",
            flush=True,
        )
        for name, line in idle(trees, pool, args.idle_seconds).items():
            print(f"  {name:<15} {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
