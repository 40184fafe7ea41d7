"""Serial meters: a device path, or a pyserial URL (``socket://``, ``rfc2217://``).

pyserial's ``serial_for_url`` opens all of them, so one class serves a USB cable and a
network dongle alike; its open errors become :class:`SourceError` kinds with a hint.
"""

from __future__ import annotations

import contextlib
import errno
import termios
from typing import Any

import serial

from p1_exporter.meter.sources.base import DSMR22, DSMR45, SerialSettings, SourceError, redact


def _open_error(url: str, exc: serial.SerialException) -> SourceError:
    code = exc.errno
    text = str(exc)
    if code == errno.ENOENT or "No such file" in text:
        return SourceError(
            "not_found",
            f"{url} does not exist (is the cable plugged in? "
            "look in /dev/serial/by-id/ for its stable name); waiting for it",
        )
    if code == errno.EACCES or "Permission denied" in text:
        return SourceError(
            "permission",
            f"permission denied on {url}: add the exporter's user "
            "to the dialout group (sudo usermod -aG dialout USER, then log in "
            "again) or install the udev rule from contrib/99-p1-exporter.rules",
        )
    if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EBUSY) or "exclusively lock" in text:
        return SourceError(
            "busy",
            f"{url} is in use by another program (exclusive lock "
            "refused); stop the other reader (a second exporter, ModemManager, "
            "a serial console) so that it does not steal bytes",
        )
    if "refused" in text:
        return SourceError(
            "refused",
            f"connection to {redact(url)} refused; is the dongle "
            "or ser2net running and listening on that port?",
        )
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
