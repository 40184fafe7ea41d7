"""MeterSet: the exporter's meters on the caller's event loop (network meters) and in
threads (files, serial ports), read through ``snapshots()`` and stopped together."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from p1_exporter.meter.engine import MeterConfig
from p1_exporter.meter.loopdriver import LoopMeter
from p1_exporter.meter.meterset import MeterSet
from p1_exporter.meter.reader import MeterReader
from p1_exporter.sim.meter import SimulatedMeter
from tests.helpers.fixtures import V5
from tests.helpers.reader import Dongle, fast_config, pty_pair
from tests.helpers.wait import wait_for

START = 1_700_000_000.0


def test_network_meters_share_the_callers_loop_and_the_rest_get_threads(tmp_path: Path) -> None:
    meter = SimulatedMeter("dsmr5", seed=3, start=START)
    path = tmp_path / "replay.txt"
    path.write_bytes(b"".join(meter.telegram_at(START + i) for i in range(3)))
    dongle = Dongle()
    with pty_pair() as pty:
        configs = [
            fast_config("sim://?seed=1&interval=0.1", name="sim"),
            fast_config(dongle.url, name="tcp"),
            fast_config(f"file:{path}?pace=fast", name="file"),
            fast_config(pty.path, name="port"),
        ]
        meters = MeterSet.from_configs(configs)
        assert [type(m) for m in meters] == [LoopMeter, LoopMeter, MeterReader, MeterReader]
        before = {t.ident for t in threading.enumerate()}
        stopped = threading.Event()

        async def main() -> None:
            stop = asyncio.Event()
            runner = asyncio.create_task(meters.run(stop))
            loop = asyncio.get_running_loop()

            def ok(name: str) -> bool:
                return any(s.name == name and s.telegrams["ok"] >= 1 for s in meters.snapshots())

            await loop.run_in_executor(None, lambda: wait_for(lambda: dongle.clients == 1))
            dongle.send(V5)
            pty.write(V5)
            for name in ("sim", "tcp", "file", "port"):
                assert await loop.run_in_executor(None, wait_for, lambda n=name: ok(n)), name
            # One thread per blocking meter, none for the network ones. Worker pools (the
            # loop's default executor used above, the simulator's household builder) grow
            # on demand, so they are left out of the count.
            started = sorted(
                t.name
                for t in threading.enumerate()
                if t.ident not in before
                and not t.name.startswith(("ThreadPoolExecutor", "sim-build", "asyncio_"))
            )
            assert started == ["p1-reader-file", "p1-reader-port"]
            stop.set()
            await asyncio.wait_for(runner, 5)
            stopped.set()

        try:
            asyncio.run(main())
        finally:
            dongle.stop()
    assert stopped.is_set()
    assert not any(m.alive for m in meters)
    snaps = {s.name: s for s in meters.snapshots()}
    assert list(snaps) == ["sim", "tcp", "file", "port"]
    assert snaps["tcp"].telegram is not None and snaps["tcp"].telegram.raw == V5
    assert snaps["port"].telegram is not None and snaps["port"].telegram.raw == V5
    assert snaps["file"].telegrams["ok"] == 3
    assert not snaps["tcp"].connected and not snaps["port"].connected


def test_a_bad_address_is_refused_when_the_set_is_built() -> None:
    for url, reason in (
        ("sim://?dialect=dsmr9", "unknown dialect"),
        ("socket://127.0.0.1", "no port"),
        ("http://", "no host"),
    ):
        try:
            MeterSet.from_configs([MeterConfig(url=url)])
        except ValueError as exc:
            assert reason in str(exc), (url, exc)
        else:
            raise AssertionError(f"{url} accepted")


def test_many_silent_meters_stop_together() -> None:
    """Two hundred TCP meters that connect and hear nothing: one loop, cancelled at once."""
    dongle = Dongle(backlog=256)
    try:
        configs = [fast_config(dongle.url, name=f"m{i}", silence_timeout=60.0) for i in range(200)]
        meters = MeterSet.from_configs(configs)
        meters.start()
        try:
            wait_for(lambda: all(s.connected for s in meters.snapshots()), timeout=10)
            wait_for(lambda: dongle.accepted >= 200)
        finally:
            meters.stop(timeout=5)
        assert not meters.alive and not any(m.alive for m in meters)
        snaps = meters.snapshots()
        assert all(s.connects == 1 and s.source_errors == 0 and not s.connected for s in snaps)
    finally:
        dongle.stop()
