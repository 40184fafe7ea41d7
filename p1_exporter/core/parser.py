"""Decode the content of a CRC-checked frame into a :class:`Telegram`.

Lines are read by OBIS code (see :mod:`p1_exporter.core.obis`). A malformed line is
recorded and skipped; an unknown code is kept with its raw value.

Each line is decoded on its own into an *effect* (which field it sets, and to
what), so decoded lines can be remembered: a meter repeats most of its lines
from one telegram to the next, and a bounded memo of recent lines turns those
into one dictionary lookup. Only lines whose meaning does not depend on their
neighbours are remembered.
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Final, Literal

from p1_exporter.core.checksum import CheckedFrame
from p1_exporter.core.clock import is_placeholder_time, parse_meter_time
from p1_exporter.core.errors import ParseError
from p1_exporter.core.obis import (
    EQUIPMENT_ID_CODES,
    KINDS,
    MBUS_LEGACY_READING,
    VERSION_CODES,
    Kind,
    lower_bound,
    mbus_legacy_code,
)
from p1_exporter.core.telegram import (
    LineIssue,
    MBusDevice,
    MonthPeak,
    ObisLine,
    PowerFailure,
    Register,
    Telegram,
)
from p1_exporter.core.units import UNITS, UnitError, to_register

_OBIS_SHAPE = re.compile(r"\d{1,3}-\d{1,3}:\d{1,3}\.\d{1,3}\.\d{1,3}")
_POW10 = tuple(10**n for n in range(19))
_NUMBER = Kind.NUMBER
_new = tuple.__new__

# Effect targets: what a decoded line sets. An effect is (target, key, value), typed per
# target, so the loop that applies effects is checked without casts.
_REGISTER: Final = 0
_TEXT: Final = 1
_CLOCK: Final = 2
_MBUS: Final = 3
_FAILURES: Final = 4
_PEAK: Final = 5
_HISTORY: Final = 6
_EXTRA: Final = 7
_UNKNOWN: Final = 8
_BAD: Final = 9
_LEGACY: Final = 10
_BOUNDS: Final = 11
MBusSlot = Literal["type", "id", "valve", "reading", "placeholder"]
MBusValue = int | str | None | tuple[Register, float]
Effect = (
    tuple[Literal[0], str, Register]  # _REGISTER
    | tuple[Literal[1], str, str]  # _TEXT
    | tuple[Literal[2], str, float | None]  # _CLOCK (None: never set)
    | tuple[Literal[3], tuple[int, MBusSlot], MBusValue]  # _MBUS
    | tuple[Literal[4], str, tuple[PowerFailure, ...]]  # _FAILURES
    | tuple[Literal[5], str, tuple[Register, float | None]]  # _PEAK
    | tuple[Literal[6], str, tuple[MonthPeak, ...]]  # _HISTORY
    | tuple[Literal[7, 8], str, ObisLine]  # _EXTRA, _UNKNOWN
    | tuple[Literal[9], None, LineIssue]  # _BAD
    | tuple[Literal[10], int, tuple[str, str]]  # _LEGACY: channel, (stamp, unit)
    | tuple[Literal[11], str, tuple[Register, Register]]  # _BOUNDS: (upper, lower)
)

#: Bytes one stream's line memo may hold (both of its memos, everything they refer to;
#: beyond that only its own empty dicts, under 1 KiB).
#: A realistic stream (voltages, currents and per-phase powers changing every second)
#: stays well under it; tests/test_parser_lines.py measures that.
MEMO_SIZE = 192 * 1024
#: What :class:`LineMemo` counts for one entry, an upper bound of what it holds (the key,
#: the effect with its strings, registers and log records, the dict slot), measured on
#: every kind of line: a fixed part, a part per character of the line or value text, and
#: a part per record of a power-failure log or peak history.
_ENTRY_BYTES = 640
_VALUE_BYTES = 320
_CHAR_BYTES = 4
_RECORD_BYTES = 160


def decode_hex_text(value: str) -> str:
    """Hex-encoded text as text when it decodes to printable ASCII; else unchanged."""
    if not value or len(value) % 2:
        return value
    try:
        decoded = bytes.fromhex(value).decode("ascii")
    except ValueError:
        return value
    return decoded if decoded.isprintable() else value


def _single(groups: list[str]) -> str:
    if len(groups) != 1:
        raise ValueError(f"expected one value, got {len(groups)}")
    return groups[0]


def _byte(text: str) -> int:
    """A one-byte field (M-Bus device type, valve position): a huge number would not even
    convert to a float when exported, so anything outside 0-255 is a malformed line."""
    value = int(text)
    if not 0 <= value <= 255:
        raise ValueError(f"expected 0-255, not {text[:20]!r}")
    return value


def _failure_log(groups: list[str]) -> tuple[PowerFailure, ...]:
    """``(n)(code)(end)(duration*s)...``; ``()``, ``(0)()`` and ``(0)(code)`` are empty.

    Every entry the meter states is kept, placeholders too (Kaifa's default entry
    ``(000101000001W)(2147483647*s)``): those have ``end_time`` None, and no metric
    is made from an entry without a real end time.
    """
    if not groups[0]:
        return ()
    count = int(groups[0])
    pairs = groups[2:]
    if count == 0 and not any(pairs):
        return ()
    if len(pairs) != 2 * count:
        raise ValueError(f"log announces {count} events but holds {len(pairs) // 2}")
    events = []
    for index in range(0, len(pairs), 2):
        duration = to_register(pairs[index + 1])
        if duration.unit != "s":
            raise ValueError(f"duration without seconds: {pairs[index + 1]!r}")
        events.append(PowerFailure(parse_meter_time(pairs[index]), int(duration.value)))
    return tuple(events)


def _month_peak(groups: list[str]) -> tuple[Register, float | None]:
    """Belgian month peak: ``(ts)(value*kW)`` or ``(value*kW)(ts)``."""
    if len(groups) != 2:
        raise ValueError(f"expected a time and a value, got {len(groups)} values")
    first, second = groups
    stamp, value = (second, first) if "*" in first else (first, second)
    return to_register(value), parse_meter_time(stamp)


def _peak_history(groups: list[str]) -> tuple[MonthPeak, ...] | None:
    """Belgian peak history: ``(n)(code)(code)`` then n (start)(time)(value); else None."""
    if len(groups) < 3 or not groups[0].isdecimal() or ":" not in groups[1]:
        return None  # another layout (e.g. a Hungarian billing snapshot): kept raw
    count = int(groups[0])
    entries = groups[3:]
    if len(entries) != 3 * count:
        raise ValueError(f"history announces {count} months but holds {len(entries) // 3}")
    months = []
    for index in range(0, len(entries), 3):
        value = to_register(entries[index + 2])
        months.append(
            MonthPeak(
                parse_meter_time(entries[index]),
                parse_meter_time(entries[index + 1]),
                value.value,
            )
        )
    return tuple(months)


def _mbus_reading(
    channel: int, stamp: str, value: str
) -> tuple[Literal[3], tuple[int, MBusSlot], MBusValue]:
    when = parse_meter_time(stamp)
    if when is None or "*" not in value:
        # A placeholder (no unit, a 1970 or impossible date): no reading, never a zero.
        return (_MBUS, (channel, "placeholder"), f"({stamp})({value})")
    return (_MBUS, (channel, "reading"), (to_register(value), when))


def _known(code: str, kind: Kind, groups: list[str]) -> Effect:
    if kind is Kind.NUMBER:
        return (_REGISTER, code, to_register(_single(groups)))
    if kind is Kind.BOUNDS:
        if len(groups) != 2:
            raise ValueError(f"expected an upper and a lower value, got {len(groups)}")
        return (_BOUNDS, code, (to_register(groups[0]), to_register(groups[1])))
    if kind is Kind.TIME:
        value = _single(groups)
        when = parse_meter_time(value)
        if when is None and not is_placeholder_time(value):
            raise ValueError(f"not a valid meter time: {value!r}")
        return (_CLOCK, code, when)  # None: a clock never set; no meter time, not malformed
    if kind is Kind.HEX_TEXT:
        return (_TEXT, code, decode_hex_text(_single(groups)))
    if kind is Kind.TEXT or kind is Kind.VERSION:
        return (_TEXT, code, _single(groups))
    if kind is Kind.FAILURE_LOG:
        return (_FAILURES, code, _failure_log(groups))
    if kind is Kind.MONTH_PEAK:
        return (_PEAK, code, _month_peak(groups))
    if kind is Kind.PEAK_HISTORY:
        history = _peak_history(groups)
        if history is None:
            return (_EXTRA, code, ObisLine(code, "(" + ")(".join(groups) + ")"))
        return (_HISTORY, code, history)
    channel = int(code[2])
    if kind is Kind.MBUS_TYPE:
        return (_MBUS, (channel, "type"), _byte(_single(groups)))
    if kind is Kind.MBUS_ID:
        value = _single(groups)
        return (_MBUS, (channel, "id"), decode_hex_text(value) if value else None)
    if kind is Kind.MBUS_VALVE:
        return (_MBUS, (channel, "valve"), _byte(_single(groups)))
    if kind is Kind.MBUS_READING:
        return _mbus_reading(channel, groups[0], groups[1] if len(groups) > 1 else "")
    # Kind.MBUS_LEGACY: (ts)(..)(..)(..)(code)(unit); the value follows on the next line
    if len(groups) != 6:
        raise ValueError(f"expected 6 values, got {len(groups)}")
    return (_LEGACY, channel, (groups[0], groups[5]))


def decode_line(raw: str) -> Effect:
    """Decode one line (not a DSMR 2.2 value-only continuation line) into an effect."""
    line = raw.strip()
    code, paren, rest = line.partition("(")
    code = code.strip()
    if code.endswith("*255"):  # EasyMeter appends the OBIS F group
        code = code[:-4]
    elif code.count(".") == 2 and ":" not in code and "-" not in code:
        code = "1-0:" + code  # codes sent without their A-B prefix
    if not paren or not rest.endswith(")"):
        return (_BAD, None, LineIssue(raw, "no value in parentheses"))
    groups = rest[:-1].split(")(")
    kind = KINDS.get(code)
    if kind is None:
        if _OBIS_SHAPE.fullmatch(code):
            return (_UNKNOWN, code, ObisLine(code, "(" + rest))
        return (_BAD, None, LineIssue(raw, f"not an OBIS code: {code!r}"))
    try:
        return _known(code, kind, groups)
    except (ValueError, IndexError) as exc:
        return (_BAD, None, LineIssue(raw, str(exc) or type(exc).__name__))


def _decode_number_line(line: str, memo: LineMemo) -> Effect | None:
    """The short path for ``code(digits[.digits][*unit])``; None sends the line the long way."""
    code, _, rest = line.partition("(")
    if KINDS.get(code) is not _NUMBER or rest[-1:] != ")":
        return None
    body = rest[:-1]
    values = memo.values
    if values is not None:
        register = values.get(body)
        if register is None:
            register = memo.older_values.get(body)
            if register is not None:
                memo.remember_value(body, register)
        if register is not None:
            return (_REGISTER, code, register)
    number, star, unit = body.partition("*")
    whole, dot, fraction = number.partition(".")
    digits = whole + fraction if dot else whole
    if not digits.isdecimal() or len(digits) > 18 or not whole or (dot and not fraction):
        return None
    if star:
        spec = UNITS.get(unit)
        if spec is None:
            return None
        numerator, denominator, base = spec
        value = int(digits) * numerator / (_POW10[len(fraction)] * denominator)
        register = _new(Register, (value, base, body))
    else:
        register = _new(Register, (int(digits) / _POW10[len(fraction)], "", body))
    if values is not None:
        memo.remember_value(body, register)
    return (_REGISTER, code, register)


class LineMemo:
    """Bounded memos shared by the telegrams of one stream; ``limit`` is in bytes (0 turns
    them off).

    ``effects`` maps whole lines to what they set; ``values`` maps value texts to
    registers, since values recur across lines (00.095*kW on one phase now, on another
    later), so even a changed line often needs no arithmetic.

    Memory: each entry is counted at an upper bound of its size (see ``_ENTRY_BYTES``).
    When the counted bytes would pass half the limit, both memos become the older
    generation (``older``, ``older_values``) and new ones start; an entry found in the
    older generation is brought back. Lines a meter repeats every telegram so survive,
    while those that change (voltages, currents, the clock) age out: at most ``limit``
    bytes, on any stream.
    """

    __slots__ = ("effects", "half", "limit", "older", "older_values", "size", "values")

    def __init__(self, limit: int = MEMO_SIZE) -> None:
        self.limit = limit
        self.half = limit // 2  # what one generation may count
        self.size = 0  # counted bytes of this generation (effects and values)
        self.effects: dict[str, Effect] = {}
        self.older: dict[str, Effect] = {}
        self.values: dict[str, Register] | None = {} if limit else None
        self.older_values: dict[str, Register] = {}

    def _next_generation(self) -> None:
        """This generation becomes the older one; the older one is dropped."""
        # In place, then swapped: a decode in progress may hold a dict's .get.
        self.older.clear()
        self.older, self.effects = self.effects, self.older
        if self.values is not None:
            self.older_values.clear()
            self.older_values, self.values = self.values, self.older_values
        self.size = 0

    def remember(self, line: str, effect: Effect) -> None:
        """Keep a context-free line's effect."""
        if not self.limit or effect[0] == _LEGACY:
            return
        cost = _ENTRY_BYTES + _CHAR_BYTES * len(line)
        if effect[0] == _FAILURES or effect[0] == _HISTORY:
            cost += _RECORD_BYTES * len(effect[2])
        if self.size + cost > self.half:
            if cost > self.half:
                return  # bigger than a generation: not kept
            self._next_generation()
        self.size += cost
        self.effects[line] = effect

    def remember_value(self, text: str, register: Register) -> None:
        """Keep the register a value text decodes to."""
        cost = _VALUE_BYTES + _CHAR_BYTES * len(text)
        if self.values is None or cost > self.half:
            return
        if self.size + cost > self.half:
            self._next_generation()
        self.size += cost
        self.values[text] = register

    def recall_older(self, line: str) -> Effect | None:
        """A line of the previous generation, brought into this one."""
        effect = self.older.get(line)
        if effect is not None:
            self.remember(line, effect)
        return effect


