"""SimBuilder: a crowd of ``sim://`` households is built in worker processes, a few in
threads; either way the household is the one the options
describe, its clock is the wall clock, and no worker process outlives the crowd."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from pathlib import Path

import pytest

from p1_exporter.core.clock import parse_meter_time
from p1_exporter.meter.sim_builds import THREAD_BUILDS, SimBuilder
from p1_exporter.meter.sources.sim import SimSource
from p1_exporter.sim.meter import SimulatedMeter
from tests.helpers.exporter import ExporterProcess, scrape
from tests.helpers.metrics import value
from tests.helpers.wait import wait_for

START = "2024-12-24T18:00:00Z"


def build_all(builder: SimBuilder, sources: list[SimSource]) -> None:
    async def main() -> None:
        await asyncio.gather(*(builder.build(source) for source in sources))

    asyncio.run(main())


def meter_clock_offset(source: SimSource) -> float:
    """Seconds the first telegram's timestamp is ahead of the wall clock."""
    source.open()
    telegram = source.take(time.monotonic())
    stamp = next(line for line in telegram.splitlines() if line.startswith(b"0-0:1.0.0("))
    at = parse_meter_time(stamp[10:23].decode())
    assert at is not None, stamp
    return at - time.time()


def test_a_crowd_is_built_in_worker_processes_that_end_with_it() -> None:
    before = set(children(os.getpid()))
    builder = SimBuilder(thread_builds=2)
    fixed = [SimSource(f"sim://?seed={seed}&start={START}") for seed in range(4)]
    live = [SimSource(f"sim://?seed={seed}") for seed in range(4, 8)]
    build_all(builder, fixed + live)
    # The first two waiting builds went to threads, the other six to processes.
    assert builder.built_in_processes == 6
    for source in fixed:
        assert source.meter is not None
        here = SimulatedMeter.from_options(source.options)
        moment = here.start + 3600
        assert source.meter.telegram_at(moment) == here.telegram_at(moment)
    for source in live:  # built "now" in a worker: its telegrams carry the wall clock
        assert abs(meter_clock_offset(source)) < 1.5
    assert builder.workers == 0
    wait_for(lambda: set(children(os.getpid())) <= before, what="the workers to exit")


def test_with_workers_turned_off_a_crowd_is_built_in_threads() -> None:
    before = set(children(os.getpid()))
    builder = SimBuilder(processes=False, thread_builds=2)
    sources = [SimSource(f"sim://?seed={seed}") for seed in range(6)]
    build_all(builder, sources)
    assert builder.built_in_processes == 0
    assert all(source.meter is not None for source in sources)
    assert set(children(os.getpid())) <= before
    assert all(abs(meter_clock_offset(source)) < 1.5 for source in sources)


def test_workers_that_cannot_start_leave_the_build_to_threads_with_one_warning(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    builder = SimBuilder(thread_builds=1)
    sources = [SimSource(f"sim://?seed={seed}") for seed in range(5)]
    monkeypatch.setattr(sys, "executable", "/nonexistent/python3")  # every worker fails
    with caplog.at_level(logging.WARNING, logger="p1_exporter.meter.sim_builds"):
        build_all(builder, sources)
    assert all(source.meter is not None for source in sources)
    assert builder.built_in_processes == 0
    warnings = [r for r in caplog.records if "worker processes failed" in r.getMessage()]
    assert len(warnings) == 1, caplog.text
    assert "building them in threads instead" in warnings[0].getMessage()


def children(pid: int) -> list[int]:
    """The process ``pid``'s children (Linux: /proc/PID/task/PID/children)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


@pytest.mark.integration
def test_the_exporter_builds_a_crowd_in_workers_and_keeps_none_afterwards() -> None:
    count = THREAD_BUILDS + 8
    devices = [arg for i in range(count) for arg in ("--device", f"m{i}=sim://?seed={i}")]
    with ExporterProcess([*devices, "--web.listen-address", "127.0.0.1:0"]) as proc:
        proc.wait_listening()

        def all_up() -> bool:
            found = scrape(proc.url)
            return all(
                (value(found, "p1_telegrams_total", meter=f"m{i}", result="ok") or 0) >= 1
                for i in range(count)
            )

        wait_for(all_up, timeout=60, what=f"{count} simulated meters up")
        # The workers ran, and are gone once every household is built.
        assert proc.log.count("worker processes help") == 1, proc.log
        wait_for(lambda: not children(proc.proc.pid), what="no worker process left")
        code, _ = proc.stop()
    assert code == 0
    assert "Traceback" not in proc.log and "failed" not in proc.log, proc.log
