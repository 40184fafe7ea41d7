"""HAN and encrypted meters through the real reader (a pty) and the real exporter process.

Bad frames are counted by reason, logged once, and export nothing; the keys stay
out of the API, the log and the metrics.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("cryptography")

from p1_exporter.core.cipher import LUXEMBOURG_AUTH_KEY, Keys, encrypt
from p1_exporter.core.han_framing import hdlc_frame
from p1_exporter.meter.reader import MeterReader
from p1_exporter.meter.sources import SerialSettings
from tests.helpers.exporter import ExporterProcess, http_get, run_exporter, scrape
from tests.helpers.fixtures import V5
from tests.helpers.reader import counts, fast_config, messages, ok_count, pty_pair, running
from tests.helpers.wait import wait_for

HAN = Path(__file__).parent / "fixtures" / "han"
KAIFA = (HAN / "kaifa_no_list3.hdlc").read_bytes()
AIDON = (HAN / "aidon_se.hdlc").read_bytes()
EVN = (HAN / "evn_kaifa_ma309.mbus").read_bytes()
LANDIS_GYR = (HAN / "landis_gyr_e450_ch_2026.hdlc").read_bytes()
LANDIS_GYR_CUT = (HAN / "landis_gyr_e450_romande_2_of_3.hdlc").read_bytes()
EVN_HEX = "36C66639E48A8CA4D6BC8B282A793BBB"
KEY_HEX = "F0E1D2C3B4A5968778695A4B3C2D1E0F"
KEYS = Keys(bytes.fromhex(KEY_HEX), LUXEMBOURG_AUTH_KEY)
TITLE = b"SAG\x10\x00\x00\x00\x07"
HAN_RESULTS = {
    "ok": 0,
    "crc_error": 0,
    "malformed": 0,
    "too_large": 0,
    "rejected": 0,
    "decrypt_error": 0,
    "replay": 0,
    "no_key": 0,
    "unsupported": 0,
}
#: Linux ptys refuse parity (EINVAL), so the pty tests fix 2400 8N1.
SETTINGS = SerialSettings(2400, 8, "N")


def test_han_frames_from_a_pty_with_bad_ones_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    corrupt = bytearray(KAIFA)
    corrupt[40] ^= 0x01
    unknown = hdlc_frame(b"\xe6\xe7\x00\xc4" + KAIFA[13:-3])  # get-response: not read
    with (
        pty_pair() as pty,
        running(fast_config(pty.path, protocol="han", settings=SETTINGS)) as reader,
    ):
        assert wait_for(lambda: reader.snapshot.connected)
        pty.write(KAIFA + bytes(corrupt) + bytes(corrupt) + unknown + unknown + AIDON)
        assert wait_for(lambda: ok_count(reader) == 2)
        snap = reader.snapshot
        assert counts(snap) == {**HAN_RESULTS, "ok": 2, "crc_error": 2, "unsupported": 2}
        assert snap.telegram is not None
        assert snap.telegram.value("1-0:1.7.0") == 0x462  # the Aidon frame, the last good one
        assert snap.settings == "2400 8N1"
        assert len(messages(caplog, "refused (crc_error)", logging.WARNING)) == 1
        assert len(messages(caplog, "unknown APDU tag 0xC4", logging.WARNING)) == 1


def test_landis_gyr_block_transfer_from_a_pty_with_a_cut_one_refused_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with (
        pty_pair() as pty,
        running(fast_config(pty.path, protocol="han", settings=SETTINGS)) as reader,
    ):
        assert wait_for(lambda: reader.snapshot.connected)
        # Blocks 1 and 2 of 3, then a whole push of 4 blocks sent in small pieces.
        pty.write(LANDIS_GYR_CUT)
        pty.write_slowly(LANDIS_GYR, chunk=50)
        assert wait_for(lambda: ok_count(reader) == 1)
        snap = reader.snapshot
        assert counts(snap) == {**HAN_RESULTS, "ok": 1, "malformed": 1}
        assert snap.telegram is not None
        assert snap.telegram.value("1-0:1.7.0") == 0x1C  # block 4: "06 00 00 00 1C"
        assert snap.telegram.value("1-0:32.7.0") is None  # voltage: not exported
        logged = messages(caplog, "refused (malformed)", logging.WARNING)
        assert len(logged) == 1 and "general-block-transfer restarted" in logged[0]


def test_han_autodetect_tries_2400_8e1_then_115200_8n1(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with pty_pair() as pty, running(fast_config(pty.path, protocol="han")) as reader:
        # A pty refuses 8E1 (as a USB adapter without parity support would): next candidate.
        assert wait_for(
            lambda: reader.snapshot.connected and reader.snapshot.settings == "115200 8N1"
        )
        assert messages(caplog, "does not accept 2400 8E1")
        pty.write(KAIFA)
        assert wait_for(lambda: ok_count(reader) == 1)


def test_encrypted_p1_with_replay_and_wrong_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    frames = [encrypt(V5, KEYS, TITLE, n) for n in (1, 2, 2)]
    foreign = encrypt(V5, Keys(bytes(16), LUXEMBOURG_AUTH_KEY), TITLE, 3)
    with (
        pty_pair() as pty,
        running(fast_config(pty.path, protocol="encrypted", keys=KEYS)) as reader,
    ):
        assert wait_for(lambda: reader.snapshot.connected)
        pty.write(b"".join(frames) + foreign + foreign)
        assert wait_for(lambda: sum(counts(reader.snapshot).values()) == 5)
        snap = reader.snapshot
        assert counts(snap) == {**HAN_RESULTS, "ok": 2, "replay": 1, "decrypt_error": 2}
        assert snap.telegram is not None and snap.telegram.equipment_id == "K8EG004046395507"
        logged = messages(caplog, "refused (decrypt_error)", logging.WARNING)
        assert len(logged) == 1 and "wrong encryption key" in logged[0]
        assert KEY_HEX not in caplog.text and KEY_HEX.lower() not in caplog.text


def test_encrypted_stream_on_a_dsmr_meter_says_a_key_is_needed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    frames = b"".join(encrypt(V5, KEYS, TITLE, n) for n in range(1, 6))
    with (
        pty_pair() as pty,
        running(
            fast_config(pty.path, detect_timeout=60.0, settings=SerialSettings(115200, 8, "N"))
        ) as reader,
    ):
        assert wait_for(lambda: reader.snapshot.connected)
        pty.write(frames)
        assert wait_for(lambda: reader.snapshot.bytes_read == len(frames))
        found = [r.getMessage() for r in caplog.records if "encrypted DLMS" in r.getMessage()]
        assert len(found) == 1
        assert "customer portal" in found[0]
        assert ok_count(reader) == 0


def test_reader_keys_hidden_from_repr() -> None:
    config = fast_config("/dev/null", protocol="encrypted", keys=KEYS)
    assert KEY_HEX.lower() not in repr(config).lower()
    assert "hidden" in repr(KEYS)
    MeterReader(config)  # builds without opening anything


@pytest.mark.parametrize(
    ("yaml_key", "message"),
    [
        ("'0011'", "32 hexadecimal"),
        ("'00112233445566778899AABBCCDDEEXX'", "32 hexadecimal"),
        ("12345678901234567890123456789012", "quote it in YAML"),
    ],
)
def test_bad_key_in_config_exits_two(tmp_path: Path, yaml_key: str, message: str) -> None:
    config = tmp_path / "p1.yml"
    config.write_text(
        f"meters:\n  - device: /dev/ttyUSB0\n    protocol: han\n    key: {yaml_key}\n",
        encoding="utf-8",
    )
    result = run_exporter("--config", str(config))
    assert result.returncode == 2
    assert message in result.stderr


def test_key_file_and_protocol_flag_and_env(tmp_path: Path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("key: 1234\n", encoding="ascii")
    result = run_exporter("--device", "/dev/ttyUSB0", "--key-file", str(bad))
    assert result.returncode == 2 and "32 hexadecimal" in result.stderr
    result = run_exporter("--device", "/dev/ttyUSB0", "--protocol", "encrypted")
    assert result.returncode == 2 and "needs the meter's key" in result.stderr
    result = run_exporter("--device", "/dev/ttyUSB0", env={"P1_EXPORTER_KEY": "xyz"})
    assert result.returncode == 2 and "P1_EXPORTER_KEY" in result.stderr


def test_exporter_reads_an_encrypted_austrian_han_meter_and_keeps_the_key_secret(
    tmp_path: Path,
) -> None:
    capture = tmp_path / "evn.bin"
    capture.write_bytes(EVN)
    key_file = tmp_path / "evn.key"
    key_file.write_text(f"key: {EVN_HEX}\n", encoding="ascii")
    config = tmp_path / "p1.yml"
    config.write_text(
        f"meters:\n  - name: evn\n    device: file:{capture}?pace=fast\n    protocol: han\n"
        f"    key_file: {key_file}\n",
        encoding="utf-8",
    )
    with ExporterProcess(["--config", str(config), "--web.listen-address", "127.0.0.1:0"]) as proc:
        proc.wait_listening()
        found: dict[str, Any] = {}

        def has_ok() -> bool:
            nonlocal found
            found = scrape(proc.url)
            return any(
                v >= 1
                for k, v in found.get("p1_telegrams_total", {}).items()
                if ("result", "ok") in k
            )

        assert wait_for(has_ok, timeout=10)
        totals = found["p1_telegrams_total"]
        assert any(("result", "decrypt_error") in k for k in totals)
        api = http_get(proc.url, "/api/v1/meters")
        text = api.body.decode()
        assert EVN_HEX not in text.upper() and str(key_file) not in text
        proc.stop()
        assert EVN_HEX not in proc.log.upper()
