"""Log a recurring condition once, then at most once per interval with a count."""

from __future__ import annotations

import logging
import time


class LogLimiter:
    """Per-key rate limit for log lines, so a broken meter gives a line, not a flood."""

    def __init__(self, logger: logging.Logger, interval: float = 300.0,
                 max_keys: int = 256) -> None:
        self.logger = logger
        self.interval = interval
        self.max_keys = max_keys
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, key: str, level: int, message: str) -> bool:
        """Log ``message`` unless ``key`` was logged within the interval; True if logged."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            self.logger.debug("%s", message)
            return False
        if len(self._last) >= self.max_keys and key not in self._last:
            self._last.clear()
            self._suppressed.clear()
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            message += f" ({suppressed} more like this since the last report)"
        self._last[key] = now
        self.logger.log(level, "%s", message)
        return True

    def forget(self, *keys: str) -> None:
        """Re-arm keys (the condition cleared): the next occurrence is logged at once."""
        for key in keys:
            self._last.pop(key, None)
            self._suppressed.pop(key, None)

    def active(self, key: str) -> bool:
        """True while ``key`` has been logged and not forgotten."""
        return key in self._last
