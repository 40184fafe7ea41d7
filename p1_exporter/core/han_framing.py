"""HAN link layers: HDLC frames and M-Bus long frames in, whole APDUs out.

Norwegian and Swedish meters (Aidon, Kaifa, Kamstrup) push HDLC frames
(IEC 62056-46, type 3)::

    7E  A<len>  dst  src  ctrl  HCS(2)  information  FCS(2)  7E

Frames are found by their length field, not by flags, because meters do not
escape 0x7E inside the information field. FCS and HCS are CRC-16/X-25. A frame
with the segmentation bit set is continued by the next one.

Austrian meters push M-Bus long frames (EN 13757-2)::

    68  L  L  68  C  A  CI  STSAP  DTSAP  data  CS  16

CS is the byte sum of C..data; CI's bit 4 marks the last segment and its low
nibble numbers the segments, so an APDU longer than one frame is reassembled.

Everything is bounded: a frame cannot exceed its 11-bit (HDLC) or 8-bit (M-Bus)
length, and a reassembled APDU is capped at ``max_size``.
"""

from __future__ import annotations

from typing import NamedTuple

from p1_exporter.core.crc import crc16_x25, crc16_x25_python
from p1_exporter.core.errors import CRCError, FramingError, P1Error, TelegramTooLarge

FLAG = 0x7E
MBUS_START = 0x68
MBUS_STOP = 0x16
#: Largest reassembled APDU; real pushes are under 1 KiB.
DEFAULT_MAX_APDU = 8 * 1024

#: HDLC's FCS and HCS are CRC-16/X-25 (see ``core.crc``).
fcs16 = crc16_x25
fcs16_python = crc16_x25_python


class LinkFrame(NamedTuple):
    """One link-layer frame: its payload piece and whether the APDU ends with it."""

    kind: str  # "hdlc" or "mbus"
    payload: bytes
    last: bool
    sequence: int  # M-Bus segment number; 0 for HDLC
    raw: bytes


def hdlc_frame(
    information: bytes,
    *,
    segmented: bool = False,
    destination: bytes = b"\x41",
    source: bytes = b"\x08\x83",
    control: int = 0x13,
) -> bytes:
    """Build one HDLC frame (with flags) around ``information`` (simulator, tests)."""
    header_len = 2 + len(destination) + len(source) + 1 + 2
    length = header_len + len(information) + (2 if information else 0)
    if length > 0x7FF:
        raise ValueError("HDLC frame too long")
    fmt = 0xA000 | (0x0800 if segmented else 0) | length
    head = fmt.to_bytes(2, "big") + destination + source + bytes([control])
    head += fcs16(head).to_bytes(2, "little")
    body = head + information
    if information:
        body += fcs16(body).to_bytes(2, "little")
    return bytes([FLAG]) + body + bytes([FLAG])


def mbus_frames(
    apdu: bytes,
    *,
    chunk: int = 245,
    control: int = 0x53,
    address: int = 0xFF,
    tsap: bytes = b"\x01\x67",
) -> bytes:
    """Split ``apdu`` into M-Bus long frames as Austrian meters send it (simulator, tests)."""
    pieces = [apdu[i : i + chunk] for i in range(0, len(apdu), chunk)] or [b""]
    out = bytearray()
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        ci = (0x10 if last else 0) | (index & 0x0F)
        body = bytes([control, address, ci]) + tsap + piece
        out += bytes([MBUS_START, len(body), len(body), MBUS_START]) + body
        out += bytes([sum(body) & 0xFF, MBUS_STOP])
    return bytes(out)


def _address_end(data: bytes | bytearray, pos: int, limit: int) -> int:
    """Position after an HDLC address (1-4 bytes, the last with its low bit set)."""
    for index in range(pos, min(pos + 4, limit)):
        if data[index] & 1:
            return index + 1
    raise FramingError("HDLC address has no end")


