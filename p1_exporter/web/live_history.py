"""What the live page remembers per meter: recent power and gas, "today" and "this hour".

Sans-I/O: :meth:`MeterHistory.observe` is fed each new validated telegram with its arrival
time; it reads no clock, no file and no socket, so tests drive it with any times they like.

Feeding: the meter's reader thread calls :meth:`MeterHistory.observe` right after it has
published a snapshot with a new telegram (a listener, not a sampler thread), so every
telegram counts towards its 10 s mean and nothing polls. That thread is the only writer of
its meter's history; the web server's event loop only reads it, and scrapes of ``/metrics``
never touch it. No lock is taken anywhere:

* the ring buffers are preallocated ``array`` objects; the writer stores a value and then
  advances ``last``; a reader copies the whole array in one C call (atomic between Python
  threads) between two reads of ``last`` and drops the slots the writer may have reused
  in the meantime (see :meth:`Ring.read`);
* the "today"/"this hour" figures are rebuilt by the writer into a new immutable object
  and published by replacing one reference, like the reader's snapshots.

Memory is fixed per meter: :data:`POWER_SLOTS` float32 values (4 bytes each) for power and
:data:`GAS_SLOTS` float64 values (8 bytes each) for gas, about 11 KiB in all, however long
the exporter runs and whatever the meter sends.

Periods follow the exporter's local time zone (the ``TZ`` environment variable). Nothing
is persisted: after a restart the figures start at the first reading and say so
(``complete`` is false and ``since`` is that reading's time) instead of inventing a value
for the part of the day the exporter did not see.
"""

from __future__ import annotations

import math
import sys
import time
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

from p1_exporter.core.obis import TARIFFS, code_of
from p1_exporter.core.telegram import Telegram
from p1_exporter.meter.snapshot import Snapshot

#: Seconds per power point; a point is the mean of the telegrams received in its slot.
POWER_STEP = 10
#: Power points kept: 6 h at 10 s.
POWER_SLOTS = 6 * 3600 // POWER_STEP
#: Bytes per power point (one float32: net watts, import positive, export negative).
POWER_POINT_BYTES = 4
#: Seconds per gas point (DSMR 5 meters read gas every 5 minutes, DSMR 4 hourly).
GAS_STEP = 300
#: Gas points kept: 24 h plus one, so the first hour of the day has a reading to start from.
GAS_SLOTS = 24 * 3600 // GAS_STEP + 1
#: Bytes per gas point (one float64: the cumulative reading in m3).
GAS_POINT_BYTES = 8
#: Larger power values are not a household meter's (and would not fit a float32).
MAX_WATTS = 1e9
#: How far from a period's start a reading may be and still count as its start: a
#: telegram every 1-10 s, a gas reading every 5 minutes.
ELECTRICITY_TOLERANCE = 60.0
GAS_TOLERANCE = 300.0

IMPORT_TARIFFS = tuple(code_of("p1_energy_import_joules_total", tariff=str(t)) for t in TARIFFS)
EXPORT_TARIFFS = tuple(code_of("p1_energy_export_joules_total", tariff=str(t)) for t in TARIFFS)
IMPORT_TOTAL = code_of("p1_energy_import_joules_total", tariff="total")
EXPORT_TOTAL = code_of("p1_energy_export_joules_total", tariff="total")
POWER_IMPORT = code_of("p1_power_import_watts")
POWER_EXPORT = code_of("p1_power_export_watts")
GAS = "gas"
_ENERGY_CODES = (*IMPORT_TARIFFS, *EXPORT_TARIFFS, IMPORT_TOTAL, EXPORT_TOTAL)
_GAS_DEVICE_TYPE = 3

_NAN = math.nan


