"""A deterministic household behind a smart meter: a function of the seed and the time.

Everything the meter shows at moment ``t`` follows from the seed and ``t``, not
from when the model was started or how often it was asked, so two models with
the same seed agree at every moment and a restarted demo meter continues where
it stopped: no register goes back, nothing jumps.

* **Power** steps at multiples of :data:`SEGMENT` seconds: what a UTC hour
  holds (base load, clouds, heating, appliances, shower and tap use) is drawn
  from a generator seeded with ``(seed, hour)``; the fridge cycles on a fixed
  rhythm; the sun steps every :data:`PV_STEP` seconds. On top of the step, each
  phase fluctuates every second (:data:`JITTER_W`, :data:`JITTER_SHARE`), as a
  real meter's readings do: the deviations are drawn per ``(seed, slot)``, are 0
  in a slot's first second and sum to exactly 0 over the slot, so the energy of
  every slot is the step's, and the total never changes direction.
* **Registers** (energy per tariff and direction, gas, water) are the exact
  integral of that power, scaled per meter-local calendar month: a register
  starts each month at a target computed from the calendar alone (the seed's
  reading on 1 January 2020 plus the expected use of each day since, from a
  per-day formula), and within the month the
  modelled power is multiplied by the factor that takes it exactly to the next
  month's target. Starting up integrates only the current month, segment by
  segment. (Before 2020 the readings are lower, never below 0.) The power
  shown is the scaled power that flows from that moment on (in whole W), so the
  energy between two telegrams is the integral of the modelled power: for
  telegrams at whole seconds, the shown power held until the next telegram
  (for telegrams at multiples of :data:`SEGMENT`, too, since a slot's
  deviations sum to 0 and its first second has none).
* **Rare events** (short and long power failures, voltage sags and swells)
  follow a seeded schedule: one at a seeded moment in each fixed period, so
  their counters are closed form too.
* Voltage noise is drawn per ``(seed, t)``. The Belgian month peak so far is
  recomputed from the month's quarters at the start; the peaks of the months
  before the start are drawn per ``(seed, month)``, those of months the model
  lived through are the real ones.

``force_import_watts`` (a test aid) overrides the load; the energy imported
while it is set is added on top of the deterministic registers, so a forced
model is no longer a function of the time alone.
"""

from __future__ import annotations

import calendar
import functools
import math
import random
import time
from array import array
from bisect import bisect_right
from dataclasses import dataclass

from p1_exporter.core.clock import is_eu_summer_time

#: Average power over a quarter hour is what the Belgian capacity tariff bills.
QUARTER = 900
GAS_CAPTURE_DSMR5 = 300
GAS_CAPTURE_HOURLY = 3600
#: Entries kept in the Belgian month-peak history (0-0:98.1.0) and failure log.
PEAK_HISTORY_MAX = 13
FAILURE_LOG_MAX = 10
#: The modelled power changes only at multiples of this many seconds.
SEGMENT = 10
#: Solar production steps every five minutes.
PV_STEP = 300
#: Per-second fluctuation of each phase's power around the step: a standard deviation
#: of this many W plus this share of the phase's power (a few W at night, tens of W
#: under a kettle), as a real meter shows at one telegram a second.
JITTER_W = 3.0
JITTER_SHARE = 0.02
#: The registers are the seed's readings at the start of this local month plus what follows.
EPOCH_MONTH = (2020, 1)
#: One event of each kind per period, at a seeded moment in it (per phase for sags/swells).
_SCHEDULE = {
    "short": 60 * 86400,
    "long": 400 * 86400,
    "sag": 150 * 3600,
    "swell": 600 * 3600,
}
#: Solar noon in the Netherlands/Belgium, in UTC hours.
_SOLAR_NOON_UTC = 11.65
_NOMINAL_VOLTS = 230.0
#: Standard deviation of the per-telegram voltage noise, in V (about 0.2 % of nominal).
_VOLTAGE_NOISE = 0.4
#: Register indices: import low/normal, export low/normal (Wh), gas, water (dm3).
_IL, _IN, _EL, _EN, _GAS, _WATER = range(6)
#: Register units per integrated unit: W*s -> Wh for electricity; gas and water are dm3.
_PER_UNIT = (1 / 3600, 1 / 3600, 1 / 3600, 1 / 3600, 1.0, 1.0)


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
#: Each appliance's chance of starting, per weekend flag and local hour: ``[weekend][hour]``.
_CHANCES: tuple[tuple[tuple[float, ...], ...], ...] = tuple(
    tuple(tuple(a.chance(hour, weekend) for a in _APPLIANCES) for hour in range(24))
    for weekend in (False, True)
)


