"""The meter reader polling an HTTP meter (HomeWizard P1 style): a real http.server."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Iterator

import pytest

from p1_exporter.meter.loopdriver import LoopMeter
from p1_exporter.meter.meterset import MeterSet
from p1_exporter.meter.sources import HttpSource, SourceError
from tests.helpers.fixtures import V5
from tests.helpers.net import free_port
from tests.helpers.reader import (
    NOTHING,
    TelegramServer,
    counts,
    fast_config,
    messages,
    ok_count,
    running,
)
from tests.helpers.telegrams import v5_at
from tests.helpers.wait import wait_for


@pytest.fixture
def server() -> Iterator[TelegramServer]:
    meter = TelegramServer(V5)
    yield meter
    meter.close()


def test_polled_telegram_is_published_once_per_change(server: TelegramServer) -> None:
    with running(fast_config(server.url, poll_interval=0.05)) as reader:
        wait_for(lambda: ok_count(reader) == 1)
        snap = reader.snapshot
        assert snap.telegram is not None and snap.telegram.raw == V5
        assert snap.telegram.value("1-0:2.8.1") == pytest.approx(2.444 * 3.6e6)
        assert snap.settings is None and snap.connected and snap.fresh()
        polled = server.requests
        wait_for(lambda: server.requests >= polled + 5)
        snap = reader.snapshot
        assert counts(snap) == {**NOTHING, "ok": 1}  # the same body is not a new telegram
        assert snap.bytes_read == len(V5)

        newer = v5_at("000004.900")
        server.body = newer.rstrip(b"\r\n")  # served without its final newline
        wait_for(lambda: ok_count(reader) == 2)
        snap = reader.snapshot
        assert snap.telegram is not None and snap.telegram.value("1-0:1.8.1") == pytest.approx(
            4.9 * 3.6e6
        )
        assert counts(snap) == {**NOTHING, "ok": 2}
        assert snap.bytes_read == len(V5) + len(newer)  # the source added the CRLF back
        assert (snap.connects, snap.source_errors, snap.glitches) == (1, 0, 0)


def test_frozen_body_goes_stale_and_is_not_recounted(server: TelegramServer) -> None:
    """A device that keeps serving one old telegram: silence reconnects must not revive it."""
    config = fast_config(server.url, poll_interval=0.05, silence_timeout=0.3, stale_after=0.8)
    with running(config) as reader:
        wait_for(lambda: ok_count(reader) == 1)
        wait_for(lambda: reader.snapshot.connects >= 3)
        wait_for(lambda: not reader.snapshot.fresh())
        snap = reader.snapshot
        assert snap.current_telegram() is None
        assert counts(snap) == {**NOTHING, "ok": 1} and snap.bytes_read == len(V5)
        assert snap.source_errors >= 2 and snap.last_error is not None
        assert "no bytes" in snap.last_error


def test_http_500_is_counted_and_the_reader_recovers(
    server: TelegramServer, caplog_reader: pytest.LogCaptureFixture
) -> None:
    with running(fast_config(server.url, poll_interval=0.05)) as reader:
        wait_for(lambda: ok_count(reader) == 1)
        server.status = 500
        wait_for(lambda: reader.snapshot.source_errors >= 3)
        snap = reader.snapshot
        assert reader.alive and snap.last_error is not None and "HTTP 500" in snap.last_error
        assert counts(snap) == {**NOTHING, "ok": 1}
        assert snap.telegram is not None and snap.telegram.raw == V5
        assert len(messages(caplog_reader, "HTTP 500", logging.WARNING)) == 1

        newer = v5_at("000005.000")
        server.status, server.body = 200, newer
        wait_for(lambda: ok_count(reader) == 2)
        snap = reader.snapshot
        assert snap.telegram is not None and snap.telegram.raw == newer
        assert counts(snap) == {**NOTHING, "ok": 2}
        assert snap.bytes_read == len(V5) + len(newer)
        assert len(messages(caplog_reader, "valid telegrams", logging.INFO)) == 1
        assert len(messages(caplog_reader, "HTTP 500", logging.WARNING)) == 1


def test_unreachable_port_is_refused(caplog_reader: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{free_port()}/api/v1/telegram"
    source = HttpSource(url)
    source.open()
    with pytest.raises(SourceError) as raised:
        source.read(0.2)
    assert raised.value.kind == "refused"
    with running(fast_config(url)) as reader:
        wait_for(lambda: reader.snapshot.source_errors >= 3)
        snap = reader.snapshot
        assert reader.alive and snap.telegram is None and counts(snap) == NOTHING
        assert snap.last_error is not None and "refused" in snap.last_error
        assert snap.bytes_read == 0
        assert len(messages(caplog_reader, "refused", logging.WARNING)) == 1


def test_http_source_reports_status_and_skips_unchanged_bodies(server: TelegramServer) -> None:
    source = HttpSource(server.url, poll_interval=0.0)
    source.open()
    assert source.read(0.2) == V5
    assert source.read(0.2) == b""  # unchanged
    server.status = 404
    with pytest.raises(SourceError) as raised:
        source.read(0.2)
    assert raised.value.kind == "http" and "404" in str(raised.value)
    source.close()


def test_a_device_that_drips_its_answer_is_cut_off_at_the_poll_deadline(
    caplog_reader: pytest.LogCaptureFixture,
) -> None:
    """A byte every 0.1 s would keep a poll going for minutes: the whole exchange has a
    deadline, the poll counts as failed, and the meter polls again."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()
    accepted: list[int] = []

    def drip() -> None:
        clients: list[socket.socket] = []
        answer = b"HTTP/1.0 200 OK\r\nContent-Length: 4000\r\n\r\n" + V5
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                client, _ = listener.accept()
                clients.append(client)
                accepted.append(0)
            for index, client in enumerate(list(clients)):
                position = accepted[index]
                try:
                    client.send(answer[position : position + 1])
                    accepted[index] = position + 1
                except OSError:
                    clients.remove(client)
            stop.wait(0.1)
        for client in clients:
            client.close()

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/api/v1/telegram"
    meter = LoopMeter(fast_config(url, poll_interval=0.05), http_timeout=0.5)
    meters = MeterSet([meter])
    meters.start()
    try:
        wait_for(lambda: meter.snapshot.source_errors >= 2, timeout=4)
        snap = meter.snapshot
        assert snap.last_error is not None and "no complete answer within 0.5 s" in snap.last_error
        assert counts(snap) == NOTHING and snap.bytes_read == 0 and snap.telegram is None
        assert len(accepted) >= 2 and max(accepted) <= 10  # each poll cut off after ~5 bytes
        assert len(messages(caplog_reader, "no complete answer", logging.WARNING)) == 1
    finally:
        meters.stop()
        stop.set()
        dripper.join(2)
        listener.close()
    assert not meter.alive
