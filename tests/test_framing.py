"""Framing: any chunking, line endings, resynchronisation, size cap, flush, garbage count."""

from __future__ import annotations

import random

import pytest

from p1_exporter import (
    FramingError,
    Outcome,
    TelegramStream,
    TelegramTooLarge,
    TornTelegram,
    iter_telegrams,
    parse,
)
from p1_exporter.core.framing import DEFAULT_MAX_SIZE, Framer
from tests.helpers.fixtures import FIXTURE_NAMES, load
from tests.helpers.telegrams import content, seal

V5 = load("v5.txt")
V4 = load("v4_2.txt")


def summary(outcomes: list[Outcome]) -> list[tuple[str, object, bytes]]:
    """What a stream produced, comparable across runs (errors by type and message)."""
    return [
        (
            outcome.result,
            outcome.telegram
            if outcome.error is None
            else (type(outcome.error), str(outcome.error)),
            outcome.raw,
        )
        for outcome in outcomes
    ]


def run(data: bytes, chunk: int | None = None, **options: int) -> tuple[list[Outcome], int]:
    """Feed ``data`` in chunks of ``chunk`` bytes (all at once if None), then flush."""
    stream = TelegramStream(**options)  # type: ignore[arg-type]
    outcomes: list[Outcome] = []
    if chunk is None:
        outcomes += stream.feed(data)
    else:
        for start in range(0, len(data), chunk):
            outcomes += stream.feed(data[start : start + chunk])
    outcomes += stream.flush()
    return outcomes, stream.framer.garbage_bytes


def capture() -> bytes:
    """Every fixture in a row, with noise before, between and after."""
    parts = [b"\x00\xffnoise!\r\n"]
    for index, name in enumerate(FIXTURE_NAMES):
        parts.append(load(name))
        parts.append(bytes([index]) * index)
    return b"".join(parts)


# --- chunking ----------------------------------------------------------------


def test_every_chunk_size_of_one_telegram() -> None:
    whole, garbage = run(V5)
    assert [outcome.result for outcome in whole] == ["ok"]
    assert garbage == 0
    for size in range(1, len(V5) + 2):
        outcomes, garbage = run(V5, size)
        assert summary(outcomes) == summary(whole), size
        assert garbage == 0


@pytest.mark.slow
def test_chunk_sizes_over_a_capture_of_all_fixtures() -> None:
    data = capture()
    whole, whole_garbage = run(data)
    assert [outcome.result for outcome in whole] == ["ok"] * len(FIXTURE_NAMES)
    telegrams = [outcome.telegram for outcome in whole]
    assert telegrams == [parse(load(name)) for name in FIXTURE_NAMES]
    sizes = [*range(1, 130), 251, 509, 1021, 1024, 2039, 4096, 8191, len(data) - 1, len(data)]
    for size in sizes:
        outcomes, garbage = run(data, size)
        assert summary(outcomes) == summary(whole), size
        assert garbage == whole_garbage, size


def test_random_split_points() -> None:
    data = capture()
    whole, whole_garbage = run(data)
    rng = random.Random(1234)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 200)))
        stream = TelegramStream()
        outcomes: list[Outcome] = []
        for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
            outcomes += stream.feed(data[start:end])
        outcomes += stream.flush()
        assert summary(outcomes) == summary(whole)
        assert stream.framer.garbage_bytes == whole_garbage


# --- line endings ------------------------------------------------------------


def test_crlf_and_bare_lf_decode_alike() -> None:
    for name in FIXTURE_NAMES:
        crlf = load(name)
        lf_body = content(crlf).replace(b"\r\n", b"\n")
        lf = seal(lf_body, b"\n") if parse(crlf).crc is not None else lf_body + b"\n"
        assert b"\r" not in lf
        a, b = parse(crlf), parse(lf)
        assert b.crc_verified == a.crc_verified
        for field in (
            "header",
            "dsmr_version",
            "meter_time",
            "equipment_id",
            "registers",
            "texts",
            "mbus",
            "power_failure_log",
            "month_peak",
            "month_peak_time",
            "peak_history",
            "extra",
            "unknown",
            "malformed",
        ):
            assert getattr(a, field) == getattr(b, field), (name, field)


def test_crc_is_over_the_bytes_as_sent() -> None:
    # Converting CRLF to LF without recomputing the CRC must be caught.
    lf = V5.replace(b"\r\n", b"\n")
    with pytest.raises(Exception, match="CRC mismatch"):
        parse(lf)


def test_bare_lf_stream_in_small_chunks() -> None:
    lf = seal(content(V5).replace(b"\r\n", b"\n"), b"\n")
    data = lf * 3
    whole, _ = run(data)
    assert [outcome.result for outcome in whole] == ["ok"] * 3
    for size in (1, 2, 3, 7, 64):
        assert summary(run(data, size)[0]) == summary(whole)


