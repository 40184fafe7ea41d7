"""Meter clock: YYMMDDhhmmss with S (UTC+2) / W (UTC+1), the EU rule when there is no suffix."""

from __future__ import annotations

import calendar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p1_exporter.core.clock import (
    format_meter_time,
    is_eu_summer_time,
    is_placeholder_time,
    meter_local_hour,
    parse_meter_time,
)


def utc(*fields: int) -> float:
    """A UTC epoch from (year, month, day, hour, minute, second)."""
    return float(calendar.timegm((*fields, 0, 0, 0)))


def summer(*fields: int) -> float:
    """Epoch of a Central European Summer Time wall-clock reading (UTC+2)."""
    return utc(*fields) - 7200


def winter(*fields: int) -> float:
    """Epoch of a Central European (winter) Time wall-clock reading (UTC+1)."""
    return utc(*fields) - 3600


# 2021: summer time from 2021-03-28 01:00 UTC to 2021-10-31 01:00 UTC.
MARCH_SWITCH = utc(2021, 3, 28, 1, 0, 0)
OCTOBER_SWITCH = utc(2021, 10, 31, 1, 0, 0)
EARLIEST = int(utc(2000, 1, 3, 0, 0, 0))
LATEST = int(utc(2069, 12, 30, 0, 0, 0))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("170102192002W", winter(2017, 1, 2, 19, 20, 2)),
        ("200426223325S", summer(2020, 4, 26, 22, 33, 25)),
        ("200426223325s", summer(2020, 4, 26, 22, 33, 25)),
        ("170102192002w", winter(2017, 1, 2, 19, 20, 2)),
        # The suffix rules even when it disagrees with the calendar (Irish meter, February "S").
        ("230202132747S", summer(2023, 2, 2, 13, 27, 47)),
        ("200301000000S", summer(2020, 3, 1, 0, 0, 0)),
        ("200229235959W", winter(2020, 2, 29, 23, 59, 59)),
        ("000102010000W", utc(2000, 1, 2, 0, 0, 0)),
        ("000104180320W", winter(2000, 1, 4, 18, 3, 20)),
        ("161113205757W", winter(2016, 11, 13, 20, 57, 57)),
    ],
)
def test_suffix_offsets(text: str, expected: float | None) -> None:
    assert parse_meter_time(text) == expected


def test_offset_difference_is_one_hour() -> None:
    summer_epoch = parse_meter_time("200601120000S")
    winter_epoch = parse_meter_time("200601120000W")
    assert summer_epoch is not None and winter_epoch is not None
    assert winter_epoch - summer_epoch == 3600
    assert summer_epoch == utc(2020, 6, 1, 10, 0, 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # DSMR 2.2 / 3 send no suffix: the EU rule decides.
        ("161107190000", winter(2016, 11, 7, 19, 0, 0)),
        ("090212160000", winter(2009, 2, 12, 16, 0, 0)),
        ("200715120000", summer(2020, 7, 15, 12, 0, 0)),
        # March 2021: clocks jump from 02:00 CET to 03:00 CEST.
        ("210328015959", winter(2021, 3, 28, 1, 59, 59)),
        ("210328030000", summer(2021, 3, 28, 3, 0, 0)),
        ("210327120000", winter(2021, 3, 27, 12, 0, 0)),
        ("210329120000", summer(2021, 3, 29, 12, 0, 0)),
        # October 2021: clocks fall back from 03:00 CEST to 02:00 CET.
        ("211031015959", summer(2021, 10, 31, 1, 59, 59)),
        ("211031030000", winter(2021, 10, 31, 3, 0, 0)),
        ("211030120000", summer(2021, 10, 30, 12, 0, 0)),
        ("211101120000", winter(2021, 11, 1, 12, 0, 0)),
    ],
)
def test_no_suffix_uses_the_eu_rule(text: str, expected: float) -> None:
    assert parse_meter_time(text) == expected


def test_no_suffix_around_the_switches_is_monotonic() -> None:
    assert parse_meter_time("210328015959") == MARCH_SWITCH - 1
    assert parse_meter_time("210328030000") == MARCH_SWITCH
    assert parse_meter_time("211031015959") == OCTOBER_SWITCH - 3600 - 1
    assert parse_meter_time("211031030000") == OCTOBER_SWITCH + 3600


@pytest.mark.parametrize(
    "text",
    [
        "172501000000W",  # month 25
        "170001000000W",  # month 0
        "170230000000W",  # 30 February
        "190229120000W",  # 29 February of a common year
        "170100000000W",  # day 0
        "170132000000W",  # 32 January
        "170101240000W",  # hour 24
        "170101006000W",  # minute 60
        "170101000061W",  # second 61
        "632525252525S",  # a meter's "no time" filler
        "632525252525W",
        "700101010000W",  # 1970 placeholder (read as 2070)
        "700101000000S",
        "000101000001W",  # 2000-01-01 placeholder
        "000101000000S",
        "000101000000",
        "",
        "1701021920",  # too short
        "17010219200W",  # 11 digits
        "170102192002X",  # unknown suffix
        "170102192002SW",
        "1701021920021",
        "17010219200aW",
        "17-102192002W",
        " 70102192002W",
        "\u00b270102192002W",  # superscript two: a digit to str.isdigit, not to int()
        "\u00b9\u00b2\u00b3456789012W",
    ],
)
def test_invalid_times_are_none(text: str) -> None:
    assert parse_meter_time(text) is None


