"""What every meter source shares: the protocol, its errors, line settings, a pause, redaction.

Every source has the same small surface: ``open()``, ``read(timeout) -> bytes``
(empty on timeout) and ``close()``. Expected failures raise :class:`SourceError`
with a kind and a plain-words hint; the reader decides about retries. These names
live apart from the sources themselves because the reader, the engine and the
command line use them without opening any source.
"""

from __future__ import annotations

import re
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Literal, Protocol, get_args

#: Why a source failed: the label of a :class:`SourceError`, the ``err=`` field of its log
#: line and the key its log line is limited by. ``silent`` (no byte for the silence
#: timeout), ``ended`` (a replay finished) and ``internal`` (an unexpected exception) are
#: decided by the reader; the others by the sources.
SourceErrorKind = Literal[
    "not_found",
    "permission",
    "busy",
    "refused",
    "open_failed",
    "disconnected",
    "silent",
    "http",
    "internal",
    "closed",
    "ended",
]
SOURCE_ERROR_KINDS: tuple[SourceErrorKind, ...] = get_args(SourceErrorKind)


class SourceError(Exception):
    """An expected source failure. ``kind`` is a short label; ``str()`` says what to do."""

    def __init__(self, kind: SourceErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class SerialSettings:
    """Line settings such as 115200 8N1."""

    baudrate: int
    bytesize: int
    parity: str
    stopbits: int = 1

    def __str__(self) -> str:
        return f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"

    @classmethod
    def parse(cls, text: str) -> SerialSettings:
        """``115200-8N1`` or ``9600 7E1``."""
        match = re.fullmatch(r"\s*(\d+)[\s:-]*([5-8])([NEOMS])([12])\s*", text.upper())
        if match is None:
            raise ValueError(f"serial settings must look like 115200-8N1, not {text!r}")
        return cls(int(match[1]), int(match[2]), match[3], int(match[4]))


DSMR45 = SerialSettings(115200, 8, "N")
DSMR22 = SerialSettings(9600, 7, "E")


class Source(Protocol):
    """What the reader needs from a source of telegram bytes.

    A source may also have ``cancel_read()``: callable from another thread, it makes a
    blocking ``read`` (the current one, or else the next) return at once.
    """

    description: str

    def open(self) -> None: ...

    def read(self, timeout: float) -> bytes: ...

    def close(self) -> None: ...


class CancellablePause:
    """A sleep that ``cancel_read`` cuts short, for sources that wait between pieces."""

    def __init__(self) -> None:
        self._cancel = threading.Event()

    def _pause(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; False when cut short by :meth:`cancel_read`."""
        cancelled = self._cancel.wait(max(0.0, seconds))
        self._cancel.clear()
        return not cancelled

    def cancel_read(self) -> None:
        """Make a blocking ``read`` (this one, or else the next) return at once."""
        self._cancel.set()


def redact(url: str) -> str:
    """A URL without any password, for logs and labels."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
