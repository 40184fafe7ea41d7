"""``python -m p1_exporter`` runs the command-line interface."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
