"""The sans-I/O telegram core: bytes in, validated telegrams out.

This package and the top-level ``p1_exporter`` are the documented library API.
"""

from __future__ import annotations

from p1_exporter.core.stream import (
    Outcome,
    TelegramStream,
    decode_frame,
    iter_telegrams,
    parse,
)

__all__ = ["Outcome", "TelegramStream", "decode_frame", "iter_telegrams", "parse"]
