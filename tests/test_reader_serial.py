"""The meter reader on a serial port: a real pty stands in for the P1 cable.

Each test checks both what the reader published (telegram values, freshness)
and what it counted (per-result telegrams, bytes, connects, source errors).
"""

from __future__ import annotations

import logging
import os
import pwd
import termios
import time
from dataclasses import replace
from pathlib import Path

import pytest

from p1_exporter.core import TelegramStream
from p1_exporter.meter.meterset import Meter
from p1_exporter.meter.sources import SerialSettings, SerialSource, SourceError
from p1_exporter.sim.meter import SimulatedMeter
from p1_exporter.sim.uart import transcode
from tests.helpers.fixtures import V2_2, V5
from tests.helpers.reader import (
    NOTHING,
    ManualClock,
    Pty,
    counts,
    fast_config,
    messages,
    ok_count,
    open_pty,
    point,
    pty_pair,
    running,
)
from tests.helpers.telegrams import corrupt_crc as corrupt
from tests.helpers.telegrams import v5_at
from tests.helpers.wait import wait_for


def test_telegrams_from_a_pty_are_published_with_their_values() -> None:
    second = v5_at("000004.500")
    with pty_pair() as pty, running(fast_config(pty.path)) as reader:
        wait_for(lambda: reader.snapshot.connected)
        pty.write(V5)
        wait_for(lambda: ok_count(reader) == 1)
        snap = reader.snapshot
        assert snap.telegram is not None and snap.telegram.raw == V5
        assert snap.telegram.equipment_id == "K8EG004046395507"
        assert snap.telegram.value("1-0:1.8.1") == pytest.approx(4.426 * 3.6e6)
        assert snap.telegram.value("1-0:1.7.0") == pytest.approx(244.0)
        assert snap.telegram.mbus[1].reading is not None
        assert snap.telegram.mbus[1].reading.value == pytest.approx(0.107)
        assert snap.fresh() and snap.current_telegram() is snap.telegram
        pty.write(second)
        wait_for(lambda: ok_count(reader) == 2)
        snap = reader.snapshot
        assert snap.telegram is not None
        assert snap.telegram.value("1-0:1.8.1") == pytest.approx(4.5 * 3.6e6)
        assert counts(snap) == {**NOTHING, "ok": 2}
        assert snap.bytes_read == len(V5) + len(second)
        assert (snap.connects, snap.source_errors, snap.glitches) == (1, 0, 0)
        assert snap.connected and snap.settings == "115200 8N1"
        assert snap.last_error is None


def test_garbage_and_torn_telegrams_between_good_ones() -> None:
    noise = b"\x00\xff\x13\x91line noise\r\n" * 20  # no "/": not even the start of a frame
    torn = v5_at("000004.430")[:300]  # broken off: the next "/" starts a new telegram
    slash_noise = b"/\x00\xfe\x80\x13"  # a stray "/" opens a frame that never ends
    good = [V5, v5_at("000004.431"), v5_at("000004.432")]
    stream = noise + good[0] + noise + torn + good[1] + slash_noise + noise + good[2]
    with pty_pair() as pty, running(fast_config(pty.path)) as reader:
        wait_for(lambda: reader.snapshot.connected)
        pty.write(stream)
        wait_for(lambda: ok_count(reader) == 3)
        snap = reader.snapshot
        assert counts(snap) == {**NOTHING, "ok": 3, "malformed": 2}
        assert snap.bytes_read == len(stream)
        assert snap.telegram is not None and snap.telegram.raw == good[2]
        assert snap.telegram.value("1-0:1.8.1") == pytest.approx(4.432 * 3.6e6)
        assert (snap.connects, snap.source_errors, snap.glitches) == (1, 0, 0)


def test_byte_at_a_time_delivery() -> None:
    with pty_pair() as pty, running(fast_config(pty.path)) as reader:
        wait_for(lambda: reader.snapshot.connected)
        pty.write_slowly(V5[:200], chunk=1, pause=0.001)
        pty.write_slowly(V5[200:], chunk=1)
        wait_for(lambda: ok_count(reader) == 1)
        snap = reader.snapshot
        assert snap.telegram is not None and snap.telegram.raw == V5
        assert snap.telegram.value("1-0:2.8.1") == pytest.approx(2.444 * 3.6e6)
        assert counts(snap) == {**NOTHING, "ok": 1}
        assert snap.bytes_read == len(V5)


