"""JSON form of a decoded telegram, for ``decode --json`` and the telegram API."""

from __future__ import annotations

import json
from typing import Any

from p1_exporter.core.telegram import Telegram


def telegram_to_dict(telegram: Telegram) -> dict[str, Any]:
    """Plain data (str, float, list, dict) for one telegram; times are UTC epochs."""
    return {
        "header": telegram.header,
        "dsmr_version": telegram.dsmr_version,
        "crc": None if telegram.crc is None else f"{telegram.crc:04X}",
        "crc_verified": telegram.crc_verified,
        "meter_time": telegram.meter_time,
        "equipment_id": telegram.equipment_id,
        "registers": {
            code: {"value": r.value, "unit": r.unit, "raw": r.raw}
            for code, r in telegram.registers.items()
        },
        "texts": dict(telegram.texts),
        "mbus": [
            {
                "channel": d.channel,
                "device_type": d.device_type,
                "equipment_id": d.equipment_id,
                "reading": None
                if d.reading is None
                else {"value": d.reading.value, "unit": d.reading.unit, "raw": d.reading.raw},
                "reading_time": d.reading_time,
                "valve_position": d.valve_position,
            }
            for d in telegram.mbus.values()
        ],
        "power_failure_log": [
            {"end_time": e.end_time, "duration_seconds": e.duration_seconds}
            for e in telegram.power_failure_log
        ],
        "month_peak": None
        if telegram.month_peak is None
        else {"watts": telegram.month_peak.value, "time": telegram.month_peak_time},
        "peak_history": [
            {"month_start": m.month_start, "peak_time": m.peak_time, "watts": m.watts}
            for m in telegram.peak_history
        ],
        "extra": [{"obis": line.obis, "raw": line.raw} for line in telegram.extra],
        "unknown": [{"obis": line.obis, "raw": line.raw} for line in telegram.unknown],
        "malformed": [{"line": i.line, "reason": i.reason} for i in telegram.malformed],
    }


def format_json(telegram: Telegram) -> str:
    """The telegram as indented JSON text."""
    return json.dumps(telegram_to_dict(telegram), indent=2, ensure_ascii=False)
