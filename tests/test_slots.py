"""Who gives way when the connection limits are reached (the sans-I/O slot table)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from p1_exporter.web.slots import Rank, Slots


@dataclass(eq=False)
class Conn:
    client: str
    rank: int | None
    since: float
    silent: bool = True

    def still_silent(self) -> bool:
        return self.silent


def fill(slots: Slots, *conns: Conn) -> None:
    for conn in conns:
        assert slots.admit(conn) == (True, None)


def test_over_the_total_the_lowest_rank_then_the_oldest_gives_way() -> None:
    slots = Slots(max_total=3, max_per_client=3)
    idle = Conn("a", Rank.IDLE, 1.0)
    new_old, new_young = Conn("b", Rank.NEW, 2.0), Conn("c", Rank.NEW, 3.0)
    fill(slots, idle, new_old, new_young)
    assert slots.admit(Conn("d", Rank.NEW, 4.0)) == (True, new_old)
    assert len(slots) == 3 and slots.count("b") == 0


def test_the_client_with_most_connections_pays_first() -> None:
    slots = Slots(max_total=4, max_per_client=4)
    lone = Conn("a", Rank.NEW, 1.0)
    crowd = [Conn("b", Rank.NEW, 2.0 + i) for i in range(3)]
    fill(slots, lone, *crowd)
    assert slots.admit(Conn("c", Rank.NEW, 9.0)) == (True, crowd[0])


def test_the_per_client_cap_evicts_only_that_clients_connections() -> None:
    slots = Slots(max_total=10, max_per_client=2)
    other = Conn("x", Rank.SILENT, 0.0)
    mine = [Conn("a", Rank.STALLED, 1.0), Conn("a", Rank.AUTH, 2.0)]
    fill(slots, other, *mine)
    assert slots.admit(Conn("a", Rank.NEW, 3.0)) == (True, mine[1])  # AUTH ranks below
    assert slots.count("x") == 1


@pytest.mark.parametrize("rank", [Rank.IDLE, Rank.HEAD, None])
def test_authenticated_or_busy_connections_never_give_way(rank: int | None) -> None:
    slots = Slots(max_total=2, max_per_client=2)
    fill(slots, Conn("a", rank, 1.0), Conn("a", rank, 2.0))
    assert slots.admit(Conn("a", Rank.SILENT, 3.0)) == (False, None)
    assert len(slots) == 2


def test_a_silent_socket_that_has_sent_its_request_meanwhile_keeps_its_place() -> None:
    slots = Slots(max_total=2, max_per_client=2)
    scraper = Conn("a", Rank.SILENT, 1.0, silent=False)  # its bytes wait in the kernel
    flood = Conn("a", Rank.SILENT, 2.0)
    fill(slots, scraper, flood)
    assert slots.admit(Conn("a", Rank.SILENT, 3.0)) == (True, flood)


def test_release_is_idempotent_and_limits_are_checked() -> None:
    slots = Slots(max_total=2, max_per_client=5)
    assert slots.max_per_client == 2
    conn = Conn("a", Rank.NEW, 1.0)
    fill(slots, conn)
    slots.release(conn)
    slots.release(conn)
    assert len(slots) == 0 and slots.count("a") == 0
    with pytest.raises(ValueError):
        Slots(max_total=0, max_per_client=1)
