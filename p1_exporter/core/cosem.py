"""DLMS/COSEM push content (a data-notification APDU) to a :class:`Telegram`.

Three content layouts are in use on HAN ports, all recognised from the data:

* **list of structures** (Aidon; Swedish and Finnish Aidon modules): each element
  is ``structure(OBIS code, value[, structure(scaler, unit)])``;
* **flat list with codes** (Kamstrup, Kaifa in Sweden, Austrian operators): one
  structure where an OBIS code is followed by its value and, in the Austrian
  layout, by a ``structure(scaler, unit)``; loose elements (a list version, a
  clock, a meter number) may stand between;
* **list without codes** (Kaifa in Norway): the position decides the code,
  following the Norwegian NVE/NEK lists 1-3 (three-phase and single-phase).

Where the meter sends no scaler and unit, the maker's fixed ones apply (Kamstrup:
current in 10 mA, energy in 10 Wh; Kaifa: current in mA, voltage in 0.1 V);
a layout without scalers from another maker is refused rather than guessed.
Values are scaled exactly (one integer multiplication or division) into the
base units of the DSMR path: W, var, VA, J (Wh x 3600), varh, V, A, Hz.
OBIS codes become DSMR-style keys (``A.B.C.D.E.255`` -> ``A-B:C.D.E``); Kamstrup's
channel 1 (``1.1.x``) is the same meter as channel 0 and is read as such.
"""

from __future__ import annotations

import calendar
from types import MappingProxyType
from typing import NamedTuple

from p1_exporter.core.axdr import AxdrError, Value, decode
from p1_exporter.core.cipher import UnsupportedFrame
from p1_exporter.core.obis import CLOCK, HAN_IDENTITY, HAN_KAIFA_THREE_PHASE, KINDS, Kind
from p1_exporter.core.telegram import ObisLine, Register, Telegram

DATA_NOTIFICATION = 0x0F
LLC_HEADER = b"\xe6\xe7\x00"

# DLMS unit enumeration (Blue Book) -> (multiplier to base unit, base unit)
UNITS: dict[int, tuple[int, str]] = {
    27: (1, "W"),
    28: (1, "VA"),
    29: (1, "var"),
    30: (3600, "J"),  # Wh
    31: (1, "VAh"),
    32: (1, "varh"),
    33: (1, "A"),
    35: (1, "V"),
    44: (1, "Hz"),
    255: (1, ""),  # count, ratio (power factor)
}
_UNIT_NAMES = {
    27: "W",
    28: "VA",
    29: "var",
    30: "Wh",
    31: "VAh",
    32: "varh",
    33: "A",
    35: "V",
    44: "Hz",
    255: "",
}

_KAIFA_THREE = HAN_KAIFA_THREE_PHASE
_KAIFA_SINGLE = _KAIFA_THREE[:8] + _KAIFA_THREE[10:11] + _KAIFA_THREE[13:]
KAIFA_LAYOUTS: dict[int, tuple[str, ...]] = {
    1: _KAIFA_THREE[3:4],  # list 1: active power import alone
    len(_KAIFA_SINGLE) - 5: _KAIFA_SINGLE[:-5],  # list 2, single-phase (9)
    len(_KAIFA_THREE) - 5: _KAIFA_THREE[:-5],  # list 2, three-phase (13)
    len(_KAIFA_SINGLE): _KAIFA_SINGLE,  # list 3, single-phase (14)
    len(_KAIFA_THREE): _KAIFA_THREE,  # list 3, three-phase (18)
}

# Fixed (scaler, unit) of makers that send none, by the code's value group C and D.
_CURRENT = {31, 51, 71}
_VOLTAGE = {32, 52, 72}


def _maker_scaling(maker: str, code: str) -> tuple[int, int] | None:
    """(scaler, DLMS unit) for a value sent without them, or None when not known."""
    group = code.split(":", 1)[1].split(".")
    c, d = int(group[0]), int(group[1])
    if c in _CURRENT and d == 7:
        return (-2 if maker == "Kamstrup" else -3), 33
    if c in _VOLTAGE and d == 7:
        return (0 if maker == "Kamstrup" else -1), 35
    if c in (1, 2) and d == 7:
        return 0, 27
    if c in (3, 4) and d == 7:
        return 0, 29
    if c in (1, 2) and d == 8:
        return (1 if maker == "Kamstrup" else 0), 30
    if c in (3, 4) and d == 8:
        return (1 if maker == "Kamstrup" else 0), 32
    return None


class Notification(NamedTuple):
    """A decoded data-notification: its date-time (12 raw bytes) and body."""

    invoke_id: int
    date_time: bytes | None
    body: Value


