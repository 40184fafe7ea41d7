"""The live page's memory: ring buffers, 10 s power means, "today" and "this hour"."""

from __future__ import annotations

import calendar
import math
import struct
import threading
import time
from types import MappingProxyType

import pytest

from p1_exporter.core.telegram import MBusDevice, Register, Telegram
from p1_exporter.meter.snapshot import Snapshot
from p1_exporter.web.live_history import (
    GAS_POINT_BYTES,
    GAS_SLOTS,
    POWER_POINT_BYTES,
    POWER_SLOTS,
    MeterHistory,
    Ring,
    local_period_starts,
    period_totals,
)

KWH = 3_600_000.0
DAY = calendar.timegm((2024, 3, 5, 0, 0, 0, 0, 0, 0))  # a midnight (UTC here)


def utc_periods(t: float) -> tuple[float, float]:
    """Period starts in UTC, so the tests do not depend on the machine's time zone."""
    return float(t - t % 86400), float(t - t % 3600)


def telegram(
    import_w: float = 0.0,
    export_w: float = 0.0,
    t1: float | None = None,
    t2: float | None = None,
    gas: tuple[float, float] | None = None,
) -> Telegram:
    registers = {"1-0:1.7.0": Register(import_w, "W", ""), "1-0:2.7.0": Register(export_w, "W", "")}
    if t1 is not None:
        registers["1-0:1.8.1"] = Register(t1 * KWH, "J", "")
    if t2 is not None:
        registers["1-0:1.8.2"] = Register(t2 * KWH, "J", "")
    mbus = {}
    if gas is not None:
        mbus[1] = MBusDevice(1, 3, "G1", Register(gas[0], "m3", ""), gas[1], None)
    return Telegram(
        b"",
        "/X",
        "5.0",
        None,
        False,
        None,
        None,
        MappingProxyType(registers),
        MappingProxyType({}),
        MappingProxyType(mbus),
        (),
        None,
        None,
        (),
        (),
        (),
        (),
    )


def history() -> MeterHistory:
    return MeterHistory(period_starts=utc_periods)


# -- Ring ------------------------------------------------------------------------------------


def test_ring_keeps_order_marks_gaps_and_reads_only_newer_slots() -> None:
    ring = Ring(10, "d")
    assert ring.read() == (0, [])
    ring.put(100, 1.0)
    ring.put(101, 2.0)
    ring.put(104, 5.0)  # 102 and 103 had no telegram
    assert ring.read() == (100, [1.0, 2.0, None, None, 5.0])
    assert ring.read(after=101) == (102, [None, None, 5.0])
    assert ring.read(after=104) == (105, [])
    ring.put(104, 6.0)  # the current slot's mean is refined in place
    assert ring.read(after=103) == (104, [6.0])


def test_ring_is_bounded_and_drops_the_oldest() -> None:
    ring = Ring(10, "d")
    for slot in range(1000, 1100):
        ring.put(slot, float(slot))
    first, values = ring.read()
    # One slot fewer than the ring holds: the oldest one may be reused by the writer.
    assert (first, values) == (1091, [float(s) for s in range(1091, 1100)])
    ring.put(5000, 7.0)  # a jump far ahead: all gaps, bounded work
    assert ring.read() == (4992, [None] * 8 + [7.0])
    ring.put(10, 1.0)  # older than the ring: ignored
    assert ring.read()[1][-1] == 7.0
    assert ring.nbytes == 80


def test_ring_reads_are_consistent_while_the_writer_runs() -> None:
    """No lock: a reader running beside the writer never sees a value in a wrong slot."""
    ring = Ring(64, "d")
    stop = threading.Event()

    def write() -> None:
        slot = 0
        while not stop.is_set() and slot < 2_000_000:
            ring.put(slot, float(slot))
            slot += 1 + (slot % 7 == 0)  # with a gap now and then

    writer = threading.Thread(target=write)
    writer.start()
    try:
        checked = 0
        for _ in range(20_000):
            first, values = ring.read()
            for offset, v in enumerate(values):
                assert v is None or v == first + offset, (first, offset, v)
            checked += len(values)
    finally:
        stop.set()
        writer.join()
    assert checked > 0


def test_stated_sizes() -> None:
    meter = MeterHistory()
    assert POWER_SLOTS == 2160 and GAS_SLOTS == 289  # 6 h of 10 s, 24 h of 5 min (+1)
    assert meter.nbytes == POWER_SLOTS * POWER_POINT_BYTES + GAS_SLOTS * GAS_POINT_BYTES


# -- power --------------------------------------------------------------------------------------


def test_power_point_is_the_mean_of_its_slot_import_up_export_down() -> None:
    meter = history()
    base = DAY + 3600
    meter.add(telegram(100.0), base + 1)
    meter.add(telegram(300.0), base + 2)
    meter.add(telegram(0.0, 500.0), base + 11)
    meter.add(telegram(0.0, 100.0), base + 41)
    first, values = meter.power.read()
    assert first == (base + 1) // 10
    assert values == [200.0, -500.0, None, None, -100.0]


def test_power_refuses_values_it_cannot_hold() -> None:
    meter = history()
    meter.add(telegram(1e30), DAY)
    meter.add(telegram(math.inf), DAY + 10)
    meter.add(telegram(50.0), DAY + 20)
    assert meter.power.read()[1] == [50.0]


def test_observe_takes_each_telegram_once() -> None:
    meter = history()
    tele = telegram(100.0, t1=10.0)
    snap = Snapshot("m", "test", 60.0, telegram=tele, received_at=DAY + 5.0)
    meter.observe(snap)
    meter.observe(snap)  # the reader republishes the same telegram (byte counts changed)
    meter.observe(Snapshot("m", "test", 60.0))  # no telegram yet
    assert meter.power.read()[1] == [100.0]


