"""A simulated smart meter: household model + telegram dialect + line faults.

``SimulatedMeter.telegram_at(t)`` always gives a valid telegram for the
simulated moment ``t``; ``chunks_at(t)`` gives what goes on the wire after
faults and (optionally) a wrong-settings receiver. ``SimOptions.from_url``
reads the ``sim://?dialect=belgian&seed=3`` form used as a meter address.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlsplit

from p1_exporter.core.cipher import Keys
from p1_exporter.sim.faults import Chunk, FaultInjector
from p1_exporter.sim.han import ENCRYPTED, HAN_DIALECTS, encrypt_p1, render_han
from p1_exporter.sim.model import HouseholdModel, MeterState
from p1_exporter.sim.render import ALL_DIALECTS, WIRE_SETTINGS, render
from p1_exporter.sim.uart import SerialSettings, Wire

#: The household when no seed is given (the demo meter).
DEFAULT_SEED = 1
#: Inclusive ranges of the numeric options: wide enough for any test or demo, narrow
#: enough that no value costs unbounded CPU, time or output.
LIMITS: dict[str, tuple[float, float]] = {
    "seed": (0, 2**63 - 1),
    # The meter clock prints two-digit years.
    "start": (
        datetime(2000, 1, 1, tzinfo=timezone.utc).timestamp(),
        datetime(2099, 12, 31, tzinfo=timezone.utc).timestamp(),
    ),
    "interval": (0.001, 3600.0),  # seconds between telegrams
    "speed": (0.001, 86400.0),  # simulated seconds per real second: up to a day a second
    "pause_seconds": (0.0, 3600.0),
    "force_import_watts": (0.0, 99_999.0),  # the most a telegram's kW field shows
}
#: A ``sim://`` meter runs inside the exporter for as long as it lives: it sends at most
#: this many telegrams per real second (``speed / interval``).
MAX_TELEGRAMS_PER_SECOND = 100.0
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def parse_start(text: str) -> float:
    """A start time: a UTC epoch, or ISO 8601 (``2024-01-15T07:00``; naive means UTC)."""
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise ValueError(f"start time {text!r} is not a finite number")
        return value
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"start time {text!r} is neither an epoch nor ISO 8601") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean (use true or false)")


@dataclass(frozen=True)
class SimOptions:
    """Everything that defines a simulated meter and how fast it talks."""

    dialect: str = "dsmr5"
    seed: int | None = None
    start: float | None = None
    interval: float = 1.0
    speed: float = 1.0
    crc_error_rate: float = 0.0
    garbage_rate: float = 0.0
    torn_rate: float = 0.0
    pause_rate: float = 0.0
    pause_seconds: float = 5.0
    force_import_watts: float | None = None
    wire_settings: str | None = None
    receiver_settings: str | None = None
    inverted: bool = False

    def __post_init__(self) -> None:
        if self.dialect not in ALL_DIALECTS:
            raise ValueError(
                f"unknown dialect {self.dialect!r}; choose from {', '.join(ALL_DIALECTS)}"
            )
        if not (math.isfinite(self.interval) and self.interval > 0):
            raise ValueError(f"interval must be a positive number of seconds, not {self.interval}")
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise ValueError(f"speed must be positive, not {self.speed}")
        for name in ("crc_error_rate", "garbage_rate", "torn_rate", "pause_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {rate}")
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            if value is not None and not low <= value <= high:  # NaN fails too
                raise ValueError(
                    f"{name} must be between {_show(name, low)} and "
                    f"{_show(name, high)}, not {_show(name, value)}"
                )
        self.wire()  # validates the serial settings

    def wire(self) -> Wire | None:
        """The sender/receiver pair to transcode through, or None for a clean line."""
        if self.wire_settings is None and self.receiver_settings is None and not self.inverted:
            return None
        sender = self.wire_settings or WIRE_SETTINGS[self.dialect]
        return Wire.parse(sender, self.receiver_settings or "115200-8N1", self.inverted)

    def faults(self) -> FaultInjector | None:
        """A fault injector for the configured rates, or None when all are 0."""
        rates = (self.crc_error_rate, self.garbage_rate, self.torn_rate, self.pause_rate)
        if not any(rates):
            return None
        seed = None if self.seed is None else self.seed + 1
        return FaultInjector(seed, *rates, pause_seconds=self.pause_seconds)

    @classmethod
    def from_url(cls, url: str) -> SimOptions:
        """Options from ``sim://?dialect=belgian&seed=3&interval=1&crc_error_rate=0.1``."""
        parts = urlsplit(url)
        if parts.scheme != "sim":
            raise ValueError(f"not a sim:// URL: {url!r}")
        if parts.netloc or parts.path.strip("/"):
            raise ValueError(f"sim:// takes only query parameters (sim://?dialect=dsmr4): {url!r}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, object] = {}
        for key, raw in parse_qsl(parts.query, keep_blank_values=True):
            name = key.replace("-", "_")
            if name not in fields:
                raise ValueError(f"unknown sim:// option {key!r}; known: {', '.join(fields)}")
            try:
                values[name] = _convert(name, raw)
            except ValueError as error:
                raise ValueError(f"sim:// option {key}: {error}") from None
        options = cls(**values)  # type: ignore[arg-type]
        if options.speed / options.interval > MAX_TELEGRAMS_PER_SECOND:
            raise ValueError(
                f"interval/speed = {options.interval / options.speed:g} s between telegrams is "
                f"too fast: at least {1 / MAX_TELEGRAMS_PER_SECOND:g} s "
                f"(at most {MAX_TELEGRAMS_PER_SECOND:g} telegrams a second)"
            )
        return options


def _show(name: str, value: float) -> str:
    """An option's value as its error message shows it."""
    if name == "seed":
        return str(value)
    if name == "start" and math.isfinite(value) and abs(value) < 1e11:
        return datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    return f"{value:g}"


def _convert(name: str, raw: str) -> object:
    if name in ("dialect", "wire_settings", "receiver_settings"):
        return raw
    if name == "seed":
        return int(raw)
    if name == "start":
        return parse_start(raw)
    if name == "inverted":
        return _parse_bool(raw)
    return float(raw)


class SimulatedMeter:
    """A meter of one dialect over a seeded household, with optional line faults."""

    def __init__(
        self,
        dialect: str = "dsmr5",
        seed: int | None = None,
        start: float | None = None,
        faults: FaultInjector | None = None,
        wire: Wire | None = None,
    ) -> None:
        if dialect not in ALL_DIALECTS:
            raise ValueError(f"unknown dialect {dialect!r}; choose from {', '.join(ALL_DIALECTS)}")
        self.dialect = dialect
        # The household is a function of the seed and the clock: with the default seed a
        # restarted demo meter is the same household and its registers continue.
        self.seed = DEFAULT_SEED if seed is None else seed
        self.start = time.time() if start is None else start
        self.faults = faults
        self.wire = wire
        self.model = HouseholdModel(self.seed, self.start)
        #: With keys, telegrams are encrypted (encrypted P1, or ciphered HAN APDUs). Keys
        #: come from the simulator's command line, never from a sim:// address.
        self.keys: Keys | None = None

    @classmethod
    def from_options(cls, options: SimOptions) -> SimulatedMeter:
        """A meter configured by ``options`` (interval and speed are the caller's pacing)."""
        meter = cls(options.dialect, options.seed, options.start, options.faults(), options.wire())
        meter.force_import_watts = options.force_import_watts
        return meter

    @property
    def force_import_watts(self) -> float | None:
        """When set, the household imports exactly this many watts."""
        return self.model.force_import_watts

    @force_import_watts.setter
    def force_import_watts(self, watts: float | None) -> None:
        self.model.force_import_watts = watts

    @property
    def wire_settings(self) -> SerialSettings:
        """The serial settings this meter's port uses."""
        return self.wire.sender if self.wire else SerialSettings.parse(WIRE_SETTINGS[self.dialect])

    def state_at(self, t: float) -> MeterState:
        """Advance the household to ``t`` (not before the last call) and return its state."""
        return self.model.advance(t)

    def telegram_at(self, t: float) -> bytes:
        """A valid telegram for moment ``t``."""
        if self.dialect in HAN_DIALECTS:
            return render_han(self.state_at(t), self.dialect, t, self.keys)
        telegram = render(self.state_at(t), self.dialect, t)
        if self.dialect == ENCRYPTED or self.keys is not None:
            if self.keys is None:
                raise ValueError("the encrypted dialect needs a key (simulate --key HEX)")
            return encrypt_p1(telegram, self.keys, t)
        return telegram

    def chunks_at(self, t: float) -> list[Chunk]:
        """What goes on the wire for moment ``t``: faults applied, then the receiver's view."""
        telegram = self.telegram_at(t)
        chunks = self.faults.apply(telegram) if self.faults else [Chunk(telegram)]
        if self.wire is not None:
            chunks = [Chunk(self.wire.transcode(c.data), c.pause_before) for c in chunks]
        return chunks
