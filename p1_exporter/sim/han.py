"""Simulated HAN meters: a :class:`MeterState` as the DLMS/COSEM push of an Aidon or Kaifa.

The layouts follow the real frames in ``tests/fixtures/han``: Aidon's list of
structures with OBIS code, value and scaler/unit (``aidon_se.hdlc``), and Kaifa's
Norwegian list 3 without codes (``kaifa_no_list3.hdlc``), each in an HDLC frame.
With keys, the APDU is sent as general-glo-ciphering (as Danish and Austrian meters
do); :func:`encrypt_p1` wraps a DSMR telegram the way Luxembourg's Smarty does.
"""

from __future__ import annotations

import struct
import time

from p1_exporter.core.cipher import Keys, encrypt
from p1_exporter.core.han_framing import hdlc_frame
from p1_exporter.sim.model import MeterState

HAN_DIALECTS = ("han-aidon", "han-kaifa")
#: The encrypted-P1 dialect: a DSMR 5 telegram wrapped with the meter's key.
ENCRYPTED = "encrypted"
_LLC = b"\xe6\xe7\x00"


def _u32(value: float) -> bytes:
    return b"\x06" + struct.pack(">I", max(0, min(0xFFFFFFFF, round(value))))


def _u16(value: float) -> bytes:
    return b"\x12" + struct.pack(">H", max(0, min(0xFFFF, round(value))))


def _i16(value: float) -> bytes:
    return b"\x10" + struct.pack(">h", max(-0x8000, min(0x7FFF, round(value))))


def _octets(data: bytes) -> bytes:
    return b"\x09" + bytes([len(data)]) + data


def _code(a: int, b: int, c: int, d: int, e: int) -> bytes:
    return _octets(bytes([a, b, c, d, e, 255]))


def _scaled(scaler: int, unit: int) -> bytes:
    return b"\x02\x02\x0f" + struct.pack(">b", scaler) + b"\x16" + bytes([unit])


def cosem_datetime(epoch: float) -> bytes:
    """A COSEM date-time in UTC (deviation 0), 12 bytes."""
    moment = time.gmtime(epoch)
    weekday = moment.tm_wday + 1
    return (
        struct.pack(">H", moment.tm_year)
        + bytes(
            [
                moment.tm_mon,
                moment.tm_mday,
                weekday,
                moment.tm_hour,
                moment.tm_min,
                moment.tm_sec,
                0x00,
            ]
        )
        + b"\x00\x00\x00"
    )


def _notification(body: bytes, epoch: float, *, with_time: bool) -> bytes:
    stamp = b"\x09\x0c" + cosem_datetime(epoch) if with_time else b"\x00"
    return b"\x0f\x40\x00\x00\x00" + stamp + body


def aidon_apdu(state: MeterState, epoch: float) -> bytes:
    """Aidon's list of structures (code, value, scaler/unit), as a Swedish RJ12 port sends."""
    items = [
        b"\x02\x02" + _code(0, 0, 96, 1, 0) + _octets(state.serial.encode("ascii")[:16]),
        b"\x02\x02" + _code(0, 0, 1, 0, 0) + _octets(cosem_datetime(epoch)),
        b"\x02\x03" + _code(1, 0, 1, 7, 0) + _u32(state.import_w) + _scaled(0, 27),
        b"\x02\x03" + _code(1, 0, 2, 7, 0) + _u32(state.export_w) + _scaled(0, 27),
    ]
    for index, c in enumerate((31, 51, 71)):
        items.append(
            b"\x02\x03" + _code(1, 0, c, 7, 0) + _i16(state.current[index] * 10) + _scaled(-1, 33)
        )
    for index, c in enumerate((32, 52, 72)):
        items.append(
            b"\x02\x03" + _code(1, 0, c, 7, 0) + _u16(state.voltage[index] * 10) + _scaled(-1, 35)
        )
    for index, c in enumerate((21, 41, 61)):
        items.append(
            b"\x02\x03" + _code(1, 0, c, 7, 0) + _u32(state.phase_import_w[index]) + _scaled(0, 27)
        )
    items.append(b"\x02\x03" + _code(1, 0, 1, 8, 0) + _u32(state.import_wh) + _scaled(0, 30))
    export_wh = state.export_low_wh + state.export_normal_wh
    items.append(b"\x02\x03" + _code(1, 0, 2, 8, 0) + _u32(export_wh) + _scaled(0, 30))
    body = b"\x01" + bytes([len(items)]) + b"".join(items)
    return _notification(body, epoch, with_time=False)


def kaifa_apdu(state: MeterState, epoch: float) -> bytes:
    """Kaifa's Norwegian list 3 (three-phase): 18 values whose position gives the code."""
    export_wh = state.export_low_wh + state.export_normal_wh
    values = [
        _octets(b"KFM_001"),
        _octets(state.serial.encode("ascii")[:16]),
        _octets(b"MA304H3E"),
        _u32(state.import_w),
        _u32(state.export_w),
        _u32(0),
        _u32(0),
        *(_u32(a * 1000) for a in state.current),
        *(_u32(v * 10) for v in state.voltage),
        _octets(cosem_datetime(epoch)),
        _u32(state.import_wh),
        _u32(export_wh),
        _u32(0),
        _u32(0),
    ]
    body = b"\x02" + bytes([len(values)]) + b"".join(values)
    return _notification(body, epoch, with_time=True)


def _counter(epoch: float) -> int:
    """A frame counter that rises with the clock (tenths of a second), no state needed."""
    return int(epoch * 10) & 0xFFFFFFFF


def render_han(
    state: MeterState,
    dialect: str,
    epoch: float,
    keys: Keys | None = None,
    system_title: bytes = b"SIM\x00\x00\x00\x00\x01",
) -> bytes:
    """One HDLC frame of ``dialect`` (han-aidon or han-kaifa); ciphered with ``keys``."""
    if dialect == "han-aidon":  # Aidon's and Kaifa's own HDLC addresses and control
        apdu, destination, source, control = aidon_apdu(state, epoch), b"\x41", b"\x08\x83", 0x13
    elif dialect == "han-kaifa":
        apdu, destination, source, control = kaifa_apdu(state, epoch), b"\x01", b"\x02\x01", 0x10
    else:
        raise ValueError(f"not a HAN dialect: {dialect!r}")
    if keys is not None:
        apdu = encrypt(apdu, keys, system_title, _counter(epoch), 0x30)
    return hdlc_frame(_LLC + apdu, destination=destination, source=source, control=control)


def encrypt_p1(
    telegram: bytes, keys: Keys, epoch: float, system_title: bytes = b"SIMgp\x00\x00\x01"
) -> bytes:
    """A DSMR telegram as an encrypted P1 frame (SC 0x30, the meter clock as counter)."""
    return encrypt(telegram, keys, system_title, _counter(epoch), 0x30)
