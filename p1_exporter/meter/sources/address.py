"""Meter addresses: which are refused at start, and which kind of source serves each."""

from __future__ import annotations

import stat
import urllib.parse
from pathlib import Path

from p1_exporter.meter.sources.base import SerialSettings, Source
from p1_exporter.meter.sources.file import FileSource
from p1_exporter.meter.sources.http import HttpSource
from p1_exporter.meter.sources.serial import SerialSource

#: What a meter address may be, for error messages.
SUPPORTED_ADDRESSES = (
    "a serial device path",
    "socket://HOST:PORT",
    "rfc2217://HOST:PORT",
    "http://HOST/PATH",
    "https://HOST/PATH",
    "file:PATH",
    "sim://",
)
#: pyserial's own URL handlers beyond socket:// and rfc2217:// (debugging aids), passed on.
_PYSERIAL_SCHEMES = frozenset({"loop", "spy", "alt", "hwgrep", "cp2110"})
#: Schemes people write for a raw TCP dongle.
_TCP_LIKE = frozenset({"tcp", "telnet", "raw", "ser2net"})


def check_address(url: str) -> None:
    """Refuse a meter address that can never work, with a hint; raises ValueError.

    Checked once at start, so a typo stops the exporter with a clear message instead of
    being retried forever. A device path that does not exist yet is fine (the cable may be
    plugged in later); a regular file or a directory is not a serial port. A ``sim://``
    address is checked in full: its options, their ranges and its pace.
    """
    if url.startswith("sim://"):
        from p1_exporter.sim.meter import SimOptions

        SimOptions.from_url(url)  # unknown options, values out of range, too fast a pace
        return
    if url.startswith("file:"):
        return
    scheme, sep, rest = url.partition("://")
    if not sep:
        _check_device_path(url)
        return
    if scheme != scheme.lower():
        raise ValueError(f"write the scheme in lower case: {scheme.lower()}://")
    if scheme in _TCP_LIKE:
        parts = urllib.parse.urlsplit("socket://" + rest)
        raise ValueError(
            f"{scheme}:// is not a supported scheme; did you mean "
            f"socket://{parts.netloc or 'HOST:PORT'}?"
        )
    if scheme in ("socket", "rfc2217", "http", "https"):
        parts = urllib.parse.urlsplit(url)
        if not parts.hostname:
            raise ValueError(
                f"no host; write {scheme}://HOST"
                + (":PORT" if scheme in ("socket", "rfc2217") else "/PATH")
            )
        try:
            port = parts.port
        except ValueError:
            raise ValueError(
                f"port {parts.netloc.rpartition(':')[2]!r} is not a number from 1 to 65535"
            ) from None
        if port == 0:
            raise ValueError("port 0 is not a number from 1 to 65535")
        if port is None and scheme in ("socket", "rfc2217"):
            raise ValueError(
                f"no port; write {scheme}://{parts.hostname}:PORT (ser2net and "
                "most dongles use 8088 or 23)"
            )
        return
    if scheme in _PYSERIAL_SCHEMES:
        return
    raise ValueError(f"unknown scheme {scheme}://; use " + ", ".join(SUPPORTED_ADDRESSES))


def _check_device_path(path: str) -> None:
    try:
        mode = Path(path).stat().st_mode
    except (OSError, ValueError):
        return  # absent for now, or not ours to read: the reader reports it and retries
    if stat.S_ISREG(mode):
        raise ValueError("is a regular file, not a serial port; use file:PATH to replay a file")
    if stat.S_ISDIR(mode):
        raise ValueError(
            "is a directory, not a serial port (look in /dev/serial/by-id/ for the device itself)"
        )


def open_source(
    url: str, settings: SerialSettings | None = None, poll_interval: float = 1.0
) -> Source:
    """The source for a meter URL (see the README's "Sources" section); ValueError if bad."""
    check_address(url)
    if url.startswith("sim://"):
        from p1_exporter.meter.sources.sim import SimSource

        return SimSource(url)
    if url.startswith("file:"):
        parts = urllib.parse.urlsplit(url)
        options = dict(urllib.parse.parse_qsl(parts.query))
        path = url[len("file:") :].split("?", 1)[0]
        if path.startswith("//"):
            path = path[2:]
        unknown = set(options) - {"pace", "loop"}
        if unknown:
            raise ValueError(f"unknown file: option {sorted(unknown)[0]!r} (use pace, loop)")
        return FileSource(
            path,
            pace=options.get("pace", "recorded"),
            loop=options.get("loop", "0") in ("1", "true", "yes"),
        )
    if url.startswith(("http://", "https://")):
        return HttpSource(url, poll_interval=poll_interval)
    return SerialSource(url, settings)
