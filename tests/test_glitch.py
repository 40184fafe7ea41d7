"""GlitchGuard: cumulative registers that go backwards are withheld, then accepted if they stay."""

from __future__ import annotations

import logging

import pytest

from p1_exporter.core import parse
from p1_exporter.core.telegram import Telegram
from p1_exporter.meter.glitch import Glitch, GlitchGuard, is_cumulative
from tests.helpers.fixtures import V5, V5_TWO_MBUS
from tests.helpers.reader import counts, fast_config, messages, ok_count, pty_pair, running
from tests.helpers.telegrams import replace_line
from tests.helpers.wait import wait_for

KWH_LINE = b"1-0:1.8.1(000004.426*kWh)"
GAS_LINE = b"0-1:24.2.1(170102161005W)(00000.107*m3)"
ID_LINE = b"0-0:96.1.1(4B384547303034303436333935353037)"
KWH = 3.6e6


def v5(kwh: str = "000004.426", gas: str | None = None, equipment: bytes | None = None) -> bytes:
    """The v5 fixture with other register values (and a valid CRC)."""
    data = replace_line(V5, KWH_LINE, b"1-0:1.8.1(%s*kWh)" % kwh.encode())
    if gas is not None:
        data = replace_line(data, GAS_LINE, b"0-1:24.2.1(170102161005W)(%s*m3)" % gas.encode())
    if equipment is not None:
        data = replace_line(data, ID_LINE, b"0-0:96.1.1(%s)" % equipment.hex().upper().encode())
    return data


def telegram(**kwargs: str | bytes | None) -> Telegram:
    return parse(v5(**kwargs))  # type: ignore[arg-type]


def test_cumulative_registers() -> None:
    for code in (
        "1-0:1.8.1",
        "1-0:2.8.2",
        "1-0:1.8.0",
        "0-0:96.7.21",
        "0-0:96.7.9",
        "1-0:32.32.0",
        "1-0:72.36.0",
    ):
        assert is_cumulative(code), code
    for code in ("1-0:1.7.0", "1-0:32.7.0", "0-0:96.14.0", "1-0:31.7.0", "0-0:17.0.0"):
        assert not is_cumulative(code), code


def test_values_that_rise_or_stay_pass_unchanged() -> None:
    guard = GlitchGuard()
    for kwh in ("000004.426", "000004.426", "000004.500"):
        original = telegram(kwh=kwh)
        published, glitches, note = guard.filter(original)
        assert published is original and glitches == [] and note is None


def test_lower_energy_register_is_withheld_and_the_rest_published() -> None:
    guard = GlitchGuard()
    guard.filter(telegram(kwh="000004.426"))
    lower = telegram(kwh="000004.000")
    published, glitches, note = guard.filter(lower)
    ((key, previous, value),) = glitches
    assert key == "1-0:1.8.1"
    assert previous == pytest.approx(4.426 * KWH) and value == pytest.approx(4 * KWH)
    assert note is None
    assert "1-0:1.8.1" not in published.registers  # withheld, not zero
    assert published.value("1-0:1.8.2") == pytest.approx(2.399 * KWH)
    assert published.value("1-0:1.7.0") == pytest.approx(244.0)
    assert published.mbus == lower.mbus and published.raw == lower.raw
    assert "1-0:1.8.1" in lower.registers  # the parsed telegram itself is untouched
    # The last accepted value stays the reference: a value in between is still lower.
    _, again, _ = guard.filter(telegram(kwh="000004.400"))
    assert [g.key for g in again] == ["1-0:1.8.1"]
    published, glitches, _ = guard.filter(telegram(kwh="000004.427"))
    assert glitches == [] and published.value("1-0:1.8.1") == pytest.approx(4.427 * KWH)


def test_a_lower_value_that_stays_is_accepted_after_reset_after() -> None:
    guard = GlitchGuard(reset_after=3)
    guard.filter(telegram(kwh="000004.426"))
    for _ in range(2):
        published, glitches, _ = guard.filter(telegram(kwh="000000.010"))
        assert len(glitches) == 1 and "1-0:1.8.1" not in published.registers
    published, glitches, _ = guard.filter(telegram(kwh="000000.011"))  # third lower one
    assert glitches == [] and published.value("1-0:1.8.1") == pytest.approx(0.011 * KWH)
    # The new, lower level is the reference now.
    published, glitches, _ = guard.filter(telegram(kwh="000000.012"))
    assert glitches == [] and published.value("1-0:1.8.1") == pytest.approx(0.012 * KWH)


