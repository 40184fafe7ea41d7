"""The simulated meter: household model, telegram dialects, faults, options and the CLI."""

from __future__ import annotations

import calendar
import itertools
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from p1_exporter.core import TelegramStream, parse
from p1_exporter.core.clock import is_eu_summer_time, meter_local_hour, parse_meter_time
from p1_exporter.core.crc import crc16_arc
from p1_exporter.sim.faults import Chunk, FaultInjector
from p1_exporter.sim.meter import DEFAULT_SEED, SimOptions, SimulatedMeter, parse_start
from p1_exporter.sim.model import HouseholdModel, MeterState, local_month_start
from p1_exporter.sim.render import DIALECTS, render

ROOT = Path(__file__).resolve().parent.parent
LINE = re.compile(r"^(\d-\d:\d+\.\d+\.\d+)((?:\([^()]*\))+)$")
TELEGRAM = re.compile(rb"/[^/!]*![0-9A-F]{4}\r\n")


def utc(year: int, month: int, day: int, hour: int, minute: int) -> float:
    return float(calendar.timegm((year, month, day, hour, minute, 0, 0, 0, 0)))


def crc_ok(telegram: bytes) -> bool:
    end = telegram.index(b"!") + 1
    return telegram[end:] == b"%04X\r\n" % crc16_arc(telegram[:end])


def lines(telegram: bytes) -> dict[str, str]:
    """OBIS code -> the raw ``(...)`` groups, for every data line of a telegram."""
    text = telegram.decode("ascii")
    body = text[: text.index("!")].split("\r\n")
    assert body[1] == "", "header must be followed by an empty line"
    found: dict[str, str] = {}
    for line in body[2:-1]:
        match = LINE.match(line)
        if match:
            found[match.group(1)] = match.group(2)
        else:
            assert re.fullmatch(r"\(\d{5}\.\d{3}\)", line), f"odd line {line!r}"
            found["next-line"] = line
    return found


def local_weekday(t: float) -> int:
    return time.gmtime(t + (7200 if is_eu_summer_time(t) else 3600)).tm_wday


# -- dialects -------------------------------------------------------------------

WINTER_MORNING = utc(2024, 1, 15, 7, 0)  # a Monday, 08:00 CET

COMMON = ["1-0:1.8.1", "1-0:1.8.2", "1-0:2.8.1", "1-0:2.8.2", "0-0:96.14.0", "1-0:1.7.0"]
EXPECTED = {
    "dsmr5": [
        "1-3:0.2.8",
        "0-0:1.0.0",
        "0-0:96.1.1",
        "0-0:96.7.21",
        "0-0:96.7.9",
        "1-0:99.97.0",
        "1-0:32.32.0",
        "1-0:72.36.0",
        "0-0:96.13.0",
        "1-0:32.7.0",
        "1-0:52.7.0",
        "1-0:72.7.0",
        "1-0:31.7.0",
        "1-0:21.7.0",
        "1-0:62.7.0",
        "0-1:24.1.0",
        "0-1:96.1.0",
        "0-1:24.2.1",
        "0-2:24.1.0",
        "0-2:96.1.0",
        "0-2:24.2.1",
    ],
    "dsmr4": ["1-3:0.2.8", "0-0:1.0.0", "0-0:96.7.21", "1-0:99.97.0", "0-1:24.2.1"],
    "dsmr22": ["0-0:96.1.1", "0-1:24.3.0", "next-line", "0-1:24.4.0"],
    "belgian": [
        "0-0:96.1.4",
        "0-0:1.0.0",
        "1-0:1.4.0",
        "1-0:1.6.0",
        "0-0:98.1.0",
        "1-0:31.4.0",
        "0-0:17.0.0",
        "0-1:24.2.3",
        "0-2:24.1.0",
        "0-2:24.2.1",
    ],
}
HEADERS = {
    "dsmr5": b"/SIM5\\2P1SIM-DSMR5\r\n",
    "dsmr4": b"/SIM5\\2P1SIM-DSMR4\r\n",
    "dsmr22": b"/SIM5\\2P1SIM-DSMR22\r\n",
    "belgian": b"/FLU5\\253769484_A\r\n",
}


def meter_after(dialect: str, seconds: float, start: float = WINTER_MORNING) -> SimulatedMeter:
    meter = SimulatedMeter(dialect, seed=7, start=start)
    meter.telegram_at(start + seconds / 2)
    return meter


@pytest.mark.parametrize("dialect", DIALECTS)
def test_dialect_has_its_lines_and_a_valid_crc(dialect: str) -> None:
    meter = meter_after(dialect, 1800)
    telegram = meter.telegram_at(meter.start + 1800)
    assert telegram.startswith(HEADERS[dialect])
    found = lines(telegram)
    for code in COMMON + EXPECTED[dialect]:
        assert code in found, f"{dialect} lacks {code}"
    if dialect == "dsmr22":
        assert telegram.endswith(b"\r\n!\r\n")
        assert "0-0:1.0.0" not in found
        assert re.fullmatch(
            r"\(\d{12}\)\(00\)\(60\)\(1\)\(0-1:24\.2\.1\)\(m3\)", found["0-1:24.3.0"]
        )
    else:
        assert crc_ok(telegram)
    version = {"dsmr5": "(50)", "dsmr4": "(42)"}.get(dialect)
    if version:
        assert found["1-3:0.2.8"] == version


