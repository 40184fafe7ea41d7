"""``p1-exporter backfill``: captures and dumps to OpenMetrics for ``promtool`` backfilling."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from typing import TextIO

from p1_exporter.commands.meter_keys import add_protocol_arguments, keys_from_arguments
from p1_exporter.history.backfill import OutputRefused, Tally, backfill
from p1_exporter.metrics.catalog import METRICS


def _workers(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
#: Labels the samples carry themselves; --label must not clash with them.
_OWN_LABELS = {"meter", *(name for spec in METRICS.values() for name in spec.labels)}


def _label(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
        raise argparse.ArgumentTypeError(
            f"expected NAME=VALUE with a valid label name, not {text!r}"
        )
    if name in _OWN_LABELS:
        raise argparse.ArgumentTypeError(f"{name} is a label of the exporter's own metrics")
    return name, value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the backfill subcommand."""
    parser.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="captures (p1-exporter capture) or plain telegram dumps; rotated "
        "captures may be given in any order (oldest file first is used)",
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="FILE.om",
        help="OpenMetrics file to write (for promtool tsdb "
        "create-blocks-from openmetrics); replaced only once complete, "
        "never one of the inputs. A symlink keeps pointing at its file, "
        "which gets the output; a device or pipe (/dev/stdout) is written "
        "into directly",
    )
    parser.add_argument(
        "--meter",
        default="main",
        metavar="NAME",
        help="value of the meter label, as the exporter's --device NAME=URL (default main)",
    )
    parser.add_argument(
        "--label",
        dest="labels",
        action="append",
        type=_label,
        default=[],
        metavar="NAME=VALUE",
        help="add a label to every series; repeat. Give the job and instance "
        "labels Prometheus adds to the live exporter's series (e.g. --label "
        "job=p1 --label instance=localhost:9357) so that history and live data "
        "are the same series",
    )
    add_protocol_arguments(
        parser,
        what="the captured meter sent (a capture does not record it): dsmr, encrypted "
        "(P1) or han; with the meter's key for encrypted frames",
    )
    parser.add_argument(
        "--workers",
        type=_workers,
        metavar="N",
        help="worker processes (default: one per CPU, at most 4; one for small inputs)",
    )
    parser.add_argument(
        "--tmpdir",
        metavar="DIR",
        help="where temporary files go (default: next to --out); they need "
        "about as much space as the output",
    )
    bar = parser.add_mutually_exclusive_group()
    bar.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="show a progress bar (default: when stderr is a terminal)",
    )
    bar.add_argument(
        "--no-progress", dest="progress", action="store_false", help="never show the progress bar"
    )


class ProgressBar:
    """A one-line progress bar redrawn with ``\\r``, at most five times a second."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.started = time.monotonic()
        self._last = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int, read: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        fraction = min(1.0, done / total) if total else 1.0
        filled = int(fraction * self.width)
        elapsed = now - self.started
        rate = read / elapsed if elapsed > 0 else 0.0
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else 0.0
        minutes, seconds = divmod(int(eta), 60)
        self.stream.write(
            f"\rbackfill [{'#' * filled}{'.' * (self.width - filled)}] {fraction * 100:5.1f}% "
            f"{read} telegrams {rate:,.0f}/s ETA {minutes}:{seconds:02d} "
        )
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """End the bar's line (when one was drawn)."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def _utc(ms: int | None) -> str:
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def summary(tally: Tally, out_path: str, files: int, seconds: float) -> list[str]:
    """The summary lines printed at the end."""
    rate = tally.read / seconds if seconds > 0 else 0.0
    lines = [
        f"backfill: read {tally.read} telegrams from {files} file(s) in {seconds:.1f} s "
        f"({rate:,.0f}/s)",
        f"backfill: wrote {tally.written} telegrams, {tally.samples} samples in "
        f"{tally.series} series to {out_path} ({_utc(tally.first_ms)} .. {_utc(tally.last_ms)})",
    ]
    refused = " ".join(f"{result}={count}" for result, count in sorted(tally.refused.items()))
    lines.append(
        f"backfill: skipped {tally.duplicates} duplicate(s) (same meter time again), "
        f"{tally.backwards} older than the last written (clock went back), "
        f"{tally.no_clock} without a clock, {sum(tally.refused.values())} refused"
        + (f" ({refused})" if refused else "")
    )
    if tally.receive_time:
        lines.append(
            f"backfill: {tally.receive_time} telegram(s) without a meter clock were "
            "timed by their capture receive time"
        )
    if tally.truncated_records or tally.damaged_records:
        lines.append(
            f"backfill: capture damage: {tally.truncated_records} cut-off record(s), "
            f"{tally.damaged_records} damaged stretch(es) skipped"
        )
        lines.extend(f"  {issue}" for issue in tally.issues)
    return lines


def run(args: argparse.Namespace, err: TextIO | None = None) -> int:
    """Convert; exit 0 when samples were written, 1 when none, 2 on unreadable files or
    an output that is refused or cannot be written."""
    err = err or sys.stderr
    for path in args.files:
        if not os.path.isfile(path):
            print(f"p1-exporter backfill: {path}: no such file", file=err)
            return 2
    names = [name for name, _ in args.labels]
    if len(set(names)) != len(names):
        print("p1-exporter backfill: each --label name may be given once", file=err)
        return 2
    try:
        keys = keys_from_arguments(args, args.protocol)
        if args.protocol == "dsmr" and keys is not None:
            raise ValueError("a key is given but --protocol is dsmr; use encrypted or han")
    except ValueError as exc:
        print(f"p1-exporter backfill: {exc}", file=err)
        return 2
    show = args.progress if args.progress is not None else err.isatty()
    bar = ProgressBar(err) if show else None
    started = time.monotonic()
    try:
        tally, inputs = backfill(
            args.files,
            args.out,
            meter=args.meter,
            labels=tuple(args.labels),
            workers=args.workers,
            tmpdir=args.tmpdir,
            progress=bar,
            protocol=args.protocol,
            keys=keys,
            scalers=dict(args.han_scalers),
        )
    except OutputRefused as exc:
        print(f"p1-exporter backfill: {exc}", file=err)
        return 2
    except OSError as exc:
        if bar is not None:
            bar.close()
        print(f"p1-exporter backfill: {exc.filename or ''}: {exc.strerror or exc}", file=err)
        return 2
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        print("p1-exporter backfill: interrupted; no output written", file=err)
        return 130
    elapsed = time.monotonic() - started
    if bar is not None:
        total = sum(item.size for item in inputs)
        bar(total, total, tally.read, force=True)
        bar.close()
    for line in summary(tally, args.out, len(inputs), elapsed):
        print(line, file=err)
    if not tally.written:
        print("p1-exporter backfill: no telegram could be written", file=err)
        return 1
    flag = block_duration_flag(tally)
    print(
        f"next: promtool tsdb create-blocks-from openmetrics {flag}{args.out} DATA_DIR "
        "(see docs/history.md)",
        file=err,
    )
    return 0


def block_duration_flag(tally: Tally) -> str:
    """``--max-block-duration=...`` for promtool when the history spans more than 2 h.

    promtool reads the whole file once per block it writes (2 h by default), so a long
    history wants bigger blocks: the smallest Prometheus compaction range (2 h times a
    power of 3) that covers the span, at most 486 h (about 20 days).
    """
    if tally.first_ms is None or tally.last_ms is None:
        return ""
    span_hours = (tally.last_ms - tally.first_ms) / 3_600_000
    hours = 2
    while hours < span_hours and hours < 486:
        hours *= 3
    return f"--max-block-duration={hours}h " if hours > 2 else ""
