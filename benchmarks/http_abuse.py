"""Issue 14's attacks on the web server, this version beside the landed one, in one run.

Run: ``.venv/bin/python benchmarks/http_abuse.py`` (``--seconds`` per attack, default 30;
``--quick`` for 5 s; ``--landed PATH`` a worktree of the landed version, made with
``git -C /work/main worktree add /tmp/landed c1b43a7``, the default path).

Each attack gets a fresh exporter process of each version (a simulated meter at one
telegram a second, basic auth on with a cost-10 bcrypt hash, default web settings) and
runs for ``--seconds`` while an authorised scraper scrapes every second on a keep-alive
connection, as Prometheus does. Attacks, all from 127.0.0.1 like the scraper:

1. ``wrong passwords``: 70 clients sending requests with a new wrong password each time;
2. ``slow readers``: 80 clients that pipeline 300 ``GET /metrics`` each (with the right
   credentials: the worst case, every answer a full page) and read 2 KB a second;
3. ``header flood``: 80 clients sending 98 header lines of 65,000 bytes (~6 MB) slowly,
   never finishing the request;
4. ``reconnect flood``: 200 sockets that send nothing and reconnect as soon as they are
   closed, on plain HTTP and on a TLS port.

Printed per attack and version: authorised scrapes answered 200 / made, how many of them
within 1 s, the slowest, the exporter's peak RSS (VmHWM), the lines it logged, and what
the attackers saw. One authorised scrape before each attack stands for the Prometheus
that was scraping before it began. Last, ``/metrics`` with 20 scrapers flat out (no
auth): p50/p99 of this version, the landed one and prometheus_client's own
``start_http_server`` serving the same families from the same simulated meter.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import multiprocessing
import os
import platform
import secrets
import selectors
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from http_load import free_port, percentiles_ms, proc_status, scrapers, wait_listening

ROOT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "prometheus", "scrape-secret"
METER = "sim://?interval=1&seed=3"


def auth_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


GOOD = auth_header(USER, PASSWORD)


def client_tls() -> ssl.SSLContext:
    """The benchmark's clients do not check the throw-away certificate."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def connect(
    port: int, tls: bool, timeout: float = 10.0, rcvbuf: int | None = None
) -> socket.socket:
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    if tls:
        return client_tls().wrap_socket(sock)
    return sock


# -- attackers (each in a process of its own; every loop bounded by ``seconds``) ----------


def in_threads(clients: int, one: Callable[[Counter[str]], None]) -> dict[str, int]:
    """Run ``one`` in ``clients`` threads at once, each counting into its own Counter; the sum."""
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def run() -> None:
        mine: Counter[str] = Counter()
        one(mine)
        with lock:
            counts.update(mine)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return dict(counts)


def wrong_passwords(port: int, tls: bool, seconds: float, clients: int = 70) -> dict[str, int]:
    end = time.monotonic() + seconds

    def one(mine: Counter[str]) -> None:
        conn: http.client.HTTPConnection | None = None
        while time.monotonic() < end:
            current = conn or (
                http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=client_tls())
                if tls
                else http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            )
            conn = current
            try:
                guess = auth_header(USER, secrets.token_hex(8))
                current.request("GET", "/metrics", headers={"Authorization": guess})
                response = current.getresponse()
                response.read()
                mine[str(response.status)] += 1
                if response.will_close:
                    current.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                mine[type(exc).__name__] += 1
                current.close()
                conn = None
                time.sleep(0.01)
        if conn is not None:
            conn.close()

    return in_threads(clients, one)


