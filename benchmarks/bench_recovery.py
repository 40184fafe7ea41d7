"""How long the exporter takes to serve a correct value again after a fault on the line.

Run: ``.venv/bin/python benchmarks/bench_recovery.py`` (``--cycles``).

Uses the fault-injection harness of the tests (tests/helpers/faults.py): a meter sending a
telegram every 50 ms over a real pty, a real reader, and /metrics of the real HTTP server.
The tests check that the exporter recovers from each fault with a value the meter sent
after it; this prints how long that took, beside the budget: the backoff cap, one read
timeout, one meter interval and a scrape.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers.faults import (  # noqa: E402
    RECOVERY,
    Meter,
    PtyLine,
    config,
    recovered,
    serving,
)
from tests.helpers.reader import point, running  # noqa: E402
from tests.helpers.telegrams import corrupt_crc  # noqa: E402
from tests.helpers.wait import wait_for  # noqa: E402


def replug(cycles: int) -> list[float]:
    """Unplug the device (its udev link goes), plug a new one in: seconds to a new value."""
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        link = Path(tmp) / "ttyUSB-p1"
        line = PtyLine()
        point(link, line.path)
        with (
            Meter(line.write) as meter,
            running(config(str(link))) as reader,
            serving(reader) as metrics,
        ):
            recovered(metrics, meter, 0.0)
            for cycle in range(cycles):
                link.unlink()
                line.unplug()
                wait_for(lambda: metrics.scrape().count("p1_source_connected") == 0)
                time.sleep(0.1 + 0.1 * (cycle % 3))
                line.plug()
                point(link, line.path)
                times.append(recovered(metrics, meter, meter.mark()))
        line.unplug()
    return times


def after_shape(
    cycles: int, shape: Callable[[bytes], bytes], seconds: float, **overrides: object
) -> list[float]:
    """Send ``shape``d telegrams for ``seconds``, then good ones: seconds to a new value."""
    times = []
    line = PtyLine()
    with (
        Meter(line.write) as meter,
        running(config(line.path, **overrides)) as reader,
        serving(reader) as metrics,
    ):
        recovered(metrics, meter, 0.0)
        for _ in range(cycles):
            meter.shape = shape
            time.sleep(seconds)
            meter.shape = None
            times.append(recovered(metrics, meter, meter.mark()))
    line.unplug()
    return times


def report(name: str, times: list[float]) -> None:
    print(
        f"{name:<28} median {statistics.median(times):.3f} s, max {max(times):.3f} s "
        f"over {len(times)} (budget {RECOVERY:.2f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=10, help="faults of each kind")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the faults' warnings are expected
    report("unplug, replug", replug(args.cycles))
    report(
        "silent line (stale, back)",
        after_shape(args.cycles, lambda good: b"", 1.5, stale_after=1.0, silence_timeout=0.5),
    )
    report("CRC storm", after_shape(args.cycles, corrupt_crc, 0.5))


if __name__ == "__main__":
    main()
