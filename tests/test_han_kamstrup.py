"""Kamstrup variants: the meter type a list names decides the fixed scalers.

Real frames from amsreader-firmware (see tests/fixtures/han/README.md): a current-
transformer (CT) meter in Denmark (issue #216) and a Swedish meter (issue #239).
Each expected number is the frame's hex field times the scaler, read off by hand.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from p1_exporter.core.cosem import telegram_from_apdu
from p1_exporter.core.han_stream import HanStream
from p1_exporter.core.telegram import Telegram

HAN = Path(__file__).parent / "fixtures" / "han"
WH = 3600
WITHHELD = "sent without scaler and unit: not exported"


def decoded(name: str) -> Telegram:
    """The one telegram a fixture's frame gives through the HAN stream (FCS checked)."""
    results = HanStream().feed((HAN / name).read_bytes())
    assert [r.result for r in results] == ["ok"], [str(r.error) for r in results]
    telegram = results[0].telegram
    assert telegram is not None
    return telegram


def withheld(telegram: Telegram) -> dict[str, str]:
    return {line.obis: line.raw for line in telegram.extra}


def ct_list_naming_type(meter_type: bytes) -> Telegram:
    """The CT frame's APDU with a meter type element added after its list version.

    No public frame of a meter naming a 685... type was found; the Danish list of the CT
    meter names none, so the element (code 1.1.96.1.1.255, an 18-character visible-string
    as in Kamstrup's own examples) is inserted and the list's count raised by one pair.
    """
    frame = (HAN / "kamstrup_dk_ct.hdlc").read_bytes()
    apdu = frame[8:-3]  # flag, format (2), addresses (2), control, HCS (2) | FCS, flag
    head = b"\x02\x41\x0a\x0eKamstrup_V0001"
    assert apdu.count(head) == 1
    element = bytes.fromhex("09 06 01 01 60 01 01 FF 0A 12") + meter_type
    return telegram_from_apdu(apdu.replace(head, b"\x02\x43" + head[2:] + element), apdu, "HDLC")


def test_ct_frame_without_type_reads_current_in_ma_as_its_own_power_says() -> None:
    """The Danish list names no meter type, so CT (mA) and direct (10 mA) are told apart by
    the frame itself: the phases' U x I must match the apparent power of its P and Q."""
    telegram = decoded("kamstrup_dk_ct.hdlc")
    got = {code: (reg.value, reg.unit) for code, reg in telegram.registers.items()}
    assert got["1-0:2.7.0"] == (0x0A19, "W")  # 2585 W exported
    assert got["1-0:3.7.0"] == (0xF784, "var")  # 63364 var
    assert got["1-0:32.7.0"] == (0xE9, "V")  # 233 V
    assert got["1-0:1.8.0"] == (0x00C2D170 * 10 * WH, "J")  # 12767600 x 10 Wh (the doubt: README)
    assert got["1-0:2.8.0"] == (0x013BD295 * 10 * WH, "J")  # 20697749 x 10 Wh
    # 233 V x (90.999 + 93.955 + 92.645) A = 64.7 kVA against hypot(2585, 63364) = 63.4 kVA;
    # in 10 mA it would be 647 kVA, ten times what the meter measures.
    assert telegram.value("1-0:31.7.0") == pytest.approx(0x016377 / 1000)  # 90999 mA
    assert telegram.value("1-0:51.7.0") == pytest.approx(0x016F03 / 1000)  # 93955 mA
    assert telegram.value("1-0:71.7.0") == pytest.approx(0x0169E5 / 1000)  # 92645 mA
    assert {got[f"1-0:{c}.7.0"][1] for c in (31, 51, 71)} == {"A"}
    assert not {"1-0:31.7.0", "1-0:51.7.0", "1-0:71.7.0"} & set(withheld(telegram))
    assert telegram.equipment_id is None  # the Danish list's meter number is an integer


