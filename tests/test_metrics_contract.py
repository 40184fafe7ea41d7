"""The /metrics contract: every metric of p1_exporter.metrics.catalog, with exact values and labels,
from the real telegrams in tests/fixtures and from synthetic telegrams for what no fixture
sends; and the catalog itself: every entry produced, every produced family in it.

Values are what /metrics serves for one fresh telegram (``telegram_exposition``), read back
with prometheus_client's strict text parser, and compared exactly (==): the exporter
converts units with exact integer arithmetic, so 4.426 kWh is exactly 15933600 J.
Expected values are derived by hand from the telegram text (times via :func:`utc`).
"""

from __future__ import annotations

import calendar
import platform
import re
import subprocess
from collections.abc import Mapping

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from p1_exporter import __version__, parse
from p1_exporter.meter.reader import MeterConfig, MeterReader
from p1_exporter.meter.snapshot import RESULTS
from p1_exporter.metrics.catalog import METRICS
from p1_exporter.metrics.collector import (
    SELF_METRIC_PREFIXES,
    make_registry,
    telegram_exposition,
)
from tests.helpers.binaries import require_binary
from tests.helpers.fixtures import FIXTURE_NAMES
from tests.helpers.fixtures import load as load_fixture
from tests.helpers.metrics import series
from tests.helpers.telegrams import EXTRAS, make_telegram


def utc(*fields: int) -> float:
    """Epoch of a UTC time given as (year, month, day, hour, minute, second)."""
    return float(calendar.timegm((*fields, 0, 0, 0)))


#: Registers in a unit that is not the metric's: left out, never exported mislabelled.
WRONG_UNITS = make_telegram(
    "0-0:1.0.0(240115083000W)",
    "1-0:1.7.0(00.244*kWh)",
    "1-0:1.8.1(000004.426*kW)",
    "1-0:32.7.0(230.0*A)",
    "1-0:31.7.0(1.5*V)",
    "0-0:17.0.0(016*V)",
    "1-0:14.7.0(50.0*V)",
    "0-1:24.1.0(003)",
    "0-1:24.2.1(240115080000W)(00012.345*GJ)",
    "0-2:24.1.0(007)",
    "0-2:24.2.1(240115080000W)(00012.345*kWh)",
)

#: Luxembourg values the real Smarty fixture (smarty_lux.txt) does not send: apparent power
#: per phase, a breaker state on M-Bus channel 3, a limiter threshold in VA.
LUX_PHASES = make_telegram(
    "1-3:0.2.8(42)",
    "0-0:1.0.0(240115083000W)",
    "0-0:42.0.0(53414731303330373030303132373032)",
    "0-0:17.0.0(013800*VA)",
    "1-0:9.7.0(01.234*kVA)",
    "1-0:29.7.0(00.411*kVA)",
    "1-0:49.7.0(00.412*kVA)",
    "1-0:69.7.0(00.413*kVA)",
    "1-0:10.7.0(00.000*kVA)",
    "1-0:30.7.0(00.001*kVA)",
    "1-0:50.7.0(00.002*kVA)",
    "1-0:70.7.0(00.003*kVA)",
    "1-1:31.4.0(020*A)(-020*A)",
    "0-3:96.3.10(2)",
    header="Lux5\\SYNTHETIC_D",
)

SYNTHETIC = {"extras": EXTRAS, "wrong_units": WRONG_UNITS, "lux_phases": LUX_PHASES}


def load(name: str) -> bytes:
    return SYNTHETIC[name] if name in SYNTHETIC else load_fixture(name)


_EXPOSITIONS: dict[str, str] = {}


def exposition(name: str) -> str:
    """The /metrics text for one fresh telegram (a fixture file or a synthetic one)."""
    if name not in _EXPOSITIONS:
        _EXPOSITIONS[name] = telegram_exposition(parse(load(name)))
    return _EXPOSITIONS[name]


def family_values(name: str, metric: str) -> dict[tuple[str, ...], float]:
    """Series of one metric as {label values in catalog order (meter excluded): value}."""
    spec = METRICS[metric]
    found: dict[tuple[str, ...], float] = {}
    for key, number in series(exposition(name)).get(metric, {}).items():
        labels = dict(key)
        assert labels.pop("meter") == "main"
        assert set(labels) == set(spec.labels), (metric, labels)
        found[tuple(labels[label] for label in spec.labels)] = number
    return found


