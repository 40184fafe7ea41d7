"""The web config in force: re-read when its file changes on disk, or on SIGHUP.

A request asks :meth:`WebConfigSource.current`, which looks at the file's inode, mtime
and size at most once a second (no timer: an idle exporter looks at nothing), so a user
removed from ``basic_auth_users`` is refused within a second of the file changing. A new
file that does not load keeps the last good config and is reported once per version of
the file. Switching TLS on or off needs a restart (the listening port would change
meaning) and is reported the same way.
"""

from __future__ import annotations

import logging
import os
import time

from p1_exporter.web.webconfig import WebConfig, WebConfigError

__all__ = ["CHECK_INTERVAL", "WebConfigSource"]

log = logging.getLogger("p1_exporter.http")

CHECK_INTERVAL = 1.0
"""Seconds between two looks at the web config file."""

_Signature = tuple[int, int, int] | None


def _signature(path: str) -> _Signature:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class WebConfigSource:
    """Holds the web config and reloads it from ``path`` (None: a fixed config)."""

    def __init__(self, config: WebConfig | None, path: str | None = None) -> None:
        self._config = config
        self._path = path
        self._signature = _signature(path) if path else None
        self._checked = time.monotonic()
        self._reported: _Signature = None
        self.reloads = 0  # successful reloads, for tests and logs

    @classmethod
    def load(cls, path: str) -> WebConfigSource:
        """Read ``path`` now (raises WebConfigError) and follow it from then on."""
        return cls(WebConfig.load(path), path)

    @property
    def path(self) -> str | None:
        return self._path

    def current(self) -> WebConfig | None:
        """The config in force, after a look at the file if a second has passed."""
        if self._path is not None:
            now = time.monotonic()
            if now - self._checked >= CHECK_INTERVAL:
                self._checked = now
                signature = _signature(self._path)
                if signature != self._signature:
                    self._signature = signature
                    self._reload(signature, forced=False)
        return self._config

    def reload(self) -> None:
        """Re-read the file now, changed or not (SIGHUP)."""
        if self._path is None:
            log.info("received SIGHUP; no --web.config.file to reload")
            return
        self._checked = time.monotonic()
        self._signature = _signature(self._path)
        self._reload(self._signature, forced=True)

    def _reload(self, signature: _Signature, *, forced: bool) -> None:
        assert self._path is not None
        old = self._config
        try:
            new = WebConfig.load(self._path)
            if old is not None and (new.tls is None) != (old.tls is None):
                raise WebConfigError(f"{self._path}: switching TLS on or off needs a restart")
        except WebConfigError as exc:
            if forced or signature != self._reported:
                self._reported = signature
                log.error("web config not reloaded, keeping the last good one: %s", exc)
            return
        self._reported = None
        if old is not None:
            new.auth.adopt(old.auth)
        self._config = new
        self.reloads += 1
        log.info(
            "web config %s reloaded (%d basic-auth users)", self._path, len(new.basic_auth_users)
        )
