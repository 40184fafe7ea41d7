"""A worker process that builds simulated households: ``python -m p1_exporter.meter.sim_worker``.

It reads jobs from stdin and answers on stdout, one frame each: a 4-byte big-endian
length, then a pickle. A job is a :class:`~p1_exporter.sim.meter.SimOptions`; the answer is
``("ok", meter, seconds)`` or ``("error", text)``. Both ends are this package's own code in
processes the exporter started, so pickle carries nothing from outside. The worker runs at
a lower priority than the exporter, ignores Ctrl-C (the exporter handles it) and ends at
the end of its input.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
import time
from typing import IO

from p1_exporter.sim.meter import SimOptions, SimulatedMeter

#: How much lower the worker's priority is than the exporter's (``nice``).
NICENESS = 10
#: The largest frame either side accepts (a household pickles to about 50 KB).
MAX_FRAME = 16 << 20


def read_frame(stream: IO[bytes]) -> bytes | None:
    """One frame's payload, or None at the end of the stream."""
    head = stream.read(4)
    if len(head) < 4:
        return None
    size = int.from_bytes(head, "big")
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes is larger than {MAX_FRAME}")
    payload = stream.read(size)
    if len(payload) < size:
        return None
    return payload


def write_frame(stream: IO[bytes], payload: bytes) -> None:
    stream.write(len(payload).to_bytes(4, "big") + payload)
    stream.flush()


def build(options: SimOptions) -> tuple[str, SimulatedMeter, float] | tuple[str, str]:
    """The answer to one job."""
    began = time.monotonic()
    try:
        meter = SimulatedMeter.from_options(options)
    except Exception as exc:  # sent back: the exporter decides what to do with it
        return ("error", f"{type(exc).__name__}: {exc}")
    return ("ok", meter, time.monotonic() - began)


def main() -> int:
    # Best effort: the systemd unit's system-call filter (~@resources) forbids it.
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    # Ctrl-C reaches the whole process group; the exporter ends its workers by closing
    # their input, so a worker has nothing to print about it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    while (job := read_frame(source)) is not None:
        options = pickle.loads(job)
        write_frame(sink, pickle.dumps(build(options), protocol=pickle.HIGHEST_PROTOCOL))
    return 0


if __name__ == "__main__":
    sys.exit(main())