#: A direct single-phase Kamstrup in Denmark: the Danish list (no meter type) as the
#: AmsReader firmware printed it after decrypting (amsreader-firmware issue #517, kept in
#: that project's test/payloads/kamstrup/gh517-2.hex at a88a0be); the APDU, no HDLC layer.
DK_DIRECT = bytes.fromhex(
    "0F 00 00 00 00 0C 07 E7 04 06 04 0D 31 32 FF 80 00 80 02 25 0A 0E 4B 61"
    "6D 73 74 72 75 70 5F 56 30 30 30 31 09 06 01 01 01 08 00 FF 06 00 14 A5"
    "25 09 06 01 01 02 08 00 FF 06 00 00 00 00 09 06 01 01 03 08 00 FF 06 00"
    "00 30 E1 09 06 01 01 04 08 00 FF 06 00 08 E4 E4 09 06 01 01 00 00 01 FF"
    "06 01 4E 99 59 09 06 01 01 01 07 00 FF 06 00 00 01 E5 09 06 01 01 02 07"
    "00 FF 06 00 00 00 00 09 06 01 01 03 07 00 FF 06 00 00 00 00 09 06 01 01"
    "04 07 00 FF 06 00 00 00 AC 09 06 00 01 01 00 00 FF 09 0C 07 E7 04 06 04"
    "0D 31 32 FF 80 00 80 09 06 01 01 20 07 00 FF 12 00 E8 09 06 01 01 1F 07"
    "00 FF 06 00 00 00 F4 09 06 01 01 15 07 00 FF 06 00 00 01 E5 09 06 01 01"
    "21 07 00 FF 12 00 5E 09 06 01 01 0D 07 00 FF 12 00 5E 09 06 01 01 16 07"
    "00 FF 06 00 00 00 00 09 06 01 01 16 08 00 FF 06 00 00 00 00 09 06 01 01"
    "15 08 00 FF 06 00 14 A5 25"
)


def dk_direct(*replace: tuple[bytes, bytes]) -> Telegram:
    """DK_DIRECT with each (old, new) byte run replaced (each old run occurs once)."""
    apdu = DK_DIRECT
    for old, new in replace:
        assert apdu.count(old) == 1
        apdu = apdu.replace(old, new)
    return telegram_from_apdu(apdu, apdu, "HDLC")


def test_direct_frame_without_type_reads_current_in_10_ma_as_its_own_power_says() -> None:
    telegram = dk_direct()
    assert telegram.value("1-0:1.7.0") == 0x01E5  # 485 W
    assert telegram.value("1-0:4.7.0") == 0xAC  # 172 var exported
    assert telegram.value("1-0:32.7.0") == 0xE8  # 232 V
    # 232 V x 2.44 A = 566 VA against hypot(485, 172) = 515 VA; in mA it would be 57 VA,
    # too little to carry 485 W.
    assert telegram.value("1-0:31.7.0") == pytest.approx(0xF4 / 100)  # 244 x 10 mA
    assert telegram.registers["1-0:31.7.0"].unit == "A"


def test_a_frame_that_cannot_tell_withholds_current() -> None:
    """Variants of the real frame above (values replaced in the test): with too little load,
    or with figures that fit neither scaler, the current is kept as sent, not exported."""
    power = bytes.fromhex("0906010101 0700FF06000001E5".replace(" ", ""))
    reactive = bytes.fromhex("0906010104 0700FF06000000AC".replace(" ", ""))
    idle = dk_direct(
        (power, power[:-4] + (90).to_bytes(4, "big")),
        (reactive, reactive[:-4] + (0).to_bytes(4, "big")),
    )
    assert idle.value("1-0:1.7.0") == 90  # 90 VA: under the 200 VA the check needs
    assert idle.value("1-0:31.7.0") is None
    assert withheld(idle)["1-0:31.7.0"] == f"({0xF4}) {WITHHELD}"
    # 20 kW with 2.44 A at 232 V: 566 VA or 57 VA, and neither is 20 kVA
    odd = dk_direct((power, power[:-4] + (20_000).to_bytes(4, "big")))
    assert odd.value("1-0:1.7.0") == 20_000
    assert odd.value("1-0:31.7.0") is None
    assert withheld(odd)["1-0:31.7.0"] == f"({0xF4}) {WITHHELD}"


def test_ct_type_reads_current_in_ma_and_withholds_energy() -> None:
    telegram = ct_list_naming_type(b"685" + b"0" * 15)
    assert telegram.value("1-0:31.7.0") == pytest.approx(0x016377 / 1000)  # 90999 mA
    assert telegram.value("1-0:51.7.0") == pytest.approx(0x016F03 / 1000)  # 93955 mA
    assert telegram.value("1-0:71.7.0") == pytest.approx(0x0169E5 / 1000)  # 92645 mA
    assert telegram.registers["1-0:31.7.0"].unit == "A"
    assert telegram.value("1-0:2.7.0") == 0x0A19  # power and voltage as for direct meters
    assert telegram.value("1-0:32.7.0") == 0xE9
    for code in ("1-0:1.8.0", "1-0:2.8.0", "1-0:3.8.0", "1-0:4.8.0"):
        assert telegram.value(code) is None  # a CT meter's energy unit is not known
    lines = withheld(telegram)
    assert lines["1-0:1.8.0"] == f"({0x00C2D170}) {WITHHELD}"
    assert lines["1-0:4.8.0"] == f"({0x0001351D}) {WITHHELD}"
    assert telegram.texts["1-0:96.1.1"] == "685" + "0" * 15


