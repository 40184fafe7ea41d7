"""``p1-exporter backfill``: captures and dumps to OpenMetrics, proven with promtool and Prometheus.

The proof: a simulated day of 10 s telegrams goes through capture file, backfill,
``promtool tsdb create-blocks-from openmetrics`` and a real Prometheus; the day's
energy read back with PromQL equals the simulator's own registers exactly.
"""

from __future__ import annotations

import calendar
import json
import os
import random
import re
import stat
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from p1_exporter.commands.backfill import block_duration_flag
from p1_exporter.commands.cli import main
from p1_exporter.core import iter_telegrams
from p1_exporter.core.clock import format_meter_time
from p1_exporter.core.crc import crc16_arc
from p1_exporter.history.backfill import Tally, backfill, plan
from p1_exporter.history.capture import encode_record
from p1_exporter.metrics.catalog import METRICS
from p1_exporter.sim.meter import SimulatedMeter
from p1_exporter.sim.model import MeterState
from p1_exporter.sim.render import render
from tests.helpers.binaries import require_binary
from tests.helpers.fixtures import FIXTURE_NAMES, load
from tests.helpers.net import free_port
from tests.helpers.wait import wait_for

#: Local midnight (CEST, UTC+2) at the start of Wednesday 12 June 2024.
DAY_START = calendar.timegm((2024, 6, 12, 0, 0, 0, 0, 0, 0)) - 7200
DAY_END = DAY_START + 86400
SAMPLE_LINE = re.compile(r'^([a-z0-9_]+)\{meter="[^"]*"[^}]*\} (\S+) (\d+(?:\.\d{3})?)$')


def sim_telegrams(
    count: int, step: float = 10.0, start: float = DAY_START, dialect: str = "dsmr5", seed: int = 42
) -> list[tuple[float, MeterState, bytes]]:
    """(moment, state, telegram) for ``count`` moments ``step`` apart."""
    meter = SimulatedMeter(dialect, seed=seed, start=start)
    out = []
    for index in range(count):
        moment = start + index * step
        state = meter.state_at(moment)
        out.append((moment, state, render(state, dialect, moment)))
    return out


def write_capture(path: Path, telegrams: list[bytes], times: list[float]) -> None:
    path.write_bytes(
        b"".join(encode_record(t + 0.3, "ok", raw) for t, raw in zip(times, telegrams, strict=True))
    )


def parse_om(path: Path) -> dict[str, list[Any]]:
    """Parse with prometheus_client's strict OpenMetrics parser; family name -> samples."""
    text = path.read_text(encoding="utf-8")
    families = text_string_to_metric_families(text)  # type: ignore[no-untyped-call]
    return {family.name: family.samples for family in families}


