"""Which decoder reads a meter's bytes: plain DSMR, encrypted P1, or DLMS/COSEM HAN.

Chosen by the meter's ``protocol`` setting. The encrypted and HAN streams count
refusals under reasons of their own (``core.errors.EXTRA_RESULTS``), next to the DSMR ones.
"""

from __future__ import annotations

from typing import Protocol

from p1_exporter.core.cipher import FrameCounter, Keys
from p1_exporter.core.cosem import Scalers
from p1_exporter.core.han_stream import HanStream, ListMerger
from p1_exporter.core.secure_stream import EncryptedTelegramStream
from p1_exporter.core.stream import Outcome, TelegramStream
from p1_exporter.meter.sources.base import SerialSettings

PROTOCOLS = ("dsmr", "encrypted", "han")
#: Serial settings auto-detection tries for HAN meters: Norwegian M-Bus ports (Aidon,
#: Kaifa, Kamstrup) speak 2400 8E1, Aidon's RJ12 port 115200 8N1. Other settings (an
#: Austrian M-Bus interface at 2400 8N1) are fixed with --baudrate/--parity.
HAN_SERIAL = (SerialSettings(2400, 8, "E"), SerialSettings(115200, 8, "N"))


class Stream(Protocol):
    """What the reader needs from a decoder: bytes in, outcomes out."""

    def feed(self, data: bytes) -> list[Outcome]: ...

    def flush(self) -> list[Outcome]: ...

    def release_noise(self) -> list[Outcome]: ...

    @property
    def noise_pending(self) -> int:
        """Bytes of line noise the framer holds back, not yet reported (0: none)."""
        ...

    @property
    def garbage_bytes(self) -> int:
        """Bytes the decoder's framer skipped outside any frame."""
        ...


def make_stream(
    protocol: str,
    keys: Keys | None,
    counter: FrameCounter,
    *,
    check_crc: bool,
    max_size: int,
    merger: ListMerger | None = None,
    scalers: Scalers | None = None,
) -> Stream:
    """A fresh decoder for one connection; ``counter`` (replay check) and ``merger`` (HAN
    lists carried forward) outlive it, so a reconnect forgets neither. ``scalers``: a HAN
    meter owner's scalers for values it sends without one (``core.cosem.Scalers``)."""
    if protocol == "encrypted":
        return EncryptedTelegramStream(
            keys, check_crc=check_crc, max_size=max_size, counter=counter
        )
    if protocol == "han":
        return HanStream(keys, max_size=max_size, counter=counter, merger=merger, scalers=scalers)
    return TelegramStream(check_crc=check_crc, max_size=max_size, sticky_crc=True)


_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_HEX_TEXT = _HEX_DIGITS | frozenset(b" \t\r\n:")


def unhex(data: bytes) -> bytes:
    """A hex dump (digits with optional spaces, colons, line breaks) as bytes; else unchanged."""
    if not data or not set(data) <= _HEX_TEXT:
        return data
    digits = bytes(b for b in data if b in _HEX_DIGITS)
    if len(digits) % 2 or len(digits) < 4:
        return data
    return bytes.fromhex(digits.decode("ascii"))


def detect_protocol(data: bytes) -> str:
    """dsmr, encrypted or han: whichever kind of frame starts first in ``data``."""
    candidates = []
    for protocol, marker in (
        ("dsmr", b"/"),
        ("encrypted", b"\xdb\x08"),
        ("han", b"\x7e\xa0"),
        ("han", b"\x7e\xa1"),
        ("han", b"\x7e\xa2"),
        ("han", b"\x68"),
    ):
        index = data.find(marker)
        if index >= 0:
            candidates.append((index, protocol))
    if not candidates:
        return "dsmr"
    first = min(candidates)
    if first[1] == "encrypted" or first[1] == "dsmr":
        return first[1]
    return "han"
