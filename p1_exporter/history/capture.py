"""The capture file format: every telegram as received, with its receive time and fate.

A capture is a sequence of self-delimiting records, byte exact and appendable::

    #P1CAPTURE v1 t=1700000000.250 result=ok len=1049\\n
    <exactly 1049 raw bytes>\\n

``result`` is the outcome label the exporter counts (ok, crc_error, malformed,
too_large, rejected); refused telegrams carry ``reason="..."`` after ``len``.
A framing error (a torn or oversized telegram) holds the bytes of the refused
telegram as received, when there were any, so replaying a capture reproduces
its refusals too. Encrypted P1 and HAN captures hold one ciphered frame (or the
HDLC/M-Bus frames of one APDU) per record; the header does not name the protocol
(a field of its own would make older readers skip every record), so readers are
told it.

Reading is strict but forgiving: a record is accepted only when its header
parses, its ``len`` bytes are followed by ``\\n`` and no other record header
starts inside them. Anything else (the cut-off last record of a capture that
crashed mid-write, or bytes damaged later) is skipped up to the next header and
reported. Every header a sequential reader would look at is found by searching
for the magic, which is also how a big capture is split for parallel readers.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

from p1_exporter.core.cipher import FrameCounter, Keys
from p1_exporter.core.framing import DEFAULT_MAX_SIZE
from p1_exporter.core.han_stream import ListMerger
from p1_exporter.core.stream import Outcome, TelegramStream

if TYPE_CHECKING:
    from p1_exporter.meter.protocol import Stream

#: Every record starts with this; ``MAGIC`` (with ``t=``) is what readers search for.
HEADER_PREFIX = b"#P1CAPTURE v1 "
MAGIC = HEADER_PREFIX + b"t="
#: A header line longer than this is damage, not a header.
MAX_HEADER = 1024
#: Longest ``reason`` written; longer messages are cut.
MAX_REASON = 300
#: Most bytes kept for one refused telegram (a too-large one would otherwise be unbounded).
MAX_ERROR_DATA = 4 * DEFAULT_MAX_SIZE
#: A ``len`` above this is damage (records hold one telegram: 16 KiB, or 64 KiB refused).
MAX_RECORD = 1024 * 1024
#: Bytes read from a file at once.
CHUNK = 4 * 1024 * 1024


class CaptureError(Exception):
    """A capture file cannot be written (for example: it is not a capture)."""


class Record(NamedTuple):
    """One captured telegram (or refusal): receive time (UTC epoch), result, raw bytes."""

    time: float
    result: str
    data: bytes
    reason: str = ""


def is_capture(head: bytes) -> bool:
    """True when ``head`` (the first bytes of a file) starts a capture in this format."""
    return head.startswith(HEADER_PREFIX)


def _quote(text: str) -> str:
    text = text[:MAX_REASON]
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")


def _unquote(text: str) -> str:
    out: list[str] = []
    escapes = {"n": "\n", "r": "\r"}
    chars = iter(text)
    for char in chars:
        if char == "\\":
            nxt = next(chars, "")
            out.append(escapes.get(nxt, nxt))
        else:
            out.append(char)
    return "".join(out)


def encode_record(time: float, result: str, data: bytes, reason: str = "") -> bytes:
    """The bytes of one record, header line and trailing newline included."""
    header = f"#P1CAPTURE v1 t={time:.3f} result={result} len={len(data)}"
    if reason:
        header += f' reason="{_quote(reason)}"'
    return header.encode("utf-8", "backslashreplace") + b"\n" + data + b"\n"


_PLAIN_HEADER = re.compile(rb"#P1CAPTURE v1 t=(\d+(?:\.\d*)?) result=([a-z_]+) len=(\d{1,7})")


def parse_header(line: bytes) -> tuple[float, str, int, str] | None:
    """(time, result, len, reason) of a header line without its newline; None if invalid."""
    plain = _PLAIN_HEADER.fullmatch(line)  # the usual case: no reason
    if plain is not None:
        size = int(plain[3])
        return (
            (float(plain[1]), plain[2].decode("ascii"), size, "") if (size <= MAX_RECORD) else None
        )
    parts = line.split(b" ", 5)
    if len(parts) < 5 or parts[0] != b"#P1CAPTURE" or parts[1] != b"v1":
        return None
    stamp, result, length = parts[2], parts[3], parts[4]
    if stamp[:2] != b"t=" or result[:7] != b"result=" or length[:4] != b"len=":
        return None
    stamp, result, length = stamp[2:], result[7:], length[4:]
    if not stamp.replace(b".", b"", 1).isdigit() or not length.isdigit():
        return None
    if len(length) > 7 or int(length) > MAX_RECORD:
        return None
    if not result or not result.replace(b"_", b"").isalpha() or not result.islower():
        return None
    reason = ""
    if len(parts) == 6:
        rest = parts[5]
        if rest[:8] != b'reason="' or rest[-1:] != b'"' or len(rest) < 9:
            return None
        body = rest[8:-1].decode("utf-8", "replace")
        if body.replace("\\\\", "").replace('\\"', "").count('"'):
            return None
        reason = _unquote(body)
    return float(stamp), result.decode("ascii"), int(length), reason


@dataclass
class _Skip:
    what: str
    offset: int
    size: int


class CaptureReader:
    """Iterates the records of a capture file, from ``start`` (a record start) to ``end``.

    Records whose header begins before ``end`` are read whole. Problems are not
    raised: ``issues`` describes them, ``truncated`` and ``damaged`` count them.
    ``position`` is the file offset reached (for progress bars).
    """

    def __init__(self, handle: BinaryIO, start: int = 0, end: int | None = None) -> None:
        self.handle = handle
        self.start = start
        self.end = end
        self.truncated = 0
        self.damaged = 0
        self.position = start
        self.name = str(getattr(handle, "name", "capture"))
        self._skips: list[_Skip] = []  # adjacent skips are merged
        self._cut: str | None = None

    @property
    def issues(self) -> list[str]:
        """What was skipped, in words."""
        lines = [
            f"{self.name}: {skip.what} at offset {skip.offset} ({skip.size} bytes) skipped"
            for skip in self._skips
        ]
        return lines + ([self._cut] if self._cut else [])

    def __iter__(self) -> Iterator[Record]:
        handle = self.handle
        handle.seek(self.start)
        limit = self.end
        base = self.start  # file offset of buf[0]
        buf = b""
        pos = 0
        final = False
        while limit is None or base + pos < limit:
            if not final and len(buf) - pos < MAX_HEADER + MAX_ERROR_DATA:
                chunk = handle.read(CHUNK)
                final = not chunk
                buf, base, pos = buf[pos:] + chunk, base + pos, 0
            if pos >= len(buf):
                break
            if not buf.startswith(HEADER_PREFIX, pos):
                if final and HEADER_PREFIX.startswith(buf[pos:]):
                    self._cut_off(base + pos, "in its header line")
                    pos = len(buf)
                    break
                pos = self._skip(buf, pos, base, final, "bytes outside any record", 0)
                continue
            newline = buf.find(b"\n", pos, pos + MAX_HEADER)
            parsed = None if newline < 0 else parse_header(buf[pos:newline])
            if parsed is None:
                if newline < 0 and not final and len(buf) - pos < MAX_HEADER:
                    continue  # the header line goes on in the next chunk
                if newline < 0 and final and buf.find(MAGIC, pos + 1) < 0:
                    self._cut_off(base + pos, "in its header line")
                    pos = len(buf)
                    break
                pos = self._skip(buf, pos, base, final, "unreadable record header", 1)
                continue
            time, result, length, reason = parsed
            data_start = newline + 1
            data_end = data_start + length
            if data_end >= len(buf) and not final:
                chunk = handle.read(max(CHUNK, data_end + 1 - len(buf)))
                final = not chunk
                buf, base, pos = buf[pos:] + chunk, base + pos, 0
                continue
            if data_end >= len(buf) and buf.find(MAGIC, pos + 1) < 0:
                self._cut_off(
                    base + pos, f"{max(0, len(buf) - data_start)} of {length} bytes present"
                )
                pos = len(buf)
                break
            if (
                data_end >= len(buf)
                or buf[data_end] != 0x0A
                or buf.find(MAGIC, data_start, data_end) >= 0
            ):
                pos = self._skip(buf, pos, base, final, "damaged record", 1)
                continue
            pos = data_end + 1
            self.position = base + pos
            yield Record(time, result, buf[data_start:data_end], reason)
        self.position = base + pos if limit is None else min(limit, base + pos)

    def _cut_off(self, offset: int, how: str) -> None:
        self.truncated += 1
        self._cut = (
            f"{self.name}: the last record (offset {offset}) is cut off, {how} "
            "(the capture was interrupted); skipped"
        )

    def _skip(self, buf: bytes, pos: int, base: int, final: bool, what: str, offset: int) -> int:
        """Skip to the next record header; remember what was skipped."""
        nxt = buf.find(MAGIC, pos + offset)
        if nxt < 0:
            # Keep a tail in which a header could begin; the next chunk completes it.
            nxt = len(buf) if final else max(pos + offset, len(buf) - len(MAGIC) + 1)
        if nxt > pos:
            last = self._skips[-1] if self._skips else None
            if last is not None and last.offset + last.size == base + pos:
                last.size += nxt - pos
            else:
                self.damaged += 1
                self._skips.append(_Skip(what, base + pos, nxt - pos))
        return nxt


def read_records(data: bytes) -> tuple[list[Record], list[str]]:
    """All records of an in-memory capture, and the reader's issues."""
    import io

    reader = CaptureReader(io.BytesIO(data))
    return list(reader), reader.issues


