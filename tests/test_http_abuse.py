"""HTTP under load and abuse, short version (benchmarks/http_load.py is the long one).

One real exporter process (simulated meter at 10 telegrams/s, request timeout 1 s,
16 connections) takes concurrent scrapers, malformed and oversized requests, slow
clients that never finish their request, and a flood of idle connections. It keeps
answering, never hangs a scrape, frees every slot within the request timeout, and its
reader keeps up throughout.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REQUEST_TIMEOUT = 1.0
MAX_CONNECTIONS = 16


@dataclass
class Exporter:
    proc: subprocess.Popen[str]
    port: int

    def get(self, path: str = "/metrics", timeout: float = 5.0) -> tuple[int, bytes, float]:
        """One request on a new connection: status, body, seconds taken."""
        began = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read(), time.monotonic() - began
        finally:
            conn.close()

    def ok_telegrams(self) -> float:
        status, body, _ = self.get()
        assert status == 200
        match = re.search(rb'p1_telegrams_total\{meter="main",result="ok"\} (\S+)', body)
        assert match is not None
        return float(match[1])

    def threads(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(r"Threads:\s+(\d+)", status)
        assert match is not None
        return int(match[1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "p1_exporter",
            "--device",
            "sim://?interval=0.1&seed=3",
            "--web.listen-address",
            f"127.0.0.1:{port}",
            "--log.level",
            "error",
            "--web.request-timeout",
            str(REQUEST_TIMEOUT),
            "--web.max-connections",
            str(MAX_CONNECTIONS),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.PIPE,
        text=True,
    )
    running = Exporter(proc, port)
    deadline = time.monotonic() + 15
    while True:
        try:
            if running.ok_telegrams() >= 3:
                break
        except (OSError, AssertionError):
            pass
        assert time.monotonic() < deadline and proc.poll() is None, "exporter did not start"
        time.sleep(0.1)
    yield running
    proc.terminate()
    _, log = proc.communicate(timeout=5)
    assert "Traceback" not in log


def wait_closed(sock: socket.socket, limit: float) -> float:
    """Seconds until the server closes ``sock`` (reads and discards any answer)."""
    began = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - began


def scrape_concurrently(
    exporter: Exporter,
    scrapers: int,
    seconds: float,
) -> tuple[list[float], list[str]]:
    """Keep-alive scrapers back to back for ``seconds``: latencies and errors."""
    latencies: list[float] = []
    errors: list[str] = []
    end = time.monotonic() + seconds

    def one() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", exporter.port, timeout=10)
        while time.monotonic() < end:
            began = time.monotonic()
            try:
                conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
                response = conn.getresponse()
                body = response.read()
                if response.status != 200 or not body:
                    errors.append(str(response.status))
                    continue
            except (OSError, http.client.HTTPException) as exc:
                errors.append(repr(exc))
                conn.close()
                continue
            latencies.append(time.monotonic() - began)
            time.sleep(0.02)
        conn.close()

    threads = [threading.Thread(target=one) for _ in range(scrapers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(latencies), errors


def test_concurrent_scrapers_get_no_errors_and_the_reader_keeps_up(exporter: Exporter) -> None:
    before, began = exporter.ok_telegrams(), time.monotonic()
    latencies, errors = scrape_concurrently(exporter, scrapers=10, seconds=2.0)
    gained = exporter.ok_telegrams() - before
    assert errors == []
    assert len(latencies) > 100
    assert latencies[int(len(latencies) * 0.99)] < 1.0
    assert gained >= 0.8 * 10 * (time.monotonic() - began)


MALFORMED = [
    (b"\x00\x01\x02\xff garbage\r\n\r\n", "400"),
    (b"GET\r\n\r\n", "400"),
    (b"FOO /metrics HTTP/1.1\r\nHost: x\r\n\r\n", "405"),
    (b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", "405"),
    (b"GET /metrics HTTP/9.9\r\nHost: x\r\n\r\n", "505"),
    (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", "414"),
    (b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n", "431"),
    (
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-%d: v\r\n" % i for i in range(150))
        + b"\r\n",
        "431",
    ),
    (b"GET /metrics?" + b"a=1&" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", "400"),
    (bytes.fromhex("16030100a5010000a10303") + bytes(160), "400"),  # TLS to plain HTTP
    (b"GET /%ff%00/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", "404"),
    (b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n", "200"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n\x16\x03\x01junk\r\n\r\n", "200+400"),
    # New with the event-loop server: HTTP/1.1 needs Host; two differing Content-Length
    # headers are refused (request smuggling); a bad OpenMetrics version falls back to text.
    (b"GET /metrics HTTP/1.1\r\n\r\n", "400"),
    (
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        "400",
    ),
    (
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
        b"Accept: application/openmetrics-text; version=x\r\n\r\n",
        "200",
    ),
]


@pytest.mark.parametrize(
    ("payload", "expected"), MALFORMED, ids=[f"{i}-{e}" for i, (_, e) in enumerate(MALFORMED)]
)
def test_malformed_and_oversized_requests_get_their_status(
    exporter: Exporter, payload: bytes, expected: str
) -> None:
    with socket.create_connection(("127.0.0.1", exporter.port), timeout=5) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    statuses = "+".join(s.decode() for s in re.findall(rb"HTTP/1\.[01] (\d{3})", data))
    assert statuses == expected
    assert b"Traceback" not in data and b"Server:" not in data
    assert exporter.get()[0] == 200


def test_slow_clients_do_not_block_scrapes_and_are_cut_off(exporter: Exporter) -> None:
    slow = [socket.create_connection(("127.0.0.1", exporter.port)) for _ in range(5)]
    try:
        for sock in slow:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        stop = threading.Event()

        def dribble() -> None:
            while not stop.wait(0.2):
                for sock in slow:
                    with contextlib.suppress(OSError):
                        sock.send(b"a")

        dribbler = threading.Thread(target=dribble)
        dribbler.start()
        try:
            for _ in range(5):
                status, body, took = exporter.get()
                assert status == 200 and body and took < 0.5
        finally:
            stop.set()
            dribbler.join()
        for sock in slow:  # a total deadline: dribbling does not extend it
            assert wait_closed(sock, limit=REQUEST_TIMEOUT + 2) < REQUEST_TIMEOUT + 1.5
    finally:
        for sock in slow:
            sock.close()


def test_an_idle_connection_flood_does_not_lock_scrapers_out(
    exporter: Exporter,
) -> None:
    idle_threads = exporter.threads()
    flood = [socket.create_connection(("127.0.0.1", exporter.port)) for _ in range(40)]
    try:
        time.sleep(0.2)
        # Every slot is taken by a socket that sent nothing: the one waiting longest
        # gives way, so scrapes keep working, quickly, during the flood.
        for _ in range(5):
            status, body, took = exporter.get()
            assert status == 200 and b"p1_up" in body and took < 0.5
        # Every idle socket is closed within the request timeout (evicted ones sooner).
        waits = [wait_closed(sock, limit=REQUEST_TIMEOUT + 3) for sock in flood]
        assert max(waits) < REQUEST_TIMEOUT + 1.5
    finally:
        for sock in flood:
            sock.close()
    status, _, took = exporter.get()
    assert status == 200 and took < 0.5
    time.sleep(0.5)
    assert exporter.threads() <= idle_threads + 1
