"""WebConfig: loading, validation errors, SSL context mapping, basic auth, examples.

Certificates are real (openssl CLI, tests/helpers/tls.py); examples and a sample of invalid
files are cross-checked with Debian's promtool, the reference parser of this format.
"""

from __future__ import annotations

import base64
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import bcrypt
import pytest

from p1_exporter.web.webconfig import WebConfig, WebConfigError
from tests.helpers.binaries import require_binary
from tests.helpers.tls import CURVE_NAMES, PKI, enforceable, make_pki, only_curve

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "web-config"
EXAMPLE_USER = "prometheus"
EXAMPLE_PASSWORD = "example-password-change-me"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def write(directory: Path, text: str, name: str = "web.yml") -> str:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def hashed(password: str, rounds: int = 4, prefix: str = "$2b$") -> str:
    value = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()
    return prefix + value[4:]


def basic(user: str | bytes, password: str | bytes) -> str:
    raw = (user.encode() if isinstance(user, str) else user) + b":"
    raw += password.encode() if isinstance(password, str) else password
    return "Basic " + base64.b64encode(raw).decode()


# --- plain / empty -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{}\n",
        "# only a comment\n",
        "tls_server_config:\nhttp_server_config:\nbasic_auth_users:\n",
        "tls_server_config: {}\nbasic_auth_users: {}\n",
        "tls_server_config:\n  cert_file: ''\n  key_file: ''\n",
    ],
)
def test_empty_config_means_plain_http_without_auth(tmp_path: Path, text: str) -> None:
    config = WebConfig.load(write(tmp_path, text))
    assert config.tls is None
    assert config.ssl_context() is None
    assert not config.auth_required
    assert config.check_basic_auth(None)
    assert config.headers == ()
    assert config.http2 is True


def test_default_constructor_is_plain_http() -> None:
    config = WebConfig()
    assert config.ssl_context() is None
    assert not config.auth_required
    assert config.check_basic_auth("Basic garbage")


# --- a full valid file ---------------------------------------------------------------


