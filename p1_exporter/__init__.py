"""p1-exporter: a Prometheus exporter for P1 and HAN smart meters (DSMR, DLMS/COSEM).

The telegram core is usable as a library::

    from p1_exporter import parse
    from p1_exporter.core import obis
    telegram = parse(open("telegram.txt", "rb").read())
    telegram.value(obis.ACTIVE_TARIFF)  # any code of the table in p1_exporter.core.obis
"""

from __future__ import annotations

from p1_exporter.core.errors import (
    CRCError,
    FramingError,
    P1Error,
    ParseError,
    TelegramTooLarge,
    TornTelegram,
)
from p1_exporter.core.stream import (
    Outcome,
    TelegramStream,
    decode_frame,
    iter_telegrams,
    parse,
)
from p1_exporter.core.telegram import (
    LineIssue,
    MBusDevice,
    MonthPeak,
    ObisLine,
    PowerFailure,
    Register,
    Telegram,
)

__version__ = "0.1.0"

__all__ = [
    "CRCError",
    "FramingError",
    "LineIssue",
    "MBusDevice",
    "MonthPeak",
    "ObisLine",
    "Outcome",
    "P1Error",
    "ParseError",
    "PowerFailure",
    "Register",
    "Telegram",
    "TelegramStream",
    "TelegramTooLarge",
    "TornTelegram",
    "__version__",
    "decode_frame",
    "iter_telegrams",
    "parse",
]
