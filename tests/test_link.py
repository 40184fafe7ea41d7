"""The link supervisor on an injected clock: silence, serial-settings detection, backoff."""

from __future__ import annotations

import random

from p1_exporter.meter.backoff import Backoff
from p1_exporter.meter.link import LinkAction, LinkSupervisor


def supervisor(*, autodetect: bool = True) -> LinkSupervisor:
    backoff = Backoff(0.5, 30.0, jitter=0.0, rng=random.Random(1))
    return LinkSupervisor(
        silence_timeout=30.0, detect_timeout=25.0, autodetect=autodetect, backoff=backoff
    )


def test_a_link_that_keeps_sending_is_never_silent() -> None:
    link = supervisor(autodetect=False)
    link.connected(1000.0)
    for second in range(1, 600):
        link.bytes_arrived(1000.0 + second)
        assert link.check(1000.0 + second + 0.5) is LinkAction.CARRY_ON


def test_silence_is_declared_exactly_at_the_timeout() -> None:
    link = supervisor(autodetect=False)
    link.connected(50.0)
    link.bytes_arrived(60.0)
    assert link.wake_at() == 90.0
    assert link.check(89.999) is LinkAction.CARRY_ON
    assert link.check(90.0) is LinkAction.SILENT


def test_a_new_connection_restarts_the_silence_clock() -> None:
    link = supervisor(autodetect=False)
    link.connected(0.0)
    assert link.check(40.0) is LinkAction.SILENT
    link.connected(40.0)
    assert link.check(69.0) is LinkAction.CARRY_ON
    assert link.wake_at() == 70.0


def test_detection_moves_on_every_detect_timeout_until_a_valid_telegram() -> None:
    link = supervisor()
    link.connected(0.0)
    actions = []
    for second in range(0, 80):
        link.bytes_arrived(float(second))  # garbage keeps coming: never silent
        actions.append((second, link.check(float(second))))
    switches = [second for second, action in actions if action is LinkAction.NEXT_SETTINGS]
    assert switches == [25, 50, 75]
    assert link.valid_telegram(80.0) is True  # this locks the settings
    assert link.valid_telegram(81.0) is False
    for second in range(81, 200):
        link.bytes_arrived(float(second))
        assert link.check(float(second)) is LinkAction.CARRY_ON


def test_locked_settings_stay_locked_across_reconnects() -> None:
    link = supervisor()
    link.connected(0.0)
    link.valid_telegram(1.0)
    link.connected(100.0)
    link.bytes_arrived(129.0)
    assert link.check(129.0) is LinkAction.CARRY_ON  # no detection any more
    assert link.wake_at() == 159.0


def test_wake_at_is_the_first_of_silence_and_detection() -> None:
    link = supervisor()
    link.connected(10.0)
    assert link.wake_at() == 35.0  # detection first (25 s), silence at 40 s
    link.bytes_arrived(34.0)
    assert link.check(link.wake_at()) is LinkAction.NEXT_SETTINGS
    assert link.wake_at() == 60.0  # detect clock restarted at 35; silence at 64


def test_reconnect_delays_double_to_the_cap_and_reset_on_a_valid_telegram() -> None:
    link = supervisor()
    delays = [link.reconnect_delay() for _ in range(8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    link.connected(0.0)
    link.valid_telegram(1.0)
    assert link.reconnect_delay() == 0.5
