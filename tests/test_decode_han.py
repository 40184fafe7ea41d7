"""``p1-exporter decode`` on HAN frames and encrypted telegrams (binary or hex dumps)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from p1_exporter.commands.cli import main

pytest.importorskip("cryptography")

from p1_exporter.core.cipher import LUXEMBOURG_AUTH_KEY, Keys, encrypt

FIXTURES = Path(__file__).parent / "fixtures"
HAN = FIXTURES / "han"
EVN_KEY = "36C66639E48A8CA4D6BC8B282A793BBB"
KEY = "00FF00FF00FF00FF00FF00FF00FF00FF"


def decode(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["decode", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_binary_hdlc_frame(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = decode(capsys, str(HAN / "kamstrup_list1.hdlc"))
    assert code == 0, err
    assert "DLMS/COSEM HDLC" in out and "Kamstrup" in out
    assert "1-0:1.7.0 active power imported" in out and "826 W" in out


def test_hex_dump_with_spaces_and_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = (HAN / "aidon_se.hdlc").read_bytes().hex(" ").upper()
    dump = tmp_path / "aidon.txt"
    dump.write_text("\n".join(raw[i : i + 48] for i in range(0, len(raw), 48)) + "\n")
    code, out, _ = decode(capsys, str(dump), "--json")
    assert code == 0
    assert json.loads(out)["registers"]["1-0:1.7.0"]["value"] == 0x462


def test_encrypted_mbus_with_key_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_file = tmp_path / "k"
    key_file.write_text(f"key: {EVN_KEY}\n")
    code, out, _ = decode(capsys, str(HAN / "evn_kaifa_ma309.mbus"), "--key-file", str(key_file))
    assert code == 0
    assert "M-Bus, encrypted" in out and "46573200 J" in out


def test_encrypted_without_or_with_wrong_key(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = decode(capsys, str(HAN / "evn_kaifa_ma309.mbus"))
    assert code == 1 and "refused (no_key)" in err and "customer portal" in err
    code, _, err = decode(capsys, str(HAN / "evn_kaifa_ma309.mbus"), "--key", KEY)
    assert code == 1 and "refused (decrypt_error)" in err
    code, _, err = decode(capsys, str(HAN / "evn_kaifa_ma309.mbus"), "--key", "123")
    assert code == 2 and "32 hexadecimal" in err


def test_encrypted_p1_telegram_uses_the_luxembourg_auth_key_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = (FIXTURES / "v5.txt").read_bytes()
    frames = tmp_path / "lux.bin"
    keys = Keys(bytes.fromhex(KEY), LUXEMBOURG_AUTH_KEY)
    frames.write_bytes(
        encrypt(plain, keys, b"SAGgp\x00\x00\x01", 1)
        + encrypt(plain, keys, b"SAGgp\x00\x00\x01", 2)
    )
    code, out, err = decode(capsys, str(frames), "--key", KEY.lower(), "--metrics")
    assert code == 0, err
    assert out.count("p1_") > 10
    code, _, err = decode(capsys, str(frames), "--key", KEY, "--auth-key", "11" * 16)
    assert code == 1 and err.count("decrypt_error") == 2


def test_landis_gyr_block_transfer_encrypted(capsys: pytest.CaptureFixture[str]) -> None:
    # Five GBT blocks carrying one ciphered APDU, with the key published beside them.
    key = "101112131415161718191A1B1C1D1E1F"
    path = str(HAN / "landis_gyr_e570_encrypted.hdlc")
    code, out, err = decode(capsys, path, "--key", key)
    assert code == 0, err
    assert "push object list (Landis+Gyr)" in out and "encrypted" in out
    assert "(862055*Wh)" in out  # 1-1:1.8.0, "15 00 00 00 00 00 0D 27 67"
    code, _, err = decode(capsys, path)
    assert code == 1 and "refused (no_key)" in err