def test_dsmr5_values_are_the_state_values() -> None:
    meter = meter_after("dsmr5", 600)
    telegram = meter.telegram_at(meter.start + 600)
    state = meter.model.state
    found = lines(telegram)
    assert found["1-0:1.8.1"] == f"({state.import_low_wh / 1000:010.3f}*kWh)"
    assert found["1-0:1.8.2"] == f"({state.import_normal_wh / 1000:010.3f}*kWh)"
    assert found["1-0:2.8.2"] == f"({state.export_normal_wh / 1000:010.3f}*kWh)"
    assert found["0-0:96.14.0"] == ("(0001)" if state.low_tariff else "(0002)")
    assert found["1-0:1.7.0"] == f"({state.import_w / 1000:06.3f}*kW)"
    assert found["0-0:96.1.1"] == f"({state.serial.encode().hex().upper()})"
    assert parse_meter_time(found["0-0:1.0.0"][1:-1]) == meter.start + 600
    gas = re.fullmatch(r"\((\w+)\)\((\d{5}\.\d{3})\*m3\)", found["0-1:24.2.1"])
    assert gas is not None
    stamp, reading = gas.groups()
    assert parse_meter_time(stamp) == state.gas_5min.time
    assert round(float(reading) * 1000) == state.gas_5min.value
    assert found["0-2:24.1.0"] == "(007)"
    assert found["1-0:99.97.0"].startswith(f"({len(state.power_failure_log)})(0-0:96.7.19)")


def test_gas_reading_period_per_dialect() -> None:
    for dialect, period in (("dsmr5", 300), ("dsmr4", 3600), ("belgian", 300)):
        meter = SimulatedMeter(dialect, seed=2, start=WINTER_MORNING)
        for step in range(1, 50):
            t = WINTER_MORNING + step * 97.0
            found = lines(meter.telegram_at(t))
            code = "0-1:24.2.3" if dialect == "belgian" else "0-1:24.2.1"
            stamp = parse_meter_time(found[code][1:14])
            assert stamp is not None and stamp % period == 0 and t - period < stamp <= t


def test_dsmr22_gas_value_on_the_next_line() -> None:
    meter = meter_after("dsmr22", 7200)
    found = lines(meter.telegram_at(meter.start + 7200))
    state = meter.model.state
    assert found["next-line"] == f"({state.gas_hourly.value / 1000:09.3f})"
    assert found["0-0:96.1.1"] == "(" + "".join(c for c in state.serial if c.isdigit()) + ")"


def test_belgian_tariffs_are_numbered_the_other_way_round() -> None:
    night = SimulatedMeter("belgian", seed=1, start=utc(2024, 1, 16, 1, 0))  # 02:00 CET
    day = SimulatedMeter("belgian", seed=1, start=utc(2024, 1, 16, 11, 0))
    for meter, tariff in ((night, "(0002)"), (day, "(0001)")):
        found = lines(meter.telegram_at(meter.start))
        state = meter.model.state
        assert found["0-0:96.14.0"] == tariff
        assert found["1-0:1.8.1"] == f"({state.import_normal_wh / 1000:010.3f}*kWh)"
        assert found["1-0:1.8.2"] == f"({state.import_low_wh / 1000:010.3f}*kWh)"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_project_parser_reads_every_dialect(dialect: str) -> None:
    meter = meter_after(dialect, 3600)
    telegram = parse(meter.telegram_at(meter.start + 3600))
    state = meter.model.state
    assert telegram.malformed == ()
    assert telegram.unknown == ()
    assert telegram.crc_verified is (dialect != "dsmr22")
    low, normal = ("1-0:1.8.2", "1-0:1.8.1") if dialect == "belgian" else ("1-0:1.8.1", "1-0:1.8.2")
    assert telegram.value(low) == state.import_low_wh * 3600
    assert telegram.value(normal) == state.import_normal_wh * 3600
    gas = telegram.mbus[1].reading
    assert gas is not None and gas.unit == "m3"
    if dialect != "dsmr22":
        assert telegram.meter_time == meter.start + 3600
        assert telegram.value("1-0:1.7.0") == state.import_w
    if dialect == "belgian":
        assert telegram.month_peak is not None and state.month_peak is not None
        assert telegram.month_peak.value == state.month_peak.value
        assert telegram.value("1-0:1.4.0") == round(state.demand_avg_w)
        assert len(telegram.peak_history) == len(state.peak_history)
        assert telegram.mbus[2].device_type == 7


def test_unknown_dialect_is_refused() -> None:
    with pytest.raises(ValueError, match="dsmr9"):
        SimulatedMeter("dsmr9")
    with pytest.raises(ValueError, match="dsmr9"):
        render(HouseholdModel(1, WINTER_MORNING).state, "dsmr9", WINTER_MORNING)


# -- the household over a week ----------------------------------------------------------

WEEK_START = utc(2024, 3, 26, 0, 0)  # Tuesday; the week holds the switch to summer time
STEP = 10.0


