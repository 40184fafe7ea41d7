"""ExporterHTTPServer over real sockets on 127.0.0.1, with real TLS (openssl-made PKI).

Timing-sensitive tests use request_timeout=0.5 s so that "stalled clients are closed
after request_timeout" is observable quickly; bounds are generous for loaded CI hosts.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import http.client
import json
import logging
import os
import select
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from p1_exporter.web.listen import parse_listen_address
from p1_exporter.web.messages import GZIP_MIN_BYTES, Headers, Request, Response
from p1_exporter.web.server import ExporterHTTPServer
from p1_exporter.web.webconfig import WebConfig
from tests.helpers.tls import PKI, make_leaf, make_pki
from tests.helpers.web import ServeFactory, serving, tls_config

BIG = b"".join(b'p1_metric_sample{phase="l%d"} %d\n' % (i % 3, i) for i in range(400))
assert len(BIG) > 4 * GZIP_MIN_BYTES


class App:
    """Stand-in for the lead's routes; records every request it receives."""

    def __init__(self) -> None:
        self.calls: list[Request] = []
        self.lock = threading.Lock()

    def __call__(self, request: Request) -> Response:
        with self.lock:
            self.calls.append(request)
        if request.path == "/boom":
            raise RuntimeError("kaboom: secret internal detail")
        if request.path == "/bad-header":
            return Response(200, b"x", "text/plain", (("X-Evil", "a\r\nSet-Cookie: x"),))
        if request.path == "/bad-value":
            return Response(200, b"x", "text/plain", (("X-Snow", "☃"),))
        if request.path == "/bad-body":
            return Response(200, "not bytes", "text/plain")  # type: ignore[arg-type]
        if request.path == "/missing":
            return Response(404, b"no such page\n", "text/plain; charset=utf-8")
        if request.path == "/big":
            return Response(200, BIG, "text/plain; version=0.0.4")
        if request.path == "/echo":
            body = {
                "method": request.method,
                "path": request.path,
                "query": request.query,
                "x-test": request.headers.get("x-test"),
                "X-TEST": request.headers.get("X-TEST"),
                "has_x_test": "X-Test" in request.headers,
            }
            return Response(200, json.dumps(body).encode(), "application/json")
        return Response(200, b"ok\n", "text/plain", (("X-App", "yes"),))


@pytest.fixture
def app() -> App:
    return App()


