"""A deterministic household behind a smart meter.

The model is driven by the caller's clock: ``advance(t)`` moves it to the UTC
epoch ``t`` and returns an immutable :class:`MeterState`. It never reads the
wall clock. Everything random comes from the seed:

* what happens in a given hour (appliances, showers, clouds, grid events) is
  drawn from a generator seeded with ``(seed, hour)``, so the load seen at a
  moment does not depend on how often the model was sampled before it;
* measurement noise (voltage) comes from one generator advanced per call.

Power is sample-and-hold: the power in the state returned at ``t`` is taken to
flow until the next call. The energy registers are therefore exactly the
integral of the power the telegrams show, kept in whole Wh with the sub-Wh
remainder carried forward, so nothing is lost and registers only go up. Gas
and water work the same way in litres (dm3).
"""

from __future__ import annotations

import calendar
import math
import random
import time
from dataclasses import dataclass

from p1_exporter.core.clock import is_eu_summer_time

#: Average power over a quarter hour is what the Belgian capacity tariff bills.
QUARTER = 900
GAS_CAPTURE_DSMR5 = 300
GAS_CAPTURE_HOURLY = 3600
#: Entries kept in the Belgian month-peak history (0-0:98.1.0) and failure log.
PEAK_HISTORY_MAX = 13
FAILURE_LOG_MAX = 10
#: Solar noon in the Netherlands/Belgium, in UTC hours.
_SOLAR_NOON_UTC = 11.65
_NOMINAL_VOLTS = 230.0


@dataclass(frozen=True)
class Capture:
    """A value the meter latched at ``time``, e.g. an M-Bus gas reading in dm3."""

    time: float
    value: int


@dataclass(frozen=True)
class PowerFailure:
    """One long power failure: when it ended (epoch) and how long it lasted (s)."""

    end: float
    duration: int


@dataclass(frozen=True)
class MonthPeak:
    """A finished month's highest quarter-hour average import (Belgian 98.1.0)."""

    archived: float  # start of the following month, when the meter stored it
    time: float | None  # end of the peak quarter hour; None when there was none
    watts: float


@dataclass(frozen=True)
class MeterState:
    """Everything a telegram can show, at one moment.

    Energy registers are integer Wh, gas and water integer dm3 (litres).
    ``low_tariff`` is the Dutch "laag" / Belgian "night" tariff; the renderer
    maps it to the dialect's tariff numbers.
    """

    time: float
    serial: str
    gas_serial: str
    water_serial: str
    low_tariff: bool
    import_low_wh: int
    import_normal_wh: int
    export_low_wh: int
    export_normal_wh: int
    import_w: float
    export_w: float
    phase_import_w: tuple[float, float, float]
    phase_export_w: tuple[float, float, float]
    voltage: tuple[float, float, float]
    current: tuple[float, float, float]
    gas_dm3: int
    water_dm3: int
    gas_5min: Capture
    gas_hourly: Capture
    water_5min: Capture
    short_power_failures: int
    long_power_failures: int
    power_failure_log: tuple[PowerFailure, ...]
    voltage_sags: tuple[int, int, int]
    voltage_swells: tuple[int, int, int]
    demand_avg_w: float
    month_peak: Capture | None  # value in W; None until a quarter hour has ended
    peak_history: tuple[MonthPeak, ...]

    @property
    def import_wh(self) -> int:
        """Total imported energy over both tariffs."""
        return self.import_low_wh + self.import_normal_wh

    @property
    def export_wh(self) -> int:
        """Total exported energy over both tariffs."""
        return self.export_low_wh + self.export_normal_wh


@dataclass(frozen=True)
class _Event:
    """Something running between ``start`` and ``end`` on one phase."""

    start: float
    end: float
    watts: int = 0
    phase: int = 0
    gas_dm3_s: float = 0.0
    water_dm3_s: float = 0.0


#: Local hours ``first..last`` (inclusive) and the chance per hour of a start then.
Schedule = tuple[tuple[int, int, float], ...]


@dataclass(frozen=True)
class _Appliance:
    name: str
    watts: int
    minutes: tuple[float, float]
    phase: int
    weekday: Schedule
    weekend: Schedule
    tail_watts: int = 0  # washing machines: heating first, then a long low tail
    tail_minutes: float = 0.0
    water_litres: float = 0.0
    gas_m3_h: float = 0.0

    def chance(self, hour: int, weekend: bool) -> float:
        """Probability that this appliance starts during local ``hour``."""
        for first, last, chance in self.weekend if weekend else self.weekday:
            if first <= hour <= last:
                return chance
        return 0.0


