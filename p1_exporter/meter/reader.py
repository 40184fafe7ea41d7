"""One background thread per meter: read, frame, validate, publish a snapshot.

The thread owns its source and its counters. It publishes an immutable
:class:`~p1_exporter.meter.snapshot.Snapshot` by replacing one reference, so scrapes
never wait for the reader and the reader never waits for scrapes. No exception
leaves the thread: every failure is logged (once per condition), counted, and
followed by a reconnect with exponential backoff.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType

from p1_exporter.core.cipher import FrameCounter, Keys
from p1_exporter.core.errors import EXTRA_RESULTS, Result, TornTelegram
from p1_exporter.core.framing import DEFAULT_MAX_SIZE, NOISE_REPORT_SECONDS
from p1_exporter.core.han_stream import ListMerger
from p1_exporter.core.stream import Outcome
from p1_exporter.core.telegram import Telegram
from p1_exporter.logs.limiter import LogLimiter
from p1_exporter.meter.backoff import Backoff
from p1_exporter.meter.diagnostics import Diagnostics, Finding
from p1_exporter.meter.glitch import GlitchGuard
from p1_exporter.meter.protocol import HAN_SERIAL, Stream, make_stream
from p1_exporter.meter.snapshot import RESULTS, Snapshot
from p1_exporter.meter.sources import SerialSettings, SerialSource, Source, SourceError, open_source

log = logging.getLogger("p1_exporter.reader")

#: How long one read may block; bounds how quickly the thread notices a stop.
READ_TIMEOUT = 0.2
#: Log keys of source failures; re-armed only by a valid telegram, so a link that
#: connects and fails again (silent dongle, HTTP 500, flapping cable) logs once.
_FAILURE_KEYS = tuple(f"source:{kind}" for kind in (
    "not_found", "permission", "busy", "refused", "open_failed", "disconnected", "silent",
    "http", "internal", "closed"))
#: Log lines about what a meter sends (malformed lines, refusals, glitches, a replaced
#: meter, link diagnoses) per meter and minute; then one summary line. Counters stay exact.
DATA_LOG_BUDGET = 10
DATA_LOG_WINDOW = 60.0
#: Longest piece of a malformed line quoted in the log.
_SHOWN = 120
_VARYING = re.compile(r"'[^']*'|\"[^\"]*\"|\d+")


def issue_key(line: str, reason: str) -> str:
    """The log key of a malformed line: its OBIS code and the kind of its reason.

    Values (and numbers quoted in the reason) are left out, so a line whose value
    changes every telegram is one condition, not a new one each time.
    """
    code = line.partition("(")[0].strip()[:32]
    return f"malformed line:{code}:{_VARYING.sub('#', reason)[:80]}"


@dataclass(frozen=True)
class MeterConfig:
    """Everything about one meter. Times are in seconds."""

    url: str
    name: str = "main"
    settings: SerialSettings | None = None
    stale_after: float = 60.0
    detect_timeout: float = 25.0
    silence_timeout: float = 30.0
    poll_interval: float = 1.0
    check_crc: bool = True
    backoff_initial: float = 0.5
    backoff_cap: float = 30.0
    max_telegram_size: int = DEFAULT_MAX_SIZE
    #: dsmr (plain telegrams), encrypted (DLMS-encrypted P1) or han (DLMS/COSEM frames).
    protocol: str = "dsmr"
    keys: Keys | None = field(default=None, repr=False)


class MeterReader:
    """Reads one meter in a daemon thread; ``snapshot`` is always safe to read.

    ``on_telegram``, when given, is called in the reader thread with each snapshot that
    carries a new telegram, right after it is published (the live page's history uses
    it); it must be quick, and an exception from it is logged once and otherwise ignored.
    """

    def __init__(self, config: MeterConfig, source: Source | None = None,
                 on_telegram: Callable[[Snapshot], None] | None = None) -> None:
        self.config = config
        self._on_telegram = on_telegram
        self._announced: Telegram | None = None
        self.source = source or open_source(config.url, config.settings, config.poll_interval)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._backoff = Backoff(config.backoff_initial, config.backoff_cap)
        # Link failures and meter data have budgets of their own: a flood of either never
        # hides the other.
        self._limiter = LogLimiter(log, budget=DATA_LOG_BUDGET, window=DATA_LOG_WINDOW,
                                   subject=f"meter {config.name}")
        self._data_log = LogLimiter(log, budget=DATA_LOG_BUDGET, window=DATA_LOG_WINDOW,
                                    subject=f"meter {config.name}")
        self._diagnostics = Diagnostics(f"meter {config.name}")
        self._guard = GlitchGuard()
        self._counts: dict[Result, int] = dict.fromkeys(RESULTS, 0)
        if config.protocol != "dsmr":
            self._counts.update(dict.fromkeys(EXTRA_RESULTS, 0))
        self._frame_counter = FrameCounter()  # outlives reconnects: replays stay refused
        self._merger = ListMerger()  # HAN lists 1-3 carried forward across reconnects
        if config.protocol == "han" and isinstance(self.source, SerialSource) \
                and self.source.autodetect:
            self.source.candidates = list(HAN_SERIAL)
        self._latest: Telegram | None = None
        self._received_at: float | None = None
        self._received_mono: float | None = None
        self._bytes = 0
        self._garbage = 0  # skipped by the framers of earlier streams
        self._stream: Stream | None = None
        self._connects = 0
        self._glitches = 0
        self._unknown = 0
        self._malformed = 0
        self._errors = 0
        self._connected = False
        self._settings_locked = not isinstance(self.source, SerialSource) or not getattr(
            self.source, "autodetect", False
        )
        self._last_error: str | None = None
        self._snapshot = Snapshot(config.name, self.source.description, config.stale_after)

    # -- public surface -------------------------------------------------------------------
    @property
    def snapshot(self) -> Snapshot:
        """The latest published state (an immutable object; no lock needed)."""
        return self._snapshot

    def start(self) -> None:
        """Start the reader thread."""
        self._thread = threading.Thread(
            target=self._run, name=f"p1-reader-{self.config.name}", daemon=True
        )
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the thread to stop, without waiting (stop many readers at once)."""
        self._stop.set()

    def stop(self, timeout: float = 1.5) -> None:
        """Ask the thread to stop and wait for it (at most ``timeout`` seconds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """True while the reader thread runs."""
        return self._thread is not None and self._thread.is_alive()

    # -- the thread -----------------------------------------------------------------------
    def _publish(self) -> None:
        source = self.source
        settings = str(source.settings) if isinstance(source, SerialSource) else None
        self._snapshot = Snapshot(
            name=self.config.name,
            source=source.description,
            stale_after=self.config.stale_after,
            telegram=self._latest,
            received_at=self._received_at,
            received_monotonic=self._received_mono,
            telegrams=MappingProxyType(dict(self._counts)),
            bytes_read=self._bytes,
            garbage_bytes=self._garbage_bytes(),
            connects=self._connects,
            glitches=self._glitches,
            unknown_lines=self._unknown,
            malformed_lines=self._malformed,
            source_errors=self._errors,
            connected=self._connected,
            settings=settings,
            last_error=self._last_error,
            diagnostics=self._diagnostics.active(),
        )
        if self._on_telegram is not None and self._latest is not self._announced:
            self._announced = self._latest
            try:
                self._on_telegram(self._snapshot)
            except Exception as exc:  # a listener must not cost the meter its readings
                self._limiter.log("listener", logging.ERROR,
                                  f"meter {self.config.name}: telegram listener failed: {exc!r}")

    def _run(self) -> None:
        name = self.config.name
        while not self._stop.is_set():
            try:
                self._session()
            except SourceError as exc:
                self._failure(exc.kind, str(exc))
            except Exception as exc:  # the thread must survive anything
                log.debug("meter %s: unexpected error", name, exc_info=True)
                self._failure("internal", f"unexpected error: {exc!r} (reconnecting)")
            finally:
                self.source.close()
                self._connected = False
                self._publish()
            if self._stop.is_set():
                break
            if getattr(self.source, "finished", False):
                self._limiter.log("ended", logging.INFO,
                                  f"meter {name}: {self.source.description} replay finished")
                self._stop.wait()
                break
            self._stop.wait(self._backoff.next_delay())

    def _failure(self, kind: str, message: str) -> None:
        self._errors += 1
        self._last_error = message
        if kind == "ended":
            return  # not a fault: _run says it once, naming the file
        level = logging.INFO if kind == "silent" else logging.WARNING
        self._limiter.log(f"source:{kind}", level, f"meter {self.config.name}: {message}")

    def _session(self) -> None:
        config = self.config
        self.source.open()
        self._connects += 1
        self._connected = True
        log.log(logging.INFO if self._connects == 1 else logging.DEBUG,
                "meter %s: connected to %s", config.name, self.source.description)
        self._publish()
        stream = self._new_stream()
        now = time.monotonic()
        last_bytes = last_detect = now
        noise_since: float | None = None
        while not self._stop.is_set():
            data = self.source.read(READ_TIMEOUT)
            now = time.monotonic()
            self._data_log.tick(now)
            self._limiter.tick(now)
            if not stream.noise_pending:
                noise_since = None
            elif noise_since is None:
                noise_since = now
            elif now - noise_since >= NOISE_REPORT_SECONDS:
                for outcome in stream.release_noise():
                    self._handle(outcome)
                noise_since = None
            if data:
                last_bytes = now
                self._bytes += len(data)
                outcomes = stream.feed(data)
                frames = sum(1 for outcome in outcomes if outcome.raw)  # not torn bits
                self._report(self._diagnostics.bytes_read(data, frames))
                for outcome in outcomes:
                    if outcome.telegram is not None:
                        last_detect = now
                    self._handle(outcome)
                self._publish()
            elif getattr(self.source, "finished", False):
                for outcome in stream.flush():
                    self._handle(outcome)
                raise SourceError("ended", "replay finished")
            elif now - last_bytes > config.silence_timeout:
                for outcome in stream.flush():
                    self._handle(outcome)
                raise SourceError("silent", f"no bytes from {self.source.description} for "
                                  f"{config.silence_timeout:g} s; reconnecting")
            if not self._settings_locked and now - last_detect > config.detect_timeout:
                assert isinstance(self.source, SerialSource)
                settings = self.source.next_settings()
                log.info("meter %s: no valid telegram in %g s; trying %s", config.name,
                         config.detect_timeout, settings)
                stream = self._new_stream()
                last_detect = now
                self._publish()

    def _new_stream(self) -> Stream:
        """A fresh framer for a new connection or new line settings (no half telegram kept)."""
        config = self.config
        self._garbage = self._garbage_bytes()
        self._stream = make_stream(config.protocol, config.keys, self._frame_counter,
                                   check_crc=config.check_crc,
                                   max_size=config.max_telegram_size, merger=self._merger)
        return self._stream

    def _garbage_bytes(self) -> int:
        """Bytes the framers skipped outside any frame, over every stream so far."""
        stream = self._stream
        return self._garbage + (stream.garbage_bytes if stream is not None else 0)

    def _handle(self, outcome: Outcome) -> None:
        name = self.config.name
        result = outcome.result
        self._counts[result] += 1
        torn = isinstance(outcome.error, TornTelegram)
        self._report(self._diagnostics.outcome(result, torn=torn))
        if outcome.telegram is None:
            self._data_log.log(f"refused:{result}", logging.WARNING,
                               f"meter {name}: telegram refused ({result}): {outcome.error}")
            return
        if not self._settings_locked:
            self._settings_locked = True
            log.info("meter %s: detected %s", name, self.source.settings)  # type: ignore[attr-defined]
        self._backoff.reset()
        failing = [key for key in _FAILURE_KEYS if self._limiter.active(key)]
        if failing:
            self._limiter.forget(*failing)
            self._limiter.budgeted("recovered", logging.INFO, f"meter {name}: valid telegrams "
                                   f"from {self.source.description} again")
        telegram, glitches, note = self._guard.filter(outcome.telegram)
        if note:
            self._data_log.log("meter replaced", logging.WARNING, f"meter {name}: {note}")
        for glitch in glitches:
            self._glitches += 1
            self._data_log.log(
                f"glitch:{glitch.key}", logging.WARNING,
                f"meter {name}: {glitch.key} went backwards ({glitch.previous:g} -> "
                f"{glitch.value:g}); value withheld",
            )
        self._unknown += len(telegram.unknown)
        self._malformed += len(telegram.malformed)
        for issue in telegram.malformed:
            shown = issue.line if len(issue.line) <= _SHOWN else issue.line[:_SHOWN] + "..."
            self._data_log.log(issue_key(issue.line, issue.reason), logging.WARNING,
                               f"meter {name}: skipped line {shown!r}: {issue.reason[:_SHOWN]}")
        for line in telegram.unknown:
            self._data_log.log(f"unknown:{line.obis}", logging.DEBUG,
                               f"meter {name}: unknown OBIS line {line.obis}{line.raw[:_SHOWN]}")
        self._latest = telegram
        self._received_at = time.time()
        self._received_mono = time.monotonic()

    def _report(self, findings: list[Finding]) -> None:
        for finding in findings:
            level = logging.INFO if finding.level == "info" else logging.WARNING
            self._data_log.budgeted("diagnosis", level, finding.message)