def test_full_config_relative_paths_resolved_against_config_dir(
    pki: PKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "etc"
    (conf_dir / "tls").mkdir(parents=True)
    for src, name in ((pki.server_cert, "s.crt"), (pki.server_key, "s.key"), (pki.ca_cert, "ca")):
        shutil.copy(src, conf_dir / "tls" / name)
    alice = hashed("wonderland")
    write(
        conf_dir,
        f"""
tls_server_config:
  cert_file: tls/s.crt
  key_file: tls/s.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: tls/ca
  min_version: TLS12
  max_version: TLS13
  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]
  curve_preferences: [CurveP256]
  prefer_server_cipher_suites: false
  client_allowed_sans: [scraper.example, "::1"]
http_server_config:
  http2: false
  headers:
    Strict-Transport-Security: max-age=31536000; includeSubDomains
    X-Frame-Options: deny
    X-Content-Type-Options: nosniff
basic_auth_users:
  alice: {alice}
  1234: {alice}
""",
    )
    monkeypatch.chdir(tmp_path)  # relative to the file, not to the working directory
    config = WebConfig.load("etc/web.yml")
    assert config.tls is not None
    assert config.tls.cert_file == str(conf_dir / "tls" / "s.crt")
    assert config.tls.key_file == str(conf_dir / "tls" / "s.key")
    assert config.tls.client_ca_file == str(conf_dir / "tls" / "ca")
    assert config.tls.client_auth_type == "RequireAndVerifyClientCert"
    assert config.tls.cipher_suites == (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_AES_128_GCM_SHA256",
    )
    assert config.tls.prefer_server_cipher_suites is False
    assert config.http2 is False
    assert config.headers == (
        ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
        ("X-Frame-Options", "deny"),
        ("X-Content-Type-Options", "nosniff"),
    )
    assert set(config.basic_auth_users) == {"alice", "1234"}  # numbers stay strings
    assert config.auth_required
    assert config.tls_files == (
        str(conf_dir / "tls" / "s.crt"),
        str(conf_dir / "tls" / "s.key"),
        str(conf_dir / "tls" / "ca"),
    )
    ctx = config.ssl_context()
    assert ctx is not None
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.maximum_version == ssl.TLSVersion.TLSv1_3
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert not ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    tls12 = {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 == {"ECDHE-ECDSA-AES128-GCM-SHA256"}
    assert ctx.get_ca_certs()  # client CA loaded


@pytest.mark.parametrize(
    ("client_auth", "with_ca", "verify_mode"),
    [
        ("NoClientCert", False, ssl.CERT_NONE),
        ("RequestClientCert", False, ssl.CERT_NONE),
        ("RequireAnyClientCert", True, ssl.CERT_REQUIRED),
        ("RequireClientCert", True, ssl.CERT_REQUIRED),
        ("VerifyClientCertIfGiven", True, ssl.CERT_OPTIONAL),
        ("RequireAndVerifyClientCert", True, ssl.CERT_REQUIRED),
    ],
)
def test_client_auth_type_maps_to_verify_mode(
    pki: PKI, tmp_path: Path, client_auth: str, with_ca: bool, verify_mode: ssl.VerifyMode
) -> None:
    ca_line = f"  client_ca_file: {pki.ca_cert}\n" if with_ca else ""
    path = write(
        tmp_path,
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
        f"  client_auth_type: {client_auth}\n{ca_line}",
    )
    ctx = WebConfig.load(path).ssl_context()
    assert ctx is not None
    assert ctx.verify_mode == verify_mode
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2  # exporter-toolkit default
    assert ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE  # default true


GO_CIPHERS = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}


@pytest.mark.parametrize("go_name", sorted(GO_CIPHERS))
def test_go_cipher_names_map_to_openssl(pki: PKI, tmp_path: Path, go_name: str) -> None:
    path = write(
        tmp_path,
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
        f"  cipher_suites: [{go_name}, TLS_CHACHA20_POLY1305_SHA256]\n",
    )
    ctx = WebConfig.load(path).ssl_context()
    assert ctx is not None
    tls12 = [c["name"] for c in ctx.get_ciphers() if c["protocol"] != "TLSv1.3"]
    assert tls12 == [GO_CIPHERS[go_name]]


def handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> bool:
    """A complete TLS handshake between the two contexts in memory; False if refused."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    tls_client = client.wrap_bio(c_in, c_out, server_hostname="localhost")
    tls_server = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, side in (("client", tls_client), ("server", tls_server)):
            if done[name]:
                continue
            try:
                side.do_handshake()
                done[name] = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                return False
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return True
    raise AssertionError("handshake neither finished nor failed")


@pytest.mark.parametrize(
    "curves",
    [
        ["CurveP256"],
        ["CurveP384"],
        ["CurveP521"],
        ["X25519"],
        ["X25519", "CurveP256"],
        ["CurveP384", "CurveP521"],
        ["X25519", "X25519"],
    ],
    ids=lambda c: "+".join(c),
)
def test_curve_preferences_load(pki: PKI, tmp_path: Path, curves: list[str]) -> None:
    """Every list loads on every Python; it is enforced where this ssl can express it, and
    otherwise the warning says so and OpenSSL's defaults (all four curves) are offered."""
    path = write(
        tmp_path,
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
        f"  curve_preferences: [{', '.join(curves)}]\n",
    )
    config = WebConfig.load(path)
    server = config.ssl_context()
    assert server is not None
    warning = config.curve_warning()
    enforced = enforceable(curves)
    if enforced:
        assert warning is None
    else:
        assert warning is not None and "\n" not in warning
        assert warning.startswith(
            f"{path}: tls_server_config.curve_preferences [{', '.join(curves)}] is not enforced"
        )
        assert "using OpenSSL's default groups instead" in warning
    for curve in CURVE_NAMES:
        client = only_curve(pki, curve)
        if client is None:
            continue  # this ssl cannot make a client that offers only this curve
        expected = curve in curves or not enforced
        assert handshake(server, client) is expected, (curve, warning)


def test_curve_warning_is_logged_once_at_load(
    pki: PKI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(
        tmp_path,
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
        "  curve_preferences: [CurveP384, CurveP256]\n",
    )
    with caplog.at_level("WARNING", logger="p1_exporter.webconfig"):
        config = WebConfig.load(path)
        config.ssl_context()  # a certificate reload builds a context again: no new warning
    warnings = [r.getMessage() for r in caplog.records if r.name == "p1_exporter.webconfig"]
    if enforceable(["CurveP384", "CurveP256"]):
        assert warnings == []
    else:
        assert warnings == [config.curve_warning()]


def test_basic_auth_users_are_a_read_only_copy() -> None:
    users = {"alice": hashed("x")}
    config = WebConfig(basic_auth_users=users)
    users["mallory"] = hashed("y")
    assert list(config.basic_auth_users) == ["alice"]
    with pytest.raises(TypeError):
        config.basic_auth_users["eve"] = "z"  # type: ignore[index]


# --- invalid files -------------------------------------------------------------------

GOOD_TLS = "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"

INVALID = {
    "unknown top-level key": ("tls_config: {{}}\n", "tls_config"),
    "rate_limit unsupported": ("rate_limit: {{burst: 1}}\n", "rate_limit"),
    "unknown tls key": (GOOD_TLS + "  bogus: 1\n", "tls_server_config.bogus"),
    "inline cert unsupported": ("tls_server_config:\n  cert: abc\n", "tls_server_config.cert"),
    "unknown http key": ("http_server_config:\n  http3: true\n", "http_server_config.http3"),
    "top level is a list": ("- a\n", "top level"),
    "tls section is a list": ("tls_server_config: [a]\n", "tls_server_config"),
    "cert_file is a list": (
        "tls_server_config:\n  cert_file: [a]\n  key_file: {key}\n",
        "tls_server_config.cert_file",
    ),
    "http2 not a bool": ("http_server_config:\n  http2: maybe\n", "http_server_config.http2"),
    "headers is a list": ("http_server_config:\n  headers: [a]\n", "http_server_config.headers"),
    "users is a list": ("basic_auth_users: [a]\n", "basic_auth_users"),
    "cipher_suites is a string": (
        GOOD_TLS + "  cipher_suites: TLS_AES_128_GCM_SHA256\n",
        "tls_server_config.cipher_suites",
    ),
    "prefer_server_cipher_suites not a bool": (
        GOOD_TLS + "  prefer_server_cipher_suites: 1\n",
        "tls_server_config.prefer_server_cipher_suites",
    ),
    "missing cert file": (
        "tls_server_config:\n  cert_file: nope.crt\n  key_file: {key}\n",
        "tls_server_config.cert_file",
    ),
    "missing key file": (
        "tls_server_config:\n  cert_file: {cert}\n  key_file: nope.key\n",
        "tls_server_config.key_file",
    ),
    "cert file is not PEM": (
        "tls_server_config:\n  cert_file: {garbage}\n  key_file: {key}\n",
        "tls_server_config.cert_file",
    ),
    "key file is not PEM": (
        "tls_server_config:\n  cert_file: {cert}\n  key_file: {garbage}\n",
        "tls_server_config.key_file",
    ),
    "key does not match cert": (
        "tls_server_config:\n  cert_file: {cert}\n  key_file: {client_key}\n",
        "tls_server_config.key_file",
    ),
    "cert without key": ("tls_server_config:\n  cert_file: {cert}\n", "tls_server_config.key_file"),
    "key without cert": ("tls_server_config:\n  key_file: {key}\n", "tls_server_config.cert_file"),
    "client auth without cert": (
        "tls_server_config:\n  client_auth_type: RequireAndVerifyClientCert\n",
        "tls_server_config.cert_file",
    ),
    "client_ca_file missing": (
        GOOD_TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: no.pem\n",
        "tls_server_config.client_ca_file",
    ),
    "client_ca_file not PEM": (
        GOOD_TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {garbage}\n",
        "tls_server_config.client_ca_file",
    ),
    "unknown client_auth_type": (
        GOOD_TLS + "  client_auth_type: Sometimes\n",
        "tls_server_config.client_auth_type",
    ),
    "RequireAndVerifyClientCert without CA": (
        GOOD_TLS + "  client_auth_type: RequireAndVerifyClientCert\n",
        "tls_server_config.client_ca_file",
    ),
    "VerifyClientCertIfGiven without CA": (
        GOOD_TLS + "  client_auth_type: VerifyClientCertIfGiven\n",
        "tls_server_config.client_ca_file",
    ),
    "RequireAnyClientCert without CA": (
        GOOD_TLS + "  client_auth_type: RequireAnyClientCert\n",
        "tls_server_config.client_ca_file",
    ),
    "CA without client auth": (
        GOOD_TLS + "  client_ca_file: {ca}\n",
        "tls_server_config.client_ca_file",
    ),
    "allowed SANs with optional cert": (
        GOOD_TLS + "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: {ca}\n"
        "  client_allowed_sans: [a]\n",
        "tls_server_config.client_allowed_sans",
    ),
    "unknown min_version": (GOOD_TLS + "  min_version: TLS14\n", "tls_server_config.min_version"),
    "unknown max_version": (GOOD_TLS + "  max_version: SSL3\n", "tls_server_config.max_version"),
    "min above max": (
        GOOD_TLS + "  min_version: TLS13\n  max_version: TLS12\n",
        "tls_server_config.min_version",
    ),
    "insecure cipher": (
        GOOD_TLS + "  cipher_suites: [TLS_RSA_WITH_3DES_EDE_CBC_SHA]\n",
        "tls_server_config.cipher_suites",
    ),
    "unknown curve": (
        GOOD_TLS + "  curve_preferences: [CurveP999]\n",
        "tls_server_config.curve_preferences",
    ),
    "header not allowed": (
        "http_server_config:\n  headers:\n    Server: nginx\n",
        "http_server_config.headers.Server",
    ),
    "header value not allowed": (
        "http_server_config:\n  headers:\n    X-Frame-Options: allowall\n",
        "http_server_config.headers.X-Frame-Options",
    ),
    "header value not ASCII": (
        'http_server_config:\n  headers:\n    Content-Security-Policy: "default-src ☃"\n',
        "http_server_config.headers.Content-Security-Policy",
    ),
    "plain-text password": ("basic_auth_users:\n  alice: secret\n", "basic_auth_users.alice"),
    "apr1 hash": (
        "basic_auth_users:\n  alice: $apr1$x8hJ7ljS$F6Ag/3Z0.G0ZQGJ8yrr7t0\n",
        "basic_auth_users.alice",
    ),
    "bcrypt cost too low": (
        "basic_auth_users:\n  alice: '$2b$03$" + "a" * 53 + "'\n",
        "basic_auth_users.alice",
    ),
    "hash is a list": ("basic_auth_users:\n  alice: [x]\n", "basic_auth_users.alice"),
    "user name is a bool": ("basic_auth_users:\n  yes: x\n", "basic_auth_users"),
    "duplicate user": (
        "basic_auth_users:\n  alice: '{hash}'\n  alice: '{hash}'\n",
        "duplicate key 'alice'",
    ),
    "YAML syntax error": ("basic_auth_users: [\n", "not valid YAML at line 2"),
}


def render(template: str, pki: PKI, tmp_path: Path) -> str:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("this is not PEM\n")
    return template.format(
        cert=pki.server_cert,
        key=pki.server_key,
        client_key=pki.client_key,
        ca=pki.ca_cert,
        garbage=garbage,
        hash=hashed("x"),
    )


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_config_names_file_and_key(pki: PKI, tmp_path: Path, case: str) -> None:
    template, key = INVALID[case]
    path = write(tmp_path, render(template, pki, tmp_path))
    with pytest.raises(WebConfigError) as info:
        WebConfig.load(path)
    message = str(info.value)
    assert key in message
    assert path in message


def test_missing_config_file_is_a_web_config_error(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.yml")
    with pytest.raises(WebConfigError, match="cannot read"):
        WebConfig.load(path)


def test_unreadable_relative_cert_names_resolved_path(tmp_path: Path) -> None:
    path = write(tmp_path, "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n")
    with pytest.raises(WebConfigError, match=r"tls_server_config\.cert_file") as info:
        WebConfig.load(path)
    assert str(tmp_path / "a.crt") in str(info.value)


def test_constructor_validates_hashes() -> None:
    with pytest.raises(WebConfigError, match=r"basic_auth_users\.bob"):
        WebConfig(basic_auth_users={"bob": "plain"})


# --- basic auth ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def auth_config() -> WebConfig:
    return WebConfig(
        basic_auth_users={
            "alice": hashed("wonderland"),
            "bob": hashed("pa:ss:word", prefix="$2y$"),
            "carol": hashed("ünïcödé", prefix="$2a$"),
            "dave": hashed("d" * 72),
        }
    )


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (basic("alice", "wonderland"), True),
        (basic("alice", "wonderland").replace("Basic", "basic"), True),
        ("  " + basic("alice", "wonderland") + "  ", True),
        (basic("bob", "pa:ss:word"), True),  # $2y$ hash, colons in the password
        (basic("carol", "ünïcödé"), True),  # $2a$ hash, UTF-8 password
        (basic("dave", "d" * 100), True),  # bcrypt looks at 72 bytes, like Go
        (basic("alice", "Wonderland"), False),
        (basic("alice", ""), False),
        (basic("mallory", "wonderland"), False),
        (basic("", "wonderland"), False),
        (basic(b"\xff\xfe", "wonderland"), False),
        (None, False),
        ("", False),
        ("Basic", False),
        ("Basic !!!notbase64", False),
        ("Basic " + base64.b64encode(b"alice-wonderland").decode(), False),  # no colon
        ("Bearer " + base64.b64encode(b"alice:wonderland").decode(), False),
    ],
)
def test_check_basic_auth(auth_config: WebConfig, header: str | None, ok: bool) -> None:
    assert auth_config.check_basic_auth(header) is ok


def test_successful_credentials_are_cached_but_failures_are_not() -> None:
    config = WebConfig(basic_auth_users={"alice": hashed("wonderland", rounds=10)})
    good, bad = basic("alice", "wonderland"), basic("alice", "wrong")

    def timed(header: str) -> tuple[bool, float]:
        start = time.perf_counter()
        result = config.check_basic_auth(header)
        return result, time.perf_counter() - start

    first_ok, first = timed(good)
    assert first_ok
    assert first > 0.01  # a real bcrypt run (cost 10 is ~50 ms)
    again_ok, again = timed(good)
    assert again_ok
    assert again < first / 5  # served from the cache
    bad_ok, bad_time = timed(bad)
    assert not bad_ok
    assert bad_time > first / 3  # wrong passwords always pay bcrypt
    assert timed(good)[0]  # the wrong attempt did not evict the good entry


def test_unknown_user_costs_a_bcrypt_run_too() -> None:
    config = WebConfig(basic_auth_users={"alice": hashed("wonderland", rounds=10)})
    start = time.perf_counter()
    assert not config.check_basic_auth(basic("alice", "wrong"))
    known = time.perf_counter() - start
    start = time.perf_counter()
    assert not config.check_basic_auth(basic("mallory", "wrong"))
    unknown = time.perf_counter() - start
    assert unknown > known / 3


def test_client_cert_allowed_matches_sans(pki: PKI, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca_cert}\n"
        "  client_allowed_sans: [scraper.example, '::1']\n",
    )
    config = WebConfig.load(path)
    assert config.client_cert_allowed({"subjectAltName": (("DNS", "scraper.example"),)})
    # OpenSSL spells IPv6 SANs out in full; they are compared as addresses.
    assert config.client_cert_allowed({"subjectAltName": (("IP Address", "0:0:0:0:0:0:0:1\n"),)})
    assert not config.client_cert_allowed({"subjectAltName": (("DNS", "other.example"),)})
    assert not config.client_cert_allowed({"subject": ()})
    assert not config.client_cert_allowed(None)
    assert WebConfig().client_cert_allowed(None)


