"""A simulated smart meter: household model, telegram dialects, line faults, UART errors.

Used by the tests and by ``p1-exporter simulate`` to feed the exporter
without a real meter.
"""

from __future__ import annotations

from p1_exporter.sim.faults import Chunk, FaultInjector
from p1_exporter.sim.meter import SimOptions, SimulatedMeter
from p1_exporter.sim.model import HouseholdModel, MeterState
from p1_exporter.sim.render import DIALECTS, render
from p1_exporter.sim.uart import SerialSettings, transcode

__all__ = [
    "DIALECTS",
    "Chunk",
    "FaultInjector",
    "HouseholdModel",
    "MeterState",
    "SerialSettings",
    "SimOptions",
    "SimulatedMeter",
    "render",
    "transcode",
]
