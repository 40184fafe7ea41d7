"""The meter reader on replayed captures (``file:``), the simulator (``sim://``) and a
source that fails in ways nobody planned for."""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path

import pytest

from p1_exporter.core.telegram import Telegram
from p1_exporter.meter.reader import MeterReader
from p1_exporter.meter.snapshot import Snapshot
from p1_exporter.meter.sources import open_source
from p1_exporter.sim.meter import SimulatedMeter
from tests.helpers.reader import NOTHING, counts, fast_config, messages, ok_count, running
from tests.helpers.telegrams import v5_at
from tests.helpers.wait import wait_for

START = 1_700_000_000.0
#: Registers that only ever rise.
CUMULATIVE = ("1-0:1.8.1", "1-0:1.8.2", "1-0:2.8.1", "1-0:2.8.2")


def capture(count: int, step: float = 1.0, seed: int = 11) -> list[bytes]:
    """``count`` telegrams of one simulated DSMR 5 meter, ``step`` seconds apart."""
    meter = SimulatedMeter("dsmr5", seed=seed, start=START)
    return [meter.telegram_at(START + i * step) for i in range(count)]


# -- file: --------------------------------------------------------------------------------


def test_fast_replay_counts_everything_then_goes_stale(
    tmp_path: Path, caplog_reader: pytest.LogCaptureFixture
) -> None:
    telegrams = capture(5, step=10.0)
    cut = telegrams[0][:120]  # the capture ends inside a telegram
    path = tmp_path / "capture.txt"
    path.write_bytes(b"".join(telegrams) + cut)
    config = fast_config(f"file:{path}?pace=fast", stale_after=0.5)
    with running(config) as reader:
        wait_for(lambda: reader.snapshot.last_error is not None)
        snap = reader.snapshot
        assert counts(snap) == {**NOTHING, "ok": 5, "malformed": 1}  # the cut one: torn
        assert snap.bytes_read == path.stat().st_size
        assert snap.telegram is not None and snap.telegram.raw == telegrams[-1]
        assert snap.telegram.meter_time == pytest.approx(START + 40.0, abs=1.0)
        assert (snap.connects, snap.glitches) == (1, 0)
        assert snap.source_errors == 1 and "replay finished" in (snap.last_error or "")
        assert not snap.connected and snap.source == f"file:{path}"
        wait_for(lambda: not reader.snapshot.fresh())
        assert reader.snapshot.current_telegram() is None
        time.sleep(0.3)
        assert reader.alive  # finished, waiting to be stopped: no reconnect loop
        assert reader.snapshot.connects == 1 and reader.snapshot.source_errors == 1
        assert len(messages(caplog_reader, "replay finished")) == 1  # said once, at any level


@pytest.mark.slow
def test_recorded_pace_follows_the_meter_clock(tmp_path: Path) -> None:
    telegrams = capture(3, step=1.0)
    path = tmp_path / "three.txt"
    path.write_bytes(b"".join(telegrams))
    arrivals: list[float] = []
    with running(fast_config(f"file:{path}?pace=recorded", stale_after=5.0)) as reader:
        began = time.monotonic()
        for n in (1, 2, 3):
            wait_for(lambda: ok_count(reader) >= n)  # noqa: B023
            arrivals.append(time.monotonic() - began)
        snap = reader.snapshot
        assert counts(snap) == {**NOTHING, "ok": 3}
        assert snap.bytes_read == len(b"".join(telegrams))
        assert snap.telegram is not None and snap.telegram.raw == telegrams[2]
    # Not before the meter clock says (one second apart); how close is not timed here.
    assert arrivals[1] - arrivals[0] >= 0.8
    assert arrivals[2] - arrivals[0] >= 1.8


def test_looped_replay_keeps_going(tmp_path: Path) -> None:
    telegrams = capture(3, step=10.0)
    path = tmp_path / "loop.txt"
    path.write_bytes(b"".join(telegrams))
    with running(fast_config(f"file:{path}?pace=fast&loop=1")) as reader:
        wait_for(lambda: ok_count(reader) >= 12)
        snap = reader.snapshot
        assert reader.alive and snap.connected and snap.source_errors == 0
        assert snap.telegrams["crc_error"] == snap.telegrams["malformed"] == 0
        assert snap.telegram is not None and snap.telegram.raw in telegrams
        # Each wrap-around makes the registers go back: the guard withholds them.
        assert snap.glitches > 0


def test_missing_capture_file_is_a_source_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.txt"
    with running(fast_config(f"file:{path}?pace=fast")) as reader:
        wait_for(lambda: reader.snapshot.source_errors >= 2)
        snap = reader.snapshot
        assert reader.alive and snap.connects == 0 and counts(snap) == NOTHING
        assert snap.last_error is not None and str(path) in snap.last_error


def test_unknown_file_option_is_refused() -> None:
    with pytest.raises(ValueError, match="speed"):
        open_source("file:/tmp/x.txt?speed=2")


# -- sim:// -------------------------------------------------------------------------------


