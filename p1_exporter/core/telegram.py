"""The parsed, immutable telegram and its parts.

Numbers are in base units (J, W, V, A, Hz, m3, var, varh, s); times are UTC
epochs. Everything here is read-only so a snapshot can be shared between the
reader thread and any number of scrapes without locks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from p1_exporter.core.obis import ACTIVE_TARIFF


class Register(NamedTuple):
    """One numeric value, converted to its base unit; ``raw`` is the text as sent."""

    value: float
    unit: str
    raw: str


class MBusDevice(NamedTuple):
    """A device on M-Bus channel 1-4 (gas, water, heat, ...).

    ``reading`` is None when the channel sent a placeholder (no unit, an invalid or
    1970 timestamp) instead of a reading: no reading is better than a false zero.
    """

    channel: int
    device_type: int | None
    equipment_id: str | None
    reading: Register | None
    reading_time: float | None
    valve_position: int | None


class PowerFailure(NamedTuple):
    """One entry of the long power-failure log (:data:`POWER_FAILURE_LOG`)."""

    end_time: float | None
    duration_seconds: int


class MonthPeak(NamedTuple):
    """One month of the Belgian peak-demand history (:data:`DEMAND_HISTORY`)."""

    month_start: float | None
    peak_time: float | None
    watts: float


class ObisLine(NamedTuple):
    """A line kept as sent: an unknown OBIS code, or a known one without a fixed layout."""

    obis: str
    raw: str


class LineIssue(NamedTuple):
    """A line that could not be read; the rest of the telegram still was."""

    line: str
    reason: str


@dataclass(frozen=True, slots=True)
class Telegram:
    """A validated, decoded P1 telegram."""

    raw: bytes
    header: str
    dsmr_version: str | None
    crc: int | None
    crc_verified: bool
    meter_time: float | None
    equipment_id: str | None
    registers: Mapping[str, Register]
    texts: Mapping[str, str]
    mbus: Mapping[int, MBusDevice]
    power_failure_log: tuple[PowerFailure, ...]
    month_peak: Register | None
    month_peak_time: float | None
    peak_history: tuple[MonthPeak, ...]
    extra: tuple[ObisLine, ...]
    unknown: tuple[ObisLine, ...]
    malformed: tuple[LineIssue, ...]

    def value(self, obis: str) -> float | None:
        """The base-unit value of a numeric OBIS register, or None if it was not sent."""
        register = self.registers.get(obis)
        return None if register is None else register.value

    @property
    def tariff(self) -> int | None:
        """The active tariff (:data:`~p1_exporter.core.obis.ACTIVE_TARIFF`), 1-4."""
        value = self.value(ACTIVE_TARIFF)
        return None if value is None else int(value)