# --- resynchronisation -------------------------------------------------------


def test_garbage_before_a_telegram_is_skipped_and_counted() -> None:
    noise = b"\x00\x01garbage \xff\xfe!\r\n!!\n"
    outcomes, garbage = run(noise + V5)
    assert summary(outcomes) == summary(run(V5)[0])
    assert garbage == len(noise)


def test_torn_telegram_is_reported_and_the_next_accepted() -> None:
    for cut in (1, 10, 300, 700, len(V5) - 10, len(V5) - 7):
        data = V5[:cut] + V4
        outcomes, garbage = run(data)
        assert [outcome.result for outcome in outcomes] == ["malformed", "ok"], cut
        assert isinstance(outcomes[0].error, TornTelegram)
        assert not isinstance(outcomes[0].error, TelegramTooLarge)
        assert "torn telegram" in str(outcomes[0].error)
        assert outcomes[1].telegram == parse(V4)
        assert garbage == 0
        for size in (1, 5, 97):
            assert summary(run(data, size)[0]) == summary(outcomes)


def test_torn_inside_the_crc_line() -> None:
    # The CRC line of the first telegram is cut by the next start: the first is refused.
    data = V5[:-5] + V4
    outcomes, _ = run(data)
    assert [outcome.result for outcome in outcomes] == ["crc_error", "ok"]
    assert outcomes[1].telegram == parse(V4)


def test_slash_in_garbage_starts_a_torn_candidate() -> None:
    data = b"abc/def" + V5
    outcomes, garbage = run(data)
    assert [outcome.result for outcome in outcomes] == ["malformed", "ok"]
    assert garbage == 3


def test_garbage_between_and_after_telegrams() -> None:
    between = b"\r\n\x00\x00 junk \xff"
    after = b"trailing bytes\r\n"
    outcomes, garbage = run(V5 + between + V4 + after)
    assert [outcome.result for outcome in outcomes] == ["ok", "ok"]
    assert garbage == len(between) + len(after)


def test_easymeter_trailer_counts_as_garbage() -> None:
    for name in ("esy5q3da1004_v304.txt", "esy5q3db1024_v304.txt"):
        data = load(name)
        outcomes, garbage = run(data)
        assert [outcome.result for outcome in outcomes] == ["ok"]
        frame = outcomes[0].raw
        assert frame.endswith(b"\r\n!\r\n")
        assert garbage == len(data) - len(frame)


def test_every_byte_value_is_harmless() -> None:
    every = bytes(range(256))
    for data in (every, every * 4, every[::-1] * 4, V5 + every + V5, every + V5 + every):
        for size in (1, 3, 256, len(data)):
            run(data, size)
    # Each byte value spliced into a telegram: never an exception, at most one acceptance.
    for value in range(256):
        for position in (0, 1, 100, len(V5) - 8, len(V5) - 3):
            data = V5[:position] + bytes([value]) + V5[position:]
            outcomes, _ = run(data)
            assert sum(outcome.result == "ok" for outcome in outcomes) <= 1


def test_telegram_ending_at_flush_without_newline() -> None:
    outcomes, _ = run(V5[:-2])  # "!6EEE" with no CRLF: complete once the stream ends
    assert [outcome.result for outcome in outcomes] == ["ok"]
    assert outcomes[0].telegram is not None
    assert outcomes[0].telegram.crc_verified


@pytest.mark.parametrize(
    ("crc_line", "results"),
    [
        (b"6EEE" + b"x" * 40, ["crc_error", "ok"]),
        (b"6EEE" + b" " * 11, ["ok", "ok"]),  # newline is the 16th byte after "!"
        (b"6EEE" + b" " * 12, ["ok", "ok"]),  # cut after 16 bytes; the newline is garbage
        (b"6EEE" + b" " * 30, ["ok", "ok"]),
        (b"6EEE" + b" " * 11 + b"/", ["ok", "malformed", "ok"]),
        (b"6EEE" + b" " * 12 + b"/", ["ok", "malformed", "ok"]),
    ],
)
def test_long_crc_line_is_cut_whatever_the_chunking(crc_line: bytes, results: list[str]) -> None:
    """The CRC line is read up to 16 bytes, whether the bytes come at once or one by one."""
    data = content(V5) + crc_line + b"\r\n" + V4
    whole, garbage = run(data)
    assert [outcome.result for outcome in whole] == results
    assert len(whole[0].raw) <= len(content(V5)) + 16
    for size in (1, 2, 3, 5, 8, 17):
        outcomes, chunked_garbage = run(data, size)
        assert summary(outcomes) == summary(whole), size
        assert chunked_garbage == garbage


# --- flush -------------------------------------------------------------------


