"""Framing: a byte stream in, candidate telegrams (``/`` .. CRC line) out.

No text decoding happens here, so any byte value is accepted. A telegram ends
at a ``!`` that starts a line; its CRC line runs to the next newline. Memory is
bounded: the framer never holds more than ``max_size`` bytes.

Line noise full of ``/`` would start a new candidate at every one of them. A torn
candidate shorter than :data:`NOISE_PIECE` (less than a header line) is therefore
not reported on its own: a run of them is one event, reported before the next
other event, at ``flush()``, at ``release_noise()`` (the caller's clock) or once
the run reaches ``max_size`` bytes. So a stream of lone ``/`` costs one event per
run, and the work stays linear in the bytes.
"""

from __future__ import annotations

import re

from p1_exporter.core.errors import FramingError, TelegramTooLarge, TornTelegram

#: Largest telegram accepted. Real telegrams are 0.5-2 KiB; 16 KiB leaves room for
#: long text messages and power-failure logs without letting noise grow the buffer.
DEFAULT_MAX_SIZE = 16 * 1024
#: Longest CRC line tolerated after ``!`` before the framer gives up waiting for its newline.
_MAX_CRC_LINE = 16
#: A torn candidate shorter than this is line noise (a real header line alone is longer
#: than a few bytes, a telegram hundreds).
NOISE_PIECE = 64
#: How long a reader holds a run of line noise before reporting it (``release_noise()``).
NOISE_REPORT_SECONDS = 1.0
#: Consecutive noise candidates (no "\n!" in them), each followed by the next "/".
_NOISE_RUN = re.compile(rb"(?:/(?:[^/\n]|\n(?!!)){0,%d})+(?=/)" % (NOISE_PIECE - 2))

Event = bytes | FramingError


