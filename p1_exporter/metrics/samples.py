"""Turn a telegram into metric samples: (metric name, labels, value), no I/O.

This is the one mapping from OBIS codes to the metric names of
:mod:`p1_exporter.metrics.catalog`; the live collector and the backfill both use it. A
register whose unit is not the expected one is left out rather than exported
under a wrong unit.
"""

from __future__ import annotations

from typing import NamedTuple

from p1_exporter.core.clock import format_meter_time
from p1_exporter.core.telegram import Telegram

_new = tuple.__new__


class Sample(NamedTuple):
    """One value of one metric; ``labels`` are (name, value) pairs, ``meter`` excluded."""

    metric: str
    labels: tuple[tuple[str, str], ...]
    value: float


# OBIS -> (metric, labels, expected unit, factor)
_Map = tuple[str, tuple[tuple[str, str], ...], str, float]
REGISTER_MAP: dict[str, _Map] = {}
#: Total registers that are exported only when the meter sends no per-tariff ones.
TOTALS: dict[str, tuple[str, ...]] = {}

_PHASES = (("L1", 20), ("L2", 40), ("L3", 60))


def _register(code: str, metric: str, unit: str, factor: float = 1.0, **labels: str) -> None:
    REGISTER_MAP[code] = (metric, tuple(labels.items()), unit, factor)


def _build() -> None:
    for c, direction in ((1, "import"), (2, "export")):
        for t in range(1, 5):
            _register(f"1-0:{c}.8.{t}", f"p1_energy_{direction}_joules_total", "J", tariff=str(t))
        _register(f"1-0:{c}.8.0", f"p1_energy_{direction}_joules_total", "J", tariff="total")
        TOTALS[f"1-0:{c}.8.0"] = tuple(f"1-0:{c}.8.{t}" for t in range(1, 5))
        _register(f"1-0:{c}.7.0", f"p1_power_{direction}_watts", "W")
    for c, direction in ((3, "import"), (4, "export")):
        metric = f"p1_reactive_energy_{direction}_var_seconds_total"
        for t in range(1, 5):
            _register(f"1-0:{c}.8.{t}", metric, "varh", 3600.0, tariff=str(t))
        _register(f"1-0:{c}.8.0", metric, "varh", 3600.0, tariff="total")
        TOTALS[f"1-0:{c}.8.0"] = tuple(f"1-0:{c}.8.{t}" for t in range(1, 5))
        _register(f"1-0:{c}.7.0", f"p1_reactive_power_{direction}_var", "var")
    for q in range(1, 5):
        _register(f"1-0:{4 + q}.8.0", "p1_reactive_energy_quadrant_var_seconds_total", "varh",
                  3600.0, quadrant=f"Q{q}")
        _register(f"1-0:{4 + q}.7.0", "p1_reactive_power_quadrant_var", "var", quadrant=f"Q{q}")
    _register("1-0:15.8.0", "p1_energy_absolute_joules_total", "J")
    for phase, base in _PHASES:
        _register(f"1-0:{base + 1}.7.0", "p1_phase_power_import_watts", "W", phase=phase)
        _register(f"1-0:{base + 2}.7.0", "p1_phase_power_export_watts", "W", phase=phase)
        _register(f"1-0:{base + 3}.7.0", "p1_phase_reactive_power_import_var", "var", phase=phase)
        _register(f"1-0:{base + 4}.7.0", "p1_phase_reactive_power_export_var", "var", phase=phase)
        _register(f"1-0:{base + 11}.7.0", "p1_phase_current_amperes", "A", phase=phase)
        _register(f"1-0:{base + 12}.7.0", "p1_phase_voltage_volts", "V", phase=phase)
        _register(f"1-0:{base + 12}.24.0", "p1_phase_voltage_average_volts", "V", phase=phase)
        _register(f"1-0:{base + 13}.7.0", "p1_phase_power_factor", "", phase=phase)
        _register(f"1-0:{base + 11}.4.0", "p1_current_limit_amperes", "A", phase=phase)
        _register(f"1-0:{base + 12}.32.0", "p1_voltage_sags_total", "", phase=phase)
        _register(f"1-0:{base + 12}.36.0", "p1_voltage_swells_total", "", phase=phase)
    _register("1-0:13.7.0", "p1_power_factor", "")
    _register("1-0:14.7.0", "p1_grid_frequency_hertz", "Hz")
    _register("0-0:96.14.0", "p1_active_tariff", "")
    _register("0-0:96.7.21", "p1_power_failures_total", "")
    _register("0-0:96.7.9", "p1_long_power_failures_total", "")
    _register("0-0:96.3.10", "p1_breaker_state", "")
    _register("1-0:1.4.0", "p1_demand_average_watts", "W")


