"""Diagnostics: one plain-words line per link problem, from bytes a real UART would deliver."""

from __future__ import annotations

import logging

import pytest

from p1_exporter.core.errors import RESULTS, Result
from p1_exporter.logs.limiter import LogLimiter
from p1_exporter.meter.diagnostics import (
    CRC_MIN_SEEN,
    NO_TELEGRAM_BYTES,
    Diagnostics,
    Finding,
    classify_noise,
)
from p1_exporter.sim.meter import SimulatedMeter
from p1_exporter.sim.uart import transcode
from tests.helpers.fixtures import V2_2, V4_2, V5

START = 1_700_000_000.0


def stream(dialect: str, count: int = 4, seed: int = 21) -> bytes:
    """``count`` consecutive telegrams of a simulated meter, as sent."""
    meter = SimulatedMeter(dialect, seed=seed, start=START)
    return b"".join(meter.telegram_at(START + 10 * i) for i in range(count))


# -- classify_noise -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "sender", "receiver"),
    [
        (V2_2 * 8, "9600-7E1", "9600-8N1"),
        ("dsmr22", "9600-7E1", "9600-8N1"),
        ("dsmr22", "9600-7O1", "9600-8N1"),
    ],
)
def test_seven_bit_text_with_parity_bit(data: bytes | str, sender: str, receiver: str) -> None:
    raw = stream(data) if isinstance(data, str) else data
    finding = classify_noise(transcode(raw, sender, receiver))
    assert finding.key == "parity"
    assert "9600 7E1" in finding.message


def test_text_fragments_mean_a_shared_port() -> None:
    # Another reader takes most of the bytes: what is left is telegram text, no "/".
    text = stream("dsmr5", 6).replace(b"/", b"")
    fragments = b"".join(text[i : i + 40] for i in range(0, len(text), 120))
    finding = classify_noise(fragments)
    assert finding.key == "shared_port"
    assert "another program" in finding.message


@pytest.mark.parametrize("source", ["dsmr5", "dsmr4", "belgian", V5 * 4, V4_2 * 4])
def test_signal_not_inverted(source: str | bytes) -> None:
    raw = stream(source) if isinstance(source, str) else source
    sample = transcode(raw, "115200-8N1", "115200-8N1", inverted=True)
    assert sum(b >= 0x80 for b in sample) / len(sample) > 0.8  # what the bytes look like
    finding = classify_noise(sample)
    assert finding.key == "not_inverted"
    assert "not inverted" in finding.message and "pull-up" in finding.message


@pytest.mark.parametrize(
    ("dialect", "sender", "receiver", "inverted"),
    [
        ("dsmr22", "9600-7E1", "115200-8N1", False),  # a DSMR 2.2 meter read too fast
        ("dsmr22", "9600-7E1", "115200-8N1", True),
        ("dsmr5", "115200-8N1", "9600-7E1", False),  # a DSMR 5 meter read at 9600 7E1
    ],
)
def test_mostly_zero_bytes_mean_a_wrong_speed(
    dialect: str, sender: str, receiver: str, inverted: bool
) -> None:
    sample = transcode(stream(dialect), sender, receiver, inverted=inverted)
    assert sample.count(0) / len(sample) >= 0.5  # breaks and framing errors
    finding = classify_noise(sample)
    assert finding.key == "wrong_speed"
    assert "mostly 0x00" in finding.message and "115200 8N1" in finding.message


@pytest.mark.parametrize(
    ("dialect", "sender", "receiver"),
    [
        ("dsmr5", "115200-8N1", "57600-8N1"),
        ("dsmr5", "115200-8N1", "38400-8N1"),
        ("dsmr4", "115200-8N1", "9600-8N1"),
        ("dsmr22", "9600-7E1", "19200-8N1"),
    ],
)
def test_other_noise_means_a_wrong_speed(dialect: str, sender: str, receiver: str) -> None:
    finding = classify_noise(transcode(stream(dialect), sender, receiver))
    assert finding.key == "wrong_speed"
    assert "speed is probably wrong" in finding.message


# -- Diagnostics: noise -------------------------------------------------------------------


def noise() -> bytes:
    return transcode(stream("dsmr5", 8), "115200-8N1", "115200-8N1", inverted=True)


def test_noise_is_diagnosed_once_per_episode() -> None:
    diagnostics = Diagnostics("meter m")
    data = noise()
    assert len(data) > 2 * NO_TELEGRAM_BYTES
    half = NO_TELEGRAM_BYTES // 2
    assert diagnostics.bytes_read(data[:half], 0) == []
    (finding,) = diagnostics.bytes_read(data[half : NO_TELEGRAM_BYTES + 10], 0)
    assert finding.key == "not_inverted" and finding.level == "warning"
    assert finding.message.startswith(f"meter m: {NO_TELEGRAM_BYTES + 10} bytes read")
    assert diagnostics.bytes_read(data[:NO_TELEGRAM_BYTES], 0) == []  # still the same problem
    assert diagnostics.active() == (finding.message,)  # what the live page shows
    (recovered,) = diagnostics.outcome("ok")
    assert diagnostics.active() == ()
    assert recovered.key == "recovered" and recovered.level == "info"
    assert diagnostics.outcome("ok") == []
    assert [f.key for f in diagnostics.bytes_read(data[:NO_TELEGRAM_BYTES], 0)] == ["not_inverted"]