def obis_key(code: bytes) -> str:
    """Six OBIS bytes as the DSMR-style key: ``A B C D E FF`` -> ``A-B:C.D.E``."""
    a, b, c, d, e, f = code
    if a == 1 and b == 1:
        b = 0  # Kamstrup numbers the meter itself channel 1
    key = f"{a}-{b}:{c}.{d}.{e}"
    return key if f == 255 else f"{key}.{f}"


def strip_llc(apdu: bytes) -> bytes:
    """The APDU without the LLC header (``E6 E7 00``) HDLC frames carry."""
    return apdu[3:] if apdu[:3] == LLC_HEADER else apdu


def parse_notification(apdu: bytes) -> Notification:
    """Decode a plain data-notification APDU; UnsupportedFrame for other APDUs."""
    if not apdu:
        raise AxdrError("empty APDU")
    tag = apdu[0]
    if tag != DATA_NOTIFICATION:
        raise UnsupportedFrame(
            f"unknown APDU tag 0x{tag:02X} (a data-notification, 0x0F, "
            "or general-glo-ciphering, 0xDB, is expected)"
        )
    if len(apdu) < 6:
        raise AxdrError("data-notification shorter than its header")
    invoke_id = int.from_bytes(apdu[1:5], "big")
    pos = 5
    marker = apdu[pos]
    date_time: bytes | None = None
    if marker == 0x00:
        pos += 1
    elif marker in (0x09, 0x0C):  # octet-string tag then length, or the length alone
        if marker == 0x09:
            pos += 1
        if pos >= len(apdu) or apdu[pos] != 0x0C or pos + 13 > len(apdu):
            raise AxdrError("data-notification date-time is not 12 bytes")
        date_time = bytes(apdu[pos + 1 : pos + 13])
        pos += 13
    else:
        raise AxdrError(f"data-notification date-time field starts with 0x{marker:02X}")
    body, end = decode(apdu, pos)
    if any(apdu[end:]):
        raise AxdrError(f"{len(apdu) - end} bytes after the notification body")
    return Notification(invoke_id, date_time, body)


def cosem_time(raw: bytes) -> float | None:
    """A COSEM date-time (12 bytes) as a UTC epoch; None when unspecified or invalid.

    Without a deviation from UTC (0x8000, as Norwegian meters send) the moment is
    unknown, so None rather than a guess.
    """
    if len(raw) != 12:
        return None
    year = int.from_bytes(raw[0:2], "big")
    month, day, hour, minute, second = raw[2], raw[3], raw[5], raw[6], raw[7]
    deviation = int.from_bytes(raw[9:11], "big", signed=True)
    if deviation == -0x8000 or not -720 <= deviation <= 720:
        return None
    if not (
        1970 <= year <= 2200
        and 1 <= month <= 12
        and 1 <= day <= 31
        and hour < 24
        and minute < 60
        and second < 60
    ):
        return None
    try:
        local = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    return float(local + deviation * 60)


def _is_code(item: Value) -> bool:
    return isinstance(item, bytes) and len(item) == 6


def _scaler_unit(item: Value) -> tuple[int, int] | None:
    """``structure(scaler, unit)`` as (scaler, unit), or None when ``item`` is not one."""
    if isinstance(item, tuple) and len(item) == 2:
        scaler, unit = item
        if isinstance(scaler, int) and isinstance(unit, int) and not isinstance(scaler, bool):
            return scaler, unit
    return None


class _Builder:
    """Collects decoded entries into the parts of a Telegram."""

    def __init__(self) -> None:
        self.registers: dict[str, Register] = {}
        self.texts: dict[str, str] = {}
        self.unknown: list[ObisLine] = []
        self.meter_time: float | None = None
        self.equipment_id: str | None = None

    def add(self, code: str, value: Value, scaling: tuple[int, int] | None) -> None:
        if code == CLOCK:
            if isinstance(value, bytes):
                self.meter_time = cosem_time(value)
            return
        role = HAN_IDENTITY.get(code)
        if role is not None:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
            if role == "equipment_id":
                self.equipment_id = text
            self.texts[code] = text
            return
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and scaling is not None
            and KINDS.get(code) is Kind.NUMBER
            and scaling[1] in UNITS
        ):
            self.registers[code] = _register(value, *scaling)
            return
        self.unknown.append(ObisLine(code, f"({value!r}{_scaling_text(scaling)})"))


def _scaling_text(scaling: tuple[int, int] | None) -> str:
    if scaling is None:
        return ""
    return f" scaler {scaling[0]} unit {scaling[1]}"


