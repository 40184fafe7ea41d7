"""CRC-16/ARC, the checksum DSMR 4+ meters append after the ``!``.

Reflected polynomial 0xA001, initial value 0, no final XOR. The compiled
implementation from ``fastcrc`` is used when it is installed; the table-driven
fallback gives the same answers everywhere else (tests check both agree).
"""

from __future__ import annotations

from collections.abc import Callable


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def crc16_arc_python(data: bytes) -> int:
    """Pure-Python CRC-16/ARC of ``data``."""
    crc = 0
    table = _TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def _load_compiled() -> Callable[[bytes], int] | None:
    try:
        from fastcrc import crc16
    except ImportError:  # no wheel for this platform: the fallback serves
        return None
    arc: Callable[[bytes], int] = crc16.arc
    return arc


crc16_arc_compiled = _load_compiled()

#: The implementation in use: compiled when available.
crc16_arc: Callable[[bytes], int] = crc16_arc_compiled or crc16_arc_python

IMPLEMENTATION = "fastcrc" if crc16_arc_compiled is not None else "python"