@dataclass
class Week:
    times: list[float]
    states: list[MeterState]  # every 60th, to keep memory small
    registers: list[tuple[int, int, int, int, int, int]]
    integrals: list[float]  # W*s per register, from the shown power
    low: list[bool]
    import_w: list[float]
    export_w: list[float]
    shown_ok: bool


@pytest.fixture(scope="module")
def week() -> Week:
    model = HouseholdModel(11, WEEK_START)
    state = model.state
    times, low, import_w, export_w, registers, states = [], [], [], [], [], []
    integrals = [0.0, 0.0, 0.0, 0.0]
    held = (0.0, 0.0)
    shown_ok = True
    for step in range(7 * 8640 + 1):
        t = WEEK_START + step * STEP
        previous = state
        state = model.advance(t)
        power = model.power_at(t)
        shown_ok &= (state.import_w, state.export_w) == (round(power[0]), round(power[1]))
        if step:
            # The power steps at multiples of 10 s and moves every second around the step,
            # but a slot's first second has no deviation and its deviations sum to 0, so the
            # modelled power at each telegram, held until the next, integrates exactly.
            index = 0 if previous.low_tariff else 1
            integrals[index] += held[0] * STEP
            integrals[2 + index] += held[1] * STEP
        held = power
        times.append(t)
        low.append(state.low_tariff)
        import_w.append(state.import_w)
        export_w.append(state.export_w)
        registers.append(
            (
                state.import_low_wh,
                state.import_normal_wh,
                state.export_low_wh,
                state.export_normal_wh,
                state.gas_dm3,
                state.water_dm3,
            )
        )
        if step % 60 == 0:
            states.append(state)
            found = lines(render(state, "dsmr5", t))
            shown_ok &= found["1-0:1.7.0"] == f"({state.import_w / 1000:06.3f}*kW)"
            shown_ok &= found["1-0:2.7.0"] == f"({state.export_w / 1000:06.3f}*kW)"
    return Week(times, states, registers, integrals, low, import_w, export_w, shown_ok)


@pytest.mark.slow
def test_registers_never_decrease(week: Week) -> None:
    for before, after in zip(week.registers, week.registers[1:], strict=False):
        assert all(a >= b for a, b in zip(after, before, strict=True))
    first, last = week.registers[0], week.registers[-1]
    assert last[0] + last[1] > first[0] + first[1]  # the household used energy
    assert last[2] + last[3] > first[2] + first[3]  # and the panels exported some
    assert last[4] > first[4] and last[5] > first[5]


def test_registers_are_the_integral_of_the_shown_power(week: Week) -> None:
    assert week.shown_ok, "the telegram must show the power that is integrated (whole W)"
    first, last = week.registers[0], week.registers[-1]
    for index in range(4):
        integral_wh = week.integrals[index] / 3600
        delta = last[index] - first[index]
        # Both ends are rounded down to whole Wh.
        assert abs(integral_wh - delta) < 1, (index, integral_wh, delta)


def test_tariff_switches_at_7_and_23_local_and_weekends_are_low(week: Week) -> None:
    for t, low in zip(week.times, week.low, strict=True):
        hour = meter_local_hour(t)
        weekend = local_weekday(t) >= 5
        assert low == (weekend or hour < 7 or hour >= 23), time.gmtime(t)
    index = {t: i for i, t in enumerate(week.times)}
    # Tuesday in winter time (UTC+1): 07:00 local is 06:00 UTC, 23:00 local is 22:00 UTC.
    assert week.low[index[utc(2024, 3, 26, 5, 59) + 50]]
    assert not week.low[index[utc(2024, 3, 26, 6, 0)]]
    assert not week.low[index[utc(2024, 3, 26, 21, 59) + 50]]
    assert week.low[index[utc(2024, 3, 26, 22, 0)]]
    # Monday after the switch to summer time (UTC+2): 07:00 local is 05:00 UTC.
    assert week.low[index[utc(2024, 4, 1, 4, 59) + 50]]
    assert not week.low[index[utc(2024, 4, 1, 5, 0)]]
    # Saturday noon is low.
    assert week.low[index[utc(2024, 3, 30, 11, 0)]]


def test_pv_exports_only_in_daytime(week: Week) -> None:
    exporting_hours = set()
    for t, export in zip(week.times, week.export_w, strict=True):
        if export > 0:
            hour = meter_local_hour(t)
            assert 6 <= hour <= 21, f"export of {export} W at local hour {hour:.2f}"
            exporting_hours.add(int(hour))
    assert {11, 12, 13} & exporting_hours


def test_power_looks_like_a_household(week: Week) -> None:
    night = [w for t, w in zip(week.times, week.import_w, strict=True) if meter_local_hour(t) < 5]
    assert min(night) >= 100 and sum(night) / len(night) < 450
    assert max(week.import_w) > 1800  # kettles, ovens
    for state in week.states:
        assert all(215 < v < 245 for v in state.voltage)
        for watts, volts, amps, out in zip(
            state.phase_import_w, state.voltage, state.current, state.phase_export_w, strict=True
        ):
            assert amps == pytest.approx((watts + out) / volts)