@dataclass(frozen=True)
class _Hour:
    """Everything drawn for one UTC hour, plus calendar facts about it."""

    start: float
    low_tariff: bool
    base_w: tuple[float, float, float]
    cloud: float
    pv_peak_w: float
    halfday_h: float
    heating_dm3_s: float
    voltage_offset: float
    events: tuple[_Event, ...]


@dataclass(frozen=True)
class _Flow:
    """The unscaled modelled flows at one moment."""

    imports: tuple[float, float, float]
    exports: tuple[float, float, float]
    import_w: float
    export_w: float
    gas_dm3_s: float
    water_dm3_s: float


@dataclass(frozen=True)
class _Jitter:
    """One SEGMENT slot's per-second deviations (whole unscaled W) from the step.

    ``phases[i]`` holds second ``i``'s deviation per phase, ``total[i]`` their sum and
    ``done[i]`` the integral of ``total`` from the slot's start to second ``i`` (W*s).
    """

    phases: tuple[tuple[float, float, float], ...]
    total: tuple[float, ...]
    done: tuple[float, ...]

    def integral(self, offset: float) -> float:
        """The deviation's integral from the slot's start to ``offset`` seconds into it."""
        second = int(offset)
        return self.done[second] + self.total[second] * (offset - second)


_CALM = _Jitter(((0.0, 0.0, 0.0),) * SEGMENT, (0.0,) * SEGMENT, (0.0,) * (SEGMENT + 1))


def _bridge(rng: random.Random, sigma: float) -> list[float]:
    """SEGMENT whole-watt deviations: 0 first, Gaussian-like after, summing to exactly 0.

    Differences of a rounded random walk pinned to 0 at both ends of the slot.
    """
    walk = [0.0]
    for _ in range(SEGMENT - 1):
        walk.append(walk[-1] + rng.gauss(0.0, sigma))
    drift = walk[-1] / (SEGMENT - 1)
    pinned = [float(round(value - drift * index)) for index, value in enumerate(walk)]
    return [0.0, *(pinned[i] - pinned[i - 1] for i in range(1, SEGMENT))]


@dataclass(frozen=True)
class _HourSum:
    """An hour cut at every change of the flows: segment starts, flows and running integrals."""

    low_tariff: bool
    starts: list[float]
    rates: list[tuple[float, float, float, float]]  # import W, export W, gas dm3/s, water dm3/s
    sums: list[tuple[float, float, float, float]]  # W*s and dm3 from the hour's start


@dataclass(frozen=True)
class _Month:
    """One meter-local month: targets at both ends, the scale factors and the hours' totals.

    ``prefix`` holds, flat, six unscaled integrals (W*s, dm3) per hour start and one row for
    the month's end: 6 * 745 doubles at most (about 36 kB), where the hours' own segment
    lists would take megabytes; an hour's segments are rebuilt when it is read.
    """

    begin: float
    end: float
    first_hour: int
    prefix: array[float]
    at_start: tuple[float, ...]  # register values (Wh, dm3) at the start, before the seed's own
    at_end: tuple[float, ...]
    scale: tuple[float, ...]  # modelled power per unscaled power, per register


def _season(epoch: float) -> float:
    """+1 at midsummer, -1 at midwinter."""
    day = time.gmtime(epoch).tm_yday
    return math.cos(2 * math.pi * (day - 172) / 365.25)


def _winter(season: float) -> float:
    """How much heating the season asks for: 0 in summer to 1 in deep winter."""
    return min(max((0.4 - season) / 1.2, 0.0), 1.0)


def _local_offset(epoch: float) -> int:
    return 7200 if is_eu_summer_time(epoch) else 3600


@functools.lru_cache(maxsize=4096)
def _hour_offset(index: int) -> int:
    """:func:`_local_offset` of UTC hour ``index`` (DST switches fall on whole hours)."""
    return _local_offset(index * 3600.0)


