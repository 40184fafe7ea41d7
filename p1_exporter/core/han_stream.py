"""HAN meters: HDLC or M-Bus bytes in, validated telegrams out (sans-I/O).

The interface of :class:`~p1_exporter.core.stream.TelegramStream`: ``feed`` and
``flush`` return :class:`~p1_exporter.core.stream.Outcome` objects whose
``telegram`` is the same :class:`~p1_exporter.core.telegram.Telegram` a DSMR meter
gives, so the same metrics come out. Frames are checked (FCS, checksum),
reassembled (HDLC segments, M-Bus segments, general-block-transfer blocks: see
:mod:`p1_exporter.core.gbt`), decrypted when ciphered (general-glo-ciphering, with the meter's
keys and a replay check), and decoded by :mod:`p1_exporter.core.cosem`.

HAN meters send lists of different lengths: Norwegian ones power alone every 2.5 s
(list 1), the instantaneous values every 10 s (list 2) and the energy registers
once an hour (list 3). :class:`ListMerger` carries each value forward until the
list that holds it comes again, so every telegram shows the meter's latest
reading of everything, and a value not refreshed for ``CARRY_FRAMES`` frames
(well over an hour of list 1) is dropped rather than exported forever.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from types import MappingProxyType

from p1_exporter.core.axdr import AxdrError
from p1_exporter.core.cipher import (
    ENCRYPTED_ONLY,
    TAG,
    DecryptError,
    FrameCounter,
    Keys,
    UnsupportedFrame,
    open_checked,
    parse_ciphered,
)
from p1_exporter.core.cosem import Scalers, strip_llc, telegram_from_apdu
from p1_exporter.core.errors import FramingError, P1Error
from p1_exporter.core.gbt import GBT_TAG, BlockAssembler
from p1_exporter.core.han_framing import DEFAULT_MAX_APDU, HanFramer, LinkFrame, Reassembler
from p1_exporter.core.stream import Outcome, ReportsNoiseAtOnce
from p1_exporter.core.telegram import Register, Telegram

#: Frames a value is carried forward without being sent again (list 1 every 2.5 s:
#: about 1 h 40 min, past the hourly list 3).
CARRY_FRAMES = 2400


class ListMerger:
    """Merges the registers and texts of a meter's successive lists; bounded by age."""

    __slots__ = ("_frame", "_registers", "_texts", "carry_frames", "equipment_id")

    def __init__(self, carry_frames: int = CARRY_FRAMES) -> None:
        self.carry_frames = carry_frames
        self._frame = 0
        self._registers: dict[str, tuple[Register, int]] = {}
        self._texts: dict[str, tuple[str, int]] = {}
        self.equipment_id: str | None = None

    def merge(self, telegram: Telegram) -> Telegram:
        """``telegram`` with the still-fresh values of earlier lists added."""
        self._frame += 1
        frame = self._frame
        if (
            telegram.equipment_id is not None
            and self.equipment_id is not None
            and telegram.equipment_id != self.equipment_id
        ):
            self._registers.clear()  # another meter (a replaced one): nothing carries over
            self._texts.clear()
        if telegram.equipment_id is not None:
            self.equipment_id = telegram.equipment_id
        for code, register in telegram.registers.items():
            self._registers[code] = (register, frame)
        for code, text in telegram.texts.items():
            self._texts[code] = (text, frame)
        oldest = frame - self.carry_frames
        for table in (self._registers, self._texts):
            for code in [c for c, (_, seen) in table.items() if seen < oldest]:
                del table[code]
        return dataclasses.replace(
            telegram,
            registers=MappingProxyType({c: r for c, (r, _) in self._registers.items()}),
            texts=MappingProxyType({c: t for c, (t, _) in self._texts.items()}),
            equipment_id=telegram.equipment_id or self.equipment_id,
        )


class HanStream(ReportsNoiseAtOnce):
    """Feed the bytes of a HAN port; get one Outcome per APDU (or per refused frame).

    ``counter`` may be shared between the streams of one meter so a reconnect
    does not forget the last frame counter. ``clock`` (monotonic seconds) times out a
    block transfer whose next block does not come.
    """

    framer: HanFramer

    def __init__(
        self,
        keys: Keys | None = None,
        *,
        max_size: int = DEFAULT_MAX_APDU,
        counter: FrameCounter | None = None,
        merger: ListMerger | None = None,
        clock: Callable[[], float] = time.monotonic,
        scalers: Scalers | None = None,
    ) -> None:
        self.keys = keys
        #: The owner's scalers for values the meter sends without one (cosem.Scalers).
        self.scalers: Scalers = MappingProxyType(dict(scalers or {}))
        self.merger = merger or ListMerger()
        self.framer = HanFramer()
        self.reassembler = Reassembler(max_size)
        self.blocks = BlockAssembler(max_size)
        self.counter = counter or FrameCounter()
        self.clock = clock

    def feed(self, data: bytes) -> list[Outcome]:
        """Add bytes; return the outcomes they complete, in order."""
        return self._handle(self.framer.feed(data))

    def flush(self) -> list[Outcome]:
        """End of stream: report what is left."""
        self.reassembler.reset()
        outcomes = self._handle(self.framer.flush())
        unfinished = self.blocks.unfinished()
        if unfinished is not None:
            outcomes.append(Outcome(None, unfinished, b""))
        return outcomes

    def _handle(self, events: list[LinkFrame | P1Error]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for event in events:
            if isinstance(event, P1Error):
                outcomes.append(Outcome(None, event, b""))
                continue
            for done in self._apdus(event):
                if isinstance(done, P1Error):
                    outcomes.append(Outcome(None, done, event.raw))
                    continue
                apdu, raw = done
                try:
                    telegram = self.decode(apdu, raw, event.kind)
                except P1Error as error:
                    outcomes.append(Outcome(None, error, raw))
                else:
                    outcomes.append(Outcome(self.merger.merge(telegram), None, raw))
        return outcomes

    def _apdus(self, frame: LinkFrame) -> list[tuple[bytes, bytes] | P1Error]:
        """Whole APDUs (with their raw frames) and refusals that ``frame`` completes."""
        done: list[tuple[bytes, bytes] | P1Error] = []
        for item in self.reassembler.add(frame):
            if isinstance(item, P1Error):
                done.append(item)
                continue
            body = strip_llc(item[0])
            if body[:1] == bytes([GBT_TAG]):
                done += self.blocks.add(body, item[1], self.clock())
            else:
                done.append(item)
        return done

    def decode(self, apdu: bytes, raw: bytes, transport: str) -> Telegram:
        """One reassembled APDU to a Telegram; raise a P1Error when refused."""
        body = strip_llc(apdu)
        if not body or body[0] != TAG:
            return telegram_from_apdu(body, raw, _TRANSPORT.get(transport, transport), self.scalers)
        frame = parse_ciphered(body)
        if frame is None:
            raise FramingError("ciphered APDU is shorter than its length says")
        plain = open_checked(frame, self.keys, self.counter, "frames")
        try:
            telegram = telegram_from_apdu(
                plain, raw, _TRANSPORT.get(transport, transport) + ", encrypted", self.scalers
            )
        except (AxdrError, UnsupportedFrame) as error:
            if frame.security_control in ENCRYPTED_ONLY:
                # No tag: unreadable plaintext is what a wrong key gives.
                raise DecryptError(
                    f"decrypted APDU is unreadable ({error}): wrong "
                    "encryption key, or a damaged frame"
                ) from None
            raise
        self.counter.accept(frame)
        return telegram


_TRANSPORT = {"hdlc": "HDLC", "mbus": "M-Bus"}
