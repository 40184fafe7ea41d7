"""Fuzz inputs and oracles for the binary framers: HAN (HDLC, M-Bus) and encrypted P1.

Seeds are the real frames of ``tests/fixtures/han`` (two of them encrypted, with
their published keys) and encrypted P1 frames built from real telegrams with a
key of the harness' own. Mutations: bit flips, byte bursts, insertions,
deletions, truncation, duplication, noise between frames. The oracles are those
of :mod:`fuzz.harness` where they apply:

* ``crash``: anything but a P1Error escaped a stream;
* ``chunking``: feeding in pieces gave other outcomes than feeding whole;
* ``buffer``: a framer held more than its bound;
* ``exposition``/``json``: an accepted telegram does not render strictly;
* ``corrupted_collision``: a damaged frame was accepted with values none of the
  originals carry. Behind a 16-bit check (HDLC FCS, the DSMR CRC inside an
  encrypted-only P1 frame) that is a collision, expected once in 65,536 damaged
  frames and counted into the run's CRC trials; behind a GCM tag it never happens.
  The Austrian M-Bus seeds (encrypted-only, no tag) are guarded by the 8-bit M-Bus
  checksum of each frame and the APDU's structure alone: a damaged frame that
  passes both is the wire format's limit, counted as the outcome
  ``dlms_mbus_checksum_collision`` and not as a failure.
"""

from __future__ import annotations

import random
from functools import cache
from pathlib import Path

from p1_exporter.core.cipher import LUXEMBOURG_AUTH_KEY, FrameCounter, Keys, encrypt
from p1_exporter.core.han_stream import HanStream
from p1_exporter.core.secure_stream import EncryptedTelegramStream
from p1_exporter.core.stream import Outcome
from p1_exporter.core.telegram import Telegram

ROOT = Path(__file__).resolve().parent.parent
HAN = ROOT / "tests" / "fixtures" / "han"
FUZZ_KEY = Keys(bytes.fromhex("A0A1A2A3A4A5A6A7A8A9AAABACADAEAF"), LUXEMBOURG_AUTH_KEY)
#: Published example keys of the encrypted HAN fixtures (see tests/fixtures/han/README.md).
HAN_KEYS = {
    "evn_kaifa_ma309.mbus": Keys(bytes.fromhex("36C66639E48A8CA4D6BC8B282A793BBB")),
    "evn_sagemcom_t210.mbus": Keys(bytes.fromhex("A89AE6C225E45130298B3CC3F4D23463")),
    "landis_gyr_e570_encrypted.hdlc": Keys(bytes.fromhex("101112131415161718191A1B1C1D1E1F")),
}
#: Fixtures refused by design (a maker the layout does not name, a block transfer cut short
#: or with a repeated block): tests/test_han_landis_gyr.py covers them; a seed must decode
#: before it is damaged.
REFUSED = frozenset(
    {
        "landis_gyr_e450_baden.hdlc",
        "landis_gyr_e450_block_repeated.hdlc",
        "landis_gyr_e450_romande_2_of_3.hdlc",
    }
)
#: Seeds whose only integrity check is the 8-bit M-Bus checksum (SC 0x20, no tag).
WEAK_CHECK = frozenset({"evn_kaifa_ma309.mbus", "evn_sagemcom_t210.mbus"})
#: Bound on what a HAN stream holds: a reassembled APDU plus one HDLC frame.
HAN_MAX = 8 * 1024


def signature(telegram: Telegram) -> bytes:
    """What identifies a telegram's content, independent of its raw frame."""
    parts = [f"{code}={reg.value!r}{reg.unit}" for code, reg in sorted(telegram.registers.items())]
    parts += [f"{code}={text}" for code, text in sorted(telegram.texts.items())]
    parts.append(f"id={telegram.equipment_id} t={telegram.meter_time}")
    return "|".join(parts).encode()


@cache
def seeds() -> tuple[tuple[str, bytes, str, Keys | None, frozenset[bytes]], ...]:
    """(name, bytes, protocol, keys, signatures of its valid telegrams) per seed."""
    out = []
    for path in sorted(HAN.glob("*.hdlc")) + sorted(HAN.glob("*.mbus")):
        if path.name in REFUSED:
            continue
        keys = HAN_KEYS.get(path.name)
        data = path.read_bytes()
        out.append((path.name, data, "han", keys, _signatures("han", data, keys)))
    for name in ("v5.txt", "sagemcom_t210_d_r.txt"):
        plain = (ROOT / "tests" / "fixtures" / name).read_bytes()
        for sc in (0x30, 0x20):
            data = encrypt(plain, FUZZ_KEY, b"FUZZ\x00\x00\x00\x01", 7, sc)
            out.append(
                (
                    f"{name}@{sc:02X}",
                    data,
                    "encrypted",
                    FUZZ_KEY,
                    _signatures("encrypted", data, FUZZ_KEY),
                )
            )
    return tuple(out)


def _signatures(protocol: str, data: bytes, keys: Keys | None) -> frozenset[bytes]:
    return frozenset(
        signature(o.telegram) for o in feed(protocol, data, keys, ()) if o.telegram is not None
    )


def _stream(protocol: str, keys: Keys | None) -> HanStream | EncryptedTelegramStream:
    if protocol == "han":
        return HanStream(keys, max_size=HAN_MAX, counter=FrameCounter())
    return EncryptedTelegramStream(keys, counter=FrameCounter())


def feed(
    protocol: str,
    data: bytes,
    keys: Keys | None,
    cuts: tuple[int, ...],
    pending: list[int] | None = None,
) -> list[Outcome]:
    """Outcomes of ``data`` fed at ``cuts`` (``(-1,)``: byte by byte)."""
    stream = _stream(protocol, keys)
    points = (
        list(range(1, len(data)))
        if cuts == (-1,)
        else sorted({cut % (len(data) + 1) for cut in cuts})
    )
    outcomes: list[Outcome] = []
    start = 0
    for point in [*points, len(data)]:
        outcomes += stream.feed(data[start:point])
        start = point
        if pending is not None:
            pending.append(stream.framer.pending)
    return outcomes + stream.flush()


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One random damage to ``data``."""
    if not data:
        return data
    choice = rng.randrange(7)
    pos = rng.randrange(len(data))
    if choice == 0:
        flipped = bytearray(data)
        flipped[pos] ^= 1 << rng.randrange(8)
        return bytes(flipped)
    if choice == 1:
        return data[:pos] + rng.randbytes(rng.randrange(1, 6)) + data[pos + 3 :]
    if choice == 2:
        return data[:pos] + rng.randbytes(rng.randrange(1, 20)) + data[pos:]
    if choice == 3:
        return data[:pos] + data[pos + rng.randrange(1, 30) :]
    if choice == 4:
        return data[:pos]
    if choice == 5:
        return data + data[pos:]
    return rng.randbytes(rng.randrange(0, 20)) + data + rng.randbytes(rng.randrange(0, 20))


def generate(rng: random.Random) -> tuple[str, bytes, str, Keys | None, frozenset[bytes], bool]:
    """(seed name, data, protocol, keys, valid signatures, damaged) for one input."""
    name, data, protocol, keys, valid = rng.choice(seeds())
    damaged = rng.random() < 0.9
    if rng.random() < 0.05:
        return "random", rng.randbytes(rng.randrange(0, 1200)), protocol, keys, frozenset(), True
    if damaged:
        for _ in range(rng.choice((1, 1, 2, 3))):
            data = mutate(rng, data)
    return name, data, protocol, keys, valid, damaged
