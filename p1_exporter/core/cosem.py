"""DLMS/COSEM push content (a data-notification APDU) to a :class:`Telegram`.

Three content layouts are in use on HAN ports, all recognised from the data:

* **list of structures** (Aidon; Swedish and Finnish Aidon modules): each element
  is ``structure(OBIS code, value[, structure(scaler, unit)])``;
* **flat list with codes** (Kamstrup, Kaifa in Sweden, Austrian operators): one
  structure where an OBIS code is followed by its value and, in the Austrian
  layout, by a ``structure(scaler, unit)``; loose elements (a list version, a
  clock, a meter number) may stand between;
* **list without codes** (Kaifa in Norway): the position decides the code,
  following the Norwegian NVE/NEK lists 1-3 (three-phase and single-phase);
* **push object list first** (Landis+Gyr E450, E360, E570): the first element is
  the push setup's list of capture objects, ``structure(class, OBIS code,
  attribute, index)``, and element *n* is the value of capture object *n*.

Where the meter sends no scaler and unit, the maker's fixed ones apply (Kamstrup:
current in 10 mA, energy in 10 Wh; Kaifa: current in mA, voltage in 0.1 V;
Landis+Gyr: power and energy in W, var, Wh, varh, power factor in 0.001); a layout
without scalers from another maker is refused rather than guessed, and so are a
Landis+Gyr list's current and voltage, whose scalers differ between its models.
Kamstrup's fixed scalers depend on the meter type its list names: a current-transformer
meter (type 685...) sends current in mA and its energy unit is unknown (withheld); a
list that names no type (the Danish list) may come from either kind, so its current is
read only where the frame itself tells the two apart: the phases' voltage times current
must match the apparent power the same frame sends (its active and reactive power).
Landis+Gyr lists are known by their logical device name (``LGZ...``); one
without it is of an unknown maker.
Values are scaled exactly (one integer multiplication or division) into the
base units of the DSMR path: W, var, VA, J (Wh x 3600), varh, V, A, Hz.
OBIS codes become DSMR-style keys (``A.B.C.D.E.255`` -> ``A-B:C.D.E``); Kamstrup's
channel 1 (``1.1.x``) is the same meter as channel 0 and is read as such.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

from p1_exporter.core.axdr import AxdrError, Value, decode
from p1_exporter.core.cipher import UnsupportedFrame
from p1_exporter.core.obis import (
    CLOCK,
    HAN_IDENTITY,
    HAN_KAIFA_THREE_PHASE,
    HAN_KAMSTRUP_METER_TYPE,
    KINDS,
    Kind,
)
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
#: Landis+Gyr, by (C, D): what its E360, E450 and E570 lists agree on. Current and voltage
#: are left out: their scalers differ by model (E450: 10 mA and 1 V, E360: 10 mA and
#: 0.1 V, E570: 1 A and 1 V) and the list does not say which model sent it.
_LANDIS_GYR: dict[tuple[int, int], tuple[int, int]] = {
    **{(c, 7): (0, 27) for c in (1, 2, 21, 41, 61)},  # W
    **{(c, 7): (0, 29) for c in (3, 4)},  # var
    (13, 7): (-3, 255),  # power factor in 0.001
    **{(c, 8): (0, 30) for c in (1, 2)},  # Wh
    **{(c, 8): (0, 32) for c in (3, 4, 5, 6, 7, 8)},  # varh
}
#: Kamstrup, by the kind of meter its list names (the meter type it pushes): the scaler
#: of current and of energy (active Wh, reactive varh alike); a kind without one is not
#: exported. Kamstrup's HAN-NVE interface description numbers its types 684... (three-phase
#: direct), 685... (three-phase with current transformers, CT) and 686... (single-phase
#: direct) and gives current in 10 mA, energy in 10 Wh; its revision history names direct
#: meters' firmware only. A CT meter's current is in mA: amsreader-firmware issue #216's
#: frame (tests/fixtures/han/kamstrup_dk_ct.hdlc) reads 90.999 A beside the 90-120 A its
#: owner reports, and agrees with its own power and power factor only so; its energy unit
#: is not known. The Danish list names no type: there each frame's own figures decide
#: between the two current scalers (see _kamstrup_current_scaler).
KAMSTRUP_CT_TYPE = "685"
_KAMSTRUP: dict[str, dict[str, int]] = {
    "direct": {"current": -2, "energy": 1},  # a type that is not 685...
    "CT": {"current": -3},
    "no type": {"energy": 1},  # current: see _kamstrup_current_scaler
}
#: A Kamstrup list naming no meter type: the current scalers to try (direct meters: 10 mA;
#: CT meters: mA), the least apparent power (VA) at which the frame can tell them apart, and
#: how far the phases' U x I may lie from it (above: phases loaded unevenly or against each
#: other; below: rounding). The two scalers differ tenfold, so at most one can fit.
_KAMSTRUP_CURRENT_SCALERS = (-2, -3)
_KAMSTRUP_CHECK_MIN_VA = 200.0
_KAMSTRUP_CHECK_RATIO = (0.9, 3.0)
#: Makers with fixed scalers for values sent without them.
SCALING_MAKERS = ("Kamstrup", "Kaifa", "Landis+Gyr")
#: A meter's own scalers, set by its owner for values it sends without one (a meter
#: configured unlike its maker's documents, a Landis+Gyr model): quantity -> scaler, the
#: power of ten its integers are in (-1: 0.1 V, 3: kWh). They win over the maker's fixed
#: scalers and the Kamstrup current check; a scaler the meter sends itself wins over them.
Scalers = Mapping[str, int]
SCALER_KINDS = ("current", "voltage", "power", "energy")
#: Value group C of active (the rest: reactive) power and energy, total and per phase.
_ACTIVE = {1, 2, 21, 22, 41, 42, 61, 62}
_REACTIVE = {3, 4, 5, 6, 7, 8, 23, 24, 43, 44, 63, 64}  # 5-8: the four quadrants
_NO_SCALERS: Scalers = MappingProxyType({})


#: A code's value groups C and D (see _group): what the scaling rules look at.
Group = tuple[int, int]


def _owner_scaling(group: Group, scalers: Scalers) -> tuple[int, int] | None:
    """(scaler, DLMS unit) the meter's owner set for the quantity of a code in ``group``."""
    if not scalers:
        return None
    c, d = group
    if d == 7 and c in _CURRENT:
        kind, unit = "current", 33
    elif d == 7 and c in _VOLTAGE:
        kind, unit = "voltage", 35
    elif d in (7, 8) and c in _ACTIVE | _REACTIVE:
        kind = "power" if d == 7 else "energy"
        unit = (27 if c in _ACTIVE else 29) if d == 7 else (30 if c in _ACTIVE else 32)
    else:
        return None
    return None if kind not in scalers else (scalers[kind], unit)


