"""The ``p1-exporter simulate`` command: a fake meter on stdout, a pty or TCP."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from p1_exporter.core.cipher import LUXEMBOURG_AUTH_KEY, Keys, parse_key
from p1_exporter.sim.meter import SimOptions, SimulatedMeter, parse_start
from p1_exporter.sim.outputs import PtySink, Sink, StdoutSink, TcpSink, parse_host_port, stream
from p1_exporter.sim.render import ALL_DIALECTS

_PROG = "p1-exporter simulate"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's options to ``parser``."""
    parser.add_argument(
        "--dialect",
        choices=ALL_DIALECTS,
        default="dsmr5",
        help="telegram format (default: %(default)s); han-aidon and han-kaifa send DLMS/COSEM "
        "HDLC frames, encrypted sends DSMR 5 encrypted with --key",
    )
    parser.add_argument(
        "--key",
        metavar="HEX",
        help="encrypt with this key (32 hex digits): the encrypted dialect, any DSMR dialect "
        "(encrypted P1) or a HAN dialect (ciphered APDUs). A test key: it shows in ps",
    )
    parser.add_argument(
        "--auth-key",
        metavar="HEX",
        help="authentication key (default: Luxembourg's published one)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="real seconds between telegrams (default: 1; real DSMR 4 and "
        "2.2 meters send every 10)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        help="which household (default 1). The household is a function of "
        "the seed and the clock: a restarted simulator with the same seed "
        "continues where it was",
    )
    parser.add_argument(
        "--start",
        type=_start,
        metavar="TIME",
        help="simulated start: epoch or ISO 8601, UTC unless a zone is given (default: now)",
    )
    parser.add_argument(
        "--speed", type=float, default=1.0, help="simulated seconds per real second (default: 1)"
    )
    parser.add_argument(
        "--count",
        type=_positive_int,
        metavar="N",
        help="stop after N telegrams (default: run until stopped)",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "--stdout",
        action="store_true",
        help="write the byte stream to standard output (the default)",
    )
    output.add_argument(
        "--pty",
        action="store_true",
        help="open a pseudo-terminal and print its path as the first line",
    )
    output.add_argument(
        "--tcp",
        metavar="HOST:PORT",
        help="listen like a ser2net dongle; prints socket://HOST:PORT first "
        "(port 0 picks a free one)",
    )
    faults = parser.add_argument_group("line faults")
    for name, what in (
        ("crc-error-rate", "corrupt a byte so the CRC fails"),
        ("garbage-rate", "send a burst of noise before the telegram"),
        ("torn-rate", "send only the first part of the telegram"),
        ("pause-rate", "stay silent for --pause-seconds first"),
    ):
        faults.add_argument(
            f"--{name}",
            type=float,
            default=0.0,
            metavar="P",
            help=f"probability per telegram to {what} (default: 0)",
        )
    faults.add_argument(
        "--pause-seconds",
        type=float,
        default=5.0,
        help="length of a --pause-rate silence (default: 5)",
    )
    parser.add_argument(
        "--force-import-watts",
        type=float,
        metavar="W",
        help="import exactly this power instead of the household's load",
    )
    line = parser.add_argument_group(
        "wrong serial settings (show what a misconfigured reader receives)"
    )
    line.add_argument(
        "--wire-settings",
        metavar="SETTINGS",
        help="what the meter sends, e.g. 9600-7E1 (default: the dialect's own)",
    )
    line.add_argument(
        "--receiver-settings",
        metavar="SETTINGS",
        help="what the reader is set to, e.g. 115200-8N1 (the default)",
    )
    line.add_argument(
        "--inverted",
        action="store_true",
        help="the line is inverted and the reader does not invert it back",
    )


def _start(text: str) -> float:
    try:
        return parse_start(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _keys(args: argparse.Namespace) -> Keys | None:
    """The meter's keys from --key/--auth-key (ValueError for a malformed one)."""
    if args.key is None:
        if args.auth_key is not None:
            raise ValueError("--auth-key needs --key")
        return None
    auth = parse_key(args.auth_key, "--auth-key") if args.auth_key else LUXEMBOURG_AUTH_KEY
    return Keys(parse_key(args.key, "--key"), auth)


def options_from_args(args: argparse.Namespace) -> SimOptions:
    """The :class:`SimOptions` the command line describes."""
    return SimOptions(
        dialect=args.dialect,
        seed=args.seed,
        start=args.start,
        interval=args.interval,
        speed=args.speed,
        crc_error_rate=args.crc_error_rate,
        garbage_rate=args.garbage_rate,
        torn_rate=args.torn_rate,
        pause_rate=args.pause_rate,
        pause_seconds=args.pause_seconds,
        force_import_watts=args.force_import_watts,
        wire_settings=args.wire_settings,
        receiver_settings=args.receiver_settings,
        inverted=args.inverted,
    )


class _Stop(Exception):
    """Raised from the signal handler to leave the writer loop."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signum)


@contextmanager
def _stop_on_signals() -> Iterator[None]:
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _open_sink(args: argparse.Namespace) -> Sink:
    if args.pty:
        pty = PtySink()
        print(pty.path, flush=True)
        return pty
    if args.tcp:
        host, port = parse_host_port(args.tcp)
        tcp = TcpSink(host, port)
        print(tcp.url, flush=True)
        return tcp
    return StdoutSink()


def run(args: argparse.Namespace) -> int:
    """Run the simulator until ``--count`` telegrams were sent or a signal arrives."""
    try:
        options = options_from_args(args)
        meter = SimulatedMeter.from_options(options)
        meter.keys = _keys(args)
        meter.telegram_at(meter.start)  # an encrypted dialect without a key fails here
    except ValueError as error:
        print(f"{_PROG}: error: {error}", file=sys.stderr)
        return 2
    sink: Sink | None = None
    with _stop_on_signals():
        try:
            sink = _open_sink(args)
            print(
                f"{_PROG}: {options.dialect} meter, seed {meter.seed}, a telegram every "
                f"{options.interval:g} s at {options.speed:g}x",
                file=sys.stderr,
                flush=True,
            )
            stream(meter, sink, interval=options.interval, speed=options.speed, count=args.count)
        except _Stop:
            pass
        except BrokenPipeError:
            # The reader of stdout went away: that ends the run quietly.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError) as error:
            print(f"{_PROG}: error: {error}", file=sys.stderr)
            return 1
        finally:
            if sink is not None:
                sink.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``python -m p1_exporter.sim``."""
    parser = argparse.ArgumentParser(
        prog=_PROG, description="Simulate a DSMR / P1 smart meter for testing and demos."
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
