"""The exporter as a real process (``python -m p1_exporter``) and plain HTTP requests to it.

:class:`ExporterProcess` takes the real scheme and port from the exporter's "listening on"
log line, so tests can pass ``--web.listen-address 127.0.0.1:0``.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from email.message import Message
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

from tests.helpers.metrics import LabelKey, series

ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"listening on (https?)://(\S+?):(\d+)/")
START_TIMEOUT = 15.0


def exporter_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without P1_EXPORTER_* (the host's settings stay out)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("P1_EXPORTER_")}
    env.update(extra or {})
    return env


def run_exporter(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 20.0
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m p1_exporter ARGS`` to completion (for commands that exit)."""
    return subprocess.run(
        [sys.executable, "-m", "p1_exporter", *args], env=exporter_env(env), cwd=ROOT,
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


class ExporterProcess:
    """A running ``python -m p1_exporter``; stderr (the log) is collected line by line.

    :meth:`wait_listening` takes the real scheme and port from the exporter's
    "listening on" log line, so tests can pass ``--web.listen-address 127.0.0.1:0``.
    """

    def __init__(self, args: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        self.args = list(args)
        self.lines: list[str] = []
        self.scheme = "http"
        self.port = 0
        self._listening = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "p1_exporter", *self.args], env=exporter_env(env), cwd=ROOT,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self._collector = threading.Thread(target=self._collect, daemon=True)
        self._collector.start()

    def _collect(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            match = LISTENING.search(line)
            if match and not self._listening.is_set():
                self.scheme, self.port = match[1], int(match[3])
                self._listening.set()

    @property
    def log(self) -> str:
        """Everything the process wrote to stderr so far."""
        return "\n".join(self.lines)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def wait_listening(self, timeout: float = START_TIMEOUT) -> ExporterProcess:
        """Block until the "listening on" line; fail with the log if the process dies."""
        deadline = time.monotonic() + timeout
        while not self._listening.wait(0.05):
            if self.proc.poll() is not None:
                self._collector.join(2)
                raise AssertionError(f"exporter exited with {self.proc.returncode}:\n{self.log}")
            if time.monotonic() > deadline:
                raise AssertionError(f"exporter not listening after {timeout} s:\n{self.log}")
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, float]:
        """Send ``sig``; return (exit code, seconds until exit). Fails after ``timeout``,
        which only guards against a hang (benchmarks/bench_stop.py measures the time)."""
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"exporter still running {timeout} s after {sig}:\n{self.log}"
            ) from None
        elapsed = time.monotonic() - started
        self._collector.join(2)
        return code, elapsed

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> ExporterProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.kill()


class Reply(NamedTuple):
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http_get(
    url: str,
    path: str = "/metrics",
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    context: ssl.SSLContext | None = None,
    timeout: float = 5.0,
) -> Reply:
    """One request with http.client: no redirects, no decompression, 4xx/5xx returned."""
    scheme, _, hostport = url.partition("://")
    host, _, port = hostport.rpartition(":")
    conn: http.client.HTTPConnection
    if scheme == "https":
        conn = http.client.HTTPSConnection(host, int(port), timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, headers=dict(headers or {}))
        response = conn.getresponse()
        return Reply(response.status, response.msg, response.read())
    finally:
        conn.close()


def scrape(url: str, path: str = "/metrics") -> dict[str, dict[LabelKey, float]]:
    """GET a metrics page and parse it; fails unless the status is 200."""
    reply = http_get(url, path)
    assert reply.status == 200, reply
    return series(reply.body.decode())
