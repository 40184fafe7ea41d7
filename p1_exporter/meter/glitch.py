"""Guard against cumulative registers that go backwards.

A meter register (energy, gas, water, heat, failure counts) only ever rises. A
lower value from the same meter is withheld from publication and counted; if
it stays lower for ``reset_after`` telegrams in a row, it is taken as a real
reset (a register rollover) and accepted. A new equipment id means a new
meter: its values are accepted as they are.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import NamedTuple

from p1_exporter.core.obis import CUMULATIVE
from p1_exporter.core.telegram import MBusDevice, Register, Telegram


def is_cumulative(obis: str) -> bool:
    """True for registers that only ever rise (energy totals and event counters): the
    rows of the code table marked cumulative."""
    return obis in CUMULATIVE


class Glitch(NamedTuple):
    """A withheld value: which register, the last accepted value, the lower one seen."""

    key: str
    previous: float
    value: float


class GlitchGuard:
    """Filters a stream of telegrams from one meter; keeps the last accepted values."""

    def __init__(self, reset_after: int = 10) -> None:
        self.reset_after = reset_after
        self.equipment_id: str | None = None
        self._last: dict[str, float] = {}
        self._mbus_ids: dict[int, str | None] = {}
        self._lower_run: dict[str, int] = {}

    def _accept(self, key: str, value: float) -> bool:
        previous = self._last.get(key)
        if previous is None or value >= previous:
            self._last[key] = value
            self._lower_run.pop(key, None)
            return True
        run = self._lower_run.get(key, 0) + 1
        if run >= self.reset_after:
            self._last[key] = value
            self._lower_run.pop(key, None)
            return True
        self._lower_run[key] = run
        return False

    def filter(self, telegram: Telegram) -> tuple[Telegram, list[Glitch], str | None]:
        """Return the telegram to publish, the glitches withheld, and a replaced-meter note."""
        note = None
        if telegram.equipment_id != self.equipment_id:
            if self.equipment_id is not None and telegram.equipment_id is not None:
                note = (
                    f"meter replaced: equipment id {self.equipment_id} -> "
                    f"{telegram.equipment_id}; accepting its registers as new"
                )
                self._last.clear()
                self._lower_run.clear()
                self._mbus_ids.clear()
            if telegram.equipment_id is not None:
                self.equipment_id = telegram.equipment_id
        glitches: list[Glitch] = []
        registers: dict[str, Register] | None = None
        for code, register in telegram.registers.items():
            if is_cumulative(code) and not self._accept(code, register.value):
                glitches.append(Glitch(code, self._last[code], register.value))
                if registers is None:
                    registers = dict(telegram.registers)
                del registers[code]
        devices: dict[int, MBusDevice] | None = None
        for channel, device in telegram.mbus.items():
            key = f"mbus:{channel}"
            if self._mbus_ids.get(channel, device.equipment_id) != device.equipment_id:
                self._last.pop(key, None)  # another device on this channel
                self._lower_run.pop(key, None)
            self._mbus_ids[channel] = device.equipment_id
            if device.reading is None or self._accept(key, device.reading.value):
                continue
            glitches.append(Glitch(key, self._last[key], device.reading.value))
            if devices is None:
                devices = dict(telegram.mbus)
            devices[channel] = device._replace(reading=None, reading_time=None)
        if registers is None and devices is None:
            return telegram, glitches, note
        published = dataclasses.replace(
            telegram,
            registers=telegram.registers if registers is None else MappingProxyType(registers),
            mbus=telegram.mbus if devices is None else MappingProxyType(devices),
        )
        return published, glitches, note