def energy_by_local_hour(start: float, days: int, pick: str) -> dict[int, float]:
    model = HouseholdModel(5, start)
    previous = model.state
    totals = dict.fromkeys(range(24), 0.0)
    for step in range(1, days * 1440 + 1):
        state = model.advance(start + step * 60.0)
        hour = int(meter_local_hour(previous.time))
        if pick == "gas":
            totals[hour] += state.gas_dm3 - previous.gas_dm3
        elif pick == "water":
            totals[hour] += state.water_dm3 - previous.water_dm3
        else:
            totals[hour] += previous.export_w * 60 / 3600
        previous = state
    return totals


def test_gas_is_mostly_winter_mornings_and_evenings() -> None:
    winter = energy_by_local_hour(utc(2024, 1, 15, 0, 0), 2, "gas")
    summer = energy_by_local_hour(utc(2024, 7, 15, 0, 0), 2, "gas")
    peak_hours = sum(winter[h] for h in (*range(6, 9), *range(17, 22)))
    assert peak_hours > 0.6 * sum(winter.values())
    assert sum(winter.values()) > 4 * sum(summer.values())
    assert 3000 < sum(winter.values()) / 2 < 15000  # litres a day in winter


def test_pv_is_bigger_in_summer() -> None:
    summer = sum(energy_by_local_hour(utc(2024, 6, 20, 0, 0), 2, "export").values())
    winter = sum(energy_by_local_hour(utc(2024, 12, 20, 0, 0), 2, "export").values())
    assert summer > 2 * winter


def test_water_is_used_in_the_day() -> None:
    water = energy_by_local_hour(utc(2024, 5, 6, 0, 0), 2, "water")
    assert sum(water[h] for h in range(7, 23)) > 0.8 * sum(water.values())
    assert 100 < sum(water.values()) / 2 < 600  # litres a day


def test_the_load_does_not_depend_on_how_often_it_is_sampled() -> None:
    fine, coarse = HouseholdModel(3, WINTER_MORNING), HouseholdModel(3, WINTER_MORNING)
    for step in range(1, 3 * 360 + 1):
        t = WINTER_MORNING + step * 10.0
        a = fine.advance(t)
        if step % 6 == 0:
            b = coarse.advance(t)
            assert (a.import_w, a.export_w, a.low_tariff) == (b.import_w, b.export_w, b.low_tariff)


def test_same_seed_same_telegrams_and_time_only_goes_forward() -> None:
    a = SimulatedMeter("dsmr5", seed=9, start=WINTER_MORNING)
    b = SimulatedMeter("dsmr5", seed=9, start=WINTER_MORNING)
    c = SimulatedMeter("dsmr5", seed=10, start=WINTER_MORNING)
    for step in range(1, 20):
        t = WINTER_MORNING + step
        assert a.telegram_at(t) == b.telegram_at(t)
    assert a.telegram_at(WINTER_MORNING + 20) != c.telegram_at(WINTER_MORNING + 20)
    with pytest.raises(ValueError, match="backwards"):
        a.telegram_at(WINTER_MORNING)


def registers(state: MeterState) -> tuple[int, ...]:
    """Every register and counter a telegram shows."""
    return (
        state.import_low_wh, state.import_normal_wh, state.export_low_wh,
        state.export_normal_wh, state.gas_dm3, state.water_dm3, state.gas_5min.value,
        state.gas_hourly.value, state.water_5min.value, state.short_power_failures,
        state.long_power_failures, *state.voltage_sags, *state.voltage_swells,
    )  # fmt: skip


def test_same_seed_started_at_different_times_agrees_at_every_moment() -> None:
    early = SimulatedMeter("dsmr5", seed=6, start=WINTER_MORNING)
    # Started 3 days, 2 h and 7.5 s later, and in the next month for the third.
    late = SimulatedMeter("dsmr5", seed=6, start=WINTER_MORNING + 3 * 86400 + 7207.5)
    other_month = utc(2024, 2, 3, 5, 0)
    later = SimulatedMeter("dsmr5", seed=6, start=other_month)
    early.state_at(late.start - 3600)
    for step in range(360):
        t = late.start + step * 10.0
        a, b = early.state_at(t), late.state_at(t)
        assert registers(a) == registers(b)
        assert (a.import_w, a.export_w, a.voltage) == (b.import_w, b.export_w, b.voltage)
        assert a.power_failure_log == b.power_failure_log
        assert a.month_peak == b.month_peak  # the peak so far is recomputed at the start
        assert early.telegram_at(t + 5) == late.telegram_at(t + 5)
    for step in range(0, 8 * 86400, 3607):  # a week later, into February
        t = late.start + 3600 + step
        assert registers(early.state_at(t)) == registers(late.state_at(t))
    for step in range(100):
        t = other_month + step * 97.0
        a, b = early.state_at(t), later.state_at(t)
        assert registers(a) == registers(b)
        assert (a.import_w, a.export_w, a.month_peak) == (b.import_w, b.export_w, b.month_peak)
    assert registers(SimulatedMeter("dsmr5", seed=7, start=t).model.state) != registers(b)


