"""Throw-away PKI for TLS tests, made with the ``openssl`` command line tool.

``make_pki(directory)`` writes a CA, a server certificate for ``localhost`` /
``127.0.0.1`` / ``::1``, two client certificates signed by the same CA (SANs
:data:`CLIENT_SAN` and :data:`OTHER_CLIENT_SAN`), and a second CA with its own client
certificate for "wrong CA" tests (SAN :data:`CLIENT_SAN`, so only the CA differs).
EC P-256 keys keep generation fast (about 0.3 s for everything).
Skips the calling test when ``openssl`` is not installed. :func:`only_curve` and
:func:`enforceable` say which key-exchange curves this Python's ``ssl`` can pin.
"""

from __future__ import annotations

import secrets
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

CLIENT_SAN = "scraper.example"
OTHER_CLIENT_SAN = "intruder.example"


@dataclass(frozen=True)
class PKI:
    """Paths of the generated PEM files."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client2_cert: Path
    client2_key: Path
    other_ca_cert: Path
    other_client_cert: Path
    other_client_key: Path


def openssl_binary() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.skip("the openssl command line tool is not installed")
    return path


def _run(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        [openssl_binary(), *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{result.stderr}")


_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = DNS:{client_san}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[other_client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = DNS:{other_client_san}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""

_EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    """Self-signed CA ``<name>.crt`` / ``<name>.key``."""
    _run(
        "req", "-config", "openssl.cnf", "-x509", *_EC, "-days", "2",
        "-subj", f"/CN=p1-exporter test {name}", "-extensions", "ca_ext",
        "-keyout", f"{name}.key", "-out", f"{name}.crt",
        cwd=directory,
    )  # fmt: skip
    return directory / f"{name}.crt", directory / f"{name}.key"


def make_leaf(directory: Path, name: str, ca: str, extensions: str) -> tuple[Path, Path]:
    """Key and certificate ``<name>.crt`` / ``<name>.key`` signed by CA ``<ca>``."""
    _run(
        "req", "-config", "openssl.cnf", "-new", *_EC, "-subj", f"/CN={name}",
        "-keyout", f"{name}.key", "-out", f"{name}.csr",
        cwd=directory,
    )  # fmt: skip
    _run(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
        "-set_serial", str(secrets.randbits(63) + 1), "-days", "2",
        "-extfile", "openssl.cnf", "-extensions", extensions, "-out", f"{name}.crt",
        cwd=directory,
    )  # fmt: skip
    return directory / f"{name}.crt", directory / f"{name}.key"


def make_pki(directory: Path) -> PKI:
    """Create the full test PKI in ``directory`` (which must exist)."""
    openssl_binary()
    (directory / "openssl.cnf").write_text(
        _CONFIG.format(client_san=CLIENT_SAN, other_client_san=OTHER_CLIENT_SAN)
    )
    ca_cert, ca_key = make_ca(directory, "ca")
    server_cert, server_key = make_leaf(directory, "server", "ca", "server_ext")
    client_cert, client_key = make_leaf(directory, "client", "ca", "client_ext")
    client2_cert, client2_key = make_leaf(directory, "client2", "ca", "other_client_ext")
    other_ca_cert, _ = make_ca(directory, "other-ca")
    other_cert, other_key = make_leaf(directory, "other-client", "other-ca", "client_ext")
    return PKI(
        directory=directory,
        ca_cert=ca_cert,
        ca_key=ca_key,
        server_cert=server_cert,
        server_key=server_key,
        client_cert=client_cert,
        client_key=client_key,
        client2_cert=client2_cert,
        client2_key=client2_key,
        other_ca_cert=other_ca_cert,
        other_client_cert=other_cert,
        other_client_key=other_key,
    )


# Go curve name -> the name a client context restricts itself to with set_ecdh_curve.
CURVE_NAMES = {
    "CurveP256": "prime256v1",
    "CurveP384": "secp384r1",
    "CurveP521": "secp521r1",
    "X25519": "X25519",
}


def only_curve(pki: PKI, curve: str) -> ssl.SSLContext | None:
    """A client context that offers nothing but ``curve``; None if this ssl cannot."""
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    try:
        ctx.set_ecdh_curve(CURVE_NAMES[curve])
    except (ValueError, ssl.SSLError):
        return None
    return ctx


def enforceable(curves: list[str]) -> bool:
    """What this interpreter's ssl can express: a whole list (set_groups, Python 3.15+),
    or one curve that set_ecdh_curve accepts (X25519 is refused by 3.10 and Debian 12's
    3.11.2)."""
    scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if hasattr(scratch, "set_groups"):
        return True
    unique = list(dict.fromkeys(curves))
    if len(unique) != 1:
        return False
    try:
        scratch.set_ecdh_curve(CURVE_NAMES[unique[0]])
    except (ValueError, ssl.SSLError):
        return False
    return True
