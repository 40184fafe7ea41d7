"""Meter clock: DSMR ``YYMMDDhhmmss`` plus ``S``/``W``, to and from UTC epochs.

DSMR meters keep Central European time. The suffix says whether summer time
(``S``, UTC+2) or winter time (``W``, UTC+1) is in force; a time sent without a
suffix (DSMR 2.2/3) is placed by the EU rule: summer time runs from the last
Sunday of March to the last Sunday of October, 01:00 UTC each.
"""

from __future__ import annotations

import calendar
import functools
import time

_SUMMER = 7200
_WINTER = 3600
#: Readings dated before this are placeholders (meters send 1970/2000 dates for "none").
EARLIEST_VALID = calendar.timegm((2000, 1, 2, 0, 0, 0, 0, 0, 0))


@functools.lru_cache(maxsize=64)  # asked for on every timestamp a telegram carries
def _last_sunday_0100_utc(year: int, month: int) -> int:
    last_day = calendar.monthrange(year, month)[1]
    weekday = calendar.weekday(year, month, last_day)  # Monday is 0
    day = last_day - (weekday + 1) % 7
    return calendar.timegm((year, month, day, 1, 0, 0, 0, 0, 0))


def is_eu_summer_time(epoch: float) -> bool:
    """True when Central European Summer Time is in force at ``epoch``."""
    year = time.gmtime(epoch).tm_year
    return _last_sunday_0100_utc(year, 3) <= epoch < _last_sunday_0100_utc(year, 10)


#: Minute -> epoch of that minute (or None); a meter's clock changes every second but its
#: minute only every 60 telegrams, so most look-ups skip the calendar arithmetic.
_MINUTES: dict[str, float | None] = {}
_MINUTES_LIMIT = 4096
_UNKNOWN = -1.0  # not a valid epoch: marks a minute not in the cache


def _minute_epoch(text: str) -> float | None:
    suffix = text[12:]
    if suffix not in ("", "S", "W", "s", "w") or not text[:10].isdecimal():
        return None
    year = 2000 + int(text[0:2])
    month, day = int(text[2:4]), int(text[4:6])
    hour, minute = int(text[6:8]), int(text[8:10])
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
        return None
    if hour > 23 or minute > 59 or year >= 2070:
        return None
    local = calendar.timegm((year, month, day, hour, minute, 0, 0, 0, 0))
    if suffix in ("S", "s"):
        offset = _SUMMER
    elif suffix in ("W", "w"):
        offset = _WINTER
    else:
        offset = _SUMMER if is_eu_summer_time(local - _WINTER) else _WINTER
    return float(local - offset)


def parse_meter_time(text: str) -> float | None:
    """``YYMMDDhhmmss[S|W]`` to a UTC epoch, or None when it is not a real time.

    DSMR's "no value" dates (2000-01-01, and 70-01-01 read as 2070) give None too.
    """
    if len(text) < 12 or len(text) > 13:
        return None
    key = text[:10] + text[12:]
    base = _MINUTES.get(key, _UNKNOWN)  # one look-up: another thread may clear the cache
    if base is _UNKNOWN:
        base = _minute_epoch(text)
        if len(_MINUTES) >= _MINUTES_LIMIT:
            _MINUTES.clear()
        _MINUTES[key] = base
    seconds = text[10:12]
    if base is None or not seconds.isdecimal() or seconds > "60":
        return None
    epoch = base + int(seconds)
    return epoch if epoch >= EARLIEST_VALID else None


_SUFFIXES = ("", "S", "W", "s", "w")


def is_placeholder_time(text: str) -> bool:
    """True for a well-formed meter time that stands for "no time" rather than a moment.

    A meter whose clock was never set sends 2000-01-01 (``000101010000W``); some send
    1970-01-01, which the two-digit year reads as 2070. These are well-formed: the line
    is not malformed, it just carries no valid time (:func:`parse_meter_time` gives None).
    """
    if len(text) not in (12, 13) or not text[:12].isdecimal() or text[12:] not in _SUFFIXES:
        return False
    year, month, day = int(text[0:2]), int(text[2:4]), int(text[4:6])
    hour, minute, second = int(text[6:8]), int(text[8:10]), int(text[10:12])
    full_year = 1900 + year if year >= 70 else 2000 + year
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(full_year, month)[1]):
        return False
    if hour > 23 or minute > 59 or second > 60:
        return False
    return year >= 70 or parse_meter_time(text) is None


def format_meter_time(epoch: float, *, suffix: bool = True) -> str:
    """A UTC epoch as the meter would print it, in Central European time."""
    summer = is_eu_summer_time(epoch)
    local = time.gmtime(int(epoch) + (_SUMMER if summer else _WINTER))
    text = time.strftime("%y%m%d%H%M%S", local)
    if suffix:
        text += "S" if summer else "W"
    return text


def meter_local_hour(epoch: float) -> float:
    """Hour of day (fractional) on the meter's Central European clock."""
    offset = _SUMMER if is_eu_summer_time(epoch) else _WINTER
    return ((epoch + offset) % 86400) / 3600.0
