"""The two CRC-16s meters use: CRC-16/ARC (DSMR) and CRC-16/X-25 (HDLC FCS).

CRC-16/ARC is the checksum DSMR 4+ meters append after the ``!``: reflected
polynomial 0xA001, initial value 0, no final XOR. CRC-16/X-25 guards HDLC
headers and frames on HAN ports: reflected 0x8408, initial and final XOR
0xFFFF. Both are reflected CRCs, so one table builder serves both. The
compiled implementations from ``fastcrc`` are used when it is installed; the
table-driven fallbacks give the same answers everywhere else (tests check both
agree).
"""

from __future__ import annotations

from collections.abc import Callable


def reflected_table(poly: int) -> tuple[int, ...]:
    """The byte table of a reflected CRC-16 with the (reflected) polynomial ``poly``."""
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_ARC = reflected_table(0xA001)
_X25 = reflected_table(0x8408)


def crc16_arc_python(data: bytes) -> int:
    """Pure-Python CRC-16/ARC of ``data``."""
    crc = 0
    table = _ARC
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def crc16_x25_python(data: bytes) -> int:
    """Pure-Python CRC-16/X-25 of ``data``."""
    crc = 0xFFFF
    table = _X25
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc ^ 0xFFFF


def _load_compiled(name: str) -> Callable[[bytes], int] | None:
    try:
        from fastcrc import crc16
    except ImportError:  # no wheel for this platform: the fallback serves
        return None
    compiled: Callable[[bytes], int] = getattr(crc16, name)
    return compiled


crc16_arc_compiled = _load_compiled("arc")

#: The CRC-16/ARC implementation in use: compiled when available.
crc16_arc: Callable[[bytes], int] = crc16_arc_compiled or crc16_arc_python

IMPLEMENTATION = "fastcrc" if crc16_arc_compiled is not None else "python"

#: The CRC-16/X-25 implementation in use; fastcrc calls it ``ibm_sdlc``.
crc16_x25: Callable[[bytes], int] = _load_compiled("ibm_sdlc") or crc16_x25_python