def _group(code: str) -> Group:
    """Value groups C and D of a DSMR-style key (``A-B:C.D.E``)."""
    group = code.split(":", 1)[1].split(".")
    return int(group[0]), int(group[1])


def _is_current(group: Group) -> bool:
    c, d = group
    return c in _CURRENT and d == 7


def _kamstrup_current_scaler(currents: dict[str, int], builder: _Builder) -> int | None:
    """The current scaler under which the phases' voltage times current agrees with the
    apparent power this frame sends (from its total active and reactive power), or None
    when the frame cannot tell (too little load, a missing value, or neither fits)."""
    values = {_group(code): register.value for code, register in builder.registers.items()}
    try:
        active = values[(1, 7)] - values[(2, 7)]
        reactive = values[(3, 7)] - values[(4, 7)]
        volt_amps = sum(values[(_group(code)[0] + 1, 7)] * raw for code, raw in currents.items())
    except KeyError:
        return None
    apparent = math.hypot(active, reactive)
    if not currents or apparent < _KAMSTRUP_CHECK_MIN_VA:
        return None
    low, high = _KAMSTRUP_CHECK_RATIO
    for scaler in _KAMSTRUP_CURRENT_SCALERS:
        if low <= volt_amps * 10.0**scaler / apparent <= high:
            return scaler
    return None


def _maker_scaling(maker: str, group: Group, kind: str = "no type") -> tuple[int, int] | None:
    """(scaler, DLMS unit) for a value of a code in ``group`` sent without them, or None
    when not known (or ``maker`` has no fixed scalers).

    ``kind`` is a Kamstrup meter's kind (a key of ``_KAMSTRUP``); other makers ignore it.
    """
    if maker not in SCALING_MAKERS:
        return None
    c, d = group
    if maker == "Landis+Gyr":
        return _LANDIS_GYR.get((c, d))
    kamstrup = _KAMSTRUP[kind] if maker == "Kamstrup" else None
    if c in _CURRENT and d == 7:
        if kamstrup is None:
            return -3, 33
        return None if "current" not in kamstrup else (kamstrup["current"], 33)
    if c in _VOLTAGE and d == 7:
        return (0 if maker == "Kamstrup" else -1), 35
    if c in (1, 2) and d == 7:
        return 0, 27
    if c in (3, 4) and d == 7:
        return 0, 29
    if c in (1, 2, 3, 4) and d == 8:
        unit = 30 if c in (1, 2) else 32
        if kamstrup is None:
            return 0, unit
        return None if "energy" not in kamstrup else (kamstrup["energy"], unit)
    return None


