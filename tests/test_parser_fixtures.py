"""Every real telegram in tests/fixtures decodes, checked field by field against its text.

Expected numbers are derived here from the text as sent (``base``), independently of
the code under test, and a few are spelled out as literals. Expected times come from
``calendar.timegm``: ``S`` is UTC+2, ``W`` is UTC+1.
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from p1_exporter import MBusDevice, MonthPeak, ObisLine, PowerFailure, Register, Telegram, parse
from tests.helpers.fixtures import load
from tests.helpers.telegrams import content, seal
from tests.helpers.times import summer, winter

#: unit as sent -> (factor to the base unit, base unit); the tests' own table.
SCALE: dict[str, tuple[int, str]] = {
    "": (1, ""),
    "kWh": (3_600_000, "J"),
    "Wh": (3_600, "J"),
    "GJ": (1_000_000_000, "J"),
    "kW": (1_000, "W"),
    "W": (1, "W"),
    "kvar": (1_000, "var"),
    "var": (1, "var"),
    "kvarh": (1_000, "varh"),
    "varh": (1, "varh"),
    "kVA": (1_000, "VA"),
    "V": (1, "V"),
    "A": (1, "A"),
    "Hz": (1, "Hz"),
    "m3": (1, "m3"),
    "s": (1, "s"),
}


def base(raw: str) -> Register:
    """``000004.426*kWh`` -> the exact value in base units, by rational arithmetic."""
    number, _, unit = raw.partition("*")
    factor, base_unit = SCALE[unit]
    return Register(float(Fraction(number) * factor), base_unit, raw)


def check_registers(telegram: Telegram, expected: dict[str, str]) -> None:
    """Every numeric register, with value, base unit and text as sent, and nothing else."""
    got = {code: tuple(register) for code, register in telegram.registers.items()}
    assert got == {code: tuple(base(raw)) for code, raw in expected.items()}
    for register in telegram.registers.values():
        assert type(register.value) is float


def check_clean(telegram: Telegram) -> None:
    """Nothing unknown, nothing malformed: every line of a real telegram is understood."""
    assert telegram.unknown == ()
    assert telegram.malformed == ()


# --- Dutch DSMR --------------------------------------------------------------


def test_v2_2() -> None:
    telegram = parse(load("v2_2.txt"))
    assert telegram.header == "ISk5\\2MT382-1004"
    assert telegram.dsmr_version is None
    assert telegram.crc is None and telegram.crc_verified is False
    assert telegram.meter_time is None
    # Hex of NUL bytes is not text: the identifier is kept as sent.
    assert telegram.equipment_id == "00000000000000"
    check_registers(
        telegram,
        {
            "1-0:1.8.1": "00001.001*kWh",
            "1-0:1.8.2": "00001.001*kWh",
            "1-0:2.8.1": "00001.001*kWh",
            "1-0:2.8.2": "00001.001*kWh",
            "0-0:96.14.0": "0001",
            "1-0:1.7.0": "0001.01*kW",
            "1-0:2.7.0": "0000.00*kW",
            "0-0:17.0.0": "0999.00*kW",
            "0-0:96.3.10": "1",
        },
    )
    assert telegram.value("1-0:1.8.1") == 3_603_600
    assert telegram.value("1-0:1.7.0") == 1010
    assert telegram.tariff == 1
    assert dict(telegram.texts) == {
        "0-0:96.1.1": "00000000000000",
        "0-0:96.13.1": "",
        "0-0:96.13.0": "",
    }
    # Gas on the line after 0-1:24.3.0; the time has no suffix: 7 Nov 2016 is winter time.
    assert dict(telegram.mbus) == {
        1: MBusDevice(
            channel=1,
            device_type=3,
            equipment_id="000000000000",
            reading=Register(1.001, "m3", "00001.001*m3"),
            reading_time=winter(2016, 11, 7, 19, 0, 0),
            valve_position=1,
        )
    }
    assert telegram.power_failure_log == ()
    assert telegram.month_peak is None and telegram.month_peak_time is None
    assert telegram.peak_history == ()
    assert telegram.extra == ()
    check_clean(telegram)


def test_v3() -> None:
    telegram = parse(load("v3.txt"))
    assert telegram.header == "ISk5\\2MT382-1000"
    assert telegram.dsmr_version is None
    assert telegram.crc is None and not telegram.crc_verified
    assert telegram.meter_time is None
    assert telegram.equipment_id == "K8EG004046395507"
    assert bytes.fromhex("4B384547303034303436333935353037").decode() == "K8EG004046395507"
    check_registers(
        telegram,
        {
            "1-0:1.8.1": "12345.678*kWh",
            "1-0:1.8.2": "12345.678*kWh",
            "1-0:2.8.1": "12345.678*kWh",
            "1-0:2.8.2": "12345.678*kWh",
            "0-0:96.14.0": "0002",
            "1-0:1.7.0": "001.19*kW",
            "1-0:2.7.0": "000.00*kW",
            "0-0:17.0.0": "016*A",
            "0-0:96.3.10": "1",
        },
    )
    assert telegram.value("1-0:1.8.1") == 44_444_440_800
    assert telegram.value("0-0:17.0.0") == 16 and telegram.registers["0-0:17.0.0"].unit == "A"
    assert telegram.tariff == 2
    # Text messages arrive hex encoded.
    assert dict(telegram.texts) == {
        "0-0:96.1.1": "K8EG004046395507",
        "0-0:96.13.1": "012345678",
        "0-0:96.13.0": "0123456789:;<=>?" * 5,
    }
    assert dict(telegram.mbus) == {
        1: MBusDevice(
            1,
            3,
            "2222ABCD123456789",
            Register(1.001, "m3", "00001.001*m3"),
            winter(2009, 2, 12, 16, 0, 0),
            1,
        )
    }
    assert telegram.power_failure_log == ()
    assert telegram.extra == ()
    check_clean(telegram)


def test_v4_2() -> None:
    telegram = parse(load("v4_2.txt"))
    assert telegram.header == "KFM5KAIFA-METER"
    assert telegram.dsmr_version == "4.2"
    assert telegram.crc == 0x6796 and telegram.crc_verified
    assert telegram.meter_time == winter(2016, 11, 13, 20, 57, 57)
    # Not printable once hex-decoded (0x19 is a control character): kept as sent.
    assert telegram.equipment_id == "3960221976967177082151037881335713"
    check_registers(
        telegram,
        {
            "1-0:1.8.1": "001581.123*kWh",
            "1-0:1.8.2": "001435.706*kWh",
            "1-0:2.8.1": "000000.000*kWh",
            "1-0:2.8.2": "000000.000*kWh",
            "0-0:96.14.0": "0002",
            "1-0:1.7.0": "02.027*kW",
            "1-0:2.7.0": "00.000*kW",
            "0-0:96.7.21": "00015",
            "0-0:96.7.9": "00007",
            "1-0:32.32.0": "00000",
            "1-0:52.32.0": "00000",
            "1-0:72.32.0": "00000",
            "1-0:32.36.0": "00000",
            "1-0:52.36.0": "00000",
            "1-0:72.36.0": "00000",
            "1-0:31.7.0": "000*A",
            "1-0:51.7.0": "006*A",
            "1-0:71.7.0": "002*A",
            "1-0:21.7.0": "00.170*kW",
            "1-0:22.7.0": "00.000*kW",
            "1-0:41.7.0": "01.247*kW",
            "1-0:42.7.0": "00.000*kW",
            "1-0:61.7.0": "00.209*kW",
            "1-0:62.7.0": "00.000*kW",
        },
    )
    assert telegram.value("1-0:1.8.1") == 5_692_042_800
    assert telegram.value("1-0:41.7.0") == 1247
    assert telegram.value("0-0:96.7.21") == 15
    assert dict(telegram.texts) == {
        "1-3:0.2.8": "42",
        "0-0:96.1.1": "3960221976967177082151037881335713",
        "0-0:96.13.1": "",
        "0-0:96.13.0": "",
    }
    # Three events; the last two carry 2000-01-01 placeholder dates, so no end time.
    assert telegram.power_failure_log == (
        PowerFailure(winter(2000, 1, 4, 18, 3, 20), 237126),
        PowerFailure(None, 2147583646),
        PowerFailure(None, 2317482647),
    )
    assert dict(telegram.mbus) == {
        1: MBusDevice(
            1,
            3,
            "4819243993373755377509728609491464",
            Register(981.443, "m3", "00981.443*m3"),
            winter(2016, 11, 29, 20, 0, 0),
            None,
        )
    }
    assert telegram.month_peak is None and telegram.peak_history == ()
    assert telegram.extra == ()
    check_clean(telegram)


V5_REGISTERS = {
    "1-0:1.8.1": "000004.426*kWh",
    "1-0:1.8.2": "000002.399*kWh",
    "1-0:2.8.1": "000002.444*kWh",
    "1-0:2.8.2": "000000.000*kWh",
    "0-0:96.14.0": "0002",
    "1-0:1.7.0": "00.244*kW",
    "1-0:2.7.0": "00.000*kW",
    "0-0:96.7.21": "00013",
    "0-0:96.7.9": "00000",
    "1-0:32.32.0": "00000",
    "1-0:52.32.0": "00000",
    "1-0:72.32.0": "00000",
    "1-0:32.36.0": "00000",
    "1-0:52.36.0": "00000",
    "1-0:72.36.0": "00000",
    "1-0:32.7.0": "0230.0*V",
    "1-0:52.7.0": "0230.0*V",
    "1-0:72.7.0": "0229.0*V",
    "1-0:31.7.0": "0.48*A",
    "1-0:51.7.0": "0.44*A",
    "1-0:71.7.0": "0.86*A",
    "1-0:21.7.0": "00.070*kW",
    "1-0:41.7.0": "00.032*kW",
    "1-0:61.7.0": "00.142*kW",
    "1-0:22.7.0": "00.000*kW",
    "1-0:42.7.0": "00.000*kW",
    "1-0:62.7.0": "00.000*kW",
}


def check_v5_common(telegram: Telegram) -> None:
    """What v5.txt and v5_invalid_gas_timestamp.txt share."""
    assert telegram.header == "ISk5\\2MT382-1000"
    assert telegram.dsmr_version == "5.0"
    assert telegram.meter_time == winter(2017, 1, 2, 19, 20, 2)
    assert telegram.equipment_id == "K8EG004046395507"
    check_registers(telegram, V5_REGISTERS)
    assert telegram.value("1-0:1.8.1") == 15_933_600
    assert telegram.value("1-0:1.8.2") == 8_636_400
    assert telegram.value("1-0:2.8.1") == 8_798_400
    assert telegram.value("1-0:1.7.0") == 244
    assert telegram.value("1-0:32.7.0") == 230
    assert telegram.value("1-0:31.7.0") == 0.48
    assert telegram.tariff == 2
    assert dict(telegram.texts) == {
        "1-3:0.2.8": "50",
        "0-0:96.1.1": "K8EG004046395507",
        "0-0:96.13.0": "",
    }
    # "(0)(0-0:96.7.19)": an empty log.
    assert telegram.power_failure_log == ()
    assert telegram.month_peak is None and telegram.peak_history == ()
    assert telegram.extra == ()
    check_clean(telegram)


def test_v5() -> None:
    telegram = parse(load("v5.txt"))
    assert telegram.crc == 0x6EEE and telegram.crc_verified
    check_v5_common(telegram)
    assert dict(telegram.mbus) == {
        1: MBusDevice(
            1,
            3,
            "2222ABCD123456789",
            Register(0.107, "m3", "00000.107*m3"),
            winter(2017, 1, 2, 16, 10, 5),
            None,
        ),
        2: MBusDevice(2, 3, None, None, None, None),
    }


def test_v5_invalid_gas_timestamp_has_no_reading() -> None:
    telegram = parse(load("v5_invalid_gas_timestamp.txt"))
    assert telegram.crc == 0x90C2 and telegram.crc_verified
    check_v5_common(telegram)
    gas = telegram.mbus[1]
    assert gas.reading is None  # (632525252525S)(00000.000): not a reading, never 0
    assert gas.reading_time is None
    assert gas == MBusDevice(1, 3, "2222ABCD123456789", None, None, None)
    assert telegram.mbus[2] == MBusDevice(2, 3, None, None, None, None)


def test_v5_two_mbus() -> None:
    telegram = parse(load("v5_two_mbus.txt"))
    assert telegram.header == "ISK5\\2M550T-1012"
    assert telegram.dsmr_version == "5.0"
    assert telegram.crc == 0x56DD and telegram.crc_verified
    assert telegram.meter_time == summer(2020, 4, 26, 22, 33, 25)
    assert telegram.equipment_id == "E0044007382246019"
    check_registers(
        telegram,
        {
            "1-0:1.8.1": "002130.115*kWh",
            "1-0:1.8.2": "000245.467*kWh",
            "1-0:2.8.1": "000000.000*kWh",
            "1-0:2.8.2": "000000.000*kWh",
            "0-0:96.14.0": "0001",
            "1-0:1.7.0": "00.111*kW",
            "1-0:2.7.0": "00.000*kW",
            "0-0:96.7.21": "00005",
            "0-0:96.7.9": "00003",
            "1-0:32.32.0": "00001",
            "1-0:52.32.0": "00001",
            "1-0:72.32.0": "00192",
            "1-0:32.36.0": "00001",
            "1-0:52.36.0": "00001",
            "1-0:72.36.0": "00001",
            "1-0:32.7.0": "229.9*V",
            "1-0:52.7.0": "229.2*V",
            "1-0:72.7.0": "222.9*V",
            "1-0:31.7.0": "000*A",
            "1-0:51.7.0": "000*A",
            "1-0:71.7.0": "001*A",
            "1-0:21.7.0": "00.056*kW",
            "1-0:41.7.0": "00.000*kW",
            "1-0:61.7.0": "00.055*kW",
            "1-0:22.7.0": "00.000*kW",
            "1-0:42.7.0": "00.000*kW",
            "1-0:62.7.0": "00.000*kW",
        },
    )
    assert telegram.value("1-0:1.8.1") == 7_668_414_000
    assert telegram.value("1-0:72.32.0") == 192
    assert dict(telegram.texts) == {
        "1-3:0.2.8": "50",
        "0-0:96.1.1": "E0044007382246019",
        "0-0:96.13.0": "",
    }
    assert telegram.power_failure_log == (PowerFailure(winter(2019, 3, 26, 9, 50, 15), 2014),)
    # Channel 1 sends (700101010000W)(00000000): a placeholder, so no reading at all.
    assert telegram.mbus[1] == MBusDevice(1, 3, None, None, None, None)
    assert telegram.mbus[1].reading is None
    assert telegram.mbus[2] == MBusDevice(
        2,
        3,
        "G0039001936990619",
        Register(246.138, "m3", "00246.138*m3"),
        summer(2020, 4, 26, 22, 30, 1),
        None,
    )
    assert len(telegram.mbus) == 2
    assert telegram.month_peak is None and telegram.peak_history == ()
    assert telegram.extra == ()
    check_clean(telegram)


def test_unpadded_crc_heat_meter() -> None:
    telegram = parse(load("unpadded_crc.txt"))
    assert telegram.header == "NWA-WARMTELINK"
    assert telegram.dsmr_version == "5.0"
    assert telegram.crc == 0x0B9F and telegram.crc_verified
    assert telegram.meter_time == winter(2026, 2, 15, 20, 5, 23)
    assert telegram.equipment_id == "ADC3100000158491"  # not ASCII when decoded: kept
    assert dict(telegram.registers) == {}
    assert dict(telegram.texts) == {
        "1-3:0.2.8": "50",
        "0-0:96.1.1": "ADC3100000158491",
        "0-0:96.13.1": "",
        "0-0:96.13.0": "",
    }
    heat = telegram.mbus[1]
    assert heat == MBusDevice(
        1,
        4,
        "621848012D2C0B0C",
        Register(240_860_000_000.0, "J", "240.860*GJ"),
        winter(2026, 2, 15, 20, 5, 23),
        None,
    )
    assert heat.reading is not None and heat.reading.value == 240860000000
    assert len(telegram.mbus) == 1
    assert telegram.power_failure_log == () and telegram.extra == ()
    check_clean(telegram)


# --- Belgium (Fluvius e-MUCS) ------------------------------------------------

FLUVIUS_REGISTERS = {
    "1-0:1.8.1": "000000.034*kWh",
    "1-0:1.8.2": "000015.758*kWh",
    "1-0:2.8.1": "000000.000*kWh",
    "1-0:2.8.2": "000000.011*kWh",
    "1-0:1.4.0": "02.351*kW",
    "0-0:96.14.0": "0001",
    "1-0:1.7.0": "00.000*kW",
    "1-0:2.7.0": "00.000*kW",
    "1-0:21.7.0": "00.000*kW",
    "1-0:41.7.0": "00.000*kW",
    "1-0:61.7.0": "00.000*kW",
    "1-0:22.7.0": "00.000*kW",
    "1-0:42.7.0": "00.000*kW",
    "1-0:62.7.0": "00.000*kW",
    "1-0:32.7.0": "234.7*V",
    "1-0:52.7.0": "234.7*V",
    "1-0:72.7.0": "234.7*V",
    "1-0:31.7.0": "000.00*A",
    "1-0:51.7.0": "000.00*A",
    "1-0:71.7.0": "000.00*A",
    "0-0:96.3.10": "1",
    "0-0:17.0.0": "999.9*kW",
    "1-0:31.4.0": "999*A",
}
FLUVIUS_PEAK_LINE = b"1-0:1.6.0(200509134558S)(02.589*kW)"


def check_fluvius(telegram: Telegram) -> None:
    assert telegram.header == "FLU5\\253769484_A"
    assert telegram.dsmr_version == "5.0"  # from 0-0:96.1.4(50217)
    assert telegram.meter_time == summer(2020, 5, 12, 13, 54, 9)
    assert telegram.equipment_id == "1SAG3101021605"
    check_registers(telegram, FLUVIUS_REGISTERS)
    assert telegram.value("1-0:1.8.2") == 56_728_800
    assert telegram.value("1-0:1.4.0") == 2351
    assert telegram.value("0-0:17.0.0") == 999_900
    assert dict(telegram.texts) == {
        "0-0:96.1.4": "50217",
        "0-0:96.1.1": "1SAG3101021605",
        "0-0:96.13.0": "",
    }
    assert telegram.month_peak == Register(2589.0, "W", "02.589*kW")
    assert telegram.month_peak_time == summer(2020, 5, 9, 13, 45, 58)
    assert telegram.peak_history == (
        MonthPeak(summer(2020, 5, 1, 0, 0, 0), summer(2020, 4, 23, 19, 25, 38), 3695.0),
        MonthPeak(summer(2020, 4, 1, 0, 0, 0), summer(2020, 3, 5, 12, 21, 39), 5980.0),
        MonthPeak(summer(2020, 3, 1, 0, 0, 0), winter(2020, 2, 10, 3, 54, 21), 4318.0),
    )
    assert dict(telegram.mbus) == {
        1: MBusDevice(
            1,
            3,
            "7FLO2119033733",
            Register(112.384, "m3", "00112.384*m3"),
            summer(2020, 5, 12, 13, 45, 58),
            1,
        ),
        2: MBusDevice(
            2,
            7,
            "8SAG1234567890",
            Register(872.234, "m3", "00872.234*m3"),
            summer(2020, 5, 12, 13, 45, 58),
            None,
        ),
    }
    assert telegram.power_failure_log == () and telegram.extra == ()
    check_clean(telegram)


def test_fluvius_v171() -> None:
    data = load("fluvius_v171.txt")
    assert FLUVIUS_PEAK_LINE in data
    telegram = parse(data)
    assert telegram.crc == 0x3AD7 and telegram.crc_verified
    check_fluvius(telegram)


def test_fluvius_month_peak_value_first_layout() -> None:
    """Some Belgian meters send ``1-0:1.6.0(value*kW)(time)``: same meaning."""
    body = content(load("fluvius_v171.txt")).replace(
        FLUVIUS_PEAK_LINE, b"1-0:1.6.0(02.589*kW)(200509134558S)"
    )
    data = seal(body)
    assert data != load("fluvius_v171.txt")
    telegram = parse(data)
    assert telegram.crc_verified and telegram.crc != 0x3AD7
    check_fluvius(telegram)


def test_fluvius_v171_alt() -> None:
    telegram = parse(load("fluvius_v171_alt.txt"))
    assert telegram.header == "FLU5\\253769484_A"
    assert telegram.dsmr_version == "5.0"
    assert telegram.crc == 0xC4B0 and telegram.crc_verified
    assert telegram.meter_time == winter(2023, 11, 2, 12, 15, 48)
    assert telegram.equipment_id == "1SAG3100721326"
    check_registers(
        telegram,
        {
            "1-0:1.8.1": "000301.548*kWh",
            "1-0:1.8.2": "000270.014*kWh",
            "1-0:2.8.1": "000000.005*kWh",
            "1-0:2.8.2": "000000.000*kWh",
            "0-0:96.14.0": "0001",
            "1-0:1.4.0": "00.052*kW",
            "1-0:1.7.0": "00.338*kW",
            "1-0:2.7.0": "00.000*kW",
            "1-0:21.7.0": "00.047*kW",
            "1-0:41.7.0": "00.179*kW",
            "1-0:61.7.0": "00.111*kW",
            "1-0:22.7.0": "00.000*kW",
            "1-0:42.7.0": "00.000*kW",
            "1-0:62.7.0": "00.000*kW",
            "1-0:32.7.0": "232.9*V",
            "1-0:52.7.0": "228.1*V",
            "1-0:72.7.0": "228.1*V",
            "1-0:31.7.0": "000.27*A",
            "1-0:51.7.0": "000.88*A",
            "1-0:71.7.0": "000.52*A",
            "0-0:96.3.10": "1",
            "0-0:17.0.0": "999.9*kW",
            "1-0:31.4.0": "999*A",
        },
    )
    assert telegram.value("1-0:1.8.1") == 1_085_572_800
    assert telegram.value("1-0:2.8.1") == 18_000
    assert dict(telegram.texts) == {
        "0-0:96.1.4": "50217",
        "0-0:96.1.1": "1SAG3100721326",
        "0-0:96.13.0": "",
    }
    assert telegram.month_peak == Register(3064.0, "W", "03.064*kW")
    assert telegram.month_peak_time == winter(2023, 11, 2, 11, 45, 0)
    assert telegram.peak_history == (
        # (632525252525W): the meter's "no peak yet" time.
        MonthPeak(summer(2023, 8, 1, 0, 0, 0), None, 0.0),
        MonthPeak(summer(2023, 9, 1, 0, 0, 0), summer(2023, 8, 31, 18, 15, 0), 1862.0),
        MonthPeak(summer(2023, 10, 1, 0, 0, 0), summer(2023, 9, 10, 18, 30, 0), 4229.0),
        MonthPeak(winter(2023, 11, 1, 0, 0, 0), summer(2023, 10, 16, 13, 0, 0), 4927.0),
    )
    assert dict(telegram.mbus) == {
        1: MBusDevice(
            1,
            3,
            "7FLO2123088027",
            Register(92.287, "m3", "00092.287*m3"),
            winter(2023, 11, 2, 12, 10, 2),
            1,
        ),
        2: MBusDevice(
            2,
            7,
            "8SET0000961173",
            Register(8.579, "m3", "00008.579*m3"),
            winter(2023, 11, 2, 12, 15, 32),
            None,
        ),
    }
    assert telegram.power_failure_log == () and telegram.extra == ()
    check_clean(telegram)


# --- Ireland, Hungary, Austria, Germany --------------------------------------


def test_iskra_ireland_with_0x02_in_header() -> None:
    data = load("iskra_ie.txt")
    assert b"\x02" in data.split(b"\r\n")[0]
    telegram = parse(data)
    assert telegram.header == "ISk5\x02MIE5T-200"
    assert telegram.dsmr_version is None
    assert telegram.crc == 0xAD3B and telegram.crc_verified
    assert telegram.meter_time == summer(2023, 2, 2, 13, 27, 47)
    assert telegram.equipment_id == "09610"  # odd length: not hex, kept as sent
    check_registers(
        telegram,
        {
            "1-0:1.8.1": "000010.181*kWh",
            "1-0:1.8.2": "000010.182*kWh",
            "1-0:2.8.1": "000010.281*kWh",
            "1-0:2.8.2": "000010.282*kWh",
            "0-0:96.14.0": "0001",
            "1-0:1.7.0": "00.170*kW",
            "1-0:2.7.0": "00.270*kW",
            "1-0:21.7.0": "00.217*kW",
            "1-0:41.7.0": "00.417*kW",
            "1-0:61.7.0": "00.617*kW",
            "1-0:22.7.0": "00.227*kW",
            "1-0:42.7.0": "00.427*kW",
            "1-0:62.7.0": "00.627*kW",
            "1-0:32.7.0": "242.5*V",
            "1-0:52.7.0": "241.7*V",
            "1-0:72.7.0": "243.3*V",
            "1-0:31.7.0": "000*A",
            "1-0:51.7.0": "000*A",
            "1-0:71.7.0": "000*A",
            "0-0:96.3.10": "1",
        },
    )
    assert telegram.value("1-0:1.8.1") == 36_651_600
    assert telegram.value("1-0:62.7.0") == 627
    assert dict(telegram.texts) == {
        "1-0:0.0.0": "00000000",
        "0-0:96.1.0": "09610",
        "0-0:96.13.0": "",
    }
    # 0-1:96.1.1() announces channel 1 but says nothing about it.
    assert dict(telegram.mbus) == {1: MBusDevice(1, None, None, None, None, None)}
    assert telegram.power_failure_log == () and telegram.extra == ()
    assert telegram.month_peak is None
    check_clean(telegram)


def test_eon_hungary() -> None:
    telegram = parse(load("v5_eon_hu.txt"))
    assert telegram.header == "SAG5SAG-METER"
    assert telegram.dsmr_version is None
    assert telegram.crc == 0x99DA and telegram.crc_verified
    assert telegram.meter_time == summer(2023, 7, 24, 15, 7, 30)
    assert telegram.equipment_id == "890082200002160"
    check_registers(
        telegram,
        {
            "0-0:96.14.0": "0001",
            "0-0:96.3.10": "1",
            "0-0:17.0.0": "90.000*kW",
            "1-0:1.8.0": "000173.640*kWh",
            "1-0:1.8.1": "000047.719*kWh",
            "1-0:1.8.2": "000125.921*kWh",
            "1-0:1.8.3": "000000.000*kWh",
            "1-0:1.8.4": "000000.000*kWh",
            "1-0:2.8.0": "000627.177*kWh",
            "1-0:2.8.1": "000401.829*kWh",
            "1-0:2.8.2": "000225.348*kWh",
            "1-0:2.8.3": "000000.000*kWh",
            "1-0:2.8.4": "000000.000*kWh",
            "1-0:3.8.0": "000000.123*kvarh",
            "1-0:4.8.0": "000303.131*kvarh",
            "1-0:5.8.0": "000000.668*kvarh",
            "1-0:6.8.0": "000000.071*kvarh",
            "1-0:7.8.0": "000160.487*kvarh",
            "1-0:8.8.0": "000143.346*kvarh",
            "1-0:15.8.0": "000800.817*kWh",
            "1-0:32.7.0": "240.4*V",
            "1-0:52.7.0": "239.1*V",
            "1-0:72.7.0": "241.2*V",
            "1-0:31.7.0": "003*A",
            "1-0:51.7.0": "004*A",
            "1-0:71.7.0": "003*A",
            "1-0:13.7.0": "4.556",
            "1-0:33.7.0": "4.591",
            "1-0:53.7.0": "4.542",
            "1-0:73.7.0": "4.552",
            "1-0:14.7.0": "50.00*Hz",
            "1-0:1.7.0": "00.000*kW",
            "1-0:2.7.0": "02.601*kW",
            "1-0:5.7.0": "00.000*kvar",
            "1-0:6.7.0": "00.000*kvar",
            "1-0:7.7.0": "00.504*kvar",
            "1-0:8.7.0": "00.000*kvar",
            "1-0:31.4.0": "200.00*A",
            "1-0:51.4.0": "200.00*A",
            "1-0:71.4.0": "200.00*A",
        },
    )
    registers = telegram.registers
    # Tariffs 1-4 and the totals.
    assert registers["1-0:1.8.0"] == Register(625_104_000.0, "J", "000173.640*kWh")
    assert registers["1-0:1.8.1"].value == 171_788_400
    assert registers["1-0:1.8.2"].value == 453_315_600
    assert registers["1-0:1.8.3"].value == 0 and registers["1-0:1.8.4"].value == 0
    assert registers["1-0:2.8.0"].value == 2_257_837_200
    assert registers["1-0:15.8.0"].value == 2_882_941_200
    # Reactive energy and power, quadrants Q1-Q4.
    assert registers["1-0:5.8.0"] == Register(668.0, "varh", "000000.668*kvarh")
    assert registers["1-0:8.8.0"].value == 143_346
    assert registers["1-0:7.7.0"] == Register(504.0, "var", "00.504*kvar")
    # Power factor has no unit; frequency is in Hz.
    assert registers["1-0:13.7.0"] == Register(4.556, "", "4.556")
    assert registers["1-0:14.7.0"] == Register(50.0, "Hz", "50.00*Hz")
    assert registers["0-0:17.0.0"].value == 90_000
    assert dict(telegram.texts) == {
        "0-0:42.0.0": "SAG3082200002160",
        "0-0:96.1.0": "890082200002160",
        "0-0:96.13.0": "",
    }
    # 0-0:98.1.0 here is a billing snapshot, not the Belgian peak history: kept as sent.
    assert telegram.peak_history == ()
    assert telegram.extra == (
        ObisLine(
            "0-0:98.1.0",
            "(230701000000S)(000040.777*kWh)(000008.950*kWh)(000031.827*kWh)"
            "(000142.250*kWh)(000111.164*kWh)(000031.086*kWh)(000000.030*kvarh)"
            "(000073.988*kvarh)(000000.205*kvarh)(000000.048*kvarh)(000039.199*kvarh)"
            "(000035.020*kvarh)(000183.027*kWh)(03.564*kW)(02.156*kW)(03.564*kW)"
            "(04.104*kW)(04.104*kW)(03.400*kW)",
        ),
    )
    assert dict(telegram.mbus) == {}
    assert telegram.power_failure_log == () and telegram.month_peak is None
    check_clean(telegram)


def test_sagemcom_t210_austria() -> None:
    telegram = parse(load("sagemcom_t210_d_r.txt"))
    assert telegram.header == "EST5\\253710000_A"
    assert telegram.dsmr_version == "5.0"
    assert telegram.crc == 0x7EF9 and telegram.crc_verified
    assert telegram.meter_time == summer(2022, 10, 6, 15, 50, 14)
    assert telegram.equipment_id is None
    check_registers(
        telegram,
        {
            "1-0:1.8.0": "006545766*Wh",
            "1-0:1.8.1": "005017120*Wh",
            "1-0:1.8.2": "001528646*Wh",
            "1-0:1.7.0": "000000286*W",
            "1-0:2.8.0": "000000058*Wh",
            "1-0:2.8.1": "000000000*Wh",
            "1-0:2.8.2": "000000058*Wh",
            "1-0:2.7.0": "000000000*W",
            "1-0:3.8.0": "000000747*varh",
            "1-0:3.8.1": "000000000*varh",
            "1-0:3.8.2": "000000747*varh",
            "1-0:3.7.0": "000000000*var",
            "1-0:4.8.0": "003897726*varh",
            "1-0:4.8.1": "002692848*varh",
            "1-0:4.8.2": "001204878*varh",
            "1-0:4.7.0": "000000166*var",
        },
    )
    assert telegram.value("1-0:1.8.0") == 23_564_757_600
    assert telegram.value("1-0:4.8.0") == 3_897_726
    assert telegram.registers["1-0:4.7.0"].unit == "var"
    assert dict(telegram.texts) == {"1-3:0.2.8": "50"}
    assert dict(telegram.mbus) == {}
    assert telegram.extra == () and telegram.power_failure_log == ()
    check_clean(telegram)


def test_easymeter_q3da() -> None:
    data = load("esy5q3da1004_v304.txt")
    telegram = parse(data)
    assert telegram.header == "ESY5Q3DA1004 V3.04"
    assert telegram.dsmr_version is None
    assert telegram.crc is None and not telegram.crc_verified
    assert telegram.meter_time is None
    assert telegram.equipment_id == "1ESY1336001560"
    # Codes arrive with a *255 suffix; seven decimals stay exact.
    check_registers(
        telegram,
        {
            "1-0:1.8.0": "00032549.5061662*kWh",
            "1-0:21.7.0": "000557.29*W",
            "1-0:41.7.0": "000521.62*W",
            "1-0:61.7.0": "000609.30*W",
            "1-0:1.7.0": "001688.21*W",
        },
    )
    assert telegram.value("1-0:1.8.0") == 117_178_222_198.32
    assert telegram.value("1-0:1.7.0") == 1688.21
    assert dict(telegram.texts) == {
        "1-0:0.0.0": "1336001560",
        "1-0:96.5.5": "80",
        "0-0:96.1.255": "1ESY1336001560",
    }
    assert dict(telegram.mbus) == {} and telegram.extra == ()
    check_clean(telegram)
    # What follows the "!" line is not part of the telegram.
    assert telegram.raw == data[: data.index(b"\r\n!\r\n") + 5]


def test_easymeter_q3db_with_0xff_filler() -> None:
    data = load("esy5q3db1024_v304.txt")
    assert data.rstrip(b"\r\n").endswith(b"\xff" * 16)
    telegram = parse(data)
    assert telegram.header == "ESY5Q3DB1024 V3.04"
    assert telegram.dsmr_version is None and telegram.crc is None
    assert telegram.meter_time is None
    assert telegram.equipment_id == "1ESY1313002565"
    check_registers(
        telegram,
        {
            "1-0:1.8.0": "00052185.7825309*kWh",
            "1-0:2.8.0": "00019949.3221493*kWh",
            "1-0:21.7.0": "000747.85*W",
            "1-0:41.7.0": "000737.28*W",
            "1-0:61.7.0": "000639.73*W",
            "1-0:1.7.0": "002124.86*W",
        },
    )
    assert telegram.value("1-0:1.8.0") == 187_868_817_111.24
    assert telegram.value("1-0:2.8.0") == 71_817_559_737.48
    assert dict(telegram.texts) == {
        "1-0:0.0.0": "0272031312565",
        "1-0:96.5.5": "80",
        "0-0:96.1.255": "1ESY1313002565",
    }
    check_clean(telegram)


# --- synthesized dialects ----------------------------------------------------

SWEDEN = (
    b"/ELL5\\253833635_A\r\n"
    b"\r\n"
    b"1-3:0.2.8(50)\r\n"
    b"0-0:1.0.0(210217184019W)\r\n"
    b"1-0:1.8.0(00006678.394*kWh)\r\n"
    b"1-0:2.8.0(00000000.000*kWh)\r\n"
    b"1-0:3.8.0(00000021.988*kvarh)\r\n"
    b"1-0:4.8.0(00001020.971*kvarh)\r\n"
    b"1-0:1.7.0(0001.727*kW)\r\n"
    b"1-0:2.7.0(0000.000*kW)\r\n"
    b"1-0:3.7.0(0000.000*kvar)\r\n"
    b"1-0:4.7.0(0000.309*kvar)\r\n"
    b"1-0:21.7.0(0001.023*kW)\r\n"
    b"1-0:41.7.0(0000.350*kW)\r\n"
    b"1-0:61.7.0(0000.353*kW)\r\n"
    b"1-0:22.7.0(0000.000*kW)\r\n"
    b"1-0:42.7.0(0000.000*kW)\r\n"
    b"1-0:62.7.0(0000.000*kW)\r\n"
    b"1-0:23.7.0(0000.000*kvar)\r\n"
    b"1-0:24.7.0(0000.009*kvar)\r\n"
    b"1-0:43.7.0(0000.000*kvar)\r\n"
    b"1-0:44.7.0(0000.161*kvar)\r\n"
    b"1-0:63.7.0(0000.000*kvar)\r\n"
    b"1-0:64.7.0(0000.138*kvar)\r\n"
    b"1-0:32.7.0(240.3*V)\r\n"
    b"1-0:52.7.0(240.1*V)\r\n"
    b"1-0:72.7.0(241.3*V)\r\n"
    b"1-0:31.7.0(004.2*A)\r\n"
    b"1-0:51.7.0(001.6*A)\r\n"
    b"1-0:71.7.0(001.7*A)\r\n"
    b"!"
)


def test_sweden_per_phase_reactive_power() -> None:
    telegram = parse(seal(SWEDEN))
    assert telegram.header == "ELL5\\253833635_A"
    assert telegram.dsmr_version == "5.0"
    assert telegram.crc_verified
    assert telegram.meter_time == winter(2021, 2, 17, 18, 40, 19)
    assert telegram.equipment_id is None
    check_registers(
        telegram,
        {
            "1-0:1.8.0": "00006678.394*kWh",
            "1-0:2.8.0": "00000000.000*kWh",
            "1-0:3.8.0": "00000021.988*kvarh",
            "1-0:4.8.0": "00001020.971*kvarh",
            "1-0:1.7.0": "0001.727*kW",
            "1-0:2.7.0": "0000.000*kW",
            "1-0:3.7.0": "0000.000*kvar",
            "1-0:4.7.0": "0000.309*kvar",
            "1-0:21.7.0": "0001.023*kW",
            "1-0:41.7.0": "0000.350*kW",
            "1-0:61.7.0": "0000.353*kW",
            "1-0:22.7.0": "0000.000*kW",
            "1-0:42.7.0": "0000.000*kW",
            "1-0:62.7.0": "0000.000*kW",
            "1-0:23.7.0": "0000.000*kvar",
            "1-0:24.7.0": "0000.009*kvar",
            "1-0:43.7.0": "0000.000*kvar",
            "1-0:44.7.0": "0000.161*kvar",
            "1-0:63.7.0": "0000.000*kvar",
            "1-0:64.7.0": "0000.138*kvar",
            "1-0:32.7.0": "240.3*V",
            "1-0:52.7.0": "240.1*V",
            "1-0:72.7.0": "241.3*V",
            "1-0:31.7.0": "004.2*A",
            "1-0:51.7.0": "001.6*A",
            "1-0:71.7.0": "001.7*A",
        },
    )
    registers = telegram.registers
    assert registers["1-0:24.7.0"] == Register(9.0, "var", "0000.009*kvar")
    assert registers["1-0:44.7.0"].value == 161 and registers["1-0:44.7.0"].unit == "var"
    assert registers["1-0:64.7.0"].value == 138
    assert registers["1-0:3.8.0"] == Register(21_988.0, "varh", "00000021.988*kvarh")
    assert registers["1-0:4.8.0"].value == 1_020_971
    assert registers["1-0:31.7.0"].value == 4.2
    check_clean(telegram)


LUXEMBOURG = (
    b"/Lux5\\253833635_D\r\n"
    b"\r\n"
    b"1-3:0.2.8(42)\r\n"
    b"0-0:1.0.0(190711154536S)\r\n"
    b"0-0:42.0.0(534D5230303132333435363738)\r\n"
    b"1-0:1.8.0(000215.305*kWh)\r\n"
    b"1-0:2.8.0(000001.017*kWh)\r\n"
    b"1-0:3.8.0(000003.012*kvarh)\r\n"
    b"1-0:4.8.0(000064.109*kvarh)\r\n"
    b"1-0:1.7.0(00.186*kW)\r\n"
    b"1-0:2.7.0(00.000*kW)\r\n"
    b"1-0:3.7.0(00.000*kvar)\r\n"
    b"1-0:4.7.0(00.091*kvar)\r\n"
    b"0-0:17.0.0(999.9*kVA)\r\n"
    b"0-0:96.3.10(1)\r\n"
    b"0-0:96.7.21(00002)\r\n"
    b"0-0:96.7.9(00001)\r\n"
    b"1-0:99.97.0(0)()\r\n"
    b"1-0:32.7.0(232.4*V)\r\n"
    b"1-0:31.7.0(001*A)\r\n"
    b"0-0:96.13.0(48656C6C6F20503120776F726C6421)\r\n"
    b"!"
)


def test_luxembourg_smarty_plain_text() -> None:
    telegram = parse(seal(LUXEMBOURG))
    assert telegram.header == "Lux5\\253833635_D"
    assert telegram.dsmr_version == "4.2"
    assert telegram.crc_verified
    assert telegram.meter_time == summer(2019, 7, 11, 15, 45, 36)
    assert telegram.equipment_id == "SMR0012345678"  # 0-0:42.0.0: no 0-0:96.1.1 sent
    check_registers(
        telegram,
        {
            "1-0:1.8.0": "000215.305*kWh",
            "1-0:2.8.0": "000001.017*kWh",
            "1-0:3.8.0": "000003.012*kvarh",
            "1-0:4.8.0": "000064.109*kvarh",
            "1-0:1.7.0": "00.186*kW",
            "1-0:2.7.0": "00.000*kW",
            "1-0:3.7.0": "00.000*kvar",
            "1-0:4.7.0": "00.091*kvar",
            "0-0:17.0.0": "999.9*kVA",
            "0-0:96.3.10": "1",
            "0-0:96.7.21": "00002",
            "0-0:96.7.9": "00001",
            "1-0:32.7.0": "232.4*V",
            "1-0:31.7.0": "001*A",
        },
    )
    assert telegram.value("1-0:1.8.0") == 775_098_000
    assert telegram.value("1-0:2.8.0") == 3_661_200
    assert telegram.registers["1-0:3.8.0"] == Register(3012.0, "varh", "000003.012*kvarh")
    assert telegram.registers["1-0:4.8.0"].value == 64_109
    assert telegram.registers["0-0:17.0.0"] == Register(999_900.0, "VA", "999.9*kVA")
    assert dict(telegram.texts) == {
        "1-3:0.2.8": "42",
        "0-0:42.0.0": "SMR0012345678",
        "0-0:96.13.0": "Hello P1 world!",
    }
    assert telegram.power_failure_log == ()  # (0)(): empty
    assert dict(telegram.mbus) == {}
    check_clean(telegram)


def test_luxembourg_smarty_real_telegram() -> None:
    """A real Smarty meter (CRC 80F6): apparent power, a limiter threshold in kVA, the
    two-valued fuse supervision line, M-Bus breaker states, the id on 0-0:42.0.0 and
    empty message lines 96.13.2-5: all known, none unknown."""
    telegram = parse(load("smarty_lux.txt"))
    assert telegram.header == "Lux5\\253663629_D"
    assert telegram.dsmr_version == "4.2"
    assert telegram.crc == 0x80F6 and telegram.crc_verified
    assert telegram.meter_time == summer(2026, 4, 3, 17, 54, 31)
    assert telegram.equipment_id == "SAG1030700012701"  # 0-0:42.0.0, hex-decoded
    check_registers(
        telegram,
        {
            "1-0:1.8.0": "000273.764*kWh",
            "1-0:2.8.0": "112743.030*kWh",
            "1-0:3.8.0": "000462.590*kvarh",
            "1-0:4.8.0": "007109.230*kvarh",
            "1-0:1.7.0": "00.000*kW",
            "1-0:2.7.0": "00.897*kW",
            "1-0:3.7.0": "00.000*kvar",
            "1-0:4.7.0": "00.154*kvar",
            "0-0:17.0.0": "027.6*kVA",
            "1-0:9.7.0": "00.000*kVA",
            "1-0:10.7.0": "00.913*kVA",
            "1-1:31.4.0": "040*A",
            "1-1:31.4.0[lower]": "-040*A",
            "0-0:96.3.10": "1",
            "0-1:96.3.10": "0",
            "0-2:96.3.10": "0",
            "0-0:96.7.21": "01067",
            "1-0:32.32.0": "00014",
            "1-0:52.32.0": "00015",
            "1-0:72.32.0": "00012",
            "1-0:32.36.0": "00000",
            "1-0:52.36.0": "00000",
            "1-0:72.36.0": "00000",
            "1-0:32.7.0": "231.0*V",
            "1-0:52.7.0": "229.0*V",
            "1-0:72.7.0": "230.0*V",
            "1-0:31.7.0": "001*A",
            "1-0:51.7.0": "001*A",
            "1-0:71.7.0": "001*A",
            "1-0:21.7.0": "00.000*kW",
            "1-0:41.7.0": "00.000*kW",
            "1-0:61.7.0": "00.000*kW",
            "1-0:22.7.0": "00.319*kW",
            "1-0:42.7.0": "00.300*kW",
            "1-0:62.7.0": "00.277*kW",
            "1-0:23.7.0": "00.000*kvar",
            "1-0:43.7.0": "00.000*kvar",
            "1-0:63.7.0": "00.000*kvar",
            "1-0:24.7.0": "00.046*kvar",
            "1-0:44.7.0": "00.065*kvar",
            "1-0:64.7.0": "00.041*kvar",
        },
    )
    assert telegram.registers["0-0:17.0.0"] == Register(27_600.0, "VA", "027.6*kVA")
    assert telegram.value("1-0:10.7.0") == 913.0
    assert telegram.value("1-1:31.4.0") == 40.0
    assert telegram.value("1-1:31.4.0[lower]") == -40.0
    assert dict(telegram.texts) == {
        "1-3:0.2.8": "42",
        "0-0:42.0.0": "SAG1030700012701",
        "0-0:96.13.0": "",
        "0-0:96.13.2": "",
        "0-0:96.13.3": "",
        "0-0:96.13.4": "",
        "0-0:96.13.5": "",
    }
    assert dict(telegram.mbus) == {
        1: MBusDevice(
            1, 3, "FLO182370120350", base("14239.771*m3"), summer(2026, 4, 3, 17, 45, 42), 1
        ),
    }
    check_clean(telegram)


def test_fuse_supervision_line_needs_both_values() -> None:
    """``1-1:31.4.0`` with one value is a malformed line, not a half-read threshold."""
    telegram = parse(seal(b"/Lux5\\2\r\n\r\n1-1:31.4.0(040*A)\r\n1-0:1.7.0(00.100*kW)\r\n!"))
    assert [issue.reason for issue in telegram.malformed] == [
        "expected an upper and a lower value, got 1"
    ]
    assert "1-1:31.4.0" not in telegram.registers
    assert telegram.value("1-0:1.7.0") == 100.0


# --- exactness and cross-checks -------------------------------------------


def test_kwh_conversion_is_exact_through_a_telegram() -> None:
    telegram = parse(seal(b"/TST5\\2EXACT\r\n\r\n1-0:1.8.1(000687.138*kWh)\r\n!"))
    register = telegram.registers["1-0:1.8.1"]
    assert register.value == 2473696800
    assert register.value == 2_473_696_800.0
    assert register.unit == "J" and register.raw == "000687.138*kWh"
    # Naive float arithmetic (kWh * 3600 * 1000) would be off: 2473696800.0000005.
    assert float("000687.138") * 3600 * 1000 != 2473696800


@pytest.mark.parametrize(
    "name",
    [
        "esy5q3da1004_v304.txt",
        "esy5q3db1024_v304.txt",
        "fluvius_v171.txt",
        "fluvius_v171_alt.txt",
        "iskra_ie.txt",
        "sagemcom_t210_d_r.txt",
        "unpadded_crc.txt",
        "v2_2.txt",
        "v3.txt",
        "v4_2.txt",
        "v5.txt",
        "v5_eon_hu.txt",
        "v5_invalid_gas_timestamp.txt",
        "v5_two_mbus.txt",
    ],
)
def test_fixture_decodes_cleanly_and_keeps_its_bytes(name: str) -> None:
    data = load(name)
    telegram = parse(data)
    check_clean(telegram)
    assert data.startswith(telegram.raw)
    assert telegram.raw.startswith(b"/")
    # Every register's raw text is exactly what the line sent.
    for code, register in telegram.registers.items():
        suffix = b"*255" if name.startswith("esy") else b""
        line = code.encode() + suffix + b"(" + register.raw.encode() + b")\r\n"
        assert line in data, (code, register.raw)