def test_flush_reports_a_torn_partial_telegram() -> None:
    stream = TelegramStream()
    assert stream.feed(V5[:300]) == []
    assert stream.framer.pending == 300
    outcomes = stream.flush()
    assert len(outcomes) == 1
    assert outcomes[0].result == "malformed"
    assert isinstance(outcomes[0].error, TornTelegram)
    assert "stream ended inside a telegram (300 bytes)" in str(outcomes[0].error)
    assert stream.framer.pending == 0
    assert stream.flush() == []
    # The stream is usable afterwards.
    assert [outcome.result for outcome in stream.feed(V5)] == ["ok"]


def test_flush_of_an_idle_stream_is_empty() -> None:
    stream = TelegramStream()
    assert stream.flush() == []
    stream.feed(b"noise without a start")
    assert stream.flush() == []
    assert stream.framer.garbage_bytes == len(b"noise without a start")


# --- size cap ----------------------------------------------------------------


def test_telegram_over_the_cap_is_too_large() -> None:
    stream = TelegramStream(max_size=512)
    outcomes = stream.feed(V5)
    assert [outcome.result for outcome in outcomes] == ["too_large"]
    assert isinstance(outcomes[0].error, TelegramTooLarge)
    assert stream.framer.pending <= 513
    small = seal(b"/TST5\\2SMALL\r\n\r\n1-0:1.8.1(000001.000*kWh)\r\n!")
    outcomes = stream.feed(small) + stream.flush()
    assert [outcome.result for outcome in outcomes] == ["ok"]


def test_default_cap_refuses_a_huge_telegram() -> None:
    text = "0-0:96.13.0(" + "41" * DEFAULT_MAX_SIZE + ")"
    huge = seal(f"/TST5\\2HUGE\r\n\r\n{text}\r\n!".encode())
    outcomes, _ = run(huge + V5)
    assert [outcome.result for outcome in outcomes] == ["too_large", "ok"]


def test_telegram_just_under_the_cap_is_accepted() -> None:
    frame = V5
    stream = TelegramStream(max_size=len(frame) - 1)  # the frame may use max_size + 1 bytes
    assert [outcome.result for outcome in stream.feed(frame)] == ["ok"]
    stream = TelegramStream(max_size=len(frame) - 2)
    outcomes = stream.feed(frame) + stream.flush()
    assert [outcome.result for outcome in outcomes] == ["too_large"]


MEGABYTE = 1 << 20


