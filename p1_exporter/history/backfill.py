"""Captures and telegram dumps to OpenMetrics with timestamps, for ``promtool`` backfilling.

Each telegram's samples come from :func:`p1_exporter.metrics.samples.telegram_samples`,
the mapping the live exporter uses, so the names and labels are the exporter's
own (plus the ``meter`` label). A sample's timestamp is the meter's clock; a
telegram without one (DSMR 2.2) uses the capture's receive time, or is skipped
when there is none (plain dumps). Encrypted P1 and HAN inputs are decoded with
the stream the exporter uses for them (``protocol`` and ``keys``, which captures
do not record), timed the same way.

Timestamps must rise strictly per series: a telegram whose time is not after
the last one written is skipped and counted (a duplicate when equal, a clock
that went back when older). Refused telegrams are skipped and counted by result.

OpenMetrics wants each family in one block and each series (label set) of it
contiguous, while telegrams interleave all series. Samples are therefore
buffered per series, appended to one temporary file per series and the files
concatenated at the end, family by family: memory stays flat however long the
input. Big inputs are split between worker processes at record boundaries; the
merge then applies the skip rule across the seams exactly as one process would.

The output never costs an input or a stranger's file: an output that is one of the
inputs is refused, a regular output is written under a unique temporary name beside
it and renamed over it at the end (a symlink keeps pointing at the file it names,
which gets the new content), and a device, FIFO or ``/dev/stdout`` is written
straight into, never replaced.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import tempfile
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from p1_exporter.core.cipher import FrameCounter, Keys
from p1_exporter.core.clock import parse_meter_time
from p1_exporter.core.cosem import Scalers
from p1_exporter.core.errors import P1Error
from p1_exporter.core.framing import DEFAULT_MAX_SIZE
from p1_exporter.core.han_stream import ListMerger
from p1_exporter.core.obis import CLOCK
from p1_exporter.core.parser import LineMemo
from p1_exporter.core.stream import TelegramStream, decode_frame
from p1_exporter.core.telegram import Telegram
from p1_exporter.history.capture import CaptureReader, is_capture, next_record_start, parse_header
from p1_exporter.meter.protocol import Stream, make_stream
from p1_exporter.metrics.catalog import METRICS
from p1_exporter.metrics.samples import telegram_samples

#: Samples buffered in memory (all series together) before they go to the series files.
FLUSH_SAMPLES = 200_000
#: Bytes read at once from a plain dump.
DUMP_CHUNK = 1024 * 1024
#: Below this much input, one process does it all (starting workers costs more).
PARALLEL_MIN_BYTES = 16 * 1024 * 1024
#: Progress is reported every this many telegrams.
REPORT_EVERY = 2048
#: Most problem descriptions kept for the summary.
MAX_ISSUES = 20

_CLOCK = re.compile(re.escape(CLOCK.encode()) + rb"\((\d{12}[SWsw]?)\)")

Labels = tuple[tuple[str, str], ...]
Progress = Callable[[int, int], None]  # (bytes done, telegrams read), per worker


@dataclass(frozen=True)
class InputFile:
    """One input: a capture (``kind="capture"``) or a plain telegram dump (``"dump"``)."""

    path: str
    kind: str
    size: int
    first_time: float | None


@dataclass(frozen=True)
class Part:
    """A byte range of an input file that one worker converts."""

    path: str
    kind: str
    start: int
    end: int


@dataclass
class Tally:
    """What happened to the input, for the summary."""

    read: int = 0  # telegrams (and refusals) seen
    written: int = 0  # telegrams whose samples were written
    samples: int = 0
    series: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    backwards: int = 0
    no_clock: int = 0
    receive_time: int = 0  # timed by the capture's receive time (no meter clock)
    damaged_records: int = 0
    truncated_records: int = 0
    issues: list[str] = field(default_factory=list)
    first_ms: int | None = None
    last_ms: int | None = None

    def add(self, other: Tally) -> None:
        """Add another worker's counts."""
        for name in (
            "read",
            "written",
            "samples",
            "duplicates",
            "backwards",
            "no_clock",
            "receive_time",
            "damaged_records",
            "truncated_records",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.refused.update(other.refused)
        self.issues.extend(other.issues[: max(0, MAX_ISSUES - len(self.issues))])
        if other.first_ms is not None and (self.first_ms is None or other.first_ms < self.first_ms):
            self.first_ms = other.first_ms
        if other.last_ms is not None and (self.last_ms is None or other.last_ms > self.last_ms):
            self.last_ms = other.last_ms


@dataclass
class WorkerResult:
    """A worker's output: counts, its series files and what the merge needs."""

    tally: Tally
    series: dict[tuple[str, Labels], str]  # (metric, labels) -> temporary file
    last_ms: int  # latest timestamp written (-1: none)
    times_path: str | None  # every timed telegram's ms, in order (workers after the first)


# -- inputs -----------------------------------------------------------------------------------


def inspect_input(path: str) -> InputFile:
    """Kind, size and first timestamp of an input file (raises OSError when unreadable)."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        head = handle.read(64 * 1024)
    if is_capture(head):
        newline = head.find(b"\n")
        parsed = parse_header(head[:newline]) if newline > 0 else None
        return InputFile(path, "capture", size, parsed[0] if parsed else None)
    match = _CLOCK.search(head)
    first = parse_meter_time(match[1].decode("ascii")) if match else None
    return InputFile(path, "dump", size, first)


def order_inputs(inputs: Sequence[InputFile]) -> list[InputFile]:
    """Oldest first (by first timestamp) when every file has one; else as given.

    Rotated captures (``FILE``, ``FILE.1`` ...) thus work in any order on the command line.
    """
    if all(item.first_time is not None for item in inputs):
        return sorted(inputs, key=lambda item: item.first_time or 0.0)
    return list(inputs)


def _snap(item: InputFile, offset: int) -> int:
    """The first place at or after ``offset`` where a worker may start reading."""
    if offset <= 0:
        return 0
    with open(item.path, "rb") as handle:
        if item.kind == "capture":
            return next_record_start(handle, offset)
        return _next_telegram_start(handle, offset, item.size)


def _next_telegram_start(handle: BinaryIO, offset: int, size: int) -> int:
    """Offset of the first ``/`` that starts a line at or after ``offset``."""
    handle.seek(offset - 1)
    position = offset - 1
    while True:
        window = handle.read(1024 * 1024 + 1)
        if len(window) < 2:
            return size
        found = window.find(b"\n/")
        if found >= 0:
            return position + found + 1
        position += len(window) - 1
        handle.seek(position)


def plan(inputs: Sequence[InputFile], workers: int) -> list[list[Part]]:
    """Split the inputs, in order, into ``workers`` runs of about equal size."""
    total = sum(item.size for item in inputs)
    cuts: list[tuple[int, int]] = []  # (file index, offset)
    for k in range(1, workers):
        target = total * k // workers
        for index, item in enumerate(inputs):
            if target < item.size:
                cuts.append((index, _snap(item, target)))
                break
            target -= item.size
    runs: list[list[Part]] = []
    begin = (0, 0)
    for end in [*cuts, (len(inputs), 0)]:
        parts: list[Part] = []
        for index in range(begin[0], min(end[0], len(inputs) - 1) + 1):
            item = inputs[index]
            start = begin[1] if index == begin[0] else 0
            stop = end[1] if index == end[0] else item.size
            if stop > start:
                parts.append(Part(item.path, item.kind, start, stop))
        if parts:
            runs.append(parts)
        begin = end
    return runs


# -- conversion (one worker) ------------------------------------------------------------------


def escape_label(value: str) -> str:
    """A label value as OpenMetrics writes it inside double quotes."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def series_prefix(metric: str, labels: Labels, meter: str, extra: Labels = ()) -> str:
    """``name{meter="...",label="...",extra="..."} `` ready for a value."""
    inner = "".join(f',{name}="{escape_label(value)}"' for name, value in (*labels, *extra))
    return f'{metric}{{meter="{escape_label(meter)}"{inner}}} '


class _Series:
    """One series: its line prefix, its temporary file and text waiting to be written."""

    __slots__ = ("path", "pending", "prefix")

    def __init__(self, prefix: str, path: str) -> None:
        self.prefix = prefix.encode("utf-8")
        self.path = path
        self.pending: list[bytes] = []

    def add(self, values: Sequence[float], stamps: list[bytes]) -> None:
        """Format samples (``stamps`` are `` <seconds>\\n``) for the next write."""
        # repr() is the costly part, and slowly changing registers repeat their values a lot.
        distinct = dict.fromkeys(values)
        if len(distinct) == 1:  # a steady value: one join does the whole column
            head = self.prefix + repr(values[0]).encode()
            self.pending.append(head + head.join(stamps))
            return
        reprs = {value: repr(value).encode() for value in distinct}
        lines = [self.prefix] * (3 * len(values))
        lines[1::3] = map(reprs.__getitem__, values)
        lines[2::3] = stamps
        self.pending.append(b"".join(lines))

    def write(self) -> None:
        """Append the pending text to the series file."""
        if self.pending:
            with open(self.path, "ab") as handle:
                handle.write(b"".join(self.pending))
            self.pending.clear()


class Converter:
    """Turns telegrams into per-series sample files (one worker's share of the input).

    Consecutive telegrams with the same series in the same order (what a meter
    sends, until a message or an M-Bus device comes or goes) form a block: a
    block keeps one row of values per telegram, and is turned into per-series
    text column by column when buffers are flushed.
    """

    def __init__(
        self, workdir: str, meter: str, log_times: bool = False, extra: Labels = ()
    ) -> None:
        self.workdir = workdir
        self.meter = meter
        self.extra = extra
        self.tally = Tally()
        self.memo = LineMemo()
        self.last_ms = -1
        self.series: dict[tuple[str, Labels], _Series] = {}
        # The current block: its series (names and label sets, in order), rows and stamps.
        self._metrics: tuple[str, ...] = ()
        self._labels: tuple[Labels, ...] = ()
        self._slots: list[_Series | None] = []  # None: a series repeated within a telegram
        self._kept = 0  # samples per telegram that are written
        self._rows: list[tuple[float, ...]] = []
        self._stamps: list[bytes] = []
        self._blocks: list[tuple[list[_Series | None], list[tuple[float, ...]], list[bytes]]] = []
        self._buffered = 0
        self._times = array("q") if log_times else None
        self.times_path = os.path.join(workdir, "times.bin") if log_times else None

    def _slot(self, key: tuple[str, Labels]) -> _Series:
        slot = self.series.get(key)
        if slot is None:
            path = os.path.join(self.workdir, f"{len(self.series)}.om")
            slot = self.series[key] = _Series(series_prefix(*key, self.meter, self.extra), path)
        return slot

    def telegram(self, telegram: Telegram, received: float | None) -> None:
        """Write one accepted telegram's samples, unless its time says skip it."""
        tally = self.tally
        moment = telegram.meter_time
        if moment is None:
            if received is None:
                tally.no_clock += 1
                return
            moment = received
            tally.receive_time += 1
        ms = round(moment * 1000)
        if self._times is not None:
            self._times.append(ms)
            if len(self._times) >= 65536:
                self._dump_times()
        if ms <= self.last_ms:
            if ms == self.last_ms:
                tally.duplicates += 1
            else:
                tally.backwards += 1
            return
        self.last_ms = ms
        if tally.first_ms is None:
            tally.first_ms = ms
        tally.written += 1
        seconds, millis = divmod(ms, 1000)
        columns = tuple(zip(*telegram_samples(telegram), strict=True))
        if not columns:
            return
        metrics, labels, values = columns
        if metrics != self._metrics or labels != self._labels:
            self._new_block(metrics, labels)
        self._rows.append(values)
        self._stamps.append(b" %d.%03d\n" % (seconds, millis) if millis else b" %d\n" % seconds)
        tally.samples += self._kept
        self._buffered += self._kept
        if self._buffered >= FLUSH_SAMPLES:
            self.flush()

    def _new_block(self, metrics: tuple[str, ...], labels: tuple[Labels, ...]) -> None:
        self._close_block()
        self._metrics, self._labels = metrics, labels
        seen: set[tuple[str, Labels]] = set()
        self._slots = []
        for key in zip(metrics, labels, strict=True):
            # One sample per series and moment: a second one could not be stored anyway.
            self._slots.append(None if key in seen else self._slot(key))
            seen.add(key)
        self._kept = len(seen)

    def _close_block(self) -> None:
        if self._rows:
            self._blocks.append((self._slots, self._rows, self._stamps))
            self._rows = []
            self._stamps = []

    def flush(self) -> None:
        """Append every buffered sample to its series file."""
        self._close_block()
        for slots, rows, stamps in self._blocks:
            for slot, column in zip(slots, zip(*rows, strict=True), strict=True):
                if slot is not None:
                    slot.add(column, stamps)
        self._blocks.clear()
        for slot in self.series.values():
            slot.write()
        self._buffered = 0

    def _dump_times(self) -> None:
        if self._times is not None and self.times_path is not None and self._times:
            with open(self.times_path, "ab") as handle:
                self._times.tofile(handle)
            del self._times[:]

    def finish(self) -> WorkerResult:
        """Flush everything; the result the merge needs."""
        self.flush()
        self._dump_times()
        self.tally.last_ms = self.last_ms if self.last_ms >= 0 else None
        self.tally.series = len(self.series)
        return WorkerResult(
            self.tally,
            {key: slot.path for key, slot in self.series.items()},
            self.last_ms,
            self.times_path,
        )


def convert(
    parts: Iterable[Part],
    workdir: str,
    meter: str,
    *,
    log_times: bool = False,
    progress: Progress | None = None,
    extra: Labels = (),
    protocol: str = "dsmr",
    keys: Keys | None = None,
    scalers: Scalers | None = None,
) -> WorkerResult:
    """Convert byte ranges of input files, in order, into series files under ``workdir``.

    ``protocol`` encrypted or han decodes with the exporter's stream for it (and ``keys``,
    and for HAN the owner's ``scalers``).
    """
    os.makedirs(workdir, exist_ok=True)
    converter = Converter(workdir, meter, log_times, extra)
    tally = converter.tally
    memo = converter.memo
    take = converter.telegram
    refused = tally.refused
    secure = _SecureDecoder(protocol, keys, scalers) if protocol != "dsmr" else None
    done = 0
    for part in parts:
        with open(part.path, "rb") as handle:
            if part.kind == "capture":
                reader = CaptureReader(handle, part.start, part.end)
                reader.name = part.path
                for record in reader:
                    tally.read += 1
                    if secure is not None:
                        secure.record(record.data, record.result, record.time, converter)
                    elif record.result != "ok":
                        refused[record.result] += 1
                    else:
                        try:
                            telegram = decode_frame(record.data, memo=memo)
                        except P1Error as exc:
                            refused[exc.result] += 1
                        else:
                            take(telegram, record.time)
                    if progress is not None and tally.read % REPORT_EVERY == 0:
                        progress(done + reader.position - part.start, tally.read)
                tally.damaged_records += reader.damaged
                tally.truncated_records += reader.truncated
                tally.issues.extend(reader.issues[: max(0, MAX_ISSUES - len(tally.issues))])
            else:
                stream: Stream
                if secure is not None:
                    stream = secure.stream
                else:
                    stream = TelegramStream()
                    stream.memo = memo
                handle.seek(part.start)
                position = part.start
                while position < part.end:
                    chunk = handle.read(min(DUMP_CHUNK, part.end - position))
                    if not chunk:
                        break
                    position += len(chunk)
                    for outcome in stream.feed(chunk):
                        tally.read += 1
                        if outcome.telegram is None:
                            refused[outcome.result] += 1
                        else:
                            take(outcome.telegram, None)
                    if progress is not None:
                        progress(done + position - part.start, tally.read)
                for outcome in stream.flush():
                    tally.read += 1
                    if outcome.telegram is None:
                        refused[outcome.result] += 1
                    else:
                        take(outcome.telegram, None)
        done += part.end - part.start
        if progress is not None:
            progress(done, tally.read)
    return converter.finish()


#: Capture results a frame's bytes are decoded again for: the key decides them, and the
#: key given to backfill may be the right one where the capture's was not.
REDECODE = frozenset({"ok", "decrypt_error", "no_key"})


class _SecureDecoder:
    """Decodes the records of an encrypted or HAN capture, one whole frame (or APDU) each,
    through one stream: the replay check and the HAN lists carried forward span records."""

    def __init__(self, protocol: str, keys: Keys | None, scalers: Scalers | None = None) -> None:
        self.stream = make_stream(
            protocol,
            keys,
            FrameCounter(),
            check_crc=True,
            max_size=DEFAULT_MAX_SIZE,
            merger=ListMerger(),
            scalers=scalers,
        )

    def record(self, data: bytes, result: str, received: float, converter: Converter) -> None:
        """Count or convert one capture record."""
        refused = converter.tally.refused
        if result not in REDECODE or not data:
            refused[result] += 1
            return
        outcomes = self.stream.feed(data) + self.stream.flush()
        if not outcomes:
            refused["malformed"] += 1
        for outcome in outcomes:
            if outcome.telegram is None:
                refused[outcome.result] += 1
            else:
                converter.telegram(outcome.telegram, received)


# -- the merge ----------------------------------------------------------------------------------


def _stamp_ms(line: bytes) -> int:
    """The timestamp of a sample line, in ms."""
    text = line.rsplit(b" ", 1)[1].strip()
    seconds, _, fraction = text.partition(b".")
    return int(seconds) * 1000 + (int(fraction.ljust(3, b"0")[:3]) if fraction else 0)


def _reconcile(result: WorkerResult, before: int) -> None:
    """Redo a later worker's skip decisions for its first telegrams, knowing the latest time
    (``before``) the workers ahead of it wrote; fix its counts to what one process counts."""
    if before < 0 or result.times_path is None or not os.path.exists(result.times_path):
        return
    tally = result.tally
    local = -1
    overall = before
    with open(result.times_path, "rb") as handle:
        while local < before:
            times = array("q")
            times.frombytes(handle.read(8 * 65536))
            if not times:
                break
            for ms in times:
                if local >= before:
                    break
                # What this worker did, undone ...
                if ms > local:
                    local = ms
                    tally.written -= 1
                elif ms == local:
                    tally.duplicates -= 1
                else:
                    tally.backwards -= 1
                # ... and what one process would have done.
                if ms > overall:
                    overall = ms
                    tally.written += 1
                elif ms == overall:
                    tally.duplicates += 1
                else:
                    tally.backwards += 1


def family_header(metric: str) -> str:
    """``# HELP`` and ``# TYPE`` lines of a metric's family (counters drop ``_total``)."""
    spec = METRICS.get(metric)
    kind = spec.type if spec is not None else "gauge"
    help_text = spec.help if spec is not None else ""
    family = metric[: -len("_total")] if kind == "counter" and metric.endswith("_total") else metric
    escaped = help_text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return f"# HELP {family} {escaped}\n# TYPE {family} {kind}\n"


def _copy(source: BinaryIO, out: BinaryIO, start: int) -> None:
    """Append ``source`` from byte ``start`` to ``out``; in the kernel where it can."""
    out.flush()
    size = os.fstat(source.fileno()).st_size
    offset = start
    if hasattr(os, "copy_file_range"):
        try:
            while offset < size:
                copied = os.copy_file_range(source.fileno(), out.fileno(), size - offset, offset)
                if copied <= 0:
                    break
                offset += copied
        except OSError:  # not between these files (old kernel, odd file system): by hand
            pass
        else:
            if offset >= size:
                return
    source.seek(offset)
    shutil.copyfileobj(source, out, 1024 * 1024)


def merge(results: Sequence[WorkerResult], out: BinaryIO) -> Tally:
    """Write the OpenMetrics text of all workers' series files; return the combined counts."""
    cutoffs: list[int] = []
    latest = -1
    for result in results:
        cutoffs.append(latest)
        _reconcile(result, latest)
        first = result.tally.first_ms
        if first is not None and first <= latest:  # dropped; a worker ahead wrote earlier
            result.tally.first_ms = None
        latest = max(latest, result.last_ms)
    keys = {key for result in results for key in result.series}
    order = {name: index for index, name in enumerate(METRICS)}
    families: dict[str, list[Labels]] = {}
    for metric, labels in keys:
        families.setdefault(metric, []).append(labels)
    dropped = 0
    for metric in sorted(families, key=lambda name: (order.get(name, len(order)), name)):
        out.write(family_header(metric).encode("utf-8"))
        for labels in sorted(families[metric]):
            for result, cutoff in zip(results, cutoffs, strict=True):
                path = result.series.get((metric, labels))
                if path is None:
                    continue
                with open(path, "rb") as handle:
                    start = 0
                    if cutoff >= 0:  # drop what the workers ahead already covered
                        for line in handle:
                            if _stamp_ms(line) > cutoff:
                                break
                            start += len(line)
                            dropped += 1
                    _copy(handle, out, start)
    out.write(b"# EOF\n")
    total = Tally()
    for result in results:
        total.add(result.tally)
    total.samples -= dropped
    total.series = len(keys)
    return total


# -- the output ---------------------------------------------------------------------------------


class OutputRefused(Exception):
    """The output names something backfill must not write: an input, a directory."""


@dataclass(frozen=True)
class Output:
    """Where the OpenMetrics text goes, and how.

    ``target`` is the file the path finally names (symlinks followed). A ``stream``
    output (character device, FIFO, socket, ``/dev/stdout`` and other ``/proc`` fd
    links) is written straight into; any other gets a temporary file beside ``target``
    that is renamed over it once complete.
    """

    path: str
    target: str
    stream: bool
    existing: os.stat_result | None


def _follow(path: str) -> tuple[str, bool]:
    """The file ``path`` finally names, and whether the way there went through ``/proc``.

    A link into ``/proc`` (``/dev/stdout`` -> ``/proc/self/fd/1``) names an open file of
    a process, not a place in a directory: renaming over it would miss the file.
    """
    current = os.path.abspath(path)
    for _ in range(40):
        head = os.path.realpath(os.path.dirname(current))
        current = os.path.join(head, os.path.basename(current))
        if current == "/proc" or current.startswith("/proc/"):
            return current, True
        if not os.path.islink(current):
            return current, False
        current = os.path.join(head, os.readlink(current))
    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)


