"""The code table: every OBIS code the exporter knows, one row each, in one place.

A row says what a code is (description), how its line is read (:class:`Kind`), the base
unit its value must carry, the metric it feeds (name, labels, scale), and whether the
value only ever rises (cumulative). Everything else is derived from this table: the
parser's kinds, the OBIS -> sample map (:mod:`p1_exporter.metrics.samples`), the
catalog's source column and ``docs/metrics.md``, the glitch guard's list of cumulative
registers and the descriptions ``decode`` prints. Code patterns (tariffs, phases, M-Bus
channels) are written once each, by the helpers below.

Lines are interpreted by code alone, so one table serves every dialect (DSMR 2.2-5,
Belgian e-MUCS, Luxembourg Smarty, Sweden, Hungary, Ireland, EasyMeter). Metric names are
data here; this module imports nothing from the metrics layer.

What cannot be a row stays as code, named as such: the failure-log layout (parser),
M-Bus device typing (:data:`MBUS_DEVICE_TYPES`, used by the metrics layer), the Belgian
month peaks and their history (parser and metrics layer), and the info labels (which
codes name the meter: :data:`EQUIPMENT_ID_CODES`, :data:`VERSION_CODES`).
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple


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
    #: (upper*unit)(lower*unit): a two-sided threshold. The upper value is the register
    #: of the code itself, the lower one that of :func:`lower_bound`; the metric gets
    #: ``bound="upper"`` / ``bound="lower"``.
    BOUNDS = 14


Labels = tuple[tuple[str, str], ...]


class Row(NamedTuple):
    """One OBIS code: what it is, how it is read, and what it feeds.

    ``unit`` is the base unit its value must carry to be exported ("" for a plain
    number); ``metric``/``labels``/``scale`` say which sample a value becomes (value
    times ``scale``). ``total_of`` lists the per-tariff codes that, when sent, replace
    this total. ``feeds`` names metrics built from the code by named code outside the
    table (clock, info labels, M-Bus, failure log, month peaks). ``pattern`` is how the
    code's family is written in the metrics reference.
    """

    code: str
    kind: Kind
    description: str
    unit: str = ""
    metric: str = ""
    labels: Labels = ()
    scale: float = 1.0
    cumulative: bool = False
    total_of: tuple[str, ...] = ()
    feeds: tuple[str, ...] = ()
    pattern: str = ""


ROWS: list[Row] = []

#: Each phase and the base of its C groups: L1 codes are 21-40, L2 41-60, L3 61-80.
PHASES = (("L1", 20), ("L2", 40), ("L3", 60))
#: Tariff registers E = 1-4 (E = 0 is the total).
TARIFFS = (1, 2, 3, 4)
#: M-Bus channels B = 1-4.
CHANNELS = (1, 2, 3, 4)


def lower_bound(code: str) -> str:
    """The register key of the lower value of a :attr:`Kind.BOUNDS` line."""
    return code + "[lower]"


def _row(
    code: str,
    kind: Kind,
    description: str,
    *,
    unit: str = "",
    metric: str = "",
    labels: Labels = (),
    scale: float = 1.0,
    cumulative: bool = False,
    total_of: tuple[str, ...] = (),
    feeds: tuple[str, ...] = (),
    pattern: str = "",
) -> None:
    ROWS.append(
        Row(
            code,
            kind,
            description,
            unit,
            metric,
            labels,
            scale,
            cumulative,
            total_of,
            feeds,
            pattern or code,
        )
    )


def _value(
    code: str,
    description: str,
    unit: str,
    metric: str,
    *,
    counter: bool = False,
    scale: float = 1.0,
    pattern: str = "",
    **labels: str,
) -> None:
    """A numeric register feeding ``metric``; ``counter`` marks it cumulative."""
    _row(
        code,
        Kind.NUMBER,
        description,
        unit=unit,
        metric=metric,
        labels=tuple(labels.items()),
        scale=scale,
        cumulative=counter,
        pattern=pattern or code,
    )


def _tariffs(c: int, what: str, unit: str, metric: str, scale: float = 1.0) -> None:
    """``1-0:C.8.1..4`` per tariff, and ``1-0:C.8.0``, exported only without them."""
    parts = tuple(f"1-0:{c}.8.{t}" for t in TARIFFS)
    for t, code in zip(TARIFFS, parts, strict=True):
        _value(
            code,
            f"{what}, tariff {t}",
            unit,
            metric,
            counter=True,
            scale=scale,
            pattern=f"1-0:{c}.8.{TARIFFS[0]}..{TARIFFS[-1]}",
            tariff=str(t),
        )
    _row(
        f"1-0:{c}.8.0",
        Kind.NUMBER,
        f"{what}, total",
        unit=unit,
        metric=metric,
        labels=(("tariff", "total"),),
        scale=scale,
        cumulative=True,
        total_of=parts,
    )


def _phases(
    offset: int, d: int, e: int, what: str, unit: str, metric: str, counter: bool = False
) -> None:
    """``1-0:(20|40|60 + offset).d.e`` for L1, L2, L3."""
    pattern = "1-0:" + "/".join(str(base + offset) for _, base in PHASES) + f".{d}.{e}"
    for phase, base in PHASES:
        _value(
            f"1-0:{base + offset}.{d}.{e}",
            f"{what}, {phase}",
            unit,
            metric,
            counter=counter,
            pattern=pattern,
            phase=phase,
        )


def _channels(
    d_e: str, kind: Kind, what: str, metric: str = "", feeds: tuple[str, ...] = ()
) -> None:
    """``0-n:d_e`` for M-Bus channels 1-4 (a register feeding ``metric``, or ``kind``)."""
    for ch in CHANNELS:
        code = f"0-{ch}:{d_e}"
        labels: Labels = (("channel", str(ch)),) if metric else ()
        _row(
            code,
            kind,
            f"M-Bus channel {ch}: {what}",
            metric=metric,
            labels=labels,
            feeds=feeds,
            pattern=f"0-n:{d_e}",
        )


# -- energy ---------------------------------------------------------------------------
_JOULES, _VARH, _VAR_SECONDS = "J", "varh", 3600.0
_tariffs(1, "active energy imported", _JOULES, "p1_energy_import_joules_total")
_tariffs(2, "active energy exported", _JOULES, "p1_energy_export_joules_total")
_tariffs(
    3,
    "reactive energy imported",
    _VARH,
    "p1_reactive_energy_import_var_seconds_total",
    _VAR_SECONDS,
)
_tariffs(
    4,
    "reactive energy exported",
    _VARH,
    "p1_reactive_energy_export_var_seconds_total",
    _VAR_SECONDS,
)
for _q in (1, 2, 3, 4):
    _value(
        f"1-0:{4 + _q}.8.0",
        f"reactive energy, quadrant Q{_q}",
        _VARH,
        "p1_reactive_energy_quadrant_var_seconds_total",
        counter=True,
        scale=_VAR_SECONDS,
        pattern="1-0:5.8.0..8.8.0",
        quadrant=f"Q{_q}",
    )
_value(
    "1-0:15.8.0",
    "absolute active energy (import + export)",
    _JOULES,
    "p1_energy_absolute_joules_total",
    counter=True,
)

# -- power, all phases ----------------------------------------------------------------
_value("1-0:1.7.0", "active power imported", "W", "p1_power_import_watts")
_value("1-0:2.7.0", "active power exported", "W", "p1_power_export_watts")
_value("1-0:3.7.0", "reactive power imported", "var", "p1_reactive_power_import_var")
_value("1-0:4.7.0", "reactive power exported", "var", "p1_reactive_power_export_var")
for _q in (1, 2, 3, 4):
    _value(
        f"1-0:{4 + _q}.7.0",
        f"reactive power, quadrant Q{_q}",
        "var",
        "p1_reactive_power_quadrant_var",
        pattern="1-0:5.7.0..8.7.0",
        quadrant=f"Q{_q}",
    )
_value("1-0:9.7.0", "apparent power imported", "VA", "p1_apparent_power_import_volt_amperes")
_value("1-0:10.7.0", "apparent power exported", "VA", "p1_apparent_power_export_volt_amperes")
_value("1-0:13.7.0", "power factor", "", "p1_power_factor")
_value("1-0:14.7.0", "grid frequency", "Hz", "p1_grid_frequency_hertz")
_value("1-0:1.4.0", "average demand, current quarter hour", "W", "p1_demand_average_watts")

# -- per phase ------------------------------------------------------------------------
_phases(1, 7, 0, "active power imported", "W", "p1_phase_power_import_watts")
_phases(2, 7, 0, "active power exported", "W", "p1_phase_power_export_watts")
_phases(3, 7, 0, "reactive power imported", "var", "p1_phase_reactive_power_import_var")
_phases(4, 7, 0, "reactive power exported", "var", "p1_phase_reactive_power_export_var")
_phases(9, 7, 0, "apparent power imported", "VA", "p1_phase_apparent_power_import_volt_amperes")
_phases(10, 7, 0, "apparent power exported", "VA", "p1_phase_apparent_power_export_volt_amperes")
_phases(12, 7, 0, "voltage", "V", "p1_phase_voltage_volts")
_phases(12, 24, 0, "average voltage", "V", "p1_phase_voltage_average_volts")
_phases(11, 7, 0, "current", "A", "p1_phase_current_amperes")
_phases(11, 4, 0, "current limit (fuse)", "A", "p1_current_limit_amperes")
_phases(13, 7, 0, "power factor", "", "p1_phase_power_factor")
_phases(12, 32, 0, "voltage sags", "", "p1_voltage_sags_total", counter=True)
_phases(12, 36, 0, "voltage swells", "", "p1_voltage_swells_total", counter=True)

# -- events, limiter, breaker ---------------------------------------------------------
ACTIVE_TARIFF = "0-0:96.14.0"
_value(ACTIVE_TARIFF, "active tariff", "", "p1_active_tariff")
_value("0-0:96.7.21", "power failures, any phase", "", "p1_power_failures_total", counter=True)
_value(
    "0-0:96.7.9", "long power failures, any phase", "", "p1_long_power_failures_total", counter=True
)
#: The long power-failure log; its layout is read by the parser (named code).
POWER_FAILURE_LOG = "1-0:99.97.0"
_row(
    POWER_FAILURE_LOG,
    Kind.FAILURE_LOG,
    "long power-failure event log",
    feeds=("p1_power_failure_last_duration_seconds", "p1_power_failure_last_end_timestamp_seconds"),
)
# The limiter threshold comes in kW (DSMR 4/5), A (DSMR 3) or kVA (Luxembourg): one row
# per unit, each feeding the metric of its unit.
LIMITER_THRESHOLD = "0-0:17.0.0"
_value(
    LIMITER_THRESHOLD,
    "actual threshold (limiter)",
    "W",
    "p1_limiter_threshold_watts",
    pattern=f"{LIMITER_THRESHOLD} (kW)",
)
_value(
    LIMITER_THRESHOLD,
    "actual threshold (limiter)",
    "A",
    "p1_limiter_threshold_amperes",
    pattern=f"{LIMITER_THRESHOLD} (A)",
)
_value(
    LIMITER_THRESHOLD,
    "actual threshold (limiter)",
    "VA",
    "p1_limiter_threshold_volt_amperes",
    pattern=f"{LIMITER_THRESHOLD} (kVA)",
)
_row(
    "1-1:31.4.0",
    Kind.BOUNDS,
    "fuse supervision threshold",
    unit="A",
    metric="p1_fuse_supervision_threshold_amperes",
)
_value("0-0:96.3.10", "breaker state (0 off, 1 on, 2 ready)", "", "p1_breaker_state")
_channels("96.3.10", Kind.NUMBER, "breaker state", "p1_mbus_breaker_state")

# -- Belgian capacity tariff (layouts read by the parser: named code) ------------------
DEMAND_MONTH_PEAK = "1-0:1.6.0"
_row(
    DEMAND_MONTH_PEAK,
    Kind.MONTH_PEAK,
    "peak quarter-hour demand this month",
    feeds=("p1_demand_month_peak_watts", "p1_demand_month_peak_timestamp_seconds"),
)
DEMAND_HISTORY = "0-0:98.1.0"
_row(
    DEMAND_HISTORY,
    Kind.PEAK_HISTORY,
    "monthly history (peaks or billing values)",
    feeds=("p1_demand_history_peak_watts",),
)

# -- identification, clock, texts ------------------------------------------------------
CLOCK = "0-0:1.0.0"
_row(CLOCK, Kind.TIME, "meter clock", feeds=("p1_meter_clock_timestamp_seconds",))
_INFO = ("p1_meter_info",)
DSMR_VERSION = "1-3:0.2.8"
BELGIAN_VERSION = "0-0:96.1.4"
#: Where the DSMR version is read, first found wins (info label: named code).
VERSION_CODES = (DSMR_VERSION, BELGIAN_VERSION)
_row(DSMR_VERSION, Kind.VERSION, "DSMR version", feeds=_INFO)
_row(BELGIAN_VERSION, Kind.VERSION, "e-MUCS / DSMR version (Belgium)", feeds=_INFO)
#: Where the equipment id is read, first found wins (info label: named code). The
#: Luxembourg logical device name comes last, so a meter that also sends one of the
#: others keeps the id it always had.
EQUIPMENT_ID_CODES = ("0-0:96.1.1", "0-0:96.1.0", "0-0:96.1.255", "0-0:42.0.0")
_row("0-0:96.1.1", Kind.HEX_TEXT, "equipment identifier", feeds=_INFO)
_row("0-0:96.1.0", Kind.HEX_TEXT, "equipment identifier", feeds=_INFO)
_row("0-0:96.1.255", Kind.TEXT, "serial number", feeds=_INFO)
_row("0-0:42.0.0", Kind.HEX_TEXT, "logical device name", feeds=_INFO)
_row("1-0:96.5.5", Kind.TEXT, "status word")
_row("1-0:0.0.0", Kind.TEXT, "ownership / meter number")
_row("1-0:0.2.0", Kind.TEXT, "firmware version")
MESSAGE_CODE = "0-0:96.13.1"
MESSAGE_TEXT = "0-0:96.13.0"
_row(MESSAGE_CODE, Kind.HEX_TEXT, "text message code", feeds=("p1_meter_message_info",))
_row(MESSAGE_TEXT, Kind.HEX_TEXT, "text message", feeds=("p1_meter_message_info",))
for _line in (2, 3, 4, 5):  # Luxembourg: more message lines, usually empty
    _row(
        f"0-0:96.13.{_line}", Kind.HEX_TEXT, f"text message, line {_line}", pattern="0-0:96.13.2..5"
    )

# -- M-Bus devices (device typing is named code: MBUS_DEVICE_TYPES) --------------------
_READING = (
    "p1_gas_volume_cubic_meters_total",
    "p1_water_volume_cubic_meters_total",
    "p1_heat_energy_joules_total",
    "p1_mbus_reading_value",
    "p1_mbus_reading_timestamp_seconds",
)
_channels("24.1.0", Kind.MBUS_TYPE, "device type", feeds=("p1_mbus_device_info",))
_channels("96.1.0", Kind.MBUS_ID, "equipment identifier", feeds=("p1_mbus_device_info",))
_channels("96.1.1", Kind.MBUS_ID, "equipment identifier", feeds=("p1_mbus_device_info",))
_channels("24.4.0", Kind.MBUS_VALVE, "valve position", feeds=("p1_mbus_valve_position",))
for _e in (1, 2, 3):
    _channels(f"24.2.{_e}", Kind.MBUS_READING, "reading", feeds=_READING)
#: The C.D.E of the DSMR 2.2/3 M-Bus reading line, whose value follows on the next line.
MBUS_LEGACY_READING = "24.3.0"
_channels(MBUS_LEGACY_READING, Kind.MBUS_LEGACY, "reading (DSMR 2.2/3)", feeds=_READING)


def mbus_legacy_code(channel: int) -> str:
    """The DSMR 2.2/3 reading line of an M-Bus channel."""
    return f"0-{channel}:{MBUS_LEGACY_READING}"


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

# -- derived views ---------------------------------------------------------------------
#: code -> how its line is read (the parser's table).
_BY_METRIC: dict[tuple[str, Labels], str] = {
    (row.metric, tuple(sorted(row.labels))): row.code for row in ROWS if row.metric
}


def code_of(metric: str, **labels: str) -> str:
    """The code whose value feeds ``metric`` with ``labels``.

    Modules outside the table (the live page, say) name a value by the metric it feeds,
    so that no OBIS code is spelled anywhere but here.
    """
    return _BY_METRIC[(metric, tuple(sorted(labels.items())))]


KINDS: dict[str, Kind] = {row.code: row.kind for row in ROWS}
#: code -> what it is (``decode``'s descriptions).
DESCRIPTIONS: dict[str, str] = {row.code: row.description for row in ROWS}
DESCRIPTIONS.update(
    (lower_bound(row.code), f"{row.description}, lower") for row in ROWS if row.kind is Kind.BOUNDS
)
#: Registers that only ever rise (the glitch guard's list).
CUMULATIVE: frozenset[str] = frozenset(row.code for row in ROWS if row.cumulative)


def check_table(rows: list[Row]) -> list[str]:
    """Contradictions inside the table (empty when it is consistent)."""
    problems = []
    kinds: dict[str, Kind] = {}
    seen: set[tuple[str, str]] = set()
    for row in rows:
        if kinds.setdefault(row.code, row.kind) is not row.kind:
            problems.append(f"{row.code}: two kinds")
        if (row.code, row.unit) in seen:
            problems.append(f"{row.code}: two rows for unit {row.unit!r}")
        seen.add((row.code, row.unit))
        if row.metric and row.kind not in (Kind.NUMBER, Kind.BOUNDS):
            problems.append(f"{row.code}: only numbers feed a metric directly")
        if row.cumulative and not row.metric.endswith("_total"):
            problems.append(f"{row.code}: cumulative, but {row.metric!r} is no counter")
    return problems


# -- DLMS/COSEM HAN layouts: facts of those lists, not rows (no line of their own) ----------

#: Kamstrup's meter type number in its HAN lists (Kamstrup HAN-NVE interface description:
#: 1.1.96.1.1.255, "Meter type"; channel 1 is read as 0). The Danish list does not send it.
HAN_KAMSTRUP_METER_TYPE = "1-0:96.1.1"

#: Codes in HAN lists that name the meter or the list rather than measure anything.
HAN_IDENTITY: dict[str, str] = {
    "0-0:96.1.0": "equipment_id",  # Aidon, Kaifa: meter serial (GS1)
    "1-0:0.0.5": "equipment_id",  # Kamstrup
    "0-0:96.1.7": "meter type",
    HAN_KAMSTRUP_METER_TYPE: "meter type",
    "1-0:0.2.129": "list version",
    "0-0:96.1.1": "equipment_id",  # Landis+Gyr: meter serial
    "0-0:42.0.0": "logical device name",  # Landis+Gyr: LGZ and the serial; the id if alone
}

#: Kaifa, Norway: the code at each position of NVE list 3, three-phase (lists 1, 2 and the
#: single-phase variants are cut from it in :mod:`p1_exporter.core.cosem`).
HAN_KAIFA_THREE_PHASE: tuple[str, ...] = (
    "1-0:0.2.129",
    "0-0:96.1.0",
    "0-0:96.1.7",
    "1-0:1.7.0",
    "1-0:2.7.0",
    "1-0:3.7.0",
    "1-0:4.7.0",
    "1-0:31.7.0",
    "1-0:51.7.0",
    "1-0:71.7.0",
    "1-0:32.7.0",
    "1-0:52.7.0",
    "1-0:72.7.0",
    CLOCK,
    "1-0:1.8.0",
    "1-0:2.8.0",
    "1-0:3.8.0",
    "1-0:4.8.0",
)
