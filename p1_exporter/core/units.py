"""Exact conversion of register text (``000687.138*kWh``) to base units.

Digits are read as an integer and scaled with one integer division, which
Python rounds correctly, so ``000687.138*kWh`` is exactly 2473696800 J.
"""

from __future__ import annotations

import re

from p1_exporter.core.telegram import Register

# unit as sent -> (numerator, denominator, base unit)
UNITS: dict[str, tuple[int, int, str]] = {
    "kWh": (3_600_000, 1, "J"),
    "Wh": (3_600, 1, "J"),
    "MWh": (3_600_000_000, 1, "J"),
    "GJ": (1_000_000_000, 1, "J"),
    "MJ": (1_000_000, 1, "J"),
    "kJ": (1_000, 1, "J"),
    "J": (1, 1, "J"),
    "kW": (1_000, 1, "W"),
    "W": (1, 1, "W"),
    "MW": (1_000_000, 1, "W"),
    "kvarh": (1_000, 1, "varh"),
    "varh": (1, 1, "varh"),
    "kvar": (1_000, 1, "var"),
    "var": (1, 1, "var"),
    "kVA": (1_000, 1, "VA"),
    "VA": (1, 1, "VA"),
    "V": (1, 1, "V"),
    "kV": (1_000, 1, "V"),
    "A": (1, 1, "A"),
    "mA": (1, 1_000, "A"),
    "Hz": (1, 1, "Hz"),
    "m3": (1, 1, "m3"),
    "dm3": (1, 1_000, "m3"),
    "l": (1, 1_000, "m3"),
    "s": (1, 1, "s"),
    "min": (60, 1, "s"),
    "h": (3_600, 1, "s"),
}
_UNITS_FOLDED = {name.lower(): spec for name, spec in UNITS.items()}
_POW10 = tuple(10**n for n in range(40))
_NUMBER = re.compile(r"(-?)(\d+)(?:\.(\d*))?(?:\*(\S+))?")


class UnitError(ValueError):
    """A value whose number or unit cannot be read."""


def to_register(text: str) -> Register:
    """``000687.138*kWh`` -> Register(2473696800.0, "J", text); a bare number keeps unit ""."""
    match = _NUMBER.fullmatch(text)
    if match is None:
        raise UnitError(f"not a number: {text!r}")
    sign, whole, fraction, unit = match.groups()
    try:  # int() refuses over 4300 digits; the division overflows past 1e308
        if fraction:
            mantissa = int(whole + fraction)
            scale = _POW10[len(fraction)] if len(fraction) < 40 else 10 ** len(fraction)
        else:
            mantissa = int(whole)
            scale = 1
        if sign:
            mantissa = -mantissa
        if unit is None:
            return Register(mantissa / scale, "", text)
        spec = UNITS.get(unit) or _UNITS_FOLDED.get(unit.lower())
        if spec is None:
            raise UnitError(f"unknown unit {unit!r} in {text!r}")
        numerator, denominator, base = spec
        return Register(mantissa * numerator / (scale * denominator), base, text)
    except UnitError:
        raise
    except (ValueError, OverflowError) as exc:
        raise UnitError(f"number out of range in {text[:40]!r}") from exc