def resolve_output(out_path: str, inputs: Sequence[str]) -> Output:
    """Check ``out_path`` against the inputs and decide how to write it."""
    target, through_proc = _follow(out_path)
    try:
        existing: os.stat_result | None = os.stat(out_path)
    except FileNotFoundError:
        existing = None  # a new file (or a dangling symlink: its target gets created)
    if existing is None:
        return Output(out_path, target, through_proc, None)
    if stat.S_ISDIR(existing.st_mode):
        raise OutputRefused(f"{out_path}: is a directory; --out wants a file name")
    for path in inputs:
        try:
            info = os.stat(path)
        except OSError:
            continue  # reported as a missing input elsewhere
        if (info.st_dev, info.st_ino) == (existing.st_dev, existing.st_ino):
            same = "" if os.path.abspath(path) == os.path.abspath(out_path) else f" ({path})"
            raise OutputRefused(
                f"{out_path}: is one of the input files{same}; give --out a new file name"
            )
    stream = through_proc or not stat.S_ISREG(existing.st_mode)
    return Output(out_path, target, stream, existing)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def open_output(output: Output) -> Iterator[BinaryIO]:
    """The output, open for writing; a regular file appears (atomically) only on success.

    OSError from writing carries the output's path (a full disk, ``/dev/full``, a
    closed pipe).
    """
    try:
        if output.stream:
            # No O_TRUNC and no rename: a device or pipe is written as it is; a shell
            # redirection behind /dev/stdout was truncated (">") or is appended to (">>").
            fd = os.open(output.path, os.O_WRONLY | os.O_NOCTTY | os.O_APPEND)
            partial = ""
        else:
            directory, name = os.path.split(output.target)
            fd, partial = tempfile.mkstemp(
                prefix=f".p1-backfill-{name}.", suffix=".part", dir=directory
            )
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, output.path) from None
    if output.stream:
        try:
            with os.fdopen(fd, "wb") as out:
                yield out
        except OSError as exc:
            if exc.filename is None:
                raise OSError(exc.errno, exc.strerror, output.path) from None
            raise
        return
    try:
        old = output.existing
        if old is not None:  # a replaced file keeps its permissions (and owner, for root)
            os.fchmod(fd, stat.S_IMODE(old.st_mode))
            if os.geteuid() == 0:
                os.fchown(fd, old.st_uid, old.st_gid)
        else:
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, output.target)
        partial = ""
    except OSError as exc:
        if exc.filename is None:
            raise OSError(exc.errno, exc.strerror, output.path) from None
        raise
    finally:
        if partial:
            with suppress(FileNotFoundError):
                os.unlink(partial)