def test_crc_error_is_counted_and_never_published() -> None:
    bad = corrupt(v5_at("000004.600"))
    with pty_pair() as pty, running(fast_config(pty.path)) as reader:
        wait_for(lambda: reader.snapshot.connected)
        pty.write(bad)
        wait_for(lambda: reader.snapshot.telegrams["crc_error"] == 1)
        snap = reader.snapshot
        assert snap.telegram is None and snap.current_telegram() is None and not snap.fresh()
        assert counts(snap) == {**NOTHING, "crc_error": 1}
        pty.write(V5 + bad)
        wait_for(lambda: reader.snapshot.telegrams["crc_error"] == 2)
        snap = reader.snapshot
        assert snap.telegram is not None and snap.telegram.raw == V5  # not the corrupt one
        assert snap.telegram.value("1-0:1.8.1") == pytest.approx(4.426 * 3.6e6)
        assert counts(snap) == {**NOTHING, "ok": 1, "crc_error": 2}
        assert snap.bytes_read == 2 * len(bad) + len(V5)
        assert snap.source_errors == 0


def test_unplug_and_replug_through_the_same_path(
    tmp_path: Path, caplog_reader: pytest.LogCaptureFixture
) -> None:
    link = tmp_path / "ttyUSB-p1"
    first, second = open_pty(), None
    point(link, first.path)
    try:
        with running(fast_config(str(link))) as reader:
            wait_for(lambda: reader.snapshot.connected)
            first.write(V5)
            wait_for(lambda: ok_count(reader) == 1)
            first.close()  # unplug: the pty (and its /dev/pts node) goes away
            wait_for(lambda: not reader.snapshot.connected)
            wait_for(lambda: reader.snapshot.source_errors >= 3)  # it keeps trying
            snap = reader.snapshot
            assert reader.alive and snap.connects == 1 and not snap.connected
            assert snap.telegram is not None and snap.telegram.raw == V5  # kept, ages out
            assert messages(caplog_reader, "disconnected", logging.WARNING)
            assert len(messages(caplog_reader, "does not exist", logging.WARNING)) == 1

            second = open_pty()  # replug: a new device node behind the same stable name
            point(link, second.path)
            wait_for(lambda: reader.snapshot.connects == 2 and reader.snapshot.connected)
            newer = v5_at("000004.700")
            second.write(newer)
            wait_for(lambda: ok_count(reader) == 2)
            snap = reader.snapshot
            assert snap.telegram is not None and snap.telegram.raw == newer
            assert snap.fresh()
            assert counts(snap) == {**NOTHING, "ok": 2}
            assert snap.bytes_read == len(V5) + len(newer)
            assert snap.connected and snap.connects == 2 and snap.glitches == 0
            assert len(messages(caplog_reader, "valid telegrams", logging.INFO)) == 1
    finally:
        first.close()
        if second is not None:
            second.close()


@pytest.mark.slow
def test_device_missing_at_start_is_waited_for(
    tmp_path: Path, caplog_reader: pytest.LogCaptureFixture
) -> None:
    link = tmp_path / "by-id-meter"
    with pty_pair() as pty, running(fast_config(str(link))) as reader:
        wait_for(lambda: reader.snapshot.source_errors >= 4)
        snap = reader.snapshot
        assert reader.alive and not snap.connected and snap.connects == 0
        assert snap.last_error is not None and "does not exist" in snap.last_error
        assert counts(snap) == NOTHING and snap.telegram is None
        assert len(messages(caplog_reader, "does not exist", logging.WARNING)) == 1
        assert len(messages(caplog_reader, "does not exist")) >= 4  # the rest at debug

        point(link, pty.path)
        wait_for(lambda: reader.snapshot.connected)
        pty.write(V5)
        wait_for(lambda: ok_count(reader) == 1)
        snap = reader.snapshot
        assert snap.connects == 1 and snap.telegram is not None and snap.telegram.raw == V5
        assert counts(snap) == {**NOTHING, "ok": 1} and snap.bytes_read == len(V5)
        assert messages(caplog_reader, "connected to", logging.INFO)
        assert len(messages(caplog_reader, "does not exist", logging.WARNING)) == 1


