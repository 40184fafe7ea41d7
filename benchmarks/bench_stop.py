"""How long a meter reader and the exporter process take to stop.

Run: ``.venv/bin/python benchmarks/bench_stop.py`` (``--readers``, ``--exporters``).

The tests only check that both stop (with a timeout that guards against a hang); this
prints how long it takes:
- ``MeterReader.stop()`` on a reader connected to a silent TCP dongle on 127.0.0.1, the
  case where the thread sits in a blocking read (it wakes at the read timeout);
- SIGTERM to ``python -m p1_exporter --demo`` until the process has exited.
"""

from __future__ import annotations

import argparse
import logging
import signal
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from p1_exporter.meter.reader import MAX_BLOCK, MeterReader  # noqa: E402
from tests.helpers.exporter import ExporterProcess  # noqa: E402
from tests.helpers.reader import Dongle, fast_config  # noqa: E402
from tests.helpers.wait import wait_for  # noqa: E402


def reader_stops(count: int) -> list[float]:
    """Seconds each ``stop()`` took, for ``count`` readers connected to a silent dongle."""
    dongle = Dongle()
    times = []
    try:
        for _ in range(count):
            reader = MeterReader(fast_config(dongle.url, silence_timeout=30.0))
            reader.start()
            wait_for(lambda: reader.snapshot.connected)  # noqa: B023
            began = time.monotonic()
            reader.stop(timeout=10.0)
            times.append(time.monotonic() - began)
            assert not reader.alive
    finally:
        dongle.stop()
    return times


def exporter_stops(count: int) -> list[float]:
    """Seconds from SIGTERM to exit of ``count`` demo exporters, each serving first."""
    times = []
    for _ in range(count):
        with ExporterProcess(["--demo", "--web.listen-address", "127.0.0.1:0"]) as exporter:
            exporter.wait_listening()
            code, took = exporter.stop(signal.SIGTERM)
            assert code == 0, exporter.log
            times.append(took)
    return times


def report(name: str, times: list[float]) -> None:
    print(
        f"{name}: median {statistics.median(times) * 1000:.0f} ms, "
        f"max {max(times) * 1000:.0f} ms over {len(times)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=20, help="reader stops to time")
    parser.add_argument("--exporters", type=int, default=5, help="exporter stops to time")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the reader's warnings are expected here
    report(f"MeterReader.stop() (longest blocking read {MAX_BLOCK} s)", reader_stops(args.readers))
    report("exporter SIGTERM -> exit", exporter_stops(args.exporters))


if __name__ == "__main__":
    main()
