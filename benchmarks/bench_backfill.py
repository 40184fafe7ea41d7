"""Backfill throughput: telegrams per second from a capture to an OpenMetrics file.

Run: ``.venv/bin/python benchmarks/bench_backfill.py`` (``--quick`` for 50,000 telegrams).

The first run generates a capture of simulated DSMR 5 telegrams one second apart
(1,000,000 by default, about 1.1 GB, a few minutes) and keeps it in ``--workdir``
(default ``/tmp/p1-bench-backfill``) for later runs. The backfill then runs as
the real command (``python -m p1_exporter backfill``) in a child process, timed
from start to the finished output file. Printed: telegrams per second, output
size and the peak resident memory of the busiest process (the parent or a
worker). Target: 20,000 telegrams per second, a year of 1 s telegrams in under
half an hour.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from p1_exporter.history.capture import encode_record  # noqa: E402
from p1_exporter.sim.meter import SimulatedMeter  # noqa: E402

START = 1_700_000_000.0
TARGET = 20_000


def generate(path: Path, count: int) -> None:
    """Write ``count`` DSMR 5 telegrams, 1 s apart, as a capture (atomically)."""
    meter = SimulatedMeter("dsmr5", seed=7, start=START)
    partial = path.with_suffix(".part")
    started = time.monotonic()
    with open(partial, "wb") as out:
        batch: list[bytes] = []
        for index in range(count):
            moment = START + index
            batch.append(encode_record(moment + 0.2, "ok", meter.telegram_at(moment)))
            if len(batch) == 10_000:
                out.write(b"".join(batch))
                batch.clear()
                done = index + 1
                rate = done / (time.monotonic() - started)
                print(
                    f"\rgenerating {done:,}/{count:,} telegrams ({rate:,.0f}/s)",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
        out.write(b"".join(batch))
    print(file=sys.stderr)
    partial.replace(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50,000 telegrams")
    parser.add_argument("--count", type=int, help="telegrams in the capture (default 1,000,000)")
    parser.add_argument(
        "--workdir",
        default="/tmp/p1-bench-backfill",
        help="where the capture is cached and the output written",
    )
    parser.add_argument("--workers", type=int, help="passed to backfill (default: its own)")
    parser.add_argument("--keep", action="store_true", help="keep the OpenMetrics output")
    args = parser.parse_args()
    count = args.count or (50_000 if args.quick else 1_000_000)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    capture = workdir / f"dsmr5-{count}.p1cap"
    if not capture.exists():
        generate(capture, count)
    out = workdir / "backfill.om"
    command = [
        sys.executable,
        "-m",
        "p1_exporter",
        "backfill",
        str(capture),
        "--out",
        str(out),
        "--no-progress",
    ]
    if args.workers:
        command += ["--workers", str(args.workers)]
    load = os.getloadavg()[0]
    started = time.perf_counter()
    result = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        print(result.stderr, file=sys.stderr)
        return 1
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_mib = usage.ru_maxrss / 1024
    cpu = usage.ru_utime + usage.ru_stime
    cpus = len(os.sched_getaffinity(0))
    rate = count / elapsed
    size = out.stat().st_size
    print(result.stderr.strip())
    print()
    print(
        f"capture:     {capture} ({capture.stat().st_size / 2**20:,.0f} MiB, {count:,} telegrams)"
    )
    print(f"output:      {size / 2**20:,.0f} MiB OpenMetrics")
    print(
        f"cpus:        {cpus}, load average before the run {load:.2f} (other work slows "
        "the wall-clock figures)"
    )
    print(
        f"time:        {elapsed:.1f} s wall, {cpu:.1f} s CPU in all processes "
        f"({cpu / count * 1e6:.0f} us per telegram; at most {count / cpu * cpus:,.0f}/s "
        f"on {cpus} idle CPUs)"
    )
    print(
        f"throughput:  {rate:,.0f} telegrams/s (target {TARGET:,}: "
        f"{'met' if rate >= TARGET else 'NOT met'})"
    )
    print(f"a year of 1 s telegrams: {365 * 86400 / rate / 60:,.0f} min")
    print(f"peak RSS:    {peak_mib:,.0f} MiB (largest single process)")
    if not args.keep:
        out.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
