"""Listening sockets: the address flag, binding, accepting, and what a TLS port needs.

* :func:`parse_listen_address` reads ``--web.listen-address`` and :func:`bind` opens the
  socket (dual-stack for ``:port``, IPv4 first for names, like Go's servers).
* :class:`Acceptor` accepts on the event loop; when the process is out of file
  descriptors it pauses accepting for a moment and says so once a minute.
* :func:`starts_tls` peeks at the first byte of a connection to a TLS port: 0x16 opens a
  TLS handshake; anything else is plain HTTP sent to the wrong port, which the server
  answers with :data:`PLAIN_HTTP_ON_TLS_PORT` (a 400, as Go's servers do) instead of a
  reset.
* :class:`TLSContexts` hands out the server SSLContext, rebuilt when the certificate,
  key or CA files change on disk or the web config is reloaded.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import re
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from p1_exporter.web.webconfig import WebConfig, WebConfigError

__all__ = [
    "PLAIN_HTTP_ON_TLS_PORT",
    "Acceptor",
    "TLSContexts",
    "bind",
    "client_address",
    "parse_listen_address",
    "starts_tls",
]

log = logging.getLogger("p1_exporter.http")

_PORT_RE = re.compile(r"[0-9]{1,5}")
_HOST_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")
_LIMIT_WARNING_INTERVAL = 60.0
_ACCEPT_BATCH = 64  # sockets accepted per wake-up, then other work gets its turn
_TLS_HANDSHAKE_RECORD = 0x16

_PLAIN_BODY = b"400 Bad Request: this port speaks HTTPS; use an https:// URL\n"
PLAIN_HTTP_ON_TLS_PORT = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_PLAIN_BODY), _PLAIN_BODY)
)
"""The answer to plain HTTP on a TLS port."""


def parse_listen_address(text: str) -> tuple[str, int]:
    """Parse ``--web.listen-address``: ``:9357``, ``host:port`` or ``[ipv6]:port``.

    An empty host means all interfaces and is returned as ``"::"`` (dual-stack IPv6 +
    IPv4) where the system supports that, else ``"0.0.0.0"``. Raises ValueError.
    """

    def bad(reason: str) -> ValueError:
        return ValueError(f"invalid listen address {text!r}: {reason}")

    if not text or text != text.strip():
        raise bad("expected host:port, e.g. ':9357', '127.0.0.1:9357' or '[::1]:9357'")
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise bad("expected [IPv6 address]:port, e.g. '[::1]:9357'")
        host, port_text = text[1:end], text[end + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise bad(f"{host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise bad("missing ':port', e.g. ':9357'")
        if ":" in host:
            raise bad("put IPv6 addresses in brackets, e.g. '[::1]:9357'")
        if host and not _HOST_RE.fullmatch(host):
            raise bad(f"{host!r} is not a valid host name or IPv4 address")
    if not _PORT_RE.fullmatch(port_text) or int(port_text) > 65535:
        raise bad(f"port {port_text!r} must be a number from 0 to 65535")
    if not host:
        host = "::" if socket.has_dualstack_ipv6() else "0.0.0.0"
    return host, int(port_text)


def bind(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """Listen on ``host:port``; ``::`` listens dual-stack where possible (like Go)."""
    if host == "::" and socket.has_dualstack_ipv6():
        sock = socket.create_server(
            (host, port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=backlog
        )
    else:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        infos.sort(key=lambda info: info[0] != socket.AF_INET)  # IPv4 first for names, as Go
        error: OSError = OSError(errno.EADDRNOTAVAIL, f"no address for {host!r}")
        for family, _, _, _, address in infos:
            try:
                sock = socket.create_server(address[:2], family=family, backlog=backlog)
                break
            except OSError as exc:
                error = exc
        else:
            raise error
    sock.setblocking(False)
    return sock


def client_address(peer: Any) -> str:
    """The client's IP address as text; IPv4-mapped IPv6 addresses become IPv4."""
    host = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
    if host.startswith("::ffff:"):
        try:
            return str(ipaddress.IPv6Address(host).ipv4_mapped or host)
        except ValueError:
            pass
    return host


class Acceptor:
    """Accepts connections on ``listener`` with the event loop and hands them to a callback."""

    def __init__(
        self, listener: socket.socket, on_accept: Callable[[socket.socket, Any], None]
    ) -> None:
        self._listener = listener
        self._on_accept = on_accept
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_warning = -_LIMIT_WARNING_INTERVAL
        self._paused: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._listener.fileno(), self._ready)

    def stop(self) -> None:
        """Stop accepting and close the listening socket."""
        if self._paused is not None:
            self._paused.cancel()
        if self._loop is not None and self._listener.fileno() >= 0:
            self._loop.remove_reader(self._listener.fileno())
        self._listener.close()

    def _ready(self) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._warn(f"cannot accept connections: {exc}")
                    self._pause(0.05)
                else:
                    log.debug("accept failed: %s", exc)
                return
            self._on_accept(sock, peer)

    def _pause(self, seconds: float) -> None:
        """No descriptors left: stop polling the listener for a moment (the kernel queues)."""
        assert self._loop is not None
        self._loop.remove_reader(self._listener.fileno())

        def resume() -> None:
            self._paused = None
            if self._listener.fileno() >= 0:
                assert self._loop is not None
                self._loop.add_reader(self._listener.fileno(), self._ready)

        self._paused = self._loop.call_later(seconds, resume)

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warning >= _LIMIT_WARNING_INTERVAL:
            self._last_warning = now
            log.warning("%s", message)


async def starts_tls(sock: socket.socket) -> bool | None:
    """Wait for the first byte without consuming it: True for a TLS handshake record,
    False for anything else, None if the client closed without sending."""
    loop = asyncio.get_running_loop()
    readable = loop.create_future()
    fd = sock.fileno()

    def ready() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(fd, ready)
    try:
        await readable
    finally:
        loop.remove_reader(fd)
    try:
        first = sock.recv(1, socket.MSG_PEEK)
    except (BlockingIOError, InterruptedError):
        return await starts_tls(sock)
    except OSError:
        return None
    if not first:
        return None
    return first[0] == _TLS_HANDSHAKE_RECORD


class TLSContexts:
    """Hands out the SSLContext of the current web config, rebuilt when its files change."""

    def __init__(self, web_config: WebConfig) -> None:
        context = web_config.ssl_context()
        assert context is not None  # only built when web_config.tls is set
        self._config = web_config
        self._context = context
        self._signature = self._stat(web_config)

    @staticmethod
    def _stat(config: WebConfig) -> tuple[tuple[str, int, int, int], ...]:
        result = []
        for path in config.tls_files:
            try:
                st = os.stat(path)
                result.append((path, st.st_ino, st.st_mtime_ns, st.st_size))
            except OSError:
                result.append((path, -1, -1, -1))
        return tuple(result)

    def get(self, config: WebConfig) -> ssl.SSLContext:
        """The context for a new connection under ``config`` (the current web config)."""
        signature = self._stat(config)
        if config is self._config and signature == self._signature:
            return self._context
        changed_config = config is not self._config
        self._config, self._signature = config, signature
        try:
            context = config.ssl_context()
        except WebConfigError as exc:
            log.warning("TLS files changed but cannot be loaded, keeping the old: %s", exc)
        else:
            if context is not None:
                self._context = context
                if not changed_config:
                    log.info("TLS certificate files changed; reloaded")
        return self._context
