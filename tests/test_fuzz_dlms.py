"""The fuzz oracles on the binary framers (HAN frames, encrypted P1): a short, seeded slice."""

from __future__ import annotations

import random

import pytest

pytest.importorskip("cryptography")

from fuzz import dlms
from fuzz.harness import Checker, generate, load_seeds


def test_seeds_decode_before_damage() -> None:
    for name, _, _, _, valid in dlms.seeds():
        assert valid, f"{name}: the undamaged seed must give at least one telegram"


def test_two_thousand_damaged_frames_keep_every_promise() -> None:
    checker = Checker()
    rng = random.Random(2024)
    seeds = load_seeds()
    done = 0
    while done < 2000:
        item = generate(rng, seeds)
        if item.ops[:1] == ("dlms",):
            checker.check(item)
            done += 1
    tally = checker.tally
    assert not tally.failures, tally.examples[:3]
    assert tally.results["ok"] > 100  # undamaged frames still decode
    assert tally.results["crc_error"] > 50 and tally.results["decrypt_error"] > 50