def test_ct_frame_agrees_with_itself_only_in_ma() -> None:
    """Why mA: the frame's own power factor (0.01 steps, 1.1.33.7.0 and so on) is its power
    over voltage times current with currents in mA, and 10 times off in 10 mA."""
    telegram = ct_list_naming_type(b"685" + b"0" * 15)
    lines = withheld(ct_list_naming_type(b"684" + b"0" * 15))
    assert "1-0:31.7.0" not in lines  # a direct type reads the same currents in 10 mA
    for current, power, factor in (("31", "22", "33"), ("51", "42", "53"), ("71", "62", "73")):
        amps = telegram.value(f"1-0:{current}.7.0")
        volts = telegram.value(f"1-0:{int(current) + 1}.7.0")
        assert amps is not None and volts is not None
        watts = int(withheld(telegram)[f"1-0:{power}.7.0"].split(")")[0][1:])  # export, W
        sent = int(withheld(telegram)[f"1-0:{factor}.7.0"].split(")")[0][1:]) / 100
        assert 0.8 < sent / (watts / (volts * amps)) < 1.25  # 2 / 2.1, 5 / 5.2, 4 / 4.7
    # and the sum of U x I (64.7 kVA) is the apparent power of P and Q (63.4 kVA)
    total = sum(
        (telegram.value(f"1-0:{c + 1}.7.0") or 0) * (telegram.value(f"1-0:{c}.7.0") or 0)
        for c in (31, 51, 71)
    )
    assert total == pytest.approx((0x0A19**2 + 0xF784**2) ** 0.5, rel=0.05)


def test_swedish_meter_keeps_the_direct_scalers() -> None:
    """Type 6841131BN245101092 is a direct meter: 10 mA and 10 Wh, as Kamstrup's spec says.

    Issue #239 reports this meter's energy 10 times too high, but no reading of its display
    is public and the type does not tell it from Norwegian meters (see the fixture README).
    """
    list1 = decoded("kamstrup_se_list1.hdlc")
    assert list1.texts["1-0:96.1.1"] == "6841131BN245101092"
    assert list1.value("1-0:1.7.0") == 0x0DAF  # 3503 W
    assert list1.value("1-0:31.7.0") == pytest.approx(0x0245 / 100)  # 581 x 10 mA
    assert list1.value("1-0:32.7.0") == 0xF3  # 243 V
    list2 = decoded("kamstrup_se_list2.hdlc")
    assert list2.value("1-0:1.7.0") == 0x08DD  # 2269 W
    assert list2.value("1-0:1.8.0") == 0x01E87F4E * 10 * WH  # 32014158 x 10 Wh
    assert list2.value("1-0:4.8.0") == 0x00106023 * 10  # 1073187 x 10 varh
    assert list2.extra == ()


def test_a_voltage_the_fixed_scaler_makes_implausible_is_withheld() -> None:
    """The Swedish frame with L1's 243 V replaced by 24300, what a meter configured for
    0.01 V sends (amsreader-firmware issue #970): 24300 V is no household's voltage."""
    frame = (HAN / "kamstrup_se_list1.hdlc").read_bytes()
    apdu = frame[8:-3]  # flag, format (2), addresses (2), control, HCS (2) | FCS, flag
    volts = bytes.fromhex("09 06 01 01 20 07 00 FF 12 00 F3")  # 1.1.32.7.0.255, 243
    assert apdu.count(volts) == 1
    telegram = telegram_from_apdu(
        apdu.replace(volts, volts[:-2] + (24300).to_bytes(2, "big")), apdu, "HDLC"
    )
    assert telegram.value("1-0:32.7.0") is None
    assert withheld(telegram)["1-0:32.7.0"] == (
        "(24300) implausible with Kamstrup's fixed scaler 0: not exported"
    )
    assert telegram.value("1-0:31.7.0") == pytest.approx(0x0245 / 100)  # the rest as sent
    assert telegram.value("1-0:52.7.0") == decoded("kamstrup_se_list1.hdlc").value("1-0:52.7.0")