_KETTLE: Schedule = ((7, 8, 0.35), (12, 12, 0.35), (15, 15, 0.35), (19, 20, 0.35), (7, 22, 0.05))
_APPLIANCES: tuple[_Appliance, ...] = (
    _Appliance("kettle", 2000, (2, 4), 1, _KETTLE, ((9, 17, 0.35), *_KETTLE)),
    _Appliance("oven", 2400, (30, 60), 2, ((17, 18, 0.3),), ((11, 16, 0.05), (17, 18, 0.3))),
    _Appliance("microwave", 1200, (2, 5), 0, ((12, 12, 0.3), (17, 18, 0.3)), ((12, 12, 0.3),)),
    _Appliance(
        "washing machine",
        2000,
        (12, 18),
        2,
        ((9, 19, 0.04),),
        ((9, 19, 0.12),),
        tail_watts=250,
        tail_minutes=60,
        water_litres=50,
    ),
    _Appliance(
        "dishwasher",
        1900,
        (15, 25),
        1,
        ((19, 21, 0.3),),
        ((19, 21, 0.3),),
        tail_watts=100,
        tail_minutes=50,
        water_litres=12,
    ),
    _Appliance(  # gas boiler and water; only a pump on the electric side
        "shower",
        60,
        (6, 10),
        0,
        ((6, 8, 0.45), (19, 22, 0.08)),
        ((8, 10, 0.3), (19, 22, 0.08)),
        water_litres=65,
        gas_m3_h=2.2,
    ),
    _Appliance(
        "tap",
        0,
        (1, 2),
        0,
        ((7, 22, 0.6), (0, 23, 0.02)),
        ((7, 22, 0.6), (0, 23, 0.02)),
        water_litres=6,
    ),
)


@dataclass(frozen=True)
class _Hour:
    """Everything drawn for one UTC hour, plus calendar facts about it."""

    utc_offset: int
    base_w: tuple[float, float, float]
    cloud: float
    pv_peak_w: float
    halfday_h: float
    heating_dm3_s: float
    voltage_offset: float
    weekend: bool
    events: tuple[_Event, ...]
    counters: tuple[tuple[float, str, int], ...]  # (time, kind, phase or duration)


def _season(epoch: float) -> float:
    """+1 at midsummer, -1 at midwinter."""
    day = time.gmtime(epoch).tm_yday
    return math.cos(2 * math.pi * (day - 172) / 365.25)


def _local_offset(epoch: float) -> int:
    return 7200 if is_eu_summer_time(epoch) else 3600


def local_month(epoch: float) -> tuple[int, int]:
    """(year, month) on the meter's Central European clock."""
    tm = time.gmtime(epoch + _local_offset(epoch))
    return tm.tm_year, tm.tm_mon


def local_month_start(year: int, month: int) -> float:
    """Epoch of local midnight on the 1st (never a DST switch day)."""
    naive = calendar.timegm((year, month, 1, 0, 0, 0, 0, 0, 0))
    return float(naive - _local_offset(naive - 3600))


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


