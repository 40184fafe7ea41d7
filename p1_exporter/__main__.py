"""``python -m p1_exporter`` runs the command-line interface."""

from __future__ import annotations

import sys

from p1_exporter.commands.cli import main

sys.exit(main())
