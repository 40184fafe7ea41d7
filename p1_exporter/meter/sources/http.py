"""HTTP meters: a device that serves the latest raw telegram at a URL, polled."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

from p1_exporter.meter.sources.base import CancellablePause, SourceError, SourceErrorKind, redact


class HttpSource(CancellablePause):
    """Polls a URL that serves the meter's latest raw telegram (HomeWizard, DSMR-logger)."""

    def __init__(self, url: str, poll_interval: float = 1.0, timeout: float = 5.0) -> None:
        super().__init__()
        self.url = url
        self.description = redact(url)
        self.poll_interval = poll_interval
        self.timeout = timeout
        self._next_poll = 0.0
        self._last_body = b""

    def open(self) -> None:
        # _last_body survives reconnects: a device that keeps serving one old telegram
        # must not have it counted (and made fresh) again after every silence timeout.
        self._next_poll = 0.0

    def read(self, timeout: float) -> bytes:
        now = time.monotonic()
        if now < self._next_poll:
            self._pause(min(timeout, self._next_poll - now))
            return b""
        self._next_poll = now + self.poll_interval
        request = urllib.request.Request(self.url, headers={"Accept": "text/plain, */*"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body: bytes = response.read(65536)
        except urllib.error.HTTPError as exc:
            raise SourceError("http", f"{self.description} answered HTTP {exc.code}") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            kind: SourceErrorKind = "refused" if "refused" in str(reason) else "http"
            raise SourceError(kind, f"cannot poll {self.description}: {reason}") from exc
        if body == self._last_body:
            return b""  # the device still serves the telegram we already have
        self._last_body = body
        if not body.endswith(b"\n"):
            body += b"\r\n"
        return body

    def close(self) -> None:
        """Nothing to release: every poll is its own request."""
