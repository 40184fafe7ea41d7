"""A meter's protocol, keys and HAN scalers from the YAML config, a key file or the
environment.

Keys never come from ``--device`` (URLs land in logs, labels, ``/api/v1/meters``
and ``ps``) nor from a flag of the exporter; they are kept out of every repr.
A key is exactly 32 hex digits; anything else is refused at start. Errors are
ValueErrors naming the setting at fault; the config turns them into exit 2.

* YAML, per meter: ``protocol: dsmr|encrypted|han``, ``key``, ``auth_key``, or
  ``key_file`` (a file whose lines are ``key: HEX`` and ``auth_key: HEX``, or
  the encryption key alone on its first line).
* Flags for ``--device`` meters: ``--protocol`` and ``--key-file``.
* Environment: ``P1_EXPORTER_KEY`` and ``P1_EXPORTER_AUTH_KEY`` for ``--device``
  meters without a key of their own.

An encrypted P1 meter without ``auth_key`` uses Luxembourg's published one.

A HAN meter's owner may set the scalers of values the meter sends without one
(``han_scalers: {voltage: -1}`` in YAML, ``--han-scaler voltage=-1`` for ``decode`` and
``backfill``):
quantity (``core.cosem.SCALER_KINDS``) to a power of ten from -6 to 6.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from p1_exporter.core.cipher import LUXEMBOURG_AUTH_KEY, Keys, parse_key, require_crypto
from p1_exporter.core.cosem import SCALER_KINDS
from p1_exporter.meter.engine import MeterConfig
from p1_exporter.meter.protocol import PROTOCOLS

YAML_KEYS = frozenset({"protocol", "key", "auth_key", "key_file", "han_scalers"})
#: The powers of ten a HAN scaler may be.
SCALER_RANGE = (-6, 6)
ENV_KEY = "P1_EXPORTER_KEY"
ENV_AUTH_KEY = "P1_EXPORTER_AUTH_KEY"


def read_key_file(path: str) -> tuple[str, str | None]:
    """(key, auth key or None) as text from a key file; ValueError when unreadable."""
    try:
        with open(path, encoding="ascii") as handle:
            text = handle.read(4096)
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"key file {path}: cannot read it ({exc.__class__.__name__})") from None
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    values: dict[str, str] = {}
    for index, line in enumerate(lines):
        name, sep, value = line.partition(":")
        if not sep:
            name, value = ("key" if index == 0 else "auth_key"), line
        name = name.strip().lower()
        if name not in ("key", "auth_key"):
            raise ValueError(f"key file {path}: unknown entry {name!r} (use key, auth_key)")
        values[name] = value.strip()
    if "key" not in values:
        raise ValueError(f"key file {path}: no key in it")
    return values["key"], values.get("auth_key")


def _keys(where: str, protocol: str, key: str | None, auth: str | None) -> Keys | None:
    if key is None:
        if auth is not None:
            raise ValueError(f"{where}: an auth_key without a key")
        if protocol == "encrypted":
            raise ValueError(
                f"{where}: protocol encrypted needs the meter's key (32 hex "
                "digits, from the grid operator; Luxembourg: the supplier's "
                "customer portal)"
            )
        return None
    if protocol == "dsmr":
        raise ValueError(
            f"{where}: a key is configured but protocol is dsmr; set protocol "
            "encrypted (encrypted P1) or han"
        )
    encryption = parse_key(key, f"{where}.key")
    if auth is not None:
        authentication: bytes | None = parse_key(auth, f"{where}.auth_key")
    else:
        authentication = LUXEMBOURG_AUTH_KEY if protocol == "encrypted" else None
    try:
        require_crypto()
    except RuntimeError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return Keys(encryption, authentication)


def _protocol(where: str, value: object) -> str:
    if value not in PROTOCOLS:
        raise ValueError(f"{where}.protocol: choose {', '.join(PROTOCOLS)}, not {value!r}")
    return str(value)


def _text(where: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where}: must be a string of 32 hex digits (quote it in YAML)")
    return value


def options_from_mapping(where: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """MeterConfig keyword arguments from a YAML meter entry's protocol and key keys."""
    protocol = _protocol(where, entry.get("protocol", "dsmr"))
    key = entry.get("key")
    auth = entry.get("auth_key")
    if "key_file" in entry:
        if key is not None:
            raise ValueError(f"{where}: give key or key_file, not both")
        key, file_auth = read_key_file(_text(f"{where}.key_file", entry["key_file"]))
        auth = auth if auth is not None else file_auth
    key = None if key is None else _text(f"{where}.key", key)
    auth = None if auth is None else _text(f"{where}.auth_key", auth)
    options: dict[str, Any] = {"protocol": protocol, "keys": _keys(where, protocol, key, auth)}
    if "han_scalers" in entry:
        if protocol != "han":
            raise ValueError(f"{where}.han_scalers: only for protocol han, not {protocol}")
        options["han_scalers"] = han_scalers(f"{where}.han_scalers", entry["han_scalers"])
    return options


