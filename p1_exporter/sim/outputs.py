"""Where the simulator's bytes go (stdout, a pseudo-terminal, TCP clients) and the paced loop.

Each sink has ``write`` (never blocks for long, never fails because nobody
listens), ``wait`` (sleep, doing the sink's housekeeping meanwhile) and
``close``. :func:`stream` paces telegrams by the monotonic clock: telegram
``k`` is due at ``origin + k * interval``, so timing errors never accumulate.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import sys
import termios
import time
import tty
from collections.abc import Callable
from typing import Protocol

from p1_exporter.sim.meter import SimulatedMeter

#: A TCP client that does not take a telegram within this time is dropped.
CLIENT_SEND_TIMEOUT = 2.0


class Sink(Protocol):
    """A destination for the simulated byte stream."""

    def write(self, data: bytes) -> None: ...

    def wait(self, seconds: float) -> None: ...

    def close(self) -> None: ...


class StdoutSink:
    """Raw bytes on standard output."""

    def __init__(self) -> None:
        self._out = sys.stdout.buffer

    def write(self, data: bytes) -> None:
        self._out.write(data)
        self._out.flush()

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._out.flush()


class PtySink:
    """A pseudo-terminal whose slave side looks like a meter's serial port.

    The slave is set raw (no echo, no newline translation) and kept open here,
    so readers can come and go without the pty hanging up. When nobody reads
    and the buffer fills, the unread data is discarded, as a serial line with
    nothing attached would lose it.
    """

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        flushed = False
        while view:
            try:
                view = view[os.write(self.master, view) :]
            except BlockingIOError:
                if flushed:
                    return  # still full: drop the rest
                termios.tcflush(self.slave, termios.TCIFLUSH)
                flushed = True

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def parse_host_port(text: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (``"[::1]:PORT"`` for IPv6; an empty host means 127.0.0.1)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected HOST:PORT, not {text!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


class TcpSink:
    """A listener like a ser2net / Wi-Fi P1 dongle: every connected client gets the stream."""

    def __init__(self, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port))
        self._listener.listen(8)
        self._listener.setblocking(False)
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self.clients: list[socket.socket] = []

    @property
    def url(self) -> str:
        """The pyserial URL a reader can open: ``socket://host:port``."""
        host, port = self.address
        return f"socket://[{host}]:{port}" if ":" in host else f"socket://{host}:{port}"

    def write(self, data: bytes) -> None:
        self._service(0.0)
        for client in list(self.clients):
            try:
                client.sendall(data)
            except OSError:  # gone, or stopped reading
                self._drop(client)

    def wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._service(remaining)

    def _service(self, timeout: float) -> None:
        """Accept new clients and notice departed ones, waiting at most ``timeout``."""
        for key, _ in self._selector.select(timeout):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock is self._listener:
                with contextlib.suppress(BlockingIOError, InterruptedError):
                    client, _ = self._listener.accept()
                    client.settimeout(CLIENT_SEND_TIMEOUT)
                    self.clients.append(client)
                    self._selector.register(client, selectors.EVENT_READ)
            else:
                try:
                    incoming = sock.recv(4096, socket.MSG_DONTWAIT)  # readers may talk; ignore
                except BlockingIOError:
                    continue
                except OSError:
                    incoming = b""
                if not incoming:
                    self._drop(sock)

    def _drop(self, client: socket.socket) -> None:
        if client in self.clients:
            self.clients.remove(client)
            self._selector.unregister(client)
        with contextlib.suppress(OSError):
            client.close()

    def close(self) -> None:
        for client in list(self.clients):
            self._drop(client)
        self._selector.close()
        self._listener.close()


def stream(
    meter: SimulatedMeter,
    sink: Sink,
    *,
    interval: float,
    speed: float = 1.0,
    count: int | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Send telegrams to ``sink`` every ``interval`` seconds; return how many were sent.

    Telegram ``k`` shows simulated time ``meter.start + k * interval * speed``.
    When the loop falls more than one interval behind (a fault pause, a slow
    sink) the missed telegrams are skipped, as a meter does not queue them.
    """
    origin = clock()
    slot = 0
    sent = 0
    while count is None or sent < count:
        delay = origin + slot * interval - clock()
        if delay > 0:
            sink.wait(delay)
        elif delay < -interval:
            slot = int((clock() - origin) // interval)
        for chunk in meter.chunks_at(meter.start + slot * interval * speed):
            if chunk.pause_before > 0:
                sink.wait(chunk.pause_before)
            if chunk.data:
                sink.write(chunk.data)
        sent += 1
        slot += 1
    return sent
