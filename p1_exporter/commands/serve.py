"""Run the exporter: start one reader per meter and the HTTP server; stop on a signal."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from types import FrameType

from p1_exporter import __version__
from p1_exporter.commands.config import ConfigError, ExporterConfig, load_config
from p1_exporter.logs.setup import setup_logging
from p1_exporter.meter.meterset import MeterSet, make_meter
from p1_exporter.web.app import ExporterApp
from p1_exporter.web.server import ExporterHTTPServer
from p1_exporter.web.webconfig import WebConfig, WebConfigError

log = logging.getLogger("p1_exporter.main")


def build(config: ExporterConfig) -> tuple[MeterSet, ExporterHTTPServer]:
    """Create (but do not start) the readers and the server; raises ConfigError."""
    web_config = None
    if config.web.config_file:
        try:
            web_config = WebConfig.load(config.web.config_file)
        except WebConfigError as exc:
            path = config.web.config_file
            reason = str(exc).removeprefix(f"{path}: ")  # the file is named once
            raise ConfigError(f"--web.config.file {path}: {reason}") from None
    # -- meters (meter/meterset.py) ---------------------------------------------------------
    drivers = []
    for meter in config.meters:
        try:
            drivers.append(make_meter(meter))
        except ValueError as exc:
            raise ConfigError(f"meter {meter.name} ({meter.url}): {exc}") from None
    readers = MeterSet(drivers)
    app = ExporterApp(readers.snapshots, config.web.telemetry_path)
    # -- end of meters ------------------------------------------------------------------------
    try:
        server = ExporterHTTPServer(
            config.web.listen_address, app, web_config,
            request_timeout=config.web.request_timeout,
            max_connections=config.web.max_connections,
        )
    except ValueError as exc:
        raise ConfigError(f"--web.listen-address {config.web.listen_address!r}: {exc}") from None
    return readers, server


def run(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> int:
    """The exporter's main loop; returns the exit code."""
    try:
        config = load_config(argv, os.environ if environ is None else environ)
        setup_logging(config.log_level, config.log_format)
        for warning in config.warnings:
            log.warning("%s", warning)
        readers, server = build(config)
    except ConfigError as exc:
        reason = " ".join(str(exc).splitlines())  # one line, whatever the input held
        print(f"p1-exporter: invalid configuration: {reason}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"p1-exporter: cannot listen on {config.web.listen_address}: {exc.strerror}",
              file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # -- meters: until the web server runs on an event loop, the meters' loop has a thread of
    # its own (network meters on it, a thread per serial port / file) -----------------------
    readers.start()
    # -- end of meters ------------------------------------------------------------------------
    server.start()
    host, port = server.server_address[:2]
    scheme = "https" if server.tls_enabled else "http"
    log.info("p1-exporter %s listening on %s://%s:%d%s for %s", __version__, scheme,
             f"[{host}]" if ":" in host else host, port, config.web.telemetry_path,
             ", ".join(f"{r.config.name}={r.description}" for r in readers))
    stop.wait()  # signal handlers run during the wait: no wake-ups while idle
    server.shutdown()
    # -- meters: network meters are cancelled on their loop, threads get one shared second
    readers.stop(timeout=1.5)
    # -- end of meters ------------------------------------------------------------------------
    log.info("stopped")
    return 0
