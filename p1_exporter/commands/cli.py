"""Command-line entry point: ``p1-exporter [SUBCOMMAND] ...``.

Without a subcommand it runs the exporter. Each subcommand lives in a module
with ``add_arguments(parser)`` and ``run(args) -> int``, imported only when used.
Every subcommand ends the same way when its reader goes away (``... | head``: quietly) or
on Ctrl-C (one line and exit code 130), never with a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

#: name -> (module, one-line summary)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "decode": (
        "p1_exporter.commands.decode",
        "decode a telegram or capture file and show what the exporter reads",
    ),
    "simulate": ("p1_exporter.sim.cli", "run the built-in simulated meter (pty, TCP or stdout)"),
    "capture": (
        "p1_exporter.commands.capture",
        "record every telegram a meter sends to a capture file",
    ),
    "backfill": (
        "p1_exporter.commands.backfill",
        "convert captures and dumps into OpenMetrics for promtool backfilling",
    ),
}


def run_subcommand(name: str, argv: Sequence[str]) -> int:
    """Parse ``argv`` with the subcommand's own parser and run it."""
    module_name, summary = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"p1-exporter {name}", description=summary)
    module.add_arguments(parser)
    args = parser.parse_args(list(argv))
    try:
        code: int = module.run(args)
        sys.stdout.flush()  # a closed pipe shows here, not as a message at interpreter exit
    except BrokenPipeError:
        _discard_stdout()
        return 0
    except KeyboardInterrupt:
        print(f"p1-exporter {name}: interrupted", file=sys.stderr)
        return 130
    return code


def _discard_stdout() -> None:
    """Point stdout at /dev/null: its reader left, and Python's final flush must not fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the exporter or a subcommand; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in SUBCOMMANDS:
        return run_subcommand(args[0], args[1:])
    from p1_exporter.commands.serve import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
