"""Property tests: no input raises, chunking never matters, a flipped bit is never accepted.

Hypothesis runs derandomized (fixed examples) so CI results are reproducible.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p1_exporter import Outcome, Telegram, TelegramStream, iter_telegrams, parse
from tests.helpers.fixtures import FIXTURE_NAMES, WITH_CRC, load

FIXTURES = {name: load(name) for name in FIXTURE_NAMES}
CAPTURE = b"".join(FIXTURES.values())


def feed_in_pieces(data: bytes, cuts: list[int], **options: bool) -> tuple[list[Outcome], int]:
    """Feed ``data`` split at ``cuts`` (positions), then flush."""
    stream = TelegramStream(**options)
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    outcomes: list[Outcome] = []
    start = 0
    for point in [*points, len(data)]:
        outcomes += stream.feed(data[start:point])
        start = point
    outcomes += stream.flush()
    return outcomes, stream.framer.garbage_bytes


def comparable(outcomes: list[Outcome]) -> list[tuple[object, ...]]:
    return [
        (outcome.result, outcome.telegram, outcome.raw, type(outcome.error), str(outcome.error))
        for outcome in outcomes
    ]


def values(telegram: Telegram) -> tuple[object, ...]:
    """Everything a telegram says, without the bytes it was read from."""
    return (
        telegram.header,
        telegram.dsmr_version,
        telegram.crc,
        telegram.crc_verified,
        telegram.meter_time,
        telegram.equipment_id,
        dict(telegram.registers),
        dict(telegram.texts),
        dict(telegram.mbus),
        telegram.power_failure_log,
        telegram.month_peak,
        telegram.month_peak_time,
        telegram.peak_history,
        telegram.extra,
        telegram.unknown,
        telegram.malformed,
    )


# --- nothing raises ----------------------------------------------------------


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=2000), st.lists(st.integers(min_value=0), max_size=20))
def test_random_bytes_never_raise(data: bytes, cuts: list[int]) -> None:
    for check_crc in (True, False):
        outcomes, garbage = feed_in_pieces(data, cuts, check_crc=check_crc)
        assert 0 <= garbage <= len(data)
        for outcome in outcomes:
            assert (outcome.telegram is None) != (outcome.error is None)


TOKENS = [
    b"/",
    b"!",
    b"\r\n",
    b"\n",
    b"(",
    b")",
    b")(",
    b"*",
    b".",
    b"-",
    b"*kWh",
    b"*m3",
    b"*s",
    b"*255",
    b"0",
    b"12",
    b"999999999999999999999999",
    b"170102192002W",
    b"161107190000",
    b"\xb2",
    b"\xff",
    b"\x00",
    b"1-0:1.8.1",
    b"1-3:0.2.8",
    b"0-0:1.0.0",
    b"0-0:96.1.1",
    b"0-0:96.13.0",
    b"1-0:99.97.0",
    b"0-0:96.7.19",
    b"1-0:1.6.0",
    b"0-0:98.1.0",
    b"0-1:24.1.0",
    b"0-1:24.2.1",
    b"0-1:24.3.0",
    b"0-1:24.4.0",
    b"0-1:96.1.0",
    b"4B3845",
]


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.lists(st.lists(st.sampled_from(TOKENS), max_size=12), max_size=25))
@pytest.mark.slow
def test_telegram_shaped_noise_never_raises(lines: list[list[bytes]]) -> None:
    """Telegram-like input without a version line and CRC reaches the line parser."""
    body = b"/TST5\\2NOISE\r\n\r\n" + b"".join(b"".join(line) + b"\r\n" for line in lines)
    data = body + b"!\r\n"
    for check_crc in (True, False):
        outcomes = list(iter_telegrams(data, check_crc=check_crc))
        assert outcomes
        for outcome in outcomes:
            assert (outcome.telegram is None) != (outcome.error is None)


# --- chunking never matters --------------------------------------------------


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.integers(min_value=0), max_size=300))
def test_random_chunking_of_real_telegrams(cuts: list[int]) -> None:
    whole, whole_garbage = feed_in_pieces(CAPTURE, [])
    assert [outcome.result for outcome in whole] == ["ok"] * len(FIXTURES)
    pieces, garbage = feed_in_pieces(CAPTURE, cuts)
    assert [outcome.telegram for outcome in pieces] == [outcome.telegram for outcome in whole]
    assert comparable(pieces) == comparable(whole)
    assert garbage == whole_garbage


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(list(FIXTURES.values())),
            st.binary(max_size=40),
            st.sampled_from([b"/", b"!", b"\n!", b"\r\n", b"6EEE", b"/x\n!", b" " * 12, b"x" * 20]),
        ),
        max_size=8,
    ),
    st.lists(st.integers(min_value=0), max_size=40),
)
def test_chunking_never_matters(parts: list[bytes], cuts: list[int]) -> None:
    data = b"".join(parts)
    whole, whole_garbage = feed_in_pieces(data, [])
    pieces, garbage = feed_in_pieces(data, cuts)
    assert comparable(pieces) == comparable(whole)
    assert garbage == whole_garbage


# --- a flipped bit is never accepted as different data -----------------------


def check_flip(original: bytes, expected: tuple[object, ...], position: int, bit: int) -> int:
    """Flip one bit; an accepted telegram must say exactly what the original said.

    Returns how many telegrams were accepted (a flip inside the CRC line's hex case or
    trailing whitespace leaves the telegram intact).
    """
    flipped = bytearray(original)
    flipped[position] ^= 1 << bit
    accepted = 0
    for outcome in iter_telegrams(bytes(flipped)):
        if outcome.telegram is not None:
            assert values(outcome.telegram) == expected, (position, bit)
            accepted += 1
    return accepted


CRC_FIXTURES = sorted(WITH_CRC)


@pytest.mark.parametrize("name", CRC_FIXTURES)
def test_every_single_bit_flip(name: str) -> None:
    """Exhaustive: every bit of every byte of each CRC-carrying telegram."""
    original = FIXTURES[name]
    expected = values(parse(original))
    accepted = 0
    for position in range(len(original)):
        for bit in range(8):
            accepted += check_flip(original, expected, position, bit)
    crc_line = len(original) - original.rindex(b"!")
    assert accepted <= 8 * crc_line  # only flips in the CRC line can survive


@pytest.mark.slow
def test_flipped_telegram_does_not_hide_the_next_one() -> None:
    original = FIXTURES["v5.txt"]
    following = FIXTURES["v4_2.txt"]
    expected_next = parse(following)
    for position in range(len(original)):
        for bit in range(8):
            flipped = bytearray(original)
            flipped[position] ^= 1 << bit
            outcomes = list(iter_telegrams(bytes(flipped) + following))
            assert outcomes[-1].telegram == expected_next, (position, bit)
