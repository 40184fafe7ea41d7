"""Logging in the formats Prometheus exporters use: logfmt (default) or JSON lines."""

from __future__ import annotations

import json
import logging
import sys
import time

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}


def _timestamp(record: logging.LogRecord) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{stamp}.{int(record.msecs):03d}Z"


def _logfmt_value(value: str) -> str:
    if value and all(c.isalnum() or c in "-._:/@" for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


#: Structured fields a line may carry (``logger.info(..., extra={"meter": name})``), in the
#: order they are written: one meter's lines can be picked out by ``meter=NAME``.
FIELDS = ("meter", "source", "err")


def _fields(record: logging.LogRecord) -> dict[str, str]:
    return {key: str(value) for key in FIELDS if (value := getattr(record, key, None)) is not None}


class LogfmtFormatter(logging.Formatter):
    """``ts=... level=info logger=reader meter=main source=... err=silent msg="..."``."""

    def format(self, record: logging.LogRecord) -> str:
        level = {"WARNING": "warn", "CRITICAL": "error"}.get(
            record.levelname, record.levelname.lower()
        )
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        logger = record.name.removeprefix("p1_exporter.")
        fields = "".join(f"{key}={_logfmt_value(value)} " for key, value in _fields(record).items())
        return (
            f"ts={_timestamp(record)} level={level} logger={logger} {fields}"
            f"msg={_logfmt_value(message)}"
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        level = {"WARNING": "warn", "CRITICAL": "error"}.get(
            record.levelname, record.levelname.lower()
        )
        entry = {
            "ts": _timestamp(record),
            "level": level,
            "logger": record.name.removeprefix("p1_exporter."),
            **_fields(record),
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str = "info", fmt: str = "logfmt") -> None:
    """Route the package's logs to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger("p1_exporter")
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    root.propagate = False
