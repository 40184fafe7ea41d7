"""HTTP(S) transport: every connection on one asyncio event loop, parsed by h11.

The application supplies one ``Handler`` (``Request -> Response``, see
:mod:`p1_exporter.web.messages`); this module serves it to a network:

* One event loop serves every connection, so an idle or slow client costs a few KB and a
  timer, never a thread; an idle exporter wakes for nothing.
* Deadlines: the TLS handshake (and the wait for its first byte) within
  ``request_timeout``; each request head within ``request_timeout`` of its first byte
  (of the accept, for the first request); an idle keep-alive connection is closed after
  :data:`KEEPALIVE_IDLE` (longer than any common scrape interval, so Prometheus keeps
  its connection). A response write may wait for the client to read for at most
  ``request_timeout`` in all, counted over a run of pipelined requests, so a client
  that pipelines and reads slowly cannot hold a slot for ever.
* Limits: a request head of at most :data:`MAX_HEAD_BYTES` (h11's incomplete-event cap,
  then a check of the whole head), :data:`MAX_HEADER_LINES` header lines,
  :data:`MAX_TARGET_BYTES` of request target; ``max_connections`` at once and
  ``max_connections_per_client`` from one address, where the connection owed least gives
  way to a new one (:mod:`p1_exporter.web.slots`); a 503 only when none can.
* Order of answers: protocol errors (400, 414, 431, 505; h11 refuses duplicate differing
  Content-Length), then authentication (401; 503 while the bcrypt pool is full, see
  :mod:`p1_exporter.web.auth`), then 405 for methods other than GET and HEAD, then the
  handler. Plain HTTP on a TLS port gets a 400.
* gzip for bodies over :data:`GZIP_MIN_BYTES` when the client accepts it; extra response
  headers from the web config; no ``Server`` banner, no tracebacks to clients: a failing
  handler yields 500 and one error line (traceback at debug level).

Why h11 and not aiohttp's server: h11 is a small pure-Python sans-I/O parser (the model
our own core follows) that adds nothing measurable to the process (RSS after import: 19
MB with asyncio and ssl, the same with h11; 35 MB with ``aiohttp.web``, which also
brings six compiled dependencies a Raspberry Pi must find wheels for). aiohttp would
not have saved the deadlines either: it has no deadline for a request head or for a
response write, the two attacks of issue 14 that starve the threaded server, so they
would be hand-written on top of it just the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import gzip
import logging
import socket
import ssl
import struct
import sys
import threading
import time
from http import HTTPStatus
from types import TracebackType
from typing import Any

import h11

from p1_exporter.web.auth import AuthFailures, BcryptPool, Outcome
from p1_exporter.web.listen import (
    PLAIN_HTTP_ON_TLS_PORT,
    Acceptor,
    TLSContexts,
    bind,
    client_address,
    parse_listen_address,
    starts_tls,
)
from p1_exporter.web.messages import (
    GZIP_MIN_BYTES,
    Handler,
    Headers,
    Request,
    Response,
    accepts_gzip,
    split_target,
    valid_header,
)
from p1_exporter.web.reload import WebConfigSource
from p1_exporter.web.slots import Rank, Slots
from p1_exporter.web.webconfig import WebConfig

__all__ = ["KEEPALIVE_IDLE", "ExporterHTTPServer"]

log = logging.getLogger("p1_exporter.http")

KEEPALIVE_IDLE = 150.0
"""Seconds an idle keep-alive connection stays open (Prometheus' default interval is
1 minute at most in practice; 15 s and 30 s are common)."""
MAX_HEAD_BYTES = 16 * 1024
MAX_HEADER_LINES = 100
MAX_TARGET_BYTES = MAX_HEAD_BYTES
_LINGER = 0.5  # seconds to wait for the client's EOF after our last response
_LINGER_BYTES = 64 * 1024
_READ_AHEAD = 64 * 1024  # bytes buffered beyond the request being served before pausing
_SHUTDOWN_GRACE = 0.5
_SEND_BUFFER = 64 * 1024  # kernel send buffer per connection (Linux doubles it)
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset
_TEXT = "text/plain; charset=utf-8"
_BUSY_BODY = b"503 Service Unavailable: too many connections\n"


class _Closed(Exception):
    """The connection is gone (closed by the client, a deadline, or an eviction)."""


class _Connection(asyncio.Protocol):
    """One client connection: its slot, deadlines and h11 state."""

    def __init__(self, server: ExporterHTTPServer, sock: socket.socket, peer: Any) -> None:
        self.server = server
        self.sock: socket.socket | None = sock
        self.peer = peer
        self.client = client_address(peer)
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self._state = "new"
        self._since = time.monotonic()
        self.trusted = False  # has had a request answered that passed authentication
        self.heard = False  # has sent a byte
        self._timer: asyncio.TimerHandle | None = None
        self._wake: asyncio.Future[None] | None = None
        self._closed = False
        self._paused_reading = False
        self._buffered = 0
        self._newline_seen = False
        self._writing_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._stall_budget = server.request_timeout
        self._lingered = 0
        self._eof = False

    # --- slot ------------------------------------------------------------------------

    @property
    def rank(self) -> int | None:
        state = self._state
        if state == "closing":
            return Rank.CLOSING
        if state in ("new", "head") and not self.heard:
            return Rank.SILENT
        if state == "new" or (state in ("head", "idle") and not self.trusted):
            return Rank.NEW
        if state == "auth":
            return Rank.AUTH
        if state == "write":
            return Rank.STALLED if self._writing_paused else None
        if state == "idle":
            return Rank.IDLE
        if state == "head":
            return Rank.HEAD
        return None

    @property
    def since(self) -> float:
        return self._since

    def still_silent(self) -> bool:
        """Look at the socket for bytes that arrived but were not read yet."""
        if self.heard:
            return False
        if self.sock is not None:
            sock, borrowed = self.sock, False
        elif self.transport is not None:
            raw = self.transport.get_extra_info("socket")
            if raw is None:
                return True
            sock, borrowed = socket.socket(fileno=raw.fileno()), True
        else:
            return True
        try:
            waiting = bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except OSError:
            waiting = False
        finally:
            if borrowed:
                sock.detach()
        if waiting:
            self.heard = True
        return not waiting

    def _set_state(self, state: str) -> None:
        self._state = state
        self._since = time.monotonic()

    @property
    def peer_text(self) -> str:
        if isinstance(self.peer, tuple) and len(self.peer) >= 2:
            host, port = self.peer[0], self.peer[1]
            return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
        return str(self.peer)

    def evict(self, reason: str) -> None:
        """Close now (another connection needs the slot, or the server stops)."""
        log.debug("closing %s: %s", self.peer_text, reason)
        self._abort()

    def _abort(self) -> None:
        if self.transport is not None:
            # A reset, not a FIN: the kernel drops what the client has not read yet
            # instead of holding it (up to the send buffer) for a client that does not read.
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            self.transport.abort()
        elif (
            self.task is not None
            and not self.task.done()
            and self.task is not asyncio.current_task()
        ):
            self.task.cancel()  # in the TLS handshake, or waiting for its first byte
        self._lost()

    def task_done(self, _task: asyncio.Task[None]) -> None:
        """The socket is closed even when the task was cancelled before it began."""
        if self.transport is None:
            if self.sock is not None:
                self.sock.close()
                self.sock = None
            self._lost()

    # --- deadlines ---------------------------------------------------------------------

    def _deadline(self, when: float | None, reason: str) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if when is not None:
            self._timer = self.loop.call_at(when, self._expired, reason)

    def _expired(self, reason: str) -> None:
        self._timer = None
        log.debug("closing %s: %s", self.peer_text, reason)
        self._abort()

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.sock = None  # the transport owns it now
        # Pause (and so stall-time accounting) as soon as anything waits in our buffer.
        # (high=0 would pause a TLS transport for good: it pauses at size >= high.)
        transport.set_write_buffer_limits(high=1, low=0)

    def data_received(self, data: bytes) -> None:
        self.heard = True
        if self._state == "closing":
            self._lingered += len(data)
            if self._lingered > _LINGER_BYTES:
                self._abort()
            return
        if self._state == "idle":
            self._set_state("head")
            self._deadline(
                self.loop.time() + self.server.request_timeout, "no complete request in time"
            )
        if self._state in ("new", "head") and b"\n" in data:
            self._newline_seen = True
        self.h11.receive_data(data)
        self._buffered += len(data)
        if self._buffered > MAX_HEAD_BYTES + _READ_AHEAD:
            self._pause_reading()
        self._notify()

    def eof_received(self) -> bool:
        self._eof = True
        if self._state == "closing":
            self._finish_linger()
            return True
        with contextlib.suppress(h11.RemoteProtocolError):
            self.h11.receive_data(b"")
        self._notify()
        # Keep our side open to answer a client that half-closed (TLS cannot half-close).
        return self.transport is not None and self.transport.can_write_eof()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # --- internals ----------------------------------------------------------------------

    def _lost(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._deadline(None, "")
        self._notify()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self.server._release(self)

    def _notify(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def _pause_reading(self) -> None:
        if not self._paused_reading and self.transport is not None:
            self._paused_reading = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._paused_reading and self.transport is not None and not self._closed:
            self._paused_reading = False
            self.transport.resume_reading()

    async def _wait_data(self) -> None:
        if self._closed:
            raise _Closed
        self._resume_reading()
        self._wake = self.loop.create_future()
        try:
            await self._wake
        finally:
            self._wake = None
        if self._closed:
            raise _Closed

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self._closed and data:
            self.transport.write(data)

    async def _drain(self) -> None:
        """Wait until the transport has handed everything to the kernel, on a stall budget."""
        while self._writing_paused and not self._closed:
            began = self.loop.time()
            self._deadline(began + self._stall_budget, "client does not read its responses")
            self._drained = self.loop.create_future()
            try:
                await self._drained
            finally:
                self._drained = None
                self._stall_budget -= self.loop.time() - began
                self._deadline(None, "")
        if self._closed:
            raise _Closed

    # --- the connection's life ---------------------------------------------------------

    async def run(self, tls: ssl.SSLContext | None) -> None:
        """Handshake (TLS), then serve requests until the connection ends."""
        server = self.server
        try:
            if tls is not None:
                if not await self._start_tls(tls):
                    return
            else:
                sock = self.sock
                assert sock is not None
                await self.loop.connect_accepted_socket(lambda: self, sock)
            if self._closed:
                return
            self._set_state("head")
            if tls is not None:  # the handshake had its deadline, the request gets its own
                self._deadline(
                    self.loop.time() + server.request_timeout, "no complete request in time"
                )
            # Else the first request's deadline runs from the accept (see _admit).
            await self._serve_requests()
        except _Closed:
            pass
        except (OSError, ssl.SSLError, asyncio.TimeoutError) as exc:
            log.debug("connection %s ended: %s", self.peer_text, exc)
        except asyncio.CancelledError:
            if not self._closed:  # cancelled by the server stopping, not by an eviction
                raise
        except Exception:
            log.exception("unexpected error serving %s", self.peer_text)
        finally:
            if self.transport is None and self.sock is not None:
                self.sock.close()
                self.sock = None
            if server._stopping or self._state != "closing":
                self._abort()

    async def _start_tls(self, context: ssl.SSLContext) -> bool:
        sock = self.sock
        assert sock is not None
        kind = await starts_tls(sock)
        if kind is None:
            return False
        self.heard = True
        if not kind:
            log.debug("%s: plain HTTP on the TLS port, answering 400", self.peer_text)
            await self.loop.connect_accepted_socket(lambda: self, sock)
            self._set_state("head")
            self._write(PLAIN_HTTP_ON_TLS_PORT)
            self._close_gracefully()
            return False
        extra: dict[str, Any] = {}
        if sys.version_info >= (3, 11):
            extra["ssl_shutdown_timeout"] = min(self.server.request_timeout, 1.0)
        await self.loop.connect_accepted_socket(
            lambda: self,
            sock,
            ssl=context,
            ssl_handshake_timeout=self.server.request_timeout,
            **extra,
        )
        assert self.transport is not None
        config = self.server.config.current()
        if config is not None and not config.client_cert_allowed(
            self.transport.get_extra_info("peercert")
        ):
            log.debug("closing %s: client certificate SAN not allowed", self.peer_text)
            return False
        return True

    async def _next_event(self) -> Any:
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                hint = exc.error_status_hint
                if hint == 431 and not self._newline_seen:
                    hint = 414  # the request line alone is too long
                return _ProtocolError(hint, str(exc))
            if event is h11.NEED_DATA:
                if self._closed:
                    raise _Closed
                if self._eof:
                    return h11.ConnectionClosed()
                await self._wait_data()
                continue
            return event

    async def _serve_requests(self) -> None:
        server = self.server
        while True:
            event = await self._next_event()
            if isinstance(event, h11.ConnectionClosed):  # the client is done: so are we
                self._close_gracefully()
                return
            self._deadline(None, "")
            self._pause_reading()
            self._buffered = 0
            if isinstance(event, _ProtocolError):
                log.debug("%s: %d %s", self.peer_text, event.status, event.detail)
                await self._respond_error(event.status)
                self._close_gracefully()
                return
            assert isinstance(event, h11.Request)
            keep = await self._handle(event)
            if (
                not keep
                or self.h11.our_state is h11.MUST_CLOSE
                or self.h11.their_state is not h11.DONE
            ):
                self._close_gracefully()
                return
            self.h11.start_next_cycle()
            pending, _ = self.h11.trailing_data
            if pending:
                # One request per connection per turn of the loop: a client that pipelines
                # cannot keep the loop (and every other client, and signals) waiting.
                await asyncio.sleep(0)
                self._set_state("head")
                self._newline_seen = b"\n" in pending
                self._deadline(
                    self.loop.time() + server.request_timeout, "no complete request in time"
                )
            else:
                self._stall_budget = server.request_timeout  # a run of requests ended
                self._set_state("idle")
                self._newline_seen = False
                self._deadline(
                    self.loop.time() + server.keepalive_idle, "idle keep-alive connection"
                )

    async def _handle(self, event: h11.Request) -> bool:
        """Answer one request; False when the connection must close afterwards."""
        server = self.server
        method = event.method.decode("ascii", "replace")
        head = method == "HEAD"
        if event.http_version not in (b"1.0", b"1.1"):
            await self._respond_error(505, head=head)
            return False
        raw_headers = event.headers.raw_items()
        size = len(event.target) + sum(len(n) + len(v) + 4 for n, v in raw_headers)
        if len(event.target) > MAX_TARGET_BYTES:
            await self._respond_error(414, head=head)
            return False
        if size > MAX_HEAD_BYTES or len(raw_headers) > MAX_HEADER_LINES:
            await self._respond_error(431, head=head)
            return False
        headers = Headers((n.decode("latin-1"), v.decode("latin-1")) for n, v in raw_headers)
        target = split_target(event.target.decode("latin-1"))
        if target is None:
            await self._respond_error(400, head=head)
            return False
        has_body = not self._body_ended()
        config = server.config.current()
        if config is not None and config.auth_required:
            self._set_state("auth")
            outcome = await server._authenticate(config, headers.get("Authorization"))
            self._set_state("app")
            self.trusted = outcome == "ok"
            if outcome != "ok":
                server.auth_failures.add(outcome, self.client)
                status, body, header = (
                    (
                        503,
                        b"503 Service Unavailable: too many credential checks waiting, retry\n",
                        ("Retry-After", "1"),
                    )
                    if outcome == "busy"
                    else (
                        401,
                        b"401 Unauthorized\n",
                        ("WWW-Authenticate", 'Basic realm="p1-exporter"'),
                    )
                )
                await self._send(
                    status,
                    body,
                    _TEXT,
                    (header,),
                    head=head,
                    close=has_body,
                    config=config,
                    accept_encoding=None,
                )
                return not has_body
        self._set_state("app")
        self.trusted = True
        if method not in ("GET", "HEAD"):
            await self._send(
                405,
                b"405 Method Not Allowed\n",
                _TEXT,
                (("Allow", "GET, HEAD"),),
                head=False,
                close=True,
                config=config,
                accept_encoding=None,
            )
            return False
        request = Request(method=method, path=target[0], query=target[1], headers=headers)
        response = server._call_handler(request)
        await self._send(
            response.status,
            response.body,
            response.content_type,
            response.headers,
            head=head,
            close=has_body,
            config=config,
            accept_encoding=headers.get("Accept-Encoding"),
            compressible=True,
        )
        return not has_body

    def _body_ended(self) -> bool:
        """True when the request has no body; its body is never read, so otherwise the
        connection closes after the answer (a body is never parsed as a request)."""
        try:
            return isinstance(self.h11.next_event(), h11.EndOfMessage)
        except h11.RemoteProtocolError:
            return False

    async def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: tuple[tuple[str, str], ...],
        *,
        head: bool,
        close: bool,
        config: WebConfig | None,
        accept_encoding: str | None,
        compressible: bool = False,
    ) -> None:
        names = {name.lower() for name, _ in headers}
        extra = list(headers)
        if compressible and len(body) > GZIP_MIN_BYTES and "content-encoding" not in names:
            extra.append(("Vary", "Accept-Encoding"))
            if accepts_gzip(accept_encoding):
                body = gzip.compress(body, compresslevel=6, mtime=0)
                extra.append(("Content-Encoding", "gzip"))
        lines = [("Date", _http_date()), ("Content-Type", content_type)]
        for name, value in config.headers if config is not None else ():
            if name.lower() not in names:
                lines.append((name, value))
        for name, value in extra:
            if name.lower() not in ("content-length", "connection", "date", "content-type"):
                lines.append((name, value))
        lines.append(("Content-Length", str(len(body))))
        if close:
            lines.append(("Connection", "close"))
        self._set_state("write")
        parts = [
            self.h11.send(h11.Response(status_code=status, headers=lines, reason=_reason(status)))
            or b""
        ]
        if body and not head:
            parts.append(self.h11.send(h11.Data(data=body)) or b"")
        parts.append(self.h11.send(h11.EndOfMessage()) or b"")
        self._write(b"".join(parts))  # one send: head and body in the same segment
        await self._drain()

    async def _respond_error(self, status: int, *, head: bool = False) -> None:
        """A short plain-text error that never echoes the request; the connection closes."""
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = f"{status} {_reason(status).decode()}\n".encode()
        with contextlib.suppress(h11.LocalProtocolError):
            await self._send(
                status,
                body,
                _TEXT,
                (),
                head=head,
                close=True,
                config=self.server.config.current(),
                accept_encoding=None,
            )

    def _close_gracefully(self) -> None:
        """Half-close, discard input until EOF or :data:`_LINGER` seconds, then close.

        Closing with unread input makes the kernel send a reset, which can destroy our
        last response before the client reads it (after a 400 or 431, say).
        """
        if self._closed or self.transport is None:
            return
        self._set_state("closing")
        transport = self.transport
        self._deadline(None, "")
        self.loop.call_at(
            self.loop.time() + min(self.server.request_timeout, _LINGER), self._linger_over
        )
        if transport.can_write_eof() and not self._eof:
            self._resume_reading()
            transport.write_eof()
        else:
            transport.close()  # after the buffered response (TLS: and close_notify)

    def _finish_linger(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _linger_over(self) -> None:
        """Close for good; a reset only if the client has not even taken our answer."""
        if self._closed or self.transport is None:
            return
        if self.transport.get_write_buffer_size():
            log.debug("closing %s: it does not read its answer", self.peer_text)
            self._abort()
        else:
            self.transport.close()


class _ProtocolError:
    __slots__ = ("detail", "status")

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    """The Date header's value, formatted once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


