"""Capture files: the format, damage handling, rotation, ``p1-exporter capture`` and replay."""

from __future__ import annotations

import io
import logging
import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import p1_exporter.history.capture as capture_module
from p1_exporter.commands.capture import SILENCE_TIMEOUT, Capture, parse_size
from p1_exporter.commands.cli import main
from p1_exporter.core import TelegramStream
from p1_exporter.history.capture import (
    CaptureError,
    CaptureReader,
    CaptureRecorder,
    CaptureWriter,
    Record,
    encode_record,
    parse_header,
    read_records,
)
from p1_exporter.meter.sources import FileSource, open_source
from p1_exporter.sim.faults import FaultInjector
from p1_exporter.sim.meter import SimulatedMeter
from p1_exporter.sim.outputs import TcpSink
from tests.helpers.reader import Dongle, ManualClock, counts, fast_config, running
from tests.helpers.wait import wait_for

START = 1_718_143_200.0


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """``capture`` sets up the package's logging; put it back for the tests after these."""
    logger = logging.getLogger("p1_exporter")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def telegrams(count: int, dialect: str = "dsmr5", seed: int = 5) -> list[bytes]:
    meter = SimulatedMeter(dialect, seed=seed, start=START)
    return [meter.telegram_at(START + index) for index in range(count)]


TELEGRAMS = telegrams(6)


def records_of(data: bytes) -> list[Record]:
    return read_records(data)[0]


# -- the format -------------------------------------------------------------------------------


def test_records_round_trip_byte_exact() -> None:
    awkward = bytes(range(256)) * 3 + b"\n\n#P1CAPTURE v1\n"  # any bytes, even a near-header
    originals = [
        Record(START + 0.25, "ok", TELEGRAMS[0]),
        Record(START + 1.5, "crc_error", TELEGRAMS[1], 'CRC mismatch: "quoted" \\ and\nnewline'),
        Record(START + 2, "malformed", b"", "torn telegram: a new one started after 0 bytes"),
        Record(START + 3.999, "too_large", awkward, "telegram exceeds 16384 bytes"),
    ]
    blob = b"".join(encode_record(*record) for record in originals)
    assert blob.startswith(b"#P1CAPTURE v1 t=1718143200.250 result=ok len=%d\n" % len(TELEGRAMS[0]))
    records, issues = read_records(blob)
    assert issues == []
    assert [(r.result, r.data, r.reason) for r in records] == [
        (r.result, r.data, r.reason) for r in originals
    ]
    assert [round(r.time, 3) for r in records] == [round(r.time, 3) for r in originals]


@pytest.mark.parametrize(
    "line",
    [
        b"#P1CAPTURE v2 t=1 result=ok len=3",
        b"#P1CAPTURE v1 t=x result=ok len=3",
        b"#P1CAPTURE v1 t=1 result=OK len=3",
        b"#P1CAPTURE v1 t=1 result=ok len=-3",
        b"#P1CAPTURE v1 t=1 result=ok len=99999999999",
        b"#P1CAPTURE v1 t=1 result=ok",
        b"#P1CAPTURE v1 t=1 result=ok len=3 reason=unquoted",
        b'#P1CAPTURE v1 t=1 result=ok len=3 reason="a" b"',
        b"#P1CAPTURE v1 t=17#P1CAPTURE v1 t=1 result=ok len=3",
    ],
)
def test_header_parser_refuses_anything_else(line: bytes) -> None:
    assert parse_header(line) is None


def test_header_parser_reads_its_own_headers() -> None:
    assert parse_header(b'#P1CAPTURE v1 t=12.500 result=crc_error len=7 reason="x \\"y\\""') == (
        12.5,
        "crc_error",
        7,
        'x "y"',
    )


def capture_bytes(count: int = 4) -> bytes:
    return b"".join(encode_record(START + i, "ok", TELEGRAMS[i]) for i in range(count))


