"""The immutable state one meter reader publishes, read by scrapes without locks."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from p1_exporter.core.errors import RESULTS, Result
from p1_exporter.core.telegram import Telegram

__all__ = ["RESULTS", "Snapshot"]  # RESULTS: the telegram outcomes counted per meter


def _zero_counts() -> Mapping[Result, int]:
    return MappingProxyType(dict.fromkeys(RESULTS, 0))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a reader knows about its meter at one moment.

    ``telegram`` is the latest validated telegram (with glitched registers
    removed); ``received_at`` is its wall-clock arrival, ``received_monotonic``
    the same moment on the monotonic clock, which decides staleness.
    """

    name: str
    source: str
    stale_after: float
    telegram: Telegram | None = None
    received_at: float | None = None
    received_monotonic: float | None = None
    telegrams: Mapping[Result, int] = field(default_factory=_zero_counts)
    bytes_read: int = 0
    garbage_bytes: int = 0
    connects: int = 0
    glitches: int = 0
    unknown_lines: int = 0
    malformed_lines: int = 0
    source_errors: int = 0
    connected: bool = False
    settings: str | None = None
    last_error: str | None = None
    diagnostics: tuple[str, ...] = ()  # link problems in force now, in plain words

    def age(self, now_monotonic: float | None = None) -> float | None:
        """Seconds since the last validated telegram, or None if there never was one."""
        if self.received_monotonic is None:
            return None
        now = time.monotonic() if now_monotonic is None else now_monotonic
        return max(0.0, now - self.received_monotonic)

    def fresh(self, now_monotonic: float | None = None) -> bool:
        """True while the last validated telegram is younger than ``stale_after``."""
        age = self.age(now_monotonic)
        return age is not None and age < self.stale_after

    def current_telegram(self, now_monotonic: float | None = None) -> Telegram | None:
        """The latest telegram while it is fresh; None once it is stale."""
        return self.telegram if self.fresh(now_monotonic) else None
