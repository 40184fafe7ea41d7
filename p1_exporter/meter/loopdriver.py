"""The event-loop driver: ``socket://``, ``http://`` and ``sim://`` meters as coroutines.

A thousand network meters cost a thousand sockets and small objects on one asyncio loop,
not a thousand threads. Nothing polls: a TCP meter's bytes are fed to its
:class:`~p1_exporter.meter.engine.MeterEngine` as they arrive (``data_received``), and each
meter sleeps until its engine's next deadline (silence, line noise), its next HTTP poll or
its next simulated telegram. Every HTTP poll has one deadline for the whole exchange, so a
device that drips a byte a second cannot hold it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import ssl
import time
import urllib.parse
from collections.abc import Callable

from p1_exporter.meter.engine import MeterConfig, MeterEngine
from p1_exporter.meter.link import LinkAction
from p1_exporter.meter.sim_builds import SIM_BUILDER
from p1_exporter.meter.snapshot import Snapshot
from p1_exporter.meter.sources.address import check_address
from p1_exporter.meter.sources.base import DSMR45, SourceError, redact
from p1_exporter.meter.sources.sim import SimSource

#: Addresses this driver serves; everything else (serial ports, rfc2217://, file:) has a thread.
LOOP_SCHEMES = ("socket://", "http://", "https://", "sim://")

#: Seconds a TCP connect may take (pyserial's socket:// waits as long).
CONNECT_TIMEOUT = 5.0
#: Seconds one whole HTTP poll may take: connect, request, head and body.
HTTP_TIMEOUT = 5.0
#: The most an HTTP answer's head and body may hold (a telegram is a few KB).
HTTP_MAX_HEAD = 16 * 1024
HTTP_MAX_BODY = 64 * 1024
_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})(?: |$)")


def loop_driven(url: str) -> bool:
    """True when the meter at ``url`` runs on the event loop (no thread of its own)."""
    return url.startswith(LOOP_SCHEMES)


class _Alarm:
    """A sleep until a deadline that :meth:`ring` (from the loop) can end early."""

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None
        #: The loop time the current sleep ends at (inf when nobody sleeps).
        self.at = math.inf

    async def sleep(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._future = future
        delay = max(0.0, delay)
        self.at = loop.time() + delay
        handle = loop.call_later(delay, _settle, future)
        try:
            await future
        finally:
            handle.cancel()
            self._future = None
            self.at = math.inf

    def ring(self) -> None:
        """End the current sleep now (a no-op when nobody sleeps)."""
        if self._future is not None:
            _settle(self._future)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Feed(asyncio.Protocol):
    """Hands a TCP meter's bytes to its driver the moment they arrive."""

    def __init__(self, meter: LoopMeter) -> None:
        self.meter = meter

    def data_received(self, data: bytes) -> None:
        self.meter._received(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.meter._lost(self, exc)


class LoopMeter:
    """One meter driven by the event loop; ``snapshot`` is always safe to read.

    :meth:`run` is its coroutine (cancel the task to stop it). ``clock`` is the monotonic
    clock of the engine's deadlines (a test passes one it can advance, then calls
    :meth:`wake`). Raises ValueError for an address it cannot serve.
    """

    def __init__(
        self,
        config: MeterConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        connect_timeout: float = CONNECT_TIMEOUT,
        http_timeout: float = HTTP_TIMEOUT,
        on_telegram: Callable[[Snapshot], None] | None = None,
    ) -> None:
        url = config.url
        if not loop_driven(url):
            raise ValueError(f"{url}: not a socket://, http:// or sim:// address")
        check_address(url)
        self.config = config
        self.url = url
        self.clock = clock
        self.connect_timeout = connect_timeout
        self.http_timeout = http_timeout
        self._sim = SimSource(url) if url.startswith("sim://") else None
        self.description = url if self._sim else redact(url)
        parts = urllib.parse.urlsplit(url)
        self._host = parts.hostname or ""
        self._port = parts.port or 0  # check_address: socket:// has one
        self._settings = str(config.settings or DSMR45) if url.startswith("socket://") else None
        self.engine = MeterEngine(
            config, self.description, settings=self._settings, clock=clock, on_telegram=on_telegram
        )
        self._alarm = _Alarm()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._transport: asyncio.Transport | None = None
        self._protocol: _Feed | None = None
        self._failure: SourceError | None = None
        self._last_body = b""  # an HTTP body survives reconnects (see HttpSource)

    # -- public surface -------------------------------------------------------------------
    @property
    def snapshot(self) -> Snapshot:
        """The latest published state (an immutable object; no lock needed)."""
        return self.engine.snapshot

    @property
    def alive(self) -> bool:
        """True while the meter's task runs."""
        return self._task is not None and not self._task.done()

    def wake(self) -> None:
        """Look at the clock now (thread-safe): a test that moved its clock on calls this."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(self._alarm.ring)

    async def run(self) -> None:
        """Read the meter until cancelled: sessions, failures, backoff."""
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        engine = self.engine
        while True:
            try:
                await self._session()
            except SourceError as exc:
                engine.failure(exc.kind, str(exc))
            except Exception as exc:  # the meter must survive anything
                engine.unexpected(exc)
            finally:
                self._close()
                engine.disconnected()
            await self._alarm.sleep(engine.reconnect_delay())

    # -- sessions -------------------------------------------------------------------------
    async def _session(self) -> None:
        if self._sim is not None:
            await self._sim_session(self._sim)
        elif self.url.startswith("socket://"):
            await self._socket_session()
        else:
            await self._http_session()

    def _check(self, now: float) -> None:
        if self.engine.check(now) is LinkAction.SILENT:
            raise self.engine.silent_error()

    async def _socket_session(self) -> None:
        loop = asyncio.get_running_loop()
        protocol = _Feed(self)
        self._protocol, self._failure = protocol, None
        try:
            transport, _ = await asyncio.wait_for(
                loop.create_connection(lambda: protocol, self._host, self._port),
                self.connect_timeout,
            )
        except ConnectionRefusedError:
            raise SourceError(
                "refused",
                f"connection to {self.description} refused; is the "
                "dongle or ser2net running and listening on that port?",
            ) from None
        except asyncio.TimeoutError:
            raise SourceError(
                "open_failed",
                f"cannot open {self.description}: no answer within {self.connect_timeout:g} s",
            ) from None
        except OSError as exc:
            raise SourceError(
                "open_failed", f"cannot open {self.description}: {exc.strerror or exc}"
            ) from None
        self._transport = transport
        engine = self.engine
        engine.connected(self.clock(), self._settings)
        while True:
            await self._alarm.sleep(engine.wake_at() - self.clock())
            if self._failure is not None:
                raise self._failure
            self._check(self.clock())

    def _received(self, protocol: _Feed, data: bytes) -> None:
        if protocol is not self._protocol:
            return
        engine = self.engine
        now = self.clock()
        engine.feed(data, now)
        self._check_soon(now)

    def _check_soon(self, now: float) -> None:
        """Tick the engine's log windows; wake the session if a deadline came nearer."""
        engine = self.engine
        engine.check(now)  # never SILENT right after bytes
        loop = self._loop
        if loop is not None and engine.wake_at() - now < self._alarm.at - loop.time():
            self._alarm.ring()

    def _lost(self, protocol: _Feed, exc: Exception | None) -> None:
        if protocol is not self._protocol:
            return
        reason = exc or "connection closed by the dongle"
        self._failure = SourceError("disconnected", f"{self.description} disconnected: {reason}")
        self._alarm.ring()

    async def _http_session(self) -> None:
        engine = self.engine
        engine.connected(self.clock(), None)
        next_poll = self.clock()
        while True:
            now = self.clock()
            if now >= next_poll:
                next_poll = now + self.config.poll_interval
                body = await self._poll()
                now = self.clock()
                if body != self._last_body:  # else: still the telegram we have
                    self._last_body = body
                    engine.feed(body if body.endswith(b"\n") else body + b"\r\n", now)
            self._check(now)
            await self._alarm.sleep(min(next_poll, engine.wake_at()) - self.clock())

    async def _poll(self) -> bytes:
        """One GET of the telegram URL, within ``http_timeout`` from connect to last byte."""
        try:
            return await asyncio.wait_for(self._get(), self.http_timeout)
        except asyncio.TimeoutError:
            raise SourceError(
                "http",
                f"cannot poll {self.description}: no complete answer "
                f"within {self.http_timeout:g} s",
            ) from None
        except ConnectionRefusedError:
            raise SourceError(
                "refused", f"cannot poll {self.description}: connection refused"
            ) from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            raise SourceError(
                "http", f"cannot poll {self.description}: {exc.__class__.__name__}: {exc}"
            ) from None

    async def _get(self) -> bytes:
        parts = urllib.parse.urlsplit(self.url)
        tls = parts.scheme == "https"
        port = self._port or (443 if tls else 80)
        reader, writer = await asyncio.open_connection(
            self._host, port, ssl=ssl.create_default_context() if tls else None, limit=HTTP_MAX_HEAD
        )
        try:
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            host = parts.hostname or ""
            host = f"[{host}]" if ":" in host else host
            if parts.port:
                host += f":{parts.port}"
            writer.write(
                f"GET {target} HTTP/1.0\r\nHost: {host}\r\n"
                "Accept: text/plain, */*\r\nUser-Agent: p1-exporter\r\n"
                "Connection: close\r\n\r\n".encode("ascii", "replace")
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, _, header_block = head.partition(b"\r\n")
            match = _STATUS.match(status_line)
            if match is None:
                raise SourceError("http", f"{self.description} did not answer HTTP/1.x")
            code = int(match[1])
            if not 200 <= code < 300:
                raise SourceError("http", f"{self.description} answered HTTP {code}")
            lengths = {
                value.strip()
                for name, _, value in (line.partition(b":") for line in header_block.split(b"\r\n"))
                if name.strip().lower() == b"content-length"
            }
            if len(lengths) > 1 or not all(v.isdigit() for v in lengths):
                raise SourceError("http", f"{self.description} sent a bad Content-Length")
            limit = min(HTTP_MAX_BODY, int(next(iter(lengths)))) if lengths else HTTP_MAX_BODY
            body = b""
            while len(body) < limit:
                chunk = await reader.read(limit - len(body))
                if not chunk:
                    break
                body += chunk
            return body
        finally:
            writer.close()

    async def _sim_session(self, sim: SimSource) -> None:
        engine = self.engine
        await SIM_BUILDER.build(sim)  # building the household costs CPU: off the loop
        sim.open()
        engine.connected(self.clock(), None)
        while True:
            data = sim.take(time.monotonic())
            now = self.clock()
            if data:
                engine.feed(data, now)
            self._check(now)
            if not data:
                due = sim.next_due() - time.monotonic()
                await self._alarm.sleep(min(due, engine.wake_at() - self.clock()))

    def _close(self) -> None:
        transport, self._transport = self._transport, None
        self._protocol = None
        if transport is not None:
            transport.abort()  # nothing to send: no need to linger
        if self._sim is not None:
            self._sim.close()
