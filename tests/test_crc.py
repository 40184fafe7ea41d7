"""CRC-16/ARC: both implementations, and how the core treats right, wrong and missing CRCs.

``reference_crc`` and ``seal`` (tests/helpers/telegrams.py) are the tests' own bit-by-bit
CRC, independent of the code under test.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p1_exporter import (
    CRCError,
    FramingError,
    P1Error,
    ParseError,
    TelegramTooLarge,
    TornTelegram,
    iter_telegrams,
    parse,
)
from p1_exporter.core.crc import IMPLEMENTATION, crc16_arc, crc16_arc_compiled, crc16_arc_python
from tests.helpers.fixtures import FIXTURE_NAMES, WITH_CRC, WITHOUT_CRC, load
from tests.helpers.telegrams import content, reference_crc, seal


def with_crc_line(telegram_bytes: bytes, crc_line: bytes) -> bytes:
    """The same telegram with its CRC line replaced (``crc_line`` excludes the newline)."""
    return content(telegram_bytes) + crc_line + b"\r\n"


# --- the two implementations -------------------------------------------------


def test_check_value_of_crc16_arc() -> None:
    assert crc16_arc_python(b"123456789") == 0xBB3D
    assert crc16_arc(b"123456789") == 0xBB3D
    assert reference_crc(b"123456789") == 0xBB3D
    assert crc16_arc_python(b"") == 0


def test_compiled_implementation_in_use_when_installed() -> None:
    if crc16_arc_compiled is None:
        pytest.skip("fastcrc is not installed here")
    assert IMPLEMENTATION == "fastcrc"
    assert crc16_arc is crc16_arc_compiled
    assert crc16_arc_compiled(b"123456789") == 0xBB3D


@pytest.mark.parametrize("name", sorted(WITH_CRC))
def test_implementations_agree_on_fixtures(name: str) -> None:
    body = content(load(name))
    expected = WITH_CRC[name]
    assert reference_crc(body) == expected
    assert crc16_arc_python(body) == expected
    assert crc16_arc(body) == expected
    if crc16_arc_compiled is not None:
        assert crc16_arc_compiled(body) == expected


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_implementations_agree_on_whole_files(name: str) -> None:
    data = load(name)
    assert crc16_arc_python(data) == crc16_arc(data) == reference_crc(data)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=3000))
def test_implementations_agree_on_random_data(data: bytes) -> None:
    assert crc16_arc_python(data) == crc16_arc(data)
    if crc16_arc_compiled is not None:
        assert crc16_arc_compiled(data) == crc16_arc_python(data)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.binary(max_size=300))
def test_python_implementation_matches_bitwise_reference(data: bytes) -> None:
    assert crc16_arc_python(data) == reference_crc(data)


# --- CRC checks in the core --------------------------------------------------


@pytest.mark.parametrize("name", sorted(WITH_CRC))
def test_fixture_crc_is_verified(name: str) -> None:
    telegram = parse(load(name))
    assert telegram.crc == WITH_CRC[name]
    assert telegram.crc_verified is True


@pytest.mark.parametrize("name", WITHOUT_CRC)
def test_fixture_without_crc_is_accepted_unverified(name: str) -> None:
    telegram = parse(load(name))
    assert telegram.crc is None
    assert telegram.crc_verified is False


def test_unpadded_three_digit_crc_is_accepted() -> None:
    data = load("unpadded_crc.txt")
    assert data.endswith(b"\r\n!B9F\r\n")
    telegram = parse(data)
    assert telegram.crc == 0x0B9F
    assert telegram.crc_verified


def test_lower_case_crc_is_accepted() -> None:
    telegram = parse(with_crc_line(load("v5.txt"), b"6eee"))
    assert telegram.crc == 0x6EEE
    assert telegram.crc_verified


def test_mismatch_message_names_both_values() -> None:
    data = with_crc_line(load("v5.txt"), b"0C97")
    with pytest.raises(CRCError) as caught:
        parse(data)
    assert str(caught.value) == "CRC mismatch: computed 6EEE, telegram says 0C97"
    assert caught.value.result == "crc_error"


def test_mismatch_message_for_changed_content() -> None:
    original = load("v5.txt")
    tampered = original.replace(b"1-0:1.8.1(000004.426*kWh)", b"1-0:1.8.1(000004.427*kWh)")
    assert tampered != original
    computed = reference_crc(content(tampered))
    with pytest.raises(CRCError) as caught:
        parse(tampered)
    assert str(caught.value) == f"CRC mismatch: computed {computed:04X}, telegram says 6EEE"
    assert re.fullmatch(
        r"CRC mismatch: computed [0-9A-F]{4}, telegram says 6EEE", str(caught.value)
    )


def test_mismatch_message_pads_and_upper_cases_what_was_sent() -> None:
    with pytest.raises(CRCError, match=r"^CRC mismatch: computed 6EEE, telegram says 0C97$"):
        parse(with_crc_line(load("v5.txt"), b"c97"))


@pytest.mark.parametrize("crc_line", [b"6EEG", b"6EEE0", b"XXXX", b"6E E", b"0x6E"])
def test_non_hex_crc_is_refused(crc_line: bytes) -> None:
    with pytest.raises(CRCError, match="CRC not hexadecimal"):
        parse(with_crc_line(load("v5.txt"), crc_line))


@pytest.mark.parametrize("name", ["v5.txt", "v4_2.txt", "fluvius_v171.txt", "unpadded_crc.txt"])
def test_missing_crc_on_dsmr4_telegram_is_a_crc_error(name: str) -> None:
    data = with_crc_line(load(name), b"")
    with pytest.raises(CRCError, match="CRC missing") as caught:
        parse(data)
    assert caught.value.result == "crc_error"
    # Told to ignore CRCs, the same telegram decodes, marked unverified.
    telegram = parse(data, check_crc=False)
    assert telegram.crc is None
    assert not telegram.crc_verified


@pytest.mark.parametrize("name", WITHOUT_CRC)
def test_missing_crc_is_fine_without_a_version_line(name: str) -> None:
    data = load(name)
    assert b"1-3:0.2.8" not in data and b"0-0:96.1.4" not in data
    assert parse(data).crc is None


def test_check_crc_false_decodes_a_bad_crc() -> None:
    data = with_crc_line(load("v5.txt"), b"0C97")
    telegram = parse(data, check_crc=False)
    assert telegram.crc == 0x0C97
    assert telegram.crc_verified is False
    assert telegram.value("1-0:1.8.1") == 15933600
    good = parse(load("v5.txt"))
    assert telegram.registers == good.registers
    assert telegram.mbus == good.mbus


def test_check_crc_false_decodes_a_non_hex_crc() -> None:
    telegram = parse(with_crc_line(load("v5.txt"), b"zzzz"), check_crc=False)
    assert telegram.crc is None
    assert telegram.crc_verified is False


def test_good_crc_still_verified_with_check_crc_false() -> None:
    telegram = parse(load("v5.txt"), check_crc=False)
    assert telegram.crc == 0x6EEE
    assert telegram.crc_verified is True


def test_error_result_labels() -> None:
    assert P1Error("x").result == "rejected"
    assert FramingError("x").result == "malformed"
    assert TelegramTooLarge("x").result == "too_large"
    assert TornTelegram("x").result == "malformed"
    assert CRCError("x").result == "crc_error"
    assert ParseError("x").result == "malformed"
    assert issubclass(TelegramTooLarge, FramingError)
    assert issubclass(TornTelegram, FramingError)
    for error in (FramingError, CRCError, ParseError):
        assert issubclass(error, P1Error)


def test_outcome_labels_in_a_stream() -> None:
    good = load("v5.txt")
    bad = with_crc_line(load("v4_2.txt"), b"0000")
    outcomes = list(iter_telegrams(good + bad + good[:200]))
    assert [outcome.result for outcome in outcomes] == ["ok", "crc_error", "malformed"]
    assert outcomes[0].telegram is not None and outcomes[0].error is None
    assert outcomes[0].raw == good
    assert outcomes[1].telegram is None and isinstance(outcomes[1].error, CRCError)
    assert outcomes[1].raw == bad
    assert isinstance(outcomes[2].error, FramingError)
    assert outcomes[2].raw == b""


def test_seal_reproduces_fixture_crcs() -> None:
    for name, expected in WITH_CRC.items():
        data = load(name)
        if name == "unpadded_crc.txt":
            assert seal(content(data)) == content(data) + b"0B9F\r\n"
        else:
            assert seal(content(data)) == data, name
        assert reference_crc(content(data)) == expected
