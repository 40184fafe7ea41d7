"""Exporter configuration from flags, ``P1_EXPORTER_*`` environment variables and YAML.

Precedence: a command-line flag beats its environment variable, which beats the
``--config`` file, which beats the default. Every error names the flag, variable
or key at fault; the CLI turns it into exit code 2.

Every number has a range (:data:`LIMITS`): a value outside it (``1e300``, ``nan``,
``inf``, zero, negative) is refused at start rather than breaking the exporter later.
Each ``--device`` address is checked here too
(:func:`~p1_exporter.meter.sources.address.check_address`).
A ``P1_EXPORTER_*`` variable that belongs to no flag is reported in
:attr:`ExporterConfig.warnings` with the closest known name.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from p1_exporter.commands import meter_keys
from p1_exporter.meter.engine import MeterConfig
from p1_exporter.meter.sources.address import check_address
from p1_exporter.meter.sources.base import SerialSettings, redact

ENV_PREFIX = "P1_EXPORTER_"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}")
DEMO_URL = "sim://?interval=1"


class ConfigError(ValueError):
    """An invalid setting; the message names it."""


@dataclass(frozen=True)
class WebSettings:
    """How the HTTP endpoint is served."""

    listen_address: str = ":9357"
    telemetry_path: str = "/metrics"
    config_file: str | None = None
    request_timeout: float = 10.0
    max_connections: int = 512
    max_connections_per_client: int = 64


@dataclass(frozen=True)
class ExporterConfig:
    """Everything the exporter needs to run."""

    meters: tuple[MeterConfig, ...]
    web: WebSettings
    log_level: str = "info"
    log_format: str = "logfmt"
    #: Things to log once logging is set up (unknown P1_EXPORTER_* variables).
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Limit:
    """The range a number must lie in, inclusive; ``unit`` is "s" or "" (a count)."""

    low: float
    high: float
    unit: str = "s"
    integer: bool = False

    def describe(self) -> str:
        if self.integer:
            return f"a whole number from {int(self.low)} to {int(self.high)}"
        unit = " seconds" if self.unit == "s" else ""
        return f"between {self.low:g} and {self.high:g}{unit}"

    def check(self, value: float) -> str | None:
        """None if ``value`` is in range, else why not."""
        if (
            not math.isfinite(value)
            or not self.low <= value <= self.high
            or (self.integer and value != int(value))
        ):
            return f"must be {self.describe()}"
        return None


#: Every number a user can set (YAML key -> range). Lower bounds keep the exporter
#: working (a 1 ms request timeout drops every scrape); upper bounds keep the values
#: within what sockets and timers accept (1e300 s overflows them) and within reason.
LIMITS: Mapping[str, Limit] = {
    "stale_after": Limit(0.1, 86400.0),
    "detect_timeout": Limit(0.1, 3600.0),
    "silence_timeout": Limit(0.1, 3600.0),
    "poll_interval": Limit(0.1, 3600.0),
    "backoff_cap": Limit(0.1, 3600.0),
    "request_timeout": Limit(0.1, 600.0),
    "max_connections": Limit(1, 1024, "", integer=True),
    "max_connections_per_client": Limit(1, 1024, "", integer=True),
    "baudrate": Limit(50, 4_000_000, "", integer=True),
}


def _ranged(key: str) -> Callable[[str], float]:
    """An argparse type: a number within ``LIMITS[key]``."""
    limit = LIMITS[key]

    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        problem = limit.check(value)
        if problem is not None:
            raise argparse.ArgumentTypeError(f"{text!r}: {problem}")
        return int(value) if limit.integer else value

    convert.__name__ = key  # argparse names the type in some messages
    return convert


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (the usage would be a dozen)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: invalid configuration: {message} (see {self.prog} --help)\n")


def _path(text: str) -> str:
    if not text.startswith("/"):
        raise argparse.ArgumentTypeError(f"{text!r} must start with /")
    return text


# flag -> (dest, type, help, group); the environment variable is derived from the flag.
def build_parser() -> argparse.ArgumentParser:
    """The exporter's argument parser, with grouped help."""
    parser = _Parser(
        prog="p1-exporter",
        description="Prometheus exporter for P1 and HAN smart meters (DSMR, encrypted P1, "
        "DLMS/COSEM). Every flag can also be set with an environment variable: "
        "--web.listen-address is P1_EXPORTER_WEB_LISTEN_ADDRESS, --device is "
        "P1_EXPORTER_DEVICE (several meters separated by spaces or commas).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="subcommands (p1-exporter SUBCOMMAND --help):\n"
        "  decode     decode a telegram or capture file and show what the exporter reads\n"
        "  simulate   run the built-in simulated meter (pty, TCP or stdout)\n"
        "  capture    record every telegram a meter sends to a capture file\n"
        "  backfill   convert captures and dumps into OpenMetrics for promtool backfilling\n\n"
        "examples:\n"
        "  p1-exporter --device /dev/ttyUSB0\n"
        "  p1-exporter --device home=/dev/serial/by-id/usb-FTDI-if00 "
        "--device garage=socket://192.0.2.10:8088\n"
        "  p1-exporter --demo",
    )
    meters = parser.add_argument_group("meters")
    meters.add_argument(
        "--device",
        action="append",
        metavar="[NAME=]URL",
        help="a meter: serial device path, socket://host:port, "
        "rfc2217://host:port, http://host/path, file:PATH or sim://. Repeat "
        "with NAME=URL for several meters (default name: main)",
    )
    meters.add_argument("--config", metavar="FILE", help="YAML file with meters and settings")
    meters.add_argument(
        "--demo", action="store_true", help=f"read the built-in simulated meter ({DEMO_URL})"
    )
    meters.add_argument(
        "--stale-after",
        type=_ranged("stale_after"),
        metavar="SECONDS",
        help="age at which a meter counts as silent and its values are withdrawn (default 60)",
    )
    serial = parser.add_argument_group(
        "serial ports (default: auto-detect 115200 8N1, then 9600 7E1)"
    )
    serial.add_argument("--baudrate", type=_ranged("baudrate"), help="fix the speed, e.g. 115200")
    serial.add_argument("--bytesize", type=int, choices=[7, 8], help="fix the byte size")
    serial.add_argument("--parity", choices=["N", "E", "O"], help="fix the parity")
    serial.add_argument(
        "--detect-timeout",
        type=_ranged("detect_timeout"),
        metavar="SECONDS",
        help="time without a valid telegram before trying the other settings (default 25)",
    )
    serial.add_argument(
        "--protocol",
        choices=["dsmr", "encrypted", "han"],
        help="what the --device meters send: dsmr (plain telegrams, the "
        "default), encrypted (DLMS-encrypted P1: Luxembourg, Austria) or han "
        "(DLMS/COSEM frames: Norway, Sweden, Denmark, Austria; auto-detects "
        "2400 8E1 and 115200 8N1)",
    )
    serial.add_argument(
        "--key-file",
        metavar="FILE",
        help="file with the --device meters' key (and auth_key); or set "
        "P1_EXPORTER_KEY / P1_EXPORTER_AUTH_KEY. Never put a key in --device",
    )
    link = parser.add_argument_group("links")
    link.add_argument(
        "--silence-timeout",
        type=_ranged("silence_timeout"),
        metavar="SECONDS",
        help="reconnect when no bytes arrive for this long (default 30)",
    )
    link.add_argument(
        "--poll-interval",
        type=_ranged("poll_interval"),
        metavar="SECONDS",
        help="how often http:// sources are polled (default 1)",
    )
    web = parser.add_argument_group("web")
    web.add_argument(
        "--web.listen-address",
        dest="web_listen_address",
        metavar="ADDRESS",
        help="address to listen on (default :9357, all interfaces)",
    )
    web.add_argument(
        "--web.telemetry-path",
        dest="web_telemetry_path",
        type=_path,
        metavar="PATH",
        help="path of the metrics (default /metrics)",
    )
    web.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="FILE",
        help="TLS and basic-auth settings in the Prometheus exporter-toolkit format",
    )
    web.add_argument(
        "--web.request-timeout",
        dest="web_request_timeout",
        type=_ranged("request_timeout"),
        metavar="SECONDS",
        help="time a client has to send its request (default 10)",
    )
    web.add_argument(
        "--web.max-connections",
        dest="web_max_connections",
        type=_ranged("max_connections"),
        metavar="N",
        help="connections served at once (default 512)",
    )
    web.add_argument(
        "--web.max-connections-per-client",
        dest="web_max_connections_per_client",
        type=_ranged("max_connections_per_client"),
        metavar="N",
        help="connections from one client address at once (default 64)",
    )
    logs = parser.add_argument_group("logging")
    logs.add_argument(
        "--log.level",
        dest="log_level",
        choices=["debug", "info", "warn", "error"],
        help="default info",
    )
    logs.add_argument(
        "--log.format", dest="log_format", choices=["logfmt", "json"], help="default logfmt"
    )
    from p1_exporter import __version__

    parser.add_argument("--version", action="version", version=f"p1-exporter {__version__}")
    return parser


