"""Basic auth that cannot be turned against the owner: remembered results, a bcrypt pool.

* A credential that passed once is remembered as an HMAC-SHA-256 digest (random
  per-process key) and compared in constant time, so a scraper that presents the same
  header every 15 s pays bcrypt once.
* A credential that failed is remembered too (a bounded set of digests), so replaying one
  wrong password costs nothing.
* Every other check runs bcrypt in :class:`BcryptPool`: a few worker threads and a short
  queue. Unknown credentials wait among themselves there; a request whose credentials are
  already known never waits for the pool. When the queue is full the answer is "busy"
  (the server replies 503), never a guess.
* :class:`AuthFailures` counts failures for ``p1_exporter_http_auth_failures_total`` and
  logs them as one line per minute with a count, not a line each.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import queue
import secrets
import threading
from collections import Counter, OrderedDict
from collections.abc import Mapping
from typing import Literal

import bcrypt

__all__ = ["AuthFailures", "BasicAuth", "BcryptPool", "Outcome", "parse_basic"]

log = logging.getLogger("p1_exporter.http")

Outcome = Literal["ok", "missing", "invalid", "busy"]
"""ok; missing (no or malformed Basic credentials); invalid (wrong); busy (pool full)."""

BCRYPT_MAX_PASSWORD = 72
_REMEMBERED_FAILURES = 4096


def parse_basic(header: str | None) -> tuple[str, bytes] | None:
    """``Basic base64(user:password)`` -> (user, password bytes), or None if malformed."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user_bytes, colon, password = raw.partition(b":")
    if not colon:
        return None
    try:
        user = user_bytes.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return user, password


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password[:BCRYPT_MAX_PASSWORD], hashed)
    except ValueError:
        return False


class BcryptPool:
    """``workers`` daemon threads running bcrypt, fed by a queue of at most ``queue_size``.

    Daemon threads, so a check in progress never delays the process's exit; bcrypt
    releases the GIL, so the event loop keeps running beside them.
    """

    def __init__(self, workers: int = 1, queue_size: int = 16) -> None:
        if workers < 1 or queue_size < 1:
            raise ValueError("workers and queue_size must be at least 1")
        self.workers = workers
        self._queue: queue.Queue[tuple[bytes, bytes, asyncio.Future[bool]]] = queue.Queue(
            queue_size
        )
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def submit(self, password: bytes, hashed: bytes) -> asyncio.Future[bool] | None:
        """Queue one check (call on the event loop); None when the queue is full."""
        self._start()
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((password, hashed, future))
        except queue.Full:
            return None
        return future

    def _start(self) -> None:
        with self._lock:
            while len(self._threads) < self.workers:
                thread = threading.Thread(
                    target=self._work, daemon=True, name=f"p1-exporter-bcrypt-{len(self._threads)}"
                )
                thread.start()
                self._threads.append(thread)

    def _work(self) -> None:
        while True:
            password, hashed, future = self._queue.get()
            if future.cancelled():
                continue
            ok = _checkpw(password, hashed)
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                future.get_loop().call_soon_threadsafe(_settle, future, ok)


def _settle(future: asyncio.Future[bool], ok: bool) -> None:
    if not future.done():
        future.set_result(ok)


