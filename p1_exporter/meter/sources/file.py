"""Where telegram bytes come from: serial ports, network dongles, HTTP, files, the simulator.

Every source has the same small surface: ``open()``, ``read(timeout) -> bytes``
(empty on timeout) and ``close()``. Expected failures raise :class:`SourceError`
with a kind and a plain-words hint; the reader decides about retries.
"""

from __future__ import annotations

import contextlib
import errno
import re
import stat
import termios
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal, Protocol, get_args

import serial

from p1_exporter.core.clock import parse_meter_time
from p1_exporter.core.obis import CLOCK
from p1_exporter.history.capture import HEADER_PREFIX, CaptureReader, is_capture

#: Why a source failed: the label of a :class:`SourceError`, the ``err=`` field of its log
#: line and the key its log line is limited by. ``silent`` (no byte for the silence
#: timeout), ``ended`` (a replay finished) and ``internal`` (an unexpected exception) are
#: decided by the reader; the others by the sources.
SourceErrorKind = Literal["not_found", "permission", "busy", "refused", "open_failed",
                          "disconnected", "silent", "http", "internal", "closed", "ended"]
SOURCE_ERROR_KINDS: tuple[SourceErrorKind, ...] = get_args(SourceErrorKind)


class SourceError(Exception):
    """An expected source failure. ``kind`` is a short label; ``str()`` says what to do."""

    def __init__(self, kind: SourceErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class SerialSettings:
    """Line settings such as 115200 8N1."""

    baudrate: int
    bytesize: int
    parity: str
    stopbits: int = 1

    def __str__(self) -> str:
        return f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"

    @classmethod
    def parse(cls, text: str) -> SerialSettings:
        """``115200-8N1`` or ``9600 7E1``."""
        match = re.fullmatch(r"\s*(\d+)[\s:-]*([5-8])([NEOMS])([12])\s*", text.upper())
        if match is None:
            raise ValueError(f"serial settings must look like 115200-8N1, not {text!r}")
        return cls(int(match[1]), int(match[2]), match[3], int(match[4]))


DSMR45 = SerialSettings(115200, 8, "N")
DSMR22 = SerialSettings(9600, 7, "E")


class Source(Protocol):
    """What the reader needs from a source of telegram bytes.

    A source may also have ``cancel_read()``: callable from another thread, it makes a
    blocking ``read`` (the current one, or else the next) return at once.
    """

    description: str

    def open(self) -> None: ...

    def read(self, timeout: float) -> bytes: ...

    def close(self) -> None: ...


class CancellablePause:
    """A sleep that ``cancel_read`` cuts short, for sources that wait between pieces."""

    def __init__(self) -> None:
        self._cancel = threading.Event()

    def _pause(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; False when cut short by :meth:`cancel_read`."""
        cancelled = self._cancel.wait(max(0.0, seconds))
        self._cancel.clear()
        return not cancelled

    def cancel_read(self) -> None:
        """Make a blocking ``read`` (this one, or else the next) return at once."""
        self._cancel.set()


def redact(url: str) -> str:
    """A URL without any password, for logs and labels."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _open_error(url: str, exc: serial.SerialException) -> SourceError:
    code = exc.errno
    text = str(exc)
    if code == errno.ENOENT or "No such file" in text:
        return SourceError("not_found", f"{url} does not exist (is the cable plugged in? "
                           "look in /dev/serial/by-id/ for its stable name); waiting for it")
    if code == errno.EACCES or "Permission denied" in text:
        return SourceError("permission", f"permission denied on {url}: add the exporter's user "
                           "to the dialout group (sudo usermod -aG dialout USER, then log in "
                           "again) or install the udev rule from contrib/99-p1-exporter.rules")
    if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EBUSY) or "exclusively lock" in text:
        return SourceError("busy", f"{url} is in use by another program (exclusive lock "
                           "refused); stop the other reader (a second exporter, ModemManager, "
                           "a serial console) so that it does not steal bytes")
    if "refused" in text:
        return SourceError("refused", f"connection to {redact(url)} refused; is the dongle "
                           "or ser2net running and listening on that port?")
    return SourceError("open_failed", f"cannot open {redact(url)}: {text}")


#: The one read timeout of an rfc2217:// port (see :attr:`SerialSource.fixed_timeout`).
RFC2217_READ_TIMEOUT = 0.5


class SerialSource:
    """A serial device or a pyserial URL (``socket://``, ``rfc2217://``).

    For a device path without fixed settings, :meth:`next_settings` cycles
    through DSMR 4/5 (115200 8N1) and DSMR 2.2 (9600 7E1): the reader calls it
    when no valid telegram arrives in time.
    """

    def __init__(self, url: str, settings: SerialSettings | None = None) -> None:
        self.url = url
        self.description = redact(url)
        self.is_device = "://" not in url
        self.autodetect = settings is None and self.is_device
        self.candidates = [settings] if settings else [DSMR45, DSMR22]
        #: rfc2217:// re-sends every setting when the read timeout changes: it keeps one.
        self.fixed_timeout = RFC2217_READ_TIMEOUT if url.startswith("rfc2217://") else None
        self._index = 0
        self._port: Any = None

    @property
    def cancellable(self) -> bool:
        """True when :meth:`cancel_read` cuts a blocking read short (a device: POSIX ports)."""
        return self.is_device

    def cancel_read(self) -> None:
        """Make a blocking read of a device return at once (a no-op when none is open)."""
        port = self._port
        if port is not None and self.is_device:
            with contextlib.suppress(serial.SerialException, OSError, AttributeError):
                port.cancel_read()

    @property
    def settings(self) -> SerialSettings:
        """The line settings in use."""
        return self.candidates[self._index]

    def open(self) -> None:
        settings = self.settings
        try:
            port = serial.serial_for_url(self.url, do_not_open=True)
            port.baudrate = settings.baudrate
            port.bytesize = settings.bytesize
            port.parity = settings.parity
            port.stopbits = settings.stopbits
            if self.is_device:
                port.exclusive = True
            port.open()
        except serial.SerialException as exc:
            raise _open_error(self.url, exc) from exc
        except (termios.error, ValueError) as exc:
            raise self._refused(settings, exc) from exc
        except OSError as exc:
            raise SourceError("open_failed", f"cannot open {self.description}: {exc}") from exc
        self._port = port

    def _refused(self, settings: SerialSettings, exc: Exception) -> SourceError:
        """The port (its driver, or a pty) rejects ``settings``: auto-detection moves on."""
        if self.autodetect:
            self._index = (self.candidates.index(settings) + 1) % len(self.candidates)
        return SourceError("open_failed", f"{self.description} does not accept {settings}: {exc}")

    def next_settings(self) -> SerialSettings:
        """Switch to the next candidate line settings (on the open port, if any)."""
        self._index = (self._index + 1) % len(self.candidates)
        settings = self.settings
        if self._port is not None:
            try:
                self._port.baudrate = settings.baudrate
                self._port.bytesize = settings.bytesize
                self._port.parity = settings.parity
                self._port.reset_input_buffer()
            except (termios.error, ValueError) as exc:
                raise self._refused(settings, exc) from exc
            except (serial.SerialException, OSError) as exc:
                raise SourceError("disconnected", f"{self.description}: {exc}") from exc
        return settings

    def read(self, timeout: float) -> bytes:
        port = self._port
        if port is None:
            raise SourceError("closed", f"{self.description} is not open")
        if self.fixed_timeout is not None:
            timeout = self.fixed_timeout
        try:
            if port.timeout != timeout:  # setting it re-applies every setting (rfc2217: remotely)
                port.timeout = timeout
            data: bytes = port.read(1)
            if data and self.url.startswith("socket://"):
                port.timeout = 0  # in_waiting is only 0 or 1 here: take what one recv gives
                data += port.read(65536)
            elif data:
                waiting = port.in_waiting
                if waiting:
                    data += port.read(waiting)
            return data
        except termios.error as exc:  # setting the timeout re-applies refused line settings
            raise self._refused(self.settings, exc) from exc
        except (serial.SerialException, OSError) as exc:
            raise SourceError("disconnected", f"{self.description} disconnected: {exc}") from exc

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                port.close()


class HttpSource(CancellablePause):
    """Polls a URL that serves the meter's latest raw telegram (HomeWizard, DSMR-logger)."""

    def __init__(self, url: str, poll_interval: float = 1.0, timeout: float = 5.0) -> None:
        super().__init__()
        self.url = url
        self.description = redact(url)
        self.poll_interval = poll_interval
        self.timeout = timeout
        self._next_poll = 0.0
        self._last_body = b""

    def open(self) -> None:
        # _last_body survives reconnects: a device that keeps serving one old telegram
        # must not have it counted (and made fresh) again after every silence timeout.
        self._next_poll = 0.0

    def read(self, timeout: float) -> bytes:
        now = time.monotonic()
        if now < self._next_poll:
            self._pause(min(timeout, self._next_poll - now))
            return b""
        self._next_poll = now + self.poll_interval
        request = urllib.request.Request(self.url, headers={"Accept": "text/plain, */*"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body: bytes = response.read(65536)
        except urllib.error.HTTPError as exc:
            raise SourceError("http", f"{self.description} answered HTTP {exc.code}") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            kind: SourceErrorKind = "refused" if "refused" in str(reason) else "http"
            raise SourceError(kind, f"cannot poll {self.description}: {reason}") from exc
        if body == self._last_body:
            return b""  # the device still serves the telegram we already have
        self._last_body = body
        if not body.endswith(b"\n"):
            body += b"\r\n"
        return body

    def close(self) -> None:
        """Nothing to release: every poll is its own request."""


_CLOCK = re.compile(re.escape(CLOCK.encode()) + rb"\((\d{12}[SW]?)\)")
#: Bytes read from a plain file at once, and the most one replayed piece holds: a file
#: costs this much memory whatever its size (``/dev/zero`` included).
FILE_CHUNK = 64 * 1024


def split_capture(data: bytes) -> list[bytes]:
    """Cut a capture into pieces that each start at a telegram's ``/``."""
    starts = [0] + [m.start() + 1 for m in re.finditer(rb"\n/", data)]
    return [data[a:b] for a, b in zip(starts, [*starts[1:], len(data)], strict=True) if data[a:b]]


class _PlainPieces:
    """A plain telegram dump, read in chunks and cut at each ``/`` that starts a line.

    Yields ``(piece, clock, continued)``: ``clock`` is the meter time in the piece, if
    any; ``continued`` marks the rest of a piece longer than :data:`FILE_CHUNK`.
    """

    def __init__(self, handle: BinaryIO, head: bytes) -> None:
        self.handle = handle
        self.buf = head

    def __iter__(self) -> Iterator[tuple[bytes, float | None, bool]]:
        buf, pos = self.buf, 0
        eof = False
        continued = False
        while True:
            cut = buf.find(b"\n/", pos)
            while cut < 0 and not eof and len(buf) - pos < FILE_CHUNK:
                chunk = self.handle.read(FILE_CHUNK)
                eof = not chunk
                buf, pos = buf[pos:] + chunk, 0
                cut = buf.find(b"\n/")
            whole = 0 <= cut < pos + FILE_CHUNK  # the piece ends where a telegram starts
            if whole:
                end = cut + 1
            elif pos < len(buf):
                end = min(len(buf), pos + FILE_CHUNK)
            else:
                return
            piece, pos = buf[pos:end], end
            match = _CLOCK.search(piece)
            clock = parse_meter_time(match[1].decode()) if match else None
            yield piece, clock, continued
            continued = not whole


class FileSource(CancellablePause):
    """Replays a file, at its recorded pace or as fast as possible.

    A ``p1-exporter capture`` file replays every recorded piece (refused telegrams
    too) paced by the receive times it recorded; a plain telegram dump is cut at
    each ``/`` and paced by the meter's own clock. The file is read as it is
    replayed, a chunk at a time, so memory stays bounded whatever the file holds.
    """

    def __init__(self, path: str, pace: str = "recorded", loop: bool = False,
                 default_interval: float = 1.0) -> None:
        if pace not in ("recorded", "fast"):
            raise ValueError(f"pace must be 'recorded' or 'fast', not {pace!r}")
        super().__init__()
        self.path = path
        self.description = f"file:{path}"
        self.pace = pace
        self.loop = loop
        self.default_interval = default_interval
        self.finished = False
        self._handle: BinaryIO | None = None
        self._pieces: Iterator[tuple[bytes, float]] = iter(())
        self._next: tuple[bytes, float] | None = None
        self._given = 0  # pieces given since the file was (re)started
        self._due = 0.0

    def open(self) -> None:
        self.close()
        try:
            self._handle = open(self.path, "rb")  # noqa: SIM115 (closed in close())
        except OSError as exc:
            raise SourceError("not_found", f"cannot read {self.path}: {exc.strerror}") from exc
        self._start()
        self._due = time.monotonic()
        self.finished = False

    def _start(self) -> None:
        """Begin (again) at the start of the file."""
        handle = self._handle
        assert handle is not None
        try:
            if handle.seekable():  # a pipe is read once, from where it is
                handle.seek(0)
            head = handle.read(len(HEADER_PREFIX))
        except OSError as exc:
            raise SourceError("disconnected", f"cannot read {self.path}: {exc}") from exc
        if is_capture(head) and handle.seekable():
            self._pieces = self._paced_records(CaptureReader(handle))
        else:
            self._pieces = self._paced_plain(_PlainPieces(handle, head))
        self._next = None
        self._given = 0

    def _paced_records(self, reader: CaptureReader) -> Iterator[tuple[bytes, float]]:
        """Recorded pieces with the delay before each (recorded gaps, at most 60 s each)."""
        previous: float | None = None
        for record in reader:
            if not record.data:
                continue
            delay = 0.0
            if self.pace == "recorded" and previous is not None:
                delay = min(60.0, max(0.0, record.time - previous))
            previous = record.time
            yield record.data, delay

    def _paced_plain(self, pieces: _PlainPieces) -> Iterator[tuple[bytes, float]]:
        """Dump pieces with the delay before each, from the meter clock in them."""
        previous: float | None = None
        first = True
        for piece, clock, continued in pieces:
            if self.pace == "fast" or continued:
                delay = 0.0
            elif clock is None or previous is None:
                delay = 0.0 if first else self.default_interval
            else:
                delay = min(60.0, max(0.0, clock - previous))
            first = False
            previous = clock if clock is not None else previous
            yield piece, delay

    def _peek(self) -> tuple[bytes, float] | None:
        if self._next is None:
            try:
                self._next = next(self._pieces, None)
            except OSError as exc:
                raise SourceError("disconnected", f"cannot read {self.path}: {exc}") from exc
            if self._next is None and self.loop and self._given:
                self._start()
                self._next = next(self._pieces, None)
        return self._next

    def read(self, timeout: float) -> bytes:
        if self._handle is None:
            raise SourceError("closed", f"{self.description} is not open")
        upcoming = self._peek()
        if upcoming is None:
            self.finished = True
            return b""
        piece, delay = upcoming
        due = self._due + delay
        wait = due - time.monotonic()
        if wait > 0 and (not self._pause(min(wait, timeout)) or wait > timeout):
            return b""
        self._due = max(due, time.monotonic() - 1.0) if self.pace == "recorded" else due
        self._next = None
        self._given += 1
        return piece

    def close(self) -> None:
        handle, self._handle = self._handle, None
        self._pieces = iter(())
        self._next = None
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()


#: What a meter address may be, for error messages.
SUPPORTED_ADDRESSES = ("a serial device path", "socket://HOST:PORT", "rfc2217://HOST:PORT",
                       "http://HOST/PATH", "https://HOST/PATH", "file:PATH", "sim://")
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
        raise ValueError(f"{scheme}:// is not a supported scheme; did you mean "
                         f"socket://{parts.netloc or 'HOST:PORT'}?")
    if scheme in ("socket", "rfc2217", "http", "https"):
        parts = urllib.parse.urlsplit(url)
        if not parts.hostname:
            raise ValueError(f"no host; write {scheme}://HOST" +
                             (":PORT" if scheme in ("socket", "rfc2217") else "/PATH"))
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"port {parts.netloc.rpartition(':')[2]!r} is not a number "
                             "from 1 to 65535") from None
        if port == 0:
            raise ValueError("port 0 is not a number from 1 to 65535")
        if port is None and scheme in ("socket", "rfc2217"):
            raise ValueError(f"no port; write {scheme}://{parts.hostname}:PORT (ser2net and "
                             "most dongles use 8088 or 23)")
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
        raise ValueError("is a regular file, not a serial port; use file:PATH to replay a "
                         "file")
    if stat.S_ISDIR(mode):
        raise ValueError("is a directory, not a serial port (look in /dev/serial/by-id/ for "
                         "the device itself)")


def open_source(url: str, settings: SerialSettings | None = None,
                poll_interval: float = 1.0) -> Source:
    """The source for a meter URL (see the README's "Sources" section); ValueError if bad."""
    check_address(url)
    if url.startswith("sim://"):
        from p1_exporter.meter.sim_source import SimSource

        return SimSource(url)
    if url.startswith("file:"):
        parts = urllib.parse.urlsplit(url)
        options = dict(urllib.parse.parse_qsl(parts.query))
        path = url[len("file:"):].split("?", 1)[0]
        if path.startswith("//"):
            path = path[2:]
        unknown = set(options) - {"pace", "loop"}
        if unknown:
            raise ValueError(f"unknown file: option {sorted(unknown)[0]!r} (use pace, loop)")
        return FileSource(path, pace=options.get("pace", "recorded"),
                          loop=options.get("loop", "0") in ("1", "true", "yes"))
    if url.startswith(("http://", "https://")):
        return HttpSource(url, poll_interval=poll_interval)
    return SerialSource(url, settings)