def test_a_restarted_meter_continues_where_it_stopped() -> None:
    first = HouseholdModel(12, WINTER_MORNING)
    stop = WINTER_MORNING + 2 * 3600 + 3.5
    for step in range(1, 723):
        before = first.advance(min(WINTER_MORNING + step * 10.0, stop))
    # Down for 4 h 20 min (a reboot, an image pull), then started again.
    restart = stop + 4 * 3600 + 1200
    second = HouseholdModel(12, restart)
    after = second.state
    assert all(a >= b for a, b in zip(registers(after), registers(before), strict=True))
    assert after.import_wh > before.import_wh  # it went on using energy meanwhile
    # The jump is the modelled energy in between: the power is constant on 10 s steps.
    energy = [0.0, 0.0, 0.0, 0.0]
    t = stop
    while t < restart:
        end = min(restart, t - t % 10 + 10)
        low = local_weekday(t) >= 5 or not 7 <= meter_local_hour(t) < 23
        import_w, export_w = second.power_at(t)
        energy[0 if low else 1] += import_w * (end - t) / 3600
        energy[2 if low else 3] += export_w * (end - t) / 3600
        t = end
    jumps = (
        after.import_low_wh - before.import_low_wh,
        after.import_normal_wh - before.import_normal_wh,
        after.export_low_wh - before.export_low_wh,
        after.export_normal_wh - before.export_normal_wh,
    )
    for jump, modelled in zip(jumps, energy, strict=True):
        assert abs(jump - modelled) < 1, (jumps, energy)
    # And it goes on from there as the first one would have.
    for step in range(1, 100):
        t = restart + step * 10.0
        assert registers(first.advance(t)) == registers(second.advance(t))


# -- moving like a real meter, one telegram a second ----------------------------------------

#: A night, a winter morning (kettle, heating), a sunny summer noon (PV export on one phase).
MOMENTS = (utc(2024, 3, 12, 1, 0), WINTER_MORNING, utc(2024, 6, 18, 11, 0))
#: The lines that a real meter's readings move in nearly every telegram at 1 s.
MOVING = {
    "dsmr5": ("1-0:32.7.0", "1-0:52.7.0", "1-0:72.7.0"),
    "belgian": ("1-0:32.7.0", "1-0:52.7.0", "1-0:72.7.0", "1-0:31.7.0", "1-0:51.7.0", "1-0:71.7.0"),
}


def changed_lines(telegrams: list[bytes]) -> tuple[float, dict[str, float]]:
    """Mean lines that differ from the previous telegram, and each OBIS line's share."""
    changes = 0
    per_code: dict[str, int] = {}
    for before, after in itertools.pairwise(telegrams):
        old, new = before.split(b"\r\n"), after.split(b"\r\n")
        changes += sum(a != b for a, b in zip(old, new, strict=True))
        previous = lines(before)
        for code, value in lines(after).items():
            per_code[code] = per_code.get(code, 0) + (previous.get(code) != value)
    pairs = len(telegrams) - 1
    return changes / pairs, {code: count / pairs for code, count in per_code.items()}


@pytest.mark.parametrize(("dialect", "low", "high"), [("dsmr5", 7.0, 12.0), ("belgian", 9.0, 15.0)])
def test_telegrams_at_one_a_second_move_like_a_real_meters(
    dialect: str, low: float, high: float
) -> None:
    # A real Belgian meter changes ~13 of its 38 lines a second (clock, total and phase
    # power, voltages, currents, CRC); DSMR 5 shows whole amperes, so a few lines fewer.
    for start in MOMENTS:
        meter = SimulatedMeter(dialect, seed=4, start=start)
        telegrams = [meter.telegram_at(start + second) for second in range(300)]
        mean, share = changed_lines(telegrams)
        assert low <= mean <= high, (dialect, time.gmtime(start), mean)
        for code in MOVING[dialect]:
            assert share[code] > 0.75, (code, share[code])
        # Each phase's power moves, whichever way it flows.
        for imports, exports in (
            ("1-0:21.7.0", "1-0:22.7.0"),
            ("1-0:41.7.0", "1-0:42.7.0"),
            ("1-0:61.7.0", "1-0:62.7.0"),
        ):
            assert share[imports] + share[exports] > 0.75, (imports, share)
        assert share["1-0:1.7.0"] + share["1-0:2.7.0"] > 0.75
        assert share["1-0:1.8.1"] + share["1-0:1.8.2"] < 0.5  # registers move in whole Wh


