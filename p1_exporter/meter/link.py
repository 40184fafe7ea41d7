"""The supervision of one meter link, shared by the exporter's reader and ``capture``.

Sans-I/O: the caller reports what happened (connected, bytes arrived, a valid telegram) with
the time from its own clock, and asks :meth:`LinkSupervisor.check` what to do now: carry on,
give up on a silent link, or try the next serial settings. :meth:`LinkSupervisor.wake_at`
says when the answer can next change, so a caller can block on its source until then instead
of polling. Because no clock is read here, tests drive it with plain numbers.
"""

from __future__ import annotations

import enum

from p1_exporter.meter.backoff import Backoff


class LinkAction(enum.Enum):
    """What the caller should do after :meth:`LinkSupervisor.check`."""

    CARRY_ON = "carry_on"
    SILENT = "silent"  # no byte for the silence timeout: close and reconnect
    NEXT_SETTINGS = "next_settings"  # bytes, but no valid telegram: try other serial settings


class LinkSupervisor:
    """Decides when a link is silent, when to switch serial settings and when to reconnect.

    ``autodetect`` is true for a serial port whose settings are not fixed: until the first
    valid telegram, every ``detect_timeout`` seconds without one asks for the next settings.
    Once a valid telegram arrived the settings are locked for good (also across reconnects).
    """

    def __init__(
        self, *, silence_timeout: float, detect_timeout: float, autodetect: bool, backoff: Backoff
    ) -> None:
        self.silence_timeout = silence_timeout
        self.detect_timeout = detect_timeout
        self.detecting = autodetect
        self.backoff = backoff
        self._last_bytes = 0.0
        self._last_valid = 0.0

    def connected(self, now: float) -> None:
        """A connection was opened at ``now``: the silence and detect clocks start again."""
        self._last_bytes = self._last_valid = now

    def bytes_arrived(self, now: float) -> None:
        """Some bytes came in (valid or not): the link is not silent."""
        self._last_bytes = now

    def valid_telegram(self, now: float) -> bool:
        """A telegram passed validation; True when this locks auto-detected settings."""
        self._last_valid = now
        self.backoff.reset()
        if self.detecting:
            self.detecting = False
            return True
        return False

    def check(self, now: float) -> LinkAction:
        """What to do at ``now``; NEXT_SETTINGS restarts the detect clock."""
        if now - self._last_bytes >= self.silence_timeout:
            return LinkAction.SILENT
        if self.detecting and now - self._last_valid >= self.detect_timeout:
            self._last_valid = now
            return LinkAction.NEXT_SETTINGS
        return LinkAction.CARRY_ON

    def wake_at(self) -> float:
        """The earliest time at which :meth:`check` can answer anything but CARRY_ON."""
        silent_at = self._last_bytes + self.silence_timeout
        if self.detecting:
            return min(silent_at, self._last_valid + self.detect_timeout)
        return silent_at

    def reconnect_delay(self) -> float:
        """How long to wait before the next connection attempt after a failure."""
        return self.backoff.next_delay()
