"""``p1-exporter decode``: show what the exporter reads in a telegram or a capture.

Reads plain DSMR telegrams, encrypted P1 frames and DLMS/COSEM HAN frames (HDLC
or M-Bus), as binary or as a hex dump; the protocol is recognised from the data
unless ``--protocol`` fixes it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TextIO

from p1_exporter.commands.meter_keys import add_protocol_arguments
from p1_exporter.core.render_json import format_json
from p1_exporter.core.render_text import format_telegram
from p1_exporter.core.stream import Outcome, iter_telegrams
from p1_exporter.core.telegram import Telegram


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the decode subcommand."""
    parser.add_argument("file", help="telegram file or capture; '-' reads standard input")
    parser.add_argument(
        "--ignore-crc",
        action="store_true",
        help="decode telegrams whose CRC fails (e.g. hand-edited captures), marked as such",
    )
    parser.add_argument(
        "--format",
        choices=["text", "json", "metrics"],
        default="text",
        help="text: readable listing (default); json: decoded values; "
        "metrics: the exposition text /metrics would serve",
    )
    parser.add_argument(
        "--json", dest="format", action="store_const", const="json", help="same as --format json"
    )
    parser.add_argument(
        "--metrics",
        dest="format",
        action="store_const",
        const="metrics",
        help="same as --format metrics",
    )
    add_protocol_arguments(parser, default="auto", what="the file holds")


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as handle:
        return handle.read()


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Decode every telegram; exit 1 when any was refused, 2 when the file is unreadable."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        data = _read(args.file)
    except OSError as exc:
        print(f"p1-exporter decode: cannot read {args.file}: {exc.strerror}", file=err)
        return 2
    render: Callable[[Telegram], str]
    if args.format == "text":
        render = format_telegram
    elif args.format == "json":
        render = format_json
    else:
        from p1_exporter.metrics.collector import telegram_exposition

        render = telegram_exposition
    try:
        outcomes = _outcomes(data, args)
    except ValueError as exc:
        print(f"p1-exporter decode: {exc}", file=err)
        return 2
    accepted = refused = 0
    for index, outcome in enumerate(outcomes, 1):
        if outcome.telegram is None:
            refused += 1
            print(f"telegram {index} refused ({outcome.result}): {outcome.error}", file=err)
            continue
        accepted += 1
        if args.ignore_crc and not outcome.telegram.crc_verified:
            print(f"telegram {index}: CRC not verified, decoded because of --ignore-crc", file=err)
        print(render(outcome.telegram), file=out)
    if accepted + refused == 0:
        print(f"p1-exporter decode: no telegram found in {args.file}", file=err)
        return 1
    return 1 if refused else 0


def _outcomes(data: bytes, args: argparse.Namespace) -> list[Outcome]:
    """Every outcome in ``data`` under the chosen (or recognised) protocol."""
    from p1_exporter.commands.meter_keys import keys_from_arguments
    from p1_exporter.core.cipher import FrameCounter
    from p1_exporter.meter.protocol import detect_protocol, make_stream, unhex

    data = unhex(data)
    protocol = args.protocol if args.protocol != "auto" else detect_protocol(data)
    keys = keys_from_arguments(args, protocol)
    if protocol == "dsmr":
        return list(iter_telegrams(data, check_crc=not getattr(args, "ignore_crc", False)))
    stream = make_stream(
        protocol,
        keys,
        FrameCounter(),
        check_crc=not getattr(args, "ignore_crc", False),
        max_size=64 * 1024,
        scalers=dict(getattr(args, "han_scalers", [])),
    )
    return stream.feed(data) + stream.flush()
