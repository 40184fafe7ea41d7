"""The simulator's HAN (Aidon, Kaifa over HDLC) and encrypted dialects, end to end.

The decoded values must be the simulated household's; the real exporter reads a
sim:// HAN meter and its /metrics pass promtool.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("cryptography")

from p1_exporter.core.cipher import LUXEMBOURG_AUTH_KEY, Keys
from p1_exporter.core.han_stream import HanStream
from p1_exporter.core.secure_stream import EncryptedTelegramStream
from p1_exporter.sim.han import render_han
from p1_exporter.sim.meter import SimulatedMeter
from tests.helpers.binaries import require_binary
from tests.helpers.exporter import ROOT, ExporterProcess, http_get, scrape
from tests.helpers.wait import wait_for

KEYS = Keys(bytes.fromhex("5A" * 16), LUXEMBOURG_AUTH_KEY)
START = 1_760_000_000.0


@pytest.mark.parametrize("dialect", ["han-aidon", "han-kaifa"])
@pytest.mark.parametrize("keys", [None, KEYS])
def test_han_dialects_decode_to_the_household(dialect: str, keys: Keys | None) -> None:
    meter = SimulatedMeter(dialect, seed=7, start=START)
    stream = HanStream(keys)
    for step in range(5):
        t = START + 2.5 * step
        state = meter.state_at(t)
        outcomes = stream.feed(render_han(state, dialect, t, keys))
        assert [o.result for o in outcomes] == ["ok"]
        telegram = outcomes[0].telegram
        assert telegram is not None
        assert telegram.value("1-0:1.7.0") == round(state.import_w)
        assert telegram.value("1-0:1.8.0") == state.import_wh * 3600
        assert telegram.value("1-0:32.7.0") == pytest.approx(round(state.voltage[0] * 10) / 10)
        assert telegram.meter_time == float(int(t))
        assert ("encrypted" in telegram.header) == (keys is not None)


def test_encrypted_dialect_is_dsmr5_under_the_key() -> None:
    meter = SimulatedMeter("encrypted", seed=7, start=START)
    with pytest.raises(ValueError, match="needs a key"):
        meter.telegram_at(START)
    meter.keys = KEYS
    stream = EncryptedTelegramStream(KEYS)
    frames = [meter.telegram_at(START + n) for n in range(3)]
    assert [o.result for o in stream.feed(b"".join(frames))] == ["ok", "ok", "ok"]
    # Any DSMR dialect can be wrapped, and the counter follows the clock.
    belgian = SimulatedMeter("belgian", seed=7, start=START)
    belgian.keys = KEYS
    assert [o.result for o in stream.feed(belgian.telegram_at(START + 10))] == ["ok"]
    assert [o.result for o in stream.feed(belgian.telegram_at(START + 10))] == ["replay"]


def test_simulate_command_refuses_a_bad_key() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "p1_exporter",
            "simulate",
            "--dialect",
            "han-kaifa",
            "--key",
            "abc",
            "--count",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 2 and "32 hexadecimal" in result.stderr


def test_exporter_serves_a_simulated_han_meter_and_promtool_accepts_it() -> None:
    promtool = require_binary("promtool")
    args = [
        "--device",
        "sim://?dialect=han-aidon&interval=0.2&seed=4",
        "--protocol",
        "han",
        "--web.listen-address",
        "127.0.0.1:0",
    ]
    with ExporterProcess(args) as proc:
        proc.wait_listening()

        def imported() -> bool:
            found = scrape(proc.url)
            return bool(found.get("p1_telegrams_total")) and any(
                v >= 2 for k, v in found["p1_telegrams_total"].items() if ("result", "ok") in k
            )

        assert wait_for(imported, timeout=10)
        body = http_get(proc.url, "/metrics").body
        check = subprocess.run(
            [promtool, "check", "metrics"], input=body, capture_output=True, timeout=20, check=False
        )
        assert check.returncode == 0, check.stderr + check.stdout
        assert b'result="unsupported"' in body  # the HAN reasons are counted from 0
        assert b'p1_power_import_watts{meter="main"}' in body
        assert b'p1_phase_voltage_volts{meter="main",phase="L1"}' in body
        proc.stop()


@pytest.mark.parametrize("dialect", ["han-aidon", "han-kaifa"])
def test_line_faults_on_han_dialects_cost_only_the_damaged_frames(dialect: str) -> None:
    from collections import Counter

    from p1_exporter.sim.meter import SimOptions

    options = SimOptions.from_url(
        f"sim://?dialect={dialect}&seed=3&crc_error_rate=0.2"
        "&torn_rate=0.1&garbage_rate=0.2&start=1700000000"
    )
    meter = SimulatedMeter.from_options(options)
    stream = HanStream()
    results: Counter[str] = Counter()
    for step in range(300):
        for chunk in meter.chunks_at(1_700_000_000 + 2.5 * step):
            results.update(o.result for o in stream.feed(chunk.data))
    assert meter.faults is not None
    damaged = meter.faults.counts["crc_error"] + meter.faults.counts["torn"]
    assert results["crc_error"] >= meter.faults.counts["crc_error"] - 10
    assert results["ok"] >= 300 - damaged - 10  # a good frame is never lost to a bad one
    # and no damaged one is accepted (a frame may be both corrupted and torn)
    assert results["ok"] <= 300 - max(meter.faults.counts["crc_error"], meter.faults.counts["torn"])
