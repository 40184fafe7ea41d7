"""Line faults a real P1 connection suffers, applied to good telegrams.

Each fault is drawn independently per telegram from a seeded generator:

* ``crc_error_rate``: one digit in the body is changed to another digit, so
  framing stays intact but the CRC (which catches every single-byte error)
  fails;
* ``garbage_rate``: a burst of random bytes without ``/`` is sent first, as
  line noise between telegrams;
* ``torn_rate``: only a leading part of the telegram is sent (the cable was
  pulled, the reader started mid-telegram, ...);
* ``pause_rate``: the meter stays silent for ``pause_seconds`` first.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

_DIGITS = b"0123456789"
_GARBAGE = bytes(b for b in range(256) if b != ord("/"))


@dataclass(frozen=True)
class Chunk:
    """Bytes to send, after keeping the line idle for ``pause_before`` seconds."""

    data: bytes
    pause_before: float = 0.0


class FaultInjector:
    """Applies random faults to telegrams; ``counts`` tallies what was injected."""

    def __init__(
        self,
        seed: int | None = None,
        crc_error_rate: float = 0.0,
        garbage_rate: float = 0.0,
        torn_rate: float = 0.0,
        pause_rate: float = 0.0,
        pause_seconds: float = 5.0,
    ) -> None:
        for name, rate in (
            ("crc_error_rate", crc_error_rate),
            ("garbage_rate", garbage_rate),
            ("torn_rate", torn_rate),
            ("pause_rate", pause_rate),
        ):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {rate}")
        if pause_seconds < 0:
            raise ValueError(f"pause_seconds must not be negative, not {pause_seconds}")
        self._rng = random.Random(seed)
        self.crc_error_rate = crc_error_rate
        self.garbage_rate = garbage_rate
        self.torn_rate = torn_rate
        self.pause_rate = pause_rate
        self.pause_seconds = pause_seconds
        self.counts: Counter[str] = Counter()

    @property
    def active(self) -> bool:
        """True when any fault can happen at all."""
        return any((self.crc_error_rate, self.garbage_rate, self.torn_rate, self.pause_rate))

    def apply(self, telegram: bytes) -> list[Chunk]:
        """The chunks to send for ``telegram``: possibly damaged, preceded or delayed."""
        rng = self._rng
        # Draw every fault every time, so one rate does not shift the others' draws.
        corrupt = rng.random() < self.crc_error_rate
        garbage = rng.random() < self.garbage_rate
        torn = rng.random() < self.torn_rate
        pause = rng.random() < self.pause_rate
        data = telegram
        if corrupt:
            data = self._corrupt(data)
        if torn and len(data) > 2:
            data = data[: rng.randrange(1, len(data) - 1)]
            self.counts["torn"] += 1
        chunks = []
        if garbage:
            burst = bytes(rng.choice(_GARBAGE) for _ in range(rng.randrange(1, 64)))
            chunks.append(Chunk(burst))
            self.counts["garbage"] += 1
        chunks.append(Chunk(data))
        if pause:
            chunks[0] = Chunk(chunks[0].data, self.pause_seconds)
            self.counts["pause"] += 1
        return chunks

    def _corrupt(self, telegram: bytes) -> bytes:
        """Replace one digit between ``/`` and ``!`` by a different digit."""
        end = telegram.rfind(b"!")
        digits = [i for i in range(1, end if end > 0 else len(telegram)) if telegram[i] in _DIGITS]
        if not digits:
            return telegram
        pos = self._rng.choice(digits)
        old = telegram[pos]
        new = self._rng.choice([d for d in _DIGITS if d != old])
        self.counts["crc_error"] += 1
        return telegram[:pos] + bytes((new,)) + telegram[pos + 1 :]
