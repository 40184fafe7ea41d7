"""Run the exporter: one asyncio event loop serves HTTP and drives the network and
simulated meters; serial ports and files keep a thread each. SIGHUP reloads the web
config, SIGTERM/SIGINT stop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence

from p1_exporter import __version__
from p1_exporter.commands.config import ConfigError, ExporterConfig, load_config
from p1_exporter.logs.setup import setup_logging
from p1_exporter.meter.loopdriver import LoopMeter
from p1_exporter.meter.meterset import MeterSet, make_meter
from p1_exporter.meter.reader import MeterReader
from p1_exporter.web.app import ExporterApp
from p1_exporter.web.live_history import MeterHistory
from p1_exporter.web.reload import WebConfigSource
from p1_exporter.web.server import ExporterHTTPServer
from p1_exporter.web.webconfig import WebConfigError

log = logging.getLogger("p1_exporter.main")


def build(config: ExporterConfig) -> tuple[MeterSet, ExporterHTTPServer]:
    """Create (but do not start) the meters and the server; raises ConfigError."""
    web_config = None
    if config.web.config_file:
        try:
            web_config = WebConfigSource.load(config.web.config_file)
        except WebConfigError as exc:
            path = config.web.config_file
            reason = str(exc).removeprefix(f"{path}: ")  # the file is named once
            raise ConfigError(f"--web.config.file {path}: {reason}") from None
    drivers: list[LoopMeter | MeterReader] = []
    histories = {meter.name: MeterHistory() for meter in config.meters}
    server: ExporterHTTPServer | None = None

    def auth_failures() -> Mapping[str, float]:
        return dict(server.auth_failures.totals) if server is not None else {}

    app = ExporterApp(
        lambda: [driver.snapshot for driver in drivers],
        config.web.telemetry_path,
        histories,
        auth_failures,
    )
    for meter in config.meters:
        history = histories[meter.name]

        # Once per new telegram, in the meter's thread or task: the live page's history.
        # The meter's /metrics lines are rendered at the first scrape that sees its new
        # snapshot, not here: Prometheus scrapes every 15 s or so, and rendering each of a
        # meter's 15 telegrams in between would cost 15 times the CPU for the same answer.
        try:
            drivers.append(make_meter(meter, on_telegram=history.observe))
        except ValueError as exc:
            raise ConfigError(f"meter {meter.name} ({meter.url}): {exc}") from None
    meters = MeterSet(drivers)
    try:
        server = ExporterHTTPServer(
            config.web.listen_address,
            app,
            web_config,
            request_timeout=config.web.request_timeout,
            max_connections=config.web.max_connections,
            max_connections_per_client=config.web.max_connections_per_client,
        )
    except ValueError as exc:
        raise ConfigError(f"--web.listen-address {config.web.listen_address!r}: {exc}") from None
    return meters, server


async def serve(config: ExporterConfig, meters: MeterSet, server: ExporterHTTPServer) -> None:
    """The exporter's main loop: serve until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_stop(signum: signal.Signals) -> None:
        log.info("received %s, shutting down", signum.name)
        stop.set()

    def on_hangup() -> None:
        log.info("received SIGHUP, reloading the web config")
        server.reload_config()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_stop, signum)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    running = asyncio.Event()  # set at shutdown: the meters stop after the server
    meters_done = asyncio.create_task(meters.run(running), name="p1-meters")
    await server.start_serving()
    host, port = server.server_address[:2]
    scheme = "https" if server.tls_enabled else "http"
    log.info(
        "p1-exporter %s listening on %s://%s:%d%s for %s",
        __version__,
        scheme,
        f"[{host}]" if ":" in host else host,
        port,
        config.web.telemetry_path,
        ", ".join(f"{m.config.name}={m.description}" for m in meters),
    )
    await stop.wait()
    await server.aclose()
    # Network meters are cancelled on the loop; the threads (serial ports, files) share one
    # deadline, as daemons, so one stuck in a slow read cannot hold the process past it.
    running.set()
    await meters_done


def run(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> int:
    """Run the exporter; returns the exit code."""
    try:
        config = load_config(argv, os.environ if environ is None else environ)
        setup_logging(config.log_level, config.log_format)
        for warning in config.warnings:
            log.warning("%s", warning)
        meters, server = build(config)
    except ConfigError as exc:
        reason = " ".join(str(exc).splitlines())  # one line, whatever the input held
        print(f"p1-exporter: invalid configuration: {reason}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"p1-exporter: cannot listen on {config.web.listen_address}: {exc.strerror}",
            file=sys.stderr,
        )
        return 1
    asyncio.run(serve(config, meters, server))
    log.info("stopped")
    return 0