def open_as(uid: int, gid: int, path: str) -> tuple[str, str]:
    """Open ``path`` with a SerialSource in a child process running as ``uid``/``gid``.

    A fork, not a new interpreter: the project's interpreter may live where the
    unprivileged user cannot execute it.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, try, report, leave without cleanup
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            try:
                SerialSource(path).open()
                report = "opened\nopened"
            except SourceError as exc:
                report = f"{exc.kind}\n{exc}"
            os.write(write_end, report.encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, report
    kind, message = report.split("\n", 1)
    return kind, message


def test_permission_denied_names_the_dialout_group() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to open a port as user nobody")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    with pty_pair() as pty:
        os.chmod(pty.path, 0o600)
        kind, message = open_as(nobody.pw_uid, nobody.pw_gid, pty.path)
        assert kind == "permission"
        assert "dialout" in message and pty.path in message
        os.chmod(pty.path, 0o666)  # the same port, readable: the same user opens it
        assert open_as(nobody.pw_uid, nobody.pw_gid, pty.path)[0] == "opened"


def test_second_reader_of_a_port_is_refused_as_busy(
    caplog_reader: pytest.LogCaptureFixture,
) -> None:
    with pty_pair() as pty:
        first = SerialSource(pty.path)
        first.open()
        try:
            with pytest.raises(SourceError) as raised:
                SerialSource(pty.path).open()
            assert raised.value.kind == "busy"
            assert "in use" in str(raised.value)
            with running(fast_config(pty.path)) as reader:
                wait_for(lambda: reader.snapshot.source_errors >= 3)
                assert not reader.snapshot.connected and reader.snapshot.connects == 0
                assert len(messages(caplog_reader, "in use", logging.WARNING)) == 1
                first.close()  # the other program lets go
                wait_for(lambda: reader.snapshot.connected)
                pty.write(V5)
                wait_for(lambda: ok_count(reader) == 1)
                assert reader.snapshot.connects == 1
        finally:
            first.close()


def pty_takes_7e1() -> bool:
    """True when this kernel's ptys accept 7 data bits with parity (Linux does; some
    sandboxed kernels refuse any c_cflag but CS8 without parity)."""
    with pty_pair() as pty:
        attrs = termios.tcgetattr(pty.slave)
        attrs[2] = (attrs[2] & ~termios.CSIZE) | termios.CS7 | termios.PARENB
        try:
            termios.tcsetattr(pty.slave, termios.TCSANOW, attrs)
        except termios.error:
            return False
        cflag = termios.tcgetattr(pty.slave)[2]
        return cflag & termios.CSIZE == termios.CS7 and bool(cflag & termios.PARENB)


# What a 115200 8N1 receiver reads from a 9600 7E1 meter: only breaks (0x00).
WRONG_BAUD = transcode(V2_2 * 3, "9600-7E1", "115200-8N1")


def diagnose_wrong_baud(pty: Pty, reader: Meter, caplog: pytest.LogCaptureFixture) -> None:
    """Send DSMR 2.2 bytes as read at 115200 8N1: nothing framed, one diagnosis."""
    assert len(WRONG_BAUD) >= 3000 and set(WRONG_BAUD) == {0}
    wait_for(lambda: reader.snapshot.connected)
    assert reader.snapshot.settings == "115200 8N1"
    pty.write(WRONG_BAUD)
    wait_for(lambda: messages(caplog, "without one telegram"))
    snap = reader.snapshot
    assert counts(snap) == NOTHING  # not one frame, good or bad
    assert snap.bytes_read == len(WRONG_BAUD) and snap.telegram is None
    (line,) = messages(caplog, "without one telegram", logging.WARNING)
    assert "mostly 0x00" in line and "speed" in line


#: The exporter's own detection and silence timeouts, passed on an injected clock.
DETECT, SILENCE = 25.0, 30.0


def test_autodetect_switches_to_dsmr22_and_locks(caplog_reader: pytest.LogCaptureFixture) -> None:
    if not pty_takes_7e1():
        pytest.skip("this kernel's ptys refuse 7E1 (see the test below)")
    clock = ManualClock()
    config = fast_config("", detect_timeout=DETECT, silence_timeout=SILENCE)
    with pty_pair() as pty, running(replace(config, url=pty.path), clock=clock) as reader:
        diagnose_wrong_baud(pty, reader, caplog_reader)
        clock.advance(DETECT - 1)
        reader.wake()
        time.sleep(0.2)
        assert reader.snapshot.settings == "115200 8N1"  # not before the detect timeout
        clock.advance(1.5)
        reader.wake()
        # On a pty the line settings do not change the bytes; a real port would now
        # deliver the meter's telegram as sent.
        wait_for(lambda: reader.snapshot.settings == "9600 7E1")
        pty.write(V2_2)
        wait_for(lambda: ok_count(reader) == 1)
        snap = reader.snapshot
        assert snap.settings == "9600 7E1"
        assert snap.telegram is not None and snap.telegram.raw == V2_2
        assert snap.telegram.dsmr_version is None and not snap.telegram.crc_verified
        assert snap.telegram.value("1-0:1.7.0") == pytest.approx(1010.0)
        assert counts(snap) == {**NOTHING, "ok": 1}
        assert snap.bytes_read == len(WRONG_BAUD) + len(V2_2)
        assert (snap.connects, snap.source_errors) == (1, 0)
        assert len(messages(caplog_reader, "detected 9600 7E1", logging.INFO)) == 1

        clock.advance(DETECT + 1)  # longer than the detect timeout: locked, no more switching
        reader.wake()
        time.sleep(0.2)
        assert reader.snapshot.settings == "9600 7E1"
        assert len(messages(caplog_reader, "without one telegram")) == 1
        assert not messages(caplog_reader, "trying 115200")


@pytest.mark.slow
def test_autodetect_moves_on_when_the_port_refuses_7e1(
    caplog_reader: pytest.LogCaptureFixture,
) -> None:
    if pty_takes_7e1():
        pytest.skip("this kernel's ptys accept 7E1 (see the test above)")
    clock = ManualClock()
    config = fast_config("", detect_timeout=DETECT, silence_timeout=SILENCE)
    with pty_pair() as pty, running(replace(config, url=pty.path), clock=clock) as reader:
        diagnose_wrong_baud(pty, reader, caplog_reader)
        clock.advance(DETECT + 0.5)
        reader.wake()
        # The switch to 9600 7E1 is refused: counted, logged once, back to 115200 8N1.
        wait_for(lambda: reader.snapshot.source_errors >= 1)
        wait_for(lambda: reader.snapshot.connected)
        snap = reader.snapshot
        assert reader.alive and snap.connects == 2 and snap.settings == "115200 8N1"
        assert snap.last_error is not None and "does not accept 9600 7E1" in snap.last_error
        assert len(messages(caplog_reader, "does not accept", logging.WARNING)) == 1
        assert not messages(caplog_reader, "unexpected error")
        pty.write(V5)
        wait_for(lambda: ok_count(reader) == 1)
        snap = reader.snapshot
        assert snap.settings == "115200 8N1" and snap.telegram is not None
        assert snap.telegram.raw == V5
        assert counts(snap) == {**NOTHING, "ok": 1}
        assert snap.bytes_read == len(WRONG_BAUD) + len(V5)
        clock.advance(DETECT + 1)  # locked now: no more switching, no more errors
        reader.wake()
        time.sleep(0.2)
        assert reader.snapshot.settings == "115200 8N1"
        assert reader.snapshot.source_errors == snap.source_errors


def test_dsmr22_bytes_read_at_115200_never_frame_a_telegram(
    caplog_reader: pytest.LogCaptureFixture,
) -> None:
    meter = SimulatedMeter("dsmr22", seed=4, start=1.7e9)
    wrong = b"".join(
        transcode(meter.telegram_at(1.7e9 + 10 * i), "9600-7E1", "115200-8N1") for i in range(6)
    )
    assert TelegramStream().feed(wrong) == []
    fixed = SerialSettings.parse("115200-8N1")
    with pty_pair() as pty, running(fast_config(pty.path, settings=fixed)) as reader:
        wait_for(lambda: reader.snapshot.connected)
        pty.write(wrong)
        wait_for(lambda: reader.snapshot.bytes_read == len(wrong))
        snap = reader.snapshot
        assert counts(snap) == NOTHING and snap.telegram is None
        assert snap.settings == "115200 8N1"  # fixed settings are never switched
        assert len(wrong) > 2 * 3000
        (line,) = messages(caplog_reader, "without one telegram", logging.WARNING)
        assert "speed" in line and "9600 7E1" in line


def test_not_inverted_signal_is_diagnosed_once(caplog_reader: pytest.LogCaptureFixture) -> None:
    meter = SimulatedMeter("dsmr5", seed=5, start=1.7e9)
    inverted = b"".join(
        transcode(meter.telegram_at(1.7e9 + i), "115200-8N1", "115200-8N1", inverted=True)
        for i in range(8)
    )
    # The stray "/" bytes open frames that break off: framing errors, never a telegram.
    expected = TelegramStream().feed(inverted)
    assert expected and all(o.telegram is None and o.result == "malformed" for o in expected)
    fixed = SerialSettings.parse("115200-8N1")
    with pty_pair() as pty, running(fast_config(pty.path, settings=fixed)) as reader:
        wait_for(lambda: reader.snapshot.connected)
        pty.write(inverted)
        wait_for(lambda: reader.snapshot.bytes_read == len(inverted))
        snap = reader.snapshot
        assert counts(snap) == {**NOTHING, "malformed": len(expected)}
        assert snap.telegram is None and snap.source_errors == 0
        (line,) = messages(caplog_reader, "without one telegram", logging.WARNING)
        assert "not inverted" in line
        assert not messages(caplog_reader, "arrived torn")  # not mistaken for a shared port
        # The snapshot carries the diagnosis too (the live page shows it).
        wait_for(lambda: reader.snapshot.diagnostics == (line,))


def test_staleness_follows_the_last_valid_telegram() -> None:
    with pty_pair() as pty, running(fast_config(pty.path, stale_after=0.5)) as reader:
        wait_for(lambda: reader.snapshot.connected)
        assert reader.snapshot.age() is None and not reader.snapshot.fresh()
        pty.write(V5)
        wait_for(lambda: ok_count(reader) == 1)
        snap = reader.snapshot
        age = snap.age()
        assert age is not None and age < 0.5
        assert snap.fresh() and snap.current_telegram() is snap.telegram
        assert snap.received_at is not None and abs(snap.received_at - time.time()) < 2
        wait_for(lambda: not reader.snapshot.fresh())
        snap = reader.snapshot
        assert snap.current_telegram() is None
        assert snap.telegram is not None and snap.telegram.raw == V5  # kept, just stale
        assert (snap.age() or 0.0) >= 0.5
        assert snap.connected and snap.source_errors == 0  # silence_timeout not reached
        newer = v5_at("000004.800")
        pty.write(newer)
        wait_for(lambda: reader.snapshot.fresh())
        snap = reader.snapshot
        current = snap.current_telegram()
        assert current is not None and current.raw == newer
        assert counts(snap) == {**NOTHING, "ok": 2}


def test_stop_is_prompt_while_a_port_is_open() -> None:
    with pty_pair() as pty:
        reader_cm = running(fast_config(pty.path))
        with reader_cm as reader:
            wait_for(lambda: reader.snapshot.connected)
            pty.write(V5)
            wait_for(lambda: ok_count(reader) == 1)
        assert not reader.alive
        assert not reader.snapshot.connected
        # The port was released: another program may open it exclusively now.
        other = SerialSource(pty.path)
        other.open()
        other.close()
