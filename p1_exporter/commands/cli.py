"""Command-line entry point: ``p1-exporter [SUBCOMMAND] ...``.

Without a subcommand it runs the exporter. Each subcommand lives in a module
with ``add_arguments(parser)`` and ``run(args) -> int``, imported only when used.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: name -> (module, one-line summary)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "decode": ("p1_exporter.commands.decode",
               "decode a telegram or capture file and show what the exporter reads"),
    "simulate": ("p1_exporter.sim.cli", "run the built-in simulated meter (pty, TCP or stdout)"),
    "capture": ("p1_exporter.commands.capture",
                "record every telegram a meter sends to a capture file"),
    "backfill": ("p1_exporter.commands.backfill",
                 "convert captures and dumps into OpenMetrics for promtool backfilling"),
}


def run_subcommand(name: str, argv: Sequence[str]) -> int:
    """Parse ``argv`` with the subcommand's own parser and run it."""
    module_name, summary = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"p1-exporter {name}", description=summary)
    module.add_arguments(parser)
    code: int = module.run(parser.parse_args(list(argv)))
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the exporter or a subcommand; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in SUBCOMMANDS:
        return run_subcommand(args[0], args[1:])
    from p1_exporter.commands.serve import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
