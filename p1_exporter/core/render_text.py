"""Human-readable rendering of a decoded telegram, for ``p1-exporter decode``."""

from __future__ import annotations

import time

from p1_exporter.core.obis import (
    DEMAND_HISTORY,
    DEMAND_MONTH_PEAK,
    DESCRIPTIONS,
    MBUS_DEVICE_TYPES,
)
from p1_exporter.core.telegram import Telegram


def format_time(epoch: float | None) -> str:
    """A UTC epoch as ``YYYY-MM-DD hh:mm:ss UTC``, or ``-``."""
    if epoch is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) and abs(value) < 1e16 else repr(value)


def format_telegram(telegram: Telegram, index: int | None = None) -> str:
    """Every value of a telegram, one per line, with its base unit and the text as sent."""
    title = f"Telegram {index}: " if index is not None else "Telegram: "
    if telegram.crc_verified and telegram.crc is None:  # a DLMS frame: FCS or checksum
        crc = "frame check ok"
    elif telegram.crc_verified:
        crc = f"CRC {telegram.crc:04X} ok"
    elif telegram.crc is None:
        crc = "no CRC (not sent)"
    else:
        crc = f"CRC {telegram.crc:04X} NOT CHECKED (--ignore-crc)"
    version = f"DSMR {telegram.dsmr_version}" if telegram.dsmr_version else "DSMR version not sent"
    if telegram.header.startswith("DLMS"):
        version = "no DSMR version"
    out = [f"{title}{telegram.header}  ({version}, {crc})"]
    out.append(f"  {'meter time':<44} {format_time(telegram.meter_time)}")
    out.append(f"  {'equipment id':<44} {telegram.equipment_id or '-'}")
    for code, register in telegram.registers.items():
        label = f"{code} {DESCRIPTIONS.get(code, '')}"
        unit = f" {register.unit}" if register.unit else ""
        out.append(f"  {label:<44} {_number(register.value)}{unit}  ({register.raw})")
    for code, text in telegram.texts.items():
        label = f"{code} {DESCRIPTIONS.get(code, '')}"
        out.append(f"  {label:<44} {text!r}")
    if telegram.month_peak is not None:
        out.append(
            f"  {DEMAND_MONTH_PEAK + ' month peak':<44} {_number(telegram.month_peak.value)} W"
            f" at {format_time(telegram.month_peak_time)}"
        )
    for month in telegram.peak_history:
        out.append(
            f"  {DEMAND_HISTORY + ' peak of month from':<44} {format_time(month.month_start)}:"
            f" {_number(month.watts)} W at {format_time(month.peak_time)}"
        )
    for device in telegram.mbus.values():
        kind = MBUS_DEVICE_TYPES.get(device.device_type or -1, "unknown type")
        head = f"  M-Bus {device.channel}: {kind} (type {device.device_type})"
        head += f", id {device.equipment_id}" if device.equipment_id else ""
        if device.reading is None:
            out.append(head + ": no reading (placeholder or not sent)")
        else:
            out.append(
                f"{head}: {_number(device.reading.value)} {device.reading.unit}"
                f" at {format_time(device.reading_time)}  ({device.reading.raw})"
            )
    if telegram.power_failure_log:
        out.append(f"  power-failure log ({len(telegram.power_failure_log)} events):")
        for event in telegram.power_failure_log:
            if event.end_time is None:  # e.g. Kaifa's default entry: 2000-01-01, 2^31-1 s
                out.append(
                    f"    placeholder entry (no real end time; lasted "
                    f"{event.duration_seconds} s), not exported"
                )
                continue
            ended = format_time(event.end_time)
            out.append(f"    ended {ended}, lasted {event.duration_seconds} s")
    for line in telegram.extra:
        out.append(f"  {line.obis} {DESCRIPTIONS.get(line.obis, '')}: {line.raw}")
    for line in telegram.unknown:
        out.append(f"  unknown OBIS {line.obis}: {line.raw}")
    for issue in telegram.malformed:
        out.append(f"  MALFORMED line {issue.line!r}: {issue.reason}")
    return "\n".join(out)
