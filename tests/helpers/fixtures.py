"""The real telegrams of tests/fixtures, loaded byte exact in one place."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
#: Every fixture telegram's file name, sorted.
FIXTURE_NAMES = sorted(path.name for path in FIXTURES.glob("*.txt"))
#: Fixtures that carry a CRC, with the CRC they send.
WITH_CRC = {
    "fluvius_v171.txt": 0x3AD7,
    "fluvius_v171_alt.txt": 0xC4B0,
    "iskra_ie.txt": 0xAD3B,
    "sagemcom_t210_d_r.txt": 0x7EF9,
    "unpadded_crc.txt": 0x0B9F,
    "v4_2.txt": 0x6796,
    "v5.txt": 0x6EEE,
    "v5_eon_hu.txt": 0x99DA,
    "v5_invalid_gas_timestamp.txt": 0x90C2,
    "v5_two_mbus.txt": 0x56DD,
}
#: Fixtures without a CRC line (DSMR 2 and 3, and meters that send none).
WITHOUT_CRC = ["esy5q3da1004_v304.txt", "esy5q3db1024_v304.txt", "v2_2.txt", "v3.txt"]


def load(name: str) -> bytes:
    """A fixture telegram, byte exact (CRLF kept)."""
    return (FIXTURES / name).read_bytes()


V5 = load("v5.txt")
V5_TWO_MBUS = load("v5_two_mbus.txt")
V2_2 = load("v2_2.txt")
V4_2 = load("v4_2.txt")
BELGIAN = load("fluvius_v171.txt")