def test_leap_day_is_valid() -> None:
    assert parse_meter_time("200229120000W") == winter(2020, 2, 29, 12, 0, 0)


def test_leap_second_is_tolerated() -> None:
    assert parse_meter_time("161231235960W") == winter(2016, 12, 31, 23, 59, 60)


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [
        (winter(2017, 1, 2, 19, 20, 2), "170102192002W"),
        (summer(2020, 4, 26, 22, 33, 25), "200426223325S"),
        (MARCH_SWITCH - 1, "210328015959W"),
        (MARCH_SWITCH, "210328030000S"),
        (OCTOBER_SWITCH - 1, "211031025959S"),
        (OCTOBER_SWITCH, "211031020000W"),
    ],
)
def test_format_meter_time(epoch: float, expected: str) -> None:
    assert format_meter_time(epoch) == expected
    assert format_meter_time(epoch, suffix=False) == expected[:-1]
    assert parse_meter_time(expected) == epoch


def test_is_eu_summer_time_at_the_switches() -> None:
    assert not is_eu_summer_time(MARCH_SWITCH - 1)
    assert is_eu_summer_time(MARCH_SWITCH)
    assert is_eu_summer_time(OCTOBER_SWITCH - 1)
    assert not is_eu_summer_time(OCTOBER_SWITCH)
    # Last Sundays of other years: 2024-03-31 and 2024-10-27.
    assert not is_eu_summer_time(utc(2024, 3, 31, 0, 59, 59))
    assert is_eu_summer_time(utc(2024, 3, 31, 1, 0, 0))
    assert is_eu_summer_time(utc(2024, 10, 27, 0, 59, 59))
    assert not is_eu_summer_time(utc(2024, 10, 27, 1, 0, 0))


def test_meter_local_hour() -> None:
    assert meter_local_hour(utc(2021, 1, 15, 22, 30, 0)) == 23.5
    assert meter_local_hour(utc(2021, 7, 15, 22, 30, 0)) == 0.5
    assert meter_local_hour(MARCH_SWITCH) == 3.0
    assert meter_local_hour(OCTOBER_SWITCH) == 2.0


def test_round_trip_every_hour_around_the_switches() -> None:
    for switch in (MARCH_SWITCH, OCTOBER_SWITCH):
        for step in range(-48 * 4, 48 * 4):
            epoch = switch + step * 900
            assert parse_meter_time(format_meter_time(epoch)) == epoch
            plain = parse_meter_time(format_meter_time(epoch, suffix=False))
            if OCTOBER_SWITCH - 3600 <= epoch < OCTOBER_SWITCH:
                assert plain == epoch + 3600  # the repeated hour is read as CET
            else:
                assert plain == epoch


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.integers(min_value=EARLIEST, max_value=LATEST))
def test_format_parse_round_trip(epoch: int) -> None:
    text = format_meter_time(epoch)
    assert len(text) == 13 and text[:12].isdecimal() and text[12] in "SW"
    assert parse_meter_time(text) == epoch
    # Without a suffix the EU rule gives the same answer, except in the repeated October hour.
    plain = parse_meter_time(format_meter_time(epoch, suffix=False))
    if plain != epoch:  # 02:00-02:59 CEST on the last Sunday of October reads as CET
        assert is_eu_summer_time(epoch)
        assert not is_eu_summer_time(epoch + 3600)
        assert plain == epoch + 3600


@pytest.mark.parametrize(
    ("text", "placeholder"),
    [
        ("000101010000W", True),  # a clock that was never set
        ("000101000001W", True),  # Kaifa's default power-failure entry
        ("000101000000", True),
        ("700101000000S", True),  # 1970, read as 2070
        ("991231235959W", True),
        ("000102010000W", False),  # 2000-01-02 01:00 local is a real time (00:00 UTC)
        ("170102192002W", False),  # a real time
        ("172501000000W", False),  # month 25: malformed, not a placeholder
        ("000230000000W", False),  # 30 February
        ("632525252525S", False),
        ("000101240000W", False),
        ("00010101000W", False),
        ("000101010000X", False),
        ("\u00b200101010000W", False),
    ],
)
def test_placeholder_times_are_well_formed_times_that_mean_none(
    text: str, placeholder: bool
) -> None:
    assert is_placeholder_time(text) is placeholder
    if placeholder:
        assert parse_meter_time(text) is None