class Framer:
    """Incremental framer. Feed chunks of any size; collect frames and framing errors."""

    __slots__ = (
        "_bang",
        "_buf",
        "_noise_bytes",
        "_noise_starts",
        "_scanned",
        "garbage_bytes",
        "max_size",
    )

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.max_size = max_size
        #: Bytes seen outside any telegram (noise, filler, wrong baud rate...).
        self.garbage_bytes = 0
        self._buf = bytearray()  # empty, or starts with b"/"
        self._scanned = 1  # bytes of _buf already searched for "/" and "\n!"
        self._bang = -1  # index of the closing "!" once found
        self._noise_bytes = 0  # the run of noise candidates not reported yet
        self._noise_starts = 0

    @property
    def pending(self) -> int:
        """Bytes held for a telegram that has not ended yet."""
        return len(self._buf)

    @property
    def noise_pending(self) -> int:
        """Bytes of line noise (short torn candidates) not reported yet."""
        return self._noise_bytes

    def release_noise(self) -> list[Event]:
        """Report the run of line noise held so far (call when time has passed)."""
        events: list[Event] = []
        self._emit_noise(events)
        return events

    def feed(self, data: bytes) -> list[Event]:
        """Add bytes; return the frames (bytes) and FramingErrors they complete."""
        events: list[Event] = []
        pos, total = 0, len(data)
        while pos < total:
            # Never let the buffer pass max_size + 1: that one byte more detects the overflow.
            room = max(1, self.max_size + 1 - len(self._buf))
            piece = data if pos == 0 and total <= room else data[pos : pos + room]
            pos += len(piece)
            self._feed(piece, events)
        return events

    def flush(self) -> list[Event]:
        """End of stream: a telegram still open is reported as torn and dropped."""
        events: list[Event] = []
        self._emit_noise(events)
        if self._bang >= 0:
            events.append(self._take(len(self._buf)))
        elif self._buf:
            events.append(
                TornTelegram(
                    f"stream ended inside a telegram ({len(self._buf)} bytes)", len(self._buf)
                )
            )
            self._reset(len(self._buf))
        return events

    def _emit_noise(self, events: list[Event]) -> None:
        starts, size = self._noise_starts, self._noise_bytes
        if starts == 1:
            events.append(
                TornTelegram(f"torn telegram: a new one started after {size} bytes", size)
            )
        elif starts:
            events.append(
                TornTelegram(
                    f"line noise: {starts} telegram starts ('/') in {size} "
                    "bytes, none of them a telegram",
                    size,
                )
            )
        self._noise_bytes = self._noise_starts = 0

    def _noise(self, buf: bytearray, restart: int, events: list[Event]) -> None:
        """Add the noise candidate ``buf[:restart]`` (and any that follow) to the run."""
        match = _NOISE_RUN.match(buf)
        end = max(restart, match.end() if match else 0)
        room = self.max_size - self._noise_bytes
        if end >= room:  # stop at the first candidate boundary that fills the run
            end = buf.find(b"/", max(room, 1))
        self._noise_starts += buf.count(b"/", 0, end)
        self._noise_bytes += end
        self._reset(end)
        if self._noise_bytes >= self.max_size:
            self._emit_noise(events)

    def _reset(self, consumed: int) -> None:
        del self._buf[:consumed]
        self._scanned = 1
        self._bang = -1

    def _take(self, end: int) -> bytes:
        frame = bytes(self._buf[:end])
        self._reset(end)
        return frame

    def _feed(self, chunk: bytes, events: list[Event]) -> None:
        buf = self._buf
        if buf:
            buf += chunk
        else:
            start = chunk.find(b"/")
            if start < 0:
                self.garbage_bytes += len(chunk)
                return
            self.garbage_bytes += start
            buf += chunk[start:] if start else chunk
        while buf:
            if buf[0] != 0x2F:  # "/": resynchronise on the next start
                start = buf.find(b"/")
                if start < 0:
                    self.garbage_bytes += len(buf)
                    buf.clear()
                    return
                self.garbage_bytes += start
                del buf[:start]
            if self._bang < 0:
                scan_from = self._scanned - 1
                # The next start first, and the end only before it: each byte is searched
                # once however many candidates the buffer holds.
                restart = buf.find(b"/", max(scan_from, 1))
                end = buf.find(b"\n!", scan_from, len(buf) if restart < 0 else restart)
                if end >= 0:
                    restart = -1
                if restart >= 0:
                    if restart < NOISE_PIECE:
                        self._noise(buf, restart, events)
                        continue
                    self._emit_noise(events)
                    events.append(
                        TornTelegram(
                            f"torn telegram: a new one started after {restart} bytes", restart
                        )
                    )
                    self._reset(restart)
                    continue
                if end < 0:
                    if len(buf) > self.max_size:
                        self._emit_noise(events)
                        events.append(
                            TelegramTooLarge(
                                f"telegram exceeds {self.max_size} bytes without an end; dropped",
                                len(buf),
                            )
                        )
                        self._reset(len(buf))
                        return
                    self._scanned = len(buf)
                    return
                self._bang = end + 1
            bang = self._bang
            # Look no further than the CRC line may reach, as a byte-by-byte feed would.
            newline = buf.find(b"\n", bang + 1, bang + 1 + _MAX_CRC_LINE)
            limit = bang + 1 + _MAX_CRC_LINE if newline < 0 else newline
            restart = buf.find(b"/", bang + 1, limit)
            self._emit_noise(events)
            if restart >= 0:
                events.append(self._take(restart))
            elif newline >= 0:
                events.append(self._take(newline + 1))
            elif len(buf) - bang > _MAX_CRC_LINE:
                events.append(self._take(bang + 1 + _MAX_CRC_LINE))
            elif len(buf) > self.max_size:  # its CRC line would take it past the cap
                events.append(
                    TelegramTooLarge(
                        f"telegram exceeds {self.max_size} bytes with its CRC line", len(buf)
                    )
                )
                self._reset(len(buf))
                return
            else:
                return