def sample_lines(path: Path) -> list[tuple[str, str, float, str]]:
    """(name, whole line, value, timestamp) of every sample line."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            continue
        match = SAMPLE_LINE.match(line)
        assert match, f"odd sample line {line!r}"
        out.append((match[1], line, float(match[2]), match[3]))
    return out


def promtool_blocks(om: Path, data: Path) -> str:
    promtool = require_binary("promtool")
    result = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(om), str(data)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@dataclass
class Prometheus:
    url: str

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        params = urllib.parse.urlencode({"query": expr, "time": f"{at:.3f}"})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{params}", timeout=10) as reply:
            body = json.load(reply)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, expr: str, at: float) -> float:
        result = self.query(expr, at)
        assert len(result) == 1, (expr, result)
        return float(result[0]["value"][1])


@pytest.fixture
def prometheus_on(tmp_path: Path) -> Iterator[Any]:
    """Start a real Prometheus on a TSDB directory; no scrape configs."""
    binary = require_binary("prometheus")
    processes: list[subprocess.Popen[bytes]] = []

    def start(data: Path) -> Prometheus:
        config = tmp_path / "prometheus.yml"
        config.write_text("global: {}\n")
        port = free_port()
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={data}",
                "--storage.tsdb.retention.time=100y",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(process)
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert process.poll() is None, "prometheus exited"
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as reply:
                return bool(reply.status == 200)

        wait_for(ready, 30, "prometheus to be ready", interval=0.1, retry_on=(OSError,))
        return Prometheus(url)

    yield start
    for process in processes:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
@pytest.mark.integration
def test_a_backfilled_day_in_prometheus_matches_the_simulator_registers(
    tmp_path: Path, prometheus_on: Any
) -> None:
    day = sim_telegrams(8641)  # 00:00:00 .. 24:00:00 local, every 10 s, both ends included
    assert day[0][0] == DAY_START and day[-1][0] == DAY_END
    capture = tmp_path / "day.p1cap"
    write_capture(capture, [raw for _, _, raw in day], [t for t, _, _ in day])
    om = tmp_path / "day.om"
    tally, _ = backfill([str(capture)], str(om), workers=1)
    assert (tally.read, tally.written, tally.duplicates, tally.backwards) == (8641, 8641, 0, 0)

    data = tmp_path / "tsdb"
    promtool_blocks(om, data)
    prom = prometheus_on(data)

    first, last = day[0][1], day[-1][1]
    # The meter's clock is the timestamp: the first sample sits exactly at local midnight.
    assert (
        prom.value(f"timestamp(p1_meter_clock_timestamp_seconds @ {DAY_START})", DAY_END)
        == DAY_START
    )
    assert prom.value("p1_meter_clock_timestamp_seconds", DAY_END) == DAY_END

    def day_delta(selector: str) -> float:
        # increase() would extrapolate to the window's edges; the difference between the
        # samples at the day's two midnights is what the registers say, to the last bit.
        delta: float = prom.value(f"{selector} @ {DAY_END} - {selector} @ {DAY_START}", DAY_END)
        spread = prom.value(
            f"max_over_time({selector}[1d]) - min_over_time({selector}[1d])", DAY_END
        )
        assert spread == delta  # counters only rise: the same day, read another way
        return delta

    registers = {
        'p1_energy_import_joules_total{tariff="1"}': (first.import_low_wh, last.import_low_wh),
        'p1_energy_import_joules_total{tariff="2"}': (
            first.import_normal_wh,
            last.import_normal_wh,
        ),
        'p1_energy_export_joules_total{tariff="1"}': (first.export_low_wh, last.export_low_wh),
        'p1_energy_export_joules_total{tariff="2"}': (
            first.export_normal_wh,
            last.export_normal_wh,
        ),
    }
    for selector, (wh_start, wh_end) in registers.items():
        assert day_delta(selector) == (wh_end - wh_start) * 3600, selector
    assert last.import_wh - first.import_wh > 1000  # a real day: kWh, on both tariffs
    assert all(end > start for start, end in list(registers.values())[:2])
    # Gas and water: the meter shows the 5-minute capture values, in m3 with 3 decimals.
    gas = day_delta('p1_gas_volume_cubic_meters_total{channel="1"}')
    assert gas == last.gas_5min.value / 1000 - first.gas_5min.value / 1000
    assert gas > 0
    water = day_delta('p1_water_volume_cubic_meters_total{channel="2"}')
    assert water == last.water_5min.value / 1000 - first.water_5min.value / 1000


def test_output_passes_the_strict_openmetrics_parser(tmp_path: Path) -> None:
    day = sim_telegrams(200, step=1.0, dialect="belgian", seed=3)
    capture = tmp_path / "be.p1cap"
    write_capture(capture, [raw for _, _, raw in day], [t for t, _, _ in day])
    om = tmp_path / "be.om"
    tally, _ = backfill([str(capture)], str(om), meter="garage")
    assert tally.written == 200
    families = parse_om(om)
    text = om.read_text()
    assert text.endswith("# EOF\n")
    # Every family once, contiguous; counters named without _total, samples with it.
    assert text.count("# TYPE p1_energy_import_joules counter\n") == 1
    assert "p1_energy_import_joules" in families
    assert {s.name for s in families["p1_energy_import_joules"]} == {
        "p1_energy_import_joules_total"
    }
    for name, samples in families.items():
        spec = METRICS.get(name) or METRICS[name + "_total"]
        assert samples, name
        for sample in samples:
            assert sample.labels["meter"] == "garage"
            assert set(sample.labels) == {"meter", *spec.labels}
        stamps: dict[tuple[Any, ...], float] = {}
        for sample in samples:
            key = tuple(sorted(sample.labels.items()))
            assert float(sample.timestamp) > stamps.get(key, -1), "time must rise per series"
            stamps[key] = float(sample.timestamp)
    peak = families["p1_demand_month_peak_watts"]
    assert len(peak) == 200 and float(peak[0].timestamp) == DAY_START
    promtool_blocks(om, tmp_path / "tsdb")


def test_plain_dumps_of_real_telegrams(tmp_path: Path) -> None:
    def clock(name: str) -> float:
        (outcome,) = iter_telegrams(load(name))
        assert outcome.telegram is not None
        return outcome.telegram.meter_time or 0.0

    # Oldest first (v5.txt and v5_invalid_gas_timestamp.txt share a time: one duplicate),
    # then an old one again (the clock goes back); the DSMR 2.2/3 ones have no clock.
    names = sorted(FIXTURE_NAMES, key=clock)
    names.append("v4_2.txt")
    dump = tmp_path / "fixtures.txt"
    dump.write_bytes(b"".join(load(name) for name in names))
    # What one pass over the same bytes must decide, worked out independently.
    outcomes = list(iter_telegrams(dump.read_bytes()))
    expected = {"written": 0, "duplicates": 0, "backwards": 0, "no_clock": 0, "refused": 0}
    last = -1.0
    for outcome in outcomes:
        if outcome.telegram is None:
            expected["refused"] += 1
        elif outcome.telegram.meter_time is None:
            expected["no_clock"] += 1
        elif outcome.telegram.meter_time == last:
            expected["duplicates"] += 1
        elif outcome.telegram.meter_time < last:
            expected["backwards"] += 1
        else:
            expected["written"] += 1
            last = outcome.telegram.meter_time
    assert expected == {"written": 10, "duplicates": 1, "backwards": 1, "no_clock": 4, "refused": 0}
    om = tmp_path / "fixtures.om"
    tally, inputs = backfill([str(dump)], str(om))
    assert inputs[0].kind == "dump"
    got = {
        "written": tally.written,
        "duplicates": tally.duplicates,
        "backwards": tally.backwards,
        "no_clock": tally.no_clock,
        "refused": sum(tally.refused.values()),
    }
    assert got == expected
    assert tally.read == len(outcomes)
    assert tally.receive_time == 0
    families = parse_om(om)
    assert "p1_reactive_energy_quadrant_var_seconds" in families  # the Hungarian meter
    assert "p1_heat_energy_joules" in families  # the GJ heat meter
    promtool_blocks(om, tmp_path / "tsdb")


def test_duplicates_backward_clocks_and_refusals_are_skipped_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tel = sim_telegrams(6, step=60.0)
    raw = [r for _, _, r in tel]
    bad = raw[4].replace(b"1-0:1.8.1(", b"1-0:1.8.1(9", 1)
    records = [
        encode_record(tel[0][0], "ok", raw[0]),
        encode_record(tel[1][0], "ok", raw[1]),
        encode_record(tel[1][0] + 1, "ok", raw[1]),  # the same telegram again
        encode_record(tel[2][0], "ok", raw[2]),
        encode_record(tel[2][0] + 1, "ok", raw[0]),  # an older meter time: clock went back
        encode_record(tel[3][0], "ok", raw[3]),
        encode_record(tel[4][0], "crc_error", bad, "CRC mismatch"),
        encode_record(tel[4][0], "ok", bad),  # recorded as ok, but the CRC is checked again
        encode_record(tel[4][0], "malformed", b"", "torn telegram"),
        encode_record(tel[5][0], "ok", raw[5]),
    ]
    capture = tmp_path / "odd.p1cap"
    capture.write_bytes(b"".join(records) + records[0][:100])  # and a cut-off last record
    om = tmp_path / "odd.om"
    code = main(["backfill", str(capture), "--out", str(om), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "read 10 telegrams" in err
    assert "wrote 5 telegrams" in err
    assert (
        "skipped 1 duplicate(s) (same meter time again), 1 older than the last written "
        "(clock went back), 0 without a clock, 3 refused (crc_error=2 malformed=1)"
    ) in err
    assert "1 cut-off record(s)" in err and "capture was interrupted" in err
    assert "promtool tsdb create-blocks-from openmetrics" in err
    stamps = [int(s) for name, _, _, s in sample_lines(om) if name == "p1_meter_info"]
    assert stamps == [int(tel[i][0]) for i in (0, 1, 2, 3, 5)]
    parse_om(om)


def test_dsmr22_telegrams_use_the_capture_receive_time(tmp_path: Path) -> None:
    tel = sim_telegrams(3, step=10.0, dialect="dsmr22")
    assert b"0-0:1.0.0" not in tel[0][2]  # DSMR 2.2 sends no clock
    capture = tmp_path / "v22.p1cap"
    received = [DAY_START + 0.125, DAY_START + 10.5, DAY_START + 20.0]
    capture.write_bytes(
        b"".join(encode_record(t, "ok", r) for t, (_, _, r) in zip(received, tel, strict=True))
    )
    om = tmp_path / "v22.om"
    tally, _ = backfill([str(capture)], str(om))
    assert (tally.written, tally.receive_time, tally.no_clock) == (3, 3, 0)
    stamps = [s for name, _, _, s in sample_lines(om) if name == "p1_meter_info"]
    assert stamps == [f"{DAY_START}.125", f"{DAY_START + 10}.500", f"{DAY_START + 20}"]
    parse_om(om)
    promtool_blocks(om, tmp_path / "tsdb")
    # A plain dump of the same telegrams has no receive time: nothing can be placed.
    dump = tmp_path / "v22.txt"
    dump.write_bytes(b"".join(r for _, _, r in tel))
    tally, _ = backfill([str(dump)], str(tmp_path / "dump.om"))
    assert (tally.written, tally.no_clock) == (0, 3)


def test_rotated_captures_are_read_oldest_first(tmp_path: Path) -> None:
    tel = sim_telegrams(30, step=10.0)
    parts = [tel[20:], tel[10:20], tel[:10]]  # FILE, FILE.1, FILE.2 after two rotations
    paths = []
    for index, part in enumerate(parts):
        path = tmp_path / ("cap.p1cap" + (f".{index}" if index else ""))
        write_capture(path, [r for _, _, r in part], [t for t, _, _ in part])
        paths.append(str(path))
    tally, inputs = backfill(paths, str(tmp_path / "out.om"))
    assert [Path(item.path).name for item in inputs] == ["cap.p1cap.2", "cap.p1cap.1", "cap.p1cap"]
    assert (tally.written, tally.backwards) == (30, 0)


def _jumpy_capture(path: Path, seed: int) -> None:
    """A capture whose meter clock stutters, repeats and jumps back (and forward) a lot."""
    rng = random.Random(seed)
    meter = SimulatedMeter("dsmr5", seed=seed, start=DAY_START)
    telegram = meter.telegram_at(DAY_START)
    clock = DAY_START
    blobs = []
    for _ in range(400):
        roll = rng.random()
        if roll < 0.6:
            clock += rng.choice((1, 1, 1, 2, 5))
            telegram = meter.telegram_at(max(clock, meter.model.state.time))
        elif roll < 0.75:
            pass  # the same telegram again
        elif roll < 0.9:
            body = re.sub(
                rb"0-0:1\.0\.0\(\d+[SW]\)",
                b"0-0:1.0.0(" + format_meter_time(clock - rng.randrange(1, 30)).encode() + b")",
                telegram,
            )
            body = body[: body.index(b"!") + 1]
            blobs.append(encode_record(clock, "ok", body + b"%04X\r\n" % crc16_arc(body)))
            continue
        else:
            clock += rng.randrange(30, 300)  # the clock jumps ahead
            telegram = meter.telegram_at(max(clock, meter.model.state.time))
        blobs.append(encode_record(clock, "ok", telegram))
    path.write_bytes(b"".join(blobs))


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.slow
def test_worker_processes_give_the_same_output_and_counts_as_one(tmp_path: Path, seed: int) -> None:
    capture = tmp_path / "jumpy.p1cap"
    _jumpy_capture(capture, seed)
    one = tmp_path / "one.om"
    tally, inputs = backfill([str(capture)], str(one), workers=1)
    assert tally.duplicates > 10 and tally.backwards > 10
    for workers in (2, 3, 5):
        assert len(plan(inputs, workers)) == workers
        many = tmp_path / f"many{workers}.om"
        other, _ = backfill([str(capture)], str(many), workers=workers)
        assert many.read_bytes() == one.read_bytes(), workers
        assert (
            other.read,
            other.written,
            other.duplicates,
            other.backwards,
            other.samples,
            other.series,
            other.first_ms,
            other.last_ms,
        ) == (
            tally.read,
            tally.written,
            tally.duplicates,
            tally.backwards,
            tally.samples,
            tally.series,
            tally.first_ms,
            tally.last_ms,
        )


def test_plain_dump_split_between_workers_matches_one_pass(tmp_path: Path) -> None:
    tel = sim_telegrams(300, step=1.0, dialect="dsmr4")
    raw = [r for _, _, r in tel]
    raw[100] = raw[100][:300]  # torn
    raw[200] = raw[200].replace(b"1-0:1.8.1(", b"1-0:1.8.1(9", 1)  # CRC error
    dump = tmp_path / "dump.txt"
    dump.write_bytes(b"".join(raw))
    one, _ = backfill([str(dump)], str(tmp_path / "one.om"), workers=1)
    two, _ = backfill([str(dump)], str(tmp_path / "two.om"), workers=4)
    assert (tmp_path / "one.om").read_bytes() == (tmp_path / "two.om").read_bytes()
    assert one.refused == two.refused == {"malformed": 1, "crc_error": 1}
    assert one.written == two.written == 298


def test_progress_bar_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tel = sim_telegrams(50, step=1.0)
    capture = tmp_path / "c.p1cap"
    write_capture(capture, [r for _, _, r in tel], [t for t, _, _ in tel])
    om = tmp_path / "c.om"
    assert main(["backfill", str(capture), "--out", str(om), "--progress", "--meter", "home"]) == 0
    err = capsys.readouterr().err
    assert "\rbackfill [" in err and "100.0%" in err
    assert 'meter="home"' in om.read_text()
    assert main(["backfill", str(tmp_path / "missing"), "--out", str(om)]) == 2
    junk = tmp_path / "junk.txt"
    junk.write_bytes(b"no telegrams here\n")
    assert main(["backfill", str(junk), "--out", str(tmp_path / "j.om")]) == 1
    assert "no telegram could be written" in capsys.readouterr().err
    assert not list(tmp_path.glob(".p1-backfill-*"))  # temporary files are gone


def test_extra_labels_make_history_match_the_live_series(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tel = sim_telegrams(3, step=1.0)
    capture = tmp_path / "c.p1cap"
    write_capture(capture, [r for _, _, r in tel], [t for t, _, _ in tel])
    om = tmp_path / "c.om"
    assert (
        main(
            [
                "backfill",
                str(capture),
                "--out",
                str(om),
                "--label",
                "job=p1",
                "--label",
                'instance=pi "4":9357',
            ]
        )
        == 0
    )
    text = om.read_text()
    assert (
        'p1_energy_import_joules_total{meter="main",tariff="1",job="p1",'
        'instance="pi \\"4\\":9357"} '
    ) in text
    families = parse_om(om)
    assert all(s.labels["job"] == "p1" for s in families["p1_energy_import_joules"])
    for bad in ("tariff=1", "meter=x", "__name__=x", "1x=y", "job"):
        with pytest.raises(SystemExit):
            main(["backfill", str(capture), "--out", str(om), "--label", bad])
    assert (
        main(["backfill", str(capture), "--out", str(om), "--label", "job=a", "--label", "job=b"])
        == 2
    )
    capsys.readouterr()


def test_promtool_block_size_hint_follows_the_span() -> None:
    def hint(hours: float) -> str:
        return block_duration_flag(Tally(first_ms=0, last_ms=int(hours * 3_600_000)))

    assert hint(1) == hint(2) == ""
    assert hint(5) == "--max-block-duration=6h "
    assert hint(24) == "--max-block-duration=54h "
    assert hint(24 * 365) == "--max-block-duration=486h "
    assert block_duration_flag(Tally()) == ""


def test_a_series_repeated_within_one_telegram_is_written_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import p1_exporter.history.backfill as module
    from p1_exporter.metrics.samples import telegram_samples

    def doubled(telegram: Any) -> Iterator[Any]:
        samples = list(telegram_samples(telegram))
        yield from samples
        yield samples[0]._replace(value=-1.0)  # as if a mapping sent one series twice

    monkeypatch.setattr(module, "telegram_samples", doubled)
    tel = sim_telegrams(20, step=1.0)
    capture = tmp_path / "c.p1cap"
    write_capture(capture, [r for _, _, r in tel], [t for t, _, _ in tel])
    om = tmp_path / "c.om"
    tally, _ = backfill([str(capture)], str(om))
    assert tally.samples == 20 * 37
    assert "-1.0" not in om.read_text()
    parse_om(om)


# -- what --out may overwrite, through the real ``p1-exporter backfill`` process ----------------


def run_backfill(
    *args: str, stdout: Any = subprocess.PIPE, cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    """``python -m p1_exporter backfill ARGS`` to completion; stdout as given, stderr caught."""
    return subprocess.run(
        [sys.executable, "-m", "p1_exporter", "backfill", "--no-progress", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        timeout=120,
        check=False,
    )


@pytest.fixture
def small_capture(tmp_path: Path) -> tuple[Path, bytes]:
    """A capture of 30 telegrams and the OpenMetrics text backfill makes of it."""
    tel = sim_telegrams(30, step=10.0)
    capture = tmp_path / "in.p1cap"
    write_capture(capture, [r for _, _, r in tel], [t for t, _, _ in tel])
    reference = tmp_path / "reference" / "ref.om"
    reference.parent.mkdir()
    backfill([str(capture)], str(reference))
    return capture, reference.read_bytes()


def one_error_line(result: subprocess.CompletedProcess[bytes]) -> str:
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("p1-exporter backfill: "), lines
    return lines[0]


def test_an_output_that_is_an_input_is_refused(
    tmp_path: Path, small_capture: tuple[Path, bytes]
) -> None:
    capture, _ = small_capture
    before = capture.read_bytes()
    (tmp_path / "link.om").symlink_to(capture.name)
    os.link(capture, tmp_path / "hard.om")
    other = tmp_path / "other.p1cap"
    other.write_bytes(before)
    for out in (str(capture), str(tmp_path / "link.om"), str(tmp_path / "hard.om"), "in.p1cap"):
        result = run_backfill(str(other), str(capture), "--out", out, cwd=tmp_path)
        assert result.returncode == 2
        assert "is one of the input files" in one_error_line(result)
        assert capture.read_bytes() == before
    assert (tmp_path / "link.om").is_symlink()
    result = run_backfill(str(capture), "--out", str(tmp_path))
    assert result.returncode == 2 and "is a directory" in one_error_line(result)
    assert capture.read_bytes() == before


def test_a_regular_output_is_replaced_atomically_and_strangers_are_left_alone(
    tmp_path: Path, small_capture: tuple[Path, bytes]
) -> None:
    capture, expected = small_capture
    out = tmp_path / "out.om"
    stranger = tmp_path / "out.om.part"
    stranger.write_bytes(b"someone else's file\n")
    out.write_bytes(b"old history\n")
    out.chmod(0o640)
    before = set(tmp_path.iterdir())
    result = run_backfill(str(capture), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == expected
    assert stat.S_IMODE(out.stat().st_mode) == 0o640  # the replaced file's permissions
    assert stranger.read_bytes() == b"someone else's file\n"
    assert set(tmp_path.iterdir()) == before  # no temporary file left behind
    # A failed run (the output's directory is gone) leaves nothing either.
    result = run_backfill(str(capture), "--out", str(tmp_path / "gone" / "x.om"))
    assert result.returncode == 2
    assert str(tmp_path / "gone" / "x.om") in one_error_line(result)
    assert set(tmp_path.iterdir()) == before


def test_a_symlink_output_writes_its_target_and_stays_a_symlink(
    tmp_path: Path, small_capture: tuple[Path, bytes]
) -> None:
    capture, expected = small_capture
    data = tmp_path / "data"
    data.mkdir()
    (data / "history.om").write_bytes(b"old\n")
    link = tmp_path / "history.om"
    link.symlink_to(data / "history.om")
    dangling = tmp_path / "new.om"
    dangling.symlink_to("data/new.om")
    for out in (link, dangling):
        result = run_backfill(str(capture), "--out", str(out))
        assert result.returncode == 0, result.stderr
        assert out.is_symlink()
        assert out.read_bytes() == expected
    assert sorted(p.name for p in data.iterdir()) == ["history.om", "new.om"]


def test_a_fifo_output_is_written_into_not_replaced(
    tmp_path: Path, small_capture: tuple[Path, bytes]
) -> None:
    capture, expected = small_capture
    fifo = tmp_path / "pipe.om"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = run_backfill(str(capture), "--out", str(fifo))
    reader.join(30)
    assert result.returncode == 0, result.stderr
    assert received == [expected]
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.p1cap", "pipe.om", "reference"]


def test_a_character_device_output_is_written_into_not_replaced(
    tmp_path: Path, small_capture: tuple[Path, bytes]
) -> None:
    capture, _ = small_capture
    device = tmp_path / "null"
    try:
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # what /dev/null is
    except PermissionError:
        pytest.skip("creating a device node needs root (CAP_MKNOD)")
    result = run_backfill(str(capture), "--out", str(device))
    assert result.returncode == 0, result.stderr
    assert stat.S_ISCHR(device.lstat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.p1cap", "null", "reference"]


def test_dev_full_gives_one_clear_line_and_exit_2(small_capture: tuple[Path, bytes]) -> None:
    capture, _ = small_capture
    if not stat.S_ISCHR(os.stat("/dev/full").st_mode):
        pytest.skip("no /dev/full here")
    result = run_backfill(str(capture), "--out", "/dev/full")
    assert result.returncode == 2
    assert one_error_line(result) == "p1-exporter backfill: /dev/full: No space left on device"
    assert stat.S_ISCHR(os.lstat("/dev/full").st_mode)


def test_dev_stdout_output_reaches_a_pipe_and_a_redirected_file(
    tmp_path: Path, small_capture: tuple[Path, bytes]
) -> None:
    capture, expected = small_capture
    result = run_backfill(str(capture), "--out", "/dev/stdout")
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected
    redirected = tmp_path / "redirected.om"
    with open(redirected, "wb") as handle:  # like a shell's "> redirected.om"
        assert run_backfill(str(capture), "--out", "/dev/stdout", stdout=handle).returncode == 0
    assert redirected.read_bytes() == expected
    with open(redirected, "ab") as handle:  # ">>" appends
        assert run_backfill(str(capture), "--out", "/dev/stdout", stdout=handle).returncode == 0
    assert redirected.read_bytes() == expected + expected
    assert not list(tmp_path.glob(".p1-backfill-*"))