def test_registers_are_the_exact_integral_of_the_per_second_power() -> None:
    # 06:00-09:30 UTC on a June day: import in the morning, then the panels export.
    start = utc(2024, 6, 18, 6, 0)
    model = HouseholdModel(8, start)
    first = model.registers_at(start)
    energy = [0.0, 0.0, 0.0, 0.0]  # W*s per register: import low/normal, export low/normal
    powers: list[tuple[float, float]] = []
    for second in range(int(3.5 * 3600)):
        t = start + second
        state = model.advance(t)
        power = model.power_at(t)
        assert (state.import_w, state.export_w) == (round(power[0]), round(power[1]))
        assert model.power_at(t + 0.5) == power  # constant through the second
        index = 0 if state.low_tariff else 1
        # Halfway through the second, the registers hold exactly half its energy.
        half = model.registers_at(t + 0.5)
        for i in (index, 2 + index):
            flow = power[0] if i < 2 else power[1]
            expected = first[i] + (energy[i] + flow * 0.5) / 3600
            assert half[i] == pytest.approx(expected, abs=1e-6), (second, i)
        energy[index] += power[0]
        energy[2 + index] += power[1]
        powers.append(power)
    last = model.registers_at(start + 3.5 * 3600)
    for i in range(4):
        assert last[i] - first[i] == pytest.approx(energy[i] / 3600, abs=1e-6), i
    assert energy[1] > 0 and energy[3] > 0  # both directions were covered
    # Within each 10 s slot the power moves, but the slot's energy is its first second's.
    moving = 0
    for slot in range(0, len(powers), 10):
        window = powers[slot : slot + 10]
        for direction in (0, 1):
            assert sum(p[direction] for p in window) == pytest.approx(10 * window[0][direction])
        moving += len({p for p in window}) > 5
    assert moving > 0.9 * len(powers) / 10


def test_force_import_watts() -> None:
    meter = SimulatedMeter("dsmr5", seed=4, start=utc(2024, 6, 20, 11, 0))  # sunny noon
    meter.force_import_watts = 5000
    assert meter.model.force_import_watts == 5000
    first = meter.model.advance(meter.start + 1)
    assert (first.import_w, first.export_w) == (5000.0, 0.0)
    assert sum(first.phase_import_w) == pytest.approx(5000)
    found = lines(meter.telegram_at(meter.start + 3601))
    assert found["1-0:1.7.0"] == "(05.000*kW)" and found["1-0:2.7.0"] == "(00.000*kW)"
    after = meter.model.state
    assert after.import_wh - first.import_wh == 5000
    meter.force_import_watts = None
    assert meter.model.advance(meter.start + 3602).import_w != 5000.0


def test_belgian_quarter_hour_average_and_month_peak() -> None:
    start = utc(2024, 1, 31, 22, 0)  # 23:00 local on the last day of January
    model = HouseholdModel(8, start)
    history = len(model.state.peak_history)
    model.force_import_watts = 6000
    model.advance(start + 1)
    state = model.advance(start + 450)  # half-way through the quarter
    assert state.demand_avg_w == pytest.approx(6000, abs=20)
    state = model.advance(start + 900)  # quarter closed at 6 kW
    assert state.month_peak is not None
    assert state.month_peak.time == start + 900
    assert state.month_peak.value == pytest.approx(6000, abs=10)
    model.force_import_watts = 1000
    for step in range(1, 180):  # to 23:59:45 local
        state = model.advance(start + 900 + step * 15)
    assert state.month_peak is not None and state.month_peak.value == pytest.approx(6000, abs=10)
    # February starts at 23:00 UTC: January's peak is archived, the new month starts afresh.
    state = model.advance(utc(2024, 2, 1, 0, 0))
    assert len(state.peak_history) == history + 1
    archived = state.peak_history[-1]
    assert archived.archived == local_month_start(2024, 2) == utc(2024, 1, 31, 23, 0)
    assert archived.watts == pytest.approx(6000, abs=10) and archived.time == start + 900
    assert state.month_peak is not None and state.month_peak.value == pytest.approx(1000, abs=5)
    found = lines(render(state, "belgian", state.time))
    assert found["0-0:98.1.0"].startswith(f"({history + 1})(1-0:1.6.0)(1-0:1.6.0)")
    last_entry = f"(240201000000W)(240131231500W)({archived.watts / 1000:06.3f}*kW)"
    assert found["0-0:98.1.0"].endswith(last_entry)


# -- faults -------------------------------------------------------------------------------


def test_no_faults_means_the_telegram_unchanged() -> None:
    telegram = meter_after("dsmr5", 10).telegram_at(WINTER_MORNING + 10)
    assert FaultInjector(1).apply(telegram) == [Chunk(telegram)]


def test_fault_rates_are_roughly_honoured() -> None:
    telegram = meter_after("dsmr5", 10).telegram_at(WINTER_MORNING + 10)
    injector = FaultInjector(
        3, crc_error_rate=0.2, garbage_rate=0.1, torn_rate=0.05, pause_rate=0.1, pause_seconds=3
    )
    n = 4000
    seen = {"crc_error": 0, "garbage": 0, "torn": 0, "pause": 0}
    for _ in range(n):
        chunks = injector.apply(telegram)
        data = chunks[-1].data
        if len(chunks) == 2:
            seen["garbage"] += 1
            assert b"/" not in chunks[0].data and chunks[0].data
        if chunks[0].pause_before:
            assert chunks[0].pause_before == 3
            seen["pause"] += 1
        if len(data) < len(telegram):
            seen["torn"] += 1
            assert data.startswith(b"/")
        else:
            assert len(data) == len(telegram)
            if data != telegram:
                seen["crc_error"] += 1
                assert not crc_ok(data)
                assert sum(a != b for a, b in zip(data, telegram, strict=True)) == 1
    for name, rate in (("crc_error", 0.2 * 0.95), ("garbage", 0.1), ("torn", 0.05), ("pause", 0.1)):
        assert abs(seen[name] / n - rate) < 0.025, (name, seen[name])
    assert injector.counts["garbage"] == seen["garbage"]
    assert injector.counts["pause"] == seen["pause"]


