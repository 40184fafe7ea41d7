"""Log a recurring condition once, then at most once per interval with a count.

Two limits, so that no input can flood the log: each key logs at most once per
``interval``, and with a ``budget`` all keys together log at most ``budget`` lines
per ``window``; what the budget holds back is told in one summary line when the
window ends. Debug lines pass through (they are off unless asked for).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping


class LogLimiter:
    """Per-key rate limit for log lines, so a broken meter gives a line, not a flood."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 300.0,
        max_keys: int = 256,
        *,
        budget: int = 0,
        window: float = 60.0,
        subject: str = "",
        fields: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        #: Structured fields every line carries (``meter``, ``source``): logfmt/JSON keys.
        self.fields = dict(fields or {})
        self._clock = clock
        self.interval = interval
        self.max_keys = max_keys
        #: Lines (info and above) per ``window`` for all keys together; 0: no cap.
        self.budget = budget
        self.window = window
        #: Who the summary line is about ("meter main").
        self.subject = subject
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._window_start: float | None = None
        self._window_lines = 0
        self._held: Counter[str] = Counter()  # kind -> lines the budget held back

    def _extra(self, err: str | None) -> dict[str, str]:
        return {**self.fields, "err": err} if err else self.fields

    def log(self, key: str, level: int, message: str, *, err: str | None = None) -> bool:
        """Log ``message`` unless ``key`` was logged within the interval; True if logged.

        ``err`` (a source error kind, say) goes out as its own field.
        """
        now = self._clock()
        extra = self._extra(err)
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            self.logger.debug("%s", message, extra=extra)
            return False
        if level > logging.DEBUG and not self._spend(key.partition(":")[0], now):
            self.logger.debug("%s", message, extra=extra)
            return False
        if key not in self._last and len(self._last) >= self.max_keys:
            oldest = next(iter(self._last))  # insertion order: the least recently logged
            del self._last[oldest]
            self._suppressed.pop(oldest, None)
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            message += f" ({suppressed} more like this since the last report)"
        self._last.pop(key, None)
        self._last[key] = now
        self.logger.log(level, "%s", message, extra=extra)
        return True

    def budgeted(self, kind: str, level: int, message: str) -> bool:
        """Log ``message`` (already limited by its caller) within the budget only."""
        if level > logging.DEBUG and not self._spend(kind, self._clock()):
            self.logger.debug("%s", message, extra=self.fields)
            return False
        self.logger.log(level, "%s", message, extra=self.fields)
        return True

    def _spend(self, kind: str, now: float) -> bool:
        """Take one line from the window's budget; False (and counted) when it is spent."""
        if not self.budget:
            return True
        self.tick(now)
        if self._window_start is None:
            self._window_start = now
        if self._window_lines >= self.budget:
            self._held[kind] += 1
            return False
        self._window_lines += 1
        return True

    def tick(self, now: float | None = None) -> None:
        """End the budget window when it is over: one summary line if anything was held."""
        start = self._window_start
        if start is None:
            return
        now = self._clock() if now is None else now
        if now - start < self.window:
            return
        if self._held:
            total = sum(self._held.values())
            kinds = ", ".join(f"{kind} {count}" for kind, count in self._held.most_common())
            subject = f"{self.subject}: " if self.subject else ""
            self.logger.warning(
                "%s%d more log lines held back in the last %.0f s (at most %d a window): %s; "
                "the metrics count every one",
                subject,
                total,
                now - start,
                self.budget,
                kinds,
                extra=self.fields,
            )
        self._held.clear()
        self._window_start = None
        self._window_lines = 0

    def summary_due(self) -> float | None:
        """When :meth:`tick` has a summary line to write (clock time), or None."""
        if self._window_start is None or not self._held:
            return None
        return self._window_start + self.window

    def forget(self, *keys: str) -> None:
        """Re-arm keys (the condition cleared): the next occurrence is logged at once."""
        for key in keys:
            self._last.pop(key, None)
            self._suppressed.pop(key, None)

    def active(self, key: str) -> bool:
        """True while ``key`` has been logged and not forgotten."""
        return key in self._last
