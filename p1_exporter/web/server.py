"""HTTP(S) transport: a small threaded HTTP/1.1 server that application routes plug into.

The application supplies one ``Handler`` (``Request -> Response``) for GET and HEAD; this
module does everything else a scrape endpoint exposed on a network needs:

* one thread per connection, at most ``max_connections``; when they are all taken, the
  connection that has waited longest for its request (an idle or stalled client) is closed
  to make room, and only when every slot is busy with a request does a bounded number of
  helper threads answer ``503`` and close, so nothing ever queues without limit;
* every connection must complete its TLS handshake, and every request its request line and
  headers, within ``request_timeout`` (a total deadline enforced by the accept thread, not
  only a per-``recv`` timeout), so stalled or dribbling clients cannot pin threads;
* TLS handshakes run in the connection thread, never in the accept loop;
* other methods get ``405`` with ``Allow: GET, HEAD`` without reaching the handler;
  malformed requests get ``400``/``414``/``431``/``505`` (limits of ``http.server``: request
  line 64 KiB, 100 header lines of 64 KiB each), logged at debug level only;
* gzip for bodies over :data:`GZIP_MIN_BYTES` when the client accepts it;
* basic auth, TLS and extra response headers from a :class:`~p1_exporter.web.webconfig.WebConfig`;
  certificate/key files are re-read for new connections when they change on disk;
* no ``Server`` version banner, no tracebacks to clients: a failing handler yields ``500``
  and one error line on the ``p1_exporter.http`` logger (traceback at debug level).
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import http.server
import ipaddress
import logging
import os
import re
import selectors
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any

from p1_exporter.web.webconfig import WebConfig, WebConfigError

__all__ = [
    "GZIP_MIN_BYTES",
    "ExporterHTTPServer",
    "Handler",
    "Headers",
    "Request",
    "Response",
    "parse_listen_address",
]

log = logging.getLogger("p1_exporter.http")

GZIP_MIN_BYTES = 1024
"""Bodies larger than this are gzip-compressed for clients that accept it."""

_TEXT = "text/plain; charset=utf-8"
_MAX_REQUEST_LINE = 65536
_REJECTERS = 16  # threads that may answer 503 at the same time, beyond max_connections
_REJECT_TIMEOUT = 1.0  # seconds a 503 responder spends on handshake and draining
_SHUTDOWN_GRACE = 0.8  # seconds shutdown() waits for connection threads
_LINGER = 0.5  # seconds to wait for the client's EOF after our last response
_LIMIT_WARNING_INTERVAL = 60.0
_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_PORT_RE = re.compile(r"[0-9]{1,5}")
_HOST_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")


class Headers(Mapping[str, str]):
    """Read-only request headers with case-insensitive lookup; repeats are comma-joined."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        merged: dict[str, tuple[str, str]] = {}
        for name, value in items:
            key = name.lower()
            if key in merged:
                first, joined = merged[key]
                merged[key] = (first, f"{joined}, {value}")
            else:
                merged[key] = (name, value)
        self._items = merged

    def __getitem__(self, name: str) -> str:
        if not isinstance(name, str):
            raise KeyError(name)
        return self._items[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({list(self._items.values())!r})"


@dataclass(frozen=True)
class Request:
    """A parsed GET or HEAD request as the application handler sees it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]


@dataclass(frozen=True)
class Response:
    """What the application handler returns; Content-Length and encoding are added here."""

    status: int
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request], Response]


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


def _bind(host: str, port: int) -> socket.socket:
    """Listen on ``host:port``; ``::`` listens dual-stack where possible (like Go)."""
    if host == "::" and socket.has_dualstack_ipv6():
        return socket.create_server(
            (host, port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=128
        )
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    infos.sort(key=lambda info: info[0] != socket.AF_INET)  # IPv4 first for names, as Go
    error: OSError = OSError(errno.EADDRNOTAVAIL, f"no address for {host!r}")
    for family, _, _, _, address in infos:
        try:
            return socket.create_server(address[:2], family=family, backlog=128)
        except OSError as exc:
            error = exc
    raise error


def _accepts_gzip(accept_encoding: str | None) -> bool:
    """Does an Accept-Encoding header allow gzip (explicitly or via ``*``) with q > 0?"""
    if not accept_encoding:
        return False
    gzip_q: float | None = None
    star_q: float | None = None
    for item in accept_encoding.split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        coding = coding.lower()
        if coding in ("gzip", "x-gzip"):
            gzip_q = q
        elif coding == "*":
            star_q = q
    if gzip_q is not None:
        return gzip_q > 0
    return star_q is not None and star_q > 0


def _split_target(target: str) -> tuple[str, dict[str, list[str]]] | None:
    """Request target -> (percent-decoded path, query); None if it is not a path or URL."""
    if target.lower().startswith(("http://", "https://")):
        parts = urllib.parse.urlsplit(target)
        raw_path, query = parts.path or "/", parts.query
    elif target.startswith("/"):
        raw_path, _, query = target.partition("?")
        query = query.partition("#")[0]
    else:
        return None
    path = urllib.parse.unquote(raw_path, errors="replace")
    return path, urllib.parse.parse_qs(query, keep_blank_values=True, max_num_fields=1000)


def _valid_header(name: str, value: str) -> bool:
    """A token name and a one-line value that HTTP/1.1 can carry (Latin-1)."""
    if not _TOKEN_RE.fullmatch(name) or "\r" in value or "\n" in value:
        return False
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


class _Connection:
    """An accepted socket, its request deadline, and the lock that orders close vs. abort."""

    __slots__ = ("closed", "counted", "deadline", "lock", "peer", "served", "sock", "thread")

    def __init__(self, sock: socket.socket, peer: Any, deadline: float, counted: bool) -> None:
        self.sock = sock
        self.peer = peer
        self.deadline: float | None = deadline
        self.counted = counted
        self.lock = threading.Lock()
        self.closed = False
        self.served = False  # has completed a request: a real client, between requests
        self.thread: threading.Thread | None = None

    @property
    def peer_text(self) -> str:
        if isinstance(self.peer, tuple) and len(self.peer) >= 2:
            host, port = self.peer[0], self.peer[1]
            return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
        return str(self.peer)

    def wrap_tls(self, ctx: ssl.SSLContext) -> ssl.SSLSocket | None:
        with self.lock:
            if self.closed:
                return None
            tls = ctx.wrap_socket(self.sock, server_side=True, do_handshake_on_connect=False)
            self.sock = tls
            return tls

    def abort(self) -> None:
        """Wake up a thread blocked on this socket (from another thread)."""
        with self.lock:
            if not self.closed:
                # The plain-socket method: SSLSocket.shutdown would drop its SSL state
                # under the feet of the thread that is using it.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(self.sock, socket.SHUT_RDWR)

    def close(self) -> None:
        with self.lock:
            if not self.closed:
                self.closed = True
                with contextlib.suppress(OSError):
                    self.sock.close()


class _TLSContexts:
    """Hands out the SSLContext, rebuilt when certificate, key or CA files change."""

    def __init__(self, web_config: WebConfig) -> None:
        self._config = web_config
        self._lock = threading.Lock()
        self._signature = self._stat()
        context = web_config.ssl_context()
        assert context is not None  # only built when web_config.tls is set
        self._context = context

    def _stat(self) -> tuple[tuple[str, int, int, int], ...]:
        result = []
        for path in self._config.tls_files:
            try:
                st = os.stat(path)
                result.append((path, st.st_ino, st.st_mtime_ns, st.st_size))
            except OSError:
                result.append((path, -1, -1, -1))
        return tuple(result)

    def get(self) -> ssl.SSLContext:
        signature = self._stat()
        with self._lock:
            if signature != self._signature:
                self._signature = signature
                try:
                    context = self._config.ssl_context()
                except WebConfigError as exc:
                    log.warning("TLS files changed but cannot be loaded, keeping the old: %s", exc)
                else:
                    if context is not None:
                        self._context = context
                        log.info("TLS certificate files changed; reloaded")
            return self._context


@dataclass
class _Counters:
    active: int = 0
    rejecting: int = 0
    conns: set[_Connection] = field(default_factory=set)
    next_wake: float = float("inf")


class ExporterHTTPServer:
    """Serves ``handler`` on ``listen`` (see :func:`parse_listen_address`).

    The socket is bound in the constructor (OSError if that fails; WebConfigError if the
    TLS files cannot be loaded), so ``server_address`` holds the real port before
    :meth:`start`. :meth:`shutdown` returns in under a second even with stalled clients.
    """

    def __init__(
        self,
        listen: str,
        handler: Handler,
        web_config: WebConfig | None = None,
        *,
        request_timeout: float = 10.0,
        max_connections: int = 64,
    ) -> None:
        if request_timeout <= 0:
            raise ValueError("request_timeout must be positive")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.handler = handler
        self.web_config = web_config
        self.request_timeout = float(request_timeout)
        self.max_connections = max_connections
        self.extra_headers: tuple[tuple[str, str], ...] = web_config.headers if web_config else ()
        self._tls = _TLSContexts(web_config) if web_config is not None and web_config.tls else None
        self._state = _Counters()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_limit_warning = -_LIMIT_WARNING_INTERVAL
        self._reject_response = self._build_reject_response()

        self._listener = _bind(*parse_listen_address(listen))
        try:
            self._listener.setblocking(False)
            address = self._listener.getsockname()
            self.server_address: tuple[str, int] = (str(address[0]), int(address[1]))
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self._selector = selectors.DefaultSelector()
            self._selector.register(self._listener, selectors.EVENT_READ)
            self._selector.register(self._wake_r, selectors.EVENT_READ)
        except BaseException:
            self._listener.close()
            raise

    @property
    def tls_enabled(self) -> bool:
        """True when connections are served over HTTPS."""
        return self._tls is not None

    def start(self) -> None:
        """Serve in a background daemon thread."""
        if self._thread is not None or self._stopping.is_set():
            raise RuntimeError("server already started or shut down")
        self._thread = threading.Thread(
            target=self._accept_loop, name="p1-exporter-http-accept", daemon=True
        )
        self._thread.start()
        log.debug(
            "serving %s on %s:%d",
            "https" if self.tls_enabled else "http",
            *self.server_address,
        )

    def shutdown(self) -> None:
        """Stop accepting, abort open connections and wait (< 1 s) for their threads."""
        if self._stopping.is_set():
            return
        deadline = time.monotonic() + _SHUTDOWN_GRACE
        self._stopping.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=_SHUTDOWN_GRACE / 2)
        with self._lock:
            conns = list(self._state.conns)
        for conn in conns:
            conn.abort()
        for conn in conns:
            if conn.thread is not None and conn.thread is not threading.current_thread():
                conn.thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread is None or not self._thread.is_alive():
            self._close_sockets()

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

    # --- accept thread -------------------------------------------------------------

    def _accept_loop(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    timeout = self._reap()
                    for key, _ in self._selector.select(timeout):
                        if key.fileobj is self._wake_r:
                            self._drain_wake()
                        else:
                            self._accept_ready()
                except Exception:  # never let one bad event kill the listener
                    log.exception("unexpected error in the HTTP accept loop")
                    time.sleep(0.1)
        finally:
            self._close_sockets()

    def _close_sockets(self) -> None:
        for closable in (self._selector, self._listener, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError, ValueError):
                closable.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (a wake-up is pending already) or closed
            self._wake_w.send(b"\0")

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _reap(self) -> float | None:
        """Abort connections past their deadline; return seconds until the next one."""
        now = time.monotonic()
        expired: list[_Connection] = []
        upcoming = float("inf")
        with self._lock:
            for conn in self._state.conns:
                if conn.deadline is None:
                    continue
                if conn.deadline <= now:
                    conn.deadline = None
                    expired.append(conn)
                else:
                    upcoming = min(upcoming, conn.deadline)
            self._state.next_wake = upcoming
        for conn in expired:
            log.debug("closing %s: no complete request in time", conn.peer_text)
            conn.abort()
        return None if upcoming == float("inf") else max(0.0, upcoming - now)

    def _set_deadline(self, conn: _Connection, deadline: float | None) -> None:
        with self._lock:
            conn.deadline = deadline
            wake = deadline is not None and deadline < self._state.next_wake
        if wake:
            self._wake()

    def _accept_ready(self) -> None:
        for _ in range(64):  # then let the reaper run
            try:
                sock, peer = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._limit_warning(f"cannot accept connections: {exc}")
                    time.sleep(0.05)
                else:
                    log.debug("accept failed: %s", exc)
                return
            self._admit(sock, peer)

    def _limit_warning(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_limit_warning >= _LIMIT_WARNING_INTERVAL:
            self._last_limit_warning = now
            log.warning("%s", message)

    def _admit(self, sock: socket.socket, peer: Any) -> None:
        now = time.monotonic()
        conn: _Connection | None = None
        target: Callable[[_Connection], None] = self._serve
        victim: _Connection | None = None
        with self._lock:
            if self._stopping.is_set():
                pass
            elif self._state.active < self.max_connections:
                self._state.active += 1
                conn = _Connection(sock, peer, now + self.request_timeout, counted=True)
            elif (
                self._state.active < self.max_connections + _REJECTERS
                and (victim := self._longest_waiting()) is not None
            ):
                # Full, but some slots only wait for a request (idle or stalled clients):
                # one of them gives way, so idle sockets cannot lock scrapers out.
                victim.deadline = None
                self._state.active += 1
                conn = _Connection(sock, peer, now + self.request_timeout, counted=True)
            elif self._state.rejecting < _REJECTERS:
                self._state.rejecting += 1
                reject_timeout = min(self.request_timeout, _REJECT_TIMEOUT)
                conn = _Connection(sock, peer, now + reject_timeout, counted=False)
                target = self._reject
            if conn is not None:
                self._state.conns.add(conn)
        if victim is not None:
            log.debug("connection limit reached: closing %s, which sent no request yet",
                      victim.peer_text)
            victim.abort()
        if conn is None:
            self._reject_now(sock)
            return
        if not conn.counted:
            self._limit_warning(f"connection limit ({self.max_connections}) reached, answering 503")
        thread = threading.Thread(
            target=target, args=(conn,), name=f"p1-exporter-http {conn.peer_text}", daemon=True
        )
        conn.thread = thread
        try:
            thread.start()
        except RuntimeError as exc:  # cannot start new thread
            self._limit_warning(f"cannot start a connection thread: {exc}")
            self._finish(conn)

    def _longest_waiting(self) -> _Connection | None:
        """The counted connection that has waited longest for a request (lock held).

        Connections that never sent a request go first; a keep-alive client between two
        scrapes only when no such connection is left.
        """
        waiting = [c for c in self._state.conns if c.counted and c.deadline is not None]
        return min(waiting, key=lambda c: (c.served, c.deadline or 0.0), default=None)

    def _reject_now(self, sock: socket.socket) -> None:
        """No thread to spare: best-effort 503 without blocking (plain HTTP only)."""
        try:
            if self._tls is None:
                sock.setblocking(False)
                sock.send(self._reject_response)
        except OSError:
            pass
        finally:
            sock.close()

    def _build_reject_response(self) -> bytes:
        body = b"503 Service Unavailable: too many connections\n"
        lines = [
            "HTTP/1.1 503 Service Unavailable",
            f"Content-Type: {_TEXT}",
            f"Content-Length: {len(body)}",
            "Connection: close",
            "Retry-After: 1",
            *(f"{name}: {value}" for name, value in self.extra_headers),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    # --- connection threads ------------------------------------------------------------

    def _finish(self, conn: _Connection) -> None:
        conn.close()
        with self._lock:
            self._state.conns.discard(conn)
            if conn.counted:
                self._state.active -= 1
            else:
                self._state.rejecting -= 1

    def _handshake(self, conn: _Connection) -> bool:
        """TLS handshake (and client SAN check) in the connection thread."""
        if self._tls is None:
            return True
        tls = conn.wrap_tls(self._tls.get())
        if tls is None:
            return False
        tls.do_handshake()
        assert self.web_config is not None
        if not self.web_config.client_cert_allowed(tls.getpeercert()):
            log.debug("closing %s: client certificate SAN not allowed", conn.peer_text)
            return False
        return True

    def _serve(self, conn: _Connection) -> None:
        try:
            conn.sock.settimeout(self.request_timeout)
            if self._handshake(conn):
                _ConnectionHandler(conn, self).run()
                self._linger(conn, min(self.request_timeout, _LINGER))
        except (OSError, ValueError) as exc:  # includes ssl.SSLError and TimeoutError
            log.debug("connection %s ended: %s", conn.peer_text, exc)
        except Exception:
            log.exception("unexpected error serving %s", conn.peer_text)
        finally:
            self._finish(conn)

    def _linger(self, conn: _Connection, seconds: float) -> None:
        """Half-close, then discard input until EOF or ``seconds`` pass.

        Closing a socket with unread input makes the kernel send a reset, which can destroy
        our last response before the client reads it (e.g. after 431 or 503). Reads the raw
        socket, so for TLS the bytes are discarded undecrypted.
        """
        if self._stopping.is_set():
            return
        sock = conn.sock
        end = time.monotonic() + seconds
        received = 0
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_WR)
            while received < 65536:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    break
                sock.settimeout(remaining)
                chunk = socket.socket.recv(sock, 4096)
                if not chunk:
                    break
                received += len(chunk)

    def _reject(self, conn: _Connection) -> None:
        """Answer 503 to a connection over the limit, then linger briefly and close."""
        try:
            conn.sock.settimeout(min(self.request_timeout, _REJECT_TIMEOUT))
            if not self._handshake(conn):
                return
            conn.sock.sendall(self._reject_response)
            self._linger(conn, min(self.request_timeout, _REJECT_TIMEOUT))
        except (OSError, ValueError) as exc:
            log.debug("503 to %s: %s", conn.peer_text, exc)
        except Exception:
            log.exception("unexpected error rejecting %s", conn.peer_text)
        finally:
            self._finish(conn)


class _ConnectionHandler(http.server.BaseHTTPRequestHandler):
    """http.server's request parsing, with our dispatch, limits, logging and no banner."""

    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # answer unparseable lines with a real status line
    disable_nagle_algorithm = True

    def __init__(self, conn: _Connection, server: ExporterHTTPServer) -> None:
        # Deliberately not BaseRequestHandler.__init__, which wants a socketserver server
        # and runs the connection from the constructor; run() does that here.
        self.request = conn.sock
        self.client_address = conn.peer
        self._conn = conn
        self._owner = server

    def run(self) -> None:
        self.setup()
        try:
            self.handle()
        finally:
            self.finish()

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self._owner.request_timeout)

    def handle_one_request(self) -> None:
        owner = self._owner
        self.close_connection = True
        if owner._stopping.is_set():
            return
        owner._set_deadline(self._conn, time.monotonic() + owner.request_timeout)
        self.command = ""
        self.requestline = ""
        self.request_version = self.default_request_version
        try:
            self.raw_requestline = self.rfile.readline(_MAX_REQUEST_LINE + 1)
            if not self.raw_requestline:
                return
            if len(self.raw_requestline) > _MAX_REQUEST_LINE:
                self.requestline = ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return
            if not self.parse_request():
                return  # parse_request has answered (400, 431, 505) if there was a request
        except TimeoutError:
            log.debug("%s: timed out reading the request", self._conn.peer_text)
            return
        owner._set_deadline(self._conn, None)
        self._conn.served = True
        self._dispatch()
        self.wfile.flush()

    def _dispatch(self) -> None:
        owner = self._owner
        method = self.command
        head = method == "HEAD"
        if method not in ("GET", "HEAD"):
            self.close_connection = True  # any request body stays unread
            self._write(
                HTTPStatus.METHOD_NOT_ALLOWED,
                b"405 Method Not Allowed\n",
                _TEXT,
                (("Allow", "GET, HEAD"),),
                head=False,
            )
            return
        length = (self.headers.get("Content-Length") or "0").strip()
        if length != "0" or "Transfer-Encoding" in self.headers:
            self.close_connection = True  # a GET with a body: do not parse it as a request
        try:
            target = _split_target(self.path)
        except ValueError:  # more than max_num_fields query parameters
            target = None
        if target is None:
            self.send_error(HTTPStatus.BAD_REQUEST)
            return
        config = owner.web_config
        if (
            config is not None
            and config.auth_required
            and not config.check_basic_auth(self.headers.get("Authorization"))
        ):
            self._write(
                HTTPStatus.UNAUTHORIZED,
                b"401 Unauthorized\n",
                _TEXT,
                (("WWW-Authenticate", 'Basic realm="p1-exporter"'),),
                head=head,
            )
            return
        request = Request(
            method=method,
            path=target[0],
            query=target[1],
            headers=Headers((name, str(value)) for name, value in self.headers.items()),
        )
        try:
            response = owner.handler(request)
            if not isinstance(response, Response) or not isinstance(response.body, bytes):
                raise TypeError(f"handler returned {type(response).__name__}, not Response")
            if not 100 <= response.status <= 599 or not all(
                _valid_header(n, v)
                for n, v in (*response.headers, ("Content-Type", response.content_type))
            ):
                raise ValueError("handler returned an invalid status or header")
        except Exception as exc:
            log.error(
                "handler failed for %s %s: %s: %s", method, request.path, type(exc).__name__, exc
            )
            log.debug("handler traceback", exc_info=True)
            response = Response(500, b"500 Internal Server Error\n", _TEXT)
        self._write(
            response.status,
            response.body,
            response.content_type,
            response.headers,
            head=head,
            compressible=True,
        )

    def _write(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: tuple[tuple[str, str], ...],
        *,
        head: bool,
        compressible: bool = False,
    ) -> None:
        names = {name.lower() for name, _ in headers}
        extra = list(headers)
        if compressible and len(body) > GZIP_MIN_BYTES and "content-encoding" not in names:
            extra.append(("Vary", "Accept-Encoding"))
            if _accepts_gzip(self.headers.get("Accept-Encoding")):
                body = gzip.compress(body, compresslevel=6, mtime=0)
                extra.append(("Content-Encoding", "gzip"))
        self.send_response_only(status)
        self.send_header("Date", self.date_time_string())
        self.send_header("Content-Type", content_type)
        for name, value in self._owner.extra_headers:
            if name.lower() not in names:
                self.send_header(name, value)
        for name, value in extra:
            if name.lower() not in ("content-length", "connection", "date", "content-type"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body and not head:
            self.wfile.write(body)
        log.debug("%s %r %d %d", self._conn.peer_text, self.requestline[:200], status, len(body))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Short plain-text error without echoing the request; always closes."""
        log.debug("%s: %d %s %r", self._conn.peer_text, code, message or "", self.requestline[:200])
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = ""
        self._write(code, f"{code} {phrase}\n".encode(), _TEXT, (), head=self.command == "HEAD")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s: %s", self._conn.peer_text, format % args)