PHASES = ("L1",), ("L2",), ("L3",)


def phases(l1: float, l2: float, l3: float) -> dict[tuple[str, ...], float]:
    return dict(zip(PHASES, (l1, l2, l3), strict=True))


def kwh(text: str) -> float:
    """kWh as the meter prints it -> joules, exactly (digits * 3600 / 1000)."""
    whole, _, fraction = text.partition(".")
    return int(whole + fraction) * 3_600_000 / int(10 ** len(fraction))


#: (fixture, metric, every expected series). An empty dict: the family must be absent.
CASES: list[tuple[str, str, Mapping[tuple[str, ...], float]]] = [
    # -- active energy; tariff="total" only when the meter sends no tariff registers -----
    ("v5.txt", "p1_energy_import_joules_total", {("1",): 15_933_600.0, ("2",): 8_636_400.0}),
    ("v5.txt", "p1_energy_export_joules_total", {("1",): 8_798_400.0, ("2",): 0.0}),
    (
        "v4_2.txt",
        "p1_energy_import_joules_total",
        {("1",): 5_692_042_800.0, ("2",): 5_168_541_600.0},
    ),
    ("v4_2.txt", "p1_energy_export_joules_total", {("1",): 0.0, ("2",): 0.0}),
    (
        "v3.txt",
        "p1_energy_import_joules_total",
        {("1",): 44_444_440_800.0, ("2",): 44_444_440_800.0},
    ),
    ("v2_2.txt", "p1_energy_import_joules_total", {("1",): 3_603_600.0, ("2",): 3_603_600.0}),
    ("v2_2.txt", "p1_energy_export_joules_total", {("1",): 3_603_600.0, ("2",): 3_603_600.0}),
    ("iskra_ie.txt", "p1_energy_export_joules_total", {("1",): 37_011_600.0, ("2",): 37_015_200.0}),
    (
        "esy5q3da1004_v304.txt",
        "p1_energy_import_joules_total",
        {("total",): kwh("00032549.5061662")},
    ),
    ("esy5q3da1004_v304.txt", "p1_energy_export_joules_total", {}),
    (
        "esy5q3db1024_v304.txt",
        "p1_energy_import_joules_total",
        {("total",): kwh("00052185.7825309")},
    ),
    (
        "esy5q3db1024_v304.txt",
        "p1_energy_export_joules_total",
        {("total",): kwh("00019949.3221493")},
    ),
    # Sagemcom T210-D-r sends 1.8.0 and 1.8.1/1.8.2 (in Wh): the tariffs win.
    (
        "sagemcom_t210_d_r.txt",
        "p1_energy_import_joules_total",
        {("1",): 5_017_120 * 3600.0, ("2",): 1_528_646 * 3600.0},
    ),
    ("sagemcom_t210_d_r.txt", "p1_energy_export_joules_total", {("1",): 0.0, ("2",): 58 * 3600.0}),
    # E.ON Hungary sends 1.8.0 plus four tariffs: only tariffs 1..4.
    (
        "v5_eon_hu.txt",
        "p1_energy_import_joules_total",
        {("1",): 171_788_400.0, ("2",): 453_315_600.0, ("3",): 0.0, ("4",): 0.0},
    ),
    (
        "v5_eon_hu.txt",
        "p1_energy_export_joules_total",
        {("1",): 1_446_584_400.0, ("2",): 811_252_800.0, ("3",): 0.0, ("4",): 0.0},
    ),
    ("v5_eon_hu.txt", "p1_energy_absolute_joules_total", {(): 2_882_941_200.0}),
    # 1.8.0 with only 1.8.1 -> tariff 1 only; 2.8.0 alone -> total.
    ("extras", "p1_energy_import_joules_total", {("1",): 14_400_000.0}),
    ("extras", "p1_energy_export_joules_total", {("total",): 12_600_000.0}),
    # -- reactive energy (var*s = varh * 3600) ---------------------------------------------
    ("v5_eon_hu.txt", "p1_reactive_energy_import_var_seconds_total", {("total",): 442_800.0}),
    ("v5_eon_hu.txt", "p1_reactive_energy_export_var_seconds_total", {("total",): 1_091_271_600.0}),
    (
        "sagemcom_t210_d_r.txt",
        "p1_reactive_energy_import_var_seconds_total",
        {("1",): 0.0, ("2",): 747 * 3600.0},
    ),
    (
        "sagemcom_t210_d_r.txt",
        "p1_reactive_energy_export_var_seconds_total",
        {("1",): 2_692_848 * 3600.0, ("2",): 1_204_878 * 3600.0},
    ),
    (
        "v5_eon_hu.txt",
        "p1_reactive_energy_quadrant_var_seconds_total",
        {("Q1",): 2_404_800.0, ("Q2",): 255_600.0, ("Q3",): 577_753_200.0, ("Q4",): 516_045_600.0},
    ),
    # -- power ---------------------------------------------------------------------------
    ("v5.txt", "p1_power_import_watts", {(): 244.0}),
    ("v5.txt", "p1_power_export_watts", {(): 0.0}),
    ("v2_2.txt", "p1_power_import_watts", {(): 1010.0}),
    ("v5_eon_hu.txt", "p1_power_export_watts", {(): 2601.0}),
    ("esy5q3db1024_v304.txt", "p1_power_import_watts", {(): 2124.86}),
    ("esy5q3db1024_v304.txt", "p1_power_export_watts", {}),
    ("sagemcom_t210_d_r.txt", "p1_reactive_power_import_var", {(): 0.0}),
    ("sagemcom_t210_d_r.txt", "p1_reactive_power_export_var", {(): 166.0}),
    (
        "v5_eon_hu.txt",
        "p1_reactive_power_quadrant_var",
        {("Q1",): 0.0, ("Q2",): 0.0, ("Q3",): 504.0, ("Q4",): 0.0},
    ),
    # -- per phase -----------------------------------------------------------------------
    ("v5.txt", "p1_phase_power_import_watts", phases(70.0, 32.0, 142.0)),
    ("v5.txt", "p1_phase_power_export_watts", phases(0.0, 0.0, 0.0)),
    ("iskra_ie.txt", "p1_phase_power_import_watts", phases(217.0, 417.0, 617.0)),
    ("iskra_ie.txt", "p1_phase_power_export_watts", phases(227.0, 427.0, 627.0)),
    ("esy5q3da1004_v304.txt", "p1_phase_power_import_watts", phases(557.29, 521.62, 609.3)),
    ("v5.txt", "p1_phase_voltage_volts", phases(230.0, 230.0, 229.0)),
    ("v5_eon_hu.txt", "p1_phase_voltage_volts", phases(240.4, 239.1, 241.2)),
    ("v4_2.txt", "p1_phase_voltage_volts", {}),
    ("v5.txt", "p1_phase_current_amperes", phases(0.48, 0.44, 0.86)),
    ("fluvius_v171_alt.txt", "p1_phase_current_amperes", phases(0.27, 0.88, 0.52)),
    ("v4_2.txt", "p1_phase_current_amperes", phases(0.0, 6.0, 2.0)),
    ("extras", "p1_phase_reactive_power_import_var", phases(11.0, 12.0, 13.0)),
    ("extras", "p1_phase_reactive_power_export_var", phases(21.0, 22.0, 23.0)),
    ("extras", "p1_phase_voltage_average_volts", phases(231.5, 232.5, 233.5)),
    ("fluvius_v171.txt", "p1_current_limit_amperes", {("L1",): 999.0}),
    ("v5_eon_hu.txt", "p1_current_limit_amperes", phases(200.0, 200.0, 200.0)),
    # -- power quality, as the meter reports it ------------------------------------------
    ("v5_eon_hu.txt", "p1_power_factor", {(): 4.556}),
    ("v5_eon_hu.txt", "p1_phase_power_factor", phases(4.591, 4.542, 4.552)),
    ("v5_eon_hu.txt", "p1_grid_frequency_hertz", {(): 50.0}),
    # -- tariff, failures, sags and swells -----------------------------------------------
    ("v5.txt", "p1_active_tariff", {(): 2.0}),
    ("fluvius_v171.txt", "p1_active_tariff", {(): 1.0}),
    ("v5.txt", "p1_power_failures_total", {(): 13.0}),
    ("v5.txt", "p1_long_power_failures_total", {(): 0.0}),
    ("v5.txt", "p1_power_failure_last_duration_seconds", {}),  # empty log
    ("v4_2.txt", "p1_power_failures_total", {(): 15.0}),
    ("v4_2.txt", "p1_long_power_failures_total", {(): 7.0}),
    # Three entries; the two dated 2000-01-01/02 are the meter's "no date" placeholders.
    ("v4_2.txt", "p1_power_failure_last_duration_seconds", {(): 237_126.0}),
    ("v4_2.txt", "p1_power_failure_last_end_timestamp_seconds", {(): utc(2000, 1, 4, 17, 3, 20)}),
    ("v5_two_mbus.txt", "p1_power_failures_total", {(): 5.0}),
    ("v5_two_mbus.txt", "p1_long_power_failures_total", {(): 3.0}),
    ("v5_two_mbus.txt", "p1_power_failure_last_duration_seconds", {(): 2014.0}),
    (
        "v5_two_mbus.txt",
        "p1_power_failure_last_end_timestamp_seconds",
        {(): utc(2019, 3, 26, 8, 50, 15)},
    ),
    ("v5.txt", "p1_voltage_sags_total", phases(0.0, 0.0, 0.0)),
    ("v5.txt", "p1_voltage_swells_total", phases(0.0, 0.0, 0.0)),
    ("v5_two_mbus.txt", "p1_voltage_sags_total", phases(1.0, 1.0, 192.0)),
    ("v5_two_mbus.txt", "p1_voltage_swells_total", phases(1.0, 1.0, 1.0)),
    # -- limiter: watts for kW, amperes for A (DSMR 3) ------------------------------------
    ("fluvius_v171.txt", "p1_limiter_threshold_watts", {(): 999_900.0}),
    ("fluvius_v171.txt", "p1_limiter_threshold_amperes", {}),
    ("v2_2.txt", "p1_limiter_threshold_watts", {(): 999_000.0}),
    ("v5_eon_hu.txt", "p1_limiter_threshold_watts", {(): 90_000.0}),
    ("v3.txt", "p1_limiter_threshold_amperes", {(): 16.0}),
    ("v3.txt", "p1_limiter_threshold_watts", {}),
    # -- Luxembourg (Smarty): limiter in kVA, fuse supervision bounds, apparent power -------
    ("smarty_lux.txt", "p1_limiter_threshold_volt_amperes", {(): 27_600.0}),
    ("smarty_lux.txt", "p1_limiter_threshold_watts", {}),
    ("lux_phases", "p1_limiter_threshold_volt_amperes", {(): 13_800.0}),
    ("v5_eon_hu.txt", "p1_limiter_threshold_volt_amperes", {}),
    (
        "smarty_lux.txt",
        "p1_fuse_supervision_threshold_amperes",
        {("upper",): 40.0, ("lower",): -40.0},
    ),
    ("lux_phases", "p1_fuse_supervision_threshold_amperes", {("upper",): 20.0, ("lower",): -20.0}),
    ("smarty_lux.txt", "p1_apparent_power_import_volt_amperes", {(): 0.0}),
    ("smarty_lux.txt", "p1_apparent_power_export_volt_amperes", {(): 913.0}),
    ("lux_phases", "p1_apparent_power_import_volt_amperes", {(): 1234.0}),
    ("lux_phases", "p1_phase_apparent_power_import_volt_amperes", phases(411.0, 412.0, 413.0)),
    ("lux_phases", "p1_phase_apparent_power_export_volt_amperes", phases(1.0, 2.0, 3.0)),
    ("smarty_lux.txt", "p1_phase_apparent_power_import_volt_amperes", {}),
    ("smarty_lux.txt", "p1_breaker_state", {(): 1.0}),
    ("smarty_lux.txt", "p1_mbus_breaker_state", {("1",): 0.0, ("2",): 0.0}),
    ("lux_phases", "p1_mbus_breaker_state", {("3",): 2.0}),
    ("fluvius_v171.txt", "p1_mbus_breaker_state", {}),
    (
        "smarty_lux.txt",
        "p1_meter_info",
        {("Lux5\\253663629_D", "4.2", "SAG1030700012701"): 1.0},
    ),  # id from 0-0:42.0.0
    ("smarty_lux.txt", "p1_meter_message_info", {}),  # 96.13.0 and 96.13.2-5 all empty
    ("smarty_lux.txt", "p1_gas_volume_cubic_meters_total", {("1",): 14_239.771}),
    ("fluvius_v171.txt", "p1_breaker_state", {(): 1.0}),
    ("v5.txt", "p1_breaker_state", {}),
    # -- identity and clock --------------------------------------------------------------
    ("v5.txt", "p1_meter_clock_timestamp_seconds", {(): utc(2017, 1, 2, 18, 20, 2)}),
    ("v4_2.txt", "p1_meter_clock_timestamp_seconds", {(): utc(2016, 11, 13, 19, 57, 57)}),
    ("fluvius_v171.txt", "p1_meter_clock_timestamp_seconds", {(): utc(2020, 5, 12, 11, 54, 9)}),
    ("v5_eon_hu.txt", "p1_meter_clock_timestamp_seconds", {(): utc(2023, 7, 24, 13, 7, 30)}),
    ("v2_2.txt", "p1_meter_clock_timestamp_seconds", {}),
    ("esy5q3da1004_v304.txt", "p1_meter_clock_timestamp_seconds", {}),
    ("v5.txt", "p1_meter_info", {("ISk5\\2MT382-1000", "5.0", "K8EG004046395507"): 1.0}),
    (
        "v4_2.txt",
        "p1_meter_info",
        {("KFM5KAIFA-METER", "4.2", "3960221976967177082151037881335713"): 1.0},
    ),
    ("v2_2.txt", "p1_meter_info", {("ISk5\\2MT382-1004", "", "00000000000000"): 1.0}),
    ("fluvius_v171.txt", "p1_meter_info", {("FLU5\\253769484_A", "5.0", "1SAG3101021605"): 1.0}),
    ("v5_eon_hu.txt", "p1_meter_info", {("SAG5SAG-METER", "", "890082200002160"): 1.0}),
    ("sagemcom_t210_d_r.txt", "p1_meter_info", {("EST5\\253710000_A", "5.0", ""): 1.0}),
    ("esy5q3da1004_v304.txt", "p1_meter_info", {("ESY5Q3DA1004 V3.04", "", "1ESY1336001560"): 1.0}),
    ("unpadded_crc.txt", "p1_meter_info", {("NWA-WARMTELINK", "5.0", "ADC3100000158491"): 1.0}),
    # The Irish Iskra's header holds a 0x02 byte; it is passed on as sent.
    ("iskra_ie.txt", "p1_meter_info", {("ISk5\x02MIE5T-200", "", "09610"): 1.0}),
    ("v3.txt", "p1_meter_message_info", {("012345678", "0123456789:;<=>?" * 5): 1.0}),
    ("extras", "p1_meter_message_info", {("01", "Hello"): 1.0}),
    ("v5.txt", "p1_meter_message_info", {}),  # 0-0:96.13.0() is empty
    # -- M-Bus: gas, water, heat, others -------------------------------------------------
    ("v5.txt", "p1_gas_volume_cubic_meters_total", {("1",): 0.107}),  # ch 2: no reading
    ("v4_2.txt", "p1_gas_volume_cubic_meters_total", {("1",): 981.443}),
    ("v2_2.txt", "p1_gas_volume_cubic_meters_total", {("1",): 1.001}),  # value on next line
    ("v3.txt", "p1_gas_volume_cubic_meters_total", {("1",): 1.001}),
    ("fluvius_v171.txt", "p1_gas_volume_cubic_meters_total", {("1",): 112.384}),  # 24.2.3
    ("fluvius_v171_alt.txt", "p1_gas_volume_cubic_meters_total", {("1",): 92.287}),
    ("v5_two_mbus.txt", "p1_gas_volume_cubic_meters_total", {("2",): 246.138}),
    ("v5_invalid_gas_timestamp.txt", "p1_gas_volume_cubic_meters_total", {}),
    ("fluvius_v171.txt", "p1_water_volume_cubic_meters_total", {("2",): 872.234}),
    ("fluvius_v171_alt.txt", "p1_water_volume_cubic_meters_total", {("2",): 8.579}),
    ("unpadded_crc.txt", "p1_heat_energy_joules_total", {("1",): 240_860_000_000.0}),
    ("unpadded_crc.txt", "p1_gas_volume_cubic_meters_total", {}),
    (
        "extras",
        "p1_mbus_reading_value",
        {("3", "10", "J"): 12_345_000_000.0, ("4", "6", "m3"): 1.25},
    ),
    ("v5.txt", "p1_mbus_reading_value", {}),
    ("v5.txt", "p1_mbus_reading_timestamp_seconds", {("1",): utc(2017, 1, 2, 15, 10, 5)}),
    ("v4_2.txt", "p1_mbus_reading_timestamp_seconds", {("1",): utc(2016, 11, 29, 19, 0, 0)}),
    # DSMR 2.2 sends no S/W: November is winter time, UTC+1.
    ("v2_2.txt", "p1_mbus_reading_timestamp_seconds", {("1",): utc(2016, 11, 7, 18, 0, 0)}),
    ("v3.txt", "p1_mbus_reading_timestamp_seconds", {("1",): utc(2009, 2, 12, 15, 0, 0)}),
    (
        "fluvius_v171.txt",
        "p1_mbus_reading_timestamp_seconds",
        {("1",): utc(2020, 5, 12, 11, 45, 58), ("2",): utc(2020, 5, 12, 11, 45, 58)},
    ),
    ("v5_two_mbus.txt", "p1_mbus_reading_timestamp_seconds", {("2",): utc(2020, 4, 26, 20, 30, 1)}),
    ("v5_invalid_gas_timestamp.txt", "p1_mbus_reading_timestamp_seconds", {}),
    (
        "unpadded_crc.txt",
        "p1_mbus_reading_timestamp_seconds",
        {("1",): utc(2026, 2, 15, 19, 5, 23)},
    ),
    (
        "extras",
        "p1_mbus_reading_timestamp_seconds",
        {("3",): utc(2024, 1, 15, 7, 0, 0), ("4",): utc(2024, 1, 15, 7, 25, 0)},
    ),
    ("v5.txt", "p1_mbus_device_info", {("1", "3", "2222ABCD123456789"): 1.0, ("2", "3", ""): 1.0}),
    (
        "v5_two_mbus.txt",
        "p1_mbus_device_info",
        {("1", "3", ""): 1.0, ("2", "3", "G0039001936990619"): 1.0},
    ),
    (
        "fluvius_v171.txt",
        "p1_mbus_device_info",
        {("1", "3", "7FLO2119033733"): 1.0, ("2", "7", "8SAG1234567890"): 1.0},
    ),
    ("unpadded_crc.txt", "p1_mbus_device_info", {("1", "4", "621848012D2C0B0C"): 1.0}),
    ("extras", "p1_mbus_device_info", {("3", "10", "COOL"): 1.0, ("4", "6", ""): 1.0}),
    ("iskra_ie.txt", "p1_mbus_device_info", {}),  # 0-1:96.1.1() alone: no device
    ("fluvius_v171.txt", "p1_mbus_valve_position", {("1",): 1.0}),
    ("v2_2.txt", "p1_mbus_valve_position", {("1",): 1.0}),
    ("v5.txt", "p1_mbus_valve_position", {}),
    # -- Belgian capacity tariff ---------------------------------------------------------
    ("fluvius_v171.txt", "p1_demand_average_watts", {(): 2351.0}),
    ("fluvius_v171.txt", "p1_demand_month_peak_watts", {(): 2589.0}),
    (
        "fluvius_v171.txt",
        "p1_demand_month_peak_timestamp_seconds",
        {(): utc(2020, 5, 9, 11, 45, 58)},
    ),
    ("fluvius_v171_alt.txt", "p1_demand_average_watts", {(): 52.0}),
    ("fluvius_v171_alt.txt", "p1_demand_month_peak_watts", {(): 3064.0}),
    (
        "fluvius_v171_alt.txt",
        "p1_demand_month_peak_timestamp_seconds",
        {(): utc(2023, 11, 2, 10, 45, 0)},
    ),
    # Each entry is stamped with the end of its month (e.g. 200501000000S holds the peak of
    # 2020-04-23): the label is the month the peak belongs to.
    (
        "fluvius_v171.txt",
        "p1_demand_history_peak_watts",
        {("2020-04",): 3695.0, ("2020-03",): 5980.0, ("2020-02",): 4318.0},
    ),
    (
        "fluvius_v171_alt.txt",
        "p1_demand_history_peak_watts",
        {("2023-07",): 0.0, ("2023-08",): 1862.0, ("2023-09",): 4229.0, ("2023-10",): 4927.0},
    ),
    ("v5_eon_hu.txt", "p1_demand_history_peak_watts", {}),  # a billing record, not peaks
    ("v5.txt", "p1_demand_average_watts", {}),
    # -- wrong units: left out ------------------------------------------------------------
    *[
        ("wrong_units", metric, {})
        for metric in (
            "p1_power_import_watts",
            "p1_energy_import_joules_total",
            "p1_phase_voltage_volts",
            "p1_phase_current_amperes",
            "p1_limiter_threshold_watts",
            "p1_limiter_threshold_amperes",
            "p1_limiter_threshold_volt_amperes",
            "p1_grid_frequency_hertz",
            "p1_gas_volume_cubic_meters_total",
            "p1_water_volume_cubic_meters_total",
            "p1_mbus_reading_value",
            "p1_mbus_reading_timestamp_seconds",
        )
    ],
]


