"""Ports on 127.0.0.1: one that nothing listens on, and whether a connect is refused."""

from __future__ import annotations

import errno
import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound and released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def refused(port: int) -> bool:
    """True when a TCP connect to the port is refused right now."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except OSError as exc:
        return exc.errno == errno.ECONNREFUSED
    return False
