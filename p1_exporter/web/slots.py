"""Who may hold a connection slot: the limits, and which connection gives way when full.

Sans-I/O bookkeeping for the server. Two limits: ``max_total`` connections at once
(``--web.max-connections``) and ``max_per_client`` from one client address. A new
connection over either limit takes the place of the connection that is owed least:
lowest :attr:`Slot.rank` first (a socket that has sent nothing, then one that has not
authenticated, then one waiting for its credential check, then one that does not read
its answers), the one in that state longest first, and for the total limit the client
holding most connections first. A connection that has authenticated (or, with auth off,
been served) and is idle or sending its next request is never pushed out: when only such
connections are left, the newcomer is refused. So a crowd of idle, stalled or
unauthenticated sockets can never lock out a scraper, and a scraper's keep-alive
connection survives any flood, even one from its own address.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Protocol

__all__ = ["Rank", "Slot", "Slots"]


class Rank:
    """Eviction order, lowest first; ranks above :data:`EVICTABLE` are never evicted."""

    CLOSING = 0  # answered and closing: lingering for the client's EOF
    SILENT = 1  # connected, sent nothing yet
    NEW = 2  # sent something, but no request passed authentication yet
    AUTH = 3  # waiting for its unknown credentials to be checked
    STALLED = 4  # a response write waits for a client that does not read
    EVICTABLE = STALLED
    IDLE = 5  # authenticated keep-alive between two requests
    HEAD = 6  # authenticated, sending its next request


class Slot(Protocol):
    client: str

    @property
    def rank(self) -> int | None: ...

    @property
    def since(self) -> float: ...

    def still_silent(self) -> bool:
        """For a SILENT slot: has nothing arrived meanwhile? (It may look again.)"""
        ...


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
        ranked = []
        for slot in candidates:
            rank = slot.rank
            if rank is not None and rank <= Rank.EVICTABLE:
                ranked.append(((rank, -self.count(slot.client), slot.since), slot))
        ranked.sort(key=lambda item: item[0])
        for (rank, _, _), slot in ranked:
            # A socket that looked silent may have sent its request since (a scraper
            # accepted among a flood of silent sockets): it keeps its place.
            if rank != Rank.SILENT or slot.still_silent():
                return slot
        return None
