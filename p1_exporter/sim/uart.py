"""Bit-level UART emulation: what a receiver with the wrong settings reads.

:func:`transcode` turns bytes into line levels as a sender with one set of
serial settings would (idle high, start bit low, data LSB first, optional
parity, stop bits high), optionally inverts the whole line (a P1 port's
open-collector output read without an inverter), and decodes the levels as a
receiver with other settings would:

* the receiver hunts for a falling edge, seen on its 16x oversampling clock;
  a start bit that is no longer low at mid-bit is a glitch and is ignored;
* data, parity and the first stop bit are sampled in the middle of each of
  the receiver's bit times; after the stop bit it hunts for the next edge;
* a character whose stop bit is low is a framing error. It is delivered as
  read (which is what Linux does with ``INPCK`` off, as pyserial sets it for
  parity N). A framing error with all bits 0 is a break: delivered as 0x00,
  and the receiver waits for the line to return high;
* a receiver that checks parity (pyserial turns ``INPCK`` on for E/O/M/S)
  delivers characters with a parity or framing error as 0x00, as Linux's
  n_tty does without ``PARMRK``.
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass

_SETTINGS = re.compile(r"^\s*(\d+)\s*[-/ ,:]?\s*([5-8])([NEOMS])(1|1\.5|2)\s*$", re.IGNORECASE)
#: Line samples per bit in the emulated waveform (so 1.5 stop bits can exist).
_STEPS = 2
_OVERSAMPLE = 16


@dataclass(frozen=True)
class SerialSettings:
    """Baud rate and character frame, e.g. 115200 baud, 8 data bits, no parity, 1 stop."""

    baud: int
    data_bits: int = 8
    parity: str = "N"
    stop_bits: float = 1.0

    def __post_init__(self) -> None:
        if self.baud <= 0:
            raise ValueError(f"baud rate must be positive, not {self.baud}")
        if self.data_bits not in (5, 6, 7, 8):
            raise ValueError(f"data bits must be 5 to 8, not {self.data_bits}")
        if self.parity not in ("N", "E", "O", "M", "S"):
            raise ValueError(f"parity must be one of N E O M S, not {self.parity!r}")
        if self.stop_bits not in (1.0, 1.5, 2.0):
            raise ValueError(f"stop bits must be 1, 1.5 or 2, not {self.stop_bits}")

    @classmethod
    def parse(cls, text: str) -> SerialSettings:
        """Read ``"115200-8N1"`` (also ``"9600 7E1"``, ``"9600/7e1"``, ``"9600-8N1.5"``)."""
        match = _SETTINGS.match(text)
        if not match:
            raise ValueError(f"serial settings {text!r} are not like 115200-8N1 or 9600-7E1")
        baud, bits, parity, stop = match.groups()
        return cls(int(baud), int(bits), parity.upper(), float(stop))

    def __str__(self) -> str:
        stop = f"{self.stop_bits:g}"
        return f"{self.baud}-{self.data_bits}{self.parity}{stop}"

    @property
    def frame_bits(self) -> float:
        """Bit times per character: start, data, parity, stop."""
        return 1 + self.data_bits + (self.parity != "N") + self.stop_bits


def parse_settings(text: str | SerialSettings) -> SerialSettings:
    """Settings from a string like ``"115200-8N1"``, or passed through unchanged."""
    return text if isinstance(text, SerialSettings) else SerialSettings.parse(text)


def _parity_bit(value: int, parity: str) -> int:
    ones = bin(value).count("1")
    if parity == "E":
        return ones & 1
    if parity == "O":
        return (ones & 1) ^ 1
    return 1 if parity == "M" else 0


def encode(data: bytes, settings: SerialSettings, inverted: bool = False) -> bytearray:
    """Line levels (1 = high), ``_STEPS`` samples per bit, one idle bit in front."""
    levels = bytearray([1] * _STEPS)
    mask = (1 << settings.data_bits) - 1
    stop = bytes([1] * round(settings.stop_bits * _STEPS))
    for byte in data:
        value = byte & mask
        bits = [0]
        bits.extend((value >> i) & 1 for i in range(settings.data_bits))
        if settings.parity != "N":
            bits.append(_parity_bit(value, settings.parity))
        for bit in bits:
            levels.extend([bit] * _STEPS)
        levels.extend(stop)
    if inverted:
        levels = bytearray(b ^ 1 for b in levels)
    return levels


class _Line:
    """Levels as a function of time (seconds), idle before and after the data."""

    def __init__(self, levels: bytearray, baud: int, idle: int) -> None:
        self.levels = levels
        self.rate = baud * _STEPS
        self.idle = idle
        previous = [idle, *levels[:-1]]
        self.falling = [
            i / self.rate
            for i, (a, b) in enumerate(zip(previous, levels, strict=True))
            if a == 1 and b == 0
        ]
        if idle == 0 and levels and levels[-1] == 1:
            self.falling.append(len(levels) / self.rate)

    def at(self, t: float) -> int:
        index = math.floor(t * self.rate)
        if 0 <= index < len(self.levels):
            return self.levels[index]
        return self.idle

    def next_falling(self, after: float) -> float | None:
        pos = bisect.bisect_right(self.falling, after)
        return self.falling[pos] if pos < len(self.falling) else None


def decode(line: _Line, settings: SerialSettings) -> bytes:
    """What a UART with ``settings`` delivers for the levels on ``line``."""
    bit = 1.0 / settings.baud
    tick = bit / _OVERSAMPLE
    has_parity = settings.parity != "N"
    out = bytearray()
    hunt_from = -1.0
    while True:
        edge = line.next_falling(hunt_from)
        if edge is None:
            break
        start = math.ceil(edge / tick - 1e-9) * tick  # first receiver tick at or after the edge
        if line.at(start + bit / 2) != 0:
            hunt_from = start + bit / 2  # a glitch, not a start bit
            continue
        value = 0
        for i in range(settings.data_bits):
            value |= line.at(start + (1.5 + i) * bit) << i
        parity_ok = True
        received_parity = 0
        if has_parity:
            received_parity = line.at(start + (1.5 + settings.data_bits) * bit)
            parity_ok = received_parity == _parity_bit(value, settings.parity)
        stop_at = start + (1.5 + settings.data_bits + has_parity) * bit
        framing_ok = line.at(stop_at) == 1
        hunt_from = stop_at
        if not framing_ok and value == 0 and received_parity == 0:
            out.append(0)  # break; the next edge comes only after the line went high
        elif has_parity and not (framing_ok and parity_ok):
            out.append(0)
        else:
            out.append(value)
    return bytes(out)


def transcode(
    data: bytes,
    sender: str | SerialSettings = "9600-7E1",
    receiver: str | SerialSettings = "115200-8N1",
    inverted: bool = False,
) -> bytes:
    """The bytes a ``receiver``-configured UART reads from a ``sender``-configured one."""
    send = parse_settings(sender)
    receive = parse_settings(receiver)
    line = _Line(encode(data, send, inverted), send.baud, idle=0 if inverted else 1)
    return decode(line, receive)


@dataclass(frozen=True)
class Wire:
    """A sender/receiver pair, to pass every chunk of a stream through :func:`transcode`."""

    sender: SerialSettings
    receiver: SerialSettings
    inverted: bool = False

    @classmethod
    def parse(cls, sender: str, receiver: str, inverted: bool = False) -> Wire:
        """A wire from settings strings such as ``"9600-7E1"``."""
        return cls(SerialSettings.parse(sender), SerialSettings.parse(receiver), inverted)

    @property
    def transparent(self) -> bool:
        """True when the receiver reads exactly what was sent."""
        return self.sender == self.receiver and not self.inverted and self.sender.data_bits == 8

    def transcode(self, data: bytes) -> bytes:
        """``data`` as the receiver reads it."""
        if self.transparent:
            return data
        return transcode(data, self.sender, self.receiver, self.inverted)
