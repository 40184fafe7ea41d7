"""Exporter configuration: flags, P1_EXPORTER_* variables, the YAML --config file, their
precedence (flag > environment > file > default) and errors that name their culprit."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from p1_exporter.commands.config import (
    DEMO_URL,
    LIMITS,
    ConfigError,
    ExporterConfig,
    build_parser,
    env_name,
    load_config,
)
from p1_exporter.commands.serve import build
from p1_exporter.meter.reader import MeterConfig
from p1_exporter.meter.sources import SerialSettings, check_address


def load(*argv: str, env: dict[str, str] | None = None) -> ExporterConfig:
    return load_config(list(argv), env or {})


def yaml_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "p1.yml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def names(config: ExporterConfig) -> list[str]:
    return [meter.name for meter in config.meters]


# -- defaults and flags -----------------------------------------------------------------


def test_defaults() -> None:
    config = load("--device", "/dev/ttyUSB0")
    assert config.meters == (MeterConfig(url="/dev/ttyUSB0", name="main"),)
    assert config.meters[0].stale_after == 60.0
    assert config.meters[0].settings is None  # auto-detect
    assert config.web.listen_address == ":9357"
    assert config.web.telemetry_path == "/metrics"
    assert config.web.config_file is None
    assert (config.web.request_timeout, config.web.max_connections) == (10.0, 512)
    assert config.web.max_connections_per_client == 64
    assert (config.log_level, config.log_format) == ("info", "logfmt")


def test_named_devices_and_demo() -> None:
    config = load(
        "--device", "home=/dev/ttyUSB0", "--device", "garage=socket://192.0.2.10:8088", "--demo"
    )
    assert [(m.name, m.url) for m in config.meters] == [
        ("home", "/dev/ttyUSB0"),
        ("garage", "socket://192.0.2.10:8088"),
        ("main", DEMO_URL),
    ]


def test_a_path_with_equals_sign_is_not_a_name() -> None:
    config = load("--device", "/dev/serial/by-id/usb-x=y")
    assert [(m.name, m.url) for m in config.meters] == [("main", "/dev/serial/by-id/usb-x=y")]


def test_meter_flags_apply_to_every_meter() -> None:
    config = load(
        "--device",
        "a=/dev/ttyUSB0",
        "--device",
        "b=/dev/ttyUSB1",
        "--stale-after",
        "5",
        "--detect-timeout",
        "3",
        "--silence-timeout",
        "7",
        "--poll-interval",
        "2",
        "--baudrate",
        "9600",
        "--bytesize",
        "7",
        "--parity",
        "E",
    )
    for meter in config.meters:
        assert meter.stale_after == 5.0
        assert meter.detect_timeout == 3.0
        assert meter.silence_timeout == 7.0
        assert meter.poll_interval == 2.0
        assert meter.settings == SerialSettings(9600, 7, "E")


def test_web_and_log_flags() -> None:
    config = load(
        "--demo",
        "--web.listen-address",
        "127.0.0.1:9999",
        "--web.telemetry-path",
        "/p1",
        "--web.config.file",
        "web.yml",
        "--web.request-timeout",
        "2.5",
        "--web.max-connections",
        "3",
        "--log.level",
        "debug",
        "--log.format",
        "json",
    )
    assert config.web.listen_address == "127.0.0.1:9999"
    assert config.web.telemetry_path == "/p1"
    assert config.web.config_file == "web.yml"
    assert (config.web.request_timeout, config.web.max_connections) == (2.5, 3)
    assert (config.log_level, config.log_format) == ("debug", "json")


# -- environment variables --------------------------------------------------------------


def test_env_names_follow_the_flags() -> None:
    assert env_name("--web.listen-address") == "P1_EXPORTER_WEB_LISTEN_ADDRESS"
    assert env_name("--device") == "P1_EXPORTER_DEVICE"
    assert env_name("--log.level") == "P1_EXPORTER_LOG_LEVEL"
    assert env_name("--stale-after") == "P1_EXPORTER_STALE_AFTER"


def _serial(config: ExporterConfig) -> SerialSettings:
    settings = config.meters[0].settings
    assert settings is not None
    return settings


#: option -> (value for its environment variable, how it shows in the config)
ENV_SAMPLES: dict[str, tuple[str, Callable[[ExporterConfig], object], object]] = {
    "--device": ("sim://", lambda c: c.meters[0].url, "sim://"),
    "--config": ("{yaml}", lambda c: c.meters[0].name, "home"),
    "--demo": ("true", lambda c: c.meters[0].url, DEMO_URL),
    "--stale-after": ("4", lambda c: c.meters[0].stale_after, 4.0),
    "--baudrate": ("9600", lambda c: _serial(c).baudrate, 9600),
    "--bytesize": ("7", lambda c: _serial(c).bytesize, 7),
    "--parity": ("E", lambda c: _serial(c).parity, "E"),
    "--detect-timeout": ("3", lambda c: c.meters[0].detect_timeout, 3.0),
    "--silence-timeout": ("6", lambda c: c.meters[0].silence_timeout, 6.0),
    "--poll-interval": ("2", lambda c: c.meters[0].poll_interval, 2.0),
    "--web.listen-address": ("[::1]:1", lambda c: c.web.listen_address, "[::1]:1"),
    "--web.telemetry-path": ("/x", lambda c: c.web.telemetry_path, "/x"),
    "--web.config.file": ("w.yml", lambda c: c.web.config_file, "w.yml"),
    "--web.request-timeout": ("3", lambda c: c.web.request_timeout, 3.0),
    "--web.max-connections": ("5", lambda c: c.web.max_connections, 5),
    "--web.max-connections-per-client": ("7", lambda c: c.web.max_connections_per_client, 7),
    "--log.level": ("warn", lambda c: c.log_level, "warn"),
    "--log.format": ("json", lambda c: c.log_format, "json"),
    "--protocol": ("han", lambda c: c.meters[0].protocol, "han"),
    "--key-file": (
        str(Path(__file__).parent / "fixtures" / "han" / "example.key"),
        lambda c: c.meters[0].protocol,
        "encrypted",
    ),
}


def test_every_flag_has_an_environment_variable() -> None:
    options = [
        a.option_strings[0]
        for a in build_parser()._actions
        if a.option_strings and a.dest not in ("help", "version")
    ]
    assert sorted(options) == sorted(ENV_SAMPLES)


@pytest.mark.parametrize("option", ENV_SAMPLES)
def test_environment_variable_alone_sets_the_option(tmp_path: Path, option: str) -> None:
    raw, read, expected = ENV_SAMPLES[option]
    env = {
        env_name(option): raw.replace(
            "{yaml}", yaml_file(tmp_path, "meters:\n  - name: home\n    device: sim://\n")
        )
    }
    if option not in ("--device", "--demo", "--config"):
        env["P1_EXPORTER_DEVICE"] = "/dev/ttyUSB0"
    assert read(load_config([], env)) == expected


@pytest.mark.parametrize("separator", [" ", ",", ", ", "\n"])
def test_env_device_lists_several_meters(separator: str) -> None:
    config = load(env={"P1_EXPORTER_DEVICE": f"a=sim://?seed=1{separator}b=sim://?seed=2"})
    assert [(m.name, m.url) for m in config.meters] == [
        ("a", "sim://?seed=1"),
        ("b", "sim://?seed=2"),
    ]


def test_device_flag_replaces_env_devices() -> None:
    config = load("--device", "x=sim://", env={"P1_EXPORTER_DEVICE": "a=sim:// b=sim://"})
    assert names(config) == ["x"]


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("P1_EXPORTER_STALE_AFTER", "soon"),
        ("P1_EXPORTER_STALE_AFTER", "0"),
        ("P1_EXPORTER_STALE_AFTER", "nan"),
        ("P1_EXPORTER_STALE_AFTER", "inf"),
        ("P1_EXPORTER_BAUDRATE", "fast"),
        ("P1_EXPORTER_BYTESIZE", "9"),
        ("P1_EXPORTER_PARITY", "X"),
        ("P1_EXPORTER_LOG_LEVEL", "loud"),
        ("P1_EXPORTER_LOG_FORMAT", "xml"),
        ("P1_EXPORTER_WEB_TELEMETRY_PATH", "metrics"),
        ("P1_EXPORTER_WEB_MAX_CONNECTIONS", "0"),
        ("P1_EXPORTER_WEB_REQUEST_TIMEOUT", "-1"),
        ("P1_EXPORTER_DEMO", "sure"),
    ],
)
def test_bad_env_value_names_the_variable(variable: str, raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(env={"P1_EXPORTER_DEVICE": "sim://", variable: raw})
    assert f"environment variable {variable}={raw!r}" in str(caught.value)


def test_unrelated_env_variables_are_ignored() -> None:
    config = load("--demo", env={"P1_EXPORTER_COLOUR": "red", "STALE_AFTER": "x"})
    assert config.meters[0].stale_after == 60.0


@pytest.mark.parametrize(
    ("variable", "suggestion"),
    [
        ("P1_EXPORTER_STALE_AFTR", "P1_EXPORTER_STALE_AFTER"),
        ("P1_EXPORTER_DEVICES", "P1_EXPORTER_DEVICE"),
        ("P1_EXPORTER_LISTEN_ADDRESS", "P1_EXPORTER_WEB_LISTEN_ADDRESS"),
        ("P1_EXPORTER_LOGLEVEL", "P1_EXPORTER_LOG_LEVEL"),
        ("P1_EXPORTER_WEB_CONFIG", "P1_EXPORTER_WEB_CONFIG_FILE"),
        ("P1_EXPORTER_COLOUR", None),
    ],
)
def test_unknown_p1_exporter_variable_is_warned_with_the_closest_name(
    variable: str, suggestion: str | None
) -> None:
    config = load("--demo", env={variable: "1", "OTHER_STALE_AFTR": "1"})
    assert len(config.warnings) == 1
    warning = config.warnings[0]
    assert warning.startswith(f"environment variable {variable} is not a p1-exporter setting")
    if suggestion is None:
        assert "did you mean" not in warning
    else:
        assert warning.endswith(f"(did you mean {suggestion}?)")


def test_known_variables_cause_no_warning() -> None:
    env = {
        env_name(option): raw
        for option, (raw, _, _) in ENV_SAMPLES.items()
        if option not in ("--config", "--demo")
    }
    assert load(env=env).warnings == ()


# -- precedence: flag > environment > YAML > default -------------------------------------

PRECEDENCE_YAML = """\
web:
  listen_address: 127.0.0.1:1001
