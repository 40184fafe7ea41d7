"""``sim://`` meters: the simulated meter as an in-process source of telegram bytes."""

from __future__ import annotations

import time
from collections import deque

from p1_exporter.meter.sources.base import CancellablePause
from p1_exporter.sim.meter import SimOptions, SimulatedMeter


class SimSource(CancellablePause):
    """Produces the simulator's bytes at its interval (``sim://?dialect=...&interval=...``).

    The household survives reconnects, so its registers keep rising; it is a function
    of the seed and the clock, so a restarted exporter (same seed, real time) continues
    where it was. ``interval`` is in simulated seconds; ``speed`` simulated seconds pass
    per real second.
    """

    def __init__(self, url: str) -> None:
        super().__init__()
        self.options = SimOptions.from_url(url)
        self.description = url
        self.meter: SimulatedMeter | None = None
        self._real0 = 0.0
        self._next = 0.0
        self._queue: deque[tuple[float, bytes]] = deque()

    def build(self) -> None:
        """Build the household once (tens of ms of CPU); safe to call from a worker thread
        before :meth:`open`, so an event loop need not wait for it."""
        if self.meter is None:
            real0 = time.monotonic()
            meter = SimulatedMeter.from_options(self.options)
            self._real0 = real0
            self.meter = meter

    def adopt(self, meter: SimulatedMeter, began: float) -> None:
        """Take a household built elsewhere (a worker process) from these options, whose
        build began at monotonic time ``began``; as :meth:`build` otherwise."""
        if self.meter is None:
            self._real0 = began
            self.meter = meter

    def open(self) -> None:
        self.build()
        self._next = time.monotonic()
        self._queue.clear()

    def _simulated_time(self, now: float) -> float:
        assert self.meter is not None
        return self.meter.start + (now - self._real0) * self.options.speed

    def take(self, now: float) -> bytes:
        """The next piece due at ``now`` (monotonic), or b"" when none is due yet."""
        meter = self.meter
        if meter is None:
            raise RuntimeError("SimSource read before open")
        if not self._queue and now >= self._next:
            self._next = max(self._next + self.options.interval / self.options.speed, now - 1.0)
            due = now
            for chunk in meter.chunks_at(self._simulated_time(now)):
                due += chunk.pause_before
                self._queue.append((due, chunk.data))
        if self._queue and self._queue[0][0] <= now:
            return self._queue.popleft()[1]
        return b""

    def next_due(self) -> float:
        """When :meth:`take` next has something (monotonic time)."""
        return self._queue[0][0] if self._queue else self._next

    def read(self, timeout: float) -> bytes:
        data = self.take(time.monotonic())
        if not data:
            self._pause(min(timeout, self.next_due() - time.monotonic()))
        return data

    def close(self) -> None:
        self._queue.clear()
