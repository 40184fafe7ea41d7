"""A-XDR decoding of DLMS/COSEM data (IEC 61334-6): the values inside a HAN push.

Hand-written rather than taken from ``dlms-cosem`` (read at version 25.1.0): its
decoder reads past the end of a short buffer without an error (a truncated frame
decodes into wrong values), an element count is trusted as sent (an array header
claiming four billion elements loops that many times), it has no type hints for
mypy --strict, and it brings six dependencies (attrs, asn1crypto, structlog,
python-dateutil, typing-extensions, cryptography) for what is ~100 lines here.
This decoder checks every length against the bytes left, bounds nesting, and
raises :class:`AxdrError` for anything it cannot read.

Values come out as plain Python: ``int``, ``bool``, ``float``, ``bytes`` (octet
strings, date-time), ``str`` (visible strings), ``None`` (null-data), and
``tuple`` for arrays and structures.
"""

from __future__ import annotations

import struct
from typing import TypeAlias

from p1_exporter.core.errors import ParseError

Value: TypeAlias = "int | bool | float | bytes | str | tuple[Value, ...] | None"

#: Deepest nesting of arrays/structures accepted (real pushes use two levels).
MAX_DEPTH = 8

# Fixed-size types: tag -> (size, struct format or "" for raw bytes)
_FIXED: dict[int, tuple[int, str]] = {
    3: (1, "?"),  # boolean
    5: (4, ">i"),  # double-long
    6: (4, ">I"),  # double-long-unsigned
    15: (1, ">b"),  # integer
    16: (2, ">h"),  # long
    17: (1, ">B"),  # unsigned
    18: (2, ">H"),  # long-unsigned
    20: (8, ">q"),  # long64
    21: (8, ">Q"),  # long64-unsigned
    22: (1, ">B"),  # enum
    23: (4, ">f"),  # float32
    24: (8, ">d"),  # float64
    25: (12, ""),  # date-time
    26: (5, ""),  # date
    27: (4, ""),  # time
}
_ARRAY, _STRUCTURE, _BIT_STRING, _OCTET_STRING, _VISIBLE_STRING, _UTF8_STRING, _BCD = (
    1,
    2,
    4,
    9,
    10,
    12,
    13,
)


class AxdrError(ParseError):
    """The data cannot be decoded as A-XDR (truncated, unknown type, too deep)."""


def read_length(data: bytes, pos: int) -> tuple[int, int]:
    """An A-XDR length at ``pos``: (length, next position)."""
    if pos >= len(data):
        raise AxdrError("data ends where a length was expected")
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    count = first & 0x7F
    if not 1 <= count <= 4 or pos + 1 + count > len(data):
        raise AxdrError(f"bad A-XDR length at byte {pos}")
    return int.from_bytes(data[pos + 1 : pos + 1 + count], "big"), pos + 1 + count


def decode(data: bytes, pos: int = 0, depth: int = 0) -> tuple[Value, int]:
    """Decode one tagged value at ``pos``: (value, position after it)."""
    if pos >= len(data):
        raise AxdrError("data ends where a value was expected")
    tag = data[pos]
    pos += 1
    fixed = _FIXED.get(tag)
    if fixed is not None:
        size, fmt = fixed
        end = pos + size
        if end > len(data):
            raise AxdrError(f"value of type {tag} runs past the end of the data")
        chunk = data[pos:end]
        if not fmt:
            return bytes(chunk), end
        value: Value = struct.unpack(fmt, chunk)[0]
        return value, end
    if tag == 0:
        return None, pos
    if tag in (_ARRAY, _STRUCTURE):
        if depth >= MAX_DEPTH:
            raise AxdrError(f"nesting deeper than {MAX_DEPTH}")
        count, pos = read_length(data, pos)
        if count > len(data) - pos:  # every element takes at least one byte
            raise AxdrError(f"{count} elements announced, {len(data) - pos} bytes left")
        items = []
        for _ in range(count):
            item, pos = decode(data, pos, depth + 1)
            items.append(item)
        return tuple(items), pos
    if tag in (_OCTET_STRING, _VISIBLE_STRING, _UTF8_STRING, _BCD, _BIT_STRING):
        length, pos = read_length(data, pos)
        if tag == _BIT_STRING:
            length = (length + 7) // 8
        end = pos + length
        if end > len(data):
            raise AxdrError(f"string of {length} bytes runs past the end of the data")
        raw = bytes(data[pos:end])
        if tag in (_VISIBLE_STRING, _UTF8_STRING):
            return raw.decode("utf-8", "replace"), end
        return raw, end
    raise AxdrError(f"unknown A-XDR type tag {tag} at byte {pos - 1}")
