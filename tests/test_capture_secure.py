"""``p1-exporter capture`` and ``backfill`` of encrypted P1 and HAN (DLMS/COSEM) meters.

Everything runs through the real processes: a simulated meter (``sim://`` or
``p1-exporter simulate --tcp``), ``p1-exporter capture`` writing the capture, and
``p1-exporter backfill`` turning it into OpenMetrics. The expected values are read
straight out of the captured frame bytes (decrypted here with AES-CTR, which is what
GCM encrypts with), not through the exporter's decoder.
"""

from __future__ import annotations

import calendar
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from p1_exporter.core.cipher import LUXEMBOURG_AUTH_KEY
from p1_exporter.history.capture import CaptureRecorder, Record, encode_record, read_records
from p1_exporter.sim.meter import SimulatedMeter
from tests.helpers.binaries import require_binary
from tests.helpers.exporter import ROOT, exporter_env, run_exporter

KEY = "000102030405060708090A0B0C0D0E0F"
WRONG_KEY = "F00102030405060708090A0B0C0D0E0F"
SAMPLE = re.compile(r"^(p1_[a-z0-9_]+)\{([^}]*)\} (\S+) (\d+(?:\.\d+)?)$", re.MULTILINE)

#: The Aidon list's active energy import register (1-0:1.8.0.255) and clock (0-0:1.0.0.255).
AIDON_IMPORT = bytes.fromhex("0906 0100010800ff 06")
AIDON_CLOCK = bytes.fromhex("0906 0000010000ff 090c")


def samples(om: Path, metric: str, labels: str = "") -> list[tuple[float, float]]:
    """(timestamp, value) of one metric's samples whose labels contain ``labels``."""
    text = om.read_text(encoding="utf-8")
    assert text.endswith("# EOF\n")
    return [
        (float(match[4]), float(match[3]))
        for match in SAMPLE.finditer(text)
        if match[1] == metric and labels in match[2]
    ]


def capture_records(path: Path) -> list[Record]:
    records, issues = read_records(path.read_bytes())
    assert not issues
    return records


def cosem_epoch(stamp: bytes) -> int:
    """A COSEM date-time (deviation 0, as the simulator sends) as epoch seconds."""
    year = int.from_bytes(stamp[0:2], "big")
    return calendar.timegm((year, stamp[2], stamp[3], stamp[5], stamp[6], stamp[7], 0, 0, 0))


def aidon_reading(frame: bytes) -> tuple[int, int]:
    """(meter clock, import in Wh) read out of an Aidon APDU's bytes."""
    energy = frame.index(AIDON_IMPORT) + len(AIDON_IMPORT)
    clock = frame.index(AIDON_CLOCK) + len(AIDON_CLOCK)
    return cosem_epoch(frame[clock : clock + 12]), int.from_bytes(frame[energy : energy + 4], "big")


def decrypt_p1(frame: bytes, key: str) -> bytes:
    """The plaintext of one general-glo-ciphering frame (``DB 08 ...``), tag not checked."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    assert frame[:2] == b"\xdb\x08"
    title = frame[2:10]
    pos = 10
    if frame[pos] < 0x80:
        size, pos = frame[pos], pos + 1
    else:
        count = frame[pos] & 0x7F
        size, pos = int.from_bytes(frame[pos + 1 : pos + 1 + count], "big"), pos + 1 + count
    content = frame[pos : pos + size]
    counter, body = content[1:5], content[5:-12]  # SC 0x30: a 12-byte tag at the end
    stream = Cipher(
        algorithms.AES(bytes.fromhex(key)), modes.CTR(title + counter + b"\x00\x00\x00\x02")
    ).decryptor()
    return stream.update(body) + stream.finalize()


def dsmr_import_joules(telegram: bytes) -> dict[str, float]:
    """Tariff -> imported energy (J) from a DSMR telegram's 1-0:1.8.x registers."""
    return {
        tariff.decode(): float(value) * 3.6e6
        for tariff, value in re.findall(rb"1-0:1\.8\.([12])\((\d+\.\d+)\*kWh\)", telegram)
    }


