"""CRC validation of a framed telegram.

DSMR 4 and later append CRC-16/ARC over ``/`` through ``!``. DSMR 2.2/3 and some
foreign meters send none; a telegram that announces DSMR 4+ (a version line, see
:data:`~p1_exporter.core.obis.VERSION_CODES`) must carry one.
"""

from __future__ import annotations

from typing import NamedTuple

from p1_exporter.core.crc import crc16_arc
from p1_exporter.core.errors import CRCError, FramingError
from p1_exporter.core.obis import VERSION_CODES

_HEX = frozenset(b"0123456789abcdefABCDEF")
_VERSION_LINES = tuple(b"\n%s(" % code.encode() for code in VERSION_CODES)


class CheckedFrame(NamedTuple):
    """Where a frame's content ends (just after ``!``) and what its CRC check found."""

    content_end: int
    crc: int | None
    crc_verified: bool


def announces_crc(content: bytes) -> bool:
    """True when the telegram declares a DSMR version that requires a CRC."""
    return any(marker in content for marker in _VERSION_LINES)


def check_frame(frame: bytes, *, check_crc: bool = True) -> CheckedFrame:
    """Check a frame's CRC; raise CRCError (or FramingError) unless told not to."""
    bang = frame.rfind(b"\n!") + 1
    if bang <= 0 or frame[:1] != b"/":
        raise FramingError("not a telegram: no '/' start or no '!' line")
    end = bang + 1
    sent = frame[end:].strip()
    if not sent:
        if check_crc and announces_crc(frame[:bang]):
            raise CRCError("CRC missing: this DSMR 4+ telegram ends at '!' without one")
        return CheckedFrame(end, None, False)
    if len(sent) > 4 or not _HEX.issuperset(sent):
        if check_crc:
            shown = sent[:8].decode("latin-1")
            raise CRCError(f"CRC not hexadecimal: telegram says {shown!r}")
        return CheckedFrame(end, None, False)
    expected = int(sent, 16)
    computed = crc16_arc(frame[:end])
    if computed != expected:
        if check_crc:
            raise CRCError(
                f"CRC mismatch: computed {computed:04X}, telegram says {sent.decode().upper():0>4}"
            )
        return CheckedFrame(end, expected, False)
    return CheckedFrame(end, expected, True)
