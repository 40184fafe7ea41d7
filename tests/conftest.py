"""Fixtures shared by the test modules."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture
def caplog_reader(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """caplog that records everything the reader logs, debug lines included."""
    caplog.set_level(logging.DEBUG, logger="p1_exporter.reader")
    return caplog
