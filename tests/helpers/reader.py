"""Meters for the reader tests: ptys, TCP dongles, an HTTP meter, and a started reader.

Everything here is real I/O on this machine (``os.openpty``, sockets on
127.0.0.1, ``http.server``), so the reader is tested through the same system
calls it makes in production.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import logging
import os
import socket
import threading
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from p1_exporter.core.errors import Result
from p1_exporter.meter.engine import MeterConfig
from p1_exporter.meter.meterset import Meter, MeterSet, make_meter
from p1_exporter.meter.snapshot import Snapshot

READER_LOG = "p1_exporter.reader"

# -- reader -------------------------------------------------------------------------------


def fast_config(url: str, **overrides: Any) -> MeterConfig:
    """A MeterConfig with timeouts short enough for tests."""
    values: dict[str, Any] = {
        "url": url,
        "name": "test",
        "stale_after": 5.0,
        "detect_timeout": 1.0,
        "silence_timeout": 1.0,
        "poll_interval": 0.1,
        "backoff_initial": 0.05,
        "backoff_cap": 0.5,
    }
    values.update(overrides)
    return MeterConfig(**values)


class ManualClock:
    """A monotonic clock a test moves on: the real one plus what :meth:`advance` added.

    Timeouts of 30 s pass in an instant, while everything the test does not skip keeps
    its real pace. Call the reader's ``wake()`` after advancing, so a blocking read
    looks at the new time. Snapshots judge freshness on the real clock: a test that
    advanced this one passes ``clock()`` to ``fresh()``/``age()``.
    """

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        """Move the clock on by ``seconds``."""
        self.offset += seconds


@contextlib.contextmanager
def running(
    config: MeterConfig, source: Any = None, clock: Callable[[], float] = time.monotonic
) -> Iterator[Meter]:
    """A started meter, as the exporter runs it (network meters on an event loop, the
    rest in a thread); stopped on exit, and it must be gone after ``stop()``.

    How long a stop takes is measured by benchmarks/bench_stop.py, not here.
    """
    meter = make_meter(config, source, clock=clock)
    meters = MeterSet([meter])
    meters.start()
    try:
        yield meter
    finally:
        meters.stop(timeout=10.0)  # the timeout only guards against a hang
        assert not meter.alive and not meters.alive, "meter did not stop"


def ok_count(reader: Meter) -> int:
    """Telegrams accepted so far."""
    return reader.snapshot.telegrams["ok"]


def counts(snapshot: Snapshot) -> dict[Result, int]:
    """The per-result telegram counters as a plain dict."""
    return dict(snapshot.telegrams)


def messages(caplog: pytest.LogCaptureFixture, text: str, level: int = logging.DEBUG) -> list[str]:
    """Reader log messages at ``level`` or above that contain ``text``."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == READER_LOG and r.levelno >= level and text in r.getMessage()
    ]


# -- pseudo terminals ---------------------------------------------------------------------


@dataclasses.dataclass
class Pty:
    """A pty pair: the test writes the meter's bytes to ``master``; the reader opens ``path``."""

    master: int
    slave: int
    path: str

    def write(self, data: bytes) -> None:
        """Write all of ``data`` to the master side."""
        view = memoryview(data)
        while view:
            written = os.write(self.master, view)
            view = view[written:]

    def write_slowly(self, data: bytes, chunk: int = 1, pause: float = 0.0) -> None:
        """Write ``data`` in pieces of ``chunk`` bytes, each its own write call."""
        for start in range(0, len(data), chunk):
            self.write(data[start : start + chunk])
            if pause:
                time.sleep(pause)

    def close_master(self) -> None:
        """Unplug: the reader's next read fails (EIO, then hang-up)."""
        if self.master >= 0:
            os.close(self.master)
            self.master = -1

    def close(self) -> None:
        """Release both ends."""
        self.close_master()
        if self.slave >= 0:
            os.close(self.slave)
            self.slave = -1


def open_pty() -> Pty:
    """A new pty pair whose slave is raw (no echo, no line editing, 8 bit clean)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    return Pty(master, slave, os.ttyname(slave))


@contextlib.contextmanager
def pty_pair() -> Iterator[Pty]:
    """A pty pair, closed on exit."""
    pair = open_pty()
    try:
        yield pair
    finally:
        pair.close()


def point(link: Path, target: str) -> None:
    """Make (or re-point) the symlink ``link`` to ``target`` atomically."""
    tmp = link.with_name(link.name + ".new")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(target)
    tmp.replace(link)


# -- a TCP dongle (ser2net, ESP-based P1 dongles) ------------------------------------------


class Dongle:
    """A TCP server on 127.0.0.1 that sends what the test gives it to every client.

    ``stop()`` closes the listener and all connections (clients see a close);
    ``start()`` listens again on the same port. A dongle that accepts but never
    sends anything is simply one the test does not call ``send`` on.
    """

    def __init__(self, port: int = 0, backlog: int = 4) -> None:
        self.port = port
        self.backlog = backlog
        self.accepted = 0
        self._listener: socket.socket | None = None
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Listen (again) on the port; accept clients in a background thread."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(self.backlog)
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._clients.append(client)
                self.accepted += 1

    @property
    def clients(self) -> int:
        """Connections currently open."""
        with self._lock:
            return len(self._clients)

    def send(self, data: bytes) -> int:
        """Send ``data`` to every client; return how many got it."""
        sent = 0
        with self._lock:
            for client in list(self._clients):
                try:
                    client.sendall(data)
                    sent += 1
                except OSError:
                    self._clients.remove(client)
                    client.close()
        return sent

    def drop_clients(self) -> None:
        """Close every open connection, keep listening."""
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()

    def stop(self) -> None:
        """Stop listening and close every connection (connects are refused until start())."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        if self._thread is not None:
            self._thread.join(1.0)
        self.drop_clients()


class ManualDongle:
    """A TCP "P1 dongle" on 127.0.0.1 driven step by step: the test accepts the reader's
    connection, sends bytes and hangs up itself (one client at a time, no thread)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(5)
        self.url = f"socket://127.0.0.1:{self.server.getsockname()[1]}"
        self.conn: socket.socket | None = None

    def accept(self) -> None:
        self.conn, _ = self.server.accept()

    def send(self, data: bytes) -> None:
        assert self.conn is not None
        self.conn.sendall(data)

    def hang_up(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def close(self) -> None:
        self.hang_up()
        self.server.close()


# -- an HTTP meter (HomeWizard P1 style) ---------------------------------------------------


class TelegramServer:
    """``http.server`` on 127.0.0.1 serving ``body`` at /api/v1/telegram with ``status``."""

    PATH = "/api/v1/telegram"

    def __init__(self, body: bytes = b"", status: int = 200) -> None:
        self.body = body
        self.status = status
        self.requests = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                if self.path != owner.PATH:
                    self.send_error(404)
                    return
                status, body = owner.status, owner.body
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.PATH}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(1.0)


#: Telegram counts of a reader that has framed nothing yet.
NOTHING: dict[Result, int] = {
    "ok": 0,
    "crc_error": 0,
    "malformed": 0,
    "too_large": 0,
    "rejected": 0,
}
