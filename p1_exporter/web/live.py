"""The live page: its static files, and the JSON document its script polls.

The page is three static files in ``p1_exporter/web/static`` (HTML, CSS, and a small
script that draws its charts as SVG by hand). No charting library: two charts of one
series each need about 150 lines of script, a library would be most of the page's size
and third-party code in the repository to keep up to date; everything is served by the
exporter itself, so the page works without internet access (no CDN, no web fonts).

:func:`live_document` turns the readers' snapshots and the histories of
:mod:`p1_exporter.web.live_history` into plain data: meter values in base units (W, J,
m3, V, A; the script converts to kWh for display), times as UTC epochs plus the
exporter's UTC offset, and the chart series, only the points newer than the page
already has (``since``).
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Mapping, Sequence
from importlib import resources

from p1_exporter import __version__
from p1_exporter.core.obis import MBUS_DEVICE_TYPES, MESSAGE_TEXT, PHASES, TARIFFS, code_of
from p1_exporter.core.telegram import Telegram
from p1_exporter.meter.snapshot import Snapshot
from p1_exporter.web.live_history import (
    GAS_STEP,
    POWER_STEP,
    MeterHistory,
    PeriodFigure,
    Ring,
    local_period_starts,
    period_totals,
)

#: Static files of the page: URL path -> (package file, content type).
STATIC_FILES = {
    "/static/live.js": ("live.js", "text/javascript; charset=utf-8"),
    "/static/live.css": ("live.css", "text/css; charset=utf-8"),
    "/static/icon.svg": ("icon.svg", "image/svg+xml"),
}


def static_file(name: str) -> bytes:
    """One file of ``p1_exporter/web/static`` (package data)."""
    return resources.files("p1_exporter.web").joinpath("static").joinpath(name).read_bytes()


def _value(telegram: Telegram, code: str, unit: str) -> float | None:
    register = telegram.registers.get(code)
    if register is None or register.unit != unit or not math.isfinite(register.value):
        return None
    return register.value


def _phases(telegram: Telegram) -> tuple[list[dict[str, object]], dict[str, object] | None]:
    """Per-phase values the meter sends, and the phase closest to its fuse limit.

    With limits (the fuse current per phase) the load is current / limit; without, the phase with
    the highest current is the closest, assuming equal fuses (the usual installation).
    """
    phases: list[dict[str, object]] = []
    for phase, _ in PHASES:
        row: dict[str, object] = {
            "phase": phase,
            "import_w": _value(telegram, code_of("p1_phase_power_import_watts", phase=phase), "W"),
            "export_w": _value(telegram, code_of("p1_phase_power_export_watts", phase=phase), "W"),
            "voltage_v": _value(telegram, code_of("p1_phase_voltage_volts", phase=phase), "V"),
            "current_a": _value(telegram, code_of("p1_phase_current_amperes", phase=phase), "A"),
            "limit_a": _value(telegram, code_of("p1_current_limit_amperes", phase=phase), "A"),
        }
        if any(v is not None for k, v in row.items() if k != "phase"):
            phases.append(row)
    loads: list[tuple[float, str, str]] = []
    for row in phases:
        current, limit = row["current_a"], row["limit_a"]
        if isinstance(current, float) and isinstance(limit, float) and limit > 0:
            loads.append((current / limit, str(row["phase"]), "limit"))
    if not loads:
        loads = [
            (row["current_a"], str(row["phase"]), "current")
            for row in phases
            if isinstance(row["current_a"], float)
        ]
    if len(phases) < 2 or not loads:
        return phases, None
    load, phase, basis = max(loads)
    return phases, {
        "phase": phase,
        "basis": basis,
        "load": round(load, 4) if basis == "limit" else None,
    }


def _registers(telegram: Telegram) -> list[dict[str, object]]:
    """Energy registers as a bill shows them: per tariff, or the total when none."""
    rows: list[dict[str, object]] = []
    for direction in ("import", "export"):
        metric = f"p1_energy_{direction}_joules_total"
        tariffs = [(t, _value(telegram, code_of(metric, tariff=str(t)), "J")) for t in TARIFFS]
        sent = [(t, v) for t, v in tariffs if v is not None]
        if not sent:
            total = _value(telegram, code_of(metric, tariff="total"), "J")
            if total is not None:
                rows.append({"direction": direction, "tariff": None, "joules": total})
        rows += [{"direction": direction, "tariff": t, "joules": v} for t, v in sent]
    return rows


def _devices(telegram: Telegram) -> list[dict[str, object]]:
    devices: list[dict[str, object]] = []
    for device in telegram.mbus.values():
        reading = device.reading
        kind = MBUS_DEVICE_TYPES.get(device.device_type or -1, "device")
        devices.append(
            {
                "channel": device.channel,
                "kind": kind,
                "equipment_id": device.equipment_id,
                "value": None
                if reading is None or not math.isfinite(reading.value)
                else reading.value,
                "unit": None if reading is None else reading.unit,
                "reading_time": device.reading_time,
            }
        )
    return devices


def _telegram_values(telegram: Telegram) -> dict[str, object]:
    phases, closest = _phases(telegram)
    demand = None
    average = _value(telegram, code_of("p1_demand_average_watts"), "W")
    peak = telegram.month_peak
    if average is not None or peak is not None:
        demand = {
            "average_w": average,
            "month_peak_w": None
            if peak is None or peak.unit != "W" or not math.isfinite(peak.value)
            else peak.value,
            "month_peak_time": telegram.month_peak_time,
        }
    message = telegram.texts.get(MESSAGE_TEXT, "")
    return {
        "header": telegram.header,
        "dsmr_version": telegram.dsmr_version,
        "equipment_id": telegram.equipment_id,
        "meter_time": telegram.meter_time,
        "import_w": _value(telegram, code_of("p1_power_import_watts"), "W"),
        "export_w": _value(telegram, code_of("p1_power_export_watts"), "W"),
        "phases": phases,
        "closest_phase": closest,
        "tariff": telegram.tariff,
        "registers": _registers(telegram),
        "devices": _devices(telegram),
        "demand": demand,
        "message": message[:1000] or None,
    }


def _period(figures: Mapping[str, PeriodFigure], start: float) -> dict[str, object]:
    totals = period_totals(figures, start)
    electricity = [f for f in (totals["import"], totals["export"]) if f is not None]
    gas = totals["gas"]
    return {
        "start": start,
        "import_j": None if totals["import"] is None else totals["import"].delta,
        "export_j": None if totals["export"] is None else totals["export"].delta,
        "since": max((f.since for f in electricity), default=None),
        "complete": bool(electricity) and all(f.complete for f in electricity),
        "gas_m3": None if gas is None else round(gas.delta, 6),
        "gas_since": None if gas is None else gas.since,
        "gas_complete": gas is not None and gas.complete,
    }


def _series(ring: Ring, step: int, after: int | None) -> dict[str, object]:
    """A chart series: slot ``first`` covers ``first * step`` seconds since the epoch;
    ``data`` is base64 of ``count`` little-endian floats (float32 for power in W, float64
    for gas in m3), NaN where no telegram came."""
    first, count, data = ring.read_bytes(after)
    kind = "float32" if ring.itemsize == 4 else "float64"
    return {
        "step": step,
        "slots": ring.size,
        "first": first,
        "count": count,
        "type": kind,
        "data": base64.b64encode(data).decode("ascii"),
    }


def _history(
    history: MeterHistory | None, now: float, since: int | None, gas_since: int | None
) -> dict[str, object]:
    if history is None:
        return {"power": None, "gas": None, "today": None, "hour": None}
    day_start, hour_start = local_period_starts(now)
    periods = history.periods
    return {
        "power": _series(history.power, POWER_STEP, since),
        "gas": _series(history.gas, GAS_STEP, gas_since),
        "today": None if periods is None else _period(periods.day, day_start),
        "hour": None if periods is None else _period(periods.hour, hour_start),
    }


def meter_document(
    snap: Snapshot,
    state: Mapping[str, object],
    history: MeterHistory | None,
    now: float,
    since: int | None = None,
    gas_since: int | None = None,
) -> dict[str, object]:
    """Everything the page shows about one meter; ``state`` is its health in plain data."""
    telegram = snap.telegram
    return {
        "name": snap.name,
        **state,
        "received_at": snap.received_at,
        "stale_after": snap.stale_after,
        "diagnostics": list(snap.diagnostics),
        "values": None if telegram is None else _telegram_values(telegram),
        **_history(history, now, since, gas_since),
    }


def live_document(
    meters: Sequence[tuple[Snapshot, Mapping[str, object]]],
    histories: Mapping[str, MeterHistory],
    started: float,
    since: int | None = None,
    gas_since: int | None = None,
) -> dict[str, object]:
    """The JSON the page polls: every meter (snapshot and health), with the chart points
    after slot ``since`` (power) and ``gas_since`` (gas)."""
    now = time.time()
    local = time.localtime(now)
    return {
        "version": __version__,
        "started": started,
        "now": now,
        "utc_offset": local.tm_gmtoff,
        "timezone": local.tm_zone,
        "meters": [
            meter_document(snap, state, histories.get(snap.name), now, since, gas_since)
            for snap, state in meters
        ],
    }