def env_name(option: str) -> str:
    """``--web.listen-address`` -> ``P1_EXPORTER_WEB_LISTEN_ADDRESS``."""
    return ENV_PREFIX + re.sub(r"[.-]", "_", option.lstrip("-")).upper()


def _apply_environment(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> list[str]:
    """Use P1_EXPORTER_* variables as defaults, converted and checked like their flags.

    Returns warnings about P1_EXPORTER_* variables that belong to no flag.
    """
    defaults: dict[str, Any] = {}
    known: list[str] = []
    for action in parser._actions:  # argparse offers no public iterator over options
        if not action.option_strings or action.dest in ("help", "version"):
            continue
        option = action.option_strings[0]
        name = env_name(option)
        known.append(name)
        raw = environ.get(name)
        if raw is None:
            continue
        try:
            if action.dest == "device":
                value: Any = [part for part in re.split(r"[\s,]+", raw) if part]
            elif action.dest == "demo":
                flag = raw.strip().lower()
                if flag not in ("1", "true", "yes", "on", "0", "false", "no", "off", ""):
                    raise ValueError("use true or false")
                value = flag in ("1", "true", "yes", "on")
            else:
                value = action.type(raw) if callable(action.type) else raw
                if action.choices is not None and value not in action.choices:
                    raise ValueError(f"choose from {', '.join(map(str, action.choices))}")
        except (ValueError, argparse.ArgumentTypeError) as exc:
            reason = str(exc).removeprefix(f"{raw!r}: ")  # the value is shown once
            raise ConfigError(f"environment variable {name}={raw!r}: {reason}") from None
        # --device appends to its default, so keep the variable's meters apart: a --device
        # flag replaces them instead of adding to them (flag beats environment).
        defaults["device_env" if action.dest == "device" else action.dest] = value
    parser.set_defaults(**defaults)
    return [
        _unknown_variable(name, known)
        for name in sorted(environ)
        if name.startswith(ENV_PREFIX) and name not in known
    ]


def _unknown_variable(name: str, known: Sequence[str]) -> str:
    # Compare what follows the shared prefix, or every name would look close.
    suffixes = [k.removeprefix(ENV_PREFIX) for k in known]
    close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), suffixes, n=1, cutoff=0.6)
    hint = (
        f"did you mean {ENV_PREFIX}{close[0]}?"
        if close
        else "p1-exporter --help lists the flags; each has a variable"
    )
    return f"environment variable {name} is not a p1-exporter setting and is ignored ({hint})"


