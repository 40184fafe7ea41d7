"""The thread driver: one meter whose source blocks (a serial port, rfc2217://, file:).

The thread opens the source, blocks in its ``read`` until bytes arrive or the engine's
next deadline (:meth:`~p1_exporter.meter.engine.MeterEngine.wake_at`: silence, serial
settings detection, line noise) and feeds what came to the
:class:`~p1_exporter.meter.engine.MeterEngine`, which publishes the snapshots. Nothing polls:
a stop or a :meth:`MeterReader.wake` cancels the blocking read. No exception leaves the
thread: every failure is logged (once per condition), counted, and followed by a reconnect
with exponential backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from p1_exporter.meter.engine import (
    DATA_LOG_BUDGET,
    DATA_LOG_WINDOW,
    MeterConfig,
    MeterEngine,
    issue_key,
)
from p1_exporter.meter.link import LinkAction
from p1_exporter.meter.protocol import HAN_SERIAL
from p1_exporter.meter.snapshot import Snapshot
from p1_exporter.meter.sources.address import open_source
from p1_exporter.meter.sources.base import Source, SourceError
from p1_exporter.meter.sources.serial import SerialSource

__all__ = [
    "DATA_LOG_BUDGET",
    "DATA_LOG_WINDOW",
    "MAX_BLOCK",
    "MeterConfig",
    "MeterReader",
    "issue_key",
]

log = logging.getLogger("p1_exporter.reader")

#: The longest one read blocks on a source that cannot be cancelled (pyserial's socket://,
#: a source a test hands in): how quickly such a thread notices a stop. Sources with
#: ``cancel_read`` block until their deadline.
MAX_BLOCK = 0.2


def cancellable(source: object) -> bool:
    """True when a blocking ``read`` of ``source`` can be cut short from another thread."""
    if isinstance(source, SerialSource):
        return source.cancellable
    return callable(getattr(source, "cancel_read", None))


class MeterReader:
    """Reads one meter in a daemon thread; ``snapshot`` is always safe to read.

    ``clock`` is the monotonic clock of every deadline (a test passes one it can advance,
    then calls :meth:`wake`).
    """

    def __init__(
        self,
        config: MeterConfig,
        source: Source | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_telegram: Callable[[Snapshot], None] | None = None,
    ) -> None:
        self.config = config
        self.source = source or open_source(config.url, config.settings, config.poll_interval)
        serial = self.source if isinstance(self.source, SerialSource) else None
        if config.protocol == "han" and serial is not None and serial.autodetect:
            serial.candidates = list(HAN_SERIAL)  # HAN ports: 2400 8E1, then 115200 8N1
        self.engine = MeterEngine(
            config,
            self.source.description,
            autodetect=bool(serial and serial.autodetect),
            settings=str(serial.settings) if serial else None,
            clock=clock,
            on_telegram=on_telegram,
        )
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cancellable = cancellable(self.source)

    # -- public surface -------------------------------------------------------------------
    @property
    def description(self) -> str:
        """The source's name for logs and labels (no password)."""
        return self.source.description

    @property
    def snapshot(self) -> Snapshot:
        """The latest published state (an immutable object; no lock needed)."""
        return self.engine.snapshot

    def start(self) -> None:
        """Start the reader thread."""
        self._thread = threading.Thread(
            target=self._run, name=f"p1-reader-{self.config.name}", daemon=True
        )
        self._thread.start()

    def wake(self) -> None:
        """Cut a blocking read short: the thread checks its deadlines and stop flag now."""
        if self._cancellable:
            self.source.cancel_read()  # type: ignore[attr-defined]

    def request_stop(self) -> None:
        """Ask the thread to stop, without waiting (stop many readers at once)."""
        self._stop.set()
        self.wake()

    def stop(self, timeout: float = 1.5) -> None:
        """Ask the thread to stop and wait for it (at most ``timeout`` seconds)."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """True while the reader thread runs."""
        return self._thread is not None and self._thread.is_alive()

    # -- the thread -----------------------------------------------------------------------
    def _run(self) -> None:
        engine = self.engine
        while not self._stop.is_set():
            try:
                self._session()
            except SourceError as exc:
                engine.failure(exc.kind, str(exc))
            except Exception as exc:  # the thread must survive anything
                engine.unexpected(exc)
            finally:
                self.source.close()
                engine.disconnected()
            if self._stop.is_set():
                break
            if getattr(self.source, "finished", False):
                engine.replay_finished()
                self._stop.wait()
                break
            self._stop.wait(engine.reconnect_delay())

    def _session(self) -> None:
        source, engine, clock = self.source, self.engine, self.clock
        source.open()
        serial = source if isinstance(source, SerialSource) else None
        engine.connected(clock(), str(serial.settings) if serial else None)
        while not self._stop.is_set():
            timeout = max(0.0, engine.wake_at() - clock())
            if not self._cancellable:
                timeout = min(timeout, MAX_BLOCK)
            data = source.read(timeout)
            now = clock()
            if data:
                engine.feed(data, now)
                # A source that always has bytes (a file replayed flat out, /dev/zero) would
                # keep the GIL from the event loop's thread for whole switch intervals at a
                # time; handing it over after each piece keeps /metrics answering.
                time.sleep(0)
            elif getattr(source, "finished", False):
                engine.flush(now)
                raise SourceError("ended", "replay finished")
            action = engine.check(now)
            if action is LinkAction.SILENT:
                raise engine.silent_error()
            if action is LinkAction.NEXT_SETTINGS:
                assert serial is not None
                engine.settings_switched(str(serial.next_settings()), now)