def slow_readers(port: int, tls: bool, seconds: float, clients: int = 80) -> dict[str, int]:
    end = time.monotonic() + seconds
    request = f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: {GOOD}\r\n\r\n".encode()

    def one(mine: Counter[str]) -> None:
        sock: socket.socket | None = None
        while time.monotonic() < end:
            try:
                if sock is None:
                    sock = connect(port, tls, timeout=1.0, rcvbuf=8192)
                    sock.sendall(request * 300)
                    mine["connections"] += 1
                chunk = sock.recv(2048)
                if not chunk:
                    raise ConnectionResetError("closed")
                mine["bytes read"] += len(chunk)
                time.sleep(1.0)  # 2 KB a second
            except TimeoutError:
                continue
            except OSError:
                mine["closed by server"] += 1
                if sock is not None:
                    sock.close()
                sock = None
        if sock is not None:
            sock.close()

    return in_threads(clients, one)


def header_flood(port: int, tls: bool, seconds: float, clients: int = 80) -> dict[str, int]:
    end = time.monotonic() + seconds
    line = b"X-Pad: " + b"p" * 64_991 + b"\r\n"  # 65,000 bytes

    def one(mine: Counter[str]) -> None:
        while time.monotonic() < end:
            try:
                sock = connect(port, tls, timeout=5.0)
            except OSError:
                mine["connect failed"] += 1
                time.sleep(0.1)
                continue
            mine["connections"] += 1
            try:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                for _ in range(98):
                    for offset in range(0, len(line), 16_384):
                        if time.monotonic() >= end:
                            raise TimeoutError
                        sock.sendall(line[offset : offset + 16_384])
                        mine["bytes sent"] += len(line[offset : offset + 16_384])
                        time.sleep(0.05)
                sock.settimeout(max(0.1, end - time.monotonic()))
                sock.recv(1)  # never finish; wait for the server to give up
            except TimeoutError:
                pass
            except OSError:
                mine["closed by server"] += 1
            finally:
                sock.close()

    return in_threads(clients, one)


def reconnect_flood(port: int, tls: bool, seconds: float, clients: int = 200) -> dict[str, int]:
    del tls  # the same silent TCP sockets against either port
    counts: Counter[str] = Counter()
    end = time.monotonic() + seconds
    selector = selectors.DefaultSelector()

    def open_one() -> None:
        sock = socket.socket()
        sock.setblocking(False)
        try:
            sock.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        except OSError:
            counts["connect failed"] += 1
            sock.close()
            return
        selector.register(sock, selectors.EVENT_READ)
        counts["connections"] += 1

    for _ in range(clients):
        open_one()
    while time.monotonic() < end:
        for key, _ in selector.select(0.05):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                counts["answered"] += 1
            counts["closed by server"] += 1
            selector.unregister(sock)
            sock.close()
            open_one()  # at once
        missing = clients - len(selector.get_map())
        for _ in range(missing):
            open_one()
    for key in list(selector.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    return dict(counts)


ATTACKS = {
    "wrong passwords (70)": (wrong_passwords, False),
    "slow readers (80)": (slow_readers, False),
    "header flood (80)": (header_flood, False),
    "reconnect flood (200)": (reconnect_flood, False),
    "reconnect flood TLS (200)": (reconnect_flood, True),
}


# -- the exporters ------------------------------------------------------------------------


@dataclass
class Version:
    name: str
    root: Path


@dataclass
class Outcome:
    scrapes: list[tuple[int, float]] = field(default_factory=list)
    rss_mib: float = 0.0
    log_lines: int = 0
    alive: bool = True
    attack: dict[str, int] = field(default_factory=dict)


def web_configs(directory: Path) -> tuple[Path, Path]:
    """A basic-auth web config, and the same with TLS (a throw-away self-signed cert)."""
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    users = f"basic_auth_users:\n  {USER}: '{hashed}'\n"
    plain = directory / "web.yml"
    plain.write_text(users)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    tls = directory / "web-tls.yml"
    tls.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n" + users)
    return plain, tls


def start_exporter(
    version: Version, port: int, web_config: Path | None, log: Path
) -> subprocess.Popen[bytes]:
    args = [
        sys.executable,
        "-m",
        "p1_exporter",
        "--device",
        METER,
        "--web.listen-address",
        f"127.0.0.1:{port}",
    ]
    if web_config is not None:
        args += ["--web.config.file", str(web_config)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("P1_EXPORTER_")}
    env["PYTHONPATH"] = str(version.root)
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=version.root, env=env, stdout=out, stderr=out)
    wait_listening(port, tries=150)
    return proc


