"""Turn a :class:`MeterState` into the bytes of one telegram, per dialect.

Line formats follow the real telegrams in ``tests/fixtures``: DSMR 5.0
(``v5.txt``), DSMR 4.2 (``v4_2.txt``), DSMR 2.2 (``v2_2.txt``, no CRC, gas on
the following line) and Belgian e-MUCS (``fluvius_v171.txt``).
"""

from __future__ import annotations

from collections.abc import Callable

from p1_exporter.core.clock import format_meter_time
from p1_exporter.core.crc import crc16_arc
from p1_exporter.sim.han import ENCRYPTED, HAN_DIALECTS, render_han
from p1_exporter.sim.model import Capture, MeterState

DIALECTS = ("dsmr5", "dsmr4", "dsmr22", "belgian")
#: Binary dialects (p1_exporter.sim.han): HAN pushes over HDLC, and encrypted P1.
BINARY_DIALECTS = (*HAN_DIALECTS, ENCRYPTED)
ALL_DIALECTS = DIALECTS + BINARY_DIALECTS
#: The serial settings each dialect's meters use on the P1 port.
WIRE_SETTINGS = {
    "dsmr5": "115200-8N1",
    "dsmr4": "115200-8N1",
    "dsmr22": "9600-7E1",
    "belgian": "115200-8N1",
    "han-aidon": "115200-8N1",  # Aidon's RJ12 HAN port
    "han-kaifa": "2400-8E1",  # Norwegian M-Bus HAN port
    "encrypted": "115200-8N1",
}

_PLACEHOLDER_TIME = "632525252525W"  # "no time" in e-MUCS history entries


def render(state: MeterState, dialect: str = "dsmr5", meter_time: float | None = None) -> bytes:
    """One complete telegram for ``state``; ``meter_time`` is the meter clock (default: state).

    HAN dialects give a plain HDLC frame; ``encrypted`` gives the DSMR 5 telegram that
    :class:`~p1_exporter.sim.meter.SimulatedMeter` then encrypts with its key.
    """
    if dialect in HAN_DIALECTS:
        return render_han(state, dialect, state.time if meter_time is None else meter_time)
    if dialect == ENCRYPTED:
        dialect = "dsmr5"
    try:
        body = _BODIES[dialect]
    except KeyError:
        known = ", ".join(DIALECTS)
        raise ValueError(f"unknown dialect {dialect!r}; choose from {known}") from None
    clock = state.time if meter_time is None else meter_time
    text = "\r\n".join(body(state, clock)) + "\r\n!"
    data = text.encode("ascii")
    if dialect == "dsmr22":
        return data + b"\r\n"
    return data + b"%04X\r\n" % crc16_arc(data)


# -- value formats -----------------------------------------------------------


def _kwh(wh: int, digits: int = 6) -> str:
    return f"{wh // 1000:0{digits}d}.{wh % 1000:03d}*kWh"


def _kw(watts: float) -> str:
    w = round(watts)
    return f"{w // 1000:02d}.{w % 1000:03d}*kW"


def _m3(dm3: int) -> str:
    return f"{dm3 // 1000:05d}.{dm3 % 1000:03d}"


def _hex(text: str) -> str:
    return text.encode("ascii").hex().upper()


def _ts(epoch: float) -> str:
    return format_meter_time(epoch)


def _count(value: int) -> str:
    return f"({value:05d})"


def _failure_log(state: MeterState) -> str:
    entries = "".join(f"({_ts(f.end)})({f.duration:010d}*s)" for f in state.power_failure_log)
    return f"1-0:99.97.0({len(state.power_failure_log)})(0-0:96.7.19){entries}"


def _quality(state: MeterState) -> list[str]:
    phases = (32, 52, 72)
    sags = [f"1-0:{c}.32.0{_count(n)}" for c, n in zip(phases, state.voltage_sags, strict=True)]
    swells = [f"1-0:{c}.36.0{_count(n)}" for c, n in zip(phases, state.voltage_swells, strict=True)]
    return [
        f"0-0:96.7.21{_count(state.short_power_failures)}",
        f"0-0:96.7.9{_count(state.long_power_failures)}",
        _failure_log(state),
        *sags,
        *swells,
    ]


def _phase_power(state: MeterState) -> list[str]:
    imports = zip((21, 41, 61), state.phase_import_w, strict=True)
    exports = zip((22, 42, 62), state.phase_export_w, strict=True)
    return [f"1-0:{c}.7.0({_kw(w)})" for c, w in (*imports, *exports)]


def _voltages(state: MeterState) -> list[str]:
    return [f"1-0:{c}.7.0({v:05.1f}*V)" for c, v in zip((32, 52, 72), state.voltage, strict=True)]


def _currents(state: MeterState, number: str) -> list[str]:
    amps = zip((31, 51, 71), state.current, strict=True)
    return [f"1-0:{c}.7.0({number.format(a)}*A)" for c, a in amps]


def _mbus(
    channel: int, device: str, serial: str, id_code: str, capture: Capture, obis: str = "24.2.1"
) -> list[str]:
    return [
        f"0-{channel}:24.1.0({device})",
        f"0-{channel}:{id_code}({_hex(serial)})",
        f"0-{channel}:{obis}({_ts(capture.time)})({_m3(capture.value)}*m3)",
    ]


# -- dialects ------------------------------------------------------------------


