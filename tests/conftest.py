"""Fixtures shared by the test modules, and the markers that whole modules carry.

Markers (registered in pyproject.toml, ``--strict-markers``):

- ``integration``: starts a real exporter or simulator process, or drives real sockets or
  ptys end to end. Whole modules get it here (:data:`INTEGRATION_MODULES`); single tests in
  other modules carry ``@pytest.mark.integration``.
- ``needs_prometheus``: needs promtool or prometheus. Given here to every test that calls
  ``require_binary("promtool")`` or ``require_binary("prometheus")``, directly or through a
  function or fixture of its module.
- ``slow``: takes more than about a second; tests carry ``@pytest.mark.slow``.

``sh scripts/test.sh -m "not slow"`` is the quick loop.
"""

from __future__ import annotations

import ast
import functools
import logging
from pathlib import Path

import pytest

#: Modules whose every test is an integration test.
INTEGRATION_MODULES = frozenset({
    "test_app.py",
    "test_exporter_cli.py",
    "test_exporter_tls.py",
    "test_fault_injection.py",
    "test_http_abuse.py",
    "test_http_server.py",
    "test_live_page.py",
    "test_live_stack.py",
    "test_packaging.py",
    "test_reader_file_sim.py",
    "test_reader_http.py",
    "test_reader_serial.py",
    "test_reader_tcp.py",
})  # fmt: skip

#: Slow tests of modules that are being rewritten; they get ``@pytest.mark.slow`` there
#: when those modules next change, and leave this list.
SLOW_ELSEWHERE = frozenset({
    "tests/test_app.py::test_stale_meter_vanishes_and_comes_back",
    "tests/test_exporter_tls.py::test_real_prometheus_scrapes_over_tls_with_basic_auth",
    "tests/test_http_abuse.py::test_concurrent_scrapers_get_no_errors_and_the_reader_keeps_up",
    "tests/test_http_abuse.py::test_an_idle_connection_flood_does_not_lock_scrapers_out",
    "tests/test_http_abuse.py::test_slow_clients_do_not_block_scrapes_and_are_cut_off",
})  # fmt: skip

PROMETHEUS_BINARIES = frozenset({"promtool", "prometheus"})


@functools.cache
def needs_prometheus(path: Path) -> frozenset[str]:
    """Names of the functions (tests, fixtures, helpers) of the module at ``path`` that call
    ``require_binary`` for promtool or prometheus, directly or through another of them."""
    calls: dict[str, set[str]] = {}
    needing: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        called = calls.setdefault(node.name, set())
        for call in ast.walk(node):
            if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
                continue
            called.add(call.func.id)
            first = call.args[0] if call.args else None
            if (call.func.id == "require_binary" and isinstance(first, ast.Constant)
                    and first.value in PROMETHEUS_BINARIES):  # fmt: skip
                needing.add(node.name)
    while grown := {name for name, called in calls.items() if called & needing} - needing:
        needing |= grown
    return frozenset(needing)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give whole modules their markers, and needs_prometheus to the tests that need it."""
    for item in items:
        path = item.path
        if path.name in INTEGRATION_MODULES:
            item.add_marker(pytest.mark.integration)
        if item.nodeid.partition("[")[0] in SLOW_ELSEWHERE:
            item.add_marker(pytest.mark.slow)
        needing = needs_prometheus(path)
        function = getattr(item, "originalname", item.name)
        if needing & {function, *getattr(item, "fixturenames", ())}:
            item.add_marker(pytest.mark.needs_prometheus)


@pytest.fixture
def caplog_reader(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """caplog that records everything the reader logs, debug lines included."""
    caplog.set_level(logging.DEBUG, logger="p1_exporter.reader")
    return caplog
