"""Turn a telegram into metric samples: (metric name, labels, value), no I/O.

This is the one mapping from OBIS codes to the metric names of
:mod:`p1_exporter.metrics.catalog`; the live collector and the backfill both use it. A
register whose unit is not the expected one is left out rather than exported
under a wrong unit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from p1_exporter.core.clock import format_meter_time
from p1_exporter.core.obis import (
    MESSAGE_CODE,
    MESSAGE_TEXT,
    ROWS,
    Kind,
    Labels,
    lower_bound,
)
from p1_exporter.core.telegram import Telegram

_new = tuple.__new__


class Sample(NamedTuple):
    """One value of one metric; ``labels`` are (name, value) pairs, ``meter`` excluded."""

    metric: str
    labels: Labels
    value: float


# OBIS code -> expected unit -> (metric, labels, factor); derived from the code table.
_Map = tuple[str, Labels, float]
REGISTER_MAP: dict[str, dict[str, _Map]] = {}
#: Total registers that are exported only when the meter sends no per-tariff ones.
TOTALS: dict[str, tuple[str, ...]] = {}


def _build() -> None:
    for row in ROWS:
        if not row.metric:
            continue
        if row.kind is Kind.BOUNDS:
            REGISTER_MAP.setdefault(row.code, {})[row.unit] = (
                row.metric,
                (*row.labels, ("bound", "upper")),
                row.scale,
            )
            REGISTER_MAP.setdefault(lower_bound(row.code), {})[row.unit] = (
                row.metric,
                (*row.labels, ("bound", "lower")),
                row.scale,
            )
        else:
            REGISTER_MAP.setdefault(row.code, {})[row.unit] = (row.metric, row.labels, row.scale)
        if row.total_of:
            TOTALS[row.code] = row.total_of


_build()

#: Named code, not rows: M-Bus device type -> (metric of its reading, expected unit).
MBUS_METRICS: dict[int, tuple[str, str]] = {
    3: ("p1_gas_volume_cubic_meters_total", "m3"),
    7: ("p1_water_volume_cubic_meters_total", "m3"),
    4: ("p1_heat_energy_joules_total", "J"),
}


def _month_label(archived: float) -> str:
    """The month a history entry covers: its timestamp is the month's end (the next
    month's first moment, e.g. ``230901000000S`` holds August's peak), so step back 1 s."""
    text = format_meter_time(archived - 1, suffix=False)
    return f"20{text[0:2]}-{text[2:4]}"


def telegram_samples(telegram: Telegram) -> list[Sample]:
    """Every meter-value sample a telegram yields (health metrics excluded).

    Registers go through :data:`REGISTER_MAP`, derived from the code table; what cannot
    be a row of it is named code below: info labels, the failure log, the Belgian month
    peaks and the M-Bus devices (whose metric depends on their device type). Built as a
    list of plain tuples: the live collector and the backfill call this for every
    telegram, so it stays lean.
    """
    registers = telegram.registers
    samples: list[Sample] = []
    add = samples.append
    mapping_of = REGISTER_MAP.get
    totals = TOTALS
    for code, register in registers.items():
        by_unit = mapping_of(code)
        if by_unit is None:
            continue
        mapping = by_unit.get(register.unit)
        if mapping is None:  # not the unit the metric is in: left out, never mislabelled
            continue
        metric, labels, factor = mapping
        if code in totals and any(part in registers for part in totals[code]):
            continue
        add(_new(Sample, (metric, labels, register.value * factor)))
    _info_samples(telegram, add)
    if telegram.power_failure_log:
        _failure_log_samples(telegram, add)
    if telegram.month_peak is not None or telegram.peak_history:
        _month_peak_samples(telegram, add)
    if telegram.mbus:
        _mbus_samples(telegram, add)
    return samples


def _info_samples(telegram: Telegram, add: Callable[[Sample], None]) -> None:
    """Named code: the meter clock and the info labels (identification, text message)."""
    if telegram.meter_time is not None:
        add(Sample("p1_meter_clock_timestamp_seconds", (), telegram.meter_time))
    add(
        Sample(
            "p1_meter_info",
            (
                ("header", telegram.header),
                ("dsmr_version", telegram.dsmr_version or ""),
                ("equipment_id", telegram.equipment_id or ""),
            ),
            1.0,
        )
    )
    message = telegram.texts.get(MESSAGE_TEXT, "")
    code = telegram.texts.get(MESSAGE_CODE, "")
    if message or code:
        add(Sample("p1_meter_message_info", (("code", code), ("message", message[:200])), 1.0))


def _failure_log_samples(telegram: Telegram, add: Callable[[Sample], None]) -> None:
    """Named code: the latest entry of the long power-failure log with a real end time.

    An entry without one is a placeholder (Kaifa sends 2000-01-01 lasting 2^31-1 s when
    the log is empty): it says nothing about a failure, so it is not exported.
    """
    dated = [
        (event.end_time, event.duration_seconds)
        for event in telegram.power_failure_log
        if event.end_time is not None
    ]
    if dated:
        end, duration = max(dated)
        add(Sample("p1_power_failure_last_duration_seconds", (), float(duration)))
        add(Sample("p1_power_failure_last_end_timestamp_seconds", (), end))


def _month_peak_samples(telegram: Telegram, add: Callable[[Sample], None]) -> None:
    """Named code: the Belgian month peak and the peaks of past months."""
    if telegram.month_peak is not None and telegram.month_peak.unit == "W":
        add(Sample("p1_demand_month_peak_watts", (), telegram.month_peak.value))
        if telegram.month_peak_time is not None:
            add(Sample("p1_demand_month_peak_timestamp_seconds", (), telegram.month_peak_time))
    seen_months = set()
    for month in telegram.peak_history:
        if month.month_start is None:
            continue
        label = _month_label(month.month_start)
        if label not in seen_months:
            seen_months.add(label)
            add(Sample("p1_demand_history_peak_watts", (("month", label),), month.watts))


def _mbus_samples(telegram: Telegram, add: Callable[[Sample], None]) -> None:
    """Named code: M-Bus devices, whose reading's metric depends on the device type."""
    for device in telegram.mbus.values():
        channel = str(device.channel)
        device_type = "" if device.device_type is None else str(device.device_type)
        if device.device_type is not None or device.equipment_id:
            add(
                Sample(
                    "p1_mbus_device_info",
                    (
                        ("channel", channel),
                        ("device_type", device_type),
                        ("equipment_id", device.equipment_id or ""),
                    ),
                    1.0,
                )
            )
        if device.valve_position is not None:
            add(
                Sample(
                    "p1_mbus_valve_position", (("channel", channel),), float(device.valve_position)
                )
            )
        reading = device.reading
        if reading is None:
            continue
        known = MBUS_METRICS.get(device.device_type or -1)
        if known is not None:
            if reading.unit != known[1]:
                continue
            add(Sample(known[0], (("channel", channel),), reading.value))
        else:
            add(
                Sample(
                    "p1_mbus_reading_value",
                    (("channel", channel), ("device_type", device_type), ("unit", reading.unit)),
                    reading.value,
                )
            )
        if device.reading_time is not None:
            add(
                Sample(
                    "p1_mbus_reading_timestamp_seconds",
                    (("channel", channel),),
                    device.reading_time,
                )
            )