def test_an_interrupted_run_of_lower_values_starts_over() -> None:
    guard = GlitchGuard(reset_after=3)
    guard.filter(telegram(kwh="000004.426"))
    for kwh in ("000001.000", "000001.000", "000004.426", "000001.000", "000001.000"):
        guard.filter(telegram(kwh=kwh))
    published, glitches, _ = guard.filter(telegram(kwh="000001.000"))
    assert glitches == [] and published.value("1-0:1.8.1") == pytest.approx(1.0 * KWH)


def test_new_equipment_id_is_a_new_meter_accepted_at_once() -> None:
    guard = GlitchGuard()
    guard.filter(telegram(kwh="000004.426", gas="00000.107"))
    replaced = telegram(kwh="000000.001", gas="00000.001", equipment=b"E0099887766554433")
    published, glitches, note = guard.filter(replaced)
    assert published is replaced and glitches == []
    assert note is not None and "meter replaced" in note and "E0099887766554433" in note
    assert guard.equipment_id == "E0099887766554433"
    _, glitches, note = guard.filter(telegram(kwh="000000.000", equipment=b"E0099887766554433"))
    assert [g.key for g in glitches] == ["1-0:1.8.1"] and note is None


def test_gas_reading_going_backwards_is_withheld() -> None:
    guard = GlitchGuard()
    guard.filter(telegram(gas="00000.107"))
    published, glitches, _ = guard.filter(telegram(gas="00000.100"))
    assert glitches == [Glitch("mbus:1", 0.107, 0.1)]  # m3 as sent, no conversion
    device = published.mbus[1]
    assert device.reading is None and device.reading_time is None
    assert device.equipment_id == "2222ABCD123456789"  # the device stays, its reading not
    assert published.value("1-0:1.8.1") == pytest.approx(4.426 * KWH)
    published, glitches, _ = guard.filter(telegram(gas="00000.108"))
    assert glitches == [] and published.mbus[1].reading is not None


def test_another_device_on_the_channel_starts_afresh() -> None:
    guard = GlitchGuard()
    guard.filter(parse(V5_TWO_MBUS))  # gas 246.138 m3 on channel 2
    moved = replace_line(
        V5_TWO_MBUS,
        b"0-2:96.1.0(4730303339303031393336393930363139)",
        b"0-2:96.1.0(4730303339303031393336393930363140)",
    )
    moved = replace_line(moved, b"(00246.138*m3)", b"(00001.000*m3)")
    published, glitches, _ = guard.filter(parse(moved))
    assert glitches == [] and published.mbus[2].reading is not None
    assert published.mbus[2].reading.value == pytest.approx(1.0)


@pytest.mark.integration
def test_backwards_registers_are_withheld_by_the_reader(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="p1_exporter.reader")
    first, lower, gas_back = v5(), v5(kwh="000004.000"), v5(kwh="000004.000", gas="00000.050")
    with pty_pair() as pty, running(fast_config(pty.path)) as reader:
        wait_for(lambda: reader.snapshot.connected)
        pty.write(first)
        wait_for(lambda: ok_count(reader) == 1)
        pty.write(lower)
        wait_for(lambda: ok_count(reader) == 2)
        snap = reader.snapshot
        assert snap.telegram is not None and snap.telegram.raw == lower
        assert snap.telegram.value("1-0:1.8.1") is None  # absent, not published as lower
        assert snap.telegram.value("1-0:1.8.2") == pytest.approx(2.399 * KWH)
        assert snap.telegram.mbus[1].reading is not None
        assert snap.glitches == 1 and counts(snap)["ok"] == 2
        pty.write(gas_back)
        wait_for(lambda: ok_count(reader) == 3)
        snap = reader.snapshot
        assert snap.telegram is not None and snap.telegram.mbus[1].reading is None
        assert snap.telegram.value("1-0:1.8.1") is None
        assert snap.glitches == 3  # 1.8.1 again, and the gas reading
        assert snap.telegrams["crc_error"] == snap.telegrams["malformed"] == 0
        assert snap.fresh() and snap.source_errors == 0
    (line,) = messages(caplog, "1-0:1.8.1 went backwards", logging.WARNING)
    assert "withheld" in line
    assert len(messages(caplog, "mbus:1 went backwards", logging.WARNING)) == 1