@pytest.mark.slow
def test_simulated_meter_registers_only_rise() -> None:
    seen: list[Telegram] = []
    with running(fast_config("sim://?seed=1&interval=0.2")) as reader:

        def collect() -> bool:
            telegram = reader.snapshot.telegram
            if telegram is not None and (not seen or telegram is not seen[-1]):
                seen.append(telegram)
            return len(seen) >= 5

        wait_for(collect, interval=0.02)
        snap = reader.snapshot
        assert snap.telegrams["ok"] >= 5 and counts(snap) == {**NOTHING, "ok": snap.telegrams["ok"]}
        assert snap.bytes_read >= sum(len(t.raw) for t in seen)
        assert (snap.connects, snap.source_errors, snap.glitches) == (1, 0, 0)
        assert snap.source == "sim://?seed=1&interval=0.2" and snap.settings is None
    for before, after in itertools.pairwise(seen):
        assert after.meter_time is not None and before.meter_time is not None
        assert after.meter_time >= before.meter_time
        for code in CUMULATIVE:
            assert after.value(code) is not None, code
            assert after.value(code) >= before.value(code)  # type: ignore[operator]
        gas_before, gas_after = before.mbus[1].reading, after.mbus[1].reading
        assert gas_before is not None and gas_after is not None
        assert gas_after.value >= gas_before.value
    assert all(t.crc_verified and t.equipment_id == seen[0].equipment_id for t in seen)


@pytest.mark.slow
def test_simulated_crc_errors_are_counted_and_diagnosed_once(
    caplog_reader: pytest.LogCaptureFixture,
) -> None:
    url = "sim://?crc_error_rate=0.5&seed=2&interval=0.05"
    with running(fast_config(url)) as reader:

        def seen() -> int:
            snap = reader.snapshot
            return snap.telegrams["ok"] + snap.telegrams["crc_error"]

        wait_for(lambda: seen() >= 30)
        snap = reader.snapshot
        total = snap.telegrams["ok"] + snap.telegrams["crc_error"]
        assert 0.2 <= snap.telegrams["crc_error"] / total <= 0.8
        assert snap.telegrams["malformed"] == snap.telegrams["rejected"] == 0
        assert snap.telegram is not None and snap.telegram.crc_verified
        assert snap.source_errors == 0 and snap.glitches == 0
        (alarm,) = messages(caplog_reader, "CRC errors in", logging.WARNING)
        assert "check the wiring" in alarm
        assert len(messages(caplog_reader, "refused (crc_error)", logging.WARNING)) == 1


# -- sources that fail unexpectedly --------------------------------------------------------


class Faulty:
    """A source that serves telegrams in order, but raises RuntimeError where told to."""

    description = "faulty://"

    def __init__(self, script: list[bytes | Exception], fail_opens: int = 0) -> None:
        self.script = list(script)
        self.fail_opens = fail_opens
        self.opens = 0

    def open(self) -> None:
        self.opens += 1
        if self.opens <= self.fail_opens:
            raise RuntimeError("driver bug in open")

    def read(self, timeout: float) -> bytes:
        if not self.script:
            time.sleep(timeout)
            return b""
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def close(self) -> None:
        pass


def test_unexpected_errors_never_escape_the_thread(
    caplog_reader: pytest.LogCaptureFixture,
) -> None:
    telegrams = [v5_at(f"00000{i}.000") for i in range(5, 10)]
    script: list[bytes | Exception] = [
        telegrams[0],
        telegrams[1],
        RuntimeError("boom"),
        telegrams[2],
        telegrams[3],
        RuntimeError("boom again"),  # the same bug (same place) once more
        telegrams[4],
    ]
    source = Faulty(script, fail_opens=1)
    with running(fast_config("faulty://"), source=source) as reader:
        wait_for(lambda: ok_count(reader) == 5)
        snap = reader.snapshot
        assert reader.alive and snap.connected
        assert snap.telegram is not None and snap.telegram.raw == telegrams[4]
        assert counts(snap) == {**NOTHING, "ok": 5}
        assert snap.bytes_read == sum(len(t) for t in telegrams)
        assert snap.source_errors == 3 and snap.connects == 3 and source.opens == 4
        assert snap.last_error is not None and "boom again" in snap.last_error
        # Each bug's traceback once, at error level; the repeat is counted, without one.
        errors = [
            r
            for r in caplog_reader.records
            if r.levelno == logging.ERROR and "unexpected error" in r.getMessage()
        ]
        assert [str(r.exc_info[1]) for r in errors if r.exc_info] == ["driver bug in open", "boom"]
        assert all(
            getattr(r, "meter", None) == "test" and getattr(r, "err", None) == "internal"
            for r in errors
        )
        repeat = messages(caplog_reader, "boom again")
        assert len(repeat) == 1 and not any(
            r.exc_info for r in caplog_reader.records if "boom again" in r.getMessage()
        )
        # Said after the repeat (an error line with its traceback is not a logged condition).
        assert len(messages(caplog_reader, "valid telegrams", logging.INFO)) == 1


# -- the telegram listener (the live page's history) -------------------------------------------


def test_listener_sees_each_new_telegram_once_and_cannot_break_the_reader(
    tmp_path: Path, caplog_reader: pytest.LogCaptureFixture
) -> None:
    telegrams = capture(4, step=10.0)
    path = tmp_path / "capture.txt"
    path.write_bytes(b"".join(telegrams))
    seen: list[bytes] = []

    def listener(snap: Snapshot) -> None:
        assert snap.telegram is not None
        seen.append(snap.telegram.raw)
        raise RuntimeError("listener bug")

    reader = MeterReader(fast_config(f"file:{path}?pace=fast"), on_telegram=listener)
    reader.start()
    try:
        wait_for(lambda: reader.snapshot.last_error is not None)
    finally:
        reader.stop()
    assert seen == telegrams
    assert ok_count(reader) == 4
    assert messages(caplog_reader, "telegram listener failed", logging.WARNING) == [
        "meter test: telegram listener failed: RuntimeError('listener bug')"
    ]