def patterns() -> list[bytes]:
    """A megabyte each of input without any "!": a telegram start that never ends."""
    noise = random.Random(99).randbytes(MEGABYTE).replace(b"!", b"?")
    return [
        b"/" + b"A" * (MEGABYTE - 1),
        b"/" + b"0-0:96.13.0(41)\r\n" * (MEGABYTE // 17),
        b"/" + noise.replace(b"/", b"."),  # never restarts
        noise,  # restarts on every "/"
    ]


@pytest.mark.parametrize("max_size", [DEFAULT_MAX_SIZE, 1000])
def test_pending_never_exceeds_the_cap(max_size: int) -> None:
    for data in patterns():
        for size in (1, 7, 100, 4096, 16383, 16384, 16385, 65536, 99991, MEGABYTE):
            # Small chunks over the first 64 KiB; larger ones over the whole megabyte.
            end = 1 << 16 if size < 1000 else len(data)
            framer = Framer(max_size)
            for start in range(0, end, size):
                events = framer.feed(data[start : start + size])
                assert framer.pending <= max_size + 1
                assert all(isinstance(event, FramingError) for event in events)
            assert framer.pending <= max_size + 1


def test_overflow_reports_too_large() -> None:
    framer = Framer(1000)
    events = []
    for _ in range(30):
        events += framer.feed(b"A" * 333)
    assert events == []  # no telegram started: all garbage
    events += framer.feed(b"/")
    for _ in range(30):
        events += framer.feed(b"A" * 333)
    assert len(events) == 1 and isinstance(events[0], TelegramTooLarge)
    # The dropped 1001 bytes were a (too large) telegram; what follows is garbage.
    assert framer.pending == 0
    assert framer.garbage_bytes == 2 * 30 * 333 + 1 - 1001
    assert framer.pending <= 1001


def test_pending_bounded_while_waiting_for_the_crc_line() -> None:
    # A telegram whose "!" lands exactly at the cap, then its CRC line byte by byte.
    for max_size in (100, 101, 102, 200):
        for bang_at in range(max_size - 20, max_size + 2):
            data = b"/" + b"A" * (bang_at - 2) + b"\n!" + b"6EEE\r\n"
            for size in (1, 2, 3, len(data)):
                framer = Framer(max_size)
                events = []
                for start in range(0, len(data), size):
                    events += framer.feed(data[start : start + size])
                    assert framer.pending <= max_size + 1, (max_size, bang_at, size)
                events += framer.flush()
                assert len(events) == 1


def test_frames_never_exceed_the_cap() -> None:
    rng = random.Random(5)
    for _ in range(200):
        max_size = rng.randint(20, 200)
        data = bytes(rng.choice(b"/\n!AB\r0") for _ in range(rng.randint(0, 2000)))
        framer = Framer(max_size)
        events = []
        for start in range(0, len(data), 13):
            events += framer.feed(data[start : start + 13])
            assert framer.pending <= max_size + 1
        events += framer.flush()
        for event in events:
            if isinstance(event, bytes):
                assert len(event) <= max_size + 1
                assert event.startswith(b"/")


# --- parse() and iter_telegrams() -------------------------------------------


def test_parse_needs_exactly_one_telegram() -> None:
    with pytest.raises(FramingError, match="no telegram found"):
        parse(b"")
    with pytest.raises(FramingError, match="no telegram found"):
        parse(b"just noise\r\n!1234\r\n")
    with pytest.raises(FramingError, match="2 telegrams found"):
        parse(V5 + V5)
    with pytest.raises(FramingError, match="stream ended inside a telegram"):
        parse(V5[:-20])
    with pytest.raises(TypeError):
        parse(V5.decode("latin-1"))  # type: ignore[arg-type]


def test_parse_accepts_bytes_like_and_surrounding_noise() -> None:
    expected = parse(V5)
    assert parse(bytearray(V5)) == expected
    assert parse(memoryview(V5)) == expected
    assert parse(b"\xff\x00 noise" + V5 + b"more noise") == expected


def test_iter_telegrams_keeps_order() -> None:
    data = V5 + b"junk" + V4 + V5[:100]
    outcomes = list(iter_telegrams(data))
    assert [outcome.result for outcome in outcomes] == ["ok", "ok", "malformed"]
    assert outcomes[0].telegram == parse(V5)
    assert outcomes[1].telegram == parse(V4)


# -- line noise full of "/" ---------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 7, 100, 4096, None])
def test_a_run_of_lone_starts_is_one_event_per_max_size(chunk: int | None) -> None:
    data = b"/" * MEGABYTE
    outcomes, garbage = run(data, chunk)
    assert all(isinstance(outcome.error, TornTelegram) for outcome in outcomes)
    # One event per DEFAULT_MAX_SIZE bytes of the run (it was one per byte), and the
    # events account for every byte: the last "/" is torn at flush.
    assert len(outcomes) == MEGABYTE // DEFAULT_MAX_SIZE + 1
    sizes = [outcome.error.size for outcome in outcomes if isinstance(outcome.error, FramingError)]
    assert sizes == [DEFAULT_MAX_SIZE] * (MEGABYTE // DEFAULT_MAX_SIZE - 1) + [
        DEFAULT_MAX_SIZE - 1,
        1,
    ]
    assert "line noise: 16384 telegram starts ('/') in 16384 bytes" in str(outcomes[0].error)
    assert garbage == 0


@pytest.mark.parametrize("piece", [b"/\n", b"/!", b"/abc\r\n", b"/" + b"x" * 62])
def test_short_torn_candidates_of_any_kind_join_the_run(piece: bytes) -> None:
    data = piece * 2000 + V5
    for chunk in (1, 13, None):
        outcomes, _ = run(data, chunk)
        results = [outcome.result for outcome in outcomes]
        assert results[-1] == "ok" and outcomes[-1].raw == V5
        assert results[:-1] == ["malformed"] * len(results[:-1])
        noise = [
            outcome.error.size
            for outcome in outcomes[:-1]
            if isinstance(outcome.error, FramingError)
        ]
        assert sum(noise) == len(piece) * 2000
        assert len(noise) <= len(piece) * 2000 // DEFAULT_MAX_SIZE + 1


def test_a_long_torn_telegram_is_still_its_own_event() -> None:
    torn = V5[:200]
    outcomes, _ = run(b"/" * 10 + torn + b"/x" * 5 + V4)
    assert [outcome.result for outcome in outcomes] == ["malformed"] * 3 + ["ok"]
    errors = [outcome.error for outcome in outcomes[:3]]
    assert [error.size for error in errors if isinstance(error, FramingError)] == [10, 200, 10]
    assert "torn telegram: a new one started after 200 bytes" in str(errors[1])


def test_release_noise_reports_the_run_held_so_far() -> None:
    stream = TelegramStream()
    assert stream.feed(b"/" * 100) == []
    assert stream.framer.noise_pending == 99  # the last "/" may still begin a telegram
    (released,) = stream.release_noise()
    assert isinstance(released.error, TornTelegram) and released.error.size == 99
    assert stream.framer.noise_pending == 0 and stream.release_noise() == []
    assert [outcome.result for outcome in stream.feed(V5[1:])] == ["ok"]  # the held "/"
