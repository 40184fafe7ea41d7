"""TLS and basic auth end to end: a real exporter process started with --web.config.file,
checked with Python clients, ``promtool check web-config`` and a real Prometheus server
that scrapes it over https with a CA file and basic auth.

Certificates come from tests/helpers/tls.py (openssl CLI); the password hash from ``bcrypt``
with rounds=4 (fast; the cost does not matter for a test).
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import bcrypt
import pytest

from tests.helpers.binaries import require_binary
from tests.helpers.exporter import ExporterProcess, http_get
from tests.helpers.metrics import series, value
from tests.helpers.net import free_port
from tests.helpers.tls import CURVE_NAMES, PKI, enforceable, make_pki, only_curve
from tests.helpers.wait import wait_for

USER = "prometheus"
PASSWORD = "correct horse battery staple"


class Setup(NamedTuple):
    pki: PKI
    web_config: Path
    exporter: ExporterProcess


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    directory = tmp_path_factory.mktemp("tls")
    pki = make_pki(directory)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web_config = directory / "web.yml"
    web_config.write_text(
        "tls_server_config:\n"
        f"  cert_file: {pki.server_cert}\n"
        f"  key_file: {pki.server_key}\n"
        "basic_auth_users:\n"
        f"  {USER}: '{hashed}'\n"
    )
    with ExporterProcess(
        ["--demo", "--web.listen-address", "127.0.0.1:0", "--web.config.file", str(web_config)]
    ) as exporter:
        exporter.wait_listening()
        yield Setup(pki, web_config, exporter)
        assert exporter.stop()[0] == 0


def trusting(pki: PKI) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca_cert))


def auth(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_listens_on_https(setup: Setup) -> None:
    assert setup.exporter.scheme == "https"
    assert "listening on https://127.0.0.1:" in setup.exporter.log


def test_right_credentials_get_metrics(setup: Setup) -> None:
    url = setup.exporter.url
    context = trusting(setup.pki)
    wait_for(
        lambda: (
            value(
                series(http_get(url, context=context, headers=auth(USER, PASSWORD)).body.decode()),
                "p1_up",
                meter="main",
            )
            == 1.0
        ),
        what="the demo meter to be up",
    )
    for path in ("/metrics", "/healthz", "/", "/api/v1/meters", "/api/v1/live", "/static/live.js"):
        reply = http_get(url, path, context=context, headers=auth(USER, PASSWORD))
        assert reply.status == 200, path


@pytest.mark.parametrize(
    "headers",
    [
        {},
        auth(USER, "wrong password"),
        auth("admin", PASSWORD),
        auth(USER, PASSWORD.upper()),
        {"Authorization": "Bearer " + PASSWORD},
        {"Authorization": "Basic !!!not-base64"},
    ],
    ids=["none", "wrong-password", "wrong-user", "case", "bearer", "garbage"],
)
def test_wrong_or_missing_credentials_get_401(setup: Setup, headers: dict[str, str]) -> None:
    for path in ("/metrics", "/healthz", "/", "/api/v1/live", "/static/live.js"):
        reply = http_get(setup.exporter.url, path, context=trusting(setup.pki), headers=headers)
        assert reply.status == 401, path
        assert reply.headers["WWW-Authenticate"].startswith("Basic")
        assert b"p1_up" not in reply.body


def test_plain_http_to_the_tls_port_gets_400(setup: Setup) -> None:
    plain = f"http://127.0.0.1:{setup.exporter.port}"
    reply = http_get(plain, headers=auth(USER, PASSWORD), timeout=3)
    assert reply.status == 400 and b"https://" in reply.body
    assert b"p1_up" not in reply.body


def test_untrusted_certificate_is_refused_by_the_client(setup: Setup) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        http_get(
            setup.exporter.url, context=ssl.create_default_context(), headers=auth(USER, PASSWORD)
        )


def test_promtool_accepts_the_web_config(setup: Setup) -> None:
    result = subprocess.run(
        [require_binary("promtool"), "check", "web-config", str(setup.web_config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def _prometheus_api(port: int, path: str, **params: str) -> Any:
    query = urllib.parse.urlencode(params)
    reply = http_get(f"http://127.0.0.1:{port}", f"{path}?{query}" if query else path)
    assert reply.status == 200, reply
    return json.loads(reply.body)


def test_real_prometheus_scrapes_over_tls_with_basic_auth(setup: Setup, tmp_path: Path) -> None:
    prometheus = require_binary("prometheus")
    target = f"127.0.0.1:{setup.exporter.port}"
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        "  - job_name: p1\n"
        "    scheme: https\n"
        "    tls_config:\n"
        f"      ca_file: {setup.pki.ca_cert}\n"
        "    basic_auth:\n"
        f"      username: {USER}\n"
        f"      password_file: {password_file}\n"
        "    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:

        def up() -> bool:
            if process.poll() is not None:
                raise AssertionError(
                    "prometheus exited:\n" + (tmp_path / "prometheus.log").read_text()
                )
            try:
                data = _prometheus_api(port, "/api/v1/query", query='p1_up{job="p1"}')
            except (OSError, http.client.HTTPException, AssertionError):
                return False
            results = data["data"]["result"]
            return bool(results) and results[0]["value"][1] == "1"

        wait_for(up, 30, "Prometheus to scrape p1_up == 1")
        targets = _prometheus_api(port, "/api/v1/targets")["data"]["activeTargets"]
        ours = [t for t in targets if t["labels"]["job"] == "p1"]
        assert len(ours) == 1
        assert ours[0]["health"] == "up", ours[0]
        assert ours[0]["lastError"] == ""
        assert ours[0]["scrapeUrl"] == f"https://{target}/metrics"
        # A few meter values arrived too, with the meter label intact.
        power = _prometheus_api(port, "/api/v1/query", query="p1_power_import_watts")
        assert [r["metric"]["meter"] for r in power["data"]["result"]] == ["main"]
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


@pytest.mark.parametrize(
    "curves", [["X25519"], ["X25519", "CurveP256"], ["CurveP384"]], ids=lambda c: "+".join(c)
)
def test_curve_preferences_start_and_say_what_they_enforce(
    setup: Setup, tmp_path: Path, curves: list[str]
) -> None:
    """Before issue 15, [X25519] stopped the exporter on Debian 12's Python 3.11.2 and a
    longer list was ignored without a word. Now it starts everywhere; where this ssl cannot
    express the list (see tests/test_webconfig.py::enforceable) one warning says so."""
    web_config = tmp_path / "web.yml"
    web_config.write_text(
        "tls_server_config:\n"
        f"  cert_file: {setup.pki.server_cert}\n"
        f"  key_file: {setup.pki.server_key}\n"
        f"  curve_preferences: [{', '.join(curves)}]\n"
    )
    with ExporterProcess(
        ["--demo", "--web.listen-address", "127.0.0.1:0", "--web.config.file", str(web_config)]
    ) as exporter:
        exporter.wait_listening()
        assert exporter.scheme == "https"
        enforced = enforceable(curves)
        for curve in CURVE_NAMES:
            client = only_curve(setup.pki, curve)
            if client is None:
                continue  # this ssl cannot build a client offering only this curve
            try:
                status = http_get(exporter.url, "/healthz", context=client).status
            except (ssl.SSLError, OSError):
                status = None
            assert (status is not None) is (curve in curves or not enforced), curve
        assert exporter.stop()[0] == 0
    warnings = [line for line in exporter.lines if "level=warn" in line]
    if enforced:
        assert warnings == []
    else:
        assert len(warnings) == 1, exporter.log
        assert "logger=webconfig" in warnings[0]
        assert f"curve_preferences [{', '.join(curves)}] is not enforced" in warnings[0]
        assert "using OpenSSL's default groups instead" in warnings[0]
