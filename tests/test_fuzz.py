"""A short, reproducible slice of the fuzz run (``python -m fuzz.run`` does 1,000,000).

Hypothesis runs derandomized and drives every choice of the mutator, so a failure
shrinks to a small input; a plain seeded pass adds wider-spread inputs. The oracles
are those of :mod:`fuzz.harness`: nothing but P1Error escapes, chunking never
matters, the framer stays bounded, the exposition parses, and no damaged telegram
is accepted by a reader's stream. The last tests pin the two product bugs the
fuzzer found.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from fuzz.harness import Checker, Input, Seed, generate, load_seeds, resign
from p1_exporter.core import TelegramStream, parse
from p1_exporter.metrics.collector import telegram_exposition
from tests.helpers.fixtures import V5, load

SEEDS: list[Seed] = load_seeds()


def broken(checker: Checker) -> str:
    """The first broken promise, for the assertion message."""
    if not checker.tally.examples:
        return ""
    kind, detail, item = checker.tally.examples[0]
    return f"{kind}: {detail}; seeds {item.seeds}, ops {item.ops}, data {item.data[:300]!r}"


@pytest.mark.slow
@settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.randoms(use_true_random=False, note_method_calls=True))
def test_hypothesis_mutations_keep_every_promise(rng: random.Random) -> None:
    checker = Checker()
    checker.check(generate(rng, SEEDS))
    assert not checker.tally.failures, broken(checker)


@pytest.mark.slow
def test_a_seeded_run_keeps_every_promise() -> None:
    checker = Checker()
    rng = random.Random(20240601)
    for _ in range(500):
        checker.check(generate(rng, SEEDS))
    tally = checker.tally
    assert not tally.failures, broken(checker)
    # The run really went everywhere: every refusal kind, telegrams rendered, CRCs tried.
    assert {"ok", "crc_error", "malformed", "too_large"} <= set(tally.results)
    assert tally.expositions > 100 and tally.accepted_unchecked > 100
    assert tally.crc_trials > 50


def test_the_oracles_see_a_damaged_telegram_that_a_reader_would_accept() -> None:
    """The harness itself: a forged end on a fresh, non-sticky stream is reported."""
    forged = V5[: V5.index(b"1-0:1.8.1")] + b"\r\n!\r\n"  # version line cut, CRC gone
    assert parse(forged.replace(b"1-3:0.2.8(50)\r\n", b"")).crc is None
    item = Input(
        forged.replace(b"1-3:0.2.8(50)\r\n", b""),
        ("v5",),
        ("truncate",),
        False,
        next(s.originals for s in SEEDS if s.name == "v5"),
        True,
        (),
        16384,
        primer=V5,
    )
    checker = Checker()
    checker.check(item)
    assert checker.tally.first_unsigned == 1  # a fresh stream cannot know
    assert not checker.tally.failures, broken(checker)  # a reader's stream refuses it


def test_a_reader_stream_refuses_unsigned_telegrams_once_its_meter_signed() -> None:
    unsigned = V5[: V5.index(b"1-3:0.2.8")] + V5[V5.index(b"0-0:1.0.0") : V5.rindex(b"!") + 1]
    unsigned += b"\r\n"
    stream = TelegramStream(sticky_crc=True)
    first, second = stream.feed(V5 + unsigned)
    assert first.result == "ok" and first.telegram is not None
    assert second.result == "crc_error" and "signs its telegrams" in str(second.error)
    # Without sticky_crc (captures of several meters, the decode command) it is accepted.
    assert [o.result for o in TelegramStream().feed(V5 + unsigned)] == ["ok", "ok"]
    # A meter that never signs is not affected.
    v2 = load("v2_2.txt")
    assert [o.result for o in TelegramStream(sticky_crc=True).feed(v2 + v2)] == ["ok", "ok"]


def test_a_huge_valve_position_is_a_malformed_line_not_a_failed_scrape() -> None:
    """Found by the fuzzer: int('9' * 400) is fine, float() of it raised in the collector."""
    huge = b"9" * 400
    damaged = resign(
        V5.replace(b"0-1:24.1.0(003)", b"0-1:24.1.0(%s)\r\n0-1:24.4.0(%s)" % (huge, huge))
    )
    telegram = parse(damaged)
    assert telegram.mbus[1].valve_position is None and telegram.mbus[1].device_type is None
    assert len(telegram.malformed) == 2
    families = {f.name for f in text_string_to_metric_families(telegram_exposition(telegram))}
    assert "p1_meter_info" in families
