"""The bit-level UART emulation: what a receiver with the wrong settings reads."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p1_exporter.core.crc import crc16_arc
from p1_exporter.sim.meter import SimOptions, SimulatedMeter
from p1_exporter.sim.uart import SerialSettings, Wire, encode, parse_settings, transcode
from tests.helpers.fixtures import V2_2, V5

ROOT = Path(__file__).resolve().parent.parent
ALL_BYTES = bytes(range(256))
ASCII = bytes(range(128))


def even_parity(value: int) -> int:
    return bin(value).count("1") & 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("115200-8N1", SerialSettings(115200, 8, "N", 1)),
        ("9600-7E1", SerialSettings(9600, 7, "E", 1)),
        ("9600 7e1", SerialSettings(9600, 7, "E", 1)),
        ("9600/8O2", SerialSettings(9600, 8, "O", 2)),
        ("2400-5N1.5", SerialSettings(2400, 5, "N", 1.5)),
    ],
)
def test_parse_settings(text: str, expected: SerialSettings) -> None:
    assert SerialSettings.parse(text) == expected
    assert parse_settings(text) == expected
    assert SerialSettings.parse(str(expected)) == expected


def test_settings_text_and_frame() -> None:
    assert str(SerialSettings(9600, 7, "E", 1)) == "9600-7E1"
    assert SerialSettings.parse("115200-8N1").frame_bits == 10
    assert SerialSettings.parse("9600-7E1").frame_bits == 10
    assert SerialSettings.parse("9600-8E2").frame_bits == 12


@pytest.mark.parametrize("text", ["115200", "8N1", "9600-9N1", "9600-8X1", "9600-8N3", "0-8N1"])
def test_bad_settings_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        SerialSettings.parse(text)


def test_encoding_is_idle_high_start_low_lsb_first_parity_stop() -> None:
    levels = encode(b"\x31", SerialSettings.parse("9600-7E1"))
    bits = levels[::2]  # two samples per bit
    # idle, start, 1 0 0 0 1 1 0 (0x31 LSB first), even parity of three ones = 1, stop
    assert list(bits) == [1, 0, 1, 0, 0, 0, 1, 1, 0, 1, 1]
    inverted = encode(b"\x31", SerialSettings.parse("9600-7E1"), inverted=True)
    assert list(inverted[::2]) == [1 - b for b in bits]


@pytest.mark.parametrize("settings", ["115200-8N1", "9600-8N1", "9600-8E1", "57600-8O2", "300-8N1"])
def test_same_settings_round_trip(settings: str) -> None:
    assert transcode(ALL_BYTES, settings, settings) == ALL_BYTES
    assert transcode(V5, settings, settings) == V5


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(max_size=40),
    baud=st.sampled_from([1200, 9600, 38400, 115200]),
    frame=st.sampled_from(["8N1", "8E1", "8O1", "8N2", "8M1", "8S1"]),
)
def test_any_bytes_round_trip_with_matching_settings(data: bytes, baud: int, frame: str) -> None:
    assert transcode(data, f"{baud}-{frame}", f"{baud}-{frame}") == data


def test_seven_bit_round_trip() -> None:
    assert transcode(ASCII, "9600-7E1", "9600-7E1") == ASCII
    assert transcode(V2_2, "9600-7E1", "9600-7E1") == V2_2


def test_7e1_read_as_8n1_shows_the_parity_bit_as_the_high_bit() -> None:
    received = transcode(ASCII, "9600-7E1", "9600-8N1")
    assert received == bytes(b | even_parity(b) << 7 for b in ASCII)
    assert any(b & 0x80 for b in received)
    assert bytes(b & 0x7F for b in transcode(V2_2, "9600-7E1", "9600-8N1")) == V2_2


def test_9600_read_at_115200_never_shows_a_telegram_start() -> None:
    for sender in ("9600-7E1", "9600-8N1"):
        received = transcode(V5, sender, "115200-8N1")
        assert received and b"/" not in received
        assert set(received) == {0}  # every low stretch is read as a break
    assert b"/" not in transcode(V5, "9600-7E1", "115200-8N1", inverted=True)


def test_115200_read_at_9600_is_short_garbage() -> None:
    received = transcode(V5, "115200-8N1", "9600-8N1")
    assert 0 < len(received) < len(V5) // 5
    assert b"1-0:1.8.1" not in received


def test_an_inverted_line_read_without_inverting_is_garbage() -> None:
    received = transcode(V5, "115200-8N1", "115200-8N1", inverted=True)
    assert received != V5
    assert b"/ISk5" not in received and b"1-0:" not in received


def test_framing_errors_are_delivered_as_read_without_parity_checking() -> None:
    # A 7N1 receiver takes bit 7 of an 8N1 character as its stop bit: 0 for ASCII,
    # so every character is a framing error, and each is delivered as read.
    assert transcode(b"AB/!", "9600-8N1", "9600-7N1") == b"AB/!"


def test_parity_and_framing_errors_become_nul_when_the_receiver_checks_parity() -> None:
    # 8N1 'A' (0x41) has bit 7 = 0 = its even parity: fine. 'C' (0x43) needs 1: error.
    assert transcode(b"AC", "9600-8N1", "9600-7E1") == b"A\x00"


def test_wire_helper() -> None:
    clean = Wire.parse("115200-8N1", "115200-8N1")
    assert clean.transparent and clean.transcode(V5) is V5
    wrong = Wire.parse("9600-7E1", "9600-8N1")
    assert not wrong.transparent
    assert bytes(b & 0x7F for b in wrong.transcode(V2_2)) == V2_2


def test_meter_with_a_wrong_receiver() -> None:
    options = SimOptions.from_url("sim://?dialect=dsmr22&seed=1&receiver_settings=115200-8N1")
    meter = SimulatedMeter.from_options(options)
    assert str(meter.wire_settings) == "9600-7E1"
    chunks = meter.chunks_at(meter.start + 10)
    assert chunks and all(b"/" not in c.data for c in chunks)
    inverted = SimulatedMeter.from_options(SimOptions.from_url("sim://?seed=1&inverted=true"))
    data = b"".join(c.data for c in inverted.chunks_at(inverted.start + 1))
    assert b"/SIM5" not in data


@pytest.mark.integration
def test_cli_wire_settings() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "p1_exporter.sim",
            "--seed",
            "2",
            "--count",
            "1",
            "--wire-settings",
            "115200-7E1",
            "--receiver-settings",
            "115200-8N1",
        ],
        capture_output=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=20,
        check=True,
    )
    assert any(b & 0x80 for b in result.stdout)
    clean = bytes(b & 0x7F for b in result.stdout)
    match = re.fullmatch(rb"(/[^!]*!)([0-9A-F]{4})\r\n", clean)
    assert match is not None
    assert int(match.group(2), 16) == crc16_arc(match.group(1))