def next_record_start(handle: BinaryIO, offset: int) -> int:
    """The file offset of the first record header at or after ``offset`` (or the file size)."""
    handle.seek(offset)
    tail = b""
    position = offset
    while True:
        chunk = handle.read(1024 * 1024)
        if not chunk:
            return position + len(tail)
        window = tail + chunk
        found = window.find(MAGIC)
        if found >= 0:
            return position + found
        keep = min(len(window), len(MAGIC) - 1)
        position += len(window) - keep
        tail = window[len(window) - keep :]


def tail_is_complete(path: str) -> bool:
    """True when the capture at ``path`` ends exactly after a complete record."""
    size = os.path.getsize(path)
    window = min(size, MAX_ERROR_DATA + 2 * MAX_HEADER)
    with open(path, "rb") as handle:
        handle.seek(size - window)
        tail = handle.read(window)
    start = tail.rfind(MAGIC)
    while start >= 0:
        newline = tail.find(b"\n", start)
        parsed = None if newline < 0 else parse_header(tail[start:newline])
        if parsed is not None:
            return newline + 1 + parsed[2] + 1 == len(tail) and tail[-1:] == b"\n"
        start = tail.rfind(MAGIC, 0, start)
    return False


class CaptureWriter:
    """Appends records to a capture file, one ``os.write`` each, rotating by size.

    Before each write: when the file would grow past ``max_bytes`` (0: never),
    it is renamed to ``FILE.1`` (``FILE.1`` to ``FILE.2`` ... up to ``backups``;
    the oldest is dropped) and a new file started. A file renamed or removed by
    someone else (logrotate) is noticed and reopened.
    """

    def __init__(self, path: str, max_bytes: int = 10 * 1024 * 1024, backups: int = 5) -> None:
        if max_bytes < 0 or backups < 0:
            raise ValueError("max_bytes and backups must not be negative")
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.rotations = 0
        self.bytes_written = 0
        #: Set by open() when the existing file ended in a cut-off record.
        self.torn_tail = False
        self._fd = -1
        self._inode = -1
        self._size = 0

    def open(self) -> None:
        """Open (create or append); refuse a file that is not a capture."""
        try:
            with open(self.path, "rb") as handle:
                head = handle.read(len(HEADER_PREFIX))
        except FileNotFoundError:
            head = b""
        except OSError as exc:
            raise CaptureError(f"cannot read {self.path}: {exc.strerror}") from exc
        if head and not is_capture(head):
            raise CaptureError(
                f"{self.path} exists and is not a p1-exporter capture; "
                "refusing to append to it (choose another --out)"
            )
        self.torn_tail = bool(head) and not tail_is_complete(self.path)
        self._open()

    def _open(self) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise CaptureError(f"cannot open {self.path}: {exc.strerror}") from exc
        stat = os.fstat(fd)
        self._fd, self._inode, self._size = fd, stat.st_ino, stat.st_size

    def write(self, record: Record) -> None:
        """Append one record (rotating first when it would not fit)."""
        blob = encode_record(record.time, record.result, record.data, record.reason)
        if self._fd < 0:
            raise CaptureError("capture file is not open")
        try:
            if os.stat(self.path).st_ino != self._inode:
                raise FileNotFoundError
        except FileNotFoundError:
            self._close()
            self._open()
        if self.max_bytes and self._size and self._size + len(blob) > self.max_bytes:
            self.rotate()
        view = memoryview(blob)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            raise CaptureError(f"cannot write {self.path}: {exc.strerror}") from exc
        self._size += len(blob)
        self.bytes_written += len(blob)

    def rotate(self) -> None:
        """FILE -> FILE.1 -> ... -> FILE.<backups>; then start an empty FILE."""
        self._close()
        try:
            if self.backups:
                for index in range(self.backups - 1, 0, -1):
                    older = f"{self.path}.{index}"
                    if os.path.exists(older):
                        os.replace(older, f"{self.path}.{index + 1}")
                os.replace(self.path, f"{self.path}.1")
            else:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise CaptureError(f"cannot rotate {self.path}: {exc.strerror}") from exc
        self.rotations += 1
        self._open()

    def _close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self) -> None:
        """Close the file."""
        self._close()