class ExporterHTTPServer:
    """Serves ``handler`` on ``listen`` (see :func:`~p1_exporter.web.listen.parse_listen_address`).

    The socket is bound in the constructor (OSError if that fails), so ``server_address``
    holds the real port before serving starts. Serve on the caller's event loop with
    :meth:`start_serving` / :meth:`aclose` (the exporter does), or on a loop in a
    background thread with :meth:`start` / :meth:`shutdown` (tests and tools).
    """

    def __init__(
        self,
        listen: str,
        handler: Handler,
        web_config: WebConfig | WebConfigSource | None = None,
        *,
        request_timeout: float = 10.0,
        max_connections: int = 512,
        max_connections_per_client: int = 64,
        keepalive_idle: float = KEEPALIVE_IDLE,
        bcrypt_workers: int = 1,
        auth_log_interval: float = 60.0,
    ) -> None:
        if request_timeout <= 0 or keepalive_idle <= 0:
            raise ValueError("request_timeout and keepalive_idle must be positive")
        if max_connections < 1 or max_connections_per_client < 1:
            raise ValueError("max_connections must be at least 1")
        self.handler = handler
        self.config = (
            web_config if isinstance(web_config, WebConfigSource) else WebConfigSource(web_config)
        )
        self.request_timeout = float(request_timeout)
        self.keepalive_idle = float(keepalive_idle)
        self.max_connections = max_connections
        self.slots = Slots(max_connections, max_connections_per_client)
        self.auth_failures = AuthFailures(auth_log_interval)
        self._pool = BcryptPool(workers=bcrypt_workers, queue_size=8 * bcrypt_workers)
        initial = self.config.current()
        self._tls = TLSContexts(initial) if initial is not None and initial.tls else None
        self._stopping = False
        self._connections: set[_Connection] = set()
        self._acceptor: Acceptor | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._listener = bind(*parse_listen_address(listen))
        address = self._listener.getsockname()
        self.server_address: tuple[str, int] = (str(address[0]), int(address[1]))

    @property
    def tls_enabled(self) -> bool:
        """True when connections are served over HTTPS."""
        return self._tls is not None

    @property
    def connections(self) -> int:
        """Connections holding a slot now."""
        return len(self.slots)

    # --- on the caller's loop ------------------------------------------------------------

    async def start_serving(self) -> None:
        """Start accepting on the running event loop."""
        if self._started or self._stopping:
            raise RuntimeError("server already started or shut down")
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._acceptor = Acceptor(self._listener, self._admit)
        self._acceptor.start()
        log.debug(
            "serving %s on %s:%d", "https" if self.tls_enabled else "http", *self.server_address
        )

    async def aclose(self) -> None:
        """Stop accepting, close every connection, log pending auth failures."""
        if self._stopping:
            return
        self._stopping = True
        if self._acceptor is not None:
            self._acceptor.stop()
        else:
            self._listener.close()
        tasks = [c.task for c in self._connections if c.task is not None]
        for conn in list(self._connections):
            conn.evict("server stopping")
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_SHUTDOWN_GRACE)
        self.auth_failures.close()

    def reload_config(self) -> None:
        """Re-read the web config file now (SIGHUP)."""
        self.config.reload()

    # --- in a thread of its own ----------------------------------------------------------

    def start(self) -> None:
        """Serve on a new event loop in a background daemon thread."""
        if self._thread is not None or self._started or self._stopping:
            raise RuntimeError("server already started or shut down")
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.start_serving())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.aclose())
                loop.close()

        self._thread = threading.Thread(target=main, name="p1-exporter-http", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]

    def shutdown(self) -> None:
        """Stop a server started with :meth:`start` (returns in well under a second)."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            if not self._started:
                self._stopping = True
                self._listener.close()
            return
        if thread.is_alive():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
            thread.join(2.0)

    def __enter__(self) -> ExporterHTTPServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    # --- connections ---------------------------------------------------------------------

    def _admit(self, sock: socket.socket, peer: Any) -> None:
        if self._stopping:
            sock.close()
            return
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # A fixed, modest send buffer: what a client has not read stays in our
            # accounting (the write stall budget) instead of megabytes of kernel memory,
            # and a client that pipelines cannot have hundreds of responses rendered ahead.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER)
        conn = _Connection(self, sock, peer)
        admitted, victim = self.slots.admit(conn)
        if victim is not None:
            assert isinstance(victim, _Connection)
            victim.evict("connection limit reached, it gives way to a new one")
        if not admitted:
            self._refuse(sock, conn.client)
            return
        self._connections.add(conn)
        conn._deadline(conn.loop.time() + self.request_timeout, "no complete request in time")
        tls = None
        if self._tls is not None:
            config = self.config.current()
            assert config is not None
            tls = self._tls.get(config)
        conn.task = asyncio.get_running_loop().create_task(conn.run(tls))
        conn.task.add_done_callback(conn.task_done)

    def _refuse(self, sock: socket.socket, client: str) -> None:
        """Every slot is busy being served: best-effort 503 (plain HTTP), then close."""
        log.debug("connection from %s refused: all %d slots busy", client, self.max_connections)
        with contextlib.suppress(OSError):
            if self._tls is None:
                sock.send(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: "
                    + _TEXT.encode()
                    + b"\r\nContent-Length: %d\r\nConnection: close\r\nRetry-After: 1"
                    b"\r\n\r\n" % len(_BUSY_BODY) + _BUSY_BODY
                )
        sock.close()

    def _release(self, conn: _Connection) -> None:
        self.slots.release(conn)
        self._connections.discard(conn)

    async def _authenticate(self, config: WebConfig, authorization: str | None) -> Outcome:
        try:
            return await asyncio.wait_for(
                config.auth.check(authorization, self._pool), self.request_timeout
            )
        except asyncio.TimeoutError:
            return "busy"

    def _call_handler(self, request: Request) -> Response:
        try:
            response = self.handler(request)
            if not isinstance(response, Response) or not isinstance(response.body, bytes):
                raise TypeError(f"handler returned {type(response).__name__}, not Response")
            if not 100 <= response.status <= 599 or not all(
                valid_header(n, v)
                for n, v in (*response.headers, ("Content-Type", response.content_type))
            ):
                raise ValueError("handler returned an invalid status or header")
        except Exception as exc:
            log.error(
                "handler failed for %s %s: %s: %s",
                request.method,
                request.path,
                type(exc).__name__,
                exc,
            )
            log.debug("handler traceback", exc_info=True)
            response = Response(500, b"500 Internal Server Error\n", _TEXT)
        return response
