"""Building test telegrams: the tests' own CRC-16/ARC, sealing, editing and corrupting.

:func:`reference_crc` is computed bit by bit here, independently of the code under test.
"""

from __future__ import annotations

import re

from tests.helpers.fixtures import V5


def reference_crc(data: bytes) -> int:
    """CRC-16/ARC bit by bit (reflected polynomial 0xA001, initial 0, no final XOR)."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def seal(body: bytes, newline: bytes = b"\r\n") -> bytes:
    """Append a correct CRC line to ``body``, which runs from ``/`` up to and including ``!``."""
    assert body.startswith(b"/") and body.endswith(b"!")
    return body + f"{reference_crc(body):04X}".encode() + newline


def content(telegram_bytes: bytes) -> bytes:
    """The ``/`` .. ``!`` part of a telegram (what the CRC covers)."""
    return telegram_bytes[: telegram_bytes.rindex(b"\n!") + 2]


def make_telegram(*lines: str, header: str = "XMX5SYNTHETIC-1") -> bytes:
    """A DSMR 5 telegram with a valid CRC, CRLF line ends."""
    return seal((f"/{header}\r\n\r\n" + "".join(f"{line}\r\n" for line in lines) + "!").encode())


def with_crc(body: bytes) -> bytes:
    """Recompute the CRC line of a telegram (everything up to and including ``!``)."""
    end = body.index(b"!") + 1
    return body[:end] + b"%04X\r\n" % reference_crc(body[:end])


def replace_line(telegram: bytes, old: bytes, new: bytes) -> bytes:
    """``telegram`` with one exact piece of text replaced and a correct CRC."""
    assert telegram.count(old) == 1, f"{old!r} must occur exactly once"
    return with_crc(telegram.replace(old, new))


def corrupt_crc(telegram: bytes) -> bytes:
    """``telegram`` with one digit of the body changed, so only the CRC tells."""
    match = re.search(rb"1-0:1\.7\.0\((\d)", telegram)
    assert match is not None
    pos = match.start(1)
    digit = b"7" if telegram[pos : pos + 1] != b"7" else b"3"
    return telegram[:pos] + digit + telegram[pos + 1 :]


KWH_LINE = b"1-0:1.8.1(000004.426*kWh)"


def v5_at(kwh: str) -> bytes:
    """The v5 fixture with its tariff-1 import register set to ``kwh`` (CRC recomputed)."""
    return replace_line(V5, KWH_LINE, b"1-0:1.8.1(%s*kWh)" % kwh.encode())


#: Things no fixture sends: per-phase reactive power, average voltage, an M-Bus device of
#: another type (cooling, in GJ; warm water in m3), and a text message.
EXTRAS = make_telegram(
    "1-3:0.2.8(50)",
    "0-0:1.0.0(240115083000W)",
    "0-0:96.1.1(4B384547303034303436333935353037)",
    "1-0:1.8.0(000010.000*kWh)",
    "1-0:1.8.1(000004.000*kWh)",
    "1-0:2.8.0(000003.500*kWh)",
    "1-0:23.7.0(00.011*kvar)",
    "1-0:43.7.0(00.012*kvar)",
    "1-0:63.7.0(00.013*kvar)",
    "1-0:24.7.0(00.021*kvar)",
    "1-0:44.7.0(00.022*kvar)",
    "1-0:64.7.0(00.023*kvar)",
    "1-0:32.24.0(231.5*V)",
    "1-0:52.24.0(232.5*V)",
    "1-0:72.24.0(233.5*V)",
    "0-0:96.13.1(3031)",
    "0-0:96.13.0(48656C6C6F)",
    "0-3:24.1.0(010)",
    "0-3:96.1.0(434F4F4C)",
    "0-3:24.2.1(240115080000W)(00012.345*GJ)",
    "0-4:24.1.0(006)",
    "0-4:24.2.1(240115082500W)(00001.250*m3)",
)
