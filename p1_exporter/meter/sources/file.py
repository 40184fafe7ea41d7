"""``file:`` meters: a capture or a plain telegram dump, replayed at its pace.

The file is read a chunk at a time as it is replayed, so memory stays bounded
whatever it holds.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from typing import BinaryIO

from p1_exporter.core.clock import parse_meter_time
from p1_exporter.core.obis import CLOCK
from p1_exporter.history.capture import HEADER_PREFIX, CaptureReader, is_capture
from p1_exporter.meter.sources.base import CancellablePause, SourceError

_CLOCK = re.compile(re.escape(CLOCK.encode()) + rb"\((\d{12}[SW]?)\)")
#: Bytes read from a plain file at once, and the most one replayed piece holds: a file
#: costs this much memory whatever its size (``/dev/zero`` included).
FILE_CHUNK = 64 * 1024


def split_capture(data: bytes) -> list[bytes]:
    """Cut a capture into pieces that each start at a telegram's ``/``."""
    starts = [0] + [m.start() + 1 for m in re.finditer(rb"\n/", data)]
    return [data[a:b] for a, b in zip(starts, [*starts[1:], len(data)], strict=True) if data[a:b]]


class _PlainPieces:
    """A plain telegram dump, read in chunks and cut at each ``/`` that starts a line.

    Yields ``(piece, clock, continued)``: ``clock`` is the meter time in the piece, if
    any; ``continued`` marks the rest of a piece longer than :data:`FILE_CHUNK`.
    """

    def __init__(self, handle: BinaryIO, head: bytes) -> None:
        self.handle = handle
        self.buf = head

    def __iter__(self) -> Iterator[tuple[bytes, float | None, bool]]:
        buf, pos = self.buf, 0
        eof = False
        continued = False
        while True:
            cut = buf.find(b"\n/", pos)
            while cut < 0 and not eof and len(buf) - pos < FILE_CHUNK:
                chunk = self.handle.read(FILE_CHUNK)
                eof = not chunk
                buf, pos = buf[pos:] + chunk, 0
                cut = buf.find(b"\n/")
            whole = 0 <= cut < pos + FILE_CHUNK  # the piece ends where a telegram starts
            if whole:
                end = cut + 1
            elif pos < len(buf):
                end = min(len(buf), pos + FILE_CHUNK)
            else:
                return
            piece, pos = buf[pos:end], end
            match = _CLOCK.search(piece)
            clock = parse_meter_time(match[1].decode()) if match else None
            yield piece, clock, continued
            continued = not whole


class FileSource(CancellablePause):
    """Replays a file, at its recorded pace or as fast as possible.

    A ``p1-exporter capture`` file replays every recorded piece (refused telegrams
    too) paced by the receive times it recorded; a plain telegram dump is cut at
    each ``/`` and paced by the meter's own clock. The file is read as it is
    replayed, a chunk at a time, so memory stays bounded whatever the file holds.
    """

    def __init__(
        self, path: str, pace: str = "recorded", loop: bool = False, default_interval: float = 1.0
    ) -> None:
        if pace not in ("recorded", "fast"):
            raise ValueError(f"pace must be 'recorded' or 'fast', not {pace!r}")
        super().__init__()
        self.path = path
        self.description = f"file:{path}"
        self.pace = pace
        self.loop = loop
        self.default_interval = default_interval
        self.finished = False
        self._handle: BinaryIO | None = None
        self._pieces: Iterator[tuple[bytes, float]] = iter(())
        self._next: tuple[bytes, float] | None = None
        self._given = 0  # pieces given since the file was (re)started
        self._due = 0.0

    def open(self) -> None:
        self.close()
        try:
            self._handle = open(self.path, "rb")  # noqa: SIM115 (closed in close())
        except OSError as exc:
            raise SourceError("not_found", f"cannot read {self.path}: {exc.strerror}") from exc
        self._start()
        self._due = time.monotonic()
        self.finished = False

    def _start(self) -> None:
        """Begin (again) at the start of the file."""
        handle = self._handle
        assert handle is not None
        try:
            if handle.seekable():  # a pipe is read once, from where it is
                handle.seek(0)
            head = handle.read(len(HEADER_PREFIX))
        except OSError as exc:
            raise SourceError("disconnected", f"cannot read {self.path}: {exc}") from exc
        if is_capture(head) and handle.seekable():
            self._pieces = self._paced_records(CaptureReader(handle))
        else:
            self._pieces = self._paced_plain(_PlainPieces(handle, head))
        self._next = None
        self._given = 0

    def _paced_records(self, reader: CaptureReader) -> Iterator[tuple[bytes, float]]:
        """Recorded pieces with the delay before each (recorded gaps, at most 60 s each)."""
        previous: float | None = None
        for record in reader:
            if not record.data:
                continue
            delay = 0.0
            if self.pace == "recorded" and previous is not None:
                delay = min(60.0, max(0.0, record.time - previous))
            previous = record.time
            yield record.data, delay

    def _paced_plain(self, pieces: _PlainPieces) -> Iterator[tuple[bytes, float]]:
        """Dump pieces with the delay before each, from the meter clock in them."""
        previous: float | None = None
        first = True
        for piece, clock, continued in pieces:
            if self.pace == "fast" or continued:
                delay = 0.0
            elif clock is None or previous is None:
                delay = 0.0 if first else self.default_interval
            else:
                delay = min(60.0, max(0.0, clock - previous))
            first = False
            previous = clock if clock is not None else previous
            yield piece, delay

    def _peek(self) -> tuple[bytes, float] | None:
        if self._next is None:
            try:
                self._next = next(self._pieces, None)
            except OSError as exc:
                raise SourceError("disconnected", f"cannot read {self.path}: {exc}") from exc
            if self._next is None and self.loop and self._given:
                self._start()
                self._next = next(self._pieces, None)
        return self._next

    def read(self, timeout: float) -> bytes:
        if self._handle is None:
            raise SourceError("closed", f"{self.description} is not open")
        upcoming = self._peek()
        if upcoming is None:
            self.finished = True
            return b""
        piece, delay = upcoming
        due = self._due + delay
        wait = due - time.monotonic()
        if wait > 0 and (not self._pause(min(wait, timeout)) or wait > timeout):
            return b""
        self._due = max(due, time.monotonic() - 1.0) if self.pace == "recorded" else due
        self._next = None
        self._given += 1
        return piece

    def close(self) -> None:
        handle, self._handle = self._handle, None
        self._pieces = iter(())
        self._next = None
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()