log:
  level: error
meters:
  - name: home
    device: sim://
    stale_after: 5
"""


@pytest.mark.parametrize(
    ("use_env", "use_flag", "expected"),
    [
        (False, False, ("127.0.0.1:1001", 5.0, "error")),
        (True, False, ("127.0.0.1:1002", 7.0, "warn")),
        (True, True, ("127.0.0.1:1003", 9.0, "debug")),
        (False, True, ("127.0.0.1:1003", 9.0, "debug")),
    ],
    ids=["yaml", "env-beats-yaml", "flag-beats-env", "flag-beats-yaml"],
)
def test_precedence(
    tmp_path: Path, use_env: bool, use_flag: bool, expected: tuple[str, float, str]
) -> None:
    argv = ["--config", yaml_file(tmp_path, PRECEDENCE_YAML)]
    env = {}
    if use_env:
        env = {
            "P1_EXPORTER_WEB_LISTEN_ADDRESS": "127.0.0.1:1002",
            "P1_EXPORTER_STALE_AFTER": "7",
            "P1_EXPORTER_LOG_LEVEL": "warn",
        }
    if use_flag:
        argv += [
            "--web.listen-address",
            "127.0.0.1:1003",
            "--stale-after",
            "9",
            "--log.level",
            "debug",
        ]
    config = load_config(argv, env)
    assert names(config) == ["home"]
    assert (config.web.listen_address, config.meters[0].stale_after, config.log_level) == expected


# -- the YAML file ----------------------------------------------------------------------


def test_full_yaml(tmp_path: Path) -> None:
    path = yaml_file(
        tmp_path,
        """\
