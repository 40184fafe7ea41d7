"""Shared helpers for the meter reader tests: waiting, ptys, a TCP dongle, an HTTP meter.

Everything here is real I/O on this machine (``os.openpty``, sockets on
127.0.0.1, ``http.server``), so the reader is tested through the same system
calls it makes in production.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import http.server
import logging
import os
import re
import socket
import threading
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from p1_exporter.core.crc import crc16_arc
from p1_exporter.meter.engine import MeterConfig
from p1_exporter.meter.meterset import Meter, MeterSet, make_meter
from p1_exporter.meter.snapshot import Snapshot

FIXTURES = Path(__file__).resolve().parent / "fixtures"
READER_LOG = "p1_exporter.reader"

T = TypeVar("T")


def fixture(name: str) -> bytes:
    """A real telegram from tests/fixtures, byte exact."""
    return (FIXTURES / name).read_bytes()


V5 = fixture("v5.txt")
V5_TWO_MBUS = fixture("v5_two_mbus.txt")
V2_2 = fixture("v2_2.txt")
V4_2 = fixture("v4_2.txt")


def wait_until(predicate: Callable[[], T], timeout: float = 5.0, interval: float = 0.01) -> T:
    """Poll ``predicate`` until it returns something true; return that (or the last value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# -- telegrams ----------------------------------------------------------------------------


def with_crc(body: bytes) -> bytes:
    """Recompute the CRC line of a telegram (everything up to and including ``!``)."""
    end = body.index(b"!") + 1
    return body[:end] + b"%04X\r\n" % crc16_arc(body[:end])


def replace_line(telegram: bytes, old: bytes, new: bytes) -> bytes:
    """``telegram`` with one exact piece of text replaced and a correct CRC."""
    assert telegram.count(old) == 1, f"{old!r} must occur exactly once"
    return with_crc(telegram.replace(old, new))


def corrupt_crc(telegram: bytes) -> bytes:
    """``telegram`` with one digit of the body changed, so only the CRC tells."""
    match = re.search(rb"1-0:1\.7\.0\((\d)", telegram)
    assert match is not None
    pos = match.start(1)
    digit = b"7" if telegram[pos : pos + 1] != b"7" else b"3"
    return telegram[:pos] + digit + telegram[pos + 1 :]


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
def running(config: MeterConfig, source: Any = None,
            clock: Callable[[], float] = time.monotonic) -> Iterator[Meter]:
    """A started meter, as the exporter runs it (network meters on an event loop, the
    rest in a thread); stopped on exit, and the stop must be prompt (< 1 s)."""
    meter = make_meter(config, source, clock=clock)
    meters = MeterSet([meter])
    meters.start()
    try:
        yield meter
    finally:
        began = time.monotonic()
        meters.stop()
        took = time.monotonic() - began
        assert not meter.alive and not meters.alive, "meter did not stop"
        assert took < 1.0, f"stop() took {took:.2f} s"


def ok_count(reader: Meter) -> int:
    """Telegrams accepted so far."""
    return reader.snapshot.telegrams["ok"]


def counts(snapshot: Snapshot) -> dict[str, int]:
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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound and released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def refused(port: int) -> bool:
    """True when a TCP connect to the port is refused right now."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except OSError as exc:
        return exc.errno == errno.ECONNREFUSED
    return False


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


KWH_LINE = b"1-0:1.8.1(000004.426*kWh)"
#: Telegram counts of a reader that has framed nothing yet.
NOTHING = {"ok": 0, "crc_error": 0, "malformed": 0, "too_large": 0, "rejected": 0}


def v5_at(kwh: str) -> bytes:
    """The v5 fixture with its tariff-1 import register set to ``kwh`` (CRC recomputed)."""
    return replace_line(V5, KWH_LINE, b"1-0:1.8.1(%s*kWh)" % kwh.encode())