def _dutch_head(state: MeterState, clock: float, model: str, version: str) -> list[str]:
    """Header, clock, id, the four energy registers, tariff and power of DSMR 4 and 5."""
    return [
        f"/SIM5\\2P1SIM-{model}",
        "",
        f"1-3:0.2.8({version})",
        f"0-0:1.0.0({_ts(clock)})",
        f"0-0:96.1.1({_hex(state.serial)})",
        f"1-0:1.8.1({_kwh(state.import_low_wh)})",
        f"1-0:1.8.2({_kwh(state.import_normal_wh)})",
        f"1-0:2.8.1({_kwh(state.export_low_wh)})",
        f"1-0:2.8.2({_kwh(state.export_normal_wh)})",
        f"0-0:96.14.0({1 if state.low_tariff else 2:04d})",
        f"1-0:1.7.0({_kw(state.import_w)})",
        f"1-0:2.7.0({_kw(state.export_w)})",
    ]


def _dsmr5(state: MeterState, clock: float) -> list[str]:
    return [
        *_dutch_head(state, clock, "DSMR5", "50"),
        *_quality(state),
        "0-0:96.13.0()",
        *_voltages(state),
        *_currents(state, "{:03.0f}"),
        *_phase_power(state),
        *_mbus(1, "003", state.gas_serial, "96.1.0", state.gas_5min),
        *_mbus(2, "007", state.water_serial, "96.1.0", state.water_5min),
    ]


def _dsmr4(state: MeterState, clock: float) -> list[str]:
    return [
        *_dutch_head(state, clock, "DSMR4", "42"),
        *_quality(state),
        "0-0:96.13.1()",
        "0-0:96.13.0()",
        *_currents(state, "{:03.0f}"),
        *_phase_power(state),
        *_mbus(1, "003", state.gas_serial, "96.1.0", state.gas_hourly),
    ]


def _dsmr22(state: MeterState, clock: float) -> list[str]:
    gas = state.gas_hourly
    digits = "".join(ch for ch in state.serial if ch.isdigit())
    gas_digits = "".join(ch for ch in state.gas_serial if ch.isdigit())
    return [
        "/SIM5\\2P1SIM-DSMR22",
        "",
        f"0-0:96.1.1({digits})",
        f"1-0:1.8.1({_kwh(state.import_low_wh, 5)})",
        f"1-0:1.8.2({_kwh(state.import_normal_wh, 5)})",
        f"1-0:2.8.1({_kwh(state.export_low_wh, 5)})",
        f"1-0:2.8.2({_kwh(state.export_normal_wh, 5)})",
        f"0-0:96.14.0({1 if state.low_tariff else 2:04d})",
        f"1-0:1.7.0({state.import_w / 1000:07.2f}*kW)",
        f"1-0:2.7.0({state.export_w / 1000:07.2f}*kW)",
        "0-0:17.0.0(0999.00*kW)",
        "0-0:96.3.10(1)",
        "0-0:96.13.1()",
        "0-0:96.13.0()",
        "0-1:24.1.0(3)",
        f"0-1:96.1.0({gas_digits})",
        f"0-1:24.3.0({format_meter_time(gas.time, suffix=False)})(00)(60)(1)(0-1:24.2.1)(m3)",
        f"({_m3(gas.value)})",
        "0-1:24.4.0(1)",
    ]


def _belgian(state: MeterState, clock: float) -> list[str]:
    # Belgian tariff numbers are the other way round: 1 = day (normal), 2 = night (low).
    peak = state.month_peak
    peak_line = (
        f"1-0:1.6.0({_ts(peak.time)})({_kw(peak.value)})"
        if peak is not None
        else f"1-0:1.6.0({_PLACEHOLDER_TIME})({_kw(0)})"
    )
    history = "".join(
        f"({_ts(entry.archived)})"
        f"({_ts(entry.time) if entry.time is not None else _PLACEHOLDER_TIME})"
        f"({_kw(entry.watts)})"
        for entry in state.peak_history
    )
    return [
        "/FLU5\\253769484_A",
        "",
        "0-0:96.1.4(50217)",
        f"0-0:96.1.1({_hex(state.serial)})",
        f"0-0:1.0.0({_ts(clock)})",
        f"1-0:1.8.1({_kwh(state.import_normal_wh)})",
        f"1-0:1.8.2({_kwh(state.import_low_wh)})",
        f"1-0:2.8.1({_kwh(state.export_normal_wh)})",
        f"1-0:2.8.2({_kwh(state.export_low_wh)})",
        f"0-0:96.14.0({2 if state.low_tariff else 1:04d})",
        f"1-0:1.4.0({_kw(state.demand_avg_w)})",
        peak_line,
        f"0-0:98.1.0({len(state.peak_history)})(1-0:1.6.0)(1-0:1.6.0){history}",
        f"1-0:1.7.0({_kw(state.import_w)})",
        f"1-0:2.7.0({_kw(state.export_w)})",
        *_phase_power(state),
        *_voltages(state),
        *_currents(state, "{:06.2f}"),
        "0-0:96.3.10(1)",
        "0-0:17.0.0(999.9*kW)",
        "1-0:31.4.0(040*A)",
        "0-0:96.13.0()",
        "0-1:24.1.0(003)",
        f"0-1:96.1.1({_hex(state.gas_serial)})",
        "0-1:24.4.0(1)",
        f"0-1:24.2.3({_ts(state.gas_5min.time)})({_m3(state.gas_5min.value)}*m3)",
        *_mbus(2, "007", state.water_serial, "96.1.1", state.water_5min),
    ]


_BODIES: dict[str, Callable[[MeterState, float], list[str]]] = {
    "dsmr5": _dsmr5,
    "dsmr4": _dsmr4,
    "dsmr22": _dsmr22,
    "belgian": _belgian,
}