def test_a_cut_off_last_record_is_skipped_and_reported_wherever_it_was_cut() -> None:
    good = capture_bytes(3)
    last = encode_record(START + 9, "ok", TELEGRAMS[3])
    for cut in [*range(1, 60), *range(60, len(last), 97), len(last) - 1]:
        reader = CaptureReader(io.BytesIO(good + last[:cut]))
        records = list(reader)
        assert [r.data for r in records] == TELEGRAMS[:3], cut
        assert (reader.truncated, reader.damaged) == (1, 0), cut
        assert "cut off" in reader.issues[0] and f"offset {len(good)}" in reader.issues[0]


def test_damage_in_the_middle_costs_only_the_damaged_record() -> None:
    blob = bytearray(capture_bytes(4))
    second = blob.index(b"#P1CAPTURE", 1)
    blob[second + 40] = ord("X")  # the length digits of the second header
    records, issues = read_records(bytes(blob))
    assert [r.data for r in records] == [TELEGRAMS[0], TELEGRAMS[2], TELEGRAMS[3]]
    assert len(issues) == 1 and "unreadable record header" in issues[0]
    # A wrong length (the data runs into the next record) is caught too.
    size = len(TELEGRAMS[1])
    text = capture_bytes(4).replace(b"len=%d" % size, b"len=%d" % (size + 30), 1)
    records, issues = read_records(text)
    assert len(records) == 3 and "damaged record" in issues[0]


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_reading_does_not_depend_on_chunk_boundaries(
    monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    blob = b"junk" + capture_bytes(4) + encode_record(START, "ok", TELEGRAMS[4])[:700]
    expected_records, expected_issues = read_records(blob)
    monkeypatch.setattr(capture_module, "CHUNK", chunk)
    records, issues = read_records(blob)
    assert records == expected_records and issues == expected_issues
    assert len(records) == 4 and len(issues) == 2


def test_reading_a_range_starts_and_stops_at_record_boundaries() -> None:
    blob = capture_bytes(4)
    second = blob.index(b"#P1CAPTURE", 1)
    fourth = blob.index(b"#P1CAPTURE", blob.index(b"#P1CAPTURE", second + 1) + 1)
    handle = io.BytesIO(blob)
    first_half = list(CaptureReader(handle, 0, second + 1))
    rest = list(CaptureReader(handle, capture_module.next_record_start(handle, second + 1)))
    assert [r.data for r in first_half] == TELEGRAMS[:2]
    assert [r.data for r in rest] == TELEGRAMS[2:4]
    assert capture_module.next_record_start(handle, fourth) == fourth


# -- writing and rotation -------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [10, 30, 60, 500, -1])
def test_appending_after_a_crash_mid_record(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "meter.p1cap"
    writer = CaptureWriter(str(path))
    writer.open()
    for index in range(3):
        writer.write(Record(START + index, "ok", TELEGRAMS[index]))
    writer.close()
    size = path.stat().st_size
    os.truncate(path, size + cut if cut < 0 else size - len(TELEGRAMS[2]) - 60 + cut)
    writer = CaptureWriter(str(path))
    writer.open()
    assert writer.torn_tail
    for index in (3, 4):
        writer.write(Record(START + index, "ok", TELEGRAMS[index]))
    writer.close()
    records, issues = read_records(path.read_bytes())
    assert [r.data for r in records] == [TELEGRAMS[i] for i in (0, 1, 3, 4)]
    assert len(issues) == 1 and "skipped" in issues[0]
    again = CaptureWriter(str(path))
    again.open()
    assert not again.torn_tail
    again.close()


def test_rotation_keeps_the_newest_records_in_order(tmp_path: Path) -> None:
    path = tmp_path / "meter.p1cap"
    size = len(encode_record(START, "ok", TELEGRAMS[0]))
    writer = CaptureWriter(str(path), max_bytes=3 * size + 10, backups=2)
    writer.open()
    written = [Record(START + i, "ok", TELEGRAMS[0]) for i in range(10)]  # 3 fit in a file
    for record in written:
        writer.write(record)
    writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "meter.p1cap",
        "meter.p1cap.1",
        "meter.p1cap.2",
    ]
    assert writer.rotations == 3
    for name in ("meter.p1cap", "meter.p1cap.1", "meter.p1cap.2"):
        assert (tmp_path / name).stat().st_size <= 3 * size + 10
    kept = [
        r
        for name in ("meter.p1cap.2", "meter.p1cap.1", "meter.p1cap")
        for r in records_of((tmp_path / name).read_bytes())
    ]
    assert [r.time for r in kept] == [r.time for r in written[3:]]  # 0-2 went with FILE.3


def test_rotation_without_backups_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "meter.p1cap"
    size = len(encode_record(START, "ok", TELEGRAMS[0]))
    writer = CaptureWriter(str(path), max_bytes=2 * size, backups=0)
    writer.open()
    for i in range(5):
        writer.write(Record(START + i, "ok", TELEGRAMS[0]))
    writer.close()
    assert [p.name for p in tmp_path.iterdir()] == ["meter.p1cap"]
    assert [r.time for r in records_of(path.read_bytes())] == [START + 4]


def test_a_file_moved_away_by_logrotate_is_reopened(tmp_path: Path) -> None:
    path = tmp_path / "meter.p1cap"
    writer = CaptureWriter(str(path), max_bytes=0)
    writer.open()
    writer.write(Record(START, "ok", TELEGRAMS[0]))
    path.rename(tmp_path / "meter.p1cap.old")
    writer.write(Record(START + 1, "ok", TELEGRAMS[1]))
    writer.close()
    assert [r.data for r in records_of(path.read_bytes())] == [TELEGRAMS[1]]


def test_the_writer_refuses_to_append_to_something_else(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(TELEGRAMS[0])
    with pytest.raises(CaptureError, match="not a p1-exporter capture"):
        CaptureWriter(str(path)).open()
    assert main(["capture", "--device", "sim://?seed=1", "--out", str(path), "--count", "1"]) == 2
    assert path.read_bytes() == TELEGRAMS[0]


def test_sizes() -> None:
    assert parse_size("10485760") == 10 * 1024 * 1024
    assert parse_size("10M") == parse_size("10MiB") == parse_size("10mb") == 10 * 1024 * 1024
    assert parse_size("512k") == 512 * 1024
    assert parse_size("0") == 0


# -- from bytes on a line to records ---------------------------------------------------------


def faulty_stream(count: int, seed: int) -> tuple[list[bytes], list[bytes], FaultInjector]:
    """(originals, what went on the wire per telegram, the injector)."""
    faults = FaultInjector(seed, crc_error_rate=0.25, garbage_rate=0.25, torn_rate=0.2)
    originals = telegrams(count, seed=seed)
    wire = [b"".join(chunk.data for chunk in faults.apply(t)) for t in originals]
    return originals, wire, faults


def check_records(records: list[Record], originals: list[bytes], wire: list[bytes]) -> None:
    """One record per telegram: good ones byte exact, damaged ones marked and kept."""
    assert len(records) == len(originals)
    for record, original, sent in zip(records, originals, wire, strict=True):
        telegram = sent[sent.index(b"/") :]  # what was sent, without the noise before it
        if telegram == original:
            assert (record.result, record.data, record.reason) == ("ok", original, "")
        elif len(telegram) == len(original):  # a digit changed
            assert (record.result, record.data) == ("crc_error", telegram)
            assert "CRC mismatch" in record.reason
        else:  # torn: the bytes that came, and the noise up to the next telegram
            assert record.result in ("malformed", "crc_error")  # cut in its CRC line
            assert record.data.startswith(telegram) and record.reason


def test_the_recorder_keeps_every_telegram_however_the_bytes_arrive() -> None:
    originals, wire, faults = faulty_stream(40, seed=9)
    assert faults.counts["crc_error"] and faults.counts["torn"] and faults.counts["garbage"]
    stream = b"".join(wire) + originals[0]  # a good one at the end ends the last torn one
    expected = CaptureRecorder().feed(stream, START)
    check_records(expected[:40], originals, wire)
    assert {r.result for r in expected} == {"ok", "crc_error", "malformed"}
    rng = random.Random(3)
    for _ in range(5):
        recorder = CaptureRecorder()
        got: list[Record] = []
        position = 0
        while position < len(stream):
            size = rng.choice((1, 2, 10, 100, 1000, 5000))
            got += recorder.feed(stream[position : position + size], START)
            position += size
        got += recorder.flush(START)
        assert [(r.result, r.data) for r in got] == [(r.result, r.data) for r in expected]


def test_a_torn_telegram_at_the_end_is_recorded_at_flush() -> None:
    recorder = CaptureRecorder()
    assert [r.result for r in recorder.feed(TELEGRAMS[0] + TELEGRAMS[1][:200], START)] == ["ok"]
    (torn,) = recorder.flush(START + 1)
    assert (torn.result, torn.data, torn.time) == ("malformed", TELEGRAMS[1][:200], START + 1)


@pytest.mark.integration
def test_capture_over_tcp_records_valid_and_invalid_telegrams(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    count = 30
    originals, wire, faults = faulty_stream(count, seed=4)
    sink = TcpSink("127.0.0.1", 0)
    out = tmp_path / "tcp.p1cap"
    codes: list[int] = []
    runner = threading.Thread(
        target=lambda: codes.append(
            main(
                [
                    "capture",
                    "--device",
                    sink.url,
                    "--out",
                    str(out),
                    "--count",
                    str(count + 1),
                    "--duration",
                    "30",
                ]
            )
        )
    )

    def connected() -> bool:
        sink.wait(0.02)  # the sink accepts clients while it waits
        return bool(sink.clients)

    runner.start()
    try:
        wait_for(connected, 10, "capture to connect", interval=0)
        for data in [*wire, originals[0]]:
            sink.write(data)
            sink.wait(0.01)
        runner.join(20)
    finally:
        sink.close()
    assert codes == [0]
    records = records_of(out.read_bytes())
    check_records(records[:count], originals, wire)
    assert records[count].data == originals[0]
    assert all(abs(r.time - time.time()) < 60 for r in records)  # receive times
    assert faults.counts["torn"] and faults.counts["crc_error"]
    ok = sum(r.result == "ok" for r in records)
    assert f"captured {count + 1} telegrams (ok={ok} crc_error=" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.integration
def test_capture_reconnects_when_the_dongle_drops(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dongle = Dongle()
    out = tmp_path / "drop.p1cap"
    runner = threading.Thread(
        target=main,
        args=(
            [
                "capture",
                "--device",
                dongle.url,
                "--out",
                str(out),
                "--count",
                "5",
                "--duration",
                "20",
            ],
        ),
    )
    runner.start()
    try:
        wait_for(lambda: dongle.clients == 1)
        dongle.send(TELEGRAMS[0] + TELEGRAMS[1] + TELEGRAMS[2][:100])
        wait_for(lambda: len(records_of(out.read_bytes())) == 2)
        dongle.drop_clients()  # in the middle of a telegram
        wait_for(lambda: dongle.accepted == 2 and dongle.clients == 1)
        dongle.send(TELEGRAMS[3] + TELEGRAMS[4])
        runner.join(10)
    finally:
        dongle.stop()
    assert not runner.is_alive()
    records = records_of(out.read_bytes())
    assert [(r.result, r.data) for r in records] == [
        ("ok", TELEGRAMS[0]),
        ("ok", TELEGRAMS[1]),
        ("malformed", TELEGRAMS[2][:100]),
        ("ok", TELEGRAMS[3]),
        ("ok", TELEGRAMS[4]),
    ]
    assert "stream ended inside a telegram" in records[2].reason
    assert "1 reconnect(s)" in capsys.readouterr().err


def test_capture_reconnects_a_silent_dongle_after_the_silence_timeout(tmp_path: Path) -> None:
    """30 s of silence on the injected clock: one reconnect, and the telegrams keep coming."""
    dongle = Dongle()
    clock = ManualClock()
    writer = CaptureWriter(str(tmp_path / "silent.p1cap"))
    writer.open()
    capture = Capture(open_source(dongle.url), writer, count=2, duration=600.0, clock=clock)
    before = clock()
    runner = threading.Thread(target=capture.run)
    runner.start()
    try:
        wait_for(lambda: dongle.clients == 1)
        # The capture's silence deadline runs from when its session began; advancing the
        # clock before that (a loaded machine) would move the deadline along with it.
        wait_for(lambda: capture.link.wake_at() >= before + SILENCE_TIMEOUT, what="a session")
        clock.advance(29.0)
        capture.wake()
        time.sleep(0.4)
        assert dongle.accepted == 1 and capture.reconnects == 0  # not silent yet
        clock.advance(1.5)
        capture.wake()
        wait_for(lambda: dongle.accepted == 2)
        wait_for(lambda: dongle.send(TELEGRAMS[0] + TELEGRAMS[1]) >= 1 and capture.written == 2)
    finally:
        capture.stop.set()
        runner.join(5)
        dongle.stop()
        writer.close()
    assert not runner.is_alive() and capture.reconnects == 1
    assert [(r.result, r.data) for r in records_of((tmp_path / "silent.p1cap").read_bytes())] == [
        ("ok", TELEGRAMS[0]),
        ("ok", TELEGRAMS[1]),
    ]


@pytest.mark.slow
@pytest.mark.integration
def test_stopping_drops_a_telegram_that_is_still_arriving(tmp_path: Path) -> None:
    dongle = Dongle()
    out = tmp_path / "stop.p1cap"
    runner = threading.Thread(
        target=main,
        args=(["capture", "--device", dongle.url, "--out", str(out), "--duration", "1.5"],),
    )
    runner.start()
    try:
        wait_for(lambda: dongle.clients == 1)
        dongle.send(TELEGRAMS[0] + TELEGRAMS[1][:300])
        runner.join(10)
    finally:
        dongle.stop()
    assert [(r.result, r.data) for r in records_of(out.read_bytes())] == [("ok", TELEGRAMS[0])]


# -- replay ---------------------------------------------------------------------------------------


def test_file_source_replays_a_capture_at_its_recorded_pace(tmp_path: Path) -> None:
    originals, wire, _ = faulty_stream(12, seed=4)
    recorder = CaptureRecorder()
    records: list[Record] = []
    for index, data in enumerate([*wire, originals[0]]):
        records += recorder.feed(data, START + index * 0.05)
    path = tmp_path / "replay.p1cap"
    path.write_bytes(b"".join(encode_record(*r) for r in records))
    source = open_source(f"file:{path}")
    assert isinstance(source, FileSource)
    source.open()
    pieces: list[bytes] = []
    started = time.monotonic()
    while not source.finished:
        data = source.read(0.2)
        if data:
            pieces.append(data)
    elapsed = time.monotonic() - started
    source.close()
    assert pieces == [r.data for r in records if r.data]
    span = records[-1].time - records[0].time
    assert elapsed >= span - 0.02  # paced, not all at once (how close: not timed here)
    # The exporter's framing of the replay sees what the capture saw.
    stream = TelegramStream()
    replayed = [o.result for piece in pieces for o in stream.feed(piece)] + [
        o.result for o in stream.flush()
    ]
    assert replayed == [r.result for r in records]
    fast = FileSource(str(path), pace="fast")
    fast.open()
    started = time.monotonic()
    assert [fast.read(5.0) for _ in pieces] == pieces  # no waiting between them
    assert time.monotonic() - started < span
    fast.close()


def test_the_exporter_counts_a_replayed_capture_as_the_capture_did(tmp_path: Path) -> None:
    originals, wire, _ = faulty_stream(20, seed=4)
    records = CaptureRecorder().feed(b"".join(wire) + originals[0], START)
    path = tmp_path / "bug-report.p1cap"
    path.write_bytes(b"".join(encode_record(*r) for r in records))
    recorded = {
        result: sum(r.result == result for r in records)
        for result in ("ok", "crc_error", "malformed", "too_large", "rejected")
    }
    assert recorded["crc_error"] and recorded["malformed"]
    with running(fast_config(f"file:{path}?pace=fast")) as reader:
        wait_for(lambda: reader.snapshot.last_error is not None)
        assert counts(reader.snapshot) == recorded
        assert reader.snapshot.telegram is not None
        assert reader.snapshot.telegram.raw == originals[0]


def test_file_source_still_replays_plain_dumps(tmp_path: Path) -> None:
    path = tmp_path / "dump.txt"
    path.write_bytes(b"".join(TELEGRAMS[:3]))
    source = FileSource(str(path), pace="fast")
    source.open()
    pieces = []
    while not source.finished:
        data = source.read(0.05)
        if data:
            pieces.append(data)
    assert pieces == TELEGRAMS[:3]
