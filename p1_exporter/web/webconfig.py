"""``--web.config.file``: TLS and basic auth in the Prometheus exporter-toolkit format.

The file is YAML with three optional top-level keys::

    tls_server_config:      # HTTPS; absent or all paths empty = plain HTTP
      cert_file: server.crt
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: ca.crt
      min_version: TLS12    # TLS10 .. TLS13
      max_version: TLS13
      cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
      curve_preferences: [X25519]
      prefer_server_cipher_suites: true
      client_allowed_sans: [scraper.example]
    http_server_config:
      http2: true
      headers: {Strict-Transport-Security: max-age=31536000}
    basic_auth_users:
      prometheus: $2b$10$...   # bcrypt hash

An empty file or ``{}`` means plain HTTP without authentication. Relative paths are
resolved against the directory of the config file, as exporter-toolkit does. The file is
read by :mod:`p1_exporter.yamlfile` (at most 256 KiB; no anchors, aliases, deep nesting
or duplicate keys) and validated completely at load time (unknown keys, types, readable
PEM files, matching key, bcrypt hashes), so a bad file stops the exporter at startup
instead of failing the first scrape.

Differences from exporter-toolkit, all caused by what Python's ``ssl`` module can express:

* ``cipher_suites``: Go names are mapped to OpenSSL names for TLS 1.0-1.2. The TLS 1.3
  names are accepted but have no effect, as in Go (TLS 1.3 suites are not configurable).
* ``curve_preferences`` is enforced where Python's ``ssl`` can express it: the whole list
  with ``SSLContext.set_groups()`` (Python 3.15 and later), otherwise a single curve with
  ``set_ecdh_curve()``. That leaves two cases it cannot express: a list of two or more
  curves on Python 3.14 and older, and ``[X25519]`` alone on a Python whose
  ``set_ecdh_curve()`` refuses X25519 (``[EC: UNKNOWN_GROUP] unknown group``: 3.10, and
  3.11 up to at least 3.11.2 as in Debian 12). Then the exporter still starts, with
  OpenSSL's default groups (X25519, P-256, P-384 and P-521 among them unless the system's
  openssl.cnf narrows them), and logs one warning at start that names the curves asked
  for, the reason and what is offered instead. So every client that Go would accept is
  accepted; clients using other groups are accepted too. A curve that OpenSSL lacks
  altogether is a start-up error.
* ``client_auth_type``: OpenSSL can only request a client certificate together with
  verifying it. ``RequestClientCert`` therefore asks for no certificate at all (Go would
  ask and then ignore it; access control is the same). ``RequireAnyClientCert`` needs
  ``client_ca_file`` here and verifies the certificate against it, i.e. it is stricter
  than Go. ``VerifyClientCertIfGiven`` and ``RequireAndVerifyClientCert`` need
  ``client_ca_file`` too (Go would fall back to the system roots).
* ``client_allowed_sans`` is checked right after the handshake; a client that does not
  match is disconnected before its request is read (Go fails the handshake itself).
* ``http_server_config.http2`` is accepted and ignored: the server speaks HTTP/1.1 only.
* ``prefer_server_cipher_suites`` maps to ``OP_CIPHER_SERVER_PREFERENCE``.
* The newer inline ``cert``/``key``/``client_ca`` and ``rate_limit`` keys are rejected
  with a message, because Python's ``ssl`` loads certificate chains from files only.
* Only ``$2a$``, ``$2b$`` and ``$2y$`` bcrypt hashes are accepted; passwords are truncated
  to bcrypt's 72 bytes before checking, as Go's bcrypt does implicitly.
* Certificates and keys are re-read when their files change, and the YAML itself when it
  changes or on SIGHUP (see :mod:`p1_exporter.web.reload`).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import platform
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from p1_exporter.web.auth import BasicAuth
from p1_exporter.yamlfile import YamlFileError, load_yaml

__all__ = [
    "CLIENT_AUTH_TYPES",
    "EXTRA_HEADERS",
    "TLS_VERSIONS",
    "TLSServerConfig",
    "WebConfig",
    "WebConfigError",
]


class WebConfigError(ValueError):
    """The web config file is invalid; the message names the file and the offending key."""


TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# client_auth_type -> (verify mode, needs client_ca_file). "RequireClientCert" is the
# old spelling of RequireAnyClientCert that exporter-toolkit still accepts.
CLIENT_AUTH_TYPES: Mapping[str, tuple[ssl.VerifyMode, bool]] = {
    "NoClientCert": (ssl.CERT_NONE, False),
    "RequestClientCert": (ssl.CERT_NONE, False),
    "RequireAnyClientCert": (ssl.CERT_REQUIRED, True),
    "RequireClientCert": (ssl.CERT_REQUIRED, True),
    "VerifyClientCertIfGiven": (ssl.CERT_OPTIONAL, True),
    "RequireAndVerifyClientCert": (ssl.CERT_REQUIRED, True),
}

# Go crypto/tls names (tls.CipherSuites(), the ones exporter-toolkit accepts) -> OpenSSL
# names. None = TLS 1.3 suite: accepted, not configurable (in Go neither).
_CIPHER_SUITES: Mapping[str, str | None] = {
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}

log = logging.getLogger("p1_exporter.webconfig")

# Go curve names -> (OpenSSL object short name, for set_ecdh_curve; group-list name, for
# set_groups).
_CURVES: Mapping[str, tuple[str, str]] = {
    "CurveP256": ("prime256v1", "P-256"),
    "CurveP384": ("secp384r1", "P-384"),
    "CurveP521": ("secp521r1", "P-521"),
    "X25519": ("X25519", "X25519"),
}

# Response headers a web config may set, and the allowed values where they are an
# enumeration (None = any value). Same set as exporter-toolkit, for a consistent ecosystem.
EXTRA_HEADERS: Mapping[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}

_TOP_KEYS = frozenset({"tls_server_config", "http_server_config", "basic_auth_users"})
_TLS_KEYS = frozenset(
    {
        "cert_file",
        "key_file",
        "client_auth_type",
        "client_ca_file",
        "min_version",
        "max_version",
        "cipher_suites",
        "curve_preferences",
        "prefer_server_cipher_suites",
        "client_allowed_sans",
    }
)
_HTTP_KEYS = frozenset({"http2", "headers"})
_UNSUPPORTED_HINTS: Mapping[str, str] = {
    "tls_server_config.cert": "inline certificates are not supported, use cert_file",
    "tls_server_config.key": "inline keys are not supported, use key_file",
    "tls_server_config.client_ca": "inline CAs are not supported, use client_ca_file",
    "rate_limit": "rate limiting is not supported by p1-exporter",
}

_BCRYPT_RE = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")


@dataclass(frozen=True)
class TLSServerConfig:
    """The ``tls_server_config`` section, paths already made absolute."""

    cert_file: str
    key_file: str
    client_auth_type: str = "NoClientCert"
    client_ca_file: str = ""
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    curve_preferences: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    client_allowed_sans: tuple[str, ...] = ()


@dataclass(frozen=True)
class WebConfig:
    """A validated web config. ``WebConfig()`` is plain HTTP without authentication."""

    tls: TLSServerConfig | None = None
    http2: bool = True
    headers: tuple[tuple[str, str], ...] = ()
    basic_auth_users: Mapping[str, str] = field(default_factory=dict, hash=False)
    source: str = "<web config>"
    _auth: BasicAuth = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        users = MappingProxyType(dict(self.basic_auth_users))  # a read-only copy
        for user, hashed in users.items():
            _check_bcrypt_hash(self.source, user, hashed)
        object.__setattr__(self, "basic_auth_users", users)
        object.__setattr__(self, "_auth", BasicAuth(users))

    @classmethod
    def load(cls, path: str) -> WebConfig:
        """Read and fully validate ``path``; raises WebConfigError."""
        try:
            data = load_yaml(path, strings=True)
        except OSError as exc:
            raise WebConfigError(
                f"{path}: cannot read web config file: {exc.strerror or exc}"
            ) from None
        except YamlFileError as exc:
            raise WebConfigError(f"{path}: {exc}") from None
        config = _build(path, data)
        config.ssl_context()  # loads every PEM file once, so errors surface now
        warning = config.curve_warning()
        if warning:
            log.warning("%s", warning)
        return config

    def curve_warning(self) -> str | None:
        """Why ``curve_preferences`` cannot be enforced here (and what is used), or None."""
        if self.tls is None:
            return None
        return _set_curves(
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER),
            self.tls.curve_preferences,
            f"{self.source}: tls_server_config.curve_preferences",
        )

    @property
    def auth_required(self) -> bool:
        """True when ``basic_auth_users`` is non-empty."""
        return self._auth.enabled

    @property
    def tls_files(self) -> tuple[str, ...]:
        """Files the SSL context is built from (for change detection)."""
        if self.tls is None:
            return ()
        files = (self.tls.cert_file, self.tls.key_file, self.tls.client_ca_file)
        return tuple(f for f in files if f)

    def check_basic_auth(self, authorization_header: str | None) -> bool:
        """True if auth is off, or the ``Authorization`` header holds valid credentials."""
        return self._auth.check_sync(authorization_header)

    @property
    def auth(self) -> BasicAuth:
        """The credential checker (with its remembered credentials) of this config."""
        return self._auth

    def client_cert_allowed(self, peer_cert: Mapping[str, Any] | None) -> bool:
        """Check ``client_allowed_sans`` against ``SSLSocket.getpeercert()``."""
        if self.tls is None or not self.tls.client_allowed_sans:
            return True
        allowed = {_normalise_san(s) for s in self.tls.client_allowed_sans}
        for entry in (peer_cert or {}).get("subjectAltName", ()):
            if (
                isinstance(entry, tuple)
                and len(entry) == 2
                and isinstance(entry[1], str)
                and _normalise_san(entry[1]) in allowed
            ):
                return True
        return False

    def ssl_context(self) -> ssl.SSLContext | None:
        """A fresh server SSLContext, or None for plain HTTP; raises WebConfigError."""
        tls = self.tls
        if tls is None:
            return None
        where = f"{self.source}: tls_server_config"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.minimum_version = TLS_VERSIONS[tls.min_version]
            ctx.maximum_version = TLS_VERSIONS[tls.max_version]
        except (KeyError, ValueError) as exc:
            raise WebConfigError(f"{where}.min_version/max_version: {exc}") from exc
        _load_pem_file(ctx, f"{where}.cert_file", tls.cert_file, check_only=True)
        _readable(f"{where}.key_file", tls.key_file)
        try:
            ctx.load_cert_chain(tls.cert_file, tls.key_file, password=_no_password)
        except (ssl.SSLError, OSError) as exc:
            raise WebConfigError(
                f"{where}.key_file: {tls.key_file} is not an unencrypted private key matching"
                f" cert_file {tls.cert_file}: {exc}"
            ) from exc
        verify_mode, _ = CLIENT_AUTH_TYPES[tls.client_auth_type]
        if tls.client_ca_file:
            _load_pem_file(ctx, f"{where}.client_ca_file", tls.client_ca_file)
        ctx.verify_mode = verify_mode
        suites = [s for s in (_CIPHER_SUITES[c] for c in tls.cipher_suites) if s]
        if suites:
            try:
                ctx.set_ciphers(":".join(suites))
            except ssl.SSLError as exc:
                raise WebConfigError(f"{where}.cipher_suites: not available: {exc}") from exc
        _set_curves(ctx, tls.curve_preferences, f"{where}.curve_preferences")
        if tls.prefer_server_cipher_suites:
            ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        else:
            ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
        return ctx


def _set_curves(ctx: ssl.SSLContext, curves: tuple[str, ...], key: str) -> str | None:
    """Restrict key exchange to ``curves`` as far as this Python's ssl can.

    Returns None when the list is enforced exactly (or empty), else a one-line warning
    saying what is offered instead; raises WebConfigError if OpenSSL lacks a curve.
    """
    wanted = tuple(dict.fromkeys(curves))  # a repeated curve changes nothing
    if not wanted:
        return None
    set_groups = getattr(ctx, "set_groups", None)  # Python 3.15+: a whole group list
    if set_groups is not None:
        try:
            set_groups(":".join(_CURVES[c][1] for c in wanted))
        except (ValueError, ssl.SSLError) as exc:
            raise WebConfigError(f"{key}: not available: {exc}") from exc
        return None
    python = f"Python {platform.python_version()}"
    if len(wanted) == 1:
        try:
            ctx.set_ecdh_curve(_CURVES[wanted[0]][0])
        except (ValueError, ssl.SSLError) as exc:
            if wanted[0] != "X25519":
                raise WebConfigError(f"{key}: not available: {exc}") from exc
            reason = f"{python}'s ssl refuses X25519 in set_ecdh_curve() ({exc})"
        else:
            return None
    else:
        reason = f"{python}'s ssl can enforce one curve only (a list needs Python 3.15)"
    return (
        f"{key} [{', '.join(curves)}] is not enforced: {reason}; using OpenSSL's default "
        "groups instead (X25519, P-256, P-384, P-521 and more, unless openssl.cnf narrows "
        "them): every listed curve works, and clients may also use the others"
    )


def _no_password() -> bytes:
    """Password callback that makes encrypted keys fail instead of prompting on a tty."""
    return b""


def _readable(key: str, path: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise WebConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}") from exc


def _load_pem_file(ctx: ssl.SSLContext, key: str, path: str, *, check_only: bool = False) -> None:
    """Load CA certificates from ``path`` (into a scratch context when ``check_only``)."""
    _readable(key, path)
    target = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER) if check_only else ctx
    try:
        target.load_verify_locations(cafile=path)
    except (ssl.SSLError, OSError) as exc:
        raise WebConfigError(f"{key}: {path} holds no valid PEM certificate: {exc}") from exc


def _normalise_san(value: str) -> str:
    value = value.strip()
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value


def _check_bcrypt_hash(source: str, user: str, hashed: object) -> None:
    key = f"{source}: basic_auth_users.{user}"
    if not isinstance(hashed, str):
        raise WebConfigError(f"{key}: must be a bcrypt hash string")
    match = _BCRYPT_RE.fullmatch(hashed)
    if match is None:
        raise WebConfigError(
            f"{key}: not a bcrypt hash ($2a$/$2b$/$2y$, 60 characters); create one with"
            " `htpasswd -nBC 10 '' | tr -d ':\\n'`"
        )
    if not 4 <= int(match.group(1)) <= 31:
        raise WebConfigError(f"{key}: bcrypt cost must be between 4 and 31")


def _mapping(key: str, value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError(f"{key}: must be a mapping, got {_type_name(value)}")
    for k in value:
        if not isinstance(k, str):
            raise WebConfigError(f"{key}: key {k!r} must be a string (quote it)")
    return value


def _string(key: str, value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise WebConfigError(f"{key}: must be a string, got {_type_name(value)}")
    return value


def _bool(key: str, value: object, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise WebConfigError(f"{key}: must be true or false, got {_type_name(value)}")
    return value


def _string_list(key: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise WebConfigError(f"{key}: must be a list of strings, got {_type_name(value)}")
    for item in value:
        if not isinstance(item, str):
            raise WebConfigError(f"{key}: must be a list of strings, got item {item!r}")
    return tuple(value)


def _type_name(value: object) -> str:
    names = {dict: "a mapping", list: "a list", bool: "a boolean", str: "a string"}
    return names.get(type(value), type(value).__name__)


def _check_keys(source: str, prefix: str, data: Mapping[str, Any], allowed: frozenset[str]) -> None:
    for k in data:
        if k not in allowed:
            full = f"{prefix}.{k}" if prefix else k
            hint = _UNSUPPORTED_HINTS.get(full, "allowed: " + ", ".join(sorted(allowed)))
            raise WebConfigError(f"{source}: {full}: unknown key ({hint})")


def _build(path: str, data: object) -> WebConfig:
    top = _mapping(f"{path}: (top level)", data)
    _check_keys(path, "", top, _TOP_KEYS)
    base = os.path.dirname(os.path.abspath(path))
    tls = _build_tls(
        path, base, _mapping(f"{path}: tls_server_config", top.get("tls_server_config"))
    )

    http = _mapping(f"{path}: http_server_config", top.get("http_server_config"))
    _check_keys(path, "http_server_config", http, _HTTP_KEYS)
    http2 = _bool(f"{path}: http_server_config.http2", http.get("http2"), True)
    headers: list[tuple[str, str]] = []
    hkey = f"{path}: http_server_config.headers"
    for name, value in _mapping(hkey, http.get("headers")).items():
        if name not in EXTRA_HEADERS:
            raise WebConfigError(
                f"{hkey}.{name}: header can not be configured (allowed: "
                + ", ".join(EXTRA_HEADERS)
                + ")"
            )
        text = _string(f"{hkey}.{name}", value)
        allowed = EXTRA_HEADERS[name]
        if allowed is not None and text not in allowed:
            raise WebConfigError(f"{hkey}.{name}: must be one of {list(allowed)}, got {text!r}")
        if not all(" " <= c <= "~" or c == "\t" for c in text):
            raise WebConfigError(f"{hkey}.{name}: value must be one line of printable ASCII")
        headers.append((name, text))

    users_key = f"{path}: basic_auth_users"
    users = {
        user: _string(f"{users_key}.{user}", hashed)
        for user, hashed in _mapping(users_key, top.get("basic_auth_users")).items()
    }
    return WebConfig(
        tls=tls, http2=http2, headers=tuple(headers), basic_auth_users=users, source=path
    )


def _build_tls(path: str, base: str, data: Mapping[str, Any]) -> TLSServerConfig | None:
    key = f"{path}: tls_server_config"
    _check_keys(path, "tls_server_config", data, _TLS_KEYS)

    def resolve(name: str) -> str:
        value = _string(f"{key}.{name}", data.get(name))
        return os.path.join(base, value) if value else ""

    cert_file = resolve("cert_file")
    key_file = resolve("key_file")
    client_ca_file = resolve("client_ca_file")
    client_auth = _string(f"{key}.client_auth_type", data.get("client_auth_type"))
    if not (cert_file or key_file or client_ca_file or client_auth):
        return None  # section absent or empty: plain HTTP, like exporter-toolkit
    if not cert_file:
        raise WebConfigError(f"{key}.cert_file: missing (required for TLS)")
    if not key_file:
        raise WebConfigError(f"{key}.key_file: missing (required for TLS)")

    client_auth = client_auth or "NoClientCert"
    if client_auth not in CLIENT_AUTH_TYPES:
        raise WebConfigError(
            f"{key}.client_auth_type: invalid value {client_auth!r} (one of "
            + ", ".join(CLIENT_AUTH_TYPES)
            + ")"
        )
    needs_ca = CLIENT_AUTH_TYPES[client_auth][1]
    if needs_ca and not client_ca_file:
        raise WebConfigError(
            f"{key}.client_ca_file: required when client_auth_type is {client_auth}"
            " (Python's ssl can only accept client certificates it verifies)"
        )
    if client_ca_file and not needs_ca:
        raise WebConfigError(
            f"{key}.client_ca_file: set, but client_auth_type {client_auth} does not"
            " verify client certificates"
        )

    versions: dict[str, str] = {}
    for name, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        value = _string(f"{key}.{name}", data.get(name)) or default
        if value not in TLS_VERSIONS:
            raise WebConfigError(
                f"{key}.{name}: unknown TLS version {value!r} (one of "
                + ", ".join(TLS_VERSIONS)
                + ")"
            )
        versions[name] = value
    if TLS_VERSIONS[versions["min_version"]] > TLS_VERSIONS[versions["max_version"]]:
        raise WebConfigError(f"{key}.min_version: is higher than max_version")

    ciphers = _string_list(f"{key}.cipher_suites", data.get("cipher_suites"))
    for cipher in ciphers:
        if cipher not in _CIPHER_SUITES:
            raise WebConfigError(f"{key}.cipher_suites: unknown or insecure cipher {cipher!r}")
    curves = _string_list(f"{key}.curve_preferences", data.get("curve_preferences"))
    for curve in curves:
        if curve not in _CURVES:
            raise WebConfigError(
                f"{key}.curve_preferences: unknown curve {curve!r} (one of "
                + ", ".join(_CURVES)
                + ")"
            )
    sans = _string_list(f"{key}.client_allowed_sans", data.get("client_allowed_sans"))
    if sans and CLIENT_AUTH_TYPES[client_auth][0] != ssl.CERT_REQUIRED:
        raise WebConfigError(
            f"{key}.client_allowed_sans: requires client_auth_type RequireAnyClientCert or"
            " RequireAndVerifyClientCert"
        )
    return TLSServerConfig(
        cert_file=cert_file,
        key_file=key_file,
        client_auth_type=client_auth,
        client_ca_file=client_ca_file,
        min_version=versions["min_version"],
        max_version=versions["max_version"],
        cipher_suites=ciphers,
        curve_preferences=curves,
        prefer_server_cipher_suites=_bool(
            f"{key}.prefer_server_cipher_suites", data.get("prefer_server_cipher_suites"), True
        ),
        client_allowed_sans=sans,
    )