@pytest.fixture
def serve(app: App) -> Iterator[ServeFactory]:
    """Start servers on 127.0.0.1:0; all are shut down after the test."""
    with serving(app) as factory:
        yield factory


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def client_context(pki: PKI, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def request(
    server: ExporterHTTPServer,
    method: str = "GET",
    path: str = "/",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    host, port = server.server_address
    conn: http.client.HTTPConnection
    if context is not None:
        conn = http.client.HTTPSConnection("localhost", port, timeout=5, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def raw(server: ExporterHTTPServer, data: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes, half-close, and read the answer until the server closes."""
    with socket.create_connection(server.server_address, timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks: list[bytes] = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def status_line(answer: bytes) -> str:
    return answer.split(b"\r\n", 1)[0].decode("latin-1")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def wait_closed(sock: socket.socket, limit: float) -> float:
    """Seconds until the server closes ``sock`` (EOF or reset); fails after ``limit``."""
    start = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except (ConnectionResetError, BrokenPipeError):
        pass
    except TimeoutError:
        pytest.fail(f"server did not close the connection within {limit} s")
    return time.monotonic() - start


def assert_alive(server: ExporterHTTPServer) -> None:
    status, _, body = request(server)
    assert (status, body) == (200, b"ok\n")


# --- listen address --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9357", ("127.0.0.1", 9357)),
        ("[::1]:9357", ("::1", 9357)),
        ("localhost:0", ("localhost", 0)),
        ("meter-pi.lan:80", ("meter-pi.lan", 80)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
        ("[::]:9357", ("::", 9357)),
    ],
)
def test_parse_listen_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(text) == expected


def test_parse_listen_address_empty_host_means_all_interfaces() -> None:
    expected = "::" if socket.has_dualstack_ipv6() else "0.0.0.0"
    assert parse_listen_address(":9357") == (expected, 9357)


@pytest.mark.parametrize(
    "text",
    ["", "9357", "127.0.0.1", "127.0.0.1:", ":abc", ":70000", ":-1", "::1:9357", "[::1]9357",
     "[::1", "[nothost]:80", "bad_host:80", " :9357", ":9357 ", "host:9357/metrics", ":٣"],
)  # fmt: skip
def test_parse_listen_address_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid listen address"):
        parse_listen_address(text)


def test_bound_port_and_hostname(app: App) -> None:
    server = ExporterHTTPServer("localhost:0", app)
    try:
        host, port = server.server_address
        assert host == "127.0.0.1"  # IPv4 first for names, like Go
        assert port > 0
        assert not server.tls_enabled
        server.start()
        with pytest.raises(RuntimeError):
            server.start()
        assert_alive(server)
    finally:
        server.shutdown()
    server.shutdown()  # idempotent
    with pytest.raises(OSError):
        socket.create_connection(server.server_address, timeout=1).close()


def test_headers_mapping_is_case_insensitive() -> None:
    headers = Headers([("X-Test", "a"), ("Accept", "b"), ("x-test", "c")])
    assert headers["x-TEST"] == "a, c"
    assert "ACCEPT" in headers
    assert object() not in headers
    assert headers.get("missing") is None
    assert list(headers) == ["X-Test", "Accept"]
    assert len(headers) == 2


# --- plain HTTP ----------------------------------------------------------------------


def test_get(serve: ServeFactory, app: App) -> None:
    server = serve()
    status, headers, body = request(server)
    assert (status, body) == (200, b"ok\n")
    assert headers["Content-Type"] == "text/plain"
    assert headers["Content-Length"] == "3"
    assert headers["X-App"] == "yes"
    assert headers["Date"]
    assert "Server" not in headers  # no version banner
    assert [c.method for c in app.calls] == ["GET"]


def test_head_has_get_length_and_no_body(serve: ServeFactory, app: App) -> None:
    server = serve()
    _, get_headers, get_body = request(server, path="/big")
    answer = raw(server, b"HEAD /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert status_line(head) == "HTTP/1.1 200 OK"
    assert f"Content-Length: {len(BIG)}".encode() in head
    assert rest == b""
    assert get_headers["Content-Length"] == str(len(BIG)) and get_body == BIG
    assert [c.method for c in app.calls] == ["GET", "HEAD"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
def test_other_methods_get_405_without_reaching_handler(
    serve: ServeFactory, app: App, method: str
) -> None:
    server = serve()
    body = b"a=1" if method in ("POST", "PUT", "PATCH") else None
    status, headers, _ = request(server, method, "/metrics", body=body)
    assert status == 405
    assert headers["Allow"] == "GET, HEAD"
    assert headers["Connection"] == "close"
    assert app.calls == []
    assert_alive(server)


def test_handler_status_passes_through(serve: ServeFactory) -> None:
    status, headers, body = request(serve(), path="/missing")
    assert (status, body) == (404, b"no such page\n")
    assert headers["Content-Type"] == "text/plain; charset=utf-8"


def test_query_path_and_headers_reach_handler(serve: ServeFactory) -> None:
    server = serve()
    status, _, body = request(
        server, path="/ech%6F?a=1&a=2&b=&c=%20x+y&d", headers={"X-Test": "hello"}
    )
    assert status == 200
    seen = json.loads(body)
    assert seen["path"] == "/echo"
    assert seen["query"] == {"a": ["1", "2"], "b": [""], "c": [" x y"], "d": [""]}
    assert seen["x-test"] == seen["X-TEST"] == "hello"
    assert seen["has_x_test"] is True


def test_absolute_form_target(serve: ServeFactory) -> None:
    answer = raw(
        serve(),
        b"GET http://meter:9357/echo?x=1 HTTP/1.1\r\nHost: meter:9357\r\nConnection: close\r\n\r\n",
    )
    assert status_line(answer) == "HTTP/1.1 200 OK"
    seen = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert (seen["path"], seen["query"]) == ("/echo", {"x": ["1"]})


def test_keep_alive_serves_several_requests_on_one_connection(serve: ServeFactory) -> None:
    server = serve()
    conn = http.client.HTTPConnection(*server.server_address, timeout=5)
    try:
        for _ in range(3):
            conn.request("GET", "/")
            response = conn.getresponse()
            assert (response.status, response.read()) == (200, b"ok\n")
            assert response.headers["Connection"] is None
        sock = conn.sock
        conn.request("GET", "/big")
        assert conn.getresponse().read() == BIG
        assert conn.sock is sock  # same TCP connection throughout
    finally:
        conn.close()


def test_get_with_body_closes_connection(serve: ServeFactory) -> None:
    status, headers, body = request(serve(), body=b"unexpected")
    assert (status, body) == (200, b"ok\n")
    assert headers["Connection"] == "close"  # the body is never parsed as a request


@pytest.mark.parametrize(
    ("accept_encoding", "compressed"),
    [
        ("gzip", True),
        ("deflate, gzip;q=0.5", True),
        ("*", True),
        ("br, x-gzip", True),
        (None, False),
        ("identity", False),
        ("gzip;q=0", False),
        ("*;q=0", False),
        ("deflate", False),
    ],
)
def test_gzip_negotiation(
    serve: ServeFactory, accept_encoding: str | None, compressed: bool
) -> None:
    headers = {"Accept-Encoding": accept_encoding} if accept_encoding else {}
    # http.client adds "Accept-Encoding: identity" only when we pass none; raw is exact.
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request_head = f"GET /big HTTP/1.1\r\nHost: x\r\n{lines}Connection: close\r\n\r\n"
    answer = raw(serve(), request_head.encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    assert status_line(head) == "HTTP/1.1 200 OK"
    assert b"Vary: Accept-Encoding" in head
    assert f"Content-Length: {len(body)}".encode() in head
    if compressed:
        assert b"Content-Encoding: gzip" in head
        assert len(body) < len(BIG) / 3
        assert gzip.decompress(body) == BIG
    else:
        assert b"Content-Encoding" not in head
        assert body == BIG


def test_small_bodies_are_not_compressed(serve: ServeFactory) -> None:
    status, headers, body = request(serve(), headers={"Accept-Encoding": "gzip"})
    assert (status, body) == (200, b"ok\n")
    assert headers["Content-Encoding"] is None
    assert headers["Vary"] is None


def test_head_with_gzip_reports_compressed_length(serve: ServeFactory) -> None:
    server = serve()
    _, get_headers, get_body = request(server, path="/big", headers={"Accept-Encoding": "gzip"})
    status, head_headers, head_body = request(
        server, "HEAD", "/big", headers={"Accept-Encoding": "gzip"}
    )
    assert status == 200 and head_body == b""
    assert head_headers["Content-Encoding"] == "gzip"
    assert head_headers["Content-Length"] == get_headers["Content-Length"] == str(len(get_body))


def test_handler_exception_is_500_one_log_line_and_server_survives(
    serve: ServeFactory, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO, logger="p1_exporter.http")
    server = serve()
    status, headers, body = request(server, path="/boom")
    assert status == 500
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert b"kaboom" not in body and b"Traceback" not in body
    records = [r for r in caplog.records if r.name == "p1_exporter.http"]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert "RuntimeError" in records[0].getMessage()
    assert records[0].exc_info is None  # one line, no traceback at INFO level
    assert request(server, path="/bad-header")[0] == 500  # header injection refused
    assert request(server, path="/bad-value")[0] == 500  # not encodable in HTTP/1.1
    assert request(server, path="/bad-body")[0] == 500
    assert_alive(server)
    assert capsys.readouterr().err == ""


# --- malformed and oversized requests ----------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x00\x01\x02\xff garbage \xfe\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"GET\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"GET / HTTP/1.1 extra\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"GET / FTP/1.0\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"GET no-slash HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"GET / HTTP/2.0\r\n\r\n", "HTTP/1.1 505 HTTP Version Not Supported"),
        (b"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request"),  # no Host (RFC 9112 3.2)
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nGET /",
            "HTTP/1.1 400 Bad Request",
        ),  # smuggling: two differing lengths
        (
            b"GET /?"
            + b"&".join(b"k%d=v" % i for i in range(2000))
            + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            "HTTP/1.1 400 Bad Request",
        ),
        (
            b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            "HTTP/1.1 414 Request-URI Too Long",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n",
            "HTTP/1.1 431 Request Header Fields Too Large",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-H%d: v\r\n" % i for i in range(120))
            + b"\r\n",
            "HTTP/1.1 431 Request Header Fields Too Large",
        ),
    ],
    ids=[
        "binary",
        "one-word",
        "four-words",
        "not-http",
        "bad-target",
        "http2",
        "no-host",
        "two-lengths",
        "too-many-params",
        "long-line",
        "long-header",
        "many-headers",
    ],
)
def test_bad_requests_get_4xx_quietly_and_server_survives(
    serve: ServeFactory,
    app: App,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    data: bytes,
    expected: str,
) -> None:
    caplog.set_level(logging.INFO, logger="p1_exporter.http")
    server = serve()
    answer = raw(server, data)
    assert status_line(answer) == expected
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Connection: close" in head
    assert body == expected.split(" ", 1)[1].encode() + b"\n"  # nothing echoed back
    assert app.calls == []
    assert_alive(server)
    assert [r for r in caplog.records if r.name == "p1_exporter.http"] == []
    assert capsys.readouterr().err == ""  # nothing is written to stderr


# --- slow clients, limits, shutdown --------------------------------------------------------


def test_stalled_clients_do_not_block_others_and_are_closed(serve: ServeFactory) -> None:
    server = serve(request_timeout=0.5)
    opened = time.monotonic()
    stalled = [socket.create_connection(server.server_address) for _ in range(10)]
    try:
        for sock in stalled:
            sock.sendall(b"GET /metr")
        start = time.monotonic()
        assert_alive(server)
        assert time.monotonic() - start < 0.3
        for sock in stalled:
            wait_closed(sock, limit=3.0)
        assert 0.4 < time.monotonic() - opened < 2.5
    finally:
        for sock in stalled:
            sock.close()


def test_dribbling_client_is_cut_at_the_total_deadline(serve: ServeFactory) -> None:
    """One byte every 0.1 s never trips a per-recv timeout; the total deadline does."""
    server = serve(request_timeout=0.5)
    with socket.create_connection(server.server_address) as sock:
        start = time.monotonic()
        closed_after = None
        for byte in b"GET /metrics HTTP/1.1\r\nX-Slow: " + b"a" * 100:
            try:
                sock.send(bytes([byte]))
            except OSError:
                closed_after = time.monotonic() - start
                break
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable:
                with contextlib.suppress(OSError):
                    assert sock.recv(4096) == b""
                closed_after = time.monotonic() - start
                break
        assert closed_after is not None, "dribbling client was never disconnected"
        assert 0.4 < closed_after < 2.0


def test_idle_keep_alive_connection_is_closed_after_its_own_timeout(serve: ServeFactory) -> None:
    server = serve(request_timeout=0.2, keepalive_idle=1.0)
    with socket.create_connection(server.server_address) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.05)
        elapsed = wait_closed(sock, limit=4.0)  # reads the 200, then waits for EOF
        assert 0.8 < elapsed < 3.0  # the keep-alive deadline, not the request timeout


@pytest.mark.parametrize(
    "partial", [b"", b"\x16\x03\x01\x02\x00\x01"], ids=["silent", "half-hello"]
)
def test_stalled_tls_handshake_does_not_block_accept(
    serve: ServeFactory, pki: PKI, tmp_path: Path, partial: bytes
) -> None:
    server = serve(tls_config(pki, tmp_path), request_timeout=0.5)
    assert server.tls_enabled
    stalled = [socket.create_connection(server.server_address) for _ in range(5)]
    try:
        for sock in stalled:
            sock.sendall(partial)
        start = time.monotonic()
        status, _, body = request(server, context=client_context(pki))
        assert (status, body) == (200, b"ok\n")
        assert time.monotonic() - start < 0.4
        for sock in stalled:
            wait_closed(sock, limit=3.0)
    finally:
        for sock in stalled:
            sock.close()


def test_idle_connections_give_way_to_new_ones(serve: ServeFactory, app: App) -> None:
    server = serve(request_timeout=5.0, max_connections=3)
    stalled = [socket.create_connection(server.server_address) for _ in range(3)]
    host, port = server.server_address
    clients = [http.client.HTTPConnection(host, port, timeout=5) for _ in range(3)]
    try:
        for sock in stalled:
            sock.sendall(b"GET / HT")
            time.sleep(0.05)  # so that they have waited in this order
        time.sleep(0.1)  # let the accept thread take them
        for index, client in enumerate(clients):
            start = time.monotonic()
            client.request("GET", "/")  # and the client keeps its connection open
            response = client.getresponse()
            assert (response.status, response.read()) == (200, b"ok\n")
            assert time.monotonic() - start < 0.5  # not after the 5 s request timeout
            # The stalled client that waited longest made room, long before its deadline.
            assert wait_closed(stalled[index], limit=1.0) < 1.0
        # Clients that were served keep their connections while stalled ones are there.
        for client in clients:
            sock = client.sock
            client.request("GET", "/")
            response = client.getresponse()
            assert (response.status, response.read()) == (200, b"ok\n")
            assert client.sock is sock
    finally:
        for sock in stalled:
            sock.close()
        for client in clients:
            client.close()


def test_idle_tls_connection_gives_way(serve: ServeFactory, pki: PKI, tmp_path: Path) -> None:
    server = serve(tls_config(pki, tmp_path), request_timeout=5.0, max_connections=1)
    with socket.create_connection(server.server_address) as idle:
        time.sleep(0.1)  # no TLS handshake from this one
        status, _, body = request(server, context=client_context(pki))
        assert (status, body) == (200, b"ok\n")
        assert wait_closed(idle, limit=1.0) < 1.0


def test_shutdown_is_prompt_with_stalled_clients(
    serve: ServeFactory, pki: PKI, tmp_path: Path
) -> None:
    plain = serve(request_timeout=10.0)
    tls = serve(tls_config(pki, tmp_path), request_timeout=10.0)
    stalled = [socket.create_connection(plain.server_address) for _ in range(10)]
    stalled += [socket.create_connection(tls.server_address) for _ in range(5)]
    keep_alive = http.client.HTTPConnection(*plain.server_address, timeout=5)
    try:
        for sock in stalled[:10]:
            sock.sendall(b"GET /")
        keep_alive.request("GET", "/")
        assert keep_alive.getresponse().read() == b"ok\n"  # now idle on a keep-alive
        time.sleep(0.1)
        for server in (plain, tls):
            start = time.monotonic()
            server.shutdown()
            assert time.monotonic() - start < 1.0
        for sock in stalled:
            assert wait_closed(sock, limit=1.0) < 1.0
        for server in (plain, tls):
            with pytest.raises(OSError):
                socket.create_connection(server.server_address, timeout=1).close()
    finally:
        keep_alive.close()
        for sock in stalled:
            sock.close()


def test_context_manager_starts_and_stops(app: App) -> None:
    with ExporterHTTPServer("127.0.0.1:0", app, request_timeout=0.5) as server:
        assert_alive(server)
    with pytest.raises(OSError):
        socket.create_connection(server.server_address, timeout=1).close()


def test_invalid_arguments(app: App) -> None:
    with pytest.raises(ValueError):
        ExporterHTTPServer("127.0.0.1:0", app, request_timeout=0)
    with pytest.raises(ValueError):
        ExporterHTTPServer("127.0.0.1:0", app, max_connections=0)
    with pytest.raises(ValueError, match="invalid listen address"):
        ExporterHTTPServer("9357", app)


def test_port_in_use_raises_oserror(serve: ServeFactory, app: App) -> None:
    server = serve()
    with pytest.raises(OSError):
        ExporterHTTPServer(f"127.0.0.1:{server.server_address[1]}", app)


# --- TLS -----------------------------------------------------------------------------------


def test_tls_get_verified_against_test_ca(serve: ServeFactory, pki: PKI, tmp_path: Path) -> None:
    config = tls_config(
        pki,
        tmp_path,
        "http_server_config:\n  headers:\n    Strict-Transport-Security: max-age=60\n",
    )
    server = serve(config)
    status, headers, body = request(server, path="/big", context=client_context(pki))
    assert (status, body) == (200, BIG)
    assert headers["Strict-Transport-Security"] == "max-age=60"
    status, headers, _ = request(server, "POST", context=client_context(pki))
    assert status == 405 and headers["Strict-Transport-Security"] == "max-age=60"
    with pytest.raises(ssl.SSLCertVerificationError):
        request(server, context=ssl.create_default_context())  # system CAs do not know it


def test_plain_http_to_tls_port_gets_400(
    serve: ServeFactory, pki: PKI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="p1_exporter.http")
    server = serve(tls_config(pki, tmp_path))
    answer = raw(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_line(answer) == "HTTP/1.1 400 Bad Request"  # as Go's servers answer
    assert b"https://" in answer and b"Connection: close" in answer
    assert request(server, context=client_context(pki))[0] == 200
    assert [r for r in caplog.records if r.name == "p1_exporter.http"] == []


def test_min_version_tls13_refuses_tls12_client(
    serve: ServeFactory, pki: PKI, tmp_path: Path
) -> None:
    server = serve(tls_config(pki, tmp_path, "  min_version: TLS13\n"))
    old = client_context(pki)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        request(server, context=old)
    assert request(server, context=client_context(pki))[0] == 200


def test_max_version_tls12_is_honoured(serve: ServeFactory, pki: PKI, tmp_path: Path) -> None:
    server = serve(tls_config(pki, tmp_path, "  max_version: TLS12\n"))
    with (
        socket.create_connection(server.server_address, timeout=5) as sock,
        client_context(pki).wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        assert tls.version() == "TLSv1.2"


def test_single_curve_preference_is_enforced(serve: ServeFactory, pki: PKI, tmp_path: Path) -> None:
    server = serve(tls_config(pki, tmp_path, "  curve_preferences: [CurveP384]\n"))
    p256_only = client_context(pki)
    p256_only.set_ecdh_curve("prime256v1")  # the client offers nothing else
    with pytest.raises(ssl.SSLError):
        request(server, context=p256_only)
    p384 = client_context(pki)
    p384.set_ecdh_curve("secp384r1")
    assert request(server, context=p384)[0] == 200


def refused(server: ExporterHTTPServer, context: ssl.SSLContext) -> bool:
    """True if the TLS connection or request fails (TLS 1.3 reports client-cert errors
    only after the handshake, so failures may surface while reading the answer)."""
    try:
        request(server, context=context)
    except (ssl.SSLError, ConnectionError, http.client.HTTPException, OSError):
        return True
    return False


def test_require_and_verify_client_cert(serve: ServeFactory, pki: PKI, tmp_path: Path) -> None:
    server = serve(
        tls_config(
            pki,
            tmp_path,
            f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca_cert}\n",
        )
    )
    assert refused(server, client_context(pki))
    assert refused(server, client_context(pki, pki.other_client_cert, pki.other_client_key))
    status, _, body = request(server, context=client_context(pki, pki.client_cert, pki.client_key))
    assert (status, body) == (200, b"ok\n")


def test_verify_client_cert_if_given(serve: ServeFactory, pki: PKI, tmp_path: Path) -> None:
    server = serve(
        tls_config(
            pki,
            tmp_path,
            f"  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: {pki.ca_cert}\n",
        )
    )
    assert request(server, context=client_context(pki))[0] == 200
    assert request(server, context=client_context(pki, pki.client_cert, pki.client_key))[0] == 200
    assert refused(server, client_context(pki, pki.other_client_cert, pki.other_client_key))


def test_client_allowed_sans(serve: ServeFactory, pki: PKI, tmp_path: Path, app: App) -> None:
    server = serve(
        tls_config(
            pki,
            tmp_path,
            f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca_cert}\n"
            "  client_allowed_sans: [scraper.example]\n",
        )
    )
    assert request(server, context=client_context(pki, pki.client_cert, pki.client_key))[0] == 200
    # Same CA, SAN intruder.example: disconnected before the request is read.
    assert refused(server, client_context(pki, pki.client2_cert, pki.client2_key))
    assert len(app.calls) == 1


def test_certificate_files_are_reloaded_when_they_change(
    serve: ServeFactory, pki: PKI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    shutil.copy(pki.server_cert, cert)
    shutil.copy(pki.server_key, key)
    (tmp_path / "web.yml").write_text(
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n"
    )
    server = serve(WebConfig.load(str(tmp_path / "web.yml")))

    def served_cert() -> bytes:
        with (
            socket.create_connection(server.server_address, timeout=5) as sock,
            client_context(pki).wrap_socket(sock, server_hostname="localhost") as tls,
        ):
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            return der

    assert served_cert() == ssl.PEM_cert_to_DER_cert(pki.server_cert.read_text())
    new_cert, new_key = make_leaf(pki.directory, "server-renewed", "ca", "server_ext")
    shutil.copy(new_cert, tmp_path / "tmp.crt")
    os.replace(tmp_path / "tmp.crt", cert)  # cert first: key no longer matches for a moment
    with caplog.at_level(logging.WARNING, logger="p1_exporter.http"):
        assert served_cert() == ssl.PEM_cert_to_DER_cert(pki.server_cert.read_text())
    assert any("keeping the old" in r.getMessage() for r in caplog.records)
    shutil.copy(new_key, tmp_path / "tmp.key")
    os.replace(tmp_path / "tmp.key", key)
    assert served_cert() == ssl.PEM_cert_to_DER_cert(new_cert.read_text())


# --- basic auth ----------------------------------------------------------------------------


def auth_config(headers: str = "") -> WebConfig:
    alice = bcrypt.hashpw(b"wonderland", bcrypt.gensalt(4)).decode()
    return WebConfig(
        basic_auth_users={"alice": alice},
        headers=(("X-Frame-Options", "deny"),) if headers else (),
    )


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (basic("alice", "wonderland"), 200),
        (basic("alice", "wrong"), 401),
        (None, 401),
        (basic("mallory", "wonderland"), 401),
        ("Bearer abc", 401),
    ],
)
def test_basic_auth(serve: ServeFactory, app: App, authorization: str | None, status: int) -> None:
    server = serve(auth_config(headers="yes"))
    headers = {"Authorization": authorization} if authorization else {}
    got, response_headers, body = request(server, headers=headers)
    assert got == status
    assert response_headers["X-Frame-Options"] == "deny"
    if status == 401:
        assert response_headers["WWW-Authenticate"] == 'Basic realm="p1-exporter"'
        assert body == b"401 Unauthorized\n"
        assert app.calls == []
    else:
        assert body == b"ok\n"
        assert len(app.calls) == 1


def test_basic_auth_head_and_405(serve: ServeFactory, app: App) -> None:
    server = serve(auth_config())
    status, headers, body = request(server, "HEAD", "/")
    assert (status, body) == (401, b"")
    assert headers["WWW-Authenticate"] == 'Basic realm="p1-exporter"'
    assert request(server, "POST", "/")[0] == 401  # credentials come before any other answer
    assert request(server, path="/missing")[0] == 401
    good = {"Authorization": basic("alice", "wonderland")}
    assert request(server, "POST", "/", headers=good)[0] == 405
    assert app.calls == []


def test_basic_auth_over_tls(serve: ServeFactory, pki: PKI, tmp_path: Path) -> None:
    alice = bcrypt.hashpw(b"wonderland", bcrypt.gensalt(4)).decode()
    server = serve(tls_config(pki, tmp_path, users=f"basic_auth_users:\n  alice: '{alice}'\n"))
    ctx = client_context(pki)
    assert request(server, context=ctx)[0] == 401
    good = {"Authorization": basic("alice", "wonderland")}
    assert request(server, headers=good, context=ctx)[0] == 200


# --- curl, an independent client -------------------------------------------------------------


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    binary = shutil.which("curl")
    if binary is None:
        pytest.skip("curl is not installed")
    return subprocess.run(
        [binary, "--silent", "--show-error", "--max-time", "10", *args],
        capture_output=True,
        timeout=20,
        check=False,
    )


def test_curl_plain_http_gzip_and_head(serve: ServeFactory) -> None:
    server = serve()
    url = f"http://127.0.0.1:{server.server_address[1]}/big"
    result = curl("--compressed", url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == BIG
    result = curl("--head", "--write-out", "%{http_code}", "--output", os.devnull, url)
    assert result.stdout == b"200"
    result = curl("--request", "DELETE", "--write-out", "%{http_code}", "-o", os.devnull, url)
    assert result.stdout == b"405"


def test_curl_https_mtls_and_basic_auth(serve: ServeFactory, pki: PKI, tmp_path: Path) -> None:
    alice = bcrypt.hashpw(b"wonderland", bcrypt.gensalt(4)).decode()
    config = tls_config(
        pki,
        tmp_path,
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca_cert}\n",
        users=f"basic_auth_users:\n  alice: '{alice}'\n",
    )
    server = serve(config)
    url = f"https://localhost:{server.server_address[1]}/big"
    tls_args = ["--cacert", str(pki.ca_cert), "--cert", str(pki.client_cert)]
    tls_args += ["--key", str(pki.client_key)]
    result = curl(*tls_args, "--user", "alice:wonderland", "--compressed", url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == BIG
    result = curl(*tls_args, "--user", "alice:nope", "-o", os.devnull, "-w", "%{http_code}", url)
    assert result.stdout == b"401"
    result = curl("--cacert", str(pki.ca_cert), "--user", "alice:wonderland", url)
    assert result.returncode != 0  # no client certificate