class Ring:
    """A fixed number of float values on a regular grid of slot numbers; one writer.

    Slot ``n`` covers ``n * step`` to ``(n + 1) * step`` seconds since the epoch. A
    missing slot holds NaN. Memory is ``size`` values, allocated once.
    """

    def __init__(self, size: int, typecode: str = "f") -> None:
        if size < 2:
            raise ValueError("a ring needs at least 2 slots")
        self.size = size
        self._values = array(typecode, [_NAN]) * size
        self.first: int | None = None  # oldest slot ever written
        self.last: int | None = None  # newest slot written

    @property
    def itemsize(self) -> int:
        """Bytes per value."""
        return self._values.itemsize

    @property
    def nbytes(self) -> int:
        """Bytes of the value buffer."""
        return self._values.itemsize * self.size

    def put(self, slot: int, value: float) -> None:
        """Store ``value`` in ``slot`` (writer only); slots skipped since the newest become
        gaps, and a slot older than the ring is ignored."""
        last = self.last
        size = self.size
        values = self._values
        if last is not None:
            if slot <= last:
                if slot >= last - size + 2:  # a slot readers still trust
                    values[slot % size] = value
                return
            for gap in range(max(last + 1, slot - size + 1), slot):
                values[gap % size] = _NAN
                self.last = gap
        else:
            self.first = slot
        values[slot % size] = value
        self.last = slot

    def window(self, after: int | None = None) -> tuple[int, array[float]]:
        """``(first slot, values in slot order)`` of the slots newer than ``after`` (all
        when None), NaN for gaps. Safe while the writer runs, without a lock."""
        before = self.last
        if before is None:
            return 0, array(self._values.typecode)
        copy = self._values[:]  # one C-level copy: no Python thread runs in between
        latest = self.last
        assert latest is not None
        size = self.size
        # Slots written after `before` was read may have replaced the oldest ones in the
        # copy (one more may be half-written), so those are left out.
        first = max(latest - size + 2, self.first or 0)
        if after is not None:
            first = max(first, after + 1)
        if first > before:
            return first, array(copy.typecode)
        start, end = first % size, before % size
        if start <= end:
            return first, copy[start : end + 1]
        return first, copy[start:] + copy[: end + 1]

    def read(self, after: int | None = None) -> tuple[int, list[float | None]]:
        """:meth:`window` as a list, None for gaps."""
        first, values = self.window(after)
        return first, [None if v != v else v for v in values]

    def read_bytes(self, after: int | None = None) -> tuple[int, int, bytes]:
        """:meth:`window` as little-endian IEEE 754 bytes: ``(first slot, count, bytes)``.

        The live page's JSON carries the series this way (base64): no Python object per
        point, so even 50 meters' full 6 h cost the server almost nothing to send.
        """
        first, values = self.window(after)
        if sys.byteorder == "big":
            values.byteswap()
        return first, len(values), values.tobytes()


class Reading(NamedTuple):
    """A cumulative register value and the moment it was valid (UTC epoch)."""

    value: float
    time: float


class PeriodFigure(NamedTuple):
    """How much a register rose in the current period, and from when."""

    delta: float
    since: float  # time of the reading the delta starts from
    complete: bool  # True when that reading is at the period's start (within tolerance)


@dataclass(frozen=True, slots=True)
class Periods:
    """The published "today" and "this hour" state: per register code, per period."""

    day: Mapping[str, PeriodFigure]
    hour: Mapping[str, PeriodFigure]


def local_period_starts(t: float) -> tuple[float, float]:
    """The start of the local day and of the local hour containing ``t`` (the exporter's
    time zone, ``TZ``); DST changes included, as the C library knows them."""
    tm = time.localtime(t)
    hour_start = math.floor(t) - tm.tm_min * 60 - tm.tm_sec
    day_start = time.mktime((tm.tm_year, tm.tm_mon, tm.tm_mday, 0, 0, 0, 0, 0, -1))
    return float(day_start), float(hour_start)


class _Baseline(NamedTuple):
    start: float
    base: Reading
    complete: bool


def _choose_base(
    start: float, previous: Reading | None, current: Reading, tolerance: float
) -> _Baseline:
    """The reading a new period counts from: the one closest to its start, of the last
    reading before it and the first one in it; complete when that is near the start."""
    base = current
    if (
        previous is not None
        and previous.time <= start
        and (start - previous.time < current.time - start)
    ):
        base = previous
    return _Baseline(start, base, abs(base.time - start) <= tolerance)


def gas_reading(telegram: Telegram) -> Reading | None:
    """The first gas meter's reading (M-Bus device type 3, in m3, with its time)."""
    for device in telegram.mbus.values():
        reading = device.reading
        if (
            device.device_type == _GAS_DEVICE_TYPE
            and reading is not None
            and reading.unit == "m3"
            and device.reading_time is not None
        ):
            return Reading(reading.value, device.reading_time)
    return None


