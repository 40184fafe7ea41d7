"""Plain-words diagnosis of a meter link that delivers bytes but few or no telegrams.

Sans-I/O: fed the bytes read and the outcome of every telegram, it returns at
most one message per condition (wrong speed or parity, signal not inverted,
a shared port, many CRC errors). A condition is reported again only after it
has cleared, so a broken link gives one clear line, not a flood.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

from p1_exporter.core.errors import Result

#: Bytes without any telegram before the link is diagnosed.
NO_TELEGRAM_BYTES = 3000
#: Outcomes in the CRC-error window, and the error share that raises / clears the alarm.
CRC_WINDOW = 100
CRC_MIN_SEEN = 20
CRC_ALARM = 0.03
CRC_CLEAR = 0.01

_PRINTABLE = frozenset(range(0x20, 0x7F)) | {0x0D, 0x0A}


class Finding(NamedTuple):
    """A diagnosis: ``key`` names the condition, ``level`` is a logging level name."""

    key: str
    level: str
    message: str


def classify_noise(sample: bytes) -> Finding:
    """Name the likeliest cause of bytes that never contain a telegram.

    The patterns are those a Linux UART delivers (see ``p1_exporter.sim.uart``):
    7E1 read as 8N1 is 7-bit text whose top bit is a parity bit; a line read much
    too fast, or with parity checking at the wrong speed, gives mostly 0x00
    (breaks and framing errors); a line that is not inverted, read at the right
    speed, gives bytes with the top bit set, because the next character's
    inverted start bit lands where the last data bit is sampled.
    """
    dlms = classify_dlms(sample)
    if dlms is not None:
        return dlms
    total = max(1, len(sample))
    high = sum(1 for b in sample if b & 0x80) / total
    zeros = sample.count(0) / total
    printable = sum(1 for b in sample if b in _PRINTABLE) / total
    printable_7bit = sum(1 for b in sample if (b & 0x7F) in _PRINTABLE) / total
    # 7E1 read as 8N1: the top bit is the parity bit, so every byte has even parity.
    even = sum(1 for b in sample if not bin(b).count("1") & 1) / total
    if printable_7bit >= 0.9 and 0.15 <= high <= 0.85 and max(even, 1 - even) >= 0.9:
        return Finding(
            "parity",
            "warning",
            "bytes look like 7-bit text with a parity bit: the meter probably speaks DSMR 2.2/3 "
            "at 9600 7E1 (let auto-detection run, or pass --baudrate 9600 --bytesize 7 "
            "--parity E)",
        )
    if printable >= 0.9:
        return Finding(
            "shared_port",
            "warning",
            "text arrives but never a whole telegram: is another program (a second exporter, "
            "ModemManager, a serial console) reading the same port and taking part of the bytes?",
        )
    if high >= 0.8:
        return Finding(
            "not_inverted",
            "warning",
            "most bytes have their top bit set: the signal is probably not inverted. P1 is an "
            "inverted, open-collector output: use an inverting cable (FTDI with RXD inverted in "
            "FT_Prog) and a pull-up resistor",
        )
    if zeros >= 0.5:
        return Finding(
            "wrong_speed",
            "warning",
            "bytes are mostly 0x00 (breaks and framing errors): the serial speed is probably "
            "wrong (DSMR 4/5: 115200 8N1; DSMR 2.2/3: 9600 7E1)",
        )
    return Finding(
        "wrong_speed",
        "warning",
        "bytes arrive but they are noise, never a telegram: the serial speed is probably wrong "
        "(DSMR 4/5: 115200 8N1; DSMR 2.2/3: 9600 7E1), or the signal is not inverted",
    )


def classify_dlms(sample: bytes) -> Finding | None:
    """A Finding when the bytes are DLMS frames that a DSMR meter setting cannot read."""
    from p1_exporter.core.cipher import KEY_HELP

    if sample.count(b"\xdb\x08") >= 2:
        return Finding(
            "encrypted",
            "warning",
            "the meter sends encrypted DLMS frames (general-glo-ciphering, as Luxembourg's "
            f"Smarty and Austrian meters do): set protocol encrypted (P1) or han, and {KEY_HELP}",
        )
    size = len(sample)
    # A frame start counts only where its length field leads to its closing byte.
    hdlc = sum(
        1
        for i in range(size - 2)
        if sample[i] == 0x7E
        and sample[i + 1] >> 4 == 0xA
        and (end := i + 1 + (((sample[i + 1] & 7) << 8) | sample[i + 2])) < size
        and sample[end] == 0x7E
    )
    mbus = sum(
        1
        for i in range(size - 3)
        if sample[i] == 0x68 == sample[i + 3]
        and sample[i + 1] == sample[i + 2]
        and i + sample[i + 1] + 5 < size
        and sample[i + sample[i + 1] + 5] == 0x16
    )
    if hdlc >= 2 or mbus >= 2:
        return Finding(
            "han",
            "warning",
            "the meter sends DLMS/COSEM HAN frames (HDLC or M-Bus), not DSMR telegrams: set "
            "protocol han for it (--protocol han, or protocol: han in --config)",
        )
    return None


class Diagnostics:
    """Watches one meter link and returns Findings worth one log line each."""

    def __init__(self, source: str = "the meter") -> None:
        self.source = source
        self._noise = bytearray()
        self._noise_bytes = 0
        self._outcomes: deque[str] = deque(maxlen=CRC_WINDOW)
        self._active: set[str] = set()
        self._messages: dict[str, str] = {}

    def active(self) -> tuple[str, ...]:
        """The messages of the conditions in force now (for the live page)."""
        messages = self._messages
        return tuple(messages[key] for key in sorted(self._active) if key in messages)

    def _raise(self, finding: Finding) -> list[Finding]:
        if finding.key in self._active:
            return []
        self._active.add(finding.key)
        self._messages[finding.key] = finding.message
        return [finding]

    def _clear(self, *keys: str) -> list[Finding]:
        cleared = self._active.intersection(keys)
        self._active.difference_update(cleared)
        if not cleared:
            return []
        return [Finding("recovered", "info", f"{self.source}: valid telegrams arrive again")]

    def bytes_read(self, data: bytes, telegrams_framed: int) -> list[Finding]:
        """Bytes just read, and how many frames (good or bad) they completed."""
        if telegrams_framed:
            self._noise.clear()
            self._noise_bytes = 0
            return []
        self._noise_bytes += len(data)
        room = 4096 - len(self._noise)
        if room > 0:
            self._noise += data[:room]
        if self._noise_bytes < NO_TELEGRAM_BYTES:
            return []
        finding = classify_noise(bytes(self._noise))
        message = (
            f"{self.source}: {self._noise_bytes} bytes read without one telegram; {finding.message}"
        )
        self._noise.clear()
        self._noise_bytes = 0
        return self._raise(finding._replace(message=message))

    def outcome(self, result: Result, torn: bool = False) -> list[Finding]:
        """One telegram outcome (``ok``, ``crc_error``, ...); ``torn`` for torn frames."""
        self._outcomes.append("torn" if torn else result)
        findings: list[Finding] = []
        if result == "ok":
            findings += self._clear("parity", "shared_port", "not_inverted", "wrong_speed")
        seen = len(self._outcomes)
        if seen < CRC_MIN_SEEN:
            return findings
        crc_errors = self._outcomes.count("crc_error")
        torn_count = self._outcomes.count("torn")
        share = crc_errors / seen
        if share > CRC_ALARM:
            findings += self._raise(
                Finding(
                    "crc",
                    "warning",
                    f"{self.source}: CRC errors in {crc_errors} of the last {seen} telegrams "
                    f"({share:.0%}): check the wiring and connectors, the pull-up resistor, "
                    "the cable length, and that no other program reads the same port",
                )
            )
        elif share < CRC_CLEAR and "crc" in self._active:
            self._active.discard("crc")
            findings.append(
                Finding("crc_ok", "info", f"{self.source}: CRC errors back below {CRC_CLEAR:.0%}")
            )
        # Torn among whole ones means a shared port; only torn fragments is noise,
        # which bytes_read() diagnoses.
        if torn_count / seen > 0.2 and torn_count < seen:
            findings += self._raise(
                Finding(
                    "torn",
                    "warning",
                    f"{self.source}: {torn_count} of the last {seen} telegrams arrived torn: is "
                    "another program reading the same port?",
                )
            )
        elif torn_count == 0:
            self._active.discard("torn")
        return findings