defaults:
  stale_after: 30
  silence_timeout: 12
meters:
  - name: home
    device: /dev/ttyUSB0
    baudrate: 9600
    bytesize: 7
    parity: e
  - name: shed
    device: socket://192.0.2.7:8088
    stale_after: 90
    backoff_cap: 4
web:
  listen_address: "[::1]:9400"
  telemetry_path: /p1/metrics
  config_file: web.yml
  request_timeout: 4
  max_connections: 8
log:
  level: warn
  format: json
""",
    )
    config = load("--config", path, "--device", "extra=sim://")
    home, shed, extra = config.meters
    assert home == MeterConfig(
        url="/dev/ttyUSB0",
        name="home",
        settings=SerialSettings(9600, 7, "E"),
        stale_after=30.0,
        silence_timeout=12.0,
    )
    assert (shed.url, shed.stale_after, shed.silence_timeout, shed.backoff_cap) == (
        "socket://192.0.2.7:8088",
        90.0,
        12.0,
        4.0,
    )
    assert shed.settings is None
    assert (extra.name, extra.url, extra.stale_after) == ("extra", "sim://", 60.0)
    assert config.web.listen_address == "[::1]:9400"
    assert config.web.telemetry_path == "/p1/metrics"
    assert config.web.config_file == "web.yml"
    assert (config.web.request_timeout, config.web.max_connections) == (4.0, 8)
    assert (config.log_level, config.log_format) == ("warn", "json")


def test_empty_yaml_file_needs_a_meter_elsewhere(tmp_path: Path) -> None:
    path = yaml_file(tmp_path, "")
    assert names(load("--config", path, "--demo")) == ["main"]
    with pytest.raises(ConfigError, match="no meter configured"):
        load("--config", path)


@pytest.mark.parametrize(
    ("text", "culprit"),
    [
        ("meters:\n  - device: sim://\n    baudrat: 115200\n", "meters[0].baudrat: unknown key"),
        (
            "meters:\n  - device: sim://\n  - name: b\n    devise: sim://\n",
            "meters[1].devise: unknown key",
        ),
        ("meters:\n  - name: b\n", "meters[0].device: required"),
        ("meters:\n  - name: b\n    device: ''\n", "meters[0].device: required"),
        ("meters: sim://\n", "meters: must be a list"),
        ("meters:\n  - sim://\n", "meters[0]: must be a mapping"),
        ("meters:\n  - device: sim://\n    stale_after: -3\n", "meters[0].stale_after"),
        ("meters:\n  - device: sim://\n    stale_after: '10'\n", "meters[0].stale_after"),
        ("meters:\n  - device: sim://\n    stale_after: true\n", "meters[0].stale_after"),
        ("meters:\n  - device: /dev/ttyS0\n    baudrate: 9600.5\n", "meters[0].baudrate"),
        ("meters:\n  - device: /dev/ttyS0\n    bytesize: 9\n", "meters[0]: invalid serial"),
        ("meters:\n  - device: /dev/ttyS0\n    parity: X\n", "meters[0]: invalid serial"),
        ("meters:\n  - name: a b\n    device: sim://\n", "meter name 'a b'"),
        (
            "meters:\n  - {name: a, device: 'sim://'}\n  - {name: a, device: 'sim://'}\n",
            "meter name 'a' is used twice",
        ),
        ("defaults:\n  name: x\nmeters: []\n", "defaults.name: unknown key"),
        ("web:\n  listen: :1\n", "web.listen: unknown key"),
        ("web:\n  max_connections: 2.5\n", "web.max_connections"),
        ("web:\n  request_timeout: 0\n", "web.request_timeout"),
        ("web:\n  telemetry_path: /healthz\n", "web.telemetry_path '/healthz'"),
        ("web:\n  telemetry_path: metrics\n", "web.telemetry_path 'metrics'"),
        ("log:\n  level: loud\n", "log.level 'loud'"),
        ("log:\n  format: xml\n", "log.format 'xml'"),
        ("log: [info]\n", "log: must be a mapping"),
        ("logging:\n  level: info\n", "logging: unknown key"),
        ("- meters\n", "must be a mapping"),
        ("meters: [\n", "not valid YAML"),
    ],
)
def test_yaml_errors_name_the_key(tmp_path: Path, text: str, culprit: str) -> None:
    path = yaml_file(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load("--config", path, "--device", "other=sim://")
    assert culprit in str(caught.value)


def test_unreadable_config_file(tmp_path: Path) -> None:
    for path in (tmp_path / "missing.yml", tmp_path):
        with pytest.raises(ConfigError, match=f"--config {path}: "):
            load("--config", str(path))


# -- ranges: every number, whichever way it is set ----------------------------------------

#: flag -> (YAML key and where it goes, lowest and highest value accepted)
RANGED = {
    "--stale-after": ("meters", "stale_after", 0.1, 86400),
    "--detect-timeout": ("meters", "detect_timeout", 0.1, 3600),
    "--silence-timeout": ("meters", "silence_timeout", 0.1, 3600),
    "--poll-interval": ("meters", "poll_interval", 0.1, 3600),
    "--web.request-timeout": ("web", "request_timeout", 0.1, 600),
    "--web.max-connections": ("web", "max_connections", 1, 1024),
    "--web.max-connections-per-client": ("web", "max_connections_per_client", 1, 1024),
    "--baudrate": ("meters", "baudrate", 50, 4_000_000),
}
OUT_OF_RANGE = ["nan", "inf", "-inf", "1e300", "-1", "0", "1e-300"]


def test_every_numeric_flag_has_a_range() -> None:
    numeric = [
        a.option_strings[0]
        for a in build_parser()._actions
        if a.type is not None and a.option_strings[0] not in ("--web.telemetry-path", "--bytesize")
    ]
    assert sorted(numeric) == sorted(RANGED)
    assert set(LIMITS) == {key for _, key, _, _ in RANGED.values()} | {"backoff_cap"}


@pytest.mark.parametrize("flag", RANGED)
def test_range_ends_are_accepted(flag: str) -> None:
    section, key, low, high = RANGED[flag]
    for number in (low, high):
        config = load("--device", "/dev/ttyUSB0", flag, str(number))
        if key == "baudrate":
            assert _serial(config).baudrate == number
        elif section == "web":
            assert getattr(config.web, key) == number
        else:
            assert getattr(config.meters[0], key) == number


@pytest.mark.parametrize("raw", OUT_OF_RANGE)
@pytest.mark.parametrize("flag", RANGED)
def test_out_of_range_flag_exits_two_naming_flag_and_range(
    capsys: pytest.CaptureFixture[str], flag: str, raw: str
) -> None:
    _, _, low, high = RANGED[flag]
    with pytest.raises(SystemExit) as caught:
        load("--demo", f"{flag}={raw}")  # "=": argparse takes a bare -inf for an option
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"argument {flag}: {raw!r}: must be " in err
    assert f"{low:g} and {high:g}" in err or f"from {low} to {high}" in err


@pytest.mark.parametrize("raw", OUT_OF_RANGE)
@pytest.mark.parametrize("flag", RANGED)
def test_out_of_range_variable_names_variable_and_range(flag: str, raw: str) -> None:
    variable = env_name(flag)
    with pytest.raises(ConfigError, match=rf"^environment variable {variable}={raw!r}: .*must be"):
        load(env={"P1_EXPORTER_DEVICE": "/dev/ttyUSB0", variable: raw})


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1.0e+300", "-1", "0", "1.0e-300"])
@pytest.mark.parametrize("key", sorted(LIMITS))
def test_out_of_range_yaml_value_names_key_and_range(tmp_path: Path, key: str, value: str) -> None:
    if key in ("request_timeout", "max_connections", "max_connections_per_client"):
        text, where = f"web:\n  {key}: {value}\nmeters: [{{device: sim://}}]\n", f"web.{key}"
    else:
        text = f"meters:\n  - device: /dev/ttyUSB0\n    {key}: {value}\n"
        where = f"meters[0].{key}"
    with pytest.raises(ConfigError) as caught:
        load("--config", yaml_file(tmp_path, text))
    message = str(caught.value)
    assert message.startswith(f"{where}: must be ")
    assert LIMITS[key].describe() in message


def test_yaml_error_shows_a_long_value_shortened(tmp_path: Path) -> None:
    text = "meters:\n  - device: sim://\n    stale_after: [" + "1, " * 2000 + "]\n"
    with pytest.raises(ConfigError) as caught:
        load("--config", yaml_file(tmp_path, text))
    assert len(str(caught.value)) < 150


# -- device addresses: checked at load ------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("socket://192.0.2.1", "no port; write socket://192.0.2.1:PORT"),
        ("socket://192.0.2.1:", "no port"),
        ("rfc2217://[2001:db8::1]", "no port; write rfc2217://2001:db8::1:PORT"),
        ("socket://:8088", "no host; write socket://HOST:PORT"),
        ("socket://192.0.2.1:65536", "port '65536' is not a number from 1 to 65535"),
        ("socket://192.0.2.1:0", "port 0 is not a number from 1 to 65535"),
        ("socket://192.0.2.1:http", "port 'http' is not a number from 1 to 65535"),
        ("http://192.0.2.1:99999/telegram", "port '99999' is not a number"),
        ("http:///telegram", "no host; write http://HOST/PATH"),
        (
            "tcp://192.0.2.1:8088",
            "tcp:// is not a supported scheme; did you mean socket://192.0.2.1:8088?",
        ),
        ("telnet://dongle:23", "did you mean socket://dongle:23?"),
        (
            "ftp://192.0.2.1/x",
            "unknown scheme ftp://; use a serial device path, "
            "socket://HOST:PORT, rfc2217://HOST:PORT, http://HOST/PATH, "
            "https://HOST/PATH, file:PATH, sim://",
        ),
        ("serial:///dev/ttyUSB0", "unknown scheme serial://"),
        ("Socket://h:1", "write the scheme in lower case: socket://"),
        ("/", "is a directory, not a serial port"),
        ("sim://?dialect=dsmr9", "unknown dialect 'dsmr9'"),
        ("sim://?bogus=1", "unknown sim:// option 'bogus'"),
        ("sim://?interval=-1", "interval must be a positive"),
    ],
)
def test_impossible_device_addresses_are_refused(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)) as direct:
        check_address(url)
    with pytest.raises(ConfigError) as caught:
        load("--device", f"m={url}")
    assert str(caught.value) == f"--device {url!r}: {direct.value}"


@pytest.mark.parametrize(
    "url",
    [
        "/dev/ttyUSB0",
        "/dev/serial/by-id/usb-not-plugged-in-yet",
        "/dev/null",
        "socket://192.0.2.1:8088",
        "socket://[2001:db8::1]:8088",
        "rfc2217://dongle:2217",
        "http://192.0.2.1/api/v1/telegram",
        "https://user:pw@meter.example:8443/t",
        "file:capture.p1c",
        "file:/tmp/x?pace=fast",
        "sim://",
        "sim://?dialect=belgian",
        "loop://",
        "spy:///dev/ttyUSB0",
    ],
)
def test_possible_device_addresses_pass(url: str) -> None:
    check_address(url)
    assert load("--device", url).meters[0].url == url


def test_capture_file_as_plain_path_points_to_file_scheme(tmp_path: Path) -> None:
    capture = tmp_path / "meter.txt"
    capture.write_bytes(b"/XMX5LGBBFG1012463161\r\n\r\n1-3:0.2.8(42)\r\n!ABCD\r\n")
    for argv, env, where in (
        (["--device", str(capture)], {}, "--device"),
        (
            [],
            {"P1_EXPORTER_DEVICE": f"a=sim:// b={capture}"},
            "environment variable P1_EXPORTER_DEVICE:",
        ),
        (
            ["--config", yaml_file(tmp_path, f"meters:\n  - device: {capture}\n")],
            {},
            "meters[0].device",
        ),
    ):
        with pytest.raises(ConfigError) as caught:
            load(*argv, env=env)
        assert str(caught.value) == (
            f"{where} {str(capture)!r}: is a regular file, not a "
            "serial port; use file:PATH to replay a file"
        )
    assert load("--device", f"file:{capture}").meters[0].url == f"file:{capture}"


def test_password_in_a_refused_address_is_not_shown() -> None:
    with pytest.raises(ConfigError) as caught:
        load("--device", "http://user:secret@:8080/t")
    assert "secret" not in str(caught.value)


# -- flags refused by argparse (exit 2 with a one-line message naming the flag) -------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--stale-after", "-1"],
        ["--stale-after", "0"],
        ["--stale-after", "nan"],
        ["--stale-after", "later"],
        ["--web.telemetry-path", "metrics"],
        ["--web.max-connections", "0"],
        ["--log.level", "verbose"],
        ["--bytesize", "9"],
        ["--no-such-flag"],
    ],
)
def test_bad_flags_exit_two(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        load("--demo", *argv)
    assert caught.value.code == 2
    assert argv[0] in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "culprit"),
    [
        (["--device", "a=sim://", "--device", "a=sim://"], "meter name 'a' is used twice"),
        (["--device", "sim://", "--device", "/dev/ttyUSB0"], "meter name 'main' is used twice"),
        (["--demo", "--web.telemetry-path", "/"], "web.telemetry_path '/'"),
        ([], "no meter configured"),
    ],
)
def test_config_errors(argv: list[str], culprit: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(*argv)
    assert culprit in str(caught.value)


# -- exporter.build: errors found when the parts are created ------------------------------


@pytest.mark.parametrize(
    ("argv", "culprit"),
    [
        (["--device", "file:x.txt?speed=2"], "unknown file: option 'speed'"),
        (["--demo", "--web.listen-address", "nowhere"], "--web.listen-address 'nowhere'"),
        (["--demo", "--web.listen-address", "127.0.0.1:70000"], "--web.listen-address"),
    ],
)
def test_build_errors_name_the_meter_or_flag(argv: list[str], culprit: str) -> None:
    config = load(*argv)
    with pytest.raises(ConfigError) as caught:
        build(config)
    assert culprit in str(caught.value)


@pytest.mark.parametrize(
    ("text", "culprit"),
    [
        ("basic_auth_users: {}\nextra_key: 1\n", "extra_key: unknown key"),
        ("basic_auth_users:\n  admin: not-a-bcrypt-hash\n", "basic_auth_users.admin"),
        (
            "tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: /nonexistent.key\n",
            "/nonexistent.",
        ),
    ],
)
def test_build_web_config_errors_name_the_file_and_key(
    tmp_path: Path, text: str, culprit: str
) -> None:
    web = tmp_path / "web.yml"
    web.write_text(text)
    config = load("--demo", "--web.listen-address", "127.0.0.1:0", "--web.config.file", str(web))
    with pytest.raises(ConfigError) as caught:
        build(config)
    message = str(caught.value)
    assert message.startswith(f"--web.config.file {web}: ")
    assert culprit in message


def test_build_creates_one_reader_per_meter() -> None:
    config = load(
        "--device",
        "a=sim://?seed=1",
        "--device",
        "b=sim://?dialect=belgian",
        "--web.listen-address",
        "127.0.0.1:0",
    )
    readers, server = build(config)
    try:
        assert [r.config.name for r in readers] == ["a", "b"]
        assert server.server_address[0] == "127.0.0.1" and server.server_address[1] > 0
        assert not server.tls_enabled
        assert not any(r.alive for r in readers)  # built, not started
    finally:
        server.shutdown()
