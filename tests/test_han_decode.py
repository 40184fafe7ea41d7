"""HAN meters: real HDLC and M-Bus frames decode to the values their bytes carry.

Each expected value is read off the frame's hex by hand (value x 10^scaler, in
the base unit), not taken from the decoder.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from p1_exporter.core.cipher import Keys
from p1_exporter.core.cosem import cosem_time, obis_key, telegram_from_apdu
from p1_exporter.core.han_framing import fcs16, fcs16_python, hdlc_frame, mbus_frames
from p1_exporter.core.han_stream import HanStream
from p1_exporter.core.stream import Outcome
from p1_exporter.core.telegram import Telegram

pytest.importorskip("cryptography")

HAN = Path(__file__).parent / "fixtures" / "han"
EVN_KEY = Keys(bytes.fromhex("36C66639E48A8CA4D6BC8B282A793BBB"))
SAGEMCOM_KEY = Keys(bytes.fromhex("A89AE6C225E45130298B3CC3F4D23463"))
WH = 3600


def assert_value(got: tuple[float, str], expected: float, unit: str) -> None:
    """A decoded value in its unit, equal to ``expected`` up to float rounding."""
    assert got[1] == unit
    assert got[0] == pytest.approx(expected)


def outcomes(data: bytes, keys: Keys | None = None, chunk: int = 0) -> list[Outcome]:
    stream = HanStream(keys)
    if chunk:
        result = []
        for start in range(0, len(data), chunk):
            result += stream.feed(data[start : start + chunk])
        return result + stream.flush()
    return stream.feed(data) + stream.flush()


def one(name: str, keys: Keys | None = None) -> Telegram:
    results = outcomes((HAN / name).read_bytes(), keys)
    assert [r.result for r in results] == ["ok"], [str(r.error) for r in results]
    telegram = results[0].telegram
    assert telegram is not None
    return telegram


def values(telegram: Telegram) -> dict[str, tuple[float, str]]:
    return {code: (reg.value, reg.unit) for code, reg in telegram.registers.items()}


def test_fcs16_is_crc16_x25_in_both_implementations() -> None:
    assert fcs16_python(b"123456789") == 0x906E  # the catalogued check value
    assert fcs16(b"123456789") == 0x906E


def test_aidon_list1() -> None:
    telegram = one("aidon_no_list1.hdlc")
    assert values(telegram) == {"1-0:1.7.0": (0x1D3A, "W")}


def test_aidon_sweden_list_with_scalers() -> None:
    telegram = one("aidon_se.hdlc")
    got = values(telegram)
    assert got["1-0:1.7.0"] == (0x462, "W")
    assert got["1-0:3.7.0"] == (0x5E3, "var")
    assert_value(got["1-0:51.7.0"], 0x4B / 10, "A")
    assert_value(got["1-0:32.7.0"], 0x903 / 10, "V")
    assert_value(got["1-0:52.7.0"], 0x9C3 / 10, "V")
    assert got["1-0:41.7.0"] == (0x462, "W")
    assert got["1-0:1.8.0"] == (0x995986 * WH, "J")  # Wh -> J, exact
    assert got["1-0:2.8.0"] == (8 * WH, "J")
    assert got["1-0:3.8.0"] == (0x64ED4B, "varh")
    assert len(got) == 26  # 27 elements: 26 registers and the clock
    assert telegram.meter_time is None  # deviation 0x8000: local time of unknown zone
    assert "list of structures" in telegram.header


def test_kamstrup_list1_fixed_scalers_and_channel_one() -> None:
    telegram = one("kamstrup_list1.hdlc")
    got = values(telegram)
    assert got["1-0:1.7.0"] == (0x33A, "W")
    assert got["1-0:4.7.0"] == (0xB0, "var")
    assert_value(got["1-0:31.7.0"], 0xED / 100, "A")  # 10 mA steps
    assert got["1-0:32.7.0"] == (0xE8, "V")
    assert telegram.equipment_id == "5706567326590407"
    assert telegram.texts["1-0:96.1.1"] == "6841138BN245101090"
    assert "Kamstrup" in telegram.header


@pytest.mark.parametrize(
    ("name", "count", "power", "l1_current_ma", "l1_decivolt"),
    [
        ("kaifa_no_list2.hdlc", 10, 0xD62, 0x291A, 0x915),
        ("kaifa_no_list3.hdlc", 14, 0xD62, 0x2925, 0x915),
        ("kaifa_no_list2_1phase.hdlc", 6, 0x543, 0x1775, 0x92E),
        ("kaifa_no_list3_1phase.hdlc", 10, 0x70A, 0x1EFB, 0x924),
    ],
)
def test_kaifa_norway_position_decides_the_code(
    name: str, count: int, power: int, l1_current_ma: int, l1_decivolt: int
) -> None:
    telegram = one(name)
    got = values(telegram)
    assert len(got) == count
    assert got["1-0:1.7.0"] == (power, "W")
    assert_value(got["1-0:31.7.0"], l1_current_ma / 1000, "A")
    assert_value(got["1-0:32.7.0"], l1_decivolt / 10, "V")
    assert telegram.texts["1-0:0.2.129"] == "KFM_001"
    assert telegram.equipment_id is not None and telegram.equipment_id.startswith("697063")


def test_kaifa_list3_energy_and_clock_with_deviation() -> None:
    got = values(one("kaifa_no_list3.hdlc"))
    assert got["1-0:1.8.0"] == (0x04F00BD4 * WH, "J")
    assert got["1-0:3.8.0"] == (0x022388EB, "varh")
    telegram = one("kaifa_no_list3_2024.hdlc")
    # 2024-12-01 17:21:40 local, deviation -60 min (UTC+1): 16:21:40 UTC
    assert telegram.meter_time == 1733070100.0


def test_kaifa_list1() -> None:
    assert values(one("kaifa_no_list1.hdlc")) == {"1-0:1.7.0": (0xD5F, "W")}


def test_kaifa_sweden_codes_without_scalers() -> None:
    telegram = one("kaifa_se.hdlc")
    got = values(telegram)
    assert_value(got["1-0:31.7.0"], 0x12D / 1000, "A")
    assert_value(got["1-0:32.7.0"], 0x90F / 10, "V")
    assert got["1-0:1.8.0"] == (0x0107D8D0 * WH, "J")
    assert telegram.equipment_id == "7340157030732044"
    # 2023-08-27 21:32:45 local, deviation -60
    assert telegram.meter_time == 1693168365.0


def test_austria_evn_example_two_mbus_frames_encrypted() -> None:
    telegram = one("evn_kaifa_ma309.mbus", EVN_KEY)
    got = values(telegram)
    assert got["1-0:1.8.0"] == (0x3289 * WH, "J")
    assert_value(got["1-0:32.7.0"], 0x921 / 10, "V")
    assert got["1-0:13.7.0"] == (1.0, "")  # 1000 x 10^-3, no unit
    assert "M-Bus, encrypted" in telegram.header
    # 2021-09-27 09:47:15 local, deviation -120 (summer time)
    assert telegram.meter_time == 1632728835.0


def test_austria_sagemcom_t210_encrypted() -> None:
    got = values(one("evn_sagemcom_t210.mbus", SAGEMCOM_KEY))
    assert got["1-0:2.8.0"] == (0x621E09 * WH, "J")
    assert got["1-0:2.7.0"] == (0x828, "W")
    assert_value(got["1-0:31.7.0"], 0x140 / 100, "A")


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_any_chunking_gives_the_same_telegrams(chunk: int) -> None:
    data = b"".join(
        (HAN / n).read_bytes()
        for n in ("aidon_se.hdlc", "kaifa_no_list3.hdlc", "kamstrup_list1.hdlc")
    )
    whole = [values(o.telegram) for o in outcomes(data) if o.telegram]
    pieces = [values(o.telegram) for o in outcomes(data, chunk=chunk) if o.telegram]
    assert len(whole) == 3
    assert pieces == whole


def test_noise_and_shared_or_double_flags_between_frames() -> None:
    aidon = (HAN / "aidon_no_list1.hdlc").read_bytes()
    kaifa = (HAN / "kaifa_no_list1.hdlc").read_bytes()
    data = b"\x00\xc3\x55" + aidon + b"\x7e" + kaifa + aidon[1:] + b"\xff\x68\x01"
    results = outcomes(data)
    assert [r.result for r in results if r.telegram] == ["ok", "ok", "ok"]


def test_hdlc_segmented_apdu_is_reassembled() -> None:
    apdu = (HAN / "aidon_se.hdlc").read_bytes()[9:-3]  # the information field
    frames = (
        hdlc_frame(apdu[:200], segmented=True)
        + hdlc_frame(apdu[200:400], segmented=True)
        + hdlc_frame(apdu[400:])
    )
    results = outcomes(frames)
    assert [r.result for r in results] == ["ok"]
    assert values(results[0].telegram) == values(one("aidon_se.hdlc"))  # type: ignore[arg-type]


def test_amshan_apdus_kamstrup_list2_single_phase() -> None:
    # toreamun/amshan tests/test_kamstrup.py, list_2_single_phase (APDU without HDLC)
    apdu = bytes.fromhex(
        "E6E7000F000000000C07E1081003100005FF800000020F0A0E4B616D73747275705F5630303031"
        "09060101000005FF0A103537303635363730303030303030303009060101600101FF0A1230303030"
        "303030303030303030303030303009060101010700FF0600000000090601011F0700FF0600000000"
        "09060101200700FF12000009060001010000FF090C07E1081003100005FF80000009060101010800"
        "FF0600000000"
    )
    telegram = telegram_from_apdu(apdu, apdu, "test")
    assert values(telegram)["1-0:1.8.0"] == (0.0, "J")
    assert set(values(telegram)) == {"1-0:1.7.0", "1-0:31.7.0", "1-0:32.7.0", "1-0:1.8.0"}


def test_mbus_frames_roundtrip_and_obis_keys() -> None:
    apdu = (HAN / "kaifa_no_list3.hdlc").read_bytes()[9:-3]
    results = outcomes(mbus_frames(apdu, chunk=50))
    assert [r.result for r in results] == ["ok"]
    assert obis_key(bytes([1, 0, 1, 7, 0, 255])) == "1-0:1.7.0"
    assert obis_key(bytes([1, 1, 31, 7, 0, 255])) == "1-0:31.7.0"
    assert obis_key(bytes([0, 0, 96, 1, 0, 7])) == "0-0:96.1.0.7"
    assert cosem_time(bytes.fromhex("07e60a100715000aff800000")) is None


def test_lists_1_and_2_carry_the_hourly_energy_forward() -> None:
    """Norwegian meters: list 3 (energy) hourly, list 1 (power) every 2.5 s."""
    list1, list2, list3 = ((HAN / f"kaifa_no_list{n}.hdlc").read_bytes() for n in (1, 2, 3))
    stream = HanStream()
    first = stream.feed(list3)[0].telegram
    power_only = stream.feed(list1)[0].telegram
    instant = stream.feed(list2)[0].telegram
    assert first is not None and power_only is not None and instant is not None
    energy = first.value("1-0:1.8.0")
    assert power_only.value("1-0:1.7.0") == 0xD5F  # list 1's own power
    assert power_only.value("1-0:1.8.0") == energy  # list 3's energy, carried
    assert power_only.equipment_id == first.equipment_id  # list 1 names no meter
    assert instant.value("1-0:31.7.0") == pytest.approx(0x291A / 1000)  # list 2's, newer
    assert power_only.header == first.header == instant.header  # one p1_meter_info series


def test_carried_values_expire_and_a_replaced_meter_starts_afresh() -> None:
    from p1_exporter.core.han_stream import ListMerger

    list1, list3 = ((HAN / f"kaifa_no_list{n}.hdlc").read_bytes() for n in (1, 3))
    stream = HanStream(merger=ListMerger(carry_frames=5))
    stream.feed(list3)
    results = [stream.feed(list1)[0].telegram for _ in range(6)]
    assert results[4] is not None and results[4].value("1-0:1.8.0") is not None
    assert results[5] is not None and results[5].value("1-0:1.8.0") is None
    assert results[5].value("1-0:1.7.0") == 0xD5F
    other = HanStream()
    other.feed(list3)
    kamstrup = other.feed((HAN / "kamstrup_list1.hdlc").read_bytes())[0].telegram
    assert kamstrup is not None and kamstrup.value("1-0:1.8.0") is None  # not Kaifa's