# --- examples and promtool -------------------------------------------------------------


def example_files() -> list[Path]:
    return sorted(EXAMPLES.glob("*.yml"))


def test_there_are_examples() -> None:
    names = {p.name for p in example_files()}
    assert {"tls.yml", "basic-auth.yml", "tls-basic-auth.yml"} <= names


def install_example(example: Path, pki: PKI, directory: Path) -> Path:
    """Copy an example next to real files carrying its placeholder names."""
    shutil.copy(pki.server_cert, directory / "p1-exporter.crt")
    shutil.copy(pki.server_key, directory / "p1-exporter.key")
    target = directory / example.name
    shutil.copy(example, target)
    return target


@pytest.mark.parametrize("example", example_files(), ids=lambda p: p.name)
def test_example_loads_and_documents_its_password(pki: PKI, tmp_path: Path, example: Path) -> None:
    config = WebConfig.load(str(install_example(example, pki, tmp_path)))
    text = example.read_text()
    if config.auth_required:
        assert EXAMPLE_PASSWORD in text
        assert config.check_basic_auth(basic(EXAMPLE_USER, EXAMPLE_PASSWORD))
    if "tls_server_config" in text:
        assert config.ssl_context() is not None
        # In place, the certificate paths are placeholders that do not exist.
        with pytest.raises(WebConfigError, match=r"tls_server_config\.cert_file"):
            WebConfig.load(str(example))


