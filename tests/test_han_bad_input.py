"""HAN bad input: every damaged or unreadable frame is refused with its reason.

Nothing from a refused frame becomes a telegram; the stream goes on with the
next good frame.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from p1_exporter.core.axdr import AxdrError, decode
from p1_exporter.core.cipher import Keys, encrypt
from p1_exporter.core.han_framing import hdlc_frame, mbus_frames
from p1_exporter.core.han_stream import HanStream

pytest.importorskip("cryptography")

HAN = Path(__file__).parent / "fixtures" / "han"
GOOD = (HAN / "kaifa_no_list2.hdlc").read_bytes()
APDU = GOOD[9:-3]  # the LLC header and data-notification of the frame
EVN = (HAN / "evn_kaifa_ma309.mbus").read_bytes()
EVN_KEYS = Keys(bytes.fromhex("36C66639E48A8CA4D6BC8B282A793BBB"))
KEYS = Keys(
    bytes.fromhex("000102030405060708090A0B0C0D0E0F"),
    bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF"),
)


def results(data: bytes, keys: Keys | None = None) -> list[str]:
    stream = HanStream(keys)
    outs = stream.feed(data) + stream.flush()
    assert all(o.telegram is None for o in outs if o.error is not None)
    return [o.result for o in outs]


def test_corrupt_fcs_is_a_crc_error_and_the_next_frame_is_read() -> None:
    damaged = bytearray(GOOD)
    damaged[60] ^= 0x04
    assert results(bytes(damaged) + GOOD) == ["crc_error", "ok"]


def test_truncated_hdlc_frame() -> None:
    # Cut short and followed by a good frame: the length runs into the next frame.
    got = results(GOOD[:50] + GOOD)
    assert got[-1] == "ok" and set(got[:-1]) <= {"malformed", "crc_error"} and got[:-1]
    # Cut short at the end of the stream.
    assert results(GOOD[:50]) == ["malformed"]


def test_mbus_bad_checksum() -> None:
    damaged = bytearray(EVN)
    damaged[100] ^= 0x10
    assert results(bytes(damaged), EVN_KEYS)[0] == "crc_error"
    frames = bytearray(mbus_frames(APDU))
    frames[-2] ^= 0x01  # the checksum byte itself
    assert results(bytes(frames)) == ["crc_error"]


def test_mbus_missing_first_segment() -> None:
    second = EVN[EVN.index(b"\x16\x68") + 1 :]
    assert results(second, EVN_KEYS) == ["malformed"]


def test_wrong_key_authenticated_and_encrypted_only() -> None:
    title = b"KFM\x10\x00\x00\x00\x01"
    good = hdlc_frame(b"\xe6\xe7\x00" + encrypt(APDU[3:], KEYS, title, 1, 0x30))
    assert results(good, KEYS) == ["ok"]
    assert results(good, Keys(bytes(16), KEYS.authentication)) == ["decrypt_error"]
    # The official Austrian example (SC 0x20) with a wrong key: unreadable APDU.
    assert results(EVN, Keys(bytes(16))) == ["decrypt_error"]
    assert results(EVN, None) == ["no_key"]


def test_frame_counter_going_back_is_refused() -> None:
    title = b"KFM\x10\x00\x00\x00\x01"
    frames = [
        hdlc_frame(b"\xe6\xe7\x00" + encrypt(APDU[3:], KEYS, title, n, 0x30))
        for n in (10, 11, 11, 3, 12)
    ]
    assert results(b"".join(frames), KEYS) == ["ok", "ok", "replay", "replay", "ok"]


def test_unknown_apdu_tag() -> None:
    for tag in (0xD8, 0xC4, 0x00):  # exception-response, get-response, nothing
        assert results(hdlc_frame(b"\xe6\xe7\x00" + bytes([tag]) + APDU[4:])) == ["unsupported"]


def test_unknown_layouts() -> None:
    header = b"\xe6\xe7\x00\x0f\x40\x00\x00\x00\x00"
    # A list of 5 values without codes: no known position table.
    five = b"\x02\x05" + b"\x06\x00\x00\x00\x01" * 5
    assert results(hdlc_frame(header + five)) == ["unsupported"]
    # Codes with values but no scaler, from an unknown maker.
    pairs = b"\x02\x02\x09\x06\x01\x00\x01\x07\x00\xff\x06\x00\x00\x01\x00"
    assert results(hdlc_frame(header + pairs)) == ["unsupported"]
    # A bare number as the body.
    assert results(hdlc_frame(header + b"\x06\x00\x00\x00\x01")) == ["unsupported"]


def test_malformed_axdr() -> None:
    header = b"\xe6\xe7\x00\x0f\x40\x00\x00\x00\x00"
    for body in (
        b"\x02\x05\x06\x00",
        b"\x01\x84\xff\xff\xff\xff\x00",
        b"\x02\x01\x63",
        b"\x02\x01\x06\x00\x00\x00\x01\x07\x07",
    ):
        assert results(hdlc_frame(header + body)) == ["malformed"]


def test_axdr_bounds() -> None:
    with pytest.raises(AxdrError, match="announced"):
        decode(b"\x01\x84\xff\xff\xff\xff")  # four billion elements announced
    nested = b"\x02\x01" * 20 + b"\x00"
    with pytest.raises(AxdrError, match="nesting"):
        decode(nested)


def test_random_bytes_never_make_a_telegram() -> None:
    rng = random.Random(12)
    for _ in range(300):
        noise = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
        noise = noise.replace(b"\x7e", b"\x7e\xa0", rng.randrange(2))
        stream = HanStream()
        outs = stream.feed(noise) + stream.flush()
        assert all(o.telegram is None for o in outs)


def test_oversized_segmented_apdu_is_bounded() -> None:
    piece = hdlc_frame(b"\x00" * 1500, segmented=True)
    stream = HanStream(max_size=4096)
    end = hdlc_frame(b"\x00" * 10)  # the final segment of the oversized APDU
    outs = [o.result for o in stream.feed(piece * 4 + end + GOOD)]
    assert outs == ["too_large", "ok"]