_build()

#: M-Bus device type -> (metric, expected unit)
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

    Built as a list of plain tuples: the live collector and the backfill call this for
    every telegram, so it stays lean.
    """
    registers = telegram.registers
    samples: list[Sample] = []
    add = samples.append
    mapping_of = REGISTER_MAP.get
    totals = TOTALS
    for code, register in registers.items():
        mapping = mapping_of(code)
        if mapping is None:
            continue
        metric, labels, unit, factor = mapping
        if register.unit != unit:
            continue
        if code in totals and any(part in registers for part in totals[code]):
            continue
        add(_new(Sample, (metric, labels, register.value * factor)))
    threshold = registers.get("0-0:17.0.0")
    if threshold is not None and threshold.unit in ("W", "A"):
        kind = "watts" if threshold.unit == "W" else "amperes"
        add(Sample(f"p1_limiter_threshold_{kind}", (), threshold.value))
    if telegram.meter_time is not None:
        add(Sample("p1_meter_clock_timestamp_seconds", (), telegram.meter_time))
    add(Sample(
        "p1_meter_info",
        (("header", telegram.header), ("dsmr_version", telegram.dsmr_version or ""),
         ("equipment_id", telegram.equipment_id or "")),
        1.0,
    ))
    message = telegram.texts.get("0-0:96.13.0", "")
    code = telegram.texts.get("0-0:96.13.1", "")
    if message or code:
        add(Sample("p1_meter_message_info", (("code", code), ("message", message[:200])), 1.0))
    # An entry without a real end time is a placeholder (Kaifa sends 2000-01-01 lasting
    # 2^31-1 s when the log is empty): it says nothing about a failure, so it is not exported.
    dated = [(event.end_time, event.duration_seconds)
             for event in telegram.power_failure_log if event.end_time is not None]
    if dated:
        end, duration = max(dated)
        add(Sample("p1_power_failure_last_duration_seconds", (), float(duration)))
        add(Sample("p1_power_failure_last_end_timestamp_seconds", (), end))
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
    for device in telegram.mbus.values():
        channel = str(device.channel)
        device_type = "" if device.device_type is None else str(device.device_type)
        if device.device_type is not None or device.equipment_id:
            add(Sample("p1_mbus_device_info", (("channel", channel), ("device_type", device_type),
                         ("equipment_id", device.equipment_id or "")), 1.0))
        if device.valve_position is not None:
            add(Sample("p1_mbus_valve_position", (("channel", channel),),
                         float(device.valve_position)))
        reading = device.reading
        if reading is None:
            continue
        known = MBUS_METRICS.get(device.device_type or -1)
        if known is not None:
            if reading.unit != known[1]:
                continue
            add(Sample(known[0], (("channel", channel),), reading.value))
        else:
            add(Sample("p1_mbus_reading_value", (("channel", channel),
                         ("device_type", device_type), ("unit", reading.unit)), reading.value))
        if device.reading_time is not None:
            add(Sample("p1_mbus_reading_timestamp_seconds", (("channel", channel),),
                         device.reading_time))
    return samples