# -- today and this hour ---------------------------------------------------------------------


def test_after_a_start_mid_day_the_figures_say_since_when() -> None:
    meter = history()
    start = DAY + 9 * 3600 + 14 * 60  # 09:14
    meter.add(telegram(t1=100.0, t2=50.0), start)
    meter.add(telegram(t1=100.5, t2=50.25), start + 600)
    assert meter.periods is not None
    today = period_totals(meter.periods.day, DAY)
    imported = today["import"]
    assert imported is not None
    assert imported.delta == pytest.approx(0.75 * KWH)
    assert imported.since == start and imported.complete is False
    assert today["export"] is None and today["gas"] is None


def test_midnight_starts_a_complete_day_from_the_reading_nearest_to_it() -> None:
    meter = history()
    evening = DAY - 3600
    meter.add(telegram(t1=10.0, gas=(500.0, DAY - 600)), evening)
    meter.add(telegram(t1=10.9, gas=(500.2, DAY - 300)), DAY - 3)
    meter.add(telegram(t1=11.0, gas=(500.3, DAY)), DAY + 5)  # the 00:00 gas reading
    meter.add(telegram(t1=12.0, gas=(501.0, DAY + 3600)), DAY + 3605)
    assert meter.periods is not None
    today = period_totals(meter.periods.day, DAY)
    imported, gas = today["import"], today["gas"]
    assert imported is not None and gas is not None
    # 23:59:57 is nearer to midnight than 00:00:05: the day counts from it.
    assert imported.delta == pytest.approx(1.1 * KWH)
    assert imported.since == DAY - 3 and imported.complete is True
    # Gas has a reading at midnight itself.
    assert gas.delta == pytest.approx(0.7) and gas.since == DAY and gas.complete is True
    hour = period_totals(meter.periods.hour, DAY + 3600)
    assert hour["import"] is not None and hour["import"].delta == pytest.approx(0.0)
    assert hour["import"].since == DAY + 3605 and hour["import"].complete is True


def test_a_gap_over_midnight_is_not_papered_over() -> None:
    meter = history()
    meter.add(telegram(t1=10.0), DAY - 1800)  # 23:30, then the meter is silent
    meter.add(telegram(t1=11.0), DAY + 1800)  # 00:30
    assert meter.periods is not None
    imported = period_totals(meter.periods.day, DAY)["import"]
    assert imported is not None
    assert imported.delta == 0.0 and imported.since == DAY + 1800 and not imported.complete


def test_a_finished_period_is_not_shown_as_the_current_one() -> None:
    meter = history()
    meter.add(telegram(t1=10.0), DAY + 100)
    meter.add(telegram(t1=11.0), DAY + 200)
    assert meter.periods is not None
    # Next day, no telegram since midnight: yesterday's figure is not "today".
    assert period_totals(meter.periods.day, DAY + 86400)["import"] is None
    assert period_totals(meter.periods.day, DAY)["import"] is not None


def test_a_withheld_tariff_register_does_not_distort_the_sum() -> None:
    meter = history()
    meter.add(telegram(t1=10.0, t2=20.0), DAY + 100)
    meter.add(telegram(t1=10.5), DAY + 110)  # tariff 2 withheld (went backwards)
    meter.add(telegram(t1=10.5, t2=20.5), DAY + 120)
    assert meter.periods is not None
    imported = period_totals(meter.periods.day, DAY)["import"]
    assert imported is not None and imported.delta == pytest.approx(1.0 * KWH)


def test_a_replaced_meter_starts_counting_again() -> None:
    meter = history()
    meter.add(telegram(t1=5000.0), DAY + 100)
    meter.add(telegram(t1=5001.0), DAY + 200)
    meter.add(telegram(t1=3.0), DAY + 300)  # new meter, registers from zero
    meter.add(telegram(t1=3.5), DAY + 400)
    assert meter.periods is not None
    imported = period_totals(meter.periods.day, DAY)["import"]
    assert imported is not None
    assert imported.delta == pytest.approx(0.5 * KWH)
    assert imported.since == DAY + 300 and imported.complete is False


def test_ring_bytes_are_the_same_series_little_endian() -> None:
    for typecode, code in (("f", "<f"), ("d", "<d")):
        ring = Ring(10, typecode)
        for slot in range(100, 116):  # wrapped: the window spans the end of the buffer
            if slot != 110:
                ring.put(slot, slot / 4)
        first, count, data = ring.read_bytes()
        values = [None if math.isnan(v) else v for (v,) in struct.iter_unpack(code, data)]
        assert (first, values) == ring.read() and count == len(values) == 9
        assert values[:5] == [107 / 4, 108 / 4, 109 / 4, None, 111 / 4]
        assert ring.read_bytes(after=115) == (116, 0, b"")


def test_local_periods_follow_the_time_zone_across_a_dst_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ "Today" starts at local midnight (TZ), also on the 23-hour day in March."""
    monkeypatch.setenv("TZ", "CET-1CEST,M3.5.0,M10.5.0/3")  # Central European, no tzdata
    time.tzset()
    try:
        noon = calendar.timegm((2024, 3, 31, 10, 30, 0, 0, 0, 0))  # 12:30 CEST
        day, hour = local_period_starts(noon)
        assert day == calendar.timegm((2024, 3, 30, 23, 0, 0, 0, 0, 0))  # 00:00 CET
        assert hour == calendar.timegm((2024, 3, 31, 10, 0, 0, 0, 0, 0))  # 12:00 CEST
        next_day, _ = local_period_starts(noon + 86400)
        assert next_day - day == 23 * 3600
    finally:
        monkeypatch.undo()
        time.tzset()