@pytest.mark.parametrize(
    ("fixture", "metric", "expected"),
    CASES,
    ids=[f"{fixture}-{metric}" for fixture, metric, _ in CASES],
)
def test_metric_values(
    fixture: str, metric: str, expected: Mapping[tuple[str, ...], float]
) -> None:
    assert family_values(fixture, metric) == expected


# Counted by the HTTP server, not read from telegrams (checked in the health test below).
SERVER_METRICS = {"p1_exporter_http_auth_failures_total"}


def test_every_catalog_metric_is_produced_and_checked() -> None:
    produced: dict[str, set[str]] = {}
    for name in [*FIXTURE_NAMES, *SYNTHETIC]:
        for metric in series(exposition(name)):
            produced.setdefault(metric, set()).add(name)
    never = sorted(set(METRICS) - set(produced) - SERVER_METRICS)
    assert not never, f"catalog metrics no telegram produces: {never}"
    checked = {metric for _, metric, expected in CASES if expected}
    unchecked = sorted(
        name for name, spec in METRICS.items() if not spec.health and name not in checked
    )
    assert not unchecked, f"catalog metrics without an exact value test: {unchecked}"


@pytest.mark.parametrize("name", [*FIXTURE_NAMES, *SYNTHETIC])
def test_produced_families_match_the_catalog(name: str) -> None:
    text = exposition(name)
    declared = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    helps = dict(re.findall(r"^# HELP (\S+) (.*)$", text, re.MULTILINE))
    assert list(declared) == [m for m in METRICS if m in declared], "not in catalog order"
    for metric, kind in declared.items():
        spec = METRICS.get(metric)
        assert spec is not None, f"{metric} is not in the catalog"
        assert kind == spec.type, metric
        assert helps[metric] == spec.help.replace("\\", "\\\\"), metric
        assert metric.endswith("_total") == (kind == "counter"), metric
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            spec = METRICS[sample.name]
            expected = set(spec.labels)
            if sample.name != "p1_exporter_build_info":
                expected.add("meter")
            assert set(sample.labels) == expected, sample


