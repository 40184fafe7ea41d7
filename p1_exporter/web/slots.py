"""Who may hold a connection slot: the limits, and which connection gives way when full.

Sans-I/O bookkeeping for the server. Two limits: ``max_total`` connections at once
(``--web.max-connections``) and ``max_per_client`` from one client address. A new
connection over either limit takes the place of the connection that is owed least
(lowest :attr:`Slot.rank`, then the one in that state longest; for the total limit the
client holding most connections pays first); only when every connection is busy being
served is the new one refused. So a crowd of idle, stalled or unauthenticated sockets
can never lock out a scraper: they give way to it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Protocol

__all__ = ["Rank", "Slot", "Slots"]


class Rank:
    """Eviction order, lowest first; ``None`` (being served) is never evicted."""

    CLOSING = 0  # answered and closing: lingering for the client's EOF
    NEW = 1  # connected (TLS handshake, first request) but never served a request
    AUTH = 2  # waiting for its unknown credentials to be checked
    STALLED = 3  # a response write waits for a client that does not read
    IDLE = 4  # keep-alive between two requests
    HEAD = 5  # reading the next request head after earlier ones were served


class Slot(Protocol):
    client: str

    @property
    def rank(self) -> int | None: ...

    @property
    def since(self) -> float: ...


class Slots:
    """The connections holding slots, by client address."""

    def __init__(self, max_total: int, max_per_client: int) -> None:
        if max_total < 1 or max_per_client < 1:
            raise ValueError("connection limits must be at least 1")
        self.max_total = max_total
        self.max_per_client = min(max_per_client, max_total)
        self._by_client: defaultdict[str, set[Slot]] = defaultdict(set)
        self.total = 0

    def __len__(self) -> int:
        return self.total

    def all(self) -> list[Slot]:
        return [slot for slots in self._by_client.values() for slot in slots]

    def count(self, client: str) -> int:
        return len(self._by_client.get(client, ()))

    def admit(self, slot: Slot) -> tuple[bool, Slot | None]:
        """Take a slot for ``slot``: (admitted, the connection that must give way)."""
        victim: Slot | None = None
        if self.count(slot.client) >= self.max_per_client:
            victim = self._victim(self._by_client[slot.client])
            if victim is None:
                return False, None
        elif self.total >= self.max_total:
            victim = self._victim(self.all())
            if victim is None:
                return False, None
        if victim is not None:
            self.release(victim)
        self._by_client[slot.client].add(slot)
        self.total += 1
        return True, victim

    def release(self, slot: Slot) -> None:
        """Free ``slot`` (idempotent)."""
        slots = self._by_client.get(slot.client)
        if slots is None or slot not in slots:
            return
        slots.discard(slot)
        self.total -= 1
        if not slots:
            del self._by_client[slot.client]

    def _victim(self, candidates: Iterable[Slot]) -> Slot | None:
        best: Slot | None = None
        best_key: tuple[int, int, float] | None = None
        for slot in candidates:
            rank = slot.rank
            if rank is None:
                continue
            key = (rank, -self.count(slot.client), slot.since)
            if best_key is None or key < best_key:
                best, best_key = slot, key
        return best
