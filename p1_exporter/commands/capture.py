"""``p1-exporter capture``: record every telegram a meter sends, valid or not, to a file.

The capture keeps each telegram's raw bytes, its receive time and what the
exporter made of it (see :mod:`p1_exporter.history.capture`). ``file:CAPTURE`` replays
it; ``p1-exporter backfill`` turns it into history for Prometheus.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from types import FrameType

from p1_exporter.commands.meter_keys import add_protocol_arguments, keys_from_arguments
from p1_exporter.core.cipher import FrameCounter, Keys
from p1_exporter.core.errors import EXTRA_RESULTS
from p1_exporter.core.framing import NOISE_REPORT_SECONDS
from p1_exporter.core.han_stream import ListMerger
from p1_exporter.history.capture import CaptureError, CaptureRecorder, CaptureWriter, Record
from p1_exporter.logs.limiter import LogLimiter
from p1_exporter.logs.setup import setup_logging
from p1_exporter.meter.backoff import Backoff
from p1_exporter.meter.link import LinkAction, LinkSupervisor
from p1_exporter.meter.protocol import HAN_SERIAL
from p1_exporter.meter.reader import MAX_BLOCK, cancellable
from p1_exporter.meter.snapshot import RESULTS
from p1_exporter.meter.sources.address import open_source
from p1_exporter.meter.sources.base import SerialSettings, Source, SourceError
from p1_exporter.meter.sources.serial import SerialSource

log = logging.getLogger("p1_exporter.capture")

#: Reconnect when no byte arrives for this long.
SILENCE_TIMEOUT = 30.0
#: Without fixed serial settings, try the other ones after this long without a valid telegram.
DETECT_TIMEOUT = 25.0

_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?)\s*([kmg]?)(?:i?b)?\s*", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``10485760``, ``512k``, ``10M``, ``10MiB``, ``1G``: bytes (binary multiples; 0: never)."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 10M)")
    scale = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match[2].lower()]
    return int(float(match[1]) * scale)


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive whole number")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the capture subcommand."""
    parser.add_argument(
        "--device",
        required=True,
        metavar="URL",
        help="the meter: serial device, socket://host:port, rfc2217://, "
        "http://, file: or sim:// (as for the exporter)",
    )
    parser.add_argument(
        "--out", required=True, metavar="FILE", help="capture file; appended to when it exists"
    )
    parser.add_argument(
        "--max-bytes",
        type=parse_size,
        default=10 * 1024 * 1024,
        metavar="SIZE",
        help="rotate when the file would grow past this (default 10M; 0: never)",
    )
    parser.add_argument(
        "--backups",
        type=_count,
        default=5,
        metavar="N",
        help="rotated files kept: FILE.1 (newest) .. FILE.N (default 5)",
    )
    parser.add_argument(
        "--count", type=_count, metavar="N", help="stop after N telegrams (valid or not)"
    )
    parser.add_argument(
        "--duration", type=_seconds, metavar="SECONDS", help="stop after this many seconds"
    )
    add_protocol_arguments(
        parser,
        what="the meter sends: dsmr (plain telegrams), encrypted (P1) or han",
        scalers=False,
    )
    serial = parser.add_argument_group(
        "serial ports (default: auto-detect 115200 8N1, then 9600 7E1; han: 2400 8E1, "
        "then 115200 8N1)"
    )
    serial.add_argument("--baudrate", type=_positive, help="fix the speed, e.g. 115200")
    serial.add_argument("--bytesize", type=int, choices=[7, 8], help="fix the byte size")
    serial.add_argument("--parity", choices=["N", "E", "O"], help="fix the parity")
    parser.add_argument(
        "--log.level",
        dest="log_level",
        default="info",
        choices=["debug", "info", "warn", "error"],
        help="default info",
    )
    parser.add_argument(
        "--log.format",
        dest="log_format",
        default="logfmt",
        choices=["logfmt", "json"],
        help="default logfmt",
    )


