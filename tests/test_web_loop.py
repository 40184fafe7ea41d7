"""The event-loop web server's defences, through real sockets on 127.0.0.1.

Each test sets up one of issue 14's attacks in miniature (short deadlines, small limits)
and checks what a user would see: the owner's requests keep being answered, the
attacker's connections are closed, logs stay short. The same attacks at full size, with
figures beside the landed version, are ``benchmarks/http_abuse.py``.
"""

from __future__ import annotations

import base64
import http.client
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from p1_exporter.web.messages import Request, Response
from p1_exporter.web.reload import WebConfigSource
from p1_exporter.web.server import ExporterHTTPServer
from p1_exporter.web.webconfig import WebConfig
from tests.helpers.exporter import ExporterProcess, http_get
from tests.helpers.tls import make_pki
from tests.helpers.wait import wait_for
from tests.helpers.web import ServeFactory, serving, tls_config

BIG = b"x" * 200_000  # several times what the kernel buffers of a socket pair hold at first


def app(request: Request) -> Response:
    if request.path == "/big":
        return Response(200, BIG, "text/plain")
    return Response(200, b"ok\n", "text/plain")


@pytest.fixture
def serve() -> Iterator[ServeFactory]:
    with serving(app) as factory:
        yield factory


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def get(
    server: ExporterHTTPServer,
    path: str = "/",
    headers: dict[str, str] | None = None,
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, bytes]:
    own = conn is None
    if conn is None:
        conn = http.client.HTTPConnection(*server.server_address, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        if own:
            conn.close()


def closed_within(sock: socket.socket, limit: float) -> bool:
    """True if the server closes ``sock`` within ``limit`` seconds (answers are discarded)."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


# --- keep-alive and deadlines -----------------------------------------------------------


def test_keep_alive_outlives_the_request_timeout(serve: ServeFactory) -> None:
    """Prometheus reuses its connection: idle time is not held to the request deadline."""
    server = serve(request_timeout=0.3)
    conn = http.client.HTTPConnection(*server.server_address, timeout=5)
    try:
        assert get(server, conn=conn) == (200, b"ok\n")
        sock = conn.sock
        time.sleep(1.0)  # more than three request timeouts, idle
        assert get(server, conn=conn) == (200, b"ok\n")
        assert conn.sock is sock
    finally:
        conn.close()


def test_slow_pipelining_reader_is_cut_off_and_others_are_served(serve: ServeFactory) -> None:
    """A client that pipelines requests and reads nothing loses its connection after
    ``request_timeout`` of waiting in all, although each response on its own was quick."""
    server = serve(request_timeout=1.0)
    with socket.create_connection(server.server_address) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n" * 50)
        began = time.monotonic()
        assert get(server) == (200, b"ok\n")  # others are served meanwhile
        received = 0
        sock.settimeout(0.05)
        closed = False
        while time.monotonic() - began < 6.0:
            time.sleep(0.05)
            try:
                chunk = sock.recv(2048)  # ~40 KB/s: far too slow for 50 x 200 KB
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            received += len(chunk)
        assert closed, "the slow reader kept its connection"
        assert received < 50 * len(BIG)


def test_header_bytes_are_capped(serve: ServeFactory) -> None:
    """Headers sent slowly, line after line, are refused at 16 KiB, not buffered to MBs."""
    server = serve(request_timeout=5.0)
    with socket.create_connection(server.server_address, timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        answer = b""
        for index in range(100):  # 100 x 1 KB lines, sent apart
            try:
                sock.sendall(b"X-Pad-%d: %s\r\n" % (index, b"p" * 1000))
            except OSError:
                break
            time.sleep(0.005)
        sock.settimeout(5)
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_connections_per_client_address_are_capped(serve: ServeFactory) -> None:
    """Over the per-address cap, the oldest connection that never sent a request gives
    way, so a client flooding from one address cannot take every slot."""
    server = serve(request_timeout=10.0, max_connections_per_client=4)
    stalled = [socket.create_connection(server.server_address) for _ in range(4)]
    try:
        for sock in stalled:
            sock.sendall(b"GET / HT")
            time.sleep(0.05)
        wait_for(lambda: server.connections == 4, 5, "four connections")
        assert get(server) == (200, b"ok\n")
        assert closed_within(stalled[0], 2.0)  # the one waiting longest
        assert server.connections <= 4
        assert not closed_within(stalled[3], 0.3)  # the newest keeps its place
    finally:
        for sock in stalled:
            sock.close()


def test_slowly_dribbled_tls_handshake_has_its_own_deadline(
    serve: ServeFactory, tmp_path: Path
) -> None:
    (tmp_path / "pki").mkdir()
    server = serve(tls_config(make_pki(tmp_path / "pki"), tmp_path), request_timeout=0.5)
    with socket.create_connection(server.server_address) as sock:
        began = time.monotonic()
        sock.sendall(b"\x16\x03\x01")  # a handshake record that never completes
        assert closed_within(sock, 3.0)
        assert time.monotonic() - began < 2.0


def test_tls_keep_alive_with_large_answers_is_not_taken_for_a_slow_reader(
    serve: ServeFactory, tmp_path: Path
) -> None:
    """Write flow control over TLS: answers larger than the socket buffers, read at full
    speed, never count against the stall budget (a budget of 1 s here)."""
    import ssl

    (tmp_path / "pki").mkdir()
    pki = make_pki(tmp_path / "pki")
    server = serve(tls_config(pki, tmp_path), request_timeout=1.0)
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    conn = http.client.HTTPSConnection(
        "localhost", server.server_address[1], timeout=5, context=context
    )
    try:
        for _ in range(4):
            assert get(server, "/big", conn=conn) == (200, BIG)
            sock = conn.sock
            time.sleep(0.5)
        assert conn.sock is sock  # one connection throughout
    finally:
        conn.close()


# --- authentication ---------------------------------------------------------------------


def users(**passwords: str) -> str:
    lines = "".join(
        f"  {user}: '{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(4)).decode()}'\n"
        for user, pw in passwords.items()
    )
    return "basic_auth_users:\n" + lines


def test_known_credentials_never_wait_for_wrong_ones(serve: ServeFactory) -> None:
    """Wrong passwords queue for bcrypt among themselves; a credential checked once is
    answered from memory while they wait, and a full queue answers 503, not a guess."""
    slow_hash = bcrypt.hashpw(b"secret", bcrypt.gensalt(12)).decode()  # ~0.2 s per check
    server = serve(WebConfig(basic_auth_users={"owner": slow_hash}))
    assert get(server, headers=basic("owner", "secret"))[0] == 200  # one bcrypt, remembered
    results: list[int] = []
    lock = threading.Lock()

    def attacker(index: int) -> None:
        status = get(server, headers=basic("owner", f"guess-{index}"))[0]
        with lock:
            results.append(status)

    threads = [threading.Thread(target=attacker, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(results) > 0, 10, "a first answer to the attackers")
    owner_status = get(server, headers=basic("owner", "secret"))[0]
    with lock:
        answered_before_owner = len(results)
    for thread in threads:
        thread.join(30)
    assert owner_status == 200
    assert answered_before_owner < 20  # the owner did not wait for the queue to empty
    assert sorted(set(results)) == [401, 503]  # 1 worker + 8 queued get checked, rest 503
    totals = server.auth_failures.totals
    assert totals["invalid"] == results.count(401) and totals["busy"] == results.count(503)


def test_a_replayed_wrong_password_costs_no_bcrypt(serve: ServeFactory) -> None:
    slow_hash = bcrypt.hashpw(b"secret", bcrypt.gensalt(12)).decode()
    server = serve(WebConfig(basic_auth_users={"owner": slow_hash}))
    assert get(server, headers=basic("owner", "wrong"))[0] == 401  # checked once
    statuses = [get(server, headers=basic("owner", "wrong"))[0] for _ in range(30)]
    assert statuses == [401] * 30  # 30 x 0.2 s of bcrypt would exceed the pool: no 503


def test_auth_failures_are_logged_as_a_count(
    serve: ServeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="p1_exporter.http")
    hashed = bcrypt.hashpw(b"secret", bcrypt.gensalt(4)).decode()
    server = serve(WebConfig(basic_auth_users={"owner": hashed}), auth_log_interval=1.0)
    for index in range(25):
        headers = basic("owner", f"nope-{index}") if index % 5 else {}
        assert get(server, headers=headers)[0] == 401
    assert get(server, path="/nowhere")[0] == 401  # before the 404
    wait_for(
        lambda: any("failed basic-auth" in r.getMessage() for r in caplog.records),
        5,
        "the failure count in the log",
    )
    lines = [r.getMessage() for r in caplog.records if r.name == "p1_exporter.http"]
    assert len(lines) == 1, lines
    assert lines[0].startswith("26 failed basic-auth requests")
    assert "invalid 20" in lines[0] and "missing 6" in lines[0] and "127.0.0.1" in lines[0]


# --- web config reload ------------------------------------------------------------------


def test_removed_user_is_refused_within_a_second_and_broken_file_keeps_the_last_good(
    serve: ServeFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="p1_exporter.http")
    path = tmp_path / "web.yml"
    path.write_text(users(alice="wonderland", bob="builder"))
    server = serve(WebConfigSource.load(str(path)))
    assert get(server, headers=basic("alice", "wonderland"))[0] == 200
    assert get(server, headers=basic("bob", "builder"))[0] == 200

    tmp = tmp_path / "web.yml.new"
    tmp.write_text(users(bob="builder"))
    os.replace(tmp, path)
    changed = time.monotonic()
    while get(server, headers=basic("alice", "wonderland"))[0] == 200:
        assert time.monotonic() - changed < 3.0, "alice still accepted"
        time.sleep(0.05)
    assert time.monotonic() - changed < 1.5
    assert get(server, headers=basic("bob", "builder"))[0] == 200

    path.write_text("basic_auth_users: [not, a, mapping]\n")
    time.sleep(1.1)
    for _ in range(5):
        assert get(server, headers=basic("bob", "builder"))[0] == 200
        time.sleep(0.3)  # several looks at the same broken file
    assert get(server, headers=basic("alice", "wonderland"))[0] == 401
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "keeping the last good one" in errors[0].getMessage()


def test_sighup_reloads_the_web_config_and_the_exporter_keeps_running(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text(users(alice="wonderland"))
    args = ["--demo", "--web.listen-address", "127.0.0.1:0", "--web.config.file", str(path)]
    with ExporterProcess(args) as exporter:
        exporter.wait_listening()
        assert http_get(exporter.url, headers=basic("alice", "wonderland")).status == 200
        path.write_text(users(bob="builder"))
        exporter.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded" in exporter.log, 5, "the reload")
        assert exporter.proc.poll() is None
        assert http_get(exporter.url, headers=basic("alice", "wonderland")).status == 401
        assert http_get(exporter.url, headers=basic("bob", "builder")).status == 200
        code, _ = exporter.stop()
    assert code == 0
    assert "received SIGHUP" in exporter.log


def test_sigterm_under_load_exits_promptly_with_zero() -> None:
    """Stalled sockets, slow readers and scrapers in flight do not hold the exit."""
    args = ["--demo", "--web.listen-address", "127.0.0.1:0", "--web.request-timeout", "30"]
    with ExporterProcess(args) as exporter:
        exporter.wait_listening()
        address = ("127.0.0.1", exporter.port)
        sockets = [socket.create_connection(address) for _ in range(100)]
        try:
            for index, sock in enumerate(sockets):
                if index % 2:
                    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 200)
                else:
                    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            stop = threading.Event()

            def scraper() -> None:
                while not stop.is_set():
                    try:
                        http_get(exporter.url, timeout=2)
                    except (OSError, http.client.HTTPException):
                        return

            scrapers = [threading.Thread(target=scraper) for _ in range(4)]
            for thread in scrapers:
                thread.start()
            time.sleep(0.5)
            code, elapsed = exporter.stop(signal.SIGTERM, timeout=5.0)
            stop.set()
            for thread in scrapers:
                thread.join(5)
        finally:
            for sock in sockets:
                sock.close()
    assert code == 0, exporter.log
    assert elapsed < 2.0
    assert "Traceback" not in exporter.log
