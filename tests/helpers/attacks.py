"""Hostile inputs that more than one test module hands the exporter."""

from __future__ import annotations

#: A few hundred bytes that expand to 9**9 = 387,420,489 strings through aliases.
_LEVELS = ["&a [lol,lol,lol,lol,lol,lol,lol,lol,lol]"] + [
    f"&{n} [" + ",".join([f"*{p}"] * 9) + "]" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
]
ALIAS_BOMB = "meters:\n- device: sim://\n  stale_after: [" + ", ".join(_LEVELS) + "]\n"
