"""Fuzz inputs (mutated real telegrams, random bytes) and the oracles every input must pass.

An input is made by :func:`generate` from a :class:`random.Random`: the long run
(``python -m fuzz.run``) hands it Hypothesis-controlled or seeded generators; the
suite hands it Hypothesis' ``st.randoms()``, so a failure shrinks to a small case.

:func:`check` feeds one input to the framer, the parser (with and without the CRC
check) and the collector, and records in a :class:`Tally` every promise broken:

* ``crash``: an exception other than :class:`~p1_exporter.core.errors.P1Error` escaped;
* ``chunking``: feeding the bytes in pieces gave other outcomes than feeding them whole;
* ``memo``: a telegram decoded with a line memo differs from a fresh decode;
* ``buffer``: the framer held more than ``max_size + 1`` bytes;
* ``value``: a number the fuzzer wrote (and re-signed with a CRC) was read differently;
* ``exposition``: the /metrics text for an accepted telegram does not parse, repeats a
  series, does not carry the telegram's header and equipment id as they were, or the
  cached exposition (metrics.exposition) is not byte for byte the collector's;
* ``json``: the telegram API's JSON for an accepted telegram cannot be written strictly;
* ``corrupted``: a reader's stream (CRC checked, one valid telegram of the same meter
  before the input, as on a live connection) accepted a telegram whose content (``/`` to
  ``!``) is none of the CRC-valid originals the input was made from, although the fuzzer
  did not recompute a CRC. Split into ``corrupted_collision`` (the damaged content still
  matches its CRC: a CRC-16 collision, 1 in 65,536 for damage longer than 16 bits) and
  ``corrupted_unsigned`` (accepted without any CRC).

The same check on a fresh stream (the input is the first thing a connection receives) is
counted, not failed, as ``first_unsigned``: with nothing seen before, a damaged telegram
whose version line and CRC are both gone cannot be told from a meter that never signs.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.parser import text_string_to_metric_families

from fuzz import dlms
from p1_exporter.core import Outcome, TelegramStream, decode_frame, parse
from p1_exporter.core.crc import crc16_arc
from p1_exporter.core.errors import P1Error
from p1_exporter.core.framing import DEFAULT_MAX_SIZE
from p1_exporter.core.obis import KINDS, Kind
from p1_exporter.core.parser import LineMemo
from p1_exporter.core.render_json import telegram_to_dict
from p1_exporter.core.telegram import Telegram
from p1_exporter.core.units import UNITS
from p1_exporter.meter.snapshot import Snapshot
from p1_exporter.metrics.collector import make_registry, telegram_exposition
from p1_exporter.metrics.exposition import CachedExposition
from p1_exporter.sim import DIALECTS, FaultInjector, SimulatedMeter

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"

#: Promises that must never break (goal: 0 each).
FAILURE_KINDS = (
    "crash",
    "chunking",
    "memo",
    "buffer",
    "value",
    "exposition",
    "json",
    "corrupted_collision",
    "corrupted_unsigned",
)


@dataclass(frozen=True)
class Seed:
    """A real byte stream and the content (``/`` .. ``!``) of every valid telegram in it."""

    name: str
    data: bytes
    originals: frozenset[bytes]
    signed: bool  # every telegram in it carries a valid CRC
    primer: bytes  # its first valid telegram, as sent


def content_of(frame: bytes) -> bytes:
    """A frame's content: ``/`` up to and including the ``!`` (what the CRC covers)."""
    return frame[: frame.rfind(b"\n!") + 2]


def _seed(name: str, data: bytes) -> Seed:
    stream = TelegramStream()
    telegrams = [o.telegram for o in stream.feed(data) + stream.flush() if o.telegram]
    if not telegrams:
        raise ValueError(f"seed {name} holds no valid telegram")
    return Seed(
        name,
        data,
        frozenset(content_of(t.raw) for t in telegrams),
        all(t.crc_verified for t in telegrams),
        telegrams[0].raw,
    )