def _scaler(kind: object, value: object) -> tuple[str, int]:
    """One (quantity, power of ten); ValueError saying what is wrong."""
    if kind not in SCALER_KINDS:
        raise ValueError(f"unknown quantity {kind!r} (known: {', '.join(SCALER_KINDS)})")
    low, high = SCALER_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{kind}: a power of ten from {low} to {high} (-1: tenths), not {value!r}")
    return str(kind), value


def han_scalers(where: str, value: object) -> tuple[tuple[str, int], ...]:
    """A HAN meter's scalers from YAML (quantity: power of ten); ValueError naming ``where``."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: a mapping of quantity to power of ten, e.g. {{voltage: -1}}")
    out = []
    for kind, power in value.items():
        try:
            out.append(_scaler(kind, power))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    return tuple(sorted(out))


def parse_scaler_option(text: str) -> tuple[str, int]:
    """``--han-scaler KIND=N`` as (kind, N); ValueError (argparse's type) when malformed."""
    kind, sep, power = text.partition("=")
    try:
        number = int(power.strip())
    except ValueError:
        number = None
    if not sep or number is None:
        raise ValueError(f"{text!r}: write QUANTITY=POWER, e.g. voltage=-1")
    try:
        return _scaler(kind.strip(), number)
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None


def apply_flags(
    meters: Sequence[MeterConfig],
    device_names: set[str],
    protocol: str | None,
    key_file: str | None,
    environ: Mapping[str, str],
) -> list[MeterConfig]:
    """Give the ``--device`` meters (named in ``device_names``) the flags' protocol and keys."""
    key: str | None = environ.get(ENV_KEY)
    auth: str | None = environ.get(ENV_AUTH_KEY)
    where = ENV_KEY
    if key_file is not None:
        key, file_auth = read_key_file(key_file)
        auth = file_auth if file_auth is not None else auth
        where = f"--key-file {key_file}"
    out = []
    for meter in meters:
        if meter.name in device_names and (protocol or key is not None):
            chosen = protocol or ("encrypted" if key is not None else meter.protocol)
            keys = _keys(where, chosen, key, auth)
            meter = dataclasses.replace(meter, protocol=chosen, keys=keys)
        out.append(meter)
    return out


def add_protocol_arguments(
    parser: argparse.ArgumentParser,
    *,
    default: str = "dsmr",
    what: str = "the meter sends",
    scalers: bool = True,
) -> None:
    """``--protocol``, ``--key``, ``--auth-key`` and ``--key-file`` of the subcommands that
    read a meter's bytes themselves (decode, capture, backfill), and ``--han-scaler`` where
    values are scaled (``scalers``). ``default`` "auto" lets ``--protocol`` be recognised
    from the data."""
    choices = ["auto", *PROTOCOLS] if default == "auto" else list(PROTOCOLS)
    parser.add_argument(
        "--protocol",
        choices=choices,
        default=default,
        help=f"what {what} (default: {'recognised' if default == 'auto' else default})",
    )
    parser.add_argument(
        "--key",
        metavar="HEX",
        help="encryption key (32 hex digits) of an "
        "encrypted meter; visible in ps, prefer --key-file",
    )
    parser.add_argument(
        "--auth-key",
        metavar="HEX",
        help="authentication key (default for encrypted P1: Luxembourg's published one)",
    )
    parser.add_argument(
        "--key-file", metavar="FILE", help="file with key: HEX (and auth_key: HEX) lines"
    )
    if not scalers:  # capture keeps bytes and outcomes: no value is scaled there
        return
    parser.add_argument(
        "--han-scaler",
        dest="han_scalers",
        metavar="QUANTITY=POWER",
        type=_scaler_argument,
        action="append",
        default=[],
        help="HAN: the power of ten of a quantity the meter sends without a scaler "
        "(current, voltage, power, energy; e.g. voltage=-1 for 0.1 V); repeatable, "
        "as han_scalers in the config",
    )


def _scaler_argument(text: str) -> tuple[str, int]:
    try:
        return parse_scaler_option(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def keys_from_arguments(args: argparse.Namespace, protocol: str) -> Keys | None:
    """The keys ``--key``/``--auth-key``/``--key-file`` give for ``protocol`` (None without
    a key); ValueError for a malformed key, an unreadable key file or no crypto library."""
    key, auth = args.key, args.auth_key
    if args.key_file:
        key, file_auth = read_key_file(args.key_file)
        auth = auth or file_auth
    if key is None:
        return None
    try:
        require_crypto()
    except RuntimeError as exc:
        raise ValueError(str(exc)) from None
    authentication = (
        parse_key(auth, "--auth-key")
        if auth
        else (LUXEMBOURG_AUTH_KEY if protocol == "encrypted" else None)
    )
    return Keys(parse_key(key, "--key"), authentication)