# -- all together ---------------------------------------------------------------------------------

#: Per worker: [bytes done, telegrams read], shared with the parent (set in each worker).
_shared_progress: Any = None


def _init_worker(shared: Any) -> None:
    global _shared_progress
    _shared_progress = shared


def _work(
    index: int,
    parts: list[Part],
    workdir: str,
    meter: str,
    extra: Labels,
    protocol: str,
    keys: Keys | None,
) -> WorkerResult:
    shared = _shared_progress

    def report(done: int, read: int) -> None:
        shared[2 * index] = done
        shared[2 * index + 1] = read

    return convert(
        parts,
        workdir,
        meter,
        log_times=index > 0,
        progress=report,
        extra=extra,
        protocol=protocol,
        keys=keys,
    )


def default_workers() -> int:
    """Worker processes to use: the CPUs this process may run on, at most 4."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


def backfill(
    paths: Sequence[str],
    out_path: str,
    *,
    meter: str = "main",
    labels: Labels = (),
    workers: int | None = None,
    tmpdir: str | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    protocol: str = "dsmr",
    keys: Keys | None = None,
    scalers: Scalers | None = None,
) -> tuple[Tally, list[InputFile]]:
    """Convert ``paths`` into the OpenMetrics file ``out_path``; return counts and inputs.

    ``labels`` are added to every series (e.g. the ``job`` and ``instance`` Prometheus
    gives the live exporter's series, so that history and live data are one series).
    ``progress(bytes_done, bytes_total, telegrams_read)`` is called now and then.
    Temporary files go next to ``out_path`` (or into ``tmpdir``; into the system's
    temporary directory when the output is a device or pipe): they add up to about the
    size of the output. Raises :class:`OutputRefused` when ``out_path`` is one of the
    inputs or a directory, OSError (naming ``out_path``) when it cannot be written.
    ``protocol``, ``keys`` and a HAN meter's ``scalers`` say how the inputs' frames are
    decoded (a capture does not record them); a HAN input is read by one process, as each
    telegram carries values of the lists before it.
    """
    output = resolve_output(out_path, paths)
    inputs = order_inputs([inspect_input(path) for path in paths])
    inputs = [item for item in inputs if item.size > 0]
    total = sum(item.size for item in inputs)
    count = workers if workers is not None else default_workers()
    if (total < PARALLEL_MIN_BYTES and workers is None) or protocol == "han":
        count = 1
    runs = plan(inputs, max(1, count))
    if tmpdir is not None:
        where = tmpdir
    elif output.stream:
        where = tempfile.gettempdir()
    else:
        where = os.path.dirname(output.target)
    try:
        workdir = tempfile.mkdtemp(prefix=".p1-backfill-", dir=where)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, tmpdir or out_path) from None
    try:
        with open_output(output) as out:
            results = _run(
                runs, workdir, meter, tuple(labels), total, progress, protocol, keys, scalers
            )
            tally = merge(results, out)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return tally, inputs


def _run(
    runs: list[list[Part]],
    workdir: str,
    meter: str,
    extra: Labels,
    total: int,
    progress: Callable[[int, int, int], None] | None,
    protocol: str = "dsmr",
    keys: Keys | None = None,
    scalers: Scalers | None = None,
) -> list[WorkerResult]:
    if len(runs) <= 1:  # always so for HAN (see backfill), the only user of scalers

        def report(done: int, read: int) -> None:
            if progress is not None:
                progress(done, total, read)

        return [
            convert(
                runs[0] if runs else [],
                os.path.join(workdir, "w0"),
                meter,
                progress=report,
                extra=extra,
                protocol=protocol,
                keys=keys,
                scalers=scalers,
            )
        ]
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    shared = context.Array("q", 2 * len(runs), lock=False)
    with ProcessPoolExecutor(
        len(runs), mp_context=context, initializer=_init_worker, initargs=(shared,)
    ) as pool:
        futures = [
            pool.submit(
                _work,
                index,
                parts,
                os.path.join(workdir, f"w{index}"),
                meter,
                extra,
                protocol,
                keys,
            )
            for index, parts in enumerate(runs)
        ]
        while True:
            finished, running = wait(futures, timeout=0.2, return_when=FIRST_EXCEPTION)
            if progress is not None:
                values = list(shared)
                progress(sum(values[0::2]), total, sum(values[1::2]))
            if not running or any(f.exception() is not None for f in finished):
                break
        return [future.result() for future in futures]
