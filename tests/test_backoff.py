"""Backoff: delays double up to a cap, with bounded jitter, and start over after a success."""

from __future__ import annotations

import random

import pytest

from p1_exporter.meter.backoff import Backoff


def test_delays_double_up_to_the_cap_without_jitter() -> None:
    backoff = Backoff(initial=0.5, cap=30.0, jitter=0.0)
    delays = [backoff.next_delay() for _ in range(9)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_other_factor() -> None:
    backoff = Backoff(initial=1.0, cap=100.0, factor=3.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(6)] == [1.0, 3.0, 9.0, 27.0, 81.0, 100.0]


def test_jitter_is_bounded_and_never_passes_the_cap() -> None:
    backoff = Backoff(initial=0.05, cap=0.5, jitter=0.2, rng=random.Random(7))
    bases = [0.05, 0.1, 0.2, 0.4] + [0.5] * 200
    delays = [backoff.next_delay() for _ in bases]
    for base, delay in zip(bases, delays, strict=True):
        assert base * 0.8 - 1e-12 <= delay <= min(0.5, base * 1.2) + 1e-12
    capped = delays[4:]
    assert max(capped) <= 0.5 and min(capped) >= 0.4
    assert len(set(capped)) > 100  # jittered: reconnecting meters do not move in lockstep
    assert min(capped) < 0.45  # the jitter really spreads downwards at the cap


def test_reset_starts_over() -> None:
    backoff = Backoff(initial=0.5, cap=30.0, jitter=0.0)
    for _ in range(5):
        backoff.next_delay()
    assert backoff.next_delay() == 16.0
    backoff.reset()
    assert [backoff.next_delay() for _ in range(3)] == [0.5, 1.0, 2.0]


def test_seeded_backoffs_agree_and_delays_are_never_negative() -> None:
    first = Backoff(initial=0.1, cap=1.0, jitter=1.5, rng=random.Random(3))
    second = Backoff(initial=0.1, cap=1.0, jitter=1.5, rng=random.Random(3))
    a = [first.next_delay() for _ in range(50)]
    assert a == [second.next_delay() for _ in range(50)]
    assert all(0.0 <= d <= 1.0 for d in a)
    assert 0.0 in a or min(a) < 0.05  # a jitter larger than the base clamps at zero


@pytest.mark.parametrize("initial", [0.05, 0.5, 1.0])
def test_first_delay_is_near_initial(initial: float) -> None:
    backoff = Backoff(initial=initial, cap=30.0, rng=random.Random(1))
    assert backoff.next_delay() == pytest.approx(initial, rel=0.2)