def test_a_framed_telegram_resets_the_noise_count() -> None:
    diagnostics = Diagnostics()
    data = noise()
    assert diagnostics.bytes_read(data[: NO_TELEGRAM_BYTES - 1], 0) == []
    assert diagnostics.bytes_read(data[:100], 1) == []  # these bytes completed a frame
    assert diagnostics.bytes_read(data[: NO_TELEGRAM_BYTES - 1], 0) == []
    assert len(diagnostics.bytes_read(data[:1], 0)) == 1


# -- Diagnostics: CRC and torn telegrams ---------------------------------------------------


#: The typed telegram outcome of each name (a typo is a KeyError, not a new outcome).
OUTCOMES: dict[str, Result] = {result: result for result in RESULTS}


def feed(diagnostics: Diagnostics, results: list[str]) -> list[Finding]:
    """Feed telegram outcomes by name; "torn" is a malformed telegram cut off by the next."""
    found: list[Finding] = []
    for result in results:
        if result == "torn":
            found += diagnostics.outcome("malformed", torn=True)
        else:
            found += diagnostics.outcome(OUTCOMES[result])
    return found


def test_crc_alarm_above_three_percent_once_then_rearmed() -> None:
    diagnostics = Diagnostics("meter m")
    assert feed(diagnostics, ["crc_error"] * (CRC_MIN_SEEN - 1)) == []  # too few to judge
    assert feed(Diagnostics(), (["ok"] * 49 + ["crc_error"]) * 2) == []  # 2 %: fine
    diagnostics = Diagnostics("meter m")
    assert feed(diagnostics, ["ok"] * 97 + ["crc_error"] * 3) == []  # 3 %: not above
    (alarm,) = feed(diagnostics, ["crc_error"])  # 4 of the last 100
    assert alarm.key == "crc" and alarm.level == "warning"
    assert "CRC errors in 4 of the last 100 telegrams (4%)" in alarm.message
    assert feed(diagnostics, ["crc_error", "ok"] * 20) == []  # still bad: no repeat
    cleared = feed(diagnostics, ["ok"] * 100)
    assert [f.key for f in cleared] == ["crc_ok"] and cleared[0].level == "info"
    assert [f.key for f in feed(diagnostics, ["crc_error"] * 4)] == ["crc"]  # re-armed


def test_torn_alarm_when_many_telegrams_break_off() -> None:
    diagnostics = Diagnostics("meter m")
    assert feed(diagnostics, ["ok"] * 16 + ["torn"] * 4) == []  # 20 %: not above
    found = feed(diagnostics, ["torn"])  # 5 of 21
    assert [f.key for f in found] == ["torn"]
    assert "arrived torn" in found[0].message and "another program" in found[0].message
    assert feed(diagnostics, ["torn", "ok"] * 10) == []  # once
    feed(diagnostics, ["ok"] * 100)  # no torn one left in the window: re-armed
    assert [f.key for f in feed(diagnostics, ["torn", "ok"] * 30)] == ["torn"]  # 30 of 100


def test_only_torn_fragments_are_noise_not_a_shared_port() -> None:
    diagnostics = Diagnostics()
    assert feed(diagnostics, ["torn"] * 50) == []


# -- LogLimiter ---------------------------------------------------------------------------


def test_log_limiter_logs_once_per_interval_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("p1_exporter.test_limiter")
    caplog.set_level(logging.DEBUG, logger=logger.name)
    limiter = LogLimiter(logger, interval=300.0)
    assert limiter.log("k", logging.WARNING, "broken")
    assert not limiter.log("k", logging.WARNING, "broken")
    assert not limiter.log("k", logging.WARNING, "broken")
    assert limiter.active("k") and not limiter.active("other")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["broken"]
    limiter.forget("k")
    assert not limiter.active("k")
    assert limiter.log("k", logging.WARNING, "broken")
    limiter = LogLimiter(logger, interval=0.0)
    limiter.log("k", logging.WARNING, "a")
    limiter._last["k"] -= 1.0  # as if the interval had passed
    assert limiter.log("k", logging.WARNING, "a")


def test_log_limiter_budget_caps_all_keys_and_summarises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("p1_exporter.test_limiter")
    caplog.set_level(logging.DEBUG, logger=logger.name)
    limiter = LogLimiter(logger, budget=3, window=60.0, subject="meter x")
    logged = [limiter.log(f"line:{n}", logging.WARNING, f"bad {n}") for n in range(10)]
    assert logged == [True] * 3 + [False] * 7
    assert not limiter.budgeted("diagnosis", logging.WARNING, "noise")
    assert limiter.log("unknown:1", logging.DEBUG, "debug lines are not counted")
    limiter.tick()  # the window is not over: nothing yet
    assert limiter._window_start is not None
    limiter.tick(limiter._window_start + 60.0)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "bad 0",
        "bad 1",
        "bad 2",
        "meter x: 8 more log lines held back in the last 60 s (at most 3 a "
        "window): line 7, diagnosis 1; the metrics count every one",
    ]
    assert limiter.log("line:9", logging.WARNING, "bad 9")  # a new window, a new budget
    limiter.tick(limiter._window_start + 60.0)  # nothing held: no summary
    assert sum(r.levelno == logging.WARNING for r in caplog.records) == 5


def test_log_limiter_forgets_its_oldest_key_when_full(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("p1_exporter.test_limiter")
    caplog.set_level(logging.WARNING, logger=logger.name)
    limiter = LogLimiter(logger, max_keys=3)
    for key in "abcd":
        assert limiter.log(key, logging.WARNING, key)
    assert not limiter.active("a")
    assert all(limiter.active(key) for key in "bcd")
    assert not limiter.log("b", logging.WARNING, "b")  # the others are still limited