@pytest.fixture
def simulator() -> Iterator[list[subprocess.Popen[str]]]:
    """Started ``p1-exporter simulate`` processes, stopped after the test."""
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def tcp_meter(processes: list[subprocess.Popen[str]], *args: str) -> str:
    """A simulated meter listening on 127.0.0.1; its socket:// address."""
    process = subprocess.Popen(
        [sys.executable, "-m", "p1_exporter", "simulate", "--tcp", "127.0.0.1:0", *args],
        env=exporter_env(),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    processes.append(process)
    assert process.stdout is not None
    address = process.stdout.readline().strip()
    assert address.startswith("socket://127.0.0.1:"), address
    return address


def capture_from(
    device: str, out: Path, count: int, *options: str
) -> subprocess.CompletedProcess[str]:
    """``p1-exporter capture`` of ``count`` telegrams from ``device`` into ``out``."""
    return run_exporter(
        "capture",
        "--device",
        device,
        *options,
        "--count",
        str(count),
        "--out",
        str(out),
        timeout=60,
    )


def test_han_capture_backfills_the_energy_its_frames_carry(tmp_path: Path) -> None:
    capture, om = tmp_path / "han.cap", tmp_path / "han.om"
    # Ten simulated seconds per frame, one frame per real second: every frame a new clock.
    url = "sim://?dialect=han-aidon&seed=7&interval=10&speed=10"
    done = capture_from(url, capture, 4, "--protocol", "han")
    assert done.returncode == 0, done.stderr
    assert "captured 4 telegrams (ok=4)" in done.stderr
    records = capture_records(capture)
    assert [record.result for record in records] == ["ok"] * 4
    for record in records:  # each record is one whole HDLC frame, flags included
        assert record.data[:2] == b"\x7e\xa1" and record.data[-1:] == b"\x7e"
    expected = [aidon_reading(record.data) for record in records]
    assert len({clock for clock, _ in expected}) == 4

    done = run_exporter("backfill", str(capture), "--protocol", "han", "--out", str(om))
    assert done.returncode == 0, done.stderr
    assert "wrote 4 telegrams" in done.stderr and "0 refused" in done.stderr
    got = samples(om, "p1_energy_import_joules_total")
    assert got == [(float(clock), wh * 3600.0) for clock, wh in expected]

    # The same capture read as DSMR gives nothing: the protocol is backfill's to say.
    done = run_exporter("backfill", str(capture), "--out", str(tmp_path / "dsmr.om"))
    assert done.returncode == 1 and "malformed=4" in done.stderr


def test_han_history_loads_into_promtool(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    capture, om = tmp_path / "han.cap", tmp_path / "han.om"
    url = "sim://?dialect=han-kaifa&seed=2&interval=10&speed=10"
    done = capture_from(url, capture, 2, "--protocol", "han")
    assert done.returncode == 0, done.stderr
    done = run_exporter("backfill", str(capture), "--protocol", "han", "--out", str(om))
    assert done.returncode == 0, done.stderr
    assert len(samples(om, "p1_energy_import_joules_total")) == 2
    check = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(om), str(tmp_path / "tsdb")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_encrypted_p1_capture_backfills_with_the_key_and_counts_a_wrong_one(
    tmp_path: Path, simulator: list[subprocess.Popen[str]]
) -> None:
    address = tcp_meter(
        simulator, "--dialect", "encrypted", "--key", KEY, "--interval", "0.5", "--speed", "20"
    )
    key_file = tmp_path / "meter.key"
    key_file.write_text(f"key: {KEY}\n")
    capture, om = tmp_path / "enc.cap", tmp_path / "enc.om"
    done = capture_from(address, capture, 3, "--protocol", "encrypted", "--key-file", str(key_file))
    assert done.returncode == 0, done.stderr
    assert "captured 3 telegrams (ok=3)" in done.stderr
    records = capture_records(capture)
    assert [record.data[:2] for record in records] == [b"\xdb\x08"] * 3
    plain = [decrypt_p1(record.data, KEY) for record in records]
    assert all(text.startswith(b"/") for text in plain)

    done = run_exporter(
        "backfill",
        str(capture),
        "--protocol",
        "encrypted",
        "--key-file",
        str(key_file),
        "--out",
        str(om),
    )
    assert done.returncode == 0, done.stderr
    assert "wrote 3 telegrams" in done.stderr
    for tariff in ("1", "2"):
        got = [value for _, value in samples(om, "p1_energy_import_joules_total", f'"{tariff}"')]
        assert got == [dsmr_import_joules(text)[tariff] for text in plain]

    bad = tmp_path / "wrong.om"
    done = run_exporter(
        "backfill", str(capture), "--protocol", "encrypted", "--key", WRONG_KEY, "--out", str(bad)
    )
    assert done.returncode == 1
    assert "3 refused (decrypt_error=3)" in done.stderr and "wrote 0 telegrams" in done.stderr
    assert "p1_energy" not in bad.read_text(encoding="utf-8")


def test_encrypted_han_captured_with_a_wrong_key_keeps_its_frames_for_the_right_one(
    tmp_path: Path, simulator: list[subprocess.Popen[str]]
) -> None:
    auth = LUXEMBOURG_AUTH_KEY.hex()
    address = tcp_meter(
        simulator,
        "--dialect",
        "han-aidon",
        "--key",
        KEY,
        "--auth-key",
        auth,
        "--interval",
        "0.5",
        "--speed",
        "20",
    )
    capture = tmp_path / "han-enc.cap"
    done = capture_from(
        address,
        capture,
        3,
        "--protocol",
        "han",
        "--key",
        WRONG_KEY,
        "--auth-key",
        auth,
    )
    assert done.returncode == 0, done.stderr
    assert "decrypt_error=3" in done.stderr and "ok=" not in done.stderr
    records = capture_records(capture)
    assert [record.result for record in records] == ["decrypt_error"] * 3
    assert all(record.data[:1] == b"\x7e" and record.reason for record in records)

    wrong = tmp_path / "wrong.om"
    done = run_exporter(
        "backfill",
        str(capture),
        "--protocol",
        "han",
        "--key",
        WRONG_KEY,
        "--auth-key",
        auth,
        "--out",
        str(wrong),
    )
    assert done.returncode == 1 and "3 refused (decrypt_error=3)" in done.stderr

    key_file = tmp_path / "meter.key"
    key_file.write_text(f"key: {KEY}\nauth_key: {auth}\n")
    om = tmp_path / "right.om"
    done = run_exporter(
        "backfill", str(capture), "--protocol", "han", "--key-file", str(key_file), "--out", str(om)
    )
    assert done.returncode == 0, done.stderr
    assert "wrote 3 telegrams" in done.stderr and "0 refused" in done.stderr
    # The HDLC frames hold LLC (3 bytes) and the ciphered APDU; its plaintext has the list.
    expected = []
    for record in records:
        ciphered = record.data[record.data.index(b"\xdb\x08") : -3]  # without FCS and flag
        expected.append(aidon_reading(decrypt_p1(ciphered, KEY)))
    assert samples(om, "p1_energy_import_joules_total") == [
        (float(clock), wh * 3600.0) for clock, wh in expected
    ]


def test_capture_refuses_keys_that_do_not_fit_the_protocol(tmp_path: Path) -> None:
    out = tmp_path / "x.cap"
    done = run_exporter("capture", "--device", "sim://", "--key", KEY, "--out", str(out))
    assert done.returncode == 2 and "--protocol is dsmr" in done.stderr
    done = run_exporter(
        "capture", "--device", "sim://", "--protocol", "encrypted", "--out", str(out)
    )
    assert done.returncode == 2 and "needs the meter's key" in done.stderr
    assert not out.exists()
    dump = tmp_path / "dump"
    dump.write_bytes(b"/XMX5\r\n")
    done = run_exporter(
        "backfill", str(dump), "--protocol", "han", "--key", "123", "--out", str(tmp_path / "x.om")
    )
    assert done.returncode == 2 and "--key" in done.stderr


def test_han_recorder_keeps_each_frame_exactly_and_counts_a_bad_one() -> None:
    meter = SimulatedMeter("han-aidon", seed=4, start=1_718_143_200.0)
    frames = [meter.telegram_at(1_718_143_200.0 + 10 * index) for index in range(4)]
    damaged = bytearray(frames[1])
    damaged[40] ^= 0xFF  # the frame check sequence no longer matches
    shared = frames[3][1:]  # sent with the flag it shares with the frame before
    stream = frames[0] + bytes(damaged) + frames[2] + shared
    recorder = CaptureRecorder(protocol="han")
    records = []
    for start in range(0, len(stream), 7):  # in small reads, as a serial port gives them
        records += recorder.feed(stream[start : start + 7], 100.0 + start)
    records += recorder.flush(999.0)
    assert [record.result for record in records] == ["ok", "crc_error", "ok", "ok"]
    assert [records[0].data, records[2].data, records[3].data] == [
        frames[0],
        frames[2],
        frames[3],
    ]
    assert records[1].data == b"" and "FCS" in records[1].reason
    # Each record is written as its own frame; read back, it is the same.
    blob = b"".join(encode_record(r.time, r.result, r.data, r.reason) for r in records)
    assert read_records(blob)[0] == records
