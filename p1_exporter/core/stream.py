"""The public sans-I/O entry points: bytes in, validated telegrams out.

:class:`TelegramStream` is what readers use (feed chunks, get outcomes);
:func:`parse` decodes exactly one telegram; :func:`iter_telegrams` walks a capture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple, Protocol

from p1_exporter.core.checksum import check_frame
from p1_exporter.core.errors import CRCError, FramingError, P1Error, Result
from p1_exporter.core.framing import DEFAULT_MAX_SIZE, Framer
from p1_exporter.core.parser import MEMO_SIZE, LineMemo, parse_content
from p1_exporter.core.telegram import Telegram


class Outcome(NamedTuple):
    """One framed telegram's fate: ``telegram`` when accepted, else ``error``.

    ``raw`` is the frame as received (empty for errors raised before a frame ended).
    """

    telegram: Telegram | None
    error: P1Error | None
    raw: bytes

    @property
    def result(self) -> Result:
        """The counting label: ok, crc_error, malformed, too_large or rejected."""
        return "ok" if self.error is None else self.error.result


def decode_frame(frame: bytes, *, check_crc: bool = True, memo: LineMemo | None = None) -> Telegram:
    """Check and decode one complete frame; raise a P1Error when refused."""
    return parse_content(frame, check_frame(frame, check_crc=check_crc), memo)


class _CountsGarbage(Protocol):
    garbage_bytes: int


class ReportsNoiseAtOnce:
    """Stream plumbing for framers that report line noise as they find it (HAN, encrypted
    P1): nothing is held back, so ``noise_pending`` is 0 and ``release_noise`` is empty."""

    framer: _CountsGarbage
    noise_pending = 0

    @property
    def garbage_bytes(self) -> int:
        """Bytes the framer skipped outside any frame (line noise), for the garbage metric."""
        return self.framer.garbage_bytes

    def release_noise(self) -> list[Outcome]:
        """Nothing held back to report (see ``noise_pending``)."""
        return []


class TelegramStream:
    """Feed bytes as they arrive; get one Outcome per telegram (or per framing error)."""

    def __init__(
        self,
        *,
        check_crc: bool = True,
        max_size: int = DEFAULT_MAX_SIZE,
        memo_size: int = MEMO_SIZE,
        sticky_crc: bool = False,
    ) -> None:
        self.check_crc = check_crc
        self.framer = Framer(max_size)
        #: Remembers recently decoded lines in at most ``memo_size`` bytes (0 turns it off);
        #: see parser.LineMemo.
        self.memo = LineMemo(memo_size)
        #: With ``sticky_crc`` (one meter's stream), once a telegram with a valid CRC was
        #: accepted, one without a CRC is refused: a meter signs all its telegrams or none,
        #: so an unsigned one is damage that happens to end in "!" (the version line that
        #: would demand a CRC may be damaged too, or the meter may send none).
        self.sticky_crc = sticky_crc
        self.signed = False

    @property
    def garbage_bytes(self) -> int:
        """Bytes the framer skipped outside any frame (line noise), for the garbage metric."""
        return self.framer.garbage_bytes

    def feed(self, data: bytes) -> list[Outcome]:
        """Add bytes; return the outcomes they complete, in order."""
        return [self._outcome(event) for event in self.framer.feed(data)]

    def flush(self) -> list[Outcome]:
        """End of stream: report what is left in the buffer."""
        return [self._outcome(event) for event in self.framer.flush()]

    @property
    def noise_pending(self) -> int:
        """Bytes of line noise the framer holds back, not yet reported (0: none)."""
        return self.framer.noise_pending

    def release_noise(self) -> list[Outcome]:
        """Report the line noise held back so far (see :mod:`p1_exporter.core.framing`)."""
        return [self._outcome(event) for event in self.framer.release_noise()]

    def _outcome(self, event: bytes | FramingError) -> Outcome:
        if isinstance(event, FramingError):
            return Outcome(None, event, b"")
        try:
            telegram = decode_frame(event, check_crc=self.check_crc, memo=self.memo)
        except P1Error as error:
            return Outcome(None, error, event)
        if telegram.crc_verified:
            self.signed = True
        elif self.signed and self.sticky_crc and self.check_crc:
            missing = CRCError("CRC missing: this meter signs its telegrams, this one has none")
            return Outcome(None, missing, event)
        return Outcome(telegram, None, event)


def iter_telegrams(data: bytes, *, check_crc: bool = True) -> Iterator[Outcome]:
    """Every telegram (and every refusal) in a capture, in order."""
    stream = TelegramStream(check_crc=check_crc)
    yield from stream.feed(data)
    yield from stream.flush()


def parse(data: bytes | bytearray | memoryview, *, check_crc: bool = True) -> Telegram:
    """Decode exactly one telegram from ``data``.

    Bytes around the telegram (noise, filler) are ignored. Raises a
    :class:`~p1_exporter.core.errors.P1Error` subclass when the telegram is refused,
    or :class:`~p1_exporter.core.errors.FramingError` when ``data`` holds no telegram
    or more than one. ``check_crc=False`` decodes a telegram whose CRC fails.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"parse() takes bytes, not {type(data).__name__}")
    outcomes = list(iter_telegrams(bytes(data), check_crc=check_crc))
    if not outcomes:
        raise FramingError("no telegram found: no '/' ... '!' block in the data")
    for outcome in outcomes:
        if outcome.error is not None:
            raise outcome.error
    if len(outcomes) > 1:
        raise FramingError(f"{len(outcomes)} telegrams found; use iter_telegrams() for captures")
    telegram = outcomes[0].telegram
    assert telegram is not None
    return telegram