class CaptureRecorder:
    """Bytes in, records out: frames the stream and keeps every telegram's raw bytes.

    A valid or refused frame becomes a record of its exact bytes. A framing
    error (torn, too large) gets the bytes that were dropped for it, from its
    ``/`` (line noise before a telegram is not kept). A run of line noise full of
    ``/`` is one record (the framer reports it as one event), so a capture stays
    within a small factor of the bytes received.

    ``protocol`` encrypted or han decodes with the exporter's stream for it
    (:func:`~p1_exporter.meter.protocol.make_stream`, with ``keys``): a record then
    holds one ciphered frame, or the HDLC/M-Bus frames of one APDU, byte exact; a
    refusal found before a frame was whole (a bad FCS, a torn frame) has no bytes.
    ``counter`` and ``merger`` outlive the recorder, as the exporter's do a reconnect.
    """

    def __init__(
        self,
        max_size: int = DEFAULT_MAX_SIZE,
        *,
        protocol: str = "dsmr",
        keys: Keys | None = None,
        counter: FrameCounter | None = None,
        merger: ListMerger | None = None,
    ) -> None:
        self.protocol = protocol
        self.stream: Stream
        if protocol == "dsmr":
            self.stream = TelegramStream(max_size=max_size)
        else:
            from p1_exporter.meter.protocol import make_stream  # meter.sources imports this module

            self.stream = make_stream(
                protocol,
                keys,
                counter or FrameCounter(),
                check_crc=True,
                max_size=max_size,
                merger=merger,
            )
        self._gap = bytearray()  # bytes since the end of the last frame

    def feed(self, data: bytes, now: float) -> list[Record]:
        """Add received bytes; return the records they complete."""
        if self.protocol != "dsmr":
            return self._frames(self.stream.feed(data), now)
        self._gap += data
        return self._records(self.stream.feed(data), now)

    def flush(self, now: float) -> list[Record]:
        """End of stream (disconnect, stop): report what is still held."""
        if self.protocol != "dsmr":
            return self._frames(self.stream.flush(), now)
        return self._records(self.stream.flush(), now)

    def release_noise(self, now: float) -> list[Record]:
        """Record the line noise held back so far (call once in a while)."""
        if self.protocol != "dsmr":
            return self._frames(self.stream.release_noise(), now)
        return self._records(self.stream.release_noise(), now)

    @staticmethod
    def _frames(outcomes: list[Outcome], now: float) -> list[Record]:
        return [
            Record(
                now,
                outcome.result,
                outcome.raw[:MAX_ERROR_DATA] if outcome.error else outcome.raw,
                "" if outcome.error is None else str(outcome.error),
            )
            for outcome in outcomes
        ]

    def _records(self, outcomes: list[Outcome], now: float) -> list[Record]:
        records: list[Record] = []
        pending: list[Outcome] = []
        gap = self._gap
        for outcome in outcomes:
            if not outcome.raw:
                pending.append(outcome)
                continue
            index = gap.find(outcome.raw)
            if index < 0:  # cannot happen: the frame came from these bytes
                index = 0
            records += self._errors(pending, gap[:index], now)
            pending = []
            del gap[: index + len(outcome.raw)]
            reason = "" if outcome.error is None else str(outcome.error)
            records.append(Record(now, outcome.result, outcome.raw, reason))
        assert isinstance(self.stream, TelegramStream)
        framer = self.stream.framer
        done = len(gap) - framer.pending - framer.noise_pending
        records += self._errors(pending, gap[:done], now)
        del gap[:done]
        return records

    @staticmethod
    def _errors(pending: list[Outcome], region: bytearray, now: float) -> list[Record]:
        # Each refused telegram began at a "/" and the framer says how many bytes it dropped
        # for it; bytes before a "/" are line noise outside any telegram.
        records: list[Record] = []
        cursor = 0
        for outcome in pending:
            size = getattr(outcome.error, "size", 0)
            start = region.find(b"/", cursor)
            piece = b""
            if size and start >= 0:
                piece = bytes(region[start : start + min(size, MAX_ERROR_DATA)])
                cursor = start + size
            records.append(Record(now, outcome.result, piece, str(outcome.error)))
        return records