_NO_MEMO = LineMemo(limit=0)


def _mbus_devices(slots: dict[int, dict[MBusSlot, MBusValue]]) -> dict[int, MBusDevice]:
    devices = {}
    for channel, slot in sorted(slots.items()):
        device_type = slot.get("type")
        equipment_id = slot.get("id")
        valve = slot.get("valve")
        reading = slot.get("reading")
        register, when = reading if isinstance(reading, tuple) else (None, None)
        devices[channel] = MBusDevice(
            channel,
            device_type if isinstance(device_type, int) else None,
            equipment_id if isinstance(equipment_id, str) else None,
            register,
            when,
            valve if isinstance(valve, int) else None,
        )
    return devices


def _dsmr_version(texts: dict[str, str]) -> str | None:
    version = next((texts[code] for code in VERSION_CODES if texts.get(code)), None)
    if not version or not version.isdecimal() or len(version) < 2:
        return None
    return f"{version[0]}.{version[1]}"


def parse_content(frame: bytes, checked: CheckedFrame, memo: LineMemo | None = None) -> Telegram:
    """Decode a frame whose CRC has been checked (see :func:`check_frame`)."""
    text = frame[: checked.content_end - 1].decode("latin-1")
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    header = lines[0][1:].strip()
    if not header:
        raise ParseError("telegram has no identification header after '/'")
    memo = memo or _NO_MEMO
    recall = memo.effects.get
    recall_older = memo.older.get  # either dict will do after a swap: both hold true effects
    remember = memo.remember
    registers: dict[str, Register] = {}
    texts: dict[str, str] = {}
    mbus: dict[int, dict[MBusSlot, MBusValue]] = {}
    clock: float | None = None
    failures: tuple[PowerFailure, ...] = ()
    peak: tuple[Register, float | None] | None = None
    history: tuple[MonthPeak, ...] = ()
    extra: list[ObisLine] = []
    unknown: list[ObisLine] = []
    malformed: list[LineIssue] = []
    legacy: tuple[int, str, str] | None = None
    for line in lines[1:]:
        if not line:
            continue
        if legacy is not None:
            channel, stamp, unit = legacy
            legacy = None
            value = line.strip()
            if value[:1] == "(" and value[-1:] == ")":
                value = value[1:-1]
                try:
                    _, key, result = _mbus_reading(
                        channel, stamp, f"{value}*{unit}" if unit else value
                    )
                except UnitError as exc:
                    malformed.append(LineIssue(line, str(exc)))
                    continue
                mbus.setdefault(channel, {})[key[1]] = result
                continue
            malformed.append(LineIssue(mbus_legacy_code(channel), "its value line is missing"))
        if line[0] == "(":
            malformed.append(
                LineIssue(line, f"value line without a preceding {MBUS_LEGACY_READING} line")
            )
            continue
        effect = recall(line)
        if effect is None:
            effect = recall_older(line)  # from the older generation, brought back
            if effect is None:
                effect = _decode_number_line(line, memo) or decode_line(line)
            remember(line, effect)
        if effect[0] == _REGISTER:
            registers[effect[1]] = effect[2]
        elif effect[0] == _MBUS:
            mbus.setdefault(effect[1][0], {})[effect[1][1]] = effect[2]
        elif effect[0] == _TEXT:
            texts[effect[1]] = effect[2]
        elif effect[0] == _CLOCK:
            clock = effect[2]
        elif effect[0] == _FAILURES:
            failures = effect[2]
        elif effect[0] == _PEAK:
            peak = effect[2]
        elif effect[0] == _HISTORY:
            history = effect[2]
        elif effect[0] == _EXTRA:
            extra.append(effect[2])
        elif effect[0] == _UNKNOWN:
            unknown.append(effect[2])
        elif effect[0] == _BAD:
            malformed.append(effect[2])
        elif effect[0] == _BOUNDS:
            registers[effect[1]], registers[lower_bound(effect[1])] = effect[2]
        else:  # _LEGACY
            stamp, unit = effect[2]
            legacy = (effect[1], stamp, unit)
            mbus.setdefault(effect[1], {})
    if legacy is not None:
        malformed.append(LineIssue(mbus_legacy_code(legacy[0]), "its value line is missing"))
    equipment_id = next((texts[code] for code in EQUIPMENT_ID_CODES if texts.get(code)), None)
    return Telegram(
        raw=frame,
        header=header,
        dsmr_version=_dsmr_version(texts),
        crc=checked.crc,
        crc_verified=checked.crc_verified,
        meter_time=clock,
        equipment_id=equipment_id,
        registers=MappingProxyType(registers),
        texts=MappingProxyType(texts),
        mbus=MappingProxyType(_mbus_devices(mbus)),
        power_failure_log=failures,
        month_peak=None if peak is None else peak[0],
        month_peak_time=None if peak is None else peak[1],
        peak_history=history,
        extra=tuple(extra),
        unknown=tuple(unknown),
        malformed=tuple(malformed),
    )
