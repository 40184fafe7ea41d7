"""The ``p1-exporter`` command as a real process: help, start and stop on signals,
environment variables, flag > environment > YAML precedence, configuration errors
(exit 2, naming the culprit) and JSON logs.

The helpers for real exporter processes live in :mod:`tests.helpers.exporter`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from p1_exporter import __version__, parse
from p1_exporter.metrics.collector import telegram_exposition
from tests.helpers.attacks import ALIAS_BOMB  # before issue 15: a hang at 100 % CPU, > 1.2 GB
from tests.helpers.exporter import (
    ExporterProcess,
    exporter_env,
    run_exporter,
    scrape,
)
from tests.helpers.fixtures import FIXTURES
from tests.helpers.metrics import value
from tests.helpers.net import free_port
from tests.helpers.wait import wait_for

# -- --help and --version ---------------------------------------------------------------


def test_help_lists_grouped_options() -> None:
    script = Path(sys.executable).with_name("p1-exporter")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "p1_exporter"]
    result = subprocess.run(
        [*command, "--help"],
        capture_output=True,
        text=True,
        timeout=20,
        env=exporter_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout
    groups = ["meters:", "serial ports", "links:", "web:", "logging:"]
    positions = [text.index("\n" + group) for group in groups]
    assert positions == sorted(positions)
    sections = dict(
        zip(
            groups,
            re.split(r"\n(?=meters:|serial ports|links:|web:|logging:)", text)[1:],
            strict=True,
        )
    )
    expected = {
        "meters:": ["--device", "--config", "--demo", "--stale-after"],
        "serial ports": ["--baudrate", "--bytesize", "--parity", "--detect-timeout"],
        "links:": ["--silence-timeout", "--poll-interval"],
        "web:": [
            "--web.listen-address",
            "--web.telemetry-path",
            "--web.config.file",
            "--web.request-timeout",
            "--web.max-connections",
        ],
        "logging:": ["--log.level", "--log.format"],
    }
    for group, flags in expected.items():
        for flag in flags:
            assert f"  {flag}" in sections[group], (group, flag)
    assert "P1_EXPORTER_WEB_LISTEN_ADDRESS" in text
    assert "decode" in text and "simulate" in text  # the subcommands are announced


def test_version() -> None:
    result = run_exporter("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"p1-exporter {__version__}"


# -- start, serve, stop -----------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_demo_serves_and_stops_on_signal(sig: int) -> None:
    with ExporterProcess(["--demo", "--web.listen-address", "127.0.0.1:0"]) as exporter:
        exporter.wait_listening()
        assert exporter.port != 0
        wait_for(
            lambda: value(scrape(exporter.url), "p1_up", meter="main") == 1.0,
            what="the demo meter to be up",
        )
        found = scrape(exporter.url)
        assert (value(found, "p1_telegrams_total", meter="main", result="ok") or 0) >= 1
        assert found["p1_power_import_watts"]
        code, _ = exporter.stop(sig)
    assert code == 0, exporter.log
    assert "shutting down" in exporter.log and exporter.lines[-1].endswith("msg=stopped")


def test_flags_from_environment_variables() -> None:
    env = {
        "P1_EXPORTER_WEB_LISTEN_ADDRESS": "127.0.0.1:0",
        "P1_EXPORTER_DEVICE": "home=sim://?seed=1&interval=1 shed=sim://?dialect=belgian&seed=2",
        "P1_EXPORTER_LOG_LEVEL": "debug",
    }
    with ExporterProcess([], env=env) as exporter:
        exporter.wait_listening()
        wait_for(
            lambda: (
                {value(scrape(exporter.url), "p1_up", meter=m) for m in ("home", "shed")} == {1.0}
            ),
            what="both meters up",
        )
        found = scrape(exporter.url)
        assert value(found, "p1_demand_average_watts", meter="shed") is not None  # Belgian
        assert value(found, "p1_demand_average_watts", meter="home") is None  # Dutch
        code, _ = exporter.stop()
    assert code == 0
    assert "level=debug" in exporter.log  # P1_EXPORTER_LOG_LEVEL took effect


def test_flag_beats_environment_beats_yaml(tmp_path: Path) -> None:
    config = tmp_path / "p1.yml"
    config.write_text(
        f"web:\n  listen_address: 127.0.0.1:{free_port()}\n"
        "log:\n  level: error\n"
        "meters:\n  - name: yard\n    device: sim://?seed=3\n    stale_after: 5\n"
    )
    env = {
        "P1_EXPORTER_WEB_LISTEN_ADDRESS": "127.0.0.1:0",
        "P1_EXPORTER_STALE_AFTER": "7",
        "P1_EXPORTER_LOG_LEVEL": "warn",
    }
    with ExporterProcess(
        ["--config", str(config), "--stale-after", "9", "--log.level", "info"], env=env
    ) as exporter:
        # The "listening" line is info: the flag beat warn (env) and error (YAML). Its port is
        # the one port 0 (env) picked, not the YAML one.
        exporter.wait_listening()
        found = scrape(exporter.url)
        assert value(found, "p1_stale_after_seconds", meter="yard") == 9.0
        assert exporter.stop()[0] == 0


def test_json_log_format() -> None:
    with ExporterProcess(
        ["--demo", "--web.listen-address", "127.0.0.1:0", "--log.format", "json"]
    ) as exporter:
        exporter.wait_listening()
        assert exporter.stop()[0] == 0
    entries = [json.loads(line) for line in exporter.lines]
    assert entries, "no log lines"
    for entry in entries:
        assert set(entry) >= {"ts", "level", "logger", "msg"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["ts"])
    assert any("listening on http://127.0.0.1:" in entry["msg"] for entry in entries)
    assert entries[-1]["msg"] == "stopped"


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_meter_log_lines_carry_meter_source_and_err_fields(fmt: str) -> None:
    """A user filters one meter's lines by its own key, not by matching message text."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # released: nothing listens there
    url = f"socket://127.0.0.1:{port}"
    with ExporterProcess(
        [
            "--device",
            f"yard={url}",
            "--device",
            "demo=sim://?seed=1",
            "--web.listen-address",
            "127.0.0.1:0",
            "--log.format",
            fmt,
        ]
    ) as exporter:
        exporter.wait_listening()
        wait_for(
            lambda: "refused" in exporter.log and "connected to sim://" in exporter.log,
            what="the refused connection and the demo meter's connection logged",
        )
        assert exporter.stop()[0] == 0
    refused = [line for line in exporter.lines if "refused" in line]
    assert len(refused) == 1, exporter.log
    if fmt == "json":
        entry = json.loads(refused[0])
        assert (entry["meter"], entry["source"], entry["err"]) == ("yard", url, "refused")
        assert entry["level"] == "warn"
        others = [json.loads(line) for line in exporter.lines]
        assert any(e.get("meter") == "demo" and "connected to" in e["msg"] for e in others)
    else:
        assert f" logger=reader meter=yard source={url} err=refused msg=" in refused[0]
        assert refused[0].startswith("ts=") and " level=warn " in refused[0]
        assert any(
            ' meter=demo source="sim://?seed=1" ' in line and "connected to" in line
            for line in exporter.lines
        )