def load_seeds() -> list[Seed]:
    """The fixtures, every simulator dialect, and a simulated stream with line faults."""
    seeds = [_seed(path.stem, path.read_bytes()) for path in sorted(FIXTURES.glob("*.txt"))]
    start = 1_700_000_000.0  # November 2023, winter time
    for dialect in DIALECTS:
        meter = SimulatedMeter(dialect, seed=11, start=start)
        for offset in (1.0, 200_000.0):
            seeds.append(_seed(f"sim-{dialect}-{offset:g}", meter.telegram_at(start + offset)))
    # A faulty line: CRC errors, noise bursts, torn telegrams (the simulator's own faults).
    faults = FaultInjector(5, crc_error_rate=0.3, garbage_rate=0.3, torn_rate=0.2)
    meter = SimulatedMeter("dsmr5", seed=12, start=start, faults=faults)
    clean = SimulatedMeter("dsmr5", seed=12, start=start)
    stream = b"".join(c.data for t in range(6) for c in meter.chunks_at(start + t))
    originals = frozenset(content_of(clean.telegram_at(start + t)) for t in range(6))
    primer = clean.telegram_at(start + 6)
    seeds.append(
        Seed("sim-dsmr5-faulty-line", stream, originals | {content_of(primer)}, True, primer)
    )
    return seeds


# -- mutators ---------------------------------------------------------------------------

TOKENS = (
    b"/",
    b"!",
    b"\r\n",
    b"\n",
    b"\r",
    b"(",
    b")",
    b")(",
    b"*",
    b"*kWh",
    b"*kwh",
    b"*m3",
    b"\x00",
    b"\xff",
    b"\x80",
    b"\xff" * 40,
    b"\r\n!",
    b"\r\n!\r\n",
    b"\r\n!0000\r\n",
    b"\r\n/",
    b"1-0:1.8.1(",
    b"0-0:96.1.1(",
    b"1-3:0.2.8(50)\r\n",
    b"0-1:24.2.1(",
    b"0-1:24.3.0(",
    b"0-0:1.0.0(",
    b"1-0:99.97.0(",
    b"0-0:98.1.0(",
    b"1-0:1.6.0(",
    b"9" * 30,
    b"-",
    b".",
    b":",
    b"255",
    b"*255",
    b"\\",
    b'"',
    b"#",
    b"{",
    b"}",
    b"=",
)
VALUES = (
    "",
    "(",
    ")",
    ")(",
    "0",
    "-1",
    "-0.5*kWh",
    "1" * 19,
    "1" * 40,
    "9" * 400,
    "1" * 5000,
    "1.5*kWh",
    "1.5*kwh",
    "1.5*XYZ",
    "1.5*",
    "1e9",
    "nan",
    "inf",
    "1.5**kWh",
    ".5",
    "5.",
    "999999999999999999.9*MWh",
    "230101000000S",
    "991231235960W",
    "000000000000",
    "700101010000W",
    "632525252525S",
    "2",
    "3",
    "7",
    "4E6F6E",
    "\x02",
    "\xff\xfe",
    '\\"\n',
    "2)(0-0:96.7.19)(230101000000W)(0000000240*s)(230102000000W)(0000000060*s",
    "1)(0-0:96.7.19)(230101000000W)",
    "0)()",
    "230101000000W)(00012.345*m3",
    "230101000000W)(00012.345",
    "3)(1-0:1.6.0)(1-0:1.6.0)(230201000000W)(230115180000W)(03.123*kW",
    "(",
    "1" + ".0" * 20,
    "0x1F",
    "\u00b2",
    "12:34",
)


def _pos(rng: random.Random, data: bytes, end: bool = False) -> int:
    return rng.randrange(len(data) + (1 if end else 0)) if data or end else 0