def promtool_check(path: Path | str) -> subprocess.CompletedProcess[str]:
    promtool = require_binary("promtool")
    return subprocess.run(
        [promtool, "check", "web-config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("example", example_files(), ids=lambda p: p.name)
def test_example_passes_promtool(pki: PKI, tmp_path: Path, example: Path) -> None:
    result = promtool_check(install_example(example, pki, tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_full_config_is_valid_for_promtool_too(pki: PKI, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
tls_server_config:
  cert_file: {pki.server_cert}
  key_file: {pki.server_key}
  client_auth_type: VerifyClientCertIfGiven
  client_ca_file: {pki.ca_cert}
  min_version: TLS12
  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, TLS_AES_256_GCM_SHA384]
  curve_preferences: [X25519, CurveP384]
http_server_config:
  http2: false
  headers:
    X-XSS-Protection: "1; mode=block"
basic_auth_users:
  alice: {hashed("x")}
""",
    )
    WebConfig.load(path)
    result = promtool_check(path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "case",
    [
        "unknown top-level key",
        "unknown tls key",
        "missing cert file",
        "key does not match cert",
        "CA without client auth",
        "insecure cipher",
        "unknown curve",
        "header not allowed",
        "header value not allowed",
        "plain-text password",
        "duplicate user",
    ],
)
def test_promtool_rejects_what_we_reject(pki: PKI, tmp_path: Path, case: str) -> None:
    path = write(tmp_path, render(INVALID[case][0], pki, tmp_path))
    with pytest.raises(WebConfigError):
        WebConfig.load(path)
    result = promtool_check(path)
    assert result.returncode != 0, f"promtool accepted {case!r}: {result.stdout}"