def test_port_in_use_exits_one() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_exporter("--demo", "--web.listen-address", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


# -- invalid configuration: exit 2, and the message names what is wrong ------------------

WEB_CONFIG_UNKNOWN_KEY = "basic_auth_users: {}\ntls_server_confg:\n  cert_file: x\n"

YAML_UNKNOWN_KEY = "meters:\n  - name: home\n    device: sim://\n    baudrat: 115200\n"


@pytest.mark.parametrize(
    ("args", "env", "files", "culprit"),
    [
        (["--config", "{tmp}/p1.yml"], {}, {"p1.yml": YAML_UNKNOWN_KEY}, "meters[0].baudrat"),
        (["--config", "{tmp}/p1.yml"], {}, {"p1.yml": "meters: [\n"}, "not valid YAML"),
        (["--config", "{tmp}/p1.yml"], {}, {"p1.yml": "metres: []\n"}, "metres: unknown key"),
        (["--config", "{tmp}/missing.yml"], {}, {}, "--config {tmp}/missing.yml"),
        (["--config", "{tmp}"], {}, {}, "--config {tmp}: Is a directory"),
        (["--demo", "--stale-after", "-1"], {}, {}, "argument --stale-after"),
        (["--demo", "--stale-after", "soon"], {}, {}, "argument --stale-after"),
        (["--demo"], {"P1_EXPORTER_STALE_AFTER": "soon"}, {}, "P1_EXPORTER_STALE_AFTER='soon'"),
        (["--demo"], {"P1_EXPORTER_LOG_LEVEL": "loud"}, {}, "P1_EXPORTER_LOG_LEVEL='loud'"),
        (
            ["--demo"],
            {"P1_EXPORTER_WEB_MAX_CONNECTIONS": "0"},
            {},
            "P1_EXPORTER_WEB_MAX_CONNECTIONS='0'",
        ),
        (
            ["--device", "a=sim://", "--device", "a=sim://?seed=2"],
            {},
            {},
            "meter name 'a' is used twice",
        ),
        (["--device", "sim://", "--demo"], {}, {}, "meter name 'main' is used twice"),
        (["--device", "sim://?dialect=dsmr9"], {}, {}, "unknown dialect 'dsmr9'"),
        (["--device", "x=sim://?colour=red"], {}, {}, "--device 'sim://?colour=red': unknown sim"),
        (
            ["--demo", "--web.config.file", "{tmp}/web.yml"],
            {},
            {"web.yml": WEB_CONFIG_UNKNOWN_KEY},
            "tls_server_confg",
        ),
        (["--demo", "--web.config.file", "{tmp}/nope.yml"], {}, {}, "--web.config.file"),
        (["--demo", "--web.listen-address", "localhost"], {}, {}, "--web.listen-address"),
        (["--demo", "--web.telemetry-path", "metrics"], {}, {}, "argument --web.telemetry-path"),
        ([], {}, {}, "no meter configured"),
        # Issue 15: hostile or broken YAML files.
        (
            ["--config", "{tmp}/p1.yml"],
            {},
            {"p1.yml": ALIAS_BOMB},
            "--config {tmp}/p1.yml: anchor 'a' at line 3",
        ),
        (
            ["--demo", "--web.config.file", "{tmp}/web.yml"],
            {},
            {"web.yml": "basic_auth_users:\n  x: " + ALIAS_BOMB.split("stale_after: ")[1]},
            "--web.config.file {tmp}/web.yml: anchor 'a' at line 2",
        ),
        (
            ["--config", "{tmp}/p1.yml"],
            {},
            {"p1.yml": "meters: " + "[" * 50_000 + "]" * 50_000},
            "--config {tmp}/p1.yml: nested deeper than 32 levels",
        ),
        (
            ["--demo", "--web.config.file", "{tmp}/web.yml"],
            {},
            {"web.yml": "basic_auth_users: " + "[" * 50_000 + "]" * 50_000},
            "nested deeper than 32 levels",
        ),
        (["--config", "/dev/urandom"], {}, {}, "--config /dev/urandom: not a text file"),
        (
            ["--demo", "--web.config.file", "/dev/urandom"],
            {},
            {},
            "--web.config.file /dev/urandom: not a text file",
        ),
        (["--config", "/dev/zero"], {}, {}, "--config /dev/zero: not a text file"),
        (
            ["--config", "{tmp}/p1.yml"],
            {},
            {"p1.yml": "# x\n" * 70_000},
            "--config {tmp}/p1.yml: larger than 256 KiB",
        ),
        (
            ["--config", "{tmp}/p1.yml"],
            {},
            {"p1.yml": "meters:\n  - device: sim://\nmeters:\n  - device: sim://?seed=2\n"},
            "--config {tmp}/p1.yml: duplicate key 'meters' at line 3, column 1",
        ),
        (
            ["--config", "{tmp}/p1.yml"],
            {},
            {"p1.yml": "log: {level: info, level: debug}\n"},
            "duplicate key 'level'",
        ),
        # Issue 15: numbers out of range, from flags, variables and YAML.
        (
            ["--demo", "--web.request-timeout", "1e300"],
            {},
            {},
            "argument --web.request-timeout: '1e300': must be between 0.1 and 600 seconds",
        ),
        (["--demo", "--web.request-timeout", "nan"], {}, {}, "argument --web.request-timeout"),
        (["--demo", "--web.request-timeout", "inf"], {}, {}, "argument --web.request-timeout"),
        (["--demo", "--web.request-timeout", "-1"], {}, {}, "argument --web.request-timeout"),
        (
            ["--demo"],
            {"P1_EXPORTER_WEB_REQUEST_TIMEOUT": "1e300"},
            {},
            "P1_EXPORTER_WEB_REQUEST_TIMEOUT='1e300': must be between 0.1 and 600 seconds",
        ),
        (
            ["--demo", "--web.max-connections", "100000"],
            {},
            {},
            "argument --web.max-connections: '100000': must be a whole number from 1 to 1024",
        ),
        (["--demo", "--stale-after", "1e300"], {}, {}, "argument --stale-after"),
        (["--demo", "--silence-timeout", "0"], {}, {}, "argument --silence-timeout"),
        (["--demo", "--detect-timeout", "inf"], {}, {}, "argument --detect-timeout"),
        (["--demo", "--poll-interval", "1e-300"], {}, {}, "argument --poll-interval"),
        (["--demo", "--baudrate", "1000000000"], {}, {}, "argument --baudrate"),
        (
            ["--config", "{tmp}/p1.yml"],
            {},
            {"p1.yml": "web:\n  request_timeout: 1.0e+300\nmeters: [{device: 'sim://'}]\n"},
            "web.request_timeout: must be between 0.1 and 600 seconds, not 1e+300",
        ),
        (
            ["--config", "{tmp}/p1.yml"],
            {},
            {"p1.yml": "meters:\n  - device: sim://\n    stale_after: .nan\n"},
            "meters[0].stale_after: must be between 0.1 and 86400 seconds, not nan",
        ),
        # Issue 15: device addresses that can never work.
        (
            ["--device", "socket://192.0.2.1"],
            {},
            {},
            "--device 'socket://192.0.2.1': no port; write socket://192.0.2.1:PORT",
        ),
        (["--device", "tcp://192.0.2.1:8088"], {}, {}, "did you mean socket://192.0.2.1:8088?"),
        (
            ["--device", "ftp://192.0.2.1/meter"],
            {},
            {},
            "unknown scheme ftp://; use a serial device path, socket://HOST:PORT",
        ),
        (
            ["--device", "socket://192.0.2.1:70000"],
            {},
            {},
            "port '70000' is not a number from 1 to 65535",
        ),
        (
            ["--device", "{tmp}/dump.txt"],
            {},
            {"dump.txt": "/XMX5LGBBFG1012463161\r\n"},
            "is a regular file, not a serial port; use file:PATH to replay a file",
        ),
        (
            [],
            {"P1_EXPORTER_DEVICE": "a=sim:// b=rfc2217://dongle"},
            {},
            "environment variable P1_EXPORTER_DEVICE: 'rfc2217://dongle': no port",
        ),
        (
            ["--config", "{tmp}/p1.yml"],
            {},
            {"p1.yml": "meters:\n  - device: sim://\n  - name: b\n    device: tcp://h:23\n"},
            "meters[1].device 'tcp://h:23': tcp:// is not a supported scheme",
        ),
    ],
    ids=[
        "yaml-unknown-meter-key",
        "yaml-syntax",
        "yaml-unknown-top-key",
        "config-missing",
        "config-unreadable",
        "stale-after-negative",
        "stale-after-text",
        "env-stale-after",
        "env-log-level",
        "env-max-connections",
        "duplicate-names",
        "duplicate-default-name",
        "sim-dialect",
        "sim-option",
        "web-config-unknown-key",
        "web-config-missing",
        "listen-address",
        "telemetry-path",
        "no-meter",
        "alias-bomb",
        "web-alias-bomb",
        "deep-nesting",
        "web-deep-nesting",
        "urandom",
        "web-urandom",
        "zero",
        "too-large",
        "duplicate-top-key",
        "duplicate-nested-key",
        "request-timeout-1e300",
        "request-timeout-nan",
        "request-timeout-inf",
        "request-timeout-negative",
        "env-request-timeout-1e300",
        "max-connections-huge",
        "stale-after-1e300",
        "silence-timeout-zero",
        "detect-timeout-inf",
        "poll-interval-tiny",
        "baudrate-huge",
        "yaml-request-timeout-1e300",
        "yaml-nan",
        "socket-without-port",
        "tcp-scheme",
        "ftp-scheme",
        "port-out-of-range",
        "plain-file-path",
        "env-device-without-port",
        "yaml-device-tcp",
    ],
)
def test_invalid_configuration_exits_two(
    tmp_path: Path, args: list[str], env: dict[str, str], files: dict[str, str], culprit: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = run_exporter(*(a.replace("{tmp}", str(tmp_path)) for a in args), env=env)
    assert result.returncode == 2, result.stderr
    assert culprit.replace("{tmp}", str(tmp_path)) in result.stderr
    assert "listening" not in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr  # one line: the reason
    assert result.stderr.startswith("p1-exporter: invalid configuration: ")


def test_misspelled_environment_variable_is_named_once_at_start() -> None:
    env = {
        "P1_EXPORTER_STALE_AFTR": "5",
        "P1_EXPORTER_WEB_LISTEN_ADRESS": "127.0.0.1:1",
        "P1_EXPORTER_XYZZY": "1",
    }
    with ExporterProcess(["--demo", "--web.listen-address", "127.0.0.1:0"], env=env) as exporter:
        exporter.wait_listening()
        found = scrape(exporter.url)
        assert value(found, "p1_stale_after_seconds", meter="main") == 60.0  # still ignored
        assert exporter.stop()[0] == 0
    warnings = [line for line in exporter.lines if "level=warn" in line]
    assert warnings == [line for line in exporter.lines if "is not a p1-exporter setting" in line]
    assert len(warnings) == 3
    assert (
        "P1_EXPORTER_STALE_AFTR is not a p1-exporter setting and is ignored (did you mean "
        "P1_EXPORTER_STALE_AFTER?)" in warnings[0]
    )
    assert (
        "P1_EXPORTER_WEB_LISTEN_ADRESS is not a p1-exporter setting and is ignored (did "
        "you mean P1_EXPORTER_WEB_LISTEN_ADDRESS?)" in warnings[1]
    )
    assert "P1_EXPORTER_XYZZY is not a p1-exporter setting" in warnings[2]
    assert "did you mean" not in warnings[2]
    # Start-up warnings come before the "listening" line, so they are seen first.
    listening = next(i for i, line in enumerate(exporter.lines) if "listening on" in line)
    assert all(exporter.lines.index(w) < listening for w in warnings)


def test_numbers_at_the_ends_of_their_ranges_are_accepted() -> None:
    args = [
        "--demo",
        "--web.listen-address",
        "127.0.0.1:0",
        "--web.request-timeout",
        "600",
        "--web.max-connections",
        "1024",
        "--stale-after",
        "86400",
        "--silence-timeout",
        "0.1",
        "--detect-timeout",
        "3600",
        "--poll-interval",
        "0.1",
    ]
    with ExporterProcess(args) as exporter:
        exporter.wait_listening()
        wait_for(
            lambda: value(scrape(exporter.url), "p1_up", meter="main") == 1.0,
            what="the demo meter to be up",
        )
        assert value(scrape(exporter.url), "p1_stale_after_seconds", meter="main") == 86400.0
        assert exporter.stop()[0] == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_config_without_read_permission_exits_two(tmp_path: Path) -> None:
    config = tmp_path / "p1.yml"
    config.write_text("meters: []\n")
    config.chmod(0)
    result = run_exporter("--config", str(config))
    assert result.returncode == 2
    assert f"--config {config}: Permission denied" in result.stderr


def test_decode_metrics_subcommand_matches_library() -> None:
    path = FIXTURES / "fluvius_v171.txt"
    result = run_exporter("decode", "--format", "metrics", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == telegram_exposition(parse(path.read_bytes())) + "\n"