class BasicAuth:
    """Checks ``Authorization`` headers against ``basic_auth_users`` (user -> bcrypt hash)."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = {user: hashed.encode("ascii") for user, hashed in users.items()}
        # Unknown users are checked against the most expensive configured hash, so they
        # take as long as a known user and cannot be told apart by timing.
        self._dummy = max(self._users.values(), key=lambda h: int(h[4:6]), default=b"")
        self._key = secrets.token_bytes(32)
        self._ok: dict[str, bytes] = {}
        self._failed: OrderedDict[bytes, None] = OrderedDict()
        self._pending: dict[bytes, asyncio.Future[bool]] = {}
        self._lock = threading.Lock()  # check_sync may run in any thread

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    def adopt(self, old: BasicAuth) -> None:
        """Keep ``old``'s remembered credentials for users whose hash did not change."""
        with old._lock:
            remembered = dict(old._ok)
        with self._lock:
            self._key = old._key
            self._ok = {
                user: digest
                for user, digest in remembered.items()
                if user in self._users and old._users.get(user) == self._users[user]
            }

    def _digest(self, user: str, password: bytes) -> bytes:
        return hmac.new(self._key, user.encode() + b"\0" + password, hashlib.sha256).digest()

    def _known(self, user: str, digest: bytes) -> bool | None:
        """True/False if this credential was decided before, else None."""
        with self._lock:
            cached = self._ok.get(user)
            if cached is not None and hmac.compare_digest(cached, digest):
                return True
            if digest in self._failed:
                return False
        return None

    def _remember(self, user: str, digest: bytes, ok: bool) -> None:
        with self._lock:
            if ok:
                self._ok[user] = digest
            else:
                self._failed[digest] = None
                while len(self._failed) > _REMEMBERED_FAILURES:
                    self._failed.popitem(last=False)

    def check_sync(self, authorization: str | None) -> bool:
        """Check in the calling thread (bcrypt included); True when auth is off."""
        if not self._users:
            return True
        parsed = parse_basic(authorization)
        if parsed is None:
            return False
        user, password = parsed
        digest = self._digest(user, password)
        known = self._known(user, digest)
        if known is not None:
            return known
        hashed = self._users.get(user)
        ok = _checkpw(password, hashed or self._dummy) and hashed is not None
        self._remember(user, digest, ok)
        return ok

    async def check(self, authorization: str | None, pool: BcryptPool) -> Outcome:
        """Check on the event loop: known credentials at once, others through ``pool``."""
        if not self._users:
            return "ok"
        parsed = parse_basic(authorization)
        if parsed is None:
            return "missing"
        user, password = parsed
        digest = self._digest(user, password)
        known = self._known(user, digest)
        if known is not None:
            return "ok" if known else "invalid"
        future = self._pending.get(digest)
        if future is None:
            hashed = self._users.get(user)
            submitted = pool.submit(password, hashed or self._dummy)
            if submitted is None:
                return "busy"
            future = submitted
            self._pending[digest] = future
            known_user = hashed is not None

            def done(f: asyncio.Future[bool]) -> None:
                self._pending.pop(digest, None)
                if not f.cancelled():
                    self._remember(user, digest, known_user and f.result())

            future.add_done_callback(done)
        # Shielded: a client that gives up does not cancel the check others wait for.
        ok = await asyncio.shield(future)
        return "ok" if ok and user in self._users else "invalid"


class AuthFailures:
    """Counts failed authentications and logs them once per ``interval`` with a count."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self.totals: Counter[str] = Counter()  # outcome -> count, since start
        self._window: Counter[str] = Counter()
        self._clients: Counter[str] = Counter()
        self._flush: asyncio.TimerHandle | None = None
        self._window_start = 0.0

    def add(self, outcome: Outcome, client: str) -> None:
        """Count one failure (call on the event loop); the first in a window arms the log."""
        self.totals[outcome] += 1
        self._window[outcome] += 1
        self._clients[client] += 1
        if self._flush is None:
            loop = asyncio.get_running_loop()
            self._window_start = loop.time()
            self._flush = loop.call_later(self.interval, self.flush)

    def flush(self) -> None:
        """Log the window's count (if any) and start a new window."""
        self._flush = None
        count = sum(self._window.values())
        if not count:
            return
        seconds = min(self.interval, asyncio.get_running_loop().time() - self._window_start)
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self._window.items()))
        top, top_count = self._clients.most_common(1)[0]
        log.warning(
            "%d failed basic-auth requests in the last %.0f s (%s) from %d client"
            " address(es), most from %s (%d)",
            count,
            seconds,
            kinds,
            len(self._clients),
            top,
            top_count,
        )
        self._window.clear()
        self._clients.clear()

    def close(self) -> None:
        """Log what is pending now (at shutdown)."""
        if self._flush is not None:
            self._flush.cancel()
            self.flush()