@contextlib.contextmanager
def _stop_on_sigterm(capture: Capture) -> Iterator[None]:
    """SIGTERM ends the capture cleanly, like Ctrl-C (only settable in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        capture.stop.set()
        capture.wake()  # a read may block until the next deadline

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Capture:
    """The capture loop: read, frame, write records; reconnect on failures."""

    def __init__(
        self,
        source: Source,
        writer: CaptureWriter,
        *,
        count: int | None = None,
        duration: float | None = None,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
        protocol: str = "dsmr",
        keys: Keys | None = None,
    ) -> None:
        self.source = source
        self.protocol = protocol
        self.keys = keys
        self._counter = FrameCounter()  # outlives reconnects: replays stay refused
        self._merger = ListMerger()  # HAN lists carried forward across reconnects
        self.writer = writer
        self.count = count
        self.clock = clock
        self.deadline = None if duration is None else clock() + duration
        self.stop = stop or threading.Event()
        self.results: Counter[str] = Counter()
        self.reconnects = 0
        self.bytes_read = 0
        self.link = LinkSupervisor(
            silence_timeout=SILENCE_TIMEOUT,
            detect_timeout=DETECT_TIMEOUT,
            autodetect=isinstance(source, SerialSource) and source.autodetect,
            backoff=Backoff(0.5, 10.0),
        )
        self._cancellable = cancellable(source)
        self._limiter = LogLimiter(
            log,
            interval=60.0,
            budget=10,
            window=60.0,
            fields={"source": source.description},
            clock=clock,
        )

    def wake(self) -> None:
        """Cut a blocking read short (a stop, or a test that moved the clock on)."""
        if self._cancellable:
            self.source.cancel_read()  # type: ignore[attr-defined]

    @property
    def written(self) -> int:
        """Records written so far."""
        return sum(self.results.values())

    def _done(self) -> bool:
        if self.stop.is_set():
            return True
        if self.count is not None and self.written >= self.count:
            return True
        return self.deadline is not None and self.clock() >= self.deadline

    def _write(self, records: list[Record]) -> None:
        for record in records:
            if self.count is not None and self.written >= self.count:
                return
            self.writer.write(record)
            self.results[record.result] += 1
            if record.result != "ok":
                self._limiter.log(
                    f"refused:{record.result}",
                    logging.WARNING,
                    f"telegram refused ({record.result}), recorded: {record.reason or 'no reason'}",
                )

    def run(self) -> None:
        """Capture until the count, the duration, a stop or the end of a replayed file."""
        first = True
        while not self._done():
            try:
                self.source.open()
            except SourceError as exc:
                self._limiter.log(f"source:{exc.kind}", logging.WARNING, str(exc), err=exc.kind)
                self._pause()
                continue
            if not first:
                self.reconnects += 1
            first = False
            self._limiter.budgeted(
                "connect",
                logging.INFO if not self.reconnects else logging.DEBUG,
                f"capturing {self.source.description} to {self.writer.path}",
            )
            try:
                ended = self._session()
            except SourceError as exc:
                self._limiter.log(
                    f"source:{exc.kind}", logging.WARNING, f"{exc}; reconnecting", err=exc.kind
                )
                ended = False
            finally:
                self.source.close()
            if ended:
                break
            if not self._done():
                self._pause()

    def _pause(self) -> None:
        delay = self.link.reconnect_delay()
        if self.deadline is not None:
            delay = min(delay, max(0.0, self.deadline - self.clock()))
        self.stop.wait(delay)

    def _timeout(self, noise_since: float | None) -> float:
        """How long the next read may block: until the link's, the noise's or the capture's
        own deadline, whichever comes first."""
        wake = self.link.wake_at()
        if noise_since is not None:
            wake = min(wake, noise_since + NOISE_REPORT_SECONDS)
        if self.deadline is not None:
            wake = min(wake, self.deadline)
        timeout = max(0.0, wake - self.clock())
        return timeout if self._cancellable else min(timeout, MAX_BLOCK)

    def _recorder(self) -> CaptureRecorder:
        return CaptureRecorder(
            protocol=self.protocol, keys=self.keys, counter=self._counter, merger=self._merger
        )

    def _session(self) -> bool:
        """One connection; True when the source has nothing more to give (file replay).

        A stop (count, duration, signal) drops a telegram that is still arriving; a broken
        connection records it as torn.
        """
        recorder = self._recorder()
        source, link, clock = self.source, self.link, self.clock
        link.connected(clock())
        noise_since: float | None = None
        try:
            while not self._done():
                data = source.read(self._timeout(noise_since))
                now = clock()
                self._limiter.tick(now)
                if not recorder.stream.noise_pending:
                    noise_since = None
                elif noise_since is None:
                    noise_since = now
                elif now - noise_since >= NOISE_REPORT_SECONDS:  # one record per interval
                    self._write(recorder.release_noise(time.time()))
                    noise_since = None
                if data:
                    link.bytes_arrived(now)
                    self.bytes_read += len(data)
                    records = recorder.feed(data, time.time())
                    if any(record.result == "ok" for record in records):
                        link.valid_telegram(now)
                    self._write(records)
                    if recorder.stream.noise_pending and noise_since is None:
                        noise_since = now
                elif getattr(source, "finished", False):
                    self._write(recorder.flush(time.time()))
                    return True
                action = link.check(now)
                if action is LinkAction.SILENT:
                    raise SourceError(
                        "silent", f"no bytes from {source.description} for {SILENCE_TIMEOUT:g} s"
                    )
                if action is LinkAction.NEXT_SETTINGS:
                    assert isinstance(source, SerialSource)
                    settings = source.next_settings()
                    log.info(
                        "no valid telegram in %g s; trying %s",
                        DETECT_TIMEOUT,
                        settings,
                        extra={"source": source.description},
                    )
                    self._write(recorder.flush(time.time()))
                    recorder = self._recorder()
            # Stopped: a telegram still arriving is not a torn one; drop it. Line noise
            # already received is kept.
            self._write(recorder.release_noise(time.time()))
            return False
        except SourceError:
            self._write(recorder.flush(time.time()))  # the line broke: what came is kept
            raise


def _settings(args: argparse.Namespace) -> SerialSettings | None:
    if args.baudrate or args.bytesize or args.parity:
        return SerialSettings(args.baudrate or 115200, args.bytesize or 8, args.parity or "N")
    return None


def run(args: argparse.Namespace) -> int:
    """Capture; exit 0 after a clean stop, 2 when the file or the device URL is unusable."""
    setup_logging(args.log_level, args.log_format)
    try:
        source = open_source(args.device, _settings(args))
    except ValueError as exc:
        print(f"p1-exporter capture: --device {args.device}: {exc}", file=sys.stderr)
        return 2
    try:
        keys = keys_from_arguments(args, args.protocol)
        if args.protocol == "dsmr" and keys is not None:
            raise ValueError("a key is given but --protocol is dsmr; use encrypted or han")
        if args.protocol == "encrypted" and keys is None:
            raise ValueError("--protocol encrypted needs the meter's key (--key-file or --key)")
    except ValueError as exc:
        print(f"p1-exporter capture: {exc}", file=sys.stderr)
        return 2
    if args.protocol == "han" and isinstance(source, SerialSource) and source.autodetect:
        source.candidates = list(HAN_SERIAL)
    writer = CaptureWriter(args.out, args.max_bytes, args.backups)
    try:
        writer.open()
    except CaptureError as exc:
        print(f"p1-exporter capture: {exc}", file=sys.stderr)
        return 2
    if writer.torn_tail:
        log.warning(
            "%s ends in a cut-off record (an earlier capture was interrupted); "
            "readers skip it, appending after it",
            args.out,
        )
    capture = Capture(
        source,
        writer,
        count=args.count,
        duration=args.duration,
        protocol=args.protocol,
        keys=keys,
    )
    started = time.monotonic()
    code = 0
    try:
        with _stop_on_sigterm(capture):
            capture.run()
    except KeyboardInterrupt:
        pass
    except CaptureError as exc:
        log.error("%s", exc)
        code = 2
    finally:
        source.close()
        writer.close()
    results = (
        " ".join(
            f"{result}={capture.results[result]}"
            for result in (*RESULTS, *EXTRA_RESULTS)
            if capture.results[result]
        )
        or "none"
    )
    log.info(
        "captured %d telegrams (%s) in %.0f s to %s: %d bytes written, %d rotation(s), "
        "%d reconnect(s)",
        capture.written,
        results,
        time.monotonic() - started,
        args.out,
        writer.bytes_written,
        writer.rotations,
        capture.reconnects,
    )
    return code
