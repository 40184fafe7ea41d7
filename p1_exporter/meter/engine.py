"""One meter's state machine: bytes and times in, published snapshots out.

Sans-I/O and without threads: a driver (a thread blocking on a serial port, or a coroutine on
the event loop) opens the source, feeds what it reads here with the time from its clock, and
asks :meth:`MeterEngine.check` what to do and :meth:`MeterEngine.wake_at` how long it may block.
The engine owns the counters, the framing stream, the glitch guard, the link diagnostics,
the log limits and the :class:`~p1_exporter.meter.link.LinkSupervisor`; it publishes an
immutable :class:`~p1_exporter.meter.snapshot.Snapshot` by replacing one reference, so
scrapes never wait for it.
"""

from __future__ import annotations

import logging
import re
import time
import traceback
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
from p1_exporter.meter.link import LinkAction, LinkSupervisor
from p1_exporter.meter.protocol import Stream, make_stream
from p1_exporter.meter.snapshot import RESULTS, Snapshot
from p1_exporter.meter.sources.base import (
    SOURCE_ERROR_KINDS,
    SerialSettings,
    SourceError,
    SourceErrorKind,
)

log = logging.getLogger("p1_exporter.reader")

#: Log keys of source failures; re-armed only by a valid telegram, so a link that
#: connects and fails again (silent dongle, HTTP 500, flapping cable) logs once.
FAILURE_KEYS = tuple(f"source:{kind}" for kind in SOURCE_ERROR_KINDS if kind != "ended")
#: Log lines about what a meter sends (malformed lines, refusals, glitches, a replaced
#: meter, link diagnoses) per meter and minute; then one summary line. Counters stay exact.
DATA_LOG_BUDGET = 10
DATA_LOG_WINDOW = 60.0
#: Longest piece of a malformed line quoted in the log.
_SHOWN = 120
_VARYING = re.compile(r"'[^']*'|\"[^\"]*\"|\d+")
#: Distinct unexpected exceptions (type and place) whose traceback is logged, per meter.
_MAX_TRACEBACKS = 32


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
    #: HAN: the owner's scalers for values the meter sends without one, as (quantity,
    #: power of ten) pairs (``core.cosem.SCALER_KINDS``); empty: the makers' own.
    han_scalers: tuple[tuple[str, int], ...] = ()


def _bug_site(exc: BaseException) -> str:
    """Where an exception was raised (type, file and line): one key per bug, not per value."""
    frames = traceback.extract_tb(exc.__traceback__)
    place = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
    return f"{type(exc).__qualname__}@{place}"