@pytest.mark.parametrize("name", [*FIXTURE_NAMES, *SYNTHETIC])
def test_promtool_accepts_every_exposition(name: str) -> None:
    result = subprocess.run(
        [require_binary("promtool"), "check", "metrics"],
        input=exposition(name),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_placeholder_mbus_channels_yield_no_gas_sample() -> None:
    """An empty channel's ``(700101010000W)(00000000)`` or ``(632525252525S)(00000.000)``
    is "no reading", not 0 m3: a 0 would look like a meter reset to rate()/increase()."""
    for name in FIXTURE_NAMES:
        for key, number in (
            series(exposition(name)).get("p1_gas_volume_cubic_meters_total", {}).items()
        ):
            assert number > 0, (name, key)
    assert ("1",) not in family_values("v5_two_mbus.txt", "p1_gas_volume_cubic_meters_total")
    assert family_values("v5_invalid_gas_timestamp.txt", "p1_gas_volume_cubic_meters_total") == {}


def test_tariff_total_only_without_tariff_registers() -> None:
    for name in FIXTURE_NAMES:
        text = load(name)
        for register, metric in (
            (b"1-0:1.8.", "p1_energy_import_joules_total"),
            (b"1-0:2.8.", "p1_energy_export_joules_total"),
        ):
            tariffs = {key[0] for key in family_values(name, metric)}
            sends_tariffs = any(register + b"%d(" % t in text for t in range(1, 5))
            if sends_tariffs:
                assert tariffs and "total" not in tariffs, (name, metric, tariffs)
            elif register + b"0" in text:
                assert tariffs == {"total"}, (name, metric, tariffs)


# -- health metrics -------------------------------------------------------------------------

HEALTH_ZERO = {
    "p1_up": 0.0,
    "p1_last_telegram_timestamp_seconds": 0.0,
    "p1_stale_after_seconds": 60.0,
    "p1_source_connects_total": 0.0,
    "p1_source_errors_total": 0.0,
    "p1_source_connected": 0.0,
    "p1_bytes_read_total": 0.0,
    "p1_garbage_bytes_total": 0.0,
    "p1_unknown_obis_lines_total": 0.0,
    "p1_malformed_lines_total": 0.0,
    "p1_glitches_total": 0.0,
}


def test_health_metrics_start_at_zero_for_a_reader_that_read_nothing() -> None:
    reader = MeterReader(MeterConfig(url="sim://?seed=1", name="idle"))
    text = generate_latest(make_registry(lambda: [reader.snapshot], dict)).decode()
    # The process's own metrics (process_*, python_*) are tested in test_collector.
    found = {
        name: v for name, v in series(text).items() if not name.startswith(SELF_METRIC_PREFIXES)
    }
    health = {name for name, spec in METRICS.items() if spec.health}
    assert found.pop("p1_exporter_http_auth_failures_total") == {
        frozenset({("reason", reason)}): 0.0 for reason in ("missing", "invalid", "busy")
    }
    health.discard("p1_exporter_http_auth_failures_total")
    assert set(found) == health, "meter values without a telegram, or a health metric missing"
    for name, expected in HEALTH_ZERO.items():
        assert found[name] == {frozenset({("meter", "idle")}): expected}, name
    assert found["p1_telegrams_total"] == {
        frozenset({("meter", "idle"), ("result", result)}): 0.0 for result in RESULTS
    }
    assert set(RESULTS) == {"ok", "crc_error", "malformed", "too_large", "rejected"}
    assert found["p1_exporter_build_info"] == {
        frozenset({("version", __version__), ("python_version", platform.python_version())}): 1.0
    }


def test_build_info_has_no_meter_label_and_appears_once() -> None:
    snaps = [MeterReader(MeterConfig(url="sim://", name=n)).snapshot for n in ("a", "b")]
    text = generate_latest(make_registry(lambda: snaps)).decode()
    lines = [line for line in text.splitlines() if line.startswith("p1_exporter_build_info")]
    assert len(lines) == 1 and "meter=" not in lines[0]
    assert len([line for line in text.splitlines() if line.startswith("p1_up{")]) == 2


def test_exposition_of_every_fixture_is_deterministic() -> None:
    for name in FIXTURE_NAMES:
        assert telegram_exposition(parse(load(name))) == exposition(name)