class HouseholdModel:
    """A Dutch/Belgian household with PV, gas heating and a water meter.

    ``force_import_watts``, when set, overrides the load: the import power is
    exactly that value and the export 0, until it is set back to None.
    """

    def __init__(self, seed: int, start: float) -> None:
        self.seed = seed
        self.force_import_watts: float | None = None
        self._noise = random.Random(f"{seed}:noise")
        self._hours: dict[int, _Hour] = {}
        self._own: dict[int, tuple[list[_Event], list[tuple[float, str, int]]]] = {}
        init = random.Random(f"{seed}:init")
        self._serial = f"E00{init.randrange(10**13, 10**14)}"
        self._gas_serial = f"G00{init.randrange(10**13, 10**14)}"
        self._water_serial = f"W00{init.randrange(10**13, 10**14)}"
        # Registers: [low, normal] in Wh, with remainders in W*s.
        self._import = [init.randrange(500_000, 5_000_000), init.randrange(500_000, 5_000_000)]
        self._export = [init.randrange(0, 1_000_000), init.randrange(0, 2_000_000)]
        self._import_rem = [0.0, 0.0]
        self._export_rem = [0.0, 0.0]
        self._gas = init.randrange(500_000, 9_000_000)
        self._water = init.randrange(100_000, 900_000)
        self._gas_rem = 0.0
        self._water_rem = 0.0
        self._short_failures = init.randrange(0, 20)
        self._long_failures = init.randrange(0, 5)
        self._failures: list[PowerFailure] = []
        end = start
        for _ in range(min(self._long_failures, FAILURE_LOG_MAX)):
            end -= init.uniform(20, 120) * 86400
            self._failures.insert(0, PowerFailure(round(end), init.randrange(180, 14400)))
        self._sags = [init.randrange(0, 4) for _ in range(3)]
        self._swells = [init.randrange(0, 2) for _ in range(3)]
        # Belgian demand: running quarter, month peak, archive of earlier months.
        self._quarter_ws = 0.0
        self._month = local_month(start)
        self._month_end = local_month_start(*_next_month(*self._month))
        self._peak: Capture | None = None
        self._history: list[MonthPeak] = []
        year, month = self._month
        months: list[tuple[int, int]] = []
        for _ in range(3):
            year, month = (year - 1, 12) if month == 1 else (year, month - 1)
            months.insert(0, (year, month))
        for year, month in months:
            begin = local_month_start(year, month)
            end = local_month_start(*_next_month(year, month))
            peak_at = begin + QUARTER * init.randrange(1, int((end - begin) // QUARTER))
            watts = round(init.uniform(2000, 6000))
            self._history.append(MonthPeak(end, peak_at, watts))
        # A meter switched on mid-month already has a peak for the month so far.
        month_begin = local_month_start(*self._month)
        quarters_so_far = int((start - month_begin) // QUARTER)
        if quarters_so_far >= 1:
            peak_at = month_begin + QUARTER * init.randrange(1, quarters_so_far + 1)
            self._peak = Capture(peak_at, round(init.uniform(1500, 4500)))
        self._time = start
        self._gas_5min = Capture(start - start % GAS_CAPTURE_DSMR5, self._gas)
        self._gas_hourly = Capture(start - start % GAS_CAPTURE_HOURLY, self._gas)
        self._water_5min = Capture(start - start % GAS_CAPTURE_DSMR5, self._water)
        self._gas_rate = 0.0
        self._water_rate = 0.0
        self._state = self._sample(start)

    @property
    def state(self) -> MeterState:
        """The state returned by the last ``advance`` (or at the start)."""
        return self._state

    def advance(self, t: float) -> MeterState:
        """Move to epoch ``t`` (not before the previous one) and return the state there."""
        if t < self._time:
            raise ValueError(f"time went backwards: {t} < {self._time}")
        if t > self._time:
            self._integrate(self._time, t)
        self._time = t
        self._state = self._sample(t)
        return self._state

    # -- integration of the held values over [t0, t1) -------------------------

    def _integrate(self, t0: float, t1: float) -> None:
        prev = self._state
        dt = t1 - t0
        tariff = 0 if prev.low_tariff else 1
        self._import[tariff], self._import_rem[tariff] = _carry(
            self._import[tariff], self._import_rem[tariff] + prev.import_w * dt, 3600.0
        )
        self._export[tariff], self._export_rem[tariff] = _carry(
            self._export[tariff], self._export_rem[tariff] + prev.export_w * dt, 3600.0
        )
        self._gas_5min = self._capture(self._gas_5min, GAS_CAPTURE_DSMR5, t0, t1, gas=True)
        self._gas_hourly = self._capture(self._gas_hourly, GAS_CAPTURE_HOURLY, t0, t1, gas=True)
        self._water_5min = self._capture(self._water_5min, GAS_CAPTURE_DSMR5, t0, t1, gas=False)
        self._gas, self._gas_rem = _carry(self._gas, self._gas_rem + self._gas_rate * dt, 1.0)
        self._water, self._water_rem = _carry(
            self._water, self._water_rem + self._water_rate * dt, 1.0
        )
        self._demand(prev.import_w, t0, t1)
        for hour in range(int(t0 // 3600), int(t1 // 3600) + 1):
            for when, kind, arg in self._own_events(hour)[1]:
                if t0 < when <= t1:
                    self._count(when, kind, arg)

    def _capture(self, last: Capture, period: int, t0: float, t1: float, gas: bool) -> Capture:
        """Latch the counter at the last ``period`` boundary in (t0, t1], if any."""
        boundary = t1 - t1 % period
        if boundary <= t0:
            return last
        if gas:
            value = self._gas + self._gas_rem + self._gas_rate * (boundary - t0)
        else:
            value = self._water + self._water_rem + self._water_rate * (boundary - t0)
        return Capture(boundary, int(value))

    def _demand(self, watts: float, t0: float, t1: float) -> None:
        """Accumulate quarter-hour import energy; close quarters; roll month peaks."""
        seg = t0
        end = t0 - t0 % QUARTER + QUARTER
        while end <= t1:
            self._quarter_ws += watts * (end - seg)
            self._roll_month(end - QUARTER)
            average = self._quarter_ws / QUARTER
            if self._peak is None or average > self._peak.value:
                self._peak = Capture(end, round(average))
            self._quarter_ws = 0.0
            seg, end = end, end + QUARTER
        self._quarter_ws += watts * (t1 - seg)
        self._roll_month(t1)

    def _roll_month(self, epoch: float) -> None:
        """At a local month start, archive the month's peak and start afresh."""
        while epoch >= self._month_end:
            peak = self._peak
            self._history.append(
                MonthPeak(self._month_end, peak.time if peak else None, peak.value if peak else 0)
            )
            del self._history[:-PEAK_HISTORY_MAX]
            self._peak = None
            self._month = _next_month(*self._month)
            self._month_end = local_month_start(*_next_month(*self._month))

    def _count(self, when: float, kind: str, arg: int) -> None:
        if kind == "sag":
            self._sags[arg] += 1
        elif kind == "swell":
            self._swells[arg] += 1
        elif kind == "short":
            self._short_failures += 1
        else:
            self._long_failures += 1
            self._failures.append(PowerFailure(when, arg))
            del self._failures[:-FAILURE_LOG_MAX]

    # -- instantaneous values at t ---------------------------------------------

    def _sample(self, t: float) -> MeterState:
        hour = self._hour(int(t // 3600))
        # Same as timestamps.meter_local_hour(t); the UTC offset is cached per hour.
        local_hour = ((t + hour.utc_offset) % 86400) / 3600.0
        low = hour.weekend or local_hour < 7.0 or local_hour >= 23.0
        load = list(hour.base_w)
        gas = hour.heating_dm3_s
        water = 0.0
        for event in hour.events:
            if event.start <= t < event.end:
                load[event.phase] += event.watts
                gas += event.gas_dm3_s
                water += event.water_dm3_s
        # Fridge: on for 12 minutes of every 40.
        if (t + self.seed * 97) % 2400 < 720:
            load[2] += 90
        solar = _pv(t, hour)
        net = [round(load[0] - solar), round(load[1]), round(load[2])]
        if self.force_import_watts is not None:
            forced = float(self.force_import_watts)
            imports = (forced / 3, forced / 3, forced / 3)
            exports = (0.0, 0.0, 0.0)
            import_w, export_w = forced, 0.0
        else:
            imports = (float(max(net[0], 0)), float(max(net[1], 0)), float(max(net[2], 0)))
            exports = (float(max(-net[0], 0)), float(max(-net[1], 0)), float(max(-net[2], 0)))
            total = sum(net)
            import_w, export_w = float(max(total, 0)), float(max(-total, 0))
        gauss = self._noise.gauss
        nominal = _NOMINAL_VOLTS + hour.voltage_offset
        v1 = round(nominal + gauss(0.0, 0.3) - 0.0005 * imports[0] + 0.0012 * exports[0], 1)
        v2 = round(nominal + gauss(0.0, 0.3) - 0.0005 * imports[1] + 0.0012 * exports[1], 1)
        v3 = round(nominal + gauss(0.0, 0.3) - 0.0005 * imports[2] + 0.0012 * exports[2], 1)
        self._gas_rate, self._water_rate = gas, water
        quarter_start = t - t % QUARTER
        elapsed = t - quarter_start
        demand = self._quarter_ws / elapsed if elapsed > 0 else import_w
        return MeterState(
            time=t,
            serial=self._serial,
            gas_serial=self._gas_serial,
            water_serial=self._water_serial,
            low_tariff=low,
            import_low_wh=self._import[0],
            import_normal_wh=self._import[1],
            export_low_wh=self._export[0],
            export_normal_wh=self._export[1],
            import_w=import_w,
            export_w=export_w,
            phase_import_w=imports,
            phase_export_w=exports,
            voltage=(v1, v2, v3),
            current=(
                (imports[0] + exports[0]) / v1,
                (imports[1] + exports[1]) / v2,
                (imports[2] + exports[2]) / v3,
            ),
            gas_dm3=self._gas,
            water_dm3=self._water,
            gas_5min=self._gas_5min,
            gas_hourly=self._gas_hourly,
            water_5min=self._water_5min,
            short_power_failures=self._short_failures,
            long_power_failures=self._long_failures,
            power_failure_log=tuple(self._failures),
            voltage_sags=(self._sags[0], self._sags[1], self._sags[2]),
            voltage_swells=(self._swells[0], self._swells[1], self._swells[2]),
            demand_avg_w=demand,
            month_peak=self._peak,
            peak_history=tuple(self._history),
        )

    # -- what each hour holds ----------------------------------------------------

    def _hour(self, index: int) -> _Hour:
        cached = self._hours.get(index)
        if cached is not None:
            return cached
        start = index * 3600.0
        offset = _local_offset(start)
        local = time.gmtime(start + offset)
        local_hour, weekend = local.tm_hour, local.tm_wday >= 5
        rng = random.Random(f"{self.seed}:hour:{index}")
        day = random.Random(f"{self.seed}:day:{int(start // 86400)}")
        season = _season(start)
        base = rng.uniform(140, 240)
        if 17 <= local_hour <= 22:
            base += 150  # lights, television, cooking extras
        elif 6 <= local_hour <= 8:
            base += 60
        winter = min(max((0.4 - season) / 1.2, 0.0), 1.0)
        if 6 <= local_hour <= 8:
            heating_m3_h = 1.5
        elif 17 <= local_hour <= 21:
            heating_m3_h = 0.9
        else:
            heating_m3_h = 0.12
        heating = heating_m3_h * winter * rng.uniform(0.7, 1.2) / 3.6  # m3/h -> dm3/s
        events = tuple(
            e
            for h in (index - 2, index - 1, index)
            for e in self._own_events(h)[0]
            if e.end > start
        )
        hour = _Hour(
            utc_offset=offset,
            base_w=(base * 0.4, base * 0.3, base * 0.3),
            cloud=day.uniform(0.25, 1.0) * rng.uniform(0.75, 1.0),
            pv_peak_w=2300 + 1700 * season,
            halfday_h=6.05 + 2.2 * season,
            heating_dm3_s=heating,
            voltage_offset=rng.uniform(-2.5, 2.5),
            weekend=weekend,
            events=events,
            counters=tuple(self._own_events(index)[1]),
        )
        if len(self._hours) > 64:
            self._hours.clear()
        self._hours[index] = hour
        return hour

    def _own_events(self, index: int) -> tuple[list[_Event], list[tuple[float, str, int]]]:
        """Events that begin in UTC hour ``index``: appliances and meter counters."""
        cached = self._own.get(index)
        if cached is not None:
            return cached
        start = index * 3600.0
        local = time.gmtime(start + _local_offset(start))
        rng = random.Random(f"{self.seed}:events:{index}")
        events: list[_Event] = []
        for appliance in _APPLIANCES:
            if rng.random() >= appliance.chance(local.tm_hour, local.tm_wday >= 5):
                continue
            begin = start + rng.uniform(0, 3600)
            main = rng.uniform(*appliance.minutes) * 60
            tail = appliance.tail_minutes * 60
            water = appliance.water_litres / (main + tail)
            events.append(
                _Event(
                    begin,
                    begin + main,
                    appliance.watts,
                    appliance.phase,
                    appliance.gas_m3_h / 3.6,
                    water,
                )
            )
            if tail:
                events.append(
                    _Event(
                        begin + main,
                        begin + main + tail,
                        appliance.tail_watts,
                        appliance.phase,
                        0.0,
                        water,
                    )
                )
        counters: list[tuple[float, str, int]] = []
        if rng.random() < 0.02:
            counters.append((start + rng.uniform(0, 3600), "sag", rng.randrange(3)))
        if rng.random() < 0.005:
            counters.append((start + rng.uniform(0, 3600), "swell", rng.randrange(3)))
        if rng.random() < 1 / (60 * 24):
            counters.append((start + rng.uniform(0, 3600), "short", 0))
        if rng.random() < 1 / (400 * 24):
            counters.append((start + rng.uniform(0, 3600), "long", rng.randrange(180, 14400)))
        counters.sort()
        if len(self._own) > 64:
            self._own.clear()
        self._own[index] = (events, counters)
        return events, counters


def _carry(whole: int, remainder: float, unit: float) -> tuple[int, float]:
    """Move complete ``unit``s from ``remainder`` into the integer counter."""
    if remainder >= unit:
        units = int(remainder // unit)
        return whole + units, remainder - units * unit
    return whole, remainder


def _pv(t: float, hour: _Hour) -> float:
    """Solar production: a bell around solar noon, zero outside daylight."""
    offset = (t % 86400) / 3600 - _SOLAR_NOON_UTC
    if abs(offset) >= hour.halfday_h:
        return 0.0
    sigma = hour.halfday_h / 2.5
    edge = math.exp(-0.5 * 2.5 * 2.5)
    shape = (math.exp(-0.5 * (offset / sigma) ** 2) - edge) / (1 - edge)
    return hour.pv_peak_w * hour.cloud * shape