#: Volts a maker's fixed voltage scaler may give (0: a phase without voltage). A meter
#: configured otherwise (a Swedish Kamstrup sending 0.01 V, amsreader-firmware issue
#: #970) would read hundreds of times too high with it: such a value is withheld.
_PLAUSIBLE_VOLTS = (80, 500)


def _fixed_scaling_fits(group: Group, value: int, scaling: tuple[int, int]) -> bool:
    """Whether a scaler not sent by the meter gives ``value`` (of a code in ``group``) a
    value a household meter can show."""
    c, d = group
    if c in _VOLTAGE and d == 7 and value != 0:
        volts = value * 10.0 ** scaling[0]
        return _PLAUSIBLE_VOLTS[0] <= volts <= _PLAUSIBLE_VOLTS[1]
    return True


def _kamstrup_kind(items: tuple[Value, ...]) -> str:
    """The kind of Kamstrup meter a flat list with codes names by its meter type."""
    for index, item in enumerate(items[:-1]):
        if isinstance(item, bytes) and _is_code(item) and obis_key(item) == HAN_KAMSTRUP_METER_TYPE:
            value = items[index + 1]
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
            if isinstance(text, str):  # a visible-string, or an octet-string of digits
                return "CT" if text.startswith(KAMSTRUP_CT_TYPE) else "direct"
    return "no type"


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
        #: Known codes whose value cannot be exported as sent (no scaler and unit, say).
        self.withheld: list[ObisLine] = []
        self.meter_time: float | None = None
        self.equipment_id: str | None = None

    def add(
        self,
        code: str,
        value: Value,
        scaling: tuple[int, int] | None,
        withheld: str = "sent without scaler and unit",
    ) -> None:
        """Add one entry; ``withheld`` says why a known code's integer without ``scaling``
        is not exported."""
        if code == CLOCK:
            if isinstance(value, bytes):
                self.meter_time = cosem_time(value)
            return
        role = HAN_IDENTITY.get(code)
        if role is not None:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
            if role == "equipment_id" or (
                role == "logical device name" and self.equipment_id is None
            ):
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
        raw = f"({value!r}{_scaling_text(scaling)})"
        if code in KINDS and isinstance(value, int) and scaling is None:
            # A code the table knows, sent without the scaler that would give its unit.
            self.withheld.append(ObisLine(code, f"{raw} {withheld}: not exported"))
            return
        self.unknown.append(ObisLine(code, raw))


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
            if text.startswith("LGZ"):
                return "Landis+Gyr"
    return ""


#: DLMS interface classes whose attribute 2 a push carries as a value.
_VALUE_CLASSES = {1: "data", 3: "register", 4: "extended register", 8: "clock"}
_PUSH_SETUP_CLASS = 40


def _capture_objects(body: tuple[Value, ...]) -> list[tuple[int, bytes, int]] | None:
    """(class, code, attribute) of each value when the body starts with its push object
    list (whose own first entry is that list: push setup, attribute 2); else None."""
    head = body[0] if body else None
    if not isinstance(head, tuple) or len(head) != len(body):
        return None
    objects: list[tuple[int, bytes, int]] = []
    for entry in head:
        if not (isinstance(entry, tuple) and len(entry) == 4 and _is_code(entry[1])):
            return None
        cls, code, attribute = entry[0], entry[1], entry[2]
        if not (isinstance(cls, int) and isinstance(attribute, int)):
            return None
        assert isinstance(code, bytes)
        objects.append((cls, code, attribute))
    if objects[0][0] != _PUSH_SETUP_CLASS or objects[0][2] != 2:
        return None
    return objects