def authorised_scraper(port: int, tls: bool, seconds: float, out: list[tuple[int, float]]) -> None:
    """Once a second on a keep-alive connection; status 0 = failed.

    Like Go's HTTP client (so Prometheus), a GET that fails on a reused keep-alive
    connection before any answer is retried once on a new connection.
    """
    conn: http.client.HTTPConnection | None = None
    end = time.monotonic() + seconds
    next_at = time.monotonic()

    def new() -> http.client.HTTPConnection:
        if tls:
            return http.client.HTTPSConnection("127.0.0.1", port, timeout=15, context=client_tls())
        return http.client.HTTPConnection("127.0.0.1", port, timeout=15)

    while next_at < end:
        time.sleep(max(0.0, next_at - time.monotonic()))
        next_at += 1.0
        began = time.monotonic()
        status = 0
        for attempt in range(2):
            reused = conn is not None
            current = conn or new()
            conn = current
            try:
                current.request(
                    "GET", "/metrics", headers={"Authorization": GOOD, "Accept-Encoding": "gzip"}
                )
                response = current.getresponse()
                body = response.read()
                status = response.status if body else -1
                if response.will_close:
                    current.close()
                    conn = None
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                current.close()
                conn = None
                if not reused or attempt:
                    break
            except (OSError, http.client.HTTPException):
                current.close()
                conn = None
                break
        out.append((status, time.monotonic() - began))
    if conn is not None:
        conn.close()


def run_attack(
    version: Version,
    attack: str,
    seconds: float,
    configs: tuple[Path, Path],
    pool: multiprocessing.pool.Pool,
    workdir: Path,
) -> Outcome:
    function, tls = ATTACKS[attack]
    port = free_port()
    log = workdir / f"{version.name}-{attack.split()[0]}-{int(tls)}.log"
    proc = start_exporter(version, port, configs[1] if tls else configs[0], log)
    outcome = Outcome()
    try:
        # One scrape before the attack: Prometheus was scraping before it began (and
        # its credentials are remembered, as on any exporter that has run a while).
        authorised_scraper(port, tls, 0.5, [])
        before = len(log.read_bytes().splitlines())
        job = pool.apply_async(function, (port, tls, seconds))
        authorised_scraper(port, tls, seconds, outcome.scrapes)
        outcome.attack = job.get(timeout=seconds + 60)
        outcome.log_lines = len(log.read_bytes().splitlines()) - before
        outcome.rss_mib = proc_status(proc.pid, "VmHWM") / 1024
        outcome.alive = proc.poll() is None
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return outcome


# -- /metrics flat out ----------------------------------------------------------------------

PROMETHEUS_CLIENT_SERVER = """
import sys, time
sys.path.insert(0, sys.argv[2])
from prometheus_client import start_http_server
from p1_exporter.meter.reader import MeterConfig, MeterReader
from p1_exporter.metrics.collector import make_registry
reader = MeterReader(MeterConfig(url=sys.argv[3], name="main"))
reader.start()
start_http_server(int(sys.argv[1]), addr="127.0.0.1", registry=make_registry(
    lambda: [reader.snapshot]))
while True:
    time.sleep(3600)
"""


