"""The meter reader on a network dongle (``socket://``): a real TCP server on 127.0.0.1."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from p1_exporter.meter.sources import SerialSource, SourceError
from tests.helpers.fixtures import V5
from tests.helpers.net import free_port, refused
from tests.helpers.reader import (
    NOTHING,
    Dongle,
    ManualClock,
    counts,
    fast_config,
    messages,
    ok_count,
    running,
)
from tests.helpers.telegrams import v5_at
from tests.helpers.wait import wait_for


@pytest.fixture
def dongle() -> Iterator[Dongle]:
    server = Dongle()
    yield server
    server.stop()


@pytest.mark.slow
def test_dongle_restart_reconnects_with_backoff(
    dongle: Dongle, caplog_reader: pytest.LogCaptureFixture
) -> None:
    with running(fast_config(dongle.url)) as reader:
        wait_for(lambda: reader.snapshot.connected and dongle.clients == 1)
        assert reader.snapshot.settings == "115200 8N1"  # a URL: no auto-detection
        dongle.send(V5)
        wait_for(lambda: ok_count(reader) == 1)
        snap = reader.snapshot
        assert snap.telegram is not None and snap.telegram.raw == V5
        assert snap.telegram.value("1-0:1.8.1") == pytest.approx(4.426 * 3.6e6)
        assert counts(snap) == {**NOTHING, "ok": 1} and snap.bytes_read == len(V5)
        assert (snap.connects, snap.source_errors) == (1, 0)

        dongle.stop()  # the dongle reboots: connection closed, then connects refused
        assert refused(dongle.port)
        wait_for(lambda: not reader.snapshot.connected)
        errors = reader.snapshot.source_errors
        time.sleep(1.2)
        retries = reader.snapshot.source_errors - errors
        # backoff 0.05, 0.1, 0.2, 0.4, 0.5, 0.5 ... (+-20 %): a handful, not a busy loop
        assert 2 <= retries <= 10, retries
        snap = reader.snapshot
        assert reader.alive and not snap.connected and snap.connects == 1
        assert snap.last_error is not None and "refused" in snap.last_error
        assert len(messages(caplog_reader, "disconnected", logging.WARNING)) == 1
        assert len(messages(caplog_reader, "refused", logging.WARNING)) == 1
        assert snap.telegram is not None and snap.telegram.raw == V5  # kept until stale

        dongle.start()  # back on the same port
        wait_for(lambda: reader.snapshot.connected and dongle.clients == 1)
        newer = v5_at("000004.500")
        dongle.send(newer)
        wait_for(lambda: ok_count(reader) == 2)
        snap = reader.snapshot
        assert snap.telegram is not None and snap.telegram.raw == newer
        assert counts(snap) == {**NOTHING, "ok": 2}
        assert snap.bytes_read == len(V5) + len(newer)
        assert snap.connects == 2 and snap.connected and snap.glitches == 0
        assert len(messages(caplog_reader, "valid telegrams", logging.INFO)) == 1
        assert len(messages(caplog_reader, "refused", logging.WARNING)) == 1


def test_refused_from_the_start_then_the_dongle_appears(
    caplog_reader: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    with running(fast_config(f"socket://127.0.0.1:{port}")) as reader:
        wait_for(lambda: reader.snapshot.source_errors >= 3)
        snap = reader.snapshot
        assert not snap.connected and snap.connects == 0 and counts(snap) == NOTHING
        assert len(messages(caplog_reader, "refused", logging.WARNING)) == 1
        late = Dongle(port)
        try:
            wait_for(lambda: reader.snapshot.connected and late.clients == 1)
            late.send(V5)
            wait_for(lambda: ok_count(reader) == 1)
            assert reader.snapshot.connects == 1
            assert reader.snapshot.bytes_read == len(V5)
        finally:
            late.stop()


@pytest.mark.slow
def test_silent_dongle_is_reconnected_after_silence_timeout(
    dongle: Dongle, caplog_reader: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()  # the real 30 s silence timeout, passed in an instant
    config = fast_config(dongle.url, silence_timeout=30.0)
    with running(config, clock=clock) as reader:
        wait_for(lambda: reader.snapshot.connected)
        clock.advance(29.0)
        reader.wake()
        time.sleep(0.4)
        assert reader.snapshot.connects == 1  # not before the silence timeout
        clock.advance(1.5)
        reader.wake()
        wait_for(lambda: reader.snapshot.connects >= 2)
        wait_for(lambda: reader.snapshot.connected)
        clock.advance(30.5)
        reader.wake()
        wait_for(lambda: reader.snapshot.connects >= 3)
        # The dongle's own accept thread may count the third connection a moment later.
        wait_for(lambda: dongle.accepted >= 3)
        snap = reader.snapshot
        assert reader.alive and snap.source_errors >= 2
        assert snap.last_error is not None and "no bytes" in snap.last_error
        assert counts(snap) == NOTHING and snap.bytes_read == 0 and snap.telegram is None
        assert len(messages(caplog_reader, "no bytes from", logging.INFO)) == 1
        assert len(messages(caplog_reader, "connected to", logging.INFO)) == 1  # the first

        # The dongle comes to life on the current connection.
        wait_for(lambda: reader.snapshot.connected and dongle.clients >= 1)
        wait_for(lambda: dongle.send(V5) and ok_count(reader) >= 1)
        snap = reader.snapshot
        assert snap.telegram is not None and snap.telegram.raw == V5
        assert snap.telegrams["ok"] >= 1 and snap.telegrams["crc_error"] == 0
        assert len(messages(caplog_reader, "valid telegrams", logging.INFO)) == 1


@pytest.mark.slow
def test_a_burst_is_read_in_large_chunks(dongle: Dongle) -> None:
    """socket:// reports 0 or 1 bytes waiting: one read must still take what has arrived."""
    burst = b"".join(v5_at(f"{10 + i:06d}.000") for i in range(30))
    source = SerialSource(dongle.url)
    source.open()
    try:
        wait_for(lambda: dongle.clients == 1)
        dongle.send(burst)
        time.sleep(0.1)
        first = source.read(0.5)
        assert len(first) == len(burst)
    finally:
        source.close()
    dongle.drop_clients()
    with running(fast_config(dongle.url)) as reader:
        wait_for(lambda: reader.snapshot.connected and dongle.clients == 1)
        dongle.send(burst)
        wait_for(lambda: ok_count(reader) == 30)
        snap = reader.snapshot
        assert counts(snap) == {**NOTHING, "ok": 30} and snap.bytes_read == len(burst)
        assert snap.telegram is not None and snap.telegram.value("1-0:1.8.1") == pytest.approx(
            39 * 3.6e6
        )


def test_open_on_a_closed_port_is_refused() -> None:
    with pytest.raises(SourceError) as raised:
        SerialSource(f"socket://127.0.0.1:{free_port()}").open()
    assert raised.value.kind == "refused"
    assert "refused" in str(raised.value)