def _decode_push_list(
    body: tuple[Value, ...],
    objects: list[tuple[int, bytes, int]],
    builder: _Builder,
    scalers: Scalers,
) -> str:
    maker = _maker(body[1:])
    if maker not in SCALING_MAKERS:
        if not scalers:
            raise UnsupportedFrame(_UNKNOWN_MAKER)
        maker = maker or "an unnamed maker"  # the owner's scalers alone apply
    for (cls, raw_code, attribute), value in zip(objects[1:], body[1:], strict=True):
        if cls == _PUSH_SETUP_CLASS:
            continue  # the push setup's own name
        code = obis_key(raw_code)
        if cls not in _VALUE_CLASSES or attribute != 2:
            builder.unknown.append(ObisLine(code, f"(class {cls} attribute {attribute})"))
            continue
        if isinstance(value, int):
            _add_fixed(builder, code, _group(code), value, maker, scalers)
        else:
            builder.add(code, value, None)
    return f"push object list ({maker})"


def _add_fixed(
    builder: _Builder,
    code: str,
    group: Group,
    value: int,
    maker: str,
    scalers: Scalers,
    kind: str = "no type",
) -> None:
    """Add an integer sent without scaler: with its owner's scaler, else its maker's fixed
    one (``kind``: see _maker_scaling), unless that makes it implausible (then kept as
    sent, with the reason)."""
    owned = _owner_scaling(group, scalers)
    scaling = owned or _maker_scaling(maker, group, kind)
    if scaling is not None and not _fixed_scaling_fits(group, value, scaling):
        whose = "the configured" if owned else f"{maker}'s fixed"
        builder.add(code, value, None, f"implausible with {whose} scaler {scaling[0]}")
        return
    builder.add(code, value, scaling)


_UNKNOWN_MAKER = (
    "values without scaler and unit from an unknown meter maker: unknown layout "
    "(the meter's han_scalers would read them)"
)


def decode_body(body: Value, builder: _Builder, scalers: Scalers = _NO_SCALERS) -> str:
    """Fill ``builder`` from a notification body; return the layout's name."""
    if not isinstance(body, tuple):
        raise UnsupportedFrame("notification body is not a list: unknown layout")
    objects = _capture_objects(body)
    if objects is not None:
        return _decode_push_list(body, objects, builder, scalers)
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
        kind = _kamstrup_kind(body) if maker == "Kamstrup" else ""
        unsure: dict[str, int] = {}  # currents of a Kamstrup list naming no type
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
            elif (
                isinstance(value, int)
                and not isinstance(value, bool)
                and (maker in ("Kamstrup", "Kaifa") or scalers)
            ):
                group = _group(code)
                if (
                    kind == "no type"
                    and _is_current(group)
                    and _owner_scaling(group, scalers) is None
                ):
                    unsure[code] = value
                    continue
                # Only Kamstrup and Kaifa have fixed scalers for a flat list with codes.
                fixed_maker = maker if maker in ("Kamstrup", "Kaifa") else ""
                _add_fixed(builder, code, group, value, fixed_maker, scalers, kind or "no type")
                continue
            builder.add(code, value, scaling)
        if unsure:
            scaler = _kamstrup_current_scaler(unsure, builder)
            for code, value in unsure.items():
                builder.add(code, value, None if scaler is None else (scaler, 33))
        if not scaled and maker not in ("Kamstrup", "Kaifa") and not scalers:
            raise UnsupportedFrame(_UNKNOWN_MAKER)
        return "list with codes" + (f" ({maker})" if maker else "")
    codes = KAIFA_LAYOUTS.get(len(body))
    if codes is None or (len(body) > 1 and _maker(body[:1]) != "Kaifa"):
        raise UnsupportedFrame(f"list of {len(body)} elements without OBIS codes: unknown layout")
    for code, value in zip(codes, body, strict=True):
        if isinstance(value, int) and not isinstance(value, bool):
            _add_fixed(builder, code, _group(code), value, "Kaifa", scalers)
        else:
            builder.add(code, value, None)
    return "list without codes (Kaifa)"


def telegram_from_apdu(
    apdu: bytes, raw: bytes, transport: str, scalers: Scalers = _NO_SCALERS
) -> Telegram:
    """A Telegram from a plain data-notification APDU (LLC header allowed); ``scalers``:
    the owner's scalers for values sent without one."""
    notification = parse_notification(strip_llc(apdu))
    builder = _Builder()
    layout = decode_body(notification.body, builder, scalers)
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
        extra=tuple(builder.withheld),
        unknown=tuple(builder.unknown),
        malformed=(),
    )
