"""Encrypted P1 (DLMS suite 0 around a DSMR telegram): decrypt, then the plain path.

Frames are built from real plain telegrams with keys of the test's own (no
public encrypted P1 frame with its key exists); the GCM construction is checked
against cryptography's high-level AESGCM and against the official Austrian
example, whose published key and plaintext pin the encrypted-only variant.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("cryptography")

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from p1_exporter.core.cipher import (
    LUXEMBOURG_AUTH_KEY,
    FrameCounter,
    Keys,
    decrypt,
    encrypt,
    parse_ciphered,
    parse_key,
)
from p1_exporter.core.han_framing import HanFramer, Reassembler
from p1_exporter.core.secure_stream import EncryptedTelegramStream
from p1_exporter.core.stream import parse

FIXTURES = Path(__file__).parent / "fixtures"
PLAIN = (FIXTURES / "sagemcom_t210_d_r.txt").read_bytes()
KEY = bytes.fromhex("0123456789ABCDEF0123456789ABCDEF")
KEYS = Keys(KEY, LUXEMBOURG_AUTH_KEY)
TITLE = b"SAGgp\x00\x01\x02"


def frame(counter: int, sc: int = 0x30, plain: bytes = PLAIN, keys: Keys = KEYS) -> bytes:
    return encrypt(plain, keys, TITLE, counter, sc)


def results(data: bytes, keys: Keys | None = KEYS) -> list[str]:
    stream = EncryptedTelegramStream(keys)
    return [o.result for o in stream.feed(data) + stream.flush()]


def test_tag_and_ciphertext_match_aesgcm() -> None:
    whole = frame(7)
    parsed = parse_ciphered(whole)
    assert parsed is not None and parsed.length == len(whole)
    reference = AESGCM(KEY).encrypt(
        TITLE + (7).to_bytes(4, "big"), PLAIN, bytes([0x30]) + LUXEMBOURG_AUTH_KEY
    )
    assert parsed.data == reference[: len(PLAIN)] + reference[len(PLAIN) : len(PLAIN) + 12]


def test_decrypted_telegram_equals_the_plain_one() -> None:
    stream = EncryptedTelegramStream(KEYS)
    outcomes = stream.feed(frame(1) + frame(2))
    assert [o.result for o in outcomes] == ["ok", "ok"]
    plain = parse(PLAIN)
    telegram = outcomes[0].telegram
    assert telegram is not None and telegram.crc_verified
    assert dict(telegram.registers) == dict(plain.registers)
    assert telegram.equipment_id == plain.equipment_id


@pytest.mark.parametrize("chunk", [1, 13, 500])
def test_frames_split_anywhere(chunk: int) -> None:
    data = b"\x00\xff" + frame(1) + b"noise" + frame(2) + frame(3)
    stream = EncryptedTelegramStream(KEYS)
    got = []
    for start in range(0, len(data), chunk):
        got += [o.result for o in stream.feed(data[start : start + chunk])]
    assert got == ["ok", "ok", "ok"]


def test_encrypted_only_frames_use_the_telegram_crc() -> None:
    assert results(frame(1, sc=0x20) + frame(2, sc=0x21)) == ["ok", "ok"]
    # A wrong key gives garbage that no CRC accepts: a decrypt error, not a telegram.
    wrong = Keys(bytes(16), LUXEMBOURG_AUTH_KEY)
    assert results(frame(3, sc=0x20), wrong) == ["decrypt_error"]
    # Without a CRC in the telegram nothing proves the key: refused.
    no_crc = PLAIN[: PLAIN.index(b"!") + 1] + b"\r\n"
    assert results(frame(4, sc=0x20, plain=no_crc)) == ["decrypt_error"]


def test_wrong_keys_are_decrypt_errors() -> None:
    assert results(frame(1), Keys(bytes(16), LUXEMBOURG_AUTH_KEY)) == ["decrypt_error"]
    assert results(frame(1), Keys(KEY, bytes(16))) == ["decrypt_error"]
    assert results(frame(1), Keys(KEY, None)) == ["decrypt_error"]


def test_a_flipped_byte_fails_authentication() -> None:
    damaged = bytearray(frame(1))
    damaged[100] ^= 0x01
    assert results(bytes(damaged)) == ["decrypt_error"]


def test_frame_counter_must_increase() -> None:
    assert results(frame(5) + frame(5) + frame(4) + frame(6)) == ["ok", "replay", "replay", "ok"]


def test_counter_survives_a_new_stream() -> None:
    counter = FrameCounter()
    first = EncryptedTelegramStream(KEYS, counter=counter)
    assert [o.result for o in first.feed(frame(9))] == ["ok"]
    second = EncryptedTelegramStream(KEYS, counter=counter)
    assert [o.result for o in second.feed(frame(9))] == ["replay"]


def test_a_damaged_unauthenticated_frame_does_not_move_the_counter() -> None:
    damaged = bytearray(frame(1000, sc=0x20))
    damaged[15] ^= 0xFF  # the counter's high byte: frame "from the future"
    data = bytes(damaged) + frame(2, sc=0x20)
    assert results(data) == ["decrypt_error", "ok"]


def test_no_key_is_its_own_reason() -> None:
    assert results(frame(1), None) == ["no_key"]


def test_truncated_frame_is_malformed_at_end_of_stream() -> None:
    assert results(frame(1)[:-30]) == ["malformed"]


def test_keys_are_exactly_32_hex_digits() -> None:
    assert parse_key("00112233445566778899aabbccddeeff") == LUXEMBOURG_AUTH_KEY
    for bad in (
        "",
        "0011",
        "00112233445566778899AABBCCDDEEFF00",
        "0x112233445566778899AABBCCDDEEFF",
        "00112233445566778899AABBCCDDEEFG",
    ):
        with pytest.raises(ValueError, match="32 hexadecimal"):
            parse_key(bad)


def test_official_austrian_example_decrypts_to_its_published_plaintext() -> None:
    data = (FIXTURES / "han" / "evn_kaifa_ma309.mbus").read_bytes()
    framer, joiner = HanFramer(), Reassembler()
    apdus = [
        done for ev in framer.feed(data) if not isinstance(ev, Exception) for done in joiner.add(ev)
    ]
    assert len(apdus) == 1 and isinstance(apdus[0], tuple)
    ciphered = parse_ciphered(apdus[0][0])
    assert ciphered is not None and ciphered.security_control == 0x20
    plain = decrypt(ciphered, Keys(bytes.fromhex("36C66639E48A8CA4D6BC8B282A793BBB")))
    # The document's decrypted APDU starts so:
    assert plain.hex().upper().startswith("0F8006870E0C07E5091B01092F0F00")