class MeterEngine:
    """The state of one meter, advanced by a driver; ``snapshot`` is always safe to read.

    ``clock`` is the monotonic clock the driver passes times from (injected in tests);
    ``wall`` stamps the wall-clock arrival of a telegram. ``on_telegram``, when given, is
    called with each snapshot that carries a new telegram, right after it is published
    (the live page's history and the /metrics cache use it); it must be quick, and an
    exception from it is logged once and otherwise ignored.
    """

    def __init__(
        self,
        config: MeterConfig,
        description: str,
        *,
        autodetect: bool = False,
        settings: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        on_telegram: Callable[[Snapshot], None] | None = None,
    ) -> None:
        self.config = config
        self._on_telegram = on_telegram
        self._announced: Telegram | None = None
        self.description = description
        self.clock = clock
        self._wall = wall
        self.link = LinkSupervisor(
            silence_timeout=config.silence_timeout,
            detect_timeout=config.detect_timeout,
            autodetect=autodetect,
            backoff=Backoff(config.backoff_initial, config.backoff_cap),
        )
        fields = {"meter": config.name, "source": description}
        # Link failures and meter data have budgets of their own: a flood of either never
        # hides the other.
        self._limiter, self._data_log = (
            LogLimiter(
                log,
                budget=DATA_LOG_BUDGET,
                window=DATA_LOG_WINDOW,
                subject=f"meter {config.name}",
                fields=fields,
                clock=clock,
            )
            for _ in range(2)
        )
        self.fields = fields
        self._diagnostics = Diagnostics(f"meter {config.name}")
        self._guard = GlitchGuard()
        self._counts: dict[Result, int] = dict.fromkeys(RESULTS, 0)
        if config.protocol != "dsmr":
            self._counts.update(dict.fromkeys(EXTRA_RESULTS, 0))
        self._frame_counter = FrameCounter()  # outlives reconnects: replays stay refused
        self._merger = ListMerger()  # HAN lists 1-3 carried forward across reconnects
        self._latest: Telegram | None = None
        self._received_at: float | None = None
        self._received_mono: float | None = None
        self._bytes = 0
        self._garbage = 0  # skipped by the framers of earlier streams
        self._stream: Stream | None = None
        self._noise_since: float | None = None
        self._connects = 0
        self._glitches = 0
        self._unknown = 0
        self._malformed = 0
        self._errors = 0
        self._connected = False
        self._tracebacks: set[str] = set()
        self.settings = settings
        self._last_error: str | None = None
        self._snapshot = Snapshot(config.name, description, config.stale_after)

    @property
    def snapshot(self) -> Snapshot:
        """The latest published state (an immutable object; no lock needed)."""
        return self._snapshot

    @property
    def name(self) -> str:
        """The meter's name (its ``meter`` label)."""
        return self.config.name

    # -- what the driver reports -------------------------------------------------------------
    def connected(self, now: float, settings: str | None = None) -> None:
        """The source was opened at ``now`` (with these serial settings, if any)."""
        if settings is not None:
            self.settings = settings
        self._connects += 1
        self._connected = True
        self.link.connected(now)
        log.log(
            logging.INFO if self._connects == 1 else logging.DEBUG,
            "meter %s: connected to %s",
            self.name,
            self.description,
            extra=self.fields,
        )
        self._new_stream()
        self._publish()

    def feed(self, data: bytes, now: float) -> None:
        """Bytes arrived at ``now``: frame, validate, publish."""
        if not data:
            return
        stream = self._stream if self._stream is not None else self._new_stream()
        self.link.bytes_arrived(now)
        self._bytes += len(data)
        outcomes = stream.feed(data)
        frames = sum(1 for outcome in outcomes if outcome.raw)  # not torn bits
        self._report(self._diagnostics.bytes_read(data, frames))
        for outcome in outcomes:
            self._handle(outcome, now)
        if stream.noise_pending and self._noise_since is None:
            self._noise_since = now
        self._publish()

    def check(self, now: float) -> LinkAction:
        """What the driver should do at ``now``; also ends log windows and releases noise.

        SILENT has already flushed the stream: the driver closes the source and reports
        :meth:`silent_error` as a failure.
        """
        self._data_log.tick(now)
        self._limiter.tick(now)
        stream = self._stream
        if stream is not None and not stream.noise_pending:
            self._noise_since = None
        elif (
            stream is not None
            and self._noise_since is not None
            and now - self._noise_since >= NOISE_REPORT_SECONDS
        ):
            self._noise_since = None
            for outcome in stream.release_noise():
                self._handle(outcome, now)
            self._publish()
        action = self.link.check(now)
        if action is LinkAction.SILENT:
            self.flush(now)
        return action

    def wake_at(self) -> float:
        """The clock time at which :meth:`check` next has something to do."""
        wake = self.link.wake_at()
        if self._noise_since is not None:
            wake = min(wake, self._noise_since + NOISE_REPORT_SECONDS)
        for limiter in (self._limiter, self._data_log):
            due = limiter.summary_due()  # a held-back count is told when its window ends
            if due is not None:
                wake = min(wake, due)
        return wake

    def silent_error(self) -> SourceError:
        """The failure a silent link is reported as."""
        return SourceError(
            "silent",
            f"no bytes from {self.description} for {self.config.silence_timeout:g} s; reconnecting",
        )

    def settings_switched(self, settings: str, now: float) -> None:
        """The driver moved the port to other serial settings: a fresh framer."""
        self.settings = settings
        log.info(
            "meter %s: no valid telegram in %g s; trying %s",
            self.name,
            self.config.detect_timeout,
            settings,
            extra=self.fields,
        )
        self._new_stream()
        self._publish()

    def flush(self, now: float) -> None:
        """End of a stream (silence, end of a replay): what is left counts as torn."""
        stream = self._stream
        if stream is not None:
            self._noise_since = None
            for outcome in stream.flush():
                self._handle(outcome, now)
            self._publish()

    def failure(self, kind: SourceErrorKind, message: str) -> None:
        """A source failure: counted, and logged once per condition."""
        self._errors += 1
        self._last_error = message
        if kind == "ended":
            return  # not a fault: replay_finished says it once, naming the file
        level = logging.INFO if kind == "silent" else logging.WARNING
        self._limiter.log(f"source:{kind}", level, f"meter {self.name}: {message}", err=kind)

    def unexpected(self, exc: BaseException) -> None:
        """An exception nobody planned for: its traceback once at error level, then counts."""
        message = f"unexpected error: {exc!r} (reconnecting)"
        site = _bug_site(exc)
        if site not in self._tracebacks and len(self._tracebacks) < _MAX_TRACEBACKS:
            self._tracebacks.add(site)
            self._errors += 1
            self._last_error = message
            log.error(
                "meter %s: %s",
                self.name,
                message,
                exc_info=exc,
                extra={**self.fields, "err": "internal"},
            )
            self._limiter.forget("source:internal")
            return
        self.failure("internal", message)

    def disconnected(self) -> None:
        """The source was closed."""
        self._connected = False
        self._publish()

    def replay_finished(self) -> None:
        """A replayed file ended: said once."""
        self._limiter.log(
            "ended", logging.INFO, f"meter {self.name}: {self.description} replay finished"
        )

    def reconnect_delay(self) -> float:
        """Seconds to wait before the next connection attempt."""
        return self.link.reconnect_delay()

    # -- inside ------------------------------------------------------------------------------
    def _publish(self) -> None:
        self._snapshot = Snapshot(
            name=self.config.name,
            source=self.description,
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
            settings=self.settings,
            last_error=self._last_error,
            diagnostics=self._diagnostics.active(),
        )
        if self._on_telegram is not None and self._latest is not self._announced:
            self._announced = self._latest
            try:
                self._on_telegram(self._snapshot)
            except Exception as exc:  # a listener must not cost the meter its readings
                self._limiter.log(
                    "listener",
                    logging.ERROR,
                    f"meter {self.name}: telegram listener failed: {exc!r}",
                )

    def _new_stream(self) -> Stream:
        """A fresh decoder for a new connection or new line settings (no half frame kept)."""
        config = self.config
        self._garbage = self._garbage_bytes()
        self._noise_since = None
        self._stream = make_stream(
            config.protocol,
            config.keys,
            self._frame_counter,
            check_crc=config.check_crc,
            max_size=config.max_telegram_size,
            merger=self._merger,
            scalers=dict(config.han_scalers),
        )
        return self._stream

    def _garbage_bytes(self) -> int:
        """Bytes the framers skipped outside any frame, over every stream so far."""
        stream = self._stream
        return self._garbage + (stream.garbage_bytes if stream is not None else 0)

    def _handle(self, outcome: Outcome, now: float) -> None:
        name = self.config.name
        result = outcome.result
        self._counts[result] += 1
        torn = isinstance(outcome.error, TornTelegram)
        self._report(self._diagnostics.outcome(result, torn=torn))
        if outcome.telegram is None:
            self._data_log.log(
                f"refused:{result}",
                logging.WARNING,
                f"meter {name}: telegram refused ({result}): {outcome.error}",
            )
            return
        if self.link.valid_telegram(now):
            log.info("meter %s: detected %s", name, self.settings, extra=self.fields)
        failing = [key for key in FAILURE_KEYS if self._limiter.active(key)]
        if failing:
            self._limiter.forget(*failing)
            self._limiter.budgeted(
                "recovered",
                logging.INFO,
                f"meter {name}: valid telegrams from {self.description} again",
            )
        telegram, glitches, note = self._guard.filter(outcome.telegram)
        if note:
            self._data_log.log("meter replaced", logging.WARNING, f"meter {name}: {note}")
        for glitch in glitches:
            self._glitches += 1
            self._data_log.log(
                f"glitch:{glitch.key}",
                logging.WARNING,
                f"meter {name}: {glitch.key} went backwards ({glitch.previous:g} -> "
                f"{glitch.value:g}); value withheld",
            )
        self._unknown += len(telegram.unknown)
        self._malformed += len(telegram.malformed)
        for issue in telegram.malformed:
            shown = issue.line if len(issue.line) <= _SHOWN else issue.line[:_SHOWN] + "..."
            self._data_log.log(
                issue_key(issue.line, issue.reason),
                logging.WARNING,
                f"meter {name}: skipped line {shown!r}: {issue.reason[:_SHOWN]}",
            )
        for line in telegram.unknown:
            self._data_log.log(
                f"unknown:{line.obis}",
                logging.DEBUG,
                f"meter {name}: unknown OBIS line {line.obis}{line.raw[:_SHOWN]}",
            )
        self._latest = telegram
        self._received_at = self._wall()
        self._received_mono = now

    def _report(self, findings: list[Finding]) -> None:
        for finding in findings:
            level = logging.INFO if finding.level == "info" else logging.WARNING
            self._data_log.budgeted("diagnosis", level, finding.message)
