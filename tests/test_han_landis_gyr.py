"""Landis+Gyr HAN pushes: general-block-transfer and the push-object-list layout, real frames.

The fixtures are byte-exact captures (sources in tests/fixtures/han/README.md).
Each expected value is read off the frame's hex by hand; the hex is quoted next to
it (06: double-long-unsigned, 12: long-unsigned, 15: long64-unsigned, 10: long).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from p1_exporter.core.cipher import Keys, UnsupportedFrame
from p1_exporter.core.cosem import parse_notification, strip_llc, telegram_from_apdu
from p1_exporter.core.errors import FramingError, TelegramTooLarge
from p1_exporter.core.gbt import BlockAssembler, GbtError, parse_block
from p1_exporter.core.han_framing import HanFramer, LinkFrame, hdlc_frame
from p1_exporter.core.han_stream import HanStream
from p1_exporter.core.stream import Outcome
from p1_exporter.core.telegram import Telegram

pytest.importorskip("cryptography")

HAN = Path(__file__).parent / "fixtures" / "han"
E450 = (HAN / "landis_gyr_e450.hdlc").read_bytes()
E450_2026 = (HAN / "landis_gyr_e450_ch_2026.hdlc").read_bytes()
E450_REPEATED = (HAN / "landis_gyr_e450_block_repeated.hdlc").read_bytes()
E450_BADEN = (HAN / "landis_gyr_e450_baden.hdlc").read_bytes()
E450_ROMANDE = (HAN / "landis_gyr_e450_romande_2_of_3.hdlc").read_bytes()
E360 = (HAN / "landis_gyr_e360_ch_2026.hdlc").read_bytes()
E570 = (HAN / "landis_gyr_e570_encrypted.hdlc").read_bytes()
E570_LOAD = (HAN / "landis_gyr_e570_ch_2026_load.hdlc").read_bytes()
#: The key the E570 capture was published with.
E570_KEY = Keys(bytes.fromhex("101112131415161718191A1B1C1D1E1F"))
WH = 3600
VOLTAGES_AND_CURRENTS = {f"1-0:{c}.7.0" for c in (31, 32, 51, 52, 71, 72)}


def frames(data: bytes) -> list[LinkFrame]:
    found = HanFramer().feed(data)
    assert all(isinstance(f, LinkFrame) for f in found)
    return [f for f in found if isinstance(f, LinkFrame)]


def run(
    data: bytes, keys: Keys | None = None, times: Iterator[float] | None = None
) -> list[Outcome]:
    clock = times or iter(float(n) for n in range(1000))
    stream = HanStream(keys, clock=lambda: next(clock))
    return stream.feed(data) + stream.flush()


def good(outcomes: list[Outcome]) -> Telegram:
    telegrams = [o.telegram for o in outcomes if o.telegram is not None]
    assert len(telegrams) == 1, [str(o.error) for o in outcomes]
    return telegrams[0]


def values(telegram: Telegram) -> dict[str, tuple[float, str]]:
    return {code: (reg.value, reg.unit) for code, reg in telegram.registers.items()}


def test_the_blocks_of_a_transfer_are_numbered_and_their_data_joined() -> None:
    blocks = [strip_llc(f.payload) for f in frames(E450_BADEN)]
    # E0, control (bit 7: last), block number, block number acknowledged, length, data
    assert [b[:7].hex(" ") for b in blocks] == [
        "e0 40 00 01 00 00 70",
        "e0 40 00 02 00 00 6c",
        "e0 c0 00 03 00 00 79",
    ]
    parsed = [parse_block(b) for b in blocks]
    assert [(last, number, len(data)) for last, number, data in parsed] == [
        (False, 1, 0x70),
        (False, 2, 0x6C),
        (True, 3, 0x79),
    ]
    assembler = BlockAssembler(8192)
    pairs = zip(frames(E450_BADEN), blocks, strict=True)
    done = [d for f, b in pairs for d in assembler.add(b, f.raw, 0.0)]
    assert len(done) == 1 and isinstance(done[0], tuple)
    apdu, raw = done[0]
    assert apdu == b"".join(data for _, _, data in parsed) and raw == E450_BADEN
    notification = parse_notification(apdu)  # a plain data-notification, 14 elements
    assert isinstance(notification.body, tuple) and len(notification.body) == 14
    assert notification.body[2] == b"63326413"  # 0-0:96.1.0, "09 08 36 33 33 32 ..."


def test_e450_four_blocks_decode_and_a_cut_transfer_before_them_is_refused() -> None:
    # The capture begins with blocks 1 and 2 of a push whose blocks 3 and 4 were not
    # captured; block 1 of the next push restarts: one refusal, then one telegram.
    outcomes = run(E450)
    assert [o.result for o in outcomes] == ["malformed", "ok"]
    assert "restarted before block 3" in str(outcomes[0].error)
    telegram = good(outcomes)
    assert telegram.header == "DLMS/COSEM HDLC, push object list (Landis+Gyr)"
    assert telegram.texts["0-0:42.0.0"] == "LGZ1030655933512"  # block 3, "09 10 4C 47 5A ..."
    assert telegram.equipment_id == "1935912"  # 0-0:96.1.1, "09 07 31 39 33 35 39 31 32"
    assert telegram.meter_time is None  # deviation 0x8000: the zone is not known
    # Block 4, after the clock: each 06 xx xx xx xx (or 12 xx xx) in capture-object order.
    assert values(telegram) == {
        "1-0:1.7.0": (0x1C, "W"),
        "1-0:2.7.0": (0, "W"),
        "1-0:3.7.0": (0, "var"),
        "1-0:4.7.0": (0x0A, "var"),
        "1-0:1.8.0": (0x0D88C1 * WH, "J"),  # 1-1:1.8.0, Wh -> J
        "1-0:2.8.0": (0, "J"),
        "1-0:5.8.0": (0x12, "varh"),
        "1-0:6.8.0": (0x01, "varh"),
        "1-0:7.8.0": (0, "varh"),
        "1-0:8.8.0": (0x04720D, "varh"),
        "1-0:13.7.0": (0x03AD / 1000, ""),  # "12 03 AD": 941 -> 0.941
    }
    # That power factor agrees with the powers sent with it: 28 / sqrt(28^2 + 10^2) = 0.942.


NOT_EXPORTED = " sent without scaler and unit: not exported"


def withheld(telegram: Telegram) -> dict[str, str]:
    """The values a telegram keeps as sent (``extra``), by code, without the reason."""
    kept = {}
    for line in telegram.extra:
        assert line.raw.endswith(NOT_EXPORTED), line
        kept[line.obis] = line.raw.removesuffix(NOT_EXPORTED)
    return kept


def test_e450_2026_list_withholds_voltage_and_current() -> None:
    telegram = good(run(E450_2026))
    assert values(telegram) == {
        "1-0:1.8.0": (0x075E7B * WH, "J"),  # block 4: "06 00 07 5E 7B"
        "1-0:2.8.0": (0, "J"),
        "1-0:3.8.0": (0x25, "varh"),  # "06 00 00 00 25"
        "1-0:4.8.0": (0x054279, "varh"),  # "06 00 05 42 79"
        "1-0:1.7.0": (0x1C, "W"),  # "06 00 00 00 1C"
        "1-0:2.7.0": (0, "W"),
    }
    # Sent as "12 00 EC" (236, volts here), "12 00 09" (9, 10 mA here): kept as sent,
    # not exported, since the same list from an E360 or E570 means other units.
    assert telegram.unknown == ()  # the codes are known: withheld, not unknown
    kept = withheld(telegram)
    assert set(kept) == VOLTAGES_AND_CURRENTS
    assert kept["1-0:32.7.0"] == "(236)" and kept["1-0:31.7.0"] == "(9)"
    assert telegram.equipment_id == "1909113"


def test_e360_plain_push_and_its_voltage_in_tenths() -> None:
    telegram = good(run(E360))
    assert telegram.header == "DLMS/COSEM HDLC, push object list (Landis+Gyr)"
    assert values(telegram) == {
        "1-0:1.8.0": (0x55C4 * WH, "J"),  # "06 00 00 55 C4"
        "1-0:2.8.0": (0x11C3 * WH, "J"),  # "06 00 00 11 C3"
        "1-0:3.8.0": (0x6A78, "varh"),  # "06 00 00 6A 78"
        "1-0:4.8.0": (0x1150, "varh"),  # "06 00 00 11 50"
        "1-0:1.7.0": (0x0B, "W"),  # "06 00 00 00 0B"
        "1-0:2.7.0": (0, "W"),
    }
    kept = withheld(telegram)
    assert kept["1-0:32.7.0"] == "(2357)"  # "12 09 35": 235.7 V from this model
    assert telegram.equipment_id == "LGZ1030163598905"  # the logical device name alone
    # Notification time 2023-06-06 17:31:20, deviation 0xFF88 (-120 min): 15:31:20 UTC.
    assert telegram.meter_time == 1686065480.0


def test_e570_encrypted_in_five_blocks() -> None:
    outcomes = run(E570, E570_KEY)
    telegram = good(outcomes)
    assert [o.result for o in outcomes] == ["ok"]
    assert telegram.header == "DLMS/COSEM HDLC, encrypted, push object list (Landis+Gyr)"
    assert telegram.raw == E570  # all five frames
    got = values(telegram)
    # Decrypted values are long64 (14) and long64-unsigned (15), e.g. "15 00 00 00 00 00 0D 27 67".
    assert got["1-0:1.8.0"] == (0x0D2767 * WH, "J")
    assert got["1-0:2.8.0"] == (0x09C951 * WH, "J")
    assert got["1-0:5.8.0"] == (0x09150B, "varh")
    assert got["1-0:8.8.0"] == (0x01339F, "varh")
    assert got["1-0:13.7.0"] == (1.0, "")  # "10 03 E8": 1000 -> 1.000
    assert run(E570)[-1].result == "no_key"


def test_e570_current_is_in_amperes_so_no_landis_gyr_current_is_exported() -> None:
    telegram = good(run(E570_LOAD))
    got = values(telegram)
    assert got["1-0:1.7.0"] == (0x03F33A, "W")  # "14 00 00 00 00 00 03 F3 3A": 258874 W
    assert got["1-0:1.8.0"] == (0x27C917 * WH, "J")  # "15 00 00 00 00 00 27 C9 17"
    kept = withheld(telegram)
    # 400, 200, 601 at 229-230 V carry 258874 W only as amperes (275 kVA; as 10 mA it
    # would be 2.8 kVA): 1 A steps on the E570, where the E450 counts 10 mA.
    assert (kept["1-0:31.7.0"], kept["1-0:51.7.0"], kept["1-0:71.7.0"]) == (
        "(400)",
        "(200)",
        "(601)",
    )
    assert not VOLTAGES_AND_CURRENTS & set(got)


def test_a_list_without_maker_is_refused_after_reassembly() -> None:
    outcomes = run(E450_BADEN)  # no logical device name: nothing says Landis+Gyr
    assert [o.result for o in outcomes] == ["unsupported"]
    assert "unknown meter maker" in str(outcomes[0].error)
    apdu = b"".join(parse_block(strip_llc(f.payload))[2] for f in frames(E450_BADEN))
    with pytest.raises(UnsupportedFrame, match="unknown meter maker"):
        telegram_from_apdu(apdu, E450_BADEN, "HDLC")


def test_a_transfer_missing_its_last_block_is_refused_at_the_end() -> None:
    outcomes = run(E450_ROMANDE)  # blocks 1 and 2 of 3 were captured
    assert [o.result for o in outcomes] == ["malformed"]
    assert "ended after block 2" in str(outcomes[0].error)


def test_a_repeated_block_ends_its_transfer_with_one_refusal() -> None:
    # Blocks 1, 2, 2, 4, 3 (a capture published with block 2 repeated).
    outcomes = run(E450_REPEATED)
    assert [o.result for o in outcomes] == ["malformed", "malformed"]
    assert "block 2 came where block 3 was due" in str(outcomes[0].error)
    assert "block 3 without block 1" in str(outcomes[1].error)  # the stray block after
    assert all(o.telegram is None for o in outcomes)


def test_a_late_block_times_the_transfer_out() -> None:
    pieces = [f.raw for f in frames(E450_2026)]
    late = iter([0.0, 1.0, 12.0, 13.0])  # block 3 comes 11 s after block 2
    outcomes = run(b"".join(pieces), times=late)
    assert [o.result for o in outcomes] == ["malformed"]
    assert "timed out" in str(outcomes[0].error)
    in_time = iter([0.0, 9.0, 18.0, 27.0])  # 9 s between blocks: within 10 s
    assert [o.result for o in run(b"".join(pieces), times=in_time)] == ["ok"]


def test_bounds_on_blocks_and_size() -> None:
    pieces = frames(E450_2026)
    blocks = [strip_llc(f.payload) for f in pieces]
    few = BlockAssembler(8192, max_blocks=3)
    results = [d for b in blocks * 2 for d in few.add(b, b"", 0.0)]
    assert [type(r).__name__ for r in results] == ["TelegramTooLarge", "TelegramTooLarge"]
    small = BlockAssembler(200)  # blocks 1 and 2 carry 112 + 108 bytes
    results = [d for b in blocks for d in small.add(b, b"", 0.0)]
    assert len(results) == 1 and isinstance(results[0], TelegramTooLarge)
    assert small.add(blocks[0], b"", 0.0) == [] and small.pending  # the next transfer starts


def test_malformed_blocks() -> None:
    block = strip_llc(frames(E450_2026)[1].payload)
    for bad in (block[:6], block[:-1], block[:2] + b"\x00\x00" + block[4:]):
        with pytest.raises(GbtError):
            parse_block(bad)
    assert issubclass(GbtError, FramingError)
    outcomes = run(hdlc_frame(b"\xe6\xe7\x00" + block[:-1]) + E450_2026)
    assert [o.result for o in outcomes] == ["malformed", "ok"]


@pytest.mark.parametrize("chunk", [1, 5, 130])
def test_any_chunking_gives_the_same_telegram(chunk: int) -> None:
    stream = HanStream()
    outcomes: list[Outcome] = []
    for start in range(0, len(E450_2026), chunk):
        outcomes += stream.feed(E450_2026[start : start + chunk])
    outcomes += stream.flush()
    assert [o.result for o in outcomes] == ["ok"]
    assert values(good(outcomes)) == values(good(run(E450_2026)))
