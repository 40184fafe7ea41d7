"""The one error family raised by the telegram core, and the outcome labels.

Every error carries ``result``: the outcome label the reader counts it under
(``crc_error``, ``malformed``, ``too_large``, ``rejected``; the encrypted and HAN
refusals ``decrypt_error``, ``replay``, ``no_key`` and ``unsupported`` are the
:class:`P1Error` subclasses of :mod:`p1_exporter.core.cipher`), so callers can count
and show a refusal without inspecting exception types.
"""

from __future__ import annotations

from typing import ClassVar, Literal, get_args

#: A telegram's outcome, as counted in ``p1_telegrams_total{result}`` and in captures.
Result = Literal[
    "ok",
    "crc_error",
    "malformed",
    "too_large",
    "rejected",
    "decrypt_error",
    "replay",
    "no_key",
    "unsupported",
]
#: The outcomes every meter counts, in the order the exporter lists them (counters start at 0).
RESULTS: tuple[Result, ...] = get_args(Result)[:5]
#: Outcomes only encrypted and HAN meters produce (counted from 0 on those meters only).
EXTRA_RESULTS: tuple[Result, ...] = get_args(Result)[5:]


class P1Error(Exception):
    """Base class: a telegram (or the bytes meant to be one) was refused."""

    result: ClassVar[Result] = "rejected"


class FramingError(P1Error):
    """The bytes do not form one complete telegram (torn, no start, no end).

    ``size`` is how many bytes of the stream the framer dropped for it (0 when none).
    """

    result: ClassVar[Result] = "malformed"

    def __init__(self, message: str, size: int = 0) -> None:
        super().__init__(message)
        self.size = size


class TornTelegram(FramingError):
    """A telegram broke off: a new one started (or the stream ended) before its ``!``."""


class TelegramTooLarge(FramingError):
    """A telegram grew past the framer's size cap before it ended."""

    result: ClassVar[Result] = "too_large"


class CRCError(P1Error):
    """The CRC is wrong, not hexadecimal, or missing where the dialect needs one."""

    result: ClassVar[Result] = "crc_error"


class ParseError(P1Error):
    """The telegram passed its CRC but its content cannot be read at all."""

    result: ClassVar[Result] = "malformed"
