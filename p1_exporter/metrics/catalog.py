"""Every metric the exporter serves: name, type, labels and help, in one place.

The collector, the README's metrics reference and the dashboard tests all read
this table, so a name cannot drift between them. Names follow Prometheus
conventions: base units, ``_total`` on counters. Every ``p1_`` metric also carries the
``meter`` label, except the exporter-wide ones (``per_meter=False``).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from p1_exporter.core.obis import ROWS

#: The Prometheus metric types the exporter serves.
MetricType = Literal["counter", "gauge"]


class MetricSpec(NamedTuple):
    """One metric family. ``labels`` excludes ``meter``.

    ``source`` names what the values are read from: the OBIS codes, derived from the code
    table (:mod:`p1_exporter.core.obis`), after any input that is not a code (``header``).
    """

    name: str
    type: MetricType
    labels: tuple[str, ...]
    help: str
    source: str = ""
    health: bool = False  # always present (exporter health), not only with a fresh telegram
    per_meter: bool = True  # carries the meter label


def _specs() -> list[MetricSpec]:
    c: MetricType = "counter"
    g: MetricType = "gauge"
    return [
        # -- meter values: only from a fresh, validated telegram -------------------------
        MetricSpec(
            "p1_energy_import_joules_total",
            c,
            ("tariff",),
            "Active energy imported from the grid, per tariff (total when the meter "
            "sends no tariff registers).",
        ),
        MetricSpec(
            "p1_energy_export_joules_total",
            c,
            ("tariff",),
            "Active energy exported to the grid, per tariff (total when the meter sends "
            "no tariff registers).",
        ),
        MetricSpec(
            "p1_energy_absolute_joules_total", c, (), "Absolute active energy, import plus export."
        ),
        MetricSpec(
            "p1_reactive_energy_import_var_seconds_total",
            c,
            ("tariff",),
            "Reactive energy imported (var*s; divide by 3600 for varh).",
        ),
        MetricSpec(
            "p1_reactive_energy_export_var_seconds_total",
            c,
            ("tariff",),
            "Reactive energy exported (var*s; divide by 3600 for varh).",
        ),
        MetricSpec(
            "p1_reactive_energy_quadrant_var_seconds_total",
            c,
            ("quadrant",),
            "Reactive energy per quadrant Q1-Q4 (var*s).",
        ),
        MetricSpec("p1_power_import_watts", g, (), "Active power imported now."),
        MetricSpec("p1_power_export_watts", g, (), "Active power exported now."),
        MetricSpec("p1_reactive_power_import_var", g, (), "Reactive power imported now."),
        MetricSpec("p1_reactive_power_export_var", g, (), "Reactive power exported now."),
        MetricSpec(
            "p1_reactive_power_quadrant_var", g, ("quadrant",), "Reactive power per quadrant Q1-Q4."
        ),
        MetricSpec("p1_apparent_power_import_volt_amperes", g, (), "Apparent power imported now."),
        MetricSpec("p1_apparent_power_export_volt_amperes", g, (), "Apparent power exported now."),
        MetricSpec(
            "p1_phase_power_import_watts", g, ("phase",), "Active power imported per phase."
        ),
        MetricSpec(
            "p1_phase_power_export_watts", g, ("phase",), "Active power exported per phase."
        ),
        MetricSpec(
            "p1_phase_reactive_power_import_var",
            g,
            ("phase",),
            "Reactive power imported per phase.",
        ),
        MetricSpec(
            "p1_phase_reactive_power_export_var",
            g,
            ("phase",),
            "Reactive power exported per phase.",
        ),
        MetricSpec(
            "p1_phase_apparent_power_import_volt_amperes",
            g,
            ("phase",),
            "Apparent power imported per phase.",
        ),
        MetricSpec(
            "p1_phase_apparent_power_export_volt_amperes",
            g,
            ("phase",),
            "Apparent power exported per phase.",
        ),
        MetricSpec("p1_phase_voltage_volts", g, ("phase",), "Voltage per phase."),
        MetricSpec(
            "p1_phase_voltage_average_volts",
            g,
            ("phase",),
            "Average voltage per phase over the meter's averaging period.",
        ),
        MetricSpec("p1_phase_current_amperes", g, ("phase",), "Current per phase."),
        MetricSpec(
            "p1_current_limit_amperes",
            g,
            ("phase",),
            "Current limit (fuse) per phase as the meter reports it.",
        ),
        MetricSpec("p1_power_factor", g, (), "Power factor, all phases."),
        MetricSpec("p1_phase_power_factor", g, ("phase",), "Power factor per phase."),
        MetricSpec("p1_grid_frequency_hertz", g, (), "Grid frequency."),
        MetricSpec(
            "p1_active_tariff", g, (), "Tariff in force (NL: 1 low, 2 normal; BE: 1 day, 2 night)."
        ),
        MetricSpec("p1_power_failures_total", c, (), "Power failures in any phase."),
        MetricSpec("p1_long_power_failures_total", c, (), "Long power failures in any phase."),
        MetricSpec(
            "p1_power_failure_last_duration_seconds",
            g,
            (),
            "Duration of the latest entry of the long power-failure log.",
        ),
        MetricSpec(
            "p1_power_failure_last_end_timestamp_seconds",
            g,
            (),
            "When the latest logged long power failure ended.",
        ),
        MetricSpec("p1_voltage_sags_total", c, ("phase",), "Voltage sags per phase."),
        MetricSpec("p1_voltage_swells_total", c, ("phase",), "Voltage swells per phase."),
        MetricSpec("p1_limiter_threshold_watts", g, (), "Power threshold of the meter's limiter."),
        MetricSpec(
            "p1_limiter_threshold_amperes",
            g,
            (),
            "Current threshold of the meter's limiter (DSMR 3).",
        ),
        MetricSpec(
            "p1_limiter_threshold_volt_amperes",
            g,
            (),
            "Apparent-power threshold of the meter's limiter (Luxembourg).",
        ),
        MetricSpec(
            "p1_fuse_supervision_threshold_amperes",
            g,
            ("bound",),
            "Current thresholds of the meter's fuse supervision, upper and lower (Luxembourg).",
        ),
        MetricSpec("p1_breaker_state", g, (), "Breaker (switch) state: 0 off, 1 on, 2 ready."),
        MetricSpec(
            "p1_mbus_breaker_state",
            g,
            ("channel",),
            "Breaker state of an M-Bus device: 0 off, 1 on, 2 ready.",
        ),
        MetricSpec("p1_meter_clock_timestamp_seconds", g, (), "The meter's clock."),
        MetricSpec(
            "p1_meter_info",
            g,
            ("header", "dsmr_version", "equipment_id"),
            "Meter identification; value 1.",
            "header",
        ),
        MetricSpec(
            "p1_meter_message_info",
            g,
            ("code", "message"),
            "Text message shown by the meter, when it has one; value 1.",
        ),
        MetricSpec(
            "p1_gas_volume_cubic_meters_total",
            c,
            ("channel",),
            "Gas delivered, per M-Bus channel (device type 3).",
        ),
        MetricSpec(
            "p1_water_volume_cubic_meters_total",
            c,
            ("channel",),
            "Water delivered, per M-Bus channel (device type 7).",
        ),
        MetricSpec(
            "p1_heat_energy_joules_total",
            c,
            ("channel",),
            "Heat delivered, per M-Bus channel (device type 4).",
        ),
        MetricSpec(
            "p1_mbus_reading_value",
            g,
            ("channel", "device_type", "unit"),
            "Reading of an M-Bus device of another type, in base units.",
        ),
        MetricSpec(
            "p1_mbus_reading_timestamp_seconds",
            g,
            ("channel",),
            "When the M-Bus device's reading was taken (DSMR 5: every 5 min, DSMR 4: hourly).",
        ),
        MetricSpec(
            "p1_mbus_device_info",
            g,
            ("channel", "device_type", "equipment_id"),
            "M-Bus device on a channel; value 1.",
        ),
        MetricSpec(
            "p1_mbus_valve_position", g, ("channel",), "Valve position of an M-Bus device (1 open)."
        ),
        MetricSpec(
            "p1_demand_average_watts",
            g,
            (),
            "Average demand in the current quarter hour (Belgian capacity tariff).",
        ),
        MetricSpec(
            "p1_demand_month_peak_watts", g, (), "Highest quarter-hour average demand this month."
        ),
        MetricSpec(
            "p1_demand_month_peak_timestamp_seconds",
            g,
            (),
            "When this month's peak quarter hour happened.",
        ),
        MetricSpec(
            "p1_demand_history_peak_watts",
            g,
            ("month",),
            "Peak quarter-hour demand of a past month (YYYY-MM, meter's local time).",
        ),
        # -- exporter health: always present --------------------------------------------
        MetricSpec(
            "p1_up",
            g,
            (),
            "1 while a validated telegram is younger than the stale limit, else 0.",
            health=True,
        ),
        MetricSpec(
            "p1_last_telegram_timestamp_seconds",
            g,
            (),
            "When the last validated telegram arrived (0 before the first).",
            health=True,
        ),
        MetricSpec(
            "p1_stale_after_seconds",
            g,
            (),
            "Age at which the meter counts as silent and its values are withdrawn.",
            health=True,
        ),
        MetricSpec(
            "p1_telegrams_total",
            c,
            ("result",),
            "Telegrams framed, by outcome: ok, crc_error, malformed, too_large, rejected; "
            "encrypted and HAN meters also decrypt_error, replay, no_key, unsupported.",
            health=True,
        ),
        MetricSpec(
            "p1_source_connects_total",
            c,
            (),
            "Successful opens of the meter's source (reconnects included).",
            health=True,
        ),
        MetricSpec(
            "p1_source_errors_total",
            c,
            (),
            "Source failures: disconnects, refused connections, missing device, silence.",
            health=True,
        ),
        MetricSpec(
            "p1_source_connected", g, (), "1 while the meter's source is open.", health=True
        ),
        MetricSpec(
            "p1_bytes_read_total", c, (), "Bytes read from the meter's source.", health=True
        ),
        MetricSpec(
            "p1_garbage_bytes_total",
            c,
            (),
            "Bytes read outside any telegram and skipped (line noise, filler, wrong "
            "serial settings).",
            health=True,
        ),
        MetricSpec(
            "p1_unknown_obis_lines_total",
            c,
            (),
            "Telegram lines with an OBIS code the exporter does not know.",
            health=True,
        ),
        MetricSpec(
            "p1_malformed_lines_total",
            c,
            (),
            "Telegram lines that could not be read and were skipped.",
            health=True,
        ),
        MetricSpec(
            "p1_glitches_total",
            c,
            (),
            "Cumulative register values that went backwards and were withheld.",
            health=True,
        ),
        MetricSpec(
            "p1_exporter_build_info",
            g,
            ("version", "python_version"),
            "Exporter version; value 1. Carries no meter label.",
            health=True,
            per_meter=False,
        ),
        MetricSpec(
            "p1_exporter_http_auth_failures_total",
            c,
            ("reason",),
            "HTTP requests refused by basic auth: missing (no or malformed "
            "credentials), invalid (wrong user or password), busy (too many unknown "
            "credentials waiting for their check). Carries no meter label.",
            health=True,
            per_meter=False,
        ),
    ]


def code_sources() -> dict[str, str]:
    """Metric -> the OBIS codes that feed it, as the metrics reference writes them.

    Derived from the code table, in its order: one pattern per code family, and totals
    that are exported only without their tariff registers in parentheses.
    """
    plain: dict[str, list[str]] = {}
    totals: dict[str, list[str]] = {}
    for row in ROWS:
        for metric in (row.metric, *row.feeds) if row.metric else row.feeds:
            patterns = (totals if row.total_of else plain).setdefault(metric, [])
            if row.pattern not in patterns:
                patterns.append(row.pattern)
    return {
        metric: " ".join(
            [
                ", ".join(plain.get(metric, [])),
                *(f"({pattern})" for pattern in totals.get(metric, [])),
            ]
        ).strip()
        for metric in plain.keys() | totals.keys()
    }


def _with_sources(specs: list[MetricSpec]) -> dict[str, MetricSpec]:
    sources = code_sources()
    return {
        spec.name: spec._replace(
            source=", ".join(part for part in (spec.source, sources.get(spec.name, "")) if part)
        )
        for spec in specs
    }


METRICS: dict[str, MetricSpec] = _with_sources(_specs())
