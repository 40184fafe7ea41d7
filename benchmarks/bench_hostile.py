"""Hostile and odd meter input against the real ``p1-exporter`` process: log, disk, CPU, RSS.

Run: ``.venv/bin/python benchmarks/bench_hostile.py`` (``--only log|capture|zero``;
``--seconds`` sets the hostile meter's run, default 20). Every run is bounded in time.

- log: a meter on a pty that sends, as fast as the pty takes them, telegrams with a
  dozen malformed lines whose text changes every telegram, a malformed line whose value
  changes, and an equipment id that flips every telegram. Prints the exporter's log
  lines and bytes over the run.
- capture: ``p1-exporter capture`` reading 1 MiB of ``/`` from a pty. Prints the
  capture bytes written (all rotated files) and the CPU seconds the process used.
- zero: the exporter reading ``file:/dev/zero``. Prints its peak RSS (VmHWM) over a
  few seconds; the process is killed early when it passes 2 GiB.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tty
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from p1_exporter.core.crc import crc16_arc  # noqa: E402

V5 = (ROOT / "tests" / "fixtures" / "v5.txt").read_bytes()
#: Known codes whose malformed values change every telegram (12 lines).
BAD_CODES = [b"1-0:%d.7.0" % c for c in (1, 2, 21, 41, 61, 22, 42, 62, 31, 51, 71, 52)]
SERIAL = ["--baudrate", "115200", "--bytesize", "8", "--parity", "N"]


def with_crc(body: bytes) -> bytes:
    end = body.index(b"!") + 1
    return body[:end] + b"%04X\r\n" % crc16_arc(body[:end])


def hostile_telegram(number: int) -> bytes:
    """v5 with changing malformed lines and an equipment id that flips each telegram."""
    lines = b"".join(b"%s(%dx*kW)\r\n" % (code, number) for code in BAD_CODES)
    lines += b"1-0:32.7.0(%d.0*Q)\r\n" % number  # a unit that does not exist
    body = V5.replace(
        b"0-0:96.1.1(4B384547303034303436333935353037)",
        b"0-0:96.1.1(%s)" % (b"4B38" if number % 2 else b"4B39"),
    )
    cut = body.index(b"!")
    return with_crc(body[:cut] + lines + b"!")


@contextlib.contextmanager
def pty() -> Iterator[tuple[int, str]]:
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        yield master, os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def exporter(*args: str) -> list[str]:
    return [sys.executable, "-m", "p1_exporter", *args]


def count_lines(stream: object, totals: list[int], last: list[bytes] | None = None) -> None:
    for line in stream:  # type: ignore[attr-defined]
        totals[0] += 1
        totals[1] += len(line)
        if last is not None:
            last[:] = [line]


def bench_log(seconds: float) -> None:
    with pty() as (master, path):
        proc = subprocess.Popen(
            exporter("--device", path, *SERIAL, "--web.listen-address", "127.0.0.1:0"),
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            cwd=ROOT,
        )
        totals = [0, 0]
        reader = threading.Thread(target=count_lines, args=(proc.stderr, totals), daemon=True)
        reader.start()
        time.sleep(1.0)
        os.set_blocking(master, False)
        sent = number = 0
        deadline = time.monotonic() + seconds
        pending = b""
        while time.monotonic() < deadline:
            if not pending:
                number += 1
                pending = hostile_telegram(number)
            try:
                written = os.write(master, pending)
            except BlockingIOError:
                time.sleep(0.001)
                continue
            pending = pending[written:]
            sent += written
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        reader.join(5)
    print(
        f"log: {number} hostile telegrams ({sent} bytes) in {seconds:g} s -> "
        f"{totals[0]} log lines, {totals[1]} bytes"
    )


def bench_capture(limit: float) -> None:
    data = b"/" * (1 << 20)
    with tempfile.TemporaryDirectory() as tmp, pty() as (master, path):
        out = Path(tmp) / "cap.p1"
        proc = subprocess.Popen(
            exporter(
                "capture", "--device", path, *SERIAL, "--out", str(out), "--duration", str(limit)
            ),
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            cwd=ROOT,
        )
        totals = [0, 0]
        last: list[bytes] = []
        reader = threading.Thread(target=count_lines, args=(proc.stderr, totals, last), daemon=True)
        reader.start()
        time.sleep(1.0)
        began = time.monotonic()
        os.set_blocking(master, False)
        view = memoryview(data)
        while view and time.monotonic() - began < limit:
            try:
                view = view[os.write(master, view) :]
            except BlockingIOError:
                time.sleep(0.001)
        fed = time.monotonic() - began
        time.sleep(1.0)  # let it finish what the pty holds
        cpu = cpu_seconds(proc.pid)
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        reader.join(5)
        written = sum(f.stat().st_size for f in Path(tmp).iterdir())
        files = len(list(Path(tmp).iterdir()))
    match = re.search(rb"(\d+) bytes written", last[0] if last else b"")
    total = match[1].decode() if match else "?"
    print(
        f"capture: {len(data) - len(view)} bytes of '/' fed in {fed:.1f} s -> "
        f"{total} capture bytes written ({written} in {files} file(s) still on disk), "
        f"{cpu:.2f} CPU s, "
        f"{totals[0]} log lines"
    )


def bench_zero(seconds: float, cap_kib: int = 2 * 1024 * 1024) -> None:
    proc = subprocess.Popen(
        exporter("--device", "file:/dev/zero", "--web.listen-address", "127.0.0.1:0"),
        stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        cwd=ROOT,
    )
    peak = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(FileNotFoundError):
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
            if peak > cap_kib:
                break
            time.sleep(0.05)
        cpu = cpu_seconds(proc.pid)
    finally:
        proc.kill()
        proc.wait(10)
    note = " (killed at the cap)" if peak > cap_kib else ""
    print(
        f"zero: file:/dev/zero for {seconds:g} s -> peak RSS {peak / 1024:.0f} MiB{note}, "
        f"{cpu:.2f} CPU s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["log", "capture", "zero"])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    if args.only in (None, "log"):
        bench_log(args.seconds)
    if args.only in (None, "capture"):
        bench_capture(30.0)
    if args.only in (None, "zero"):
        bench_zero(4.0)


if __name__ == "__main__":
    main()
