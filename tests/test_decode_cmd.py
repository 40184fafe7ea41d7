"""``p1-exporter decode``: exit codes, messages, --ignore-crc, stdin and --json."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from p1_exporter.commands.cli import main
from tests.helpers.fixtures import FIXTURE_NAMES, FIXTURES, load
from tests.helpers.telegrams import content
from tests.helpers.times import summer, winter

V5 = load("v5.txt")
BAD_CRC = content(V5) + b"0C97\r\n"


def decode(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["decode", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_good_files_exit_zero(capsys: pytest.CaptureFixture[str], name: str) -> None:
    code, out, err = decode(capsys, str(FIXTURES / name))
    assert code == 0
    assert err == ""
    assert out.startswith("Telegram: ")


def test_text_output_shows_values(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = decode(capsys, str(FIXTURES / "v5.txt"))
    assert code == 0
    assert "ISk5\\2MT382-1000" in out
    assert "DSMR 5.0" in out and "CRC 6EEE ok" in out
    assert "15933600 J" in out and "(000004.426*kWh)" in out
    assert "K8EG004046395507" in out
    assert "no reading" in out  # M-Bus channel 2


def test_refused_telegram_exits_one_with_the_reason(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(BAD_CRC)
    code, out, err = decode(capsys, str(path))
    assert code == 1
    assert out == ""
    assert "telegram 1 refused (crc_error)" in err
    assert "CRC mismatch: computed 6EEE, telegram says 0C97" in err


def test_capture_with_one_refusal_still_prints_the_others(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "capture.txt"
    path.write_bytes(V5 + BAD_CRC + load("v4_2.txt"))
    code, out, err = decode(capsys, str(path))
    assert code == 1
    assert out.count("Telegram: ") == 2
    assert "telegram 2 refused (crc_error)" in err
    assert "telegram 1" not in err and "telegram 3" not in err


def test_ignore_crc_decodes_and_says_so(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(BAD_CRC)
    code, out, err = decode(capsys, "--ignore-crc", str(path))
    assert code == 0
    assert "CRC not verified, decoded because of --ignore-crc" in err
    assert "NOT CHECKED" in out
    assert "15933600 J" in out


def test_ignore_crc_is_silent_for_good_telegrams(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = decode(capsys, "--ignore-crc", str(FIXTURES / "v5.txt"))
    assert code == 0
    assert err == ""
    assert "CRC 6EEE ok" in out


def test_torn_capture_exits_one(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "torn.txt"
    path.write_bytes(V5[:400])
    code, _, err = decode(capsys, str(path))
    assert code == 1
    assert "refused (malformed)" in err and "stream ended inside a telegram" in err


def test_file_without_telegram_exits_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "empty.txt"
    path.write_bytes(b"no telegram here\r\n")
    code, out, err = decode(capsys, str(path))
    assert code == 1
    assert out == ""
    assert "no telegram found" in err


def test_missing_file_exits_two(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "does-not-exist.txt"
    code, out, err = decode(capsys, str(missing))
    assert code == 2
    assert out == ""
    assert "cannot read" in err and str(missing) in err


def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = decode(capsys, "--json", str(FIXTURES / "v5_two_mbus.txt"))
    assert code == 0
    data = json.loads(out)
    assert data["header"] == "ISK5\\2M550T-1012"
    assert data["dsmr_version"] == "5.0"
    assert data["crc"] == "56DD" and data["crc_verified"] is True
    assert data["meter_time"] == summer(2020, 4, 26, 22, 33, 25)
    assert data["equipment_id"] == "E0044007382246019"
    assert data["registers"]["1-0:1.8.1"] == {
        "value": 7668414000.0,
        "unit": "J",
        "raw": "002130.115*kWh",
    }
    assert data["registers"]["1-0:32.7.0"]["value"] == 229.9
    channels = {device["channel"]: device for device in data["mbus"]}
    assert channels[1]["reading"] is None
    assert channels[2]["reading"] == {"value": 246.138, "unit": "m3", "raw": "00246.138*m3"}
    assert channels[2]["equipment_id"] == "G0039001936990619"
    assert data["power_failure_log"] == [
        {"end_time": winter(2019, 3, 26, 9, 50, 15), "duration_seconds": 2014}
    ]
    assert data["malformed"] == [] and data["unknown"] == []


def test_json_for_several_telegrams_and_format_option(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "two.txt"
    path.write_bytes(V5 + load("fluvius_v171.txt"))
    code, out, _ = decode(capsys, "--format", "json", str(path))
    assert code == 0
    decoder = json.JSONDecoder()
    first, end = decoder.raw_decode(out)
    second, _ = decoder.raw_decode(out[end:].lstrip())
    assert first["crc"] == "6EEE"
    assert second["month_peak"] == {"watts": 2589.0, "time": summer(2020, 5, 9, 13, 45, 58)}
    assert len(second["peak_history"]) == 3


def test_metrics_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = decode(capsys, "--metrics", str(FIXTURES / "v5.txt"))
    assert code == 0
    assert "# TYPE " in out


def run_module(*argv: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "p1_exporter", "decode", *argv],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_stdin() -> None:
    result = run_module("-", stdin=V5)
    assert result.returncode == 0, result.stderr
    assert b"CRC 6EEE ok" in result.stdout
    assert result.stderr == b""


def test_stdin_json_and_refusal() -> None:
    result = run_module("--json", "-", stdin=load("unpadded_crc.txt"))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["crc"] == "0B9F"
    assert data["mbus"][0]["reading"]["value"] == 240860000000.0
    refused = run_module("-", stdin=BAD_CRC)
    assert refused.returncode == 1
    assert b"CRC mismatch: computed 6EEE, telegram says 0C97" in refused.stderr


# -- ending early: the reader goes away, or Ctrl-C ------------------------------------------


def test_reader_closing_the_pipe_ends_decode_quietly(tmp_path: Path) -> None:
    """``p1-exporter decode FILE | head``: no BrokenPipeError traceback, exit code 0."""
    capture = tmp_path / "many.txt"
    capture.write_bytes(V5 * 300)  # far more text than a pipe buffer holds
    process = subprocess.Popen(
        [sys.executable, "-m", "p1_exporter", "decode", str(capture)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()  # what head does after its lines
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == 0, stderr
    assert first.startswith(b"Telegram: ")
    assert stderr == b""


def _blocked_reading_a_pipe(pid: int) -> bool:
    """Whether the process sleeps in a read of a pipe (Linux: its wait channel)."""
    try:
        return "pipe_read" in Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return False


def test_ctrl_c_while_reading_stdin_is_one_line() -> None:
    """SIGINT to ``decode -`` waiting on its input: one line, exit code 130, no traceback."""
    process = subprocess.Popen(
        [sys.executable, "-m", "p1_exporter", "decode", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdin is not None
        process.stdin.write(V5[:100])  # half a telegram; the rest never comes
        process.stdin.flush()
        deadline = time.monotonic() + 30
        while not _blocked_reading_a_pipe(process.pid):
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    assert stderr == b"p1-exporter decode: interrupted\n"
    assert stdout == b""
