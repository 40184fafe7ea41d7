"""Epochs of the wall-clock times meters send (``S`` is CEST, UTC+2; ``W`` is CET, UTC+1)."""

from __future__ import annotations

import calendar


def summer(*fields: int) -> float:
    """Epoch of a CEST wall-clock time (``S``, UTC+2)."""
    return float(calendar.timegm((*fields, 0, 0, 0)) - 7200)


def winter(*fields: int) -> float:
    """Epoch of a CET wall-clock time (``W``, UTC+1)."""
    return float(calendar.timegm((*fields, 0, 0, 0)) - 3600)
