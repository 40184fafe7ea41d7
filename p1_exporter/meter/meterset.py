"""All of an exporter's meters behind one surface: run them, read their snapshots, stop them.

Network meters (``socket://``, ``http://``, ``sim://``) are coroutines on the caller's event
loop (:mod:`p1_exporter.meter.loopdriver`); serial ports, ``rfc2217://`` and ``file:`` keep
a thread each (:mod:`p1_exporter.meter.reader`), because their I/O blocks. The exporter
awaits :meth:`MeterSet.run` on its loop; a program without a loop of its own calls
:meth:`MeterSet.start`, which runs one in a dedicated thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from p1_exporter.meter.engine import MeterConfig
from p1_exporter.meter.loopdriver import LoopMeter, loop_driven
from p1_exporter.meter.reader import MeterReader
from p1_exporter.meter.snapshot import Snapshot
from p1_exporter.meter.sources.base import Source

#: Seconds the reader threads get, together, to end after a stop.
THREAD_STOP_TIMEOUT = 1.0


class Meter(Protocol):
    """What either driver offers: its config, its source's name, its latest snapshot."""

    @property
    def config(self) -> MeterConfig: ...

    @property
    def description(self) -> str: ...

    @property
    def snapshot(self) -> Snapshot: ...

    @property
    def alive(self) -> bool: ...

    def wake(self) -> None: ...


def make_meter(
    config: MeterConfig,
    source: Source | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    on_telegram: Callable[[Snapshot], None] | None = None,
) -> LoopMeter | MeterReader:
    """The driver for one meter (a loop meter where possible); ValueError for a bad address.

    ``on_telegram`` is called with each snapshot that carries a new telegram (see
    :class:`~p1_exporter.meter.engine.MeterEngine`).
    """
    if source is None and loop_driven(config.url):
        return LoopMeter(config, clock=clock, on_telegram=on_telegram)
    return MeterReader(config, source, clock=clock, on_telegram=on_telegram)


class MeterSet:
    """The exporter's meters; ``snapshots()`` is safe from any thread at any time."""

    def __init__(self, meters: Iterable[LoopMeter | MeterReader]) -> None:
        self.meters = list(meters)
        self._loop_meters = [m for m in self.meters if isinstance(m, LoopMeter)]
        self._threads = [m for m in self.meters if isinstance(m, MeterReader)]
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._running = threading.Event()

    @classmethod
    def from_configs(
        cls, configs: Iterable[MeterConfig], *, clock: Callable[[], float] = time.monotonic
    ) -> MeterSet:
        """One driver per config; ValueError (naming no meter) for a bad address."""
        return cls(make_meter(config, clock=clock) for config in configs)

    def __iter__(self) -> Iterator[LoopMeter | MeterReader]:
        return iter(self.meters)

    def __len__(self) -> int:
        return len(self.meters)

    def snapshots(self) -> list[Snapshot]:
        """Every meter's latest snapshot, in configuration order."""
        return [meter.snapshot for meter in self.meters]

    async def run(self, stop: asyncio.Event) -> None:
        """Run every meter until ``stop`` is set; then stop them all (threads within 1 s)."""
        for reader in self._threads:
            reader.start()
        tasks = [
            asyncio.create_task(meter.run(), name=f"p1-meter-{meter.config.name}")
            for meter in self._loop_meters
        ]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._threads:
                await asyncio.get_running_loop().run_in_executor(None, self._stop_threads)

    def _stop_threads(self) -> None:
        for reader in self._threads:
            reader.request_stop()
        # One shared deadline: the reader threads are daemons, so one stuck in a slow read
        # cannot hold the process past it.
        deadline = time.monotonic() + THREAD_STOP_TIMEOUT
        for reader in self._threads:
            reader.stop(timeout=max(0.0, deadline - time.monotonic()))

    # -- for a program without an event loop: one in a thread -------------------------------
    def start(self) -> None:
        """Run the meters on an event loop in a dedicated daemon thread."""
        self._thread = threading.Thread(target=self._serve, name="p1-meters", daemon=True)
        self._thread.start()
        self._running.wait(5.0)

    def _serve(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._running.set()
            await self.run(self._stop)

        asyncio.run(main())

    def stop(self, timeout: float = 1.5) -> None:
        """Stop what :meth:`start` started and wait for it (at most ``timeout`` seconds)."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """True while the thread of :meth:`start` runs."""
        return self._thread is not None and self._thread.is_alive()