def flat_out(
    port: int,
    seconds: float,
    pool: multiprocessing.pool.Pool,
    scrapers_n: int = 20,
    processes: int = 4,
) -> tuple[list[float], dict[str, int]]:
    start = time.time() + 0.5
    per = [scrapers_n // processes + (i < scrapers_n % processes) for i in range(processes)]
    jobs = [pool.apply_async(scrapers, (port, n, seconds, None, start)) for n in per if n]
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    for job in jobs:
        got, bad = job.get(timeout=seconds + 60)
        latencies += got
        errors.update(bad)
    return sorted(latencies), dict(errors)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="per attack")
    parser.add_argument("--quick", action="store_true", help="5 s per attack")
    parser.add_argument("--landed", type=Path, default=Path("/tmp/landed"))
    parser.add_argument("--only", help="run only attacks whose name contains this")
    args = parser.parse_args()
    seconds = 5.0 if args.quick else args.seconds
    if not (args.landed / "p1_exporter" / "__main__.py").exists():
        print(
            f"no landed version at {args.landed}: git -C /work/main worktree add "
            f"{args.landed} c1b43a7",
            file=sys.stderr,
        )
        return 2
    versions = [Version("this", ROOT), Version("landed", args.landed)]
    pool = multiprocessing.get_context("fork").Pool(5)
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, load "
        f"{os.getloadavg()[0]:.1f}; {seconds:g} s per attack; basic auth (bcrypt cost 10); "
        "an authorised scraper once a second"
    )
    print(
        f"{'attack':<27} {'version':<7} {'200/scrapes':>11} {'<1 s':>5} {'max s':>6} "
        f"{'RSS MiB':>7} {'log':>5}  attackers saw"
    )
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        configs = web_configs(workdir)
        for attack in ATTACKS:
            if args.only and args.only not in attack:
                continue
            for version in versions:
                got = run_attack(version, attack, seconds, configs, pool, workdir)
                ok = sum(1 for status, _ in got.scrapes if status == 200)
                fast = sum(1 for status, took in got.scrapes if status == 200 and took < 1.0)
                slowest = max((took for _, took in got.scrapes), default=float("nan"))
                seen = ", ".join(f"{k} {v}" for k, v in sorted(got.attack.items()))
                print(
                    f"{attack:<27} {version.name:<7} {ok:>5}/{len(got.scrapes):<5} "
                    f"{fast:>5} {slowest:>6.2f} {got.rss_mib:>7.1f} {got.log_lines:>5}  "
                    f"{seen}{'' if got.alive else '  EXPORTER DIED'}",
                    flush=True,
                )

        if not args.only:
            print(f"\n/metrics, 20 scrapers flat out for {seconds:g} s (keep-alive, gzip, no auth)")
            print(
                f"{'server':<28} {'scrapes':>7} {'/s':>7} {'p50 ms':>8} {'p99 ms':>8} "
                f"{'max ms':>8}  errors"
            )
            servers: list[tuple[str, list[str], Path]] = [
                (
                    f"{v.name} exporter",
                    [
                        sys.executable,
                        "-m",
                        "p1_exporter",
                        "--device",
                        METER,
                        "--web.listen-address",
                    ],
                    v.root,
                )
                for v in versions
            ]
            servers.append(
                ("prometheus_client server", [sys.executable, "-c", PROMETHEUS_CLIENT_SERVER], ROOT)
            )
            for name, command, root in servers:
                port = free_port()
                if name.startswith("prometheus_client"):
                    argv = [*command, str(port), str(ROOT), METER]
                else:
                    argv = [*command, f"127.0.0.1:{port}", "--log.level", "warn"]
                env = {**os.environ, "PYTHONPATH": str(root)}
                proc = subprocess.Popen(argv, cwd=root, env=env)
                try:
                    wait_listening(port, tries=150)
                    latencies, errors = flat_out(port, seconds, pool)
                finally:
                    proc.terminate()
                    proc.wait(10)
                count = len(latencies)
                p50, p99, top = percentiles_ms(latencies)
                shown = ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) or "0"
                print(
                    f"{name:<28} {count:>7} {count / seconds:>7.1f} {p50:>8.2f} "
                    f"{p99:>8.2f} {top:>8.2f}  {shown}",
                    flush=True,
                )
    pool.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