def _register(mantissa: int, scaler: int, unit: int) -> Register:
    """Exact base-unit value: one integer multiplication, at most one division."""
    multiplier, base = UNITS[unit]
    if scaler >= 0:
        value = float(mantissa * multiplier * 10**scaler)
    else:
        value = mantissa * multiplier / 10 ** (-scaler)
    name = _UNIT_NAMES[unit]
    raw = f"{mantissa}e{scaler}" if scaler else str(mantissa)
    return Register(value, base, f"{raw}*{name}" if name else raw)


def _maker(items: tuple[Value, ...]) -> str:
    for item in items:
        text = item.decode("ascii", "replace") if isinstance(item, bytes) else item
        if isinstance(text, str):
            if text.startswith("Kamstrup"):
                return "Kamstrup"
            if text.startswith("KFM"):
                return "Kaifa"
            if text.startswith("AIDON"):
                return "Aidon"
    return ""


def decode_body(body: Value, builder: _Builder) -> str:
    """Fill ``builder`` from a notification body; return the layout's name."""
    if not isinstance(body, tuple):
        raise UnsupportedFrame("notification body is not a list: unknown layout")
    if body and all(isinstance(item, tuple) and item and _is_code(item[0]) for item in body):
        for item in body:
            assert isinstance(item, tuple)
            code = obis_key(item[0])  # type: ignore[arg-type]
            if len(item) not in (2, 3):
                raise UnsupportedFrame(f"element {code} has {len(item)} parts: unknown layout")
            pair = _scaler_unit(item[2]) if len(item) == 3 else None
            if len(item) == 3 and pair is None:
                raise UnsupportedFrame(f"element {code} has no scaler and unit")
            builder.add(code, item[1], pair)
        return "list of structures"
    if any(_is_code(item) for item in body):
        maker = _maker(body)
        index = 0
        scaled = False
        while index < len(body):
            item = body[index]
            if not _is_code(item) or index + 1 >= len(body):
                index += 1  # a list version, clock or meter number standing alone
                if (
                    builder.equipment_id is None
                    and isinstance(item, bytes)
                    and 8 <= len(item) <= 32
                    and item.isascii()
                    and item.isalnum()
                ):
                    builder.equipment_id = item.decode("ascii")  # Austrian meter number
                continue
            assert isinstance(item, bytes)
            code = obis_key(item)
            value = body[index + 1]
            index += 2
            scaling = _scaler_unit(body[index]) if index < len(body) else None
            if scaling is not None:
                scaled = True
                index += 1
            elif isinstance(value, int) and maker in ("Kamstrup", "Kaifa"):
                scaling = _maker_scaling(maker, code)
            builder.add(code, value, scaling)
        if not scaled and maker not in ("Kamstrup", "Kaifa"):
            raise UnsupportedFrame(
                "values without scaler and unit from an unknown meter maker: unknown layout"
            )
        return "list with codes" + (f" ({maker})" if maker else "")
    codes = KAIFA_LAYOUTS.get(len(body))
    if codes is None or (len(body) > 1 and _maker(body[:1]) != "Kaifa"):
        raise UnsupportedFrame(f"list of {len(body)} elements without OBIS codes: unknown layout")
    for code, value in zip(codes, body, strict=True):
        fixed = _maker_scaling("Kaifa", code) if isinstance(value, int) else None
        builder.add(code, value, fixed)
    return "list without codes (Kaifa)"


def telegram_from_apdu(apdu: bytes, raw: bytes, transport: str) -> Telegram:
    """A Telegram from a plain data-notification APDU (LLC header allowed)."""
    notification = parse_notification(strip_llc(apdu))
    builder = _Builder()
    layout = decode_body(notification.body, builder)
    if builder.meter_time is None and notification.date_time is not None:
        builder.meter_time = cosem_time(notification.date_time)
    # The header is the same for every list a meter sends (it labels p1_meter_info).
    header = f"DLMS/COSEM {transport}, {layout}"
    return Telegram(
        raw=raw,
        header=header,
        dsmr_version=None,
        crc=None,
        crc_verified=True,  # the link layer's FCS or checksum was verified
        meter_time=builder.meter_time,
        equipment_id=builder.equipment_id,
        registers=MappingProxyType(builder.registers),
        texts=MappingProxyType(builder.texts),
        mbus=MappingProxyType({}),
        power_failure_log=(),
        month_peak=None,
        month_peak_time=None,
        peak_history=(),
        extra=(),
        unknown=tuple(builder.unknown),
        malformed=(),
    )
