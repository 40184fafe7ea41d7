"""A HAN meter owner's scalers (``han_scalers`` in the config, ``decode --han-scaler``) for
values the meter sends without one: they win over the maker's fixed scalers and the
Kamstrup current check, never over a scaler the meter sends, and still meet the
plausibility check. Real frames from tests/fixtures/han (see its README)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from p1_exporter.commands.cli import main
from p1_exporter.core.han_stream import HanStream
from p1_exporter.core.telegram import Telegram
from tests.helpers.exporter import ExporterProcess, run_exporter, scrape
from tests.helpers.metrics import value
from tests.helpers.wait import wait_for

HAN = Path(__file__).parent / "fixtures" / "han"
WH = 3600


def decoded(name: str, **scalers: int) -> Telegram:
    """The last telegram a fixture gives through a HAN stream with these owner scalers."""
    results = HanStream(scalers=scalers).feed((HAN / name).read_bytes())
    telegrams = [r.telegram for r in results if r.telegram is not None]
    assert telegrams, [str(r.error) for r in results]
    return telegrams[-1]


def test_landis_gyr_current_and_voltage_with_the_owners_scalers() -> None:
    # E450: "12 00 EC" is 236 V, "12 00 09" is 9 x 10 mA (see test_han_landis_gyr.py).
    plain = decoded("landis_gyr_e450_ch_2026.hdlc")
    assert plain.value("1-0:32.7.0") is None and plain.value("1-0:31.7.0") is None
    owned = decoded("landis_gyr_e450_ch_2026.hdlc", voltage=0, current=-2)
    assert owned.value("1-0:32.7.0") == 236
    assert owned.registers["1-0:32.7.0"].unit == "V"
    assert owned.value("1-0:31.7.0") == pytest.approx(0.09)
    assert owned.value("1-0:1.7.0") == plain.value("1-0:1.7.0") == 0x1C  # the rest unchanged
    # The E360 sends 0.1 V: "12 09 35" is 2357, 235.7 V with its owner's -1 ...
    assert decoded("landis_gyr_e360_ch_2026.hdlc", voltage=-1).value("1-0:32.7.0") == (
        pytest.approx(235.7)
    )
    # ... and 2357 V with a wrong 0: withheld, saying whose scaler made it implausible.
    wrong = decoded("landis_gyr_e360_ch_2026.hdlc", voltage=0)
    assert wrong.value("1-0:32.7.0") is None
    assert [line.raw for line in wrong.extra if line.obis == "1-0:32.7.0"] == [
        "(2357) implausible with the configured scaler 0: not exported"
    ]


def test_a_kamstrup_sending_wh_with_its_owners_energy_scaler() -> None:
    # The Swedish hourly list's 1.1.1.8.0: 32014158, 10 Wh by Kamstrup's documents.
    assert decoded("kamstrup_se_list2.hdlc").value("1-0:1.8.0") == 0x01E87F4E * 10 * WH
    owned = decoded("kamstrup_se_list2.hdlc", energy=0)
    assert owned.value("1-0:1.8.0") == 0x01E87F4E * WH  # 32014158 Wh
    assert owned.value("1-0:4.8.0") == 0x00106023  # reactive energy too: 1073187 varh
    assert owned.value("1-0:1.7.0") == 0x08DD  # power keeps its scaler: 2269 W


def test_the_owners_current_scaler_wins_over_the_kamstrup_check() -> None:
    # The Danish CT frame reads mA by its own figures; an owner who says 10 mA is obeyed.
    assert decoded("kamstrup_dk_ct.hdlc").value("1-0:31.7.0") == pytest.approx(90.999)
    owned = decoded("kamstrup_dk_ct.hdlc", current=-2)
    assert owned.value("1-0:31.7.0") == pytest.approx(909.99)


def test_a_scaler_the_meter_sends_wins_over_the_owners() -> None:
    # Aidon's list of structures carries (scaler, unit) beside each value.
    sent = decoded("aidon_se.hdlc")
    owned = decoded("aidon_se.hdlc", voltage=3, current=3, power=3, energy=3)
    assert sent.registers == owned.registers
    assert sent.value("1-0:32.7.0") is not None


def test_decode_takes_han_scalers(capsys: pytest.CaptureFixture[str]) -> None:
    frame = str(HAN / "landis_gyr_e450_ch_2026.hdlc")
    code = main(["decode", frame, "--han-scaler", "voltage=0", "--han-scaler", "current=-2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "1-0:32.7.0 voltage, L1" in out and "236 V" in out
    assert "0.09 A" in out
    with pytest.raises(SystemExit) as exited:
        main(["decode", frame, "--han-scaler", "volts=0"])
    assert exited.value.code == 2
    assert "unknown quantity 'volts'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("protocol: han\n    han_scalers: {volts: 0}", "unknown quantity 'volts'"),
        ("protocol: han\n    han_scalers: {voltage: 9}", "from -6 to 6"),
        ("protocol: han\n    han_scalers: {voltage: -1.5}", "not -1.5"),
        ("protocol: han\n    han_scalers: {voltage: true}", "not True"),
        ("protocol: han\n    han_scalers: -1", "a mapping of quantity"),
        ("han_scalers: {voltage: -1}", "only for protocol han"),
    ],
)
def test_bad_han_scalers_in_the_config_exit_two(tmp_path: Path, entry: str, message: str) -> None:
    config = tmp_path / "p1.yml"
    config.write_text(f"meters:\n  - device: /dev/ttyUSB0\n    {entry}\n", encoding="utf-8")
    result = run_exporter("--config", str(config))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "han_scalers" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.integration
def test_the_exporter_exports_with_the_configured_scalers(tmp_path: Path) -> None:
    config = tmp_path / "p1.yml"
    replay = HAN / "landis_gyr_e450_ch_2026.hdlc"
    config.write_text(
        f"meters:\n  - name: lg\n    device: file:{replay}?pace=fast\n    protocol: han\n"
        "    han_scalers: {voltage: 0, current: -2}\n",
        encoding="utf-8",
    )
    with ExporterProcess(["--config", str(config), "--web.listen-address", "127.0.0.1:0"]) as proc:
        proc.wait_listening()
        found: dict[str, Any] = {}

        def read() -> bool:
            nonlocal found
            found = scrape(proc.url)
            return value(found, "p1_phase_voltage_volts", meter="lg", phase="L1") is not None

        assert wait_for(read, timeout=10)
        assert value(found, "p1_phase_voltage_volts", meter="lg", phase="L1") == 236
        assert value(found, "p1_phase_current_amperes", meter="lg", phase="L1") == 0.09
        assert value(found, "p1_telegrams_total", meter="lg", result="ok") == 1
        code, _ = proc.stop()
    assert code == 0


def test_backfill_takes_han_scalers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The E360 frame carries its clock (2023-06-06 15:31:20 UTC) and L1's 2357 in 0.1 V.
    frame = str(HAN / "landis_gyr_e360_ch_2026.hdlc")
    plain, owned = tmp_path / "plain.om", tmp_path / "owned.om"
    assert main(["backfill", frame, "--protocol", "han", "--out", str(plain)]) == 0
    args = ["backfill", frame, "--protocol", "han", "--han-scaler", "voltage=-1"]
    assert main([*args, "--out", str(owned)]) == 0
    capsys.readouterr()
    line = 'p1_phase_voltage_volts{meter="main",phase="L1"} 235.7 1686065480'
    assert line in owned.read_text().splitlines()
    assert "p1_phase_voltage_volts" not in plain.read_text()


def test_a_list_of_an_unnamed_maker_is_read_with_its_owners_scalers() -> None:
    """The Baden E450 names no maker (no LGZ device name): refused as unknown, and read
    once its owner gives the scalers. 362 W beside 0.51, 1.05 and 0.52 A in 10 mA: about
    480 VA at 230 V, as a 362 W load can draw."""
    data = (HAN / "landis_gyr_e450_baden.hdlc").read_bytes()
    refused = HanStream().feed(data)
    assert [r.result for r in refused] == ["unsupported"]
    assert "han_scalers would read them" in str(refused[0].error)
    owned = decoded("landis_gyr_e450_baden.hdlc", power=0, energy=0, voltage=0, current=-2)
    assert owned.header == "DLMS/COSEM HDLC, push object list (an unnamed maker)"
    assert owned.value("1-0:1.7.0") == 0x016A  # "06 00 00 01 6A": 362 W
    assert owned.value("1-0:1.8.0") == 0x232226 * WH  # "06 00 23 22 26": 2302502 Wh
    assert owned.value("1-0:31.7.0") == pytest.approx(0x33 / 100)  # "12 00 33": 51 x 10 mA
    assert owned.value("1-0:8.8.0") == 0x0AC6A8  # "06 00 0A C6 A8": Q4 reactive, varh
    assert owned.equipment_id == "63326413"
