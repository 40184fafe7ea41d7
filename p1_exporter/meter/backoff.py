"""Exponential backoff with jitter, for reconnecting to a meter."""

from __future__ import annotations

import random


class Backoff:
    """Delays that double from ``initial`` up to ``cap`` seconds, each with +-``jitter``."""

    def __init__(
        self,
        initial: float = 0.5,
        cap: float = 30.0,
        factor: float = 2.0,
        jitter: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        self.initial = initial
        self.cap = cap
        self.factor = factor
        self.jitter = jitter
        self._rng = rng or random.Random()
        self._next = initial

    def next_delay(self) -> float:
        """The delay before the next attempt; each call grows the one after it."""
        base = self._next
        self._next = min(self.cap, base * self.factor)
        spread = base * self.jitter
        return max(0.0, min(self.cap, base + self._rng.uniform(-spread, spread)))

    def reset(self) -> None:
        """Call after a success: the next failure waits ``initial`` again."""
        self._next = self.initial