def test_the_parser_counts_exactly_the_injected_crc_errors() -> None:
    faults = FaultInjector(5, crc_error_rate=0.3)
    meter = SimulatedMeter("belgian", seed=5, start=WINTER_MORNING, faults=faults)
    stream = TelegramStream()
    results: dict[str, int] = {}
    for step in range(1, 201):
        for chunk in meter.chunks_at(WINTER_MORNING + step):
            for outcome in stream.feed(chunk.data):
                results[outcome.result] = results.get(outcome.result, 0) + 1
    for outcome in stream.flush():
        results[outcome.result] = results.get(outcome.result, 0) + 1
    assert results.get("crc_error", 0) == faults.counts["crc_error"] > 30
    assert results["ok"] == 200 - faults.counts["crc_error"]


def test_fault_rates_are_checked() -> None:
    with pytest.raises(ValueError, match="torn_rate"):
        FaultInjector(1, torn_rate=1.5)


# -- options -----------------------------------------------------------------------------


def test_options_from_url() -> None:
    options = SimOptions.from_url("sim://?dialect=belgian&seed=3&interval=1&crc_error_rate=0.1")
    assert (options.dialect, options.seed, options.interval) == ("belgian", 3, 1.0)
    assert options.crc_error_rate == 0.1
    meter = SimulatedMeter.from_options(options)
    assert meter.dialect == "belgian" and meter.seed == 3
    assert meter.faults is not None and meter.faults.crc_error_rate == 0.1
    assert SimOptions.from_url("sim://") == SimOptions()
    timed = SimOptions.from_url("sim://?start=2024-01-15T07:00:00Z&force_import_watts=900")
    assert timed.start == WINTER_MORNING
    assert SimulatedMeter.from_options(timed).force_import_watts == 900


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sim://?dialect=dsmr5&colour=red", "colour"),
        ("sim://?dialect=nope", "nope"),
        ("sim://?seed=abc", "seed"),
        ("sim://?interval=0", "interval"),
        ("sim://?crc_error_rate=2", "crc_error_rate"),
        ("sim://?wire_settings=9600-9Z1", "9600-9Z1"),
        ("serial:///dev/ttyUSB0", "sim://"),
        ("sim://belgian", "query"),
    ],
)
def test_bad_urls_are_refused_by_name(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimOptions.from_url(url)


def test_parse_start() -> None:
    assert parse_start("1705302000") == WINTER_MORNING
    assert parse_start("2024-01-15T08:00:00+01:00") == WINTER_MORNING
    assert parse_start("2024-01-15 07:00") == WINTER_MORNING
    with pytest.raises(ValueError, match="tomorrow"):
        parse_start("tomorrow")


# -- the command ---------------------------------------------------------------------------


def simulate(*args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "p1_exporter.sim", "--seed", "1", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()


def first_line(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "the simulator printed nothing"
    return proc.stdout.readline().decode().strip()


def read_telegrams(fd: int, wanted: int, timeout: float = 10.0) -> list[bytes]:
    """Read from ``fd`` until ``wanted`` complete telegrams have arrived."""
    data = b""
    deadline = time.monotonic() + timeout
    while len(TELEGRAM.findall(data)) < wanted:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"only got {data[:200]!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 65536)
            assert chunk, "stream ended early"
            data += chunk
    return list(TELEGRAM.findall(data))


@pytest.mark.integration
def test_cli_stdout_count(processes: list[subprocess.Popen[bytes]]) -> None:
    proc = simulate("--count", "3", "--interval", "0.05", "--dialect", "dsmr4", "--stdout")
    processes.append(proc)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    telegrams = TELEGRAM.findall(out)
    assert len(telegrams) == 3 and out == b"".join(telegrams)
    assert all(crc_ok(t) and b"1-3:0.2.8(42)" in t for t in telegrams)


@pytest.mark.integration
def test_cli_speed_fast_forwards_the_meter_clock(processes: list[subprocess.Popen[bytes]]) -> None:
    start = "2024-01-15T07:00:00Z"
    proc = simulate("--count", "3", "--interval", "0.05", "--speed", "1200", "--start", start)
    processes.append(proc)
    out, _ = proc.communicate(timeout=10)
    clocks = [parse_meter_time(lines(t)["0-0:1.0.0"][1:-1]) for t in TELEGRAM.findall(out)]
    assert clocks == [WINTER_MORNING, WINTER_MORNING + 60, WINTER_MORNING + 120]


@pytest.mark.integration
def test_cli_pty(processes: list[subprocess.Popen[bytes]]) -> None:
    proc = simulate("--pty", "--interval", "0.05", "--count", "200")
    processes.append(proc)
    path = first_line(proc)
    assert path.startswith("/dev/")
    fd = os.open(path, os.O_RDONLY | os.O_NOCTTY)
    try:
        telegrams = read_telegrams(fd, 3)
    finally:
        os.close(fd)
    assert all(crc_ok(t) for t in telegrams)
    # Nobody reads now; the simulator must keep going.
    time.sleep(0.3)
    assert proc.poll() is None


@pytest.mark.integration
def test_cli_pty_survives_without_reader(processes: list[subprocess.Popen[bytes]]) -> None:
    proc = simulate("--pty", "--interval", "0.001", "--count", "400")
    processes.append(proc)
    first_line(proc)
    _, err = proc.communicate(timeout=10)  # ~1 MB into a pty nobody reads
    assert proc.returncode == 0, err


@pytest.mark.integration
def test_cli_tcp_clients_come_and_go(processes: list[subprocess.Popen[bytes]]) -> None:
    proc = simulate("--tcp", "127.0.0.1:0", "--interval", "0.05", "--dialect", "belgian")
    processes.append(proc)
    url = first_line(proc)
    match = re.fullmatch(r"socket://127\.0\.0\.1:(\d+)", url)
    assert match, url
    address = ("127.0.0.1", int(match.group(1)))
    with socket.create_connection(address, timeout=5) as first:
        assert all(crc_ok(t) for t in read_telegrams(first.fileno(), 2))
        with socket.create_connection(address, timeout=5) as second:
            assert all(crc_ok(t) for t in read_telegrams(second.fileno(), 2))
            first.close()
            assert all(crc_ok(t) for t in read_telegrams(second.fileno(), 3))
    with socket.create_connection(address, timeout=5) as third:
        assert read_telegrams(third.fileno(), 1)[0].startswith(b"/FLU5")
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.integration
def test_cli_stops_cleanly_on_signals(
    processes: list[subprocess.Popen[bytes]], sig: signal.Signals
) -> None:
    proc = simulate("--pty", "--interval", "0.2")
    processes.append(proc)
    first_line(proc)
    time.sleep(0.2)
    proc.send_signal(sig)
    assert proc.wait(timeout=5) == 0
    assert proc.stderr is not None
    assert b"Traceback" not in proc.stderr.read()


@pytest.mark.integration
def test_cli_refuses_bad_options(processes: list[subprocess.Popen[bytes]]) -> None:
    proc = simulate("--crc-error-rate", "3", "--count", "1")
    processes.append(proc)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 2 and b"crc_error_rate" in err
    proc = simulate("--dialect", "dsmr9")
    processes.append(proc)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 2 and b"dsmr9" in err


def test_the_demo_household_continues_across_restarts_of_the_command() -> None:
    """``p1-exporter simulate`` without --seed (the demo meter), started twice: the second
    run's registers are the first run's household at a later moment."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    seen = []
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-m", "p1_exporter.sim", "--count", "1"],
            capture_output=True,
            cwd=ROOT,
            env=env,
            timeout=60,
            check=True,
        )
        telegram = parse(result.stdout)
        assert telegram.meter_time is not None
        shown = tuple(
            telegram.value(code) for code in ("1-0:1.8.1", "1-0:1.8.2", "1-0:2.8.1", "1-0:2.8.2")
        )
        seen.append((telegram.meter_time, shown))
        time.sleep(1.1)
    (first_time, first), (second_time, second) = seen
    assert second_time > first_time
    assert all(
        b is not None and a is not None and b >= a for a, b in zip(first, second, strict=True)
    )
    model = HouseholdModel(DEFAULT_SEED, first_time)
    for moment, values in seen:  # the meter clock shows whole seconds
        low, high = model.registers_at(moment - 1), model.registers_at(moment + 1)
        for index, value in enumerate(values):
            assert value is not None
            assert int(low[index]) * 3600 <= value <= int(high[index]) * 3600


COUNTERS = re.compile(
    r"^(p1_(?:energy_(?:import|export)_joules_total|gas_volume_cubic_meters_total|"
    r"(?:long_)?power_failures_total|mbus_reading_value)\{[^}]*\}) (\S+)$",
    re.MULTILINE,
)


def demo_counters() -> tuple[float, dict[str, float]]:
    """Start ``p1-exporter --demo``, read its counters from /metrics once the meter's
    first telegram is in, stop it; (wall-clock time of the scrape, series -> value)."""
    from tests.helpers.exporter import ExporterProcess

    with ExporterProcess(["--demo", "--web.listen-address", "127.0.0.1:0"]) as exporter:
        exporter.wait_listening()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with urllib.request.urlopen(exporter.url + "/metrics", timeout=5) as reply:
                text = reply.read().decode()
            found = {name: float(value) for name, value in COUNTERS.findall(text)}
            if any(name.startswith("p1_energy_import") for name in found):
                exporter.stop()
                return time.time(), found
            time.sleep(0.1)
        raise AssertionError(f"no telegram from the demo meter:\n{exporter.log}")


def test_a_restarted_demo_exporter_continues_the_same_household() -> None:
    """What ``restart: unless-stopped`` does to the Compose demo: stop, start again."""
    first_time, first = demo_counters()
    time.sleep(1.0)
    second_time, second = demo_counters()
    assert first.keys() == second.keys() and len(first) >= 6
    for name, value in first.items():
        assert second[name] >= value, name
    # Some seconds of a household, not another household's meter: at most 25 kW.
    for name in first:
        if name.startswith("p1_energy_"):
            assert second[name] - first[name] <= 25_000 * (second_time - first_time + 2), name
