"""Telegram streams for memory and cost checks, and how many bytes a parse memo holds.

:func:`realistic_stream` moves like a real DSMR 5 meter: the clock, the three voltages,
currents and per-phase powers, the total power and (slowly) the energy registers change
every telegram, about 13 of 38 lines; the simulator repeats far more than that. Built
from the ``v5.txt`` fixture by replacing those values, with a valid CRC on each.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator

from p1_exporter.core.clock import format_meter_time
from p1_exporter.core.crc import crc16_arc
from p1_exporter.core.parser import LineMemo
from tests.helpers.fixtures import load

V5 = load("v5.txt")
START = 1_700_000_000.0


def _seal(lines: list[str]) -> bytes:
    body = ("\r\n".join(lines) + "\r\n!").encode("latin-1")
    return body + f"{crc16_arc(body):04X}\r\n".encode()


def realistic_stream(count: int, seed: int = 1) -> Iterator[bytes]:
    """``count`` consecutive telegrams, one second apart, of a meter whose voltages,
    currents and per-phase powers move every second (a bounded random walk)."""
    rng = random.Random(seed)
    template = V5.decode("latin-1").split("\r\n")[:-2]  # without "!CRC" and the end
    volts = [230.0, 231.0, 229.0]
    watts = [70.0, 32.0, 142.0]
    imported = 4426.0 * 3600  # joules, as 1-0:1.8.1 starts
    for index in range(count):
        lines = []
        for i in range(3):
            volts[i] = min(253.0, max(207.0, volts[i] + rng.choice((-0.4, -0.2, 0, 0.2, 0.4))))
            watts[i] = min(9000.0, max(0.0, watts[i] + rng.uniform(-150, 150)))
        total = sum(watts)
        imported += total
        changed = {
            "0-0:1.0.0": format_meter_time(START + index),
            "1-0:1.8.1": f"{imported / 3.6e6:010.3f}*kWh",
            "1-0:1.7.0": f"{total / 1000:06.3f}*kW",
        }
        for i, phase in enumerate(("32", "52", "72")):
            changed[f"1-0:{phase}.7.0"] = f"{volts[i]:06.1f}*V"
        for i, phase in enumerate(("31", "51", "71")):
            changed[f"1-0:{phase}.7.0"] = f"{watts[i] / volts[i]:.2f}*A"
        for i, phase in enumerate(("21", "41", "61")):
            changed[f"1-0:{phase}.7.0"] = f"{watts[i] / 1000:06.3f}*kW"
        for line in template:
            code = line.partition("(")[0]
            lines.append(f"{code}({changed[code]})" if code in changed else line)
        yield _seal(lines)


def repeating_stream(count: int) -> Iterator[bytes]:
    """The same telegram ``count`` times: the memo's best case."""
    for _ in range(count):
        yield V5


def deep_size(root: object) -> int:
    """Bytes held by ``root`` and everything it holds (dicts, tuples, lists, leaves), each
    object once. Types and modules are not followed: they are shared by every stream."""
    seen: set[int] = set()
    stack = [root]
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (tuple, list, set, frozenset)):
            stack.extend(obj)
        elif hasattr(obj, "__slots__"):
            stack.extend(getattr(obj, slot) for slot in obj.__slots__ if hasattr(obj, slot))
    return total


def memo_bytes(memo: LineMemo) -> int:
    """What one stream's parse memo holds, in bytes."""
    return deep_size(memo)