def _local_hour(index: int) -> tuple[int, bool]:
    """The meter-local hour of day of UTC hour ``index``, and whether it falls on a weekend
    (what ``time.gmtime`` gives, by arithmetic: 1 January 1970 was a Thursday)."""
    local = index + _hour_offset(index) // 3600
    return local % 24, (local // 24 + 3) % 7 >= 5


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


def _month_of(t: float) -> tuple[int, int]:
    """:func:`local_month`, with the UTC offset cached per hour."""
    tm = time.gmtime(t + _hour_offset(int(t // 3600)))
    return tm.tm_year, tm.tm_mon


_EPOCH = local_month_start(*EPOCH_MONTH)


# -- the expected use per day, in closed form ----------------------------------------------

#: Expected use on a day, per register, as a + b*season + c*season**2 + d*winter (Wh,
#: dm3), for weekdays (False) and weekend days (True). Fitted to the model's own
#: unscaled days, so that the monthly scale factors stay near 1.
_DAY_USE: dict[bool, tuple[tuple[float, float, float, float], ...]] = {
    False: (
        (1860.0, -140.0, -44.0, -160.0),
        (4282.0, -1229.0, 42.0, 322.0),
        (0.0, 0.0, 0.0, 0.0),
        (4911.0, 5607.0, 1895.0, -965.0),
        (599.0, -242.0, 124.0, 9965.0),
        (204.0, -9.0, 6.0, -15.0),
    ),
    True: (
        (6971.0, -972.0, -743.0, 1510.0),
        (0.0, 0.0, 0.0, 0.0),
        (3653.0, 6864.0, 1813.0, 1538.0),
        (0.0, 0.0, 0.0, 0.0),
        (186.0, 295.0, -67.0, 10913.0),
        (170.0, 79.0, -17.0, 126.0),
    ),
}


@functools.lru_cache(maxsize=512)
def _month_use(year: int, month: int) -> tuple[float, ...]:
    """Expected use per register over a local month (the same for every household)."""
    totals = [0.0] * 6
    weekday = calendar.weekday(year, month, 1)
    yday = time.gmtime(calendar.timegm((year, month, 1, 12, 0, 0, 0, 0, 0))).tm_yday
    for day in range(calendar.monthrange(year, month)[1]):
        season = math.cos(2 * math.pi * (yday + day - 172) / 365.25)  # as _season
        winter = _winter(season)
        for index, (a, b, c, d) in enumerate(_DAY_USE[(weekday + day) % 7 >= 5]):
            totals[index] += max(0.0, a + b * season + c * season * season + d * winter)
    return tuple(totals)


@functools.lru_cache(maxsize=64)
def _use_since_epoch(year: int, month: int) -> tuple[float, ...]:
    """Expected use from the start of :data:`EPOCH_MONTH` to the start of this month
    (negative before it)."""
    totals = [0.0] * 6
    if (year, month) >= EPOCH_MONTH:
        current, sign, stop = EPOCH_MONTH, 1.0, (year, month)
    else:
        current, sign, stop = (year, month), -1.0, EPOCH_MONTH
    while current < stop:
        for index, value in enumerate(_month_use(*current)):
            totals[index] += sign * value
        current = _next_month(*current)
    return tuple(totals)


def _occurrence(seed: int, kind: str, index: int) -> tuple[float, int]:
    """When the ``index``-th scheduled event of ``kind`` happens, and a seeded duration."""
    period = _SCHEDULE[kind.rstrip("0123")]
    rng = random.Random(f"{seed}:{kind}:{index}")
    return _EPOCH + index * period + rng.randrange(period), rng.randrange(180, 14400)


class HouseholdModel:
    """A Dutch/Belgian household with PV, gas heating and a water meter.

    ``force_import_watts``, when set, overrides the load: the import power is
    exactly that value and the export 0, until it is set back to None.
    """

    def __init__(self, seed: int, start: float) -> None:
        self.seed = seed
        self.force_import_watts: float | None = None
        self._hours: dict[int, _Hour] = {}
        self._own: dict[int, list[_Event]] = {}
        self._days: dict[int, tuple[float, float]] = {}  # cloudiness and season per UTC day
        # Reseeded for each hour (cheaper than a new one); two, as drawing an hour reads
        # the appliance events of the hours around it in the middle of its own draws.
        self._hour_rng = random.Random()
        self._events_rng = random.Random()
        self._months: dict[tuple[int, int], _Month] = {}
        self._sums: dict[int, _HourSum] = {}
        self._occurrences: dict[tuple[str, int], tuple[float, int]] = {}
        self._jitters: dict[int, _Jitter] = {}
        self._fridge = SEGMENT * ((seed * 97) % (2400 // SEGMENT))
        init = random.Random(f"{seed}:init")
        self._serial = f"E00{init.randrange(10**13, 10**14)}"
        self._gas_serial = f"G00{init.randrange(10**13, 10**14)}"
        self._water_serial = f"W00{init.randrange(10**13, 10**14)}"
        # The readings at the epoch, and how big this household is against the expectation.
        self._own_start = (
            float(init.randrange(500_000, 5_000_000)),
            float(init.randrange(500_000, 5_000_000)),
            float(init.randrange(0, 1_000_000)),
            float(init.randrange(0, 2_000_000)),
            float(init.randrange(500_000, 9_000_000)),
            float(init.randrange(100_000, 900_000)),
        )
        use, pv, gas, water = (init.uniform(0.85, 1.15) for _ in range(4))
        self._size = (use, use, pv, pv, gas, water)
        self._short_start = init.randrange(0, 20)
        self._long_start = init.randrange(0, 5)
        self._sags_start = [init.randrange(0, 4) for _ in range(3)]
        self._swells_start = [init.randrange(0, 2) for _ in range(3)]
        # What forcing the import added (or held back) per register, on top of the model.
        self._offset = [0.0] * 6
        self._held_force: float | None = None
        # Belgian demand: running quarter, month peak, archive of earlier months.
        self._month = local_month(start)
        self._month_end = local_month_start(*_next_month(*self._month))
        self._history: list[MonthPeak] = []
        year, month = self._month
        months: list[tuple[int, int]] = []
        for _ in range(3):
            year, month = (year - 1, 12) if month == 1 else (year, month - 1)
            months.insert(0, (year, month))
        for year, month in months:
            begin = local_month_start(year, month)
            end = local_month_start(*_next_month(year, month))
            # Months before the start: seeded per month, the same whenever the model starts.
            drawn = random.Random(f"{seed}:peak:{year}-{month}")
            peak_at = begin + QUARTER * drawn.randrange(1, int((end - begin) // QUARTER))
            watts = round(drawn.uniform(2000, 6000))
            self._history.append(MonthPeak(end, peak_at, watts))
        # The month's peak so far: the highest quarter since the month began, from the
        # unscaled imports at each quarter's start that building the month noted.
        self._peak: Capture | None = None
        quarters = array("d")
        data = self._month_data(*self._month, quarters)
        boundary = data.begin + QUARTER
        before = self._quarter_value(data, quarters, 0)
        position = 1
        while boundary <= start:
            after = self._quarter_value(data, quarters, position)
            average = (after - before) * 3600 / QUARTER
            if self._peak is None or average > self._peak.value:
                self._peak = Capture(boundary, round(average))
            before = after
            boundary += QUARTER
            position += 1
        self._quarter_start = start - start % QUARTER
        self._quarter_import = self._import_value(self._quarter_start)
        self._time = start
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
            self._move(self._time, t)
        self._time = t
        self._state = self._sample(t)
        self._held_force = self.force_import_watts
        return self._state

    def registers_at(self, t: float) -> tuple[float, ...]:
        """The unforced registers at ``t`` (Wh, Wh, Wh, Wh, dm3, dm3), before rounding down."""
        month = self._month_data(*_month_of(t))
        hour_index = int(t // 3600)
        hour = self._hour_sum(hour_index)
        index = bisect_right(hour.starts, t) - 1
        since = t - hour.starts[index]
        rate = hour.rates[index]
        done = hour.sums[index]
        flows = [done[i] + rate[i] * since for i in range(4)]
        offset = t % SEGMENT
        if offset:  # the per-second deviations within the slot (their sum over it is 0)
            deviation = self._jitter(int(t // SEGMENT)).integral(offset)
            if rate[0] > 0:
                flows[0] += deviation
            elif rate[1] > 0:
                flows[1] -= deviation
        row = 6 * (hour_index - month.first_hour)
        prefix = month.prefix
        low = hour.low_tariff
        unscaled = (
            prefix[row + _IL] + (flows[0] if low else 0.0),
            prefix[row + _IN] + (0.0 if low else flows[0]),
            prefix[row + _EL] + (flows[1] if low else 0.0),
            prefix[row + _EN] + (0.0 if low else flows[1]),
            prefix[row + _GAS] + flows[2],
            prefix[row + _WATER] + flows[3],
        )
        return tuple(
            max(
                0.0,
                min(
                    month.at_start[i] + month.scale[i] * unscaled[i] * _PER_UNIT[i], month.at_end[i]
                )
                + self._own_start[i],
            )
            for i in range(6)
        )

    def power_at(self, t: float) -> tuple[float, float]:
        """The modelled (unforced) import and export power at ``t``, in W, before the
        telegram rounds them to whole watts: the registers are exactly its integral."""
        hour = self._hour(int(t // 3600))
        month = self._month_data(*_month_of(t))
        rates = self._rates(hour, t)
        deviation = self._jitter(int(t // SEGMENT)).total[int(t % SEGMENT)]
        low = hour.low_tariff
        return _net_power(
            rates[0] - rates[1] + deviation,
            month.scale[_IL if low else _IN],
            month.scale[_EL if low else _EN],
        )

    # -- rare events ---------------------------------------------------------------------

    def _occurrence(self, kind: str, index: int) -> tuple[float, int]:
        """:func:`_occurrence`, kept per model: a thousand households would evict each
        other's from one shared cache, and every telegram asks for about twenty."""
        key = (kind, index)
        cached = self._occurrences.get(key)
        if cached is None:
            cached = _occurrence(self.seed, kind, index)
            if len(self._occurrences) >= 64:
                self._occurrences.clear()
            self._occurrences[key] = cached
        return cached

    def _scheduled(self, kind: str, t: float) -> int:
        """Scheduled events of ``kind`` from the epoch up to ``t`` (negative before it)."""
        index = math.floor((t - _EPOCH) / _SCHEDULE[kind.rstrip("0123")])
        return index + (1 if self._occurrence(kind, index)[0] <= t else 0)

    # -- moving on ---------------------------------------------------------------------

    def _quarter_value(self, month: _Month, quarters: array[float], position: int) -> float:
        """:meth:`_import_value` (unforced) at the start of the month's quarter ``position``,
        from the unscaled low and normal imports :meth:`_month_data` noted there."""
        low, normal = quarters[2 * position], quarters[2 * position + 1]
        return (
            max(
                0.0,
                min(
                    month.at_start[_IL] + month.scale[_IL] * low * _PER_UNIT[_IL], month.at_end[_IL]
                )
                + self._own_start[_IL],
            )
            + max(
                0.0,
                min(
                    month.at_start[_IN] + month.scale[_IN] * normal * _PER_UNIT[_IN],
                    month.at_end[_IN],
                )
                + self._own_start[_IN],
            )
            + self._offset[_IL]
            + self._offset[_IN]
        )

    def _values(self, t: float) -> list[float]:
        return [v + o for v, o in zip(self.registers_at(t), self._offset, strict=True)]

    def _import_value(self, t: float) -> float:
        values = self.registers_at(t)
        return values[_IL] + values[_IN] + self._offset[_IL] + self._offset[_IN]

    def _move(self, t0: float, t1: float) -> None:
        """Close the quarters in (t0, t1]; account energy imported under forcing."""
        held = self._held_force
        start_import = self._import_value(t0)

        def imported(x: float) -> float:
            if held is None:
                return self._import_value(x)
            return start_import + held * (x - t0) / 3600

        end = t0 - t0 % QUARTER + QUARTER
        while end <= t1:
            self._roll_month(end - QUARTER)
            value = imported(end)
            average = (value - self._quarter_import) * 3600 / QUARTER
            if self._peak is None or average > self._peak.value:
                self._peak = Capture(end, round(average))
            self._quarter_start, self._quarter_import = end, value
            end += QUARTER
        self._roll_month(t1)
        if held is not None:
            before, after = self.registers_at(t0), self.registers_at(t1)
            for i in (_IL, _IN, _EL, _EN):
                self._offset[i] -= after[i] - before[i]
            self._offset[_IL if self._state.low_tariff else _IN] += held * (t1 - t0) / 3600

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

    # -- the state at t --------------------------------------------------------------------

    def _sample(self, t: float) -> MeterState:
        hour = self._hour(int(t // 3600))
        flow = self._flow(hour, t)
        month = self._month_data(*_month_of(t))
        low = hour.low_tariff
        if self.force_import_watts is not None:
            forced = float(self.force_import_watts)
            imports = (forced / 3, forced / 3, forced / 3)
            exports = (0.0, 0.0, 0.0)
            import_w, export_w = forced, 0.0
        else:  # the step plus this second's deviations; the telegram shows whole watts
            k_in = month.scale[_IL if low else _IN]
            k_out = month.scale[_EL if low else _EN]
            jitter = self._jitter(int(t // SEGMENT))
            second = int(t % SEGMENT)
            phases = [
                _net_power(
                    flow.imports[p] - flow.exports[p] + jitter.phases[second][p], k_in, k_out
                )
                for p in range(3)
            ]
            imports = (
                float(round(phases[0][0])),
                float(round(phases[1][0])),
                float(round(phases[2][0])),
            )
            exports = (
                float(round(phases[0][1])),
                float(round(phases[1][1])),
                float(round(phases[2][1])),
            )
            total = _net_power(flow.import_w - flow.export_w + jitter.total[second], k_in, k_out)
            import_w, export_w = float(round(total[0])), float(round(total[1]))
        noise = random.Random(f"{self.seed}:noise:{t!r}")
        nominal = _NOMINAL_VOLTS + hour.voltage_offset
        volts = tuple(
            round(nominal + noise.gauss(0.0, _VOLTAGE_NOISE) - 0.0005 * i + 0.0012 * e, 1)
            for i, e in zip(imports, exports, strict=True)
        )
        v1, v2, v3 = volts
        values = self._values(t)
        gas_5min = t - t % GAS_CAPTURE_DSMR5
        gas_hourly = t - t % GAS_CAPTURE_HOURLY
        latched = self.registers_at(gas_5min)  # M-Bus values latch every 5 minutes
        elapsed = t - self._quarter_start
        demand = (
            (values[_IL] + values[_IN] - self._quarter_import) * 3600 / elapsed
            if elapsed > 0
            else import_w
        )
        sags = [max(0, self._sags_start[p] + self._scheduled(f"sag{p}", t)) for p in range(3)]
        swells = [max(0, self._swells_start[p] + self._scheduled(f"swell{p}", t)) for p in range(3)]
        long_since = self._scheduled("long", t)
        long_failures = max(0, self._long_start + long_since)
        log = []
        for index in range(long_since - min(long_failures, FAILURE_LOG_MAX), long_since):
            end, duration = self._occurrence("long", index)
            log.append(PowerFailure(end, duration))
        return MeterState(
            time=t,
            serial=self._serial,
            gas_serial=self._gas_serial,
            water_serial=self._water_serial,
            low_tariff=low,
            import_low_wh=math.floor(values[_IL]),
            import_normal_wh=math.floor(values[_IN]),
            export_low_wh=math.floor(values[_EL]),
            export_normal_wh=math.floor(values[_EN]),
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
            gas_dm3=math.floor(values[_GAS]),
            water_dm3=math.floor(values[_WATER]),
            gas_5min=Capture(gas_5min, math.floor(latched[_GAS])),
            gas_hourly=Capture(gas_hourly, math.floor(self.registers_at(gas_hourly)[_GAS])),
            water_5min=Capture(gas_5min, math.floor(latched[_WATER])),
            short_power_failures=max(0, self._short_start + self._scheduled("short", t)),
            long_power_failures=long_failures,
            power_failure_log=tuple(log),
            voltage_sags=(sags[0], sags[1], sags[2]),
            voltage_swells=(swells[0], swells[1], swells[2]),
            demand_avg_w=demand,
            month_peak=self._peak,
            peak_history=tuple(self._history),
        )

    def _flow(self, hour: _Hour, t: float) -> _Flow:
        """The unscaled flows at ``t`` (constant until the next multiple of SEGMENT)."""
        load = list(hour.base_w)
        gas = hour.heating_dm3_s
        water = 0.0
        for event in hour.events:
            if event.start <= t < event.end:
                load[event.phase] += event.watts
                gas += event.gas_dm3_s
                water += event.water_dm3_s
        # Fridge: on for 12 minutes of every 40.
        if (t + self._fridge) % 2400 < 720:
            load[2] += 90
        solar = _pv(t - t % PV_STEP + PV_STEP / 2, hour)
        net = (round(load[0] - solar), round(load[1]), round(load[2]))
        total = net[0] + net[1] + net[2]
        return _Flow(
            (float(max(net[0], 0)), float(max(net[1], 0)), float(max(net[2], 0))),
            (float(max(-net[0], 0)), float(max(-net[1], 0)), float(max(-net[2], 0))),
            float(max(total, 0)),
            float(max(-total, 0)),
            gas,
            water,
        )

    def _rates(self, hour: _Hour, t: float) -> tuple[float, float, float, float]:
        """What :meth:`_flow` gives for the registers (import, export, gas, water), faster."""
        load0, load1, load2 = hour.base_w
        gas = hour.heating_dm3_s
        water = 0.0
        for event in hour.events:
            if event.start <= t < event.end:
                if event.phase == 0:
                    load0 += event.watts
                elif event.phase == 1:
                    load1 += event.watts
                else:
                    load2 += event.watts
                gas += event.gas_dm3_s
                water += event.water_dm3_s
        if (t + self._fridge) % 2400 < 720:
            load2 += 90
        solar = _pv(t - t % PV_STEP + PV_STEP / 2, hour)
        total = round(load0 - solar) + round(load1) + round(load2)
        if total >= 0:
            return float(total), 0.0, gas, water
        return 0.0, float(-total), gas, water

    def _jitter(self, slot: int) -> _Jitter:
        """The per-second deviations in SEGMENT slot ``slot`` (starting at ``slot * SEGMENT``).

        Drawn per ``(seed, slot)`` with a spread that grows with each phase's power, and
        narrowed until the total never reaches the step's own size, so an importing slot
        keeps importing and the registers stay the exact integral.
        """
        cached = self._jitters.get(slot)
        if cached is not None:
            return cached
        start = float(slot * SEGMENT)
        flow = self._flow(self._hour(int(start // 3600)), start)
        nets = [flow.imports[p] - flow.exports[p] for p in range(3)]
        step = abs(flow.import_w - flow.export_w)
        jitter = _CALM
        narrow = 1.0
        while step > 1 and narrow > 0.01:
            rng = random.Random(f"{self.seed}:jitter:{slot}")
            series = [_bridge(rng, narrow * (JITTER_W + JITTER_SHARE * abs(net))) for net in nets]
            total = [series[0][i] + series[1][i] + series[2][i] for i in range(SEGMENT)]
            if max(abs(value) for value in total) < step:
                done = [0.0]
                for value in total:
                    done.append(done[-1] + value)
                jitter = _Jitter(tuple(zip(*series, strict=True)), tuple(total), tuple(done))
                break
            narrow /= 2
        if len(self._jitters) >= 16:
            self._jitters.clear()
        self._jitters[slot] = jitter
        return jitter

    # -- months, hours and their integrals -------------------------------------------------

    def _month_data(self, year: int, month: int, quarters: array[float] | None = None) -> _Month:
        """The month's targets, scale factors and hour totals; with ``quarters``, also append
        the unscaled (low, normal) imports at each quarter hour's start to it."""
        cached = self._months.get((year, month))
        if cached is not None and quarters is None:
            return cached
        begin = local_month_start(year, month)
        end = local_month_start(*_next_month(year, month))
        first = int(begin // 3600)
        prefix = array("d")
        running = [0.0] * 6
        for index in range(first, int(end // 3600)):
            prefix.extend(running)
            hour = self._hour(index)
            import_ws, export_ws, gas, water = self._hour_total(hour, quarters, running)
            if hour.low_tariff:
                running[_IL] += import_ws
                running[_EL] += export_ws
            else:
                running[_IN] += import_ws
                running[_EN] += export_ws
            running[_GAS] += gas
            running[_WATER] += water
        prefix.extend(running)
        since = _use_since_epoch(year, month)
        expected = _month_use(year, month)
        at_start = tuple(self._size[i] * since[i] for i in range(6))
        at_end = tuple(self._size[i] * (since[i] + expected[i]) for i in range(6))
        scale = tuple(
            (at_end[i] - at_start[i]) / (running[i] * _PER_UNIT[i]) if running[i] > 0 else 0.0
            for i in range(6)
        )
        data = _Month(begin, end, first, prefix, at_start, at_end, scale)
        if len(self._months) >= 2:  # this month and the one before (a roll, a latch)
            del self._months[next(iter(self._months))]
        self._months[(year, month)] = data
        return data

    def _cuts(self, hour: _Hour) -> list[float]:
        """The moments in ``hour`` where the flows may change, sorted, the hour's start first."""
        start = hour.start
        end = start + 3600
        cuts = {start + PV_STEP * step for step in range(3600 // PV_STEP)}
        for event in hour.events:
            for edge in (event.start, event.end):
                if start < edge < end:
                    cuts.add(edge)
        cycle = start - (start + self._fridge) % 2400
        while cycle < end:
            for edge in (cycle, cycle + 720):
                if start < edge < end:
                    cuts.add(edge)
            cycle += 2400
        return sorted(cuts)

    def _hour_total(
        self, hour: _Hour, quarters: array[float] | None = None, running: list[float] | None = None
    ) -> tuple[float, float, float, float]:
        """The hour's unscaled integrals, exactly as the last of :meth:`_hour_sum`'s sums
        (the same additions in the same order), without keeping the segments.

        With ``quarters``, appends the unscaled (low, normal) imports at each quarter's start,
        as :meth:`registers_at` adds them up there, to the month's ``running`` totals.
        """
        starts = self._cuts(hour)
        starts.append(hour.start + 3600)
        a = b = c = d = 0.0
        low = hour.low_tariff
        base0, base1, base2 = hour.base_w
        events = hour.events
        fridge = self._fridge
        step_at, solar = -1.0, 0.0
        for index in range(len(starts) - 1):
            at = starts[index]
            if quarters is not None and running is not None and at % QUARTER == 0:
                quarters.append(running[_IL] + (a if low else 0.0))
                quarters.append(running[_IN] + (0.0 if low else a))
            span = starts[index + 1] - at
            # What _rates(hour, at) gives, inline: this loop is most of building a month.
            load0, load1, load2 = base0, base1, base2
            gas = hour.heating_dm3_s
            water = 0.0
            for event in events:
                if event.start <= at < event.end:
                    if event.phase == 0:
                        load0 += event.watts
                    elif event.phase == 1:
                        load1 += event.watts
                    else:
                        load2 += event.watts
                    gas += event.gas_dm3_s
                    water += event.water_dm3_s
            if (at + fridge) % 2400 < 720:
                load2 += 90
            step = at - at % PV_STEP + PV_STEP / 2
            if step != step_at:
                step_at, solar = step, _pv(step, hour)
            total = round(load0 - solar) + round(load1) + round(load2)
            if total >= 0:
                a += float(total) * span
            else:
                b += float(-total) * span
            c += gas * span
            d += water * span
        return a, b, c, d

    def _hour_sum(self, index: int) -> _HourSum:
        """UTC hour ``index`` cut into segments, kept for the hour read now and the one before."""
        cached = self._sums.get(index)
        if cached is not None:
            return cached
        hour = self._hour(index)
        end = hour.start + 3600
        starts = self._cuts(hour)
        rates: list[tuple[float, float, float, float]] = []
        sums: list[tuple[float, float, float, float]] = []
        done = (0.0, 0.0, 0.0, 0.0)
        for position, at in enumerate(starts):
            rate = self._rates(hour, at)
            rates.append(rate)
            sums.append(done)
            span = (starts[position + 1] if position + 1 < len(starts) else end) - at
            done = (
                done[0] + rate[0] * span,
                done[1] + rate[1] * span,
                done[2] + rate[2] * span,
                done[3] + rate[3] * span,
            )
        sums.append(done)
        data = _HourSum(hour.low_tariff, starts, rates, sums)
        if len(self._sums) >= 2:
            del self._sums[next(iter(self._sums))]
        self._sums[index] = data
        return data

    def _hour(self, index: int) -> _Hour:
        cached = self._hours.get(index)
        if cached is not None:
            return cached
        start = index * 3600.0
        local_hour, weekend = _local_hour(index)
        rng = self._hour_rng
        rng.seed(f"{self.seed}:hour:{index}")
        day_index = int(start // 86400)
        day = self._days.get(day_index)
        if day is None:  # the same for the UTC day's 24 hours
            day = (random.Random(f"{self.seed}:day:{day_index}").uniform(0.25, 1.0), _season(start))
            if len(self._days) >= 4:
                del self._days[next(iter(self._days))]
            self._days[day_index] = day
        day_cloud, season = day
        base = rng.uniform(140, 240)
        if 17 <= local_hour <= 22:
            base += 150  # lights, television, cooking extras
        elif 6 <= local_hour <= 8:
            base += 60
        winter = _winter(season)
        if 6 <= local_hour <= 8:
            heating_m3_h = 1.5
        elif 17 <= local_hour <= 21:
            heating_m3_h = 0.9
        else:
            heating_m3_h = 0.12
        heating = heating_m3_h * winter * rng.uniform(0.7, 1.2) / 3.6  # m3/h -> dm3/s
        events = tuple(
            e for h in (index - 2, index - 1, index) for e in self._own_events(h) if e.end > start
        )
        hour = _Hour(
            start=start,
            low_tariff=weekend or local_hour < 7 or local_hour >= 23,
            base_w=(base * 0.4, base * 0.3, base * 0.3),
            cloud=day_cloud * rng.uniform(0.75, 1.0),
            pv_peak_w=2300 + 1700 * season,
            halfday_h=6.05 + 2.2 * season,
            heating_dm3_s=heating,
            voltage_offset=rng.uniform(-2.5, 2.5),
            events=events,
        )
        if len(self._hours) > 64:
            self._hours.clear()
        self._hours[index] = hour
        return hour

    def _own_events(self, index: int) -> list[_Event]:
        """Appliance events that begin in UTC hour ``index``, on the SEGMENT grid."""
        cached = self._own.get(index)
        if cached is not None:
            return cached
        start = index * 3600.0
        local_hour, weekend = _local_hour(index)
        rng = self._events_rng
        rng.seed(f"{self.seed}:events:{index}")
        events: list[_Event] = []
        for appliance, chance in zip(_APPLIANCES, _CHANCES[weekend][local_hour], strict=True):
            if rng.random() >= chance:
                continue
            begin = start + SEGMENT * rng.randrange(3600 // SEGMENT)
            main = SEGMENT * max(1, round(rng.uniform(*appliance.minutes) * 60 / SEGMENT))
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
        if len(self._own) > 64:
            self._own.clear()
        self._own[index] = events
        return events


def _net_power(net: float, k_in: float, k_out: float) -> tuple[float, float]:
    """(import, export) W of a net unscaled flow (positive = import), scaled per direction."""
    if net > 0:
        return net * k_in, 0.0
    return 0.0, (-net * k_out if net < 0 else 0.0)


#: The bell's height where the day ends (2.5 sigma), taken off so that production starts at 0.
_PV_EDGE = math.exp(-0.5 * 2.5 * 2.5)


def _pv(t: float, hour: _Hour) -> float:
    """Solar production: a bell around solar noon, zero outside daylight."""
    offset = (t % 86400) / 3600 - _SOLAR_NOON_UTC
    if abs(offset) >= hour.halfday_h:
        return 0.0
    sigma = hour.halfday_h / 2.5
    shape = (math.exp(-0.5 * (offset / sigma) ** 2) - _PV_EDGE) / (1 - _PV_EDGE)
    return hour.pv_peak_w * hour.cloud * shape
