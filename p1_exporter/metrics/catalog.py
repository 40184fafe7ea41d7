"""Every metric the exporter serves: name, type, labels and help, in one place.

The collector, the README's metrics reference and the dashboard tests all read
this table, so a name cannot drift between them. Names follow Prometheus
conventions: base units, ``_total`` on counters. Every ``p1_`` metric also carries the
``meter`` label, except the exporter-wide ones (``per_meter=False``).
"""

from __future__ import annotations

from typing import NamedTuple


class MetricSpec(NamedTuple):
    """One metric family. ``labels`` excludes ``meter``; ``source`` names the OBIS code(s)."""

    name: str
    type: str  # "counter" or "gauge"
    labels: tuple[str, ...]
    help: str
    source: str = ""
    health: bool = False  # always present (exporter health), not only with a fresh telegram
    per_meter: bool = True  # carries the meter label


def _specs() -> list[MetricSpec]:
    c, g = "counter", "gauge"
    return [
        # -- meter values: only from a fresh, validated telegram -------------------------
        MetricSpec("p1_energy_import_joules_total", c, ("tariff",),
                   "Active energy imported from the grid, per tariff (total when the meter "
                   "sends no tariff registers).", "1-0:1.8.1..4 (1-0:1.8.0)"),
        MetricSpec("p1_energy_export_joules_total", c, ("tariff",),
                   "Active energy exported to the grid, per tariff (total when the meter sends "
                   "no tariff registers).", "1-0:2.8.1..4 (1-0:2.8.0)"),
        MetricSpec("p1_energy_absolute_joules_total", c, (),
                   "Absolute active energy, import plus export.", "1-0:15.8.0"),
        MetricSpec("p1_reactive_energy_import_var_seconds_total", c, ("tariff",),
                   "Reactive energy imported (var*s; divide by 3600 for varh).",
                   "1-0:3.8.0..4"),
        MetricSpec("p1_reactive_energy_export_var_seconds_total", c, ("tariff",),
                   "Reactive energy exported (var*s; divide by 3600 for varh).",
                   "1-0:4.8.0..4"),
        MetricSpec("p1_reactive_energy_quadrant_var_seconds_total", c, ("quadrant",),
                   "Reactive energy per quadrant Q1-Q4 (var*s).", "1-0:5.8.0..8.8.0"),
        MetricSpec("p1_power_import_watts", g, (), "Active power imported now.", "1-0:1.7.0"),
        MetricSpec("p1_power_export_watts", g, (), "Active power exported now.", "1-0:2.7.0"),
        MetricSpec("p1_reactive_power_import_var", g, (), "Reactive power imported now.",
                   "1-0:3.7.0"),
        MetricSpec("p1_reactive_power_export_var", g, (), "Reactive power exported now.",
                   "1-0:4.7.0"),
        MetricSpec("p1_reactive_power_quadrant_var", g, ("quadrant",),
                   "Reactive power per quadrant Q1-Q4.", "1-0:5.7.0..8.7.0"),
        MetricSpec("p1_phase_power_import_watts", g, ("phase",),
                   "Active power imported per phase.", "1-0:21/41/61.7.0"),
        MetricSpec("p1_phase_power_export_watts", g, ("phase",),
                   "Active power exported per phase.", "1-0:22/42/62.7.0"),
        MetricSpec("p1_phase_reactive_power_import_var", g, ("phase",),
                   "Reactive power imported per phase.", "1-0:23/43/63.7.0"),
        MetricSpec("p1_phase_reactive_power_export_var", g, ("phase",),
                   "Reactive power exported per phase.", "1-0:24/44/64.7.0"),
        MetricSpec("p1_phase_voltage_volts", g, ("phase",), "Voltage per phase.",
                   "1-0:32/52/72.7.0"),
        MetricSpec("p1_phase_voltage_average_volts", g, ("phase",),
                   "Average voltage per phase over the meter's averaging period.",
                   "1-0:32/52/72.24.0"),
        MetricSpec("p1_phase_current_amperes", g, ("phase",), "Current per phase.",
                   "1-0:31/51/71.7.0"),
        MetricSpec("p1_current_limit_amperes", g, ("phase",),
                   "Current limit (fuse) per phase as the meter reports it.",
                   "1-0:31/51/71.4.0"),
        MetricSpec("p1_power_factor", g, (), "Power factor, all phases.", "1-0:13.7.0"),
        MetricSpec("p1_phase_power_factor", g, ("phase",), "Power factor per phase.",
                   "1-0:33/53/73.7.0"),
        MetricSpec("p1_grid_frequency_hertz", g, (), "Grid frequency.", "1-0:14.7.0"),
        MetricSpec("p1_active_tariff", g, (),
                   "Tariff in force (NL: 1 low, 2 normal; BE: 1 day, 2 night).", "0-0:96.14.0"),
        MetricSpec("p1_power_failures_total", c, (), "Power failures in any phase.",
                   "0-0:96.7.21"),
        MetricSpec("p1_long_power_failures_total", c, (), "Long power failures in any phase.",
                   "0-0:96.7.9"),
        MetricSpec("p1_power_failure_last_duration_seconds", g, (),
                   "Duration of the latest entry of the long power-failure log.", "1-0:99.97.0"),
        MetricSpec("p1_power_failure_last_end_timestamp_seconds", g, (),
                   "When the latest logged long power failure ended.", "1-0:99.97.0"),
        MetricSpec("p1_voltage_sags_total", c, ("phase",), "Voltage sags per phase.",
                   "1-0:32/52/72.32.0"),
        MetricSpec("p1_voltage_swells_total", c, ("phase",), "Voltage swells per phase.",
                   "1-0:32/52/72.36.0"),
        MetricSpec("p1_limiter_threshold_watts", g, (),
                   "Power threshold of the meter's limiter.", "0-0:17.0.0 (kW)"),
        MetricSpec("p1_limiter_threshold_amperes", g, (),
                   "Current threshold of the meter's limiter (DSMR 3).", "0-0:17.0.0 (A)"),
        MetricSpec("p1_breaker_state", g, (), "Breaker (switch) state: 0 off, 1 on, 2 ready.",
                   "0-0:96.3.10"),
        MetricSpec("p1_meter_clock_timestamp_seconds", g, (), "The meter's clock.", "0-0:1.0.0"),
        MetricSpec("p1_meter_info", g, ("header", "dsmr_version", "equipment_id"),
                   "Meter identification; value 1.", "header, 1-3:0.2.8, 0-0:96.1.1"),
        MetricSpec("p1_meter_message_info", g, ("code", "message"),
                   "Text message shown by the meter, when it has one; value 1.",
                   "0-0:96.13.1, 0-0:96.13.0"),
        MetricSpec("p1_gas_volume_cubic_meters_total", c, ("channel",),
                   "Gas delivered, per M-Bus channel (device type 3).",
                   "0-n:24.2.1, 0-n:24.2.3, 0-n:24.3.0"),
        MetricSpec("p1_water_volume_cubic_meters_total", c, ("channel",),
                   "Water delivered, per M-Bus channel (device type 7).", "0-n:24.2.1"),
        MetricSpec("p1_heat_energy_joules_total", c, ("channel",),
                   "Heat delivered, per M-Bus channel (device type 4).", "0-n:24.2.1"),
        MetricSpec("p1_mbus_reading_value", g, ("channel", "device_type", "unit"),
                   "Reading of an M-Bus device of another type, in base units.", "0-n:24.2.x"),
        MetricSpec("p1_mbus_reading_timestamp_seconds", g, ("channel",),
                   "When the M-Bus device's reading was taken (DSMR 5: every 5 min, "
                   "DSMR 4: hourly).", "0-n:24.2.x"),
        MetricSpec("p1_mbus_device_info", g, ("channel", "device_type", "equipment_id"),
                   "M-Bus device on a channel; value 1.", "0-n:24.1.0, 0-n:96.1.0"),
        MetricSpec("p1_mbus_valve_position", g, ("channel",),
                   "Valve position of an M-Bus device (1 open).", "0-n:24.4.0"),
        MetricSpec("p1_demand_average_watts", g, (),
                   "Average demand in the current quarter hour (Belgian capacity tariff).",
                   "1-0:1.4.0"),
        MetricSpec("p1_demand_month_peak_watts", g, (),
                   "Highest quarter-hour average demand this month.", "1-0:1.6.0"),
        MetricSpec("p1_demand_month_peak_timestamp_seconds", g, (),
                   "When this month's peak quarter hour happened.", "1-0:1.6.0"),
        MetricSpec("p1_demand_history_peak_watts", g, ("month",),
                   "Peak quarter-hour demand of a past month (YYYY-MM, meter's local time).",
                   "0-0:98.1.0"),
        # -- exporter health: always present --------------------------------------------
        MetricSpec("p1_up", g, (),
                   "1 while a validated telegram is younger than the stale limit, else 0.",
                   health=True),
        MetricSpec("p1_last_telegram_timestamp_seconds", g, (),
                   "When the last validated telegram arrived (0 before the first).",
                   health=True),
        MetricSpec("p1_stale_after_seconds", g, (),
                   "Age at which the meter counts as silent and its values are withdrawn.",
                   health=True),
        MetricSpec("p1_telegrams_total", c, ("result",),
                   "Telegrams framed, by outcome: ok, crc_error, malformed, too_large, "
                   "rejected.", health=True),
        MetricSpec("p1_source_connects_total", c, (),
                   "Successful opens of the meter's source (reconnects included).", health=True),
        MetricSpec("p1_source_errors_total", c, (),
                   "Source failures: disconnects, refused connections, missing device, "
                   "silence.", health=True),
        MetricSpec("p1_source_connected", g, (), "1 while the meter's source is open.",
                   health=True),
        MetricSpec("p1_bytes_read_total", c, (), "Bytes read from the meter's source.",
                   health=True),
        MetricSpec("p1_unknown_obis_lines_total", c, (),
                   "Telegram lines with an OBIS code the exporter does not know.", health=True),
        MetricSpec("p1_malformed_lines_total", c, (),
                   "Telegram lines that could not be read and were skipped.", health=True),
        MetricSpec("p1_glitches_total", c, (),
                   "Cumulative register values that went backwards and were withheld.",
                   health=True),
        MetricSpec("p1_exporter_build_info", g, ("version", "python_version"),
                   "Exporter version; value 1. Carries no meter label.", health=True,
                   per_meter=False),
        MetricSpec("p1_exporter_http_auth_failures_total", c, ("reason",),
                   "HTTP requests refused by basic auth: missing (no or malformed "
                   "credentials), invalid (wrong user or password), busy (too many unknown "
                   "credentials waiting for their check). Carries no meter label.",
                   health=True, per_meter=False),
    ]


METRICS: dict[str, MetricSpec] = {spec.name: spec for spec in _specs()}
