"""Hostile and odd meter input, met where a user meets it: the exporter and ``capture``
processes on a pty, the reader thread on a pty, ``file:`` replays of endless files.

Each test bounds its run in bytes and time, and asserts counts, bytes and log lines.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from p1_exporter.history.capture import encode_record, read_records
from p1_exporter.meter import engine as reader_module
from p1_exporter.meter.sources import FileSource
from tests.helpers.exporter import ROOT, ExporterProcess, exporter_env, scrape
from tests.helpers.fixtures import V5
from tests.helpers.metrics import value
from tests.helpers.reader import Dongle, fast_config, messages, pty_pair, running
from tests.helpers.telegrams import replace_line, with_crc
from tests.helpers.wait import wait_for

SERIAL = ["--baudrate", "115200", "--bytesize", "8", "--parity", "N"]
#: Known codes whose values are malformed, and change every telegram.
BAD_CODES = [b"1-0:%d.7.0" % code for code in (1, 2, 21, 41, 61, 22, 42, 62, 31, 51, 71, 52)]
BAD_PER_TELEGRAM = len(BAD_CODES) + 1
ID_LINE = b"0-0:96.1.1(4B384547303034303436333935353037)"


def hostile(number: int) -> bytes:
    """v5 with 13 malformed lines whose text changes each telegram, and a flipping meter id."""
    lines = b"".join(b"%s(%dx*kW)\r\n" % (code, number) for code in BAD_CODES)
    lines += b"1-0:32.7.0(%d.0*Q)\r\n" % number  # a unit that does not exist
    body = V5.replace(ID_LINE, b"0-0:96.1.1(%s)" % (b"4B38" if number % 2 else b"4B39"))
    cut = body.index(b"!")
    return with_crc(body[:cut] + lines + b"!")


def warnings(lines: list[str]) -> list[str]:
    return [line for line in lines if "level=warn" in line]


# -- 1. log floods ------------------------------------------------------------------------


def test_a_hostile_meter_gets_ten_lines_a_minute_from_the_exporter() -> None:
    telegrams = 400
    with (
        pty_pair() as pty,
        ExporterProcess(
            ["--device", pty.path, *SERIAL, "--web.listen-address", "127.0.0.1:0"]
        ) as proc,
    ):
        proc.wait_listening()
        wait_for(lambda: "connected to" in proc.log, what="the pty open")
        for number in range(1, telegrams + 1):
            pty.write(hostile(number))
        meter = {"meter": "main"}
        wait_for(
            lambda: (
                value(scrape(proc.url), "p1_telegrams_total", result="ok", **meter) == telegrams
            ),
            what="every hostile telegram read",
        )
        found = scrape(proc.url)
        assert value(found, "p1_malformed_lines_total", **meter) == BAD_PER_TELEGRAM * telegrams
        flood = warnings(proc.lines)
    # 400 telegrams held 5,200 malformed lines and 399 meter replacements: the budget lets
    # ten through in the minute (no summary yet: the minute is not over).
    assert len(flood) == reader_module.DATA_LOG_BUDGET, "\n".join(flood)
    assert all("skipped line" in line for line in flood)


def test_the_budget_summary_counts_what_it_held_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(reader_module, "DATA_LOG_WINDOW", 2.0)
    caplog.set_level(logging.DEBUG, logger="p1_exporter.reader")
    telegrams = 60
    with pty_pair() as pty, running(fast_config(pty.path)) as reader:
        assert wait_for(lambda: reader.snapshot.connected)
        pty.write(b"".join(hostile(number) for number in range(1, telegrams + 1)))
        assert wait_for(lambda: reader.snapshot.telegrams["ok"] == telegrams, timeout=10)
        assert wait_for(lambda: messages(caplog, "held back", logging.WARNING), timeout=4)
        snap = reader.snapshot
    assert snap.malformed_lines == BAD_PER_TELEGRAM * telegrams  # the metric stays exact
    log = [
        r.getMessage()
        for r in caplog.records
        if r.name == "p1_exporter.reader" and r.levelno >= logging.WARNING
    ]
    first = next(i for i, line in enumerate(log) if "held back" in line)
    # Each (code, reason) is one condition: of the 13, the budget let 10 through.
    assert len(log[:first]) == reader_module.DATA_LOG_BUDGET
    assert all("skipped line" in line for line in log[:first])
    match = re.fullmatch(
        r"meter test: (\d+) more log lines held back in the last \d+ s \(at "
        r"most 10 a window\): malformed line (\d+), meter replaced (\d+); "
        r"the metrics count every one",
        log[first],
    )
    assert match is not None, log[first]
    total, malformed, replaced = (int(group) for group in match.groups())
    assert total == malformed + replaced and replaced >= 1
    assert malformed % (BAD_PER_TELEGRAM - reader_module.DATA_LOG_BUDGET) == 0  # 3 a telegram
    assert len(log) <= 3 * (reader_module.DATA_LOG_BUDGET + 1)  # at most three windows


def test_a_malformed_line_whose_value_changes_is_one_condition(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="p1_exporter.reader")
    line = b"1-0:1.7.0(00.244*kW)"
    with pty_pair() as pty, running(fast_config(pty.path)) as reader:
        assert wait_for(lambda: reader.snapshot.connected)
        for number in range(1, 31):
            pty.write(replace_line(V5, line, b"1-0:1.7.0(%d.5.5*kW)" % number))
        assert wait_for(lambda: reader.snapshot.telegrams["ok"] == 30, timeout=10)
        assert reader.snapshot.malformed_lines == 30
    assert len(messages(caplog, "skipped line", logging.WARNING)) == 1


def test_a_dongle_that_flaps_after_every_telegram_logs_within_the_budget(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="p1_exporter.reader")
    dongle = Dongle()
    cycles = 15
    try:
        with running(fast_config(dongle.url)) as reader:
            for cycle in range(1, cycles + 1):
                assert wait_for(lambda: dongle.clients == 1)
                dongle.send(V5)
                assert wait_for(lambda c=cycle: reader.snapshot.telegrams["ok"] == c)  # type: ignore[misc]
                dongle.drop_clients()
            assert wait_for(lambda: reader.snapshot.source_errors == cycles)
    finally:
        dongle.stop()
    log = [
        r.getMessage()
        for r in caplog.records
        if r.name == "p1_exporter.reader" and r.levelno >= logging.INFO
    ]
    # It was two lines a cycle (disconnected, valid again): 30. Now the link's budget.
    assert len(log) <= reader_module.DATA_LOG_BUDGET + 1, "\n".join(log)  # + "connected"
    assert sum("disconnected" in line for line in log) >= 1


# -- 2. capture amplification -------------------------------------------------------------


def test_capture_of_a_mebibyte_of_slashes_stays_small(tmp_path: Path) -> None:
    out = tmp_path / "noise.p1cap"
    size = 1 << 20
    with pty_pair() as pty:
        proc = subprocess.Popen(
            [sys.executable, "-m", "p1_exporter", "capture", "--device", pty.path, *SERIAL,
             "--out", str(out), "--duration", "60"],
            env=exporter_env(), cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert wait_for(out.exists, timeout=10)
            time.sleep(0.3)  # the port is open once the file is
            pty.write(b"/" * size)
            # Noise is recorded at least once a second: wait until every byte is on disk.
            assert wait_for(
                lambda: sum(len(r.data) for r in read_records(out.read_bytes())[0]) >= size - 1,
                timeout=15,
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            _, log = proc.communicate(timeout=10)
    assert proc.returncode == 0, log
    records, issues = read_records(out.read_bytes())
    assert issues == []
    assert {r.result for r in records} == {"malformed"}
    assert sum(len(r.data) for r in records) == size - 1  # the last "/" may still begin one
    assert out.stat().st_size < 1.1 * size  # was about 59 bytes per byte
    assert len(records) <= size // (16 * 1024) + 20  # one per 16 KiB run, or per second
    assert not list(tmp_path.glob("noise.p1cap.*"))  # nothing rotated away
    assert len(warnings(log.splitlines())) <= 2, log


# -- 3. file: streams ---------------------------------------------------------------------


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_file_dev_zero_keeps_memory_bounded_and_counts_the_bytes() -> None:
    with ExporterProcess(
        ["--device", "file:/dev/zero", "--web.listen-address", "127.0.0.1:0"]
    ) as proc:
        proc.wait_listening()
        target = 128 << 20  # 128 MiB read; the old code held every byte of it
        wait_for(
            lambda: (value(scrape(proc.url), "p1_bytes_read_total", meter="main") or 0) >= target,
            timeout=90,
            what="128 MiB of zeros read",
        )
        peak = peak_rss_kib(proc.proc.pid)
        found = scrape(proc.url)
        assert value(found, "p1_telegrams_total", meter="main", result="ok") == 0
        assert value(found, "p1_source_errors_total", meter="main") == 0
    assert peak < 120 * 1024, f"peak RSS {peak} KiB"
    assert "replay finished" not in proc.log  # an endless file never ends


# -- 4, 5, 6. replay end, placeholder failure entry, unset clock ---------------------------


PLACEHOLDERS = replace_line(
    replace_line(
        V5,
        b"1-0:99.97.0(0)(0-0:96.7.19)",
        b"1-0:99.97.0(1)(0-0:96.7.19)(000101000001W)(2147483647*s)",
    ),
    b"0-0:1.0.0(170102192002W)",
    b"0-0:1.0.0(000101010000W)",
)


def test_an_unset_meter_clock_and_a_placeholder_failure_log_export_nothing(
    tmp_path: Path,
) -> None:
    dump = tmp_path / "kaifa.txt"
    dump.write_bytes(PLACEHOLDERS)
    with ExporterProcess(
        ["--device", f"file:{dump}?pace=fast", "--web.listen-address", "127.0.0.1:0"]
    ) as proc:
        proc.wait_listening()
        wait_for(lambda: "replay finished" in proc.log, what="the replay")
        found = scrape(proc.url)
        time.sleep(0.3)  # anything logged late would show in proc.lines
        lines = list(proc.lines)
    meter = {"meter": "main"}
    assert value(found, "p1_telegrams_total", result="ok", **meter) == 1
    assert value(found, "p1_malformed_lines_total", **meter) == 0  # a well-formed line
    assert "p1_meter_clock_timestamp_seconds" not in found
    assert "p1_power_failure_last_duration_seconds" not in found
    assert "p1_power_failure_last_end_timestamp_seconds" not in found
    assert value(found, "p1_long_power_failures_total", **meter) == 0  # the meter's own count
    assert sum("replay finished" in line for line in lines) == 1
    assert warnings(lines) == []


def test_decode_keeps_the_placeholder_entry_the_meter_states(tmp_path: Path) -> None:
    dump = tmp_path / "kaifa.txt"
    dump.write_bytes(PLACEHOLDERS)
    command = [sys.executable, "-m", "p1_exporter", "decode"]
    result = subprocess.run(
        [*command, "--json", str(dump)],
        env=exporter_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    decoded = json.loads(result.stdout)
    assert decoded["meter_time"] is None and decoded["malformed"] == []
    assert decoded["power_failure_log"] == [{"end_time": None, "duration_seconds": 2147483647}]
    text = subprocess.run(
        [*command, str(dump)],
        env=exporter_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "power-failure log (1 events)" in text
    assert "placeholder entry (no real end time; lasted 2147483647 s), not exported" in text


def test_replaying_a_big_capture_keeps_memory_bounded(tmp_path: Path) -> None:
    path = tmp_path / "big.p1cap"
    record = encode_record(1_700_000_000.0, "malformed", b"/" * 16384, "line noise")
    count = 3000  # about 48 MiB
    with path.open("wb") as handle:
        for _ in range(count):
            handle.write(record)
    source = FileSource(str(path), pace="fast")
    tracemalloc.start()
    try:
        source.open()
        pieces = total = 0
        while not source.finished:
            data = source.read(0.01)
            pieces += bool(data)
            total += len(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        source.close()
    assert (pieces, total) == (count, count * 16384)
    assert peak < 16 << 20, f"peak {peak} bytes for a {path.stat().st_size}-byte capture"