def _bitflips(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return data
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        out[_pos(rng, data)] ^= 1 << rng.randrange(8)
    return bytes(out)


def _burst(rng: random.Random, data: bytes) -> bytes:
    """Overwrite up to 2 bytes: damage of at most 16 bits, which CRC-16 always detects."""
    if not data:
        return data
    at = _pos(rng, data)
    return data[:at] + rng.randbytes(min(2, len(data) - at)) + data[at + 2 :]


def _insert(rng: random.Random, data: bytes) -> bytes:
    at = _pos(rng, data, end=True)
    piece = rng.choice(TOKENS) if rng.random() < 0.7 else rng.randbytes(rng.randrange(1, 9))
    return data[:at] + piece + data[at:]


def _delete(rng: random.Random, data: bytes) -> bytes:
    at = _pos(rng, data)
    return data[:at] + data[at + rng.choice((1, 1, 2, 4, 16, 100)) :]


def _duplicate(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return data
    a = _pos(rng, data)
    b = min(len(data), a + rng.randrange(1, 200))
    at = _pos(rng, data, end=True)
    return data[:at] + data[a:b] + data[at:]


def _truncate(rng: random.Random, data: bytes) -> bytes:
    at = _pos(rng, data, end=True)
    return data[:at] if rng.random() < 0.7 else data[at:]


def _lines(rng: random.Random, data: bytes) -> bytes:
    lines = data.split(b"\n")
    if len(lines) < 3:
        return data
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    action = rng.randrange(5)
    if action == 0:
        lines[i], lines[j] = lines[j], lines[i]
    elif action == 1:
        lines.insert(j, lines[i])
    elif action == 2:
        del lines[i]
    elif action == 3:
        middle = lines[1:-1]
        rng.shuffle(middle)
        lines[1:-1] = middle
    else:
        code = rng.choice(sorted(KINDS))
        value = rng.choice(VALUES)
        lines.insert(j, f"{code}({value})\r".encode("latin-1"))
    return b"\n".join(lines)


_GROUP = re.compile(rb"\(([^()\r\n]*)\)")


def _value(rng: random.Random, data: bytes) -> bytes:
    """Replace what one pair of parentheses holds."""
    groups = list(_GROUP.finditer(data))
    if not groups:
        return data
    match = rng.choice(groups)
    new = (
        rng.choice(VALUES).encode("latin-1")
        if rng.random() < 0.8
        else rng.randbytes(rng.randrange(0, 12)).replace(b"(", b"").replace(b")", b"")
    )
    return data[: match.start(1)] + new + data[match.end(1) :]


def _line_endings(rng: random.Random, data: bytes) -> bytes:
    if rng.random() < 0.5:
        return data.replace(b"\r\n", b"\n")
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\r\n")


def _filler(rng: random.Random, data: bytes) -> bytes:
    piece = rng.choice((b"\xff", b"\x00", b" ", b"\r\n")) * rng.randrange(1, 300)
    return piece + data if rng.random() < 0.5 else data + piece


def _crc_case(rng: random.Random, data: bytes) -> bytes:
    bang = data.rfind(b"\n!")
    if bang < 0:
        return data
    return data[: bang + 2] + data[bang + 2 :].lower()


Mutator = Callable[[random.Random, bytes], bytes]
#: name -> (mutator, content-changing damage of more than 16 bits possible)
MUTATORS: dict[str, tuple[Mutator, bool]] = {
    "bitflip": (_bitflips, True),  # up to 8 flips: more than CRC-16 always catches
    "burst": (_burst, False),
    "insert": (_insert, True),
    "delete": (_delete, True),
    "duplicate": (_duplicate, True),
    "truncate": (_truncate, True),
    "lines": (_lines, True),
    "value": (_value, True),
    "line_endings": (_line_endings, True),
    "filler": (_filler, False),
    "crc_case": (_crc_case, False),
}
_NAMES = tuple(MUTATORS)

_NUMBER_LINE = re.compile(
    rb"^(\d{1,3}-\d{1,3}:\d{1,3}\.\d{1,3}\.\d{1,3})\((\d+(?:\.\d+)?)(?:\*([A-Za-z0-9]+))?\)\r?$",
    re.MULTILINE,
)


def _renumber(rng: random.Random, data: bytes) -> tuple[bytes, tuple[str, str] | None]:
    """Write a new number into one register line; return the data and (code, value text)."""
    lines = [
        m
        for m in _NUMBER_LINE.finditer(data)
        if KINDS.get(m[1].decode()) is Kind.NUMBER and data.count(m[1] + b"(") == 1
    ]
    if not lines:
        return data, None
    match = rng.choice(lines)
    old = match[2].decode()
    shape = rng.randrange(4)
    if shape == 0:  # same layout, other digits
        new = "".join(rng.choice("0123456789") if c != "." else c for c in old)
    elif shape == 1:
        whole = "".join(rng.choice("0123456789") for _ in range(rng.randrange(1, 19)))
        fraction = "".join(rng.choice("0123456789") for _ in range(rng.randrange(0, 8)))
        new = f"{whole}.{fraction}" if fraction else whole
    elif shape == 2:
        new = "9" * rng.randrange(1, 40)
    else:
        new = f"{rng.randrange(10**6)}.{rng.randrange(10**3):03d}"
    unit = match[3].decode() if match[3] else None
    body = new if unit is None else f"{new}*{unit}"
    out = data[: match.start(2)] + new.encode() + data[match.end(2) :]
    return out, (match[1].decode(), body)


def resign(data: bytes) -> bytes:
    """Recompute the CRC of every telegram in ``data`` that carries one (or ends at ``!``)."""
    out = bytearray()
    pos = 0
    for match in re.finditer(rb"\n!([0-9A-Fa-f]{0,4})", data):
        start = data.rfind(b"/", pos, match.start())
        if start < 0:
            continue
        end = match.start() + 2
        out += data[pos:end] + b"%04X" % crc16_arc(data[start:end])
        pos = match.end()
    return bytes(out + data[pos:])


@dataclass(frozen=True)
class Input:
    """One fuzz input and how it was made."""

    data: bytes
    seeds: tuple[str, ...]
    ops: tuple[str, ...]
    resigned: bool  # the fuzzer recomputed CRCs: changed content may be accepted
    originals: frozenset[bytes]  # valid contents of the seeds used
    signed: bool  # every seed used carries CRCs
    cuts: tuple[int, ...]
    max_size: int
    expect: tuple[str, str] | None = None  # (OBIS code, value text) the fuzzer wrote
    bursts_only: bool = False  # content damage was at most 16 bits in one place
    primer: bytes = b""  # a valid telegram of the same meter, sent before the input


def generate(rng: random.Random, seeds: list[Seed]) -> Input:
    """One input: random bytes (1 in 8), else mutated seeds, with chunk cut points."""
    roll = rng.random()
    cuts = _cuts(rng)
    if roll >= 0.9:  # the binary framers: HAN frames and encrypted P1 (fuzz/dlms.py)
        name, data, protocol, _, valid, damaged = dlms.generate(rng)
        return Input(
            data,
            (name,),
            ("dlms", protocol, "damaged" if damaged else "intact"),
            False,
            valid,
            True,
            cuts,
            DEFAULT_MAX_SIZE,
        )
    max_size = DEFAULT_MAX_SIZE if rng.random() < 0.85 else rng.choice((64, 300, 1024, 4096))
    if roll < 0.08:
        data = rng.randbytes(rng.randrange(0, 1500))
        return Input(data, (), ("random",), False, frozenset(), False, cuts, max_size)
    if roll < 0.125:  # random content between a start and an end, sometimes signed
        body = b"/" + rng.randbytes(rng.randrange(0, 400)) + b"\r\n!"
        data = resign(body + b"0000\r\n") if rng.random() < 0.5 else body + b"\r\n"
        return Input(data, (), ("random_frame",), True, frozenset(), False, cuts, max_size)
    picked = [rng.choice(seeds) for _ in range(1 if rng.random() < 0.8 else rng.randrange(2, 4))]
    ops: list[str] = []
    expect = None
    parts = []
    for seed in picked:
        data = seed.data
        if len(picked) == 1 and rng.random() < 0.12:
            data, expect = _renumber(rng, data)
            ops.append("number")
        else:
            for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
                name = rng.choice(_NAMES)
                data = MUTATORS[name][0](rng, data)
                ops.append(name)
        parts.append(data)
        if rng.random() < 0.2:
            parts.append(rng.randbytes(rng.randrange(1, 40)).replace(b"/", b""))
    data = b"".join(parts)
    resigned = expect is not None or rng.random() < 0.3
    if resigned:
        data = resign(data)
    long_damage = any(MUTATORS[op][1] for op in ops if op in MUTATORS)
    return Input(
        data,
        tuple(s.name for s in picked),
        tuple(ops),
        resigned,
        frozenset().union(*(s.originals for s in picked)),
        all(s.signed for s in picked),
        cuts,
        max_size,
        expect,
        bursts_only=not long_damage and ops.count("burst") <= 1,
        primer=picked[0].primer,
    )


def _cuts(rng: random.Random) -> tuple[int, ...]:
    """Where to cut the input into chunks: a few places, or (rarely) every byte."""
    if rng.random() < 0.03:
        return (-1,)  # marker: one byte at a time
    return tuple(sorted(rng.randrange(1 << 16) for _ in range(rng.randrange(0, 8))))


# -- oracles ----------------------------------------------------------------------------


@dataclass
class Tally:
    """Counts over many inputs, and the first few failing inputs of each kind."""

    inputs: int = 0
    bytes: int = 0
    results: Counter[str] = field(default_factory=Counter)
    accepted_unchecked: int = 0  # accepted with check_crc=False
    expositions: int = 0
    crc_trials: int = 0  # damaged signed frames whose CRC was compared (collision chances)
    first_unsigned: int = 0  # see the module docstring
    failures: Counter[str] = field(default_factory=Counter)
    examples: list[tuple[str, str, Input]] = field(default_factory=list)
    keep: int = 20

    def fail(self, kind: str, detail: str, item: Input) -> None:
        """Record a broken promise (and keep the input, up to ``keep`` of them)."""
        self.failures[kind] += 1
        if len(self.examples) < self.keep:
            self.examples.append((kind, detail, item))

    def merge(self, other: Tally) -> None:
        """Add another tally's counts (from another worker)."""
        self.inputs += other.inputs
        self.bytes += other.bytes
        self.results.update(other.results)
        self.accepted_unchecked += other.accepted_unchecked
        self.expositions += other.expositions
        self.crc_trials += other.crc_trials
        self.first_unsigned += other.first_unsigned
        self.failures.update(other.failures)
        self.examples.extend(other.examples[: max(0, self.keep - len(self.examples))])


class Checker:
    """Runs every oracle on inputs; keeps a long-lived line memo and an exposition cache."""

    def __init__(self, tally: Tally | None = None) -> None:
        self.tally = tally or Tally()
        self.memo = LineMemo()  # shared by all inputs, as a reader's stream lives for days
        self._exposed: set[bytes] = set()

    def check(self, item: Input) -> None:
        """Feed one input everywhere and record what breaks."""
        tally = self.tally
        tally.inputs += 1
        tally.bytes += len(item.data)
        if item.ops[:1] == ("dlms",):
            self._check_dlms(item)
            return
        whole = self._guard("stream", item, lambda: _feed(item, check_crc=True, cuts=()))
        pieces = self._guard(
            "stream", item, lambda: _feed(item, check_crc=True, cuts=item.cuts, checker=self)
        )
        unchecked = self._guard("stream", item, lambda: _feed(item, check_crc=False, cuts=()))
        live = self._guard(
            "stream", item, lambda: _feed(item, check_crc=True, cuts=(), primed=True)
        )
        self._guard("parse", item, lambda: _expect_p1(lambda: parse(item.data)))
        self._guard(
            "decode", item, lambda: _expect_p1(lambda: decode_frame(item.data, check_crc=False))
        )
        if whole is None or pieces is None or unchecked is None or live is None:
            return
        if _comparable(whole) != _comparable(pieces):
            self.tally.fail("chunking", "outcomes differ when fed in pieces", item)
        for outcome in whole:
            tally.results[outcome.result] += 1
            if outcome.telegram is not None:
                self._accepted(item, outcome.telegram, checked=True)
                if self._corrupted(item, outcome.telegram) == "corrupted_unsigned":
                    tally.first_unsigned += 1
        trials = item.signed and not item.resigned and not item.bursts_only
        for outcome in live:
            if outcome.telegram is not None:
                kind = self._corrupted(item, outcome.telegram)
                if kind:
                    tally.fail(kind, f"accepted changed content (crc {outcome.telegram.crc})", item)
                if kind == "corrupted_collision" and trials:
                    tally.crc_trials += 1
            elif trials and "mismatch" in str(outcome.error):
                tally.crc_trials += 1
        for outcome in unchecked:
            if outcome.telegram is not None:
                tally.accepted_unchecked += 1
                self._accepted(item, outcome.telegram, checked=False)

    def _check_dlms(self, item: Input) -> None:
        """The oracles for a HAN or encrypted-P1 input (see fuzz/dlms.py)."""
        protocol = item.ops[1]
        keys = dlms.HAN_KEYS.get(item.seeds[0]) if protocol == "han" else dlms.FUZZ_KEY
        pending: list[int] = []
        whole = self._guard("dlms", item, lambda: dlms.feed(protocol, item.data, keys, ()))
        pieces = self._guard(
            "dlms", item, lambda: dlms.feed(protocol, item.data, keys, item.cuts, pending)
        )
        if whole is None or pieces is None:
            return
        if _comparable(whole) != _comparable(pieces):
            self.tally.fail("chunking", "DLMS outcomes differ when fed in pieces", item)
        bound = dlms.HAN_MAX + 2048 if protocol == "han" else DEFAULT_MAX_SIZE + 1
        if pending and max(pending) > bound:
            self.tally.fail("buffer", f"DLMS framer holds {max(pending)} > {bound}", item)
        damaged = item.ops[2] == "damaged"
        weak = item.seeds[0] in dlms.WEAK_CHECK  # 8-bit M-Bus checksum, no GCM tag
        if damaged and not weak and item.seeds[0] != "random":
            self.tally.crc_trials += 1  # a 16-bit FCS or CRC stood between damage and export
        for outcome in whole:
            self.tally.results[outcome.result] += 1
            telegram = outcome.telegram
            if telegram is None:
                continue
            if item.originals and dlms.signature(telegram) not in item.originals:
                if weak:  # expected 1 in 256 damaged frames: counted, see fuzz/dlms.py
                    self.tally.results["dlms_mbus_checksum_collision"] += 1
                else:
                    self.tally.fail("corrupted_collision", "a damaged frame was accepted", item)
            check = functools.partial(_exposition_problem, telegram)
            problem = self._guard("exposition", item, check)
            if problem:
                self.tally.fail("exposition", str(problem), item)
            try:
                json.dumps(telegram_to_dict(telegram), allow_nan=False)
            except ValueError as exc:
                self.tally.fail("json", str(exc), item)

    def _guard(self, where: str, item: Input, run: Callable[[], T]) -> T | None:
        try:
            return run()
        except Exception as exc:
            self.tally.fail("crash", f"{where}: {type(exc).__name__}: {exc}"[:300], item)
            return None

    def buffer_overrun(self, item: Input, pending: int) -> None:
        """Called by the chunked feed after each piece."""
        if pending > item.max_size + 1:
            self.tally.fail("buffer", f"framer holds {pending} > {item.max_size} + 1", item)

    def _accepted(self, item: Input, telegram: Telegram, *, checked: bool) -> None:
        tally = self.tally
        fresh = self._guard(
            "decode_frame",
            item,
            lambda: _expect_p1(lambda: decode_frame(telegram.raw, check_crc=checked)),
        )
        if not isinstance(fresh, Telegram) or fresh != telegram:
            tally.fail("memo", "a fresh decode of an accepted frame differs", item)
        shared = self._guard(
            "decode_frame",
            item,
            lambda: _expect_p1(
                lambda: decode_frame(telegram.raw, check_crc=checked, memo=self.memo)
            ),
        )
        if shared is not None and shared != telegram:
            tally.fail("memo", "a decode with a long-lived memo differs", item)
        if checked and item.expect is not None:
            self._check_value(item, telegram)
        key = hashlib.blake2b(telegram.raw, digest_size=16).digest()
        if key in self._exposed:
            return
        if len(self._exposed) > 50_000:
            self._exposed.clear()
        self._exposed.add(key)
        tally.expositions += 1
        problem = self._guard("exposition", item, lambda: _exposition_problem(telegram))
        if problem:
            tally.fail("exposition", str(problem), item)
        try:
            json.dumps(telegram_to_dict(telegram), allow_nan=False)
        except ValueError as exc:
            tally.fail("json", str(exc), item)

    @staticmethod
    def _corrupted(item: Input, telegram: Telegram) -> str | None:
        """The corruption kind of an accepted telegram, if it is one (see the docstring)."""
        if not item.signed or item.resigned or content_of(telegram.raw) in item.originals:
            return None
        return "corrupted_collision" if telegram.crc_verified else "corrupted_unsigned"

    def _check_value(self, item: Input, telegram: Telegram) -> None:
        assert item.expect is not None
        code, body = item.expect
        register = telegram.registers.get(code)
        if register is None:
            self.tally.fail("value", f"{code}({body}) was not read", item)
            return
        number, _, unit = body.partition("*")
        whole, _, fraction = number.partition(".")
        exact = Fraction(int(whole + fraction), 10 ** len(fraction))
        if unit:
            numerator, denominator, base = UNITS[unit]
            exact = exact * numerator / denominator
        else:
            base = ""
        if register.raw != body or register.unit != base or register.value != float(exact):
            self.tally.fail("value", f"{code}({body}) read as {register}", item)


def _expect_p1(run: Callable[[], T]) -> T | None:
    """Run; a P1Error is a refusal (fine), anything else propagates as a crash."""
    try:
        return run()
    except P1Error:
        return None


def _feed(
    item: Input,
    *,
    check_crc: bool,
    cuts: tuple[int, ...],
    checker: Checker | None = None,
    primed: bool = False,
) -> list[Outcome]:
    """Feed the input (cut at ``cuts``); ``primed``: as a reader does, after a good telegram."""
    stream = TelegramStream(check_crc=check_crc, max_size=item.max_size, sticky_crc=primed)
    if primed and item.primer:
        stream.feed(item.primer)
        if not stream.signed:  # too large for this max_size, or a meter that never signs
            return []
    data = item.data
    if cuts == (-1,):
        points = list(range(1, len(data)))
    else:
        points = sorted({cut % (len(data) + 1) for cut in cuts})
    outcomes: list[Outcome] = []
    start = 0
    for point in [*points, len(data)]:
        outcomes += stream.feed(data[start:point])
        start = point
        if checker is not None:
            checker.buffer_overrun(item, stream.framer.pending)
    outcomes += stream.flush()
    return outcomes


def _comparable(outcomes: list[Outcome]) -> list[tuple[object, ...]]:
    return [(o.result, o.raw, o.telegram, type(o.error), str(o.error)) for o in outcomes]


def _exposition_problem(telegram: Telegram) -> str | None:
    """Render /metrics for the telegram, parse it back, and say what is wrong (or None)."""
    text = telegram_exposition(telegram)
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    info = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            if key in seen:
                return f"series repeated: {key}"
            seen.add(key)
            if math.isnan(sample.value):
                return f"NaN value: {key}"
            if sample.name == "p1_meter_info":
                info = sample.labels
    if info is None:
        return "no p1_meter_info"
    if info.get("header") != telegram.header:
        return f"header label {info.get('header')!r} != {telegram.header!r}"
    if info.get("equipment_id") != (telegram.equipment_id or ""):
        return f"equipment_id label {info.get('equipment_id')!r} != {telegram.equipment_id!r}"
    snap = Snapshot(
        "fuzz",
        "fuzz",
        float("inf"),
        telegram=telegram,
        received_at=0.0,
        received_monotonic=time.monotonic(),
    )
    cached = CachedExposition(lambda: [snap], self_metrics=False)
    registry = make_registry(lambda: [snap], self_metrics=False)
    if cached.text() != generate_latest(registry):
        return "the cached exposition differs from the collector's (text)"
    if cached.openmetrics() != openmetrics_latest(registry):  # type: ignore[no-untyped-call]
        return "the cached exposition differs from the collector's (OpenMetrics)"
    return None
