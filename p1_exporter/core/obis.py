"""The OBIS codes the parser understands, with how each line is laid out.

Lines are interpreted by code alone, so one table serves every dialect (DSMR
2.2-5, Belgian e-MUCS, Luxembourg, Sweden, Hungary, Ireland, EasyMeter).
"""

from __future__ import annotations

from enum import IntEnum


class Kind(IntEnum):
    """How the value part of a line is read."""

    NUMBER = 1  # (value[*unit])
    TEXT = 2  # (plain text)
    HEX_TEXT = 3  # (hex-encoded text), decoded when it is printable
    TIME = 4  # (YYMMDDhhmmssX): the meter clock
    VERSION = 5  # (50) / (42) / Belgian (50217)
    FAILURE_LOG = 6  # (n)(0-0:96.7.19)(end)(duration*s)...
    MONTH_PEAK = 7  # (ts)(value*kW) or (value*kW)(ts)
    PEAK_HISTORY = 8  # (n)(code)(code)((start)(time)(value))* or a billing snapshot
    MBUS_TYPE = 9
    MBUS_ID = 10
    MBUS_READING = 11  # (ts)(value*unit)
    MBUS_VALVE = 12
    MBUS_LEGACY = 13  # DSMR 2.2/3: (ts)(..)(..)(..)(code)(unit), value on the next line


DESCRIPTIONS: dict[str, str] = {}
KINDS: dict[str, Kind] = {}


def _add(code: str, kind: Kind, description: str) -> None:
    KINDS[code] = kind
    DESCRIPTIONS[code] = description


_TARIFF_NAMES = {0: "total", 1: "tariff 1", 2: "tariff 2", 3: "tariff 3", 4: "tariff 4"}
for _t, _name in _TARIFF_NAMES.items():
    _add(f"1-0:1.8.{_t}", Kind.NUMBER, f"active energy imported, {_name}")
    _add(f"1-0:2.8.{_t}", Kind.NUMBER, f"active energy exported, {_name}")
    _add(f"1-0:3.8.{_t}", Kind.NUMBER, f"reactive energy imported, {_name}")
    _add(f"1-0:4.8.{_t}", Kind.NUMBER, f"reactive energy exported, {_name}")
for _q in (1, 2, 3, 4):
    _add(f"1-0:{4 + _q}.8.0", Kind.NUMBER, f"reactive energy, quadrant Q{_q}")
    _add(f"1-0:{4 + _q}.7.0", Kind.NUMBER, f"reactive power, quadrant Q{_q}")
_add("1-0:15.8.0", Kind.NUMBER, "absolute active energy (import + export)")
_add("1-0:1.7.0", Kind.NUMBER, "active power imported")
_add("1-0:2.7.0", Kind.NUMBER, "active power exported")
_add("1-0:3.7.0", Kind.NUMBER, "reactive power imported")
_add("1-0:4.7.0", Kind.NUMBER, "reactive power exported")
_add("1-0:13.7.0", Kind.NUMBER, "power factor")
_add("1-0:14.7.0", Kind.NUMBER, "grid frequency")
_add("1-0:1.4.0", Kind.NUMBER, "average demand, current quarter hour")
_add("1-0:1.6.0", Kind.MONTH_PEAK, "peak quarter-hour demand this month")
_add("0-0:98.1.0", Kind.PEAK_HISTORY, "monthly history (peaks or billing values)")
for _phase, _base in (("L1", 20), ("L2", 40), ("L3", 60)):
    _add(f"1-0:{_base + 1}.7.0", Kind.NUMBER, f"active power imported, {_phase}")
    _add(f"1-0:{_base + 2}.7.0", Kind.NUMBER, f"active power exported, {_phase}")
    _add(f"1-0:{_base + 3}.7.0", Kind.NUMBER, f"reactive power imported, {_phase}")
    _add(f"1-0:{_base + 4}.7.0", Kind.NUMBER, f"reactive power exported, {_phase}")
    _add(f"1-0:{_base + 11}.7.0", Kind.NUMBER, f"current, {_phase}")
    _add(f"1-0:{_base + 12}.7.0", Kind.NUMBER, f"voltage, {_phase}")
    _add(f"1-0:{_base + 13}.7.0", Kind.NUMBER, f"power factor, {_phase}")
    _add(f"1-0:{_base + 11}.4.0", Kind.NUMBER, f"current limit (fuse), {_phase}")
    _add(f"1-0:{_base + 12}.32.0", Kind.NUMBER, f"voltage sags, {_phase}")
    _add(f"1-0:{_base + 12}.36.0", Kind.NUMBER, f"voltage swells, {_phase}")
    _add(f"1-0:{_base + 12}.24.0", Kind.NUMBER, f"average voltage, {_phase}")
_add("0-0:96.14.0", Kind.NUMBER, "active tariff")
_add("0-0:96.7.21", Kind.NUMBER, "power failures, any phase")
_add("0-0:96.7.9", Kind.NUMBER, "long power failures, any phase")
_add("1-0:99.97.0", Kind.FAILURE_LOG, "long power-failure event log")
_add("0-0:17.0.0", Kind.NUMBER, "actual threshold (limiter)")
_add("0-0:96.3.10", Kind.NUMBER, "breaker state (0 off, 1 on, 2 ready)")
_add("1-0:96.5.5", Kind.TEXT, "status word")
_add("0-0:1.0.0", Kind.TIME, "meter clock")
_add("1-3:0.2.8", Kind.VERSION, "DSMR version")
_add("0-0:96.1.4", Kind.VERSION, "e-MUCS / DSMR version (Belgium)")
_add("0-0:96.1.1", Kind.HEX_TEXT, "equipment identifier")
_add("0-0:96.1.0", Kind.HEX_TEXT, "equipment identifier")
_add("0-0:96.1.255", Kind.TEXT, "serial number")
_add("1-0:0.0.0", Kind.TEXT, "ownership / meter number")
_add("1-0:0.2.0", Kind.TEXT, "firmware version")
_add("0-0:42.0.0", Kind.HEX_TEXT, "logical device name")
_add("0-0:96.13.0", Kind.HEX_TEXT, "text message")
_add("0-0:96.13.1", Kind.HEX_TEXT, "text message code")
for _ch in (1, 2, 3, 4):
    _add(f"0-{_ch}:24.1.0", Kind.MBUS_TYPE, f"M-Bus channel {_ch}: device type")
    _add(f"0-{_ch}:96.1.0", Kind.MBUS_ID, f"M-Bus channel {_ch}: equipment identifier")
    _add(f"0-{_ch}:96.1.1", Kind.MBUS_ID, f"M-Bus channel {_ch}: equipment identifier")
    _add(f"0-{_ch}:24.4.0", Kind.MBUS_VALVE, f"M-Bus channel {_ch}: valve position")
    _add(f"0-{_ch}:24.3.0", Kind.MBUS_LEGACY, f"M-Bus channel {_ch}: reading (DSMR 2.2/3)")
    for _e in (1, 2, 3):
        _add(f"0-{_ch}:24.2.{_e}", Kind.MBUS_READING, f"M-Bus channel {_ch}: reading")

#: M-Bus device types (EN 13757-3) that the exporter names.
MBUS_DEVICE_TYPES: dict[int, str] = {
    2: "electricity",
    3: "gas",
    4: "heat",
    6: "warm water",
    7: "water",
    10: "cooling",
    12: "heat/cooling",
}