class HanFramer:
    """Finds HDLC and M-Bus frames in a byte stream and checks them (FCS, checksum)."""

    __slots__ = ("_buf", "garbage_bytes")

    def __init__(self) -> None:
        self.garbage_bytes = 0
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held for a frame that has not ended yet."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[LinkFrame | P1Error]:
        """Add bytes; return checked frames and errors, in order."""
        self._buf += data
        events: list[LinkFrame | P1Error] = []
        buf = self._buf
        while buf:
            start = self._find_start(buf)
            if start < 0:
                self.garbage_bytes += len(buf)
                buf.clear()
                break
            if start:
                self.garbage_bytes += start
                del buf[:start]
            result = self._hdlc(buf) if buf[0] == FLAG else self._mbus(buf)
            if result is None:
                break  # wait for more bytes
            event, consumed = result
            if event is not None:
                events.append(event)
            del buf[:consumed]
        return events

    def flush(self) -> list[LinkFrame | P1Error]:
        """End of stream: a frame still open is reported and dropped."""
        size = len(self._buf)
        self._buf.clear()
        if size <= 2:  # a lone flag (or two) is not a frame
            return []
        return [FramingError(f"stream ended inside a frame ({size} bytes)")]

    @staticmethod
    def _find_start(buf: bytearray) -> int:
        """Index of the first byte that may start a frame: 0x7E, or 0x68 L L 0x68."""
        pos = 0
        size = len(buf)
        while pos < size:
            byte = buf[pos]
            if byte == FLAG:
                return pos
            if byte == MBUS_START:
                if size - pos < 4:
                    return pos  # decide once the header is in
                if buf[pos + 1] == buf[pos + 2] and buf[pos + 3] == MBUS_START:
                    return pos
            pos += 1
        return -1

    def _hdlc(self, buf: bytearray) -> tuple[LinkFrame | P1Error | None, int] | None:
        # Skip repeated flags: 7E 7E between frames, or a shared flag.
        if len(buf) < 3:
            return None
        if buf[1] == FLAG:
            return None, 1
        if buf[1] >> 4 != 0xA:
            return FramingError(
                f"byte 0x{buf[1]:02X} after a flag is not an HDLC frame format (0xA_)"
            ), 1
        length = ((buf[1] & 0x07) << 8) | buf[2]
        if length < 7:
            return FramingError(f"HDLC frame of {length} bytes is too short"), 1
        total = length + 2  # with both flags
        if len(buf) < total:
            # A new frame starting before this one could end means it was cut.
            return None
        if buf[total - 1] != FLAG:
            return FramingError(
                f"HDLC frame of {length} bytes does not end in a flag: truncated or corrupt"
            ), 1
        body = bytes(buf[1 : total - 1])
        fcs = int.from_bytes(body[-2:], "little")
        if fcs16(body[:-2]) != fcs:
            # The closing flag may open the next frame: keep it.
            return CRCError(
                "HDLC frame check sequence (FCS) does not match: corrupt frame"
            ), total - 1
        try:
            pos = _address_end(body, 2, len(body))
            pos = _address_end(body, pos, len(body))
        except FramingError as error:
            return error, total - 1
        pos += 1  # control
        info = b""
        if len(body) > pos + 2:  # header check sequence, then information
            hcs = int.from_bytes(body[pos : pos + 2], "little")
            if fcs16(body[:pos]) != hcs:
                return CRCError("HDLC header check sequence (HCS) does not match"), total - 1
            info = body[pos + 2 : -2]
        segmented = bool(buf[1] & 0x08)
        frame = LinkFrame("hdlc", info, not segmented, 0, bytes(buf[:total]))
        return frame, total - 1

    def _mbus(self, buf: bytearray) -> tuple[LinkFrame | P1Error | None, int] | None:
        if len(buf) < 4:
            return None
        length = buf[1]
        total = length + 6
        if len(buf) < total:
            return None
        if buf[total - 1] != MBUS_STOP:
            return FramingError("M-Bus frame does not end in 0x16: truncated or corrupt"), 1
        body = bytes(buf[4 : 4 + length])
        if sum(body) & 0xFF != buf[4 + length]:
            return CRCError("M-Bus frame checksum does not match: corrupt frame"), total
        if length < 5:
            return FramingError(f"M-Bus frame of {length} bytes has no DLMS payload"), total
        ci = body[2]
        frame = LinkFrame("mbus", body[5:], bool(ci & 0x10), ci & 0x0F, bytes(buf[:total]))
        return frame, total


class Reassembler:
    """Joins segmented frames into one APDU; bounded by ``max_size``."""

    __slots__ = ("_kind", "_next", "_parts", "_raw", "_size", "_skip", "max_size")

    def __init__(self, max_size: int = DEFAULT_MAX_APDU) -> None:
        self.max_size = max_size
        self._parts: list[bytes] = []
        self._raw: list[bytes] = []
        self._size = 0
        self._next = 0
        self._kind = ""
        self._skip = False  # after an overflow: drop the rest of that APDU

    def reset(self) -> None:
        """Forget a partly assembled APDU."""
        self._parts.clear()
        self._raw.clear()
        self._size = 0
        self._next = 0
        self._kind = ""

    def add(self, frame: LinkFrame) -> list[tuple[bytes, bytes] | P1Error]:
        """Add a frame; return what it completes: (apdu, raw frames) and/or errors."""
        out: list[tuple[bytes, bytes] | P1Error] = []
        if self._skip:
            self._skip = not frame.last
            return out
        if self._parts and frame.kind != self._kind:
            out.append(FramingError("segmented APDU interrupted by a frame of another kind"))
            self.reset()
        if frame.kind == "mbus" and frame.sequence != self._next:
            if frame.sequence != 0:
                self.reset()
                out.append(
                    FramingError(
                        f"M-Bus segment {frame.sequence} arrived without the one before it: "
                        "the APDU is incomplete"
                    )
                )
                return out
            out.append(FramingError("M-Bus segment 0 restarted an unfinished APDU"))
            self.reset()
        self._kind = frame.kind
        self._parts.append(frame.payload)
        self._raw.append(frame.raw)
        self._size += len(frame.payload)
        self._next = (frame.sequence + 1) & 0x0F
        if self._size > self.max_size:
            self.reset()
            self._skip = not frame.last
            out.append(TelegramTooLarge(f"segmented APDU exceeds {self.max_size} bytes"))
            return out
        if frame.last:
            out.append((b"".join(self._parts), b"".join(self._raw)))
            self.reset()
        return out
