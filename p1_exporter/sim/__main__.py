"""``python -m p1_exporter.sim``: the simulator without the main CLI."""

from __future__ import annotations

from p1_exporter.sim.cli import main

raise SystemExit(main())