_METER_KEYS = {
    "name",
    "device",
    "baudrate",
    "bytesize",
    "parity",
    "stopbits",
    "stale_after",
    "detect_timeout",
    "silence_timeout",
    "poll_interval",
    "backoff_cap",
}
_METER_KEYS |= meter_keys.YAML_KEYS
_TOP_KEYS = {"meters", "web", "log", "defaults"}
_WEB_KEYS = {
    "listen_address",
    "telemetry_path",
    "config_file",
    "request_timeout",
    "max_connections",
    "max_connections_per_client",
}
_LOG_KEYS = {"level", "format"}


def _check_keys(where: str, value: object, allowed: set[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a mapping")
    for key in value:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}: unknown key (known: {', '.join(sorted(allowed))})")
    return value


def _show(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(where: str, value: object, key: str) -> float:
    """A YAML number checked against ``LIMITS[key]``."""
    limit = LIMITS[key]
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (limit.integer and not isinstance(value, int))
        or limit.check(value)
    ):
        raise ConfigError(f"{where}: must be {limit.describe()}, not {_show(value)}")
    return float(value)


def load_file(path: str) -> dict[str, Any]:
    """Read and shape-check a YAML configuration file."""
    from p1_exporter.yamlfile import YamlFileError, load_yaml

    try:
        data = load_yaml(path)
    except OSError as exc:
        raise ConfigError(f"--config {path}: {exc.strerror or exc}") from None
    except YamlFileError as exc:
        raise ConfigError(f"--config {path}: {exc}") from None
    return _check_keys(path, data, _TOP_KEYS)


def _meter_from_mapping(where: str, item: object, defaults: Mapping[str, Any]) -> MeterConfig:
    entry = dict(defaults)
    entry.update(_check_keys(where, item, _METER_KEYS))
    if "device" not in entry or not isinstance(entry["device"], str) or not entry["device"]:
        raise ConfigError(f"{where}.device: required (a device path or URL)")
    _check_device(f"{where}.device", entry["device"])
    kwargs: dict[str, Any] = {"url": entry["device"], "name": str(entry.get("name", "main"))}
    for key in ("stale_after", "detect_timeout", "silence_timeout", "poll_interval", "backoff_cap"):
        if key in entry:
            kwargs[key] = _number(f"{where}.{key}", entry[key], key)
    if any(k in entry for k in ("baudrate", "bytesize", "parity", "stopbits")):
        baudrate = int(_number(f"{where}.baudrate", entry.get("baudrate", 115200), "baudrate"))
        try:
            kwargs["settings"] = SerialSettings(
                baudrate,
                int(entry.get("bytesize", 8)),
                str(entry.get("parity", "N")).upper(),
                int(entry.get("stopbits", 1)),
            )
            SerialSettings.parse(str(kwargs["settings"]).replace(" ", "-"))
        except ValueError as exc:
            raise ConfigError(f"{where}: invalid serial settings: {exc}") from None
    try:
        kwargs.update(meter_keys.options_from_mapping(where, entry))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return MeterConfig(**kwargs)


def _check_device(where: str, url: str) -> None:
    try:
        check_address(url)
    except ValueError as exc:
        raise ConfigError(f"{where} {_show(redact(url), 80)}: {exc}") from None


def _split_device(text: str) -> tuple[str, str]:
    name, sep, url = text.partition("=")
    if sep and _NAME.fullmatch(name) and url:
        return name, url
    return "main", text


def load_config(argv: Sequence[str], environ: Mapping[str, str]) -> ExporterConfig:
    """Build the configuration; raises ConfigError, or SystemExit(2) for bad flags."""
    parser = build_parser()
    warnings = _apply_environment(parser, environ)
    args = parser.parse_args(list(argv))
    data = load_file(args.config) if args.config else {}
    web_file = _check_keys("web", data.get("web"), _WEB_KEYS)
    log_file = _check_keys("log", data.get("log"), _LOG_KEYS)
    defaults = _check_keys("defaults", data.get("defaults"), _METER_KEYS - {"name", "device"})

    meters: list[MeterConfig] = []
    items = data.get("meters") or []
    if not isinstance(items, list):
        raise ConfigError("meters: must be a list")
    for index, item in enumerate(items):
        meters.append(_meter_from_mapping(f"meters[{index}]", item, defaults))
    overrides: dict[str, Any] = {}
    if args.stale_after is not None:
        overrides["stale_after"] = args.stale_after
    if args.detect_timeout is not None:
        overrides["detect_timeout"] = args.detect_timeout
    if args.silence_timeout is not None:
        overrides["silence_timeout"] = args.silence_timeout
    if args.poll_interval is not None:
        overrides["poll_interval"] = args.poll_interval
    if args.baudrate or args.bytesize or args.parity:
        overrides["settings"] = SerialSettings(
            args.baudrate or 115200, args.bytesize or 8, args.parity or "N"
        )
    devices = list(args.device or getattr(args, "device_env", None) or [])
    origin = "--device" if args.device else f"environment variable {ENV_PREFIX}DEVICE:"
    if args.demo:
        devices.append(DEMO_URL)
    device_names = set()
    for text in devices:
        name, url = _split_device(text)
        _check_device(origin, url)
        meters.append(MeterConfig(url=url, name=name))
        device_names.add(name)
    try:
        meters = meter_keys.apply_flags(meters, device_names, args.protocol, args.key_file, environ)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    meters = [dataclasses.replace(m, **overrides) for m in meters]
    if not meters:
        raise ConfigError(
            "no meter configured: pass --device URL (or --demo, or --config FILE with meters)"
        )
    seen: set[str] = set()
    for meter in meters:
        if not _NAME.fullmatch(meter.name):
            raise ConfigError(f"meter name {meter.name!r}: use letters, digits, '_', '-', '.'")
        if meter.name in seen:
            raise ConfigError(
                f"meter name {meter.name!r} is used twice; name each meter with NAME=URL"
            )
        seen.add(meter.name)
    web = WebSettings(
        listen_address=args.web_listen_address or str(web_file.get("listen_address", ":9357")),
        telemetry_path=args.web_telemetry_path or str(web_file.get("telemetry_path", "/metrics")),
        config_file=args.web_config_file or web_file.get("config_file"),
        request_timeout=args.web_request_timeout
        or _number("web.request_timeout", web_file.get("request_timeout", 10.0), "request_timeout"),
        max_connections=args.web_max_connections
        or int(
            _number("web.max_connections", web_file.get("max_connections", 512), "max_connections")
        ),
        max_connections_per_client=args.web_max_connections_per_client
        or int(
            _number(
                "web.max_connections_per_client",
                web_file.get("max_connections_per_client", 64),
                "max_connections_per_client",
            )
        ),
    )
    if not web.telemetry_path.startswith("/") or web.telemetry_path in ("/", "/healthz"):
        raise ConfigError(
            f"web.telemetry_path {web.telemetry_path!r}: must be a path of its "
            "own, such as /metrics"
        )
    level = args.log_level or log_file.get("level", "info")
    fmt = args.log_format or log_file.get("format", "logfmt")
    if level not in ("debug", "info", "warn", "error"):
        raise ConfigError(f"log.level {level!r}: choose debug, info, warn or error")
    if fmt not in ("logfmt", "json"):
        raise ConfigError(f"log.format {fmt!r}: choose logfmt or json")
    return ExporterConfig(tuple(meters), web, level, fmt, tuple(warnings))
