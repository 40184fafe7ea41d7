"""Where telegram bytes come from: serial ports, network dongles, HTTP, files, the simulator.

One module per kind: :mod:`.serial` (device paths, ``socket://``, ``rfc2217://``),
:mod:`.http`, :mod:`.file` and :mod:`.sim` (``sim://``); :mod:`.base` holds what they
share and :mod:`.address` which of them serves an address. The names below are
re-exported so that ``from p1_exporter.meter.sources import ...`` keeps working;
:mod:`.sim` is not, so the simulator is imported only for a ``sim://`` meter.
"""

from p1_exporter.meter.sources.address import SUPPORTED_ADDRESSES, check_address, open_source
from p1_exporter.meter.sources.base import (
    DSMR22,
    DSMR45,
    SOURCE_ERROR_KINDS,
    CancellablePause,
    SerialSettings,
    Source,
    SourceError,
    SourceErrorKind,
    redact,
)
from p1_exporter.meter.sources.file import FILE_CHUNK, FileSource, split_capture
from p1_exporter.meter.sources.http import HttpSource
from p1_exporter.meter.sources.serial import RFC2217_READ_TIMEOUT, SerialSource

__all__ = [
    "DSMR22",
    "DSMR45",
    "FILE_CHUNK",
    "RFC2217_READ_TIMEOUT",
    "SOURCE_ERROR_KINDS",
    "SUPPORTED_ADDRESSES",
    "CancellablePause",
    "FileSource",
    "HttpSource",
    "SerialSettings",
    "SerialSource",
    "Source",
    "SourceError",
    "SourceErrorKind",
    "check_address",
    "open_source",
    "redact",
    "split_capture",
]
