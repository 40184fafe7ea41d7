"""The exporter's HTTP server in-process on 127.0.0.1:0, and TLS web configs for it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from p1_exporter.web.messages import Handler
from p1_exporter.web.reload import WebConfigSource
from p1_exporter.web.server import ExporterHTTPServer
from p1_exporter.web.webconfig import WebConfig
from tests.helpers.tls import PKI

#: ``serve(web_config=None, *, handler=..., **server_options)``: a started server.
ServeFactory = Callable[..., ExporterHTTPServer]


@contextlib.contextmanager
def serving(handler: Handler) -> Iterator[ServeFactory]:
    """A factory of started servers answering with ``handler`` (unless given another);
    all are shut down on exit."""
    servers: list[ExporterHTTPServer] = []

    def factory(
        web_config: WebConfig | WebConfigSource | None = None, **kwargs: Any
    ) -> ExporterHTTPServer:
        server = ExporterHTTPServer(
            "127.0.0.1:0", kwargs.pop("handler", handler), web_config, **kwargs
        )
        servers.append(server)
        server.start()
        return server

    try:
        yield factory
    finally:
        for server in servers:
            server.shutdown()


def tls_config(pki: PKI, directory: Path, extra: str = "", users: str = "") -> WebConfig:
    """A web config serving ``pki``'s server certificate, written to ``directory``/web.yml."""
    path = directory / "web.yml"
    text = f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
    path.write_text(text + extra + users)
    return WebConfig.load(str(path))