class MeterHistory:
    """One meter's ring buffers and period figures; :meth:`observe` is its only writer."""

    def __init__(
        self,
        power_slots: int = POWER_SLOTS,
        gas_slots: int = GAS_SLOTS,
        period_starts: Callable[[float], tuple[float, float]] = local_period_starts,
    ) -> None:
        self.power = Ring(power_slots, "f")
        self.gas = Ring(gas_slots, "d")
        self._period_starts = period_starts
        self._slot: int | None = None
        self._sum = 0.0
        self._count = 0
        self._last: dict[str, Reading] = {}
        self._day: dict[str, _Baseline] = {}
        self._hour: dict[str, _Baseline] = {}
        self._announced: Telegram | None = None
        self._starts_cache = (math.inf, -math.inf, (0.0, 0.0))  # valid from, until, starts
        self.periods: Periods | None = None

    def _starts(self, t: float) -> tuple[float, float]:
        """The period starts for ``t``; computed once per hour (telegrams come every second)."""
        valid_from, valid_until, starts = self._starts_cache
        if valid_from <= t < valid_until:
            return starts
        starts = self._period_starts(t)
        self._starts_cache = (starts[1], starts[1] + 3600.0, starts)
        return starts

    @property
    def nbytes(self) -> int:
        """Bytes held by the ring buffers (the part that grows with their size)."""
        return self.power.nbytes + self.gas.nbytes

    def observe(self, snapshot: Snapshot) -> None:
        """Reader listener: take in the snapshot's telegram if it is a new one."""
        telegram = snapshot.telegram
        if telegram is None or telegram is self._announced or snapshot.received_at is None:
            return
        self._announced = telegram
        self.add(telegram, snapshot.received_at)

    def add(self, telegram: Telegram, received_at: float) -> None:
        """One validated telegram that arrived at ``received_at`` (UTC epoch)."""
        if not math.isfinite(received_at):
            return
        self._add_power(telegram, received_at)
        readings: dict[str, Reading] = {}
        registers = telegram.registers
        for code in _ENERGY_CODES:
            register = registers.get(code)
            if register is not None and register.unit == "J" and math.isfinite(register.value):
                readings[code] = Reading(register.value, received_at)
        gas = gas_reading(telegram)
        if gas is not None and math.isfinite(gas.value) and math.isfinite(gas.time):
            readings[GAS] = gas
            self.gas.put(int(gas.time // GAS_STEP), gas.value)
        changed = False
        for code, reading in readings.items():
            changed |= self._track(code, reading)
        if changed:
            self.periods = Periods(
                MappingProxyType(self._figures(self._day)),
                MappingProxyType(self._figures(self._hour)),
            )

    def _add_power(self, telegram: Telegram, received_at: float) -> None:
        imported = telegram.registers.get(POWER_IMPORT)
        exported = telegram.registers.get(POWER_EXPORT)
        if imported is None and exported is None:
            return
        net = 0.0
        for register, sign in ((imported, 1.0), (exported, -1.0)):
            if register is not None:
                if register.unit != "W" or not abs(register.value) <= MAX_WATTS:
                    return
                net += sign * register.value
        slot = int(received_at // POWER_STEP)
        if slot != self._slot:
            if self._slot is not None and slot < self._slot:
                return  # the clock went back: keep the newer slot's mean
            self._slot, self._sum, self._count = slot, 0.0, 0
        self._sum += net
        self._count += 1
        self.power.put(slot, self._sum / self._count)

    def _track(self, code: str, reading: Reading) -> bool:
        previous = self._last.get(code)
        if previous is not None and reading.time <= previous.time:
            return False  # the same gas reading again, or the clock went back
        tolerance = GAS_TOLERANCE if code == GAS else ELECTRICITY_TOLERANCE
        day_start, hour_start = self._starts(reading.time)
        if previous is not None and reading.value < previous.value:
            # A cumulative register went down: a replaced meter. Count again from here.
            previous = None
            self._day.pop(code, None)
            self._hour.pop(code, None)
        for table, start in ((self._day, day_start), (self._hour, hour_start)):
            known = table.get(code)
            if known is None or start > known.start:
                table[code] = _choose_base(start, previous, reading, tolerance)
        self._last[code] = reading
        return True

    def _figures(self, table: Mapping[str, _Baseline]) -> dict[str, PeriodFigure]:
        figures = {}
        for code, baseline in table.items():
            last = self._last[code]
            figures[code] = PeriodFigure(
                last.value - baseline.base.value, baseline.base.time, baseline.complete
            )
        return figures


def period_totals(
    figures: Mapping[str, PeriodFigure],
    period_start: float,
) -> dict[str, PeriodFigure | None]:
    """Import, export and gas for one period, from the per-register figures.

    Tariff registers are summed (the total register only counts when the meter sends
    none); a figure from an earlier period than ``period_start`` (no reading since it
    began) is not this period's and is left out.
    """

    def current(code: str) -> PeriodFigure | None:
        figure = figures.get(code)
        if figure is None:
            return None
        # A reading at the very start of the period may date from just before it.
        tolerance = GAS_TOLERANCE if code == GAS else ELECTRICITY_TOLERANCE
        return figure if figure.since >= period_start - tolerance else None

    def combined(tariffs: tuple[str, ...], total: str) -> PeriodFigure | None:
        parts = [f for f in (current(code) for code in tariffs) if f is not None]
        if not parts:
            return current(total)
        return PeriodFigure(
            sum(p.delta for p in parts), max(p.since for p in parts), all(p.complete for p in parts)
        )

    return {
        "import": combined(IMPORT_TARIFFS, IMPORT_TOTAL),
        "export": combined(EXPORT_TARIFFS, EXPORT_TOTAL),
        "gas": current(GAS),
    }
