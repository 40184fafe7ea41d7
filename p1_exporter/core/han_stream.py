"""HAN meters: HDLC or M-Bus bytes in, validated telegrams out (sans-I/O).

The interface of :class:`~p1_exporter.core.stream.TelegramStream`: ``feed`` and
``flush`` return :class:`~p1_exporter.core.stream.Outcome` objects whose
``telegram`` is the same :class:`~p1_exporter.core.telegram.Telegram` a DSMR meter
gives, so the same metrics come out. Frames are checked (FCS, checksum),
reassembled, decrypted when ciphered (general-glo-ciphering, with the meter's
keys and a replay check), and decoded by :mod:`p1_exporter.core.cosem`.
"""

from __future__ import annotations

from p1_exporter.core.axdr import AxdrError
from p1_exporter.core.cipher import (
    ENCRYPTED_ONLY,
    KEY_HELP,
    TAG,
    DecryptError,
    FrameCounter,
    Keys,
    NoKeyError,
    UnsupportedFrame,
    decrypt,
    parse_ciphered,
)
from p1_exporter.core.cosem import strip_llc, telegram_from_apdu
from p1_exporter.core.errors import FramingError, P1Error
from p1_exporter.core.han_framing import DEFAULT_MAX_APDU, HanFramer, LinkFrame, Reassembler
from p1_exporter.core.stream import Outcome
from p1_exporter.core.telegram import Telegram


class HanStream:
    """Feed the bytes of a HAN port; get one Outcome per APDU (or per refused frame).

    ``counter`` may be shared between the streams of one meter so a reconnect
    does not forget the last frame counter.
    """

    def __init__(
        self,
        keys: Keys | None = None,
        *,
        max_size: int = DEFAULT_MAX_APDU,
        counter: FrameCounter | None = None,
    ) -> None:
        self.keys = keys
        self.framer = HanFramer()
        self.reassembler = Reassembler(max_size)
        self.counter = counter or FrameCounter()

    def feed(self, data: bytes) -> list[Outcome]:
        """Add bytes; return the outcomes they complete, in order."""
        return self._handle(self.framer.feed(data))

    def flush(self) -> list[Outcome]:
        """End of stream: report what is left."""
        self.reassembler.reset()
        return self._handle(self.framer.flush())

    def _handle(self, events: list[LinkFrame | P1Error]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for event in events:
            if isinstance(event, P1Error):
                outcomes.append(Outcome(None, event, b""))
                continue
            for done in self.reassembler.add(event):
                if isinstance(done, P1Error):
                    outcomes.append(Outcome(None, done, event.raw))
                    continue
                apdu, raw = done
                try:
                    telegram = self.decode(apdu, raw, event.kind)
                except P1Error as error:
                    outcomes.append(Outcome(None, error, raw))
                else:
                    outcomes.append(Outcome(telegram, None, raw))
        return outcomes

    def decode(self, apdu: bytes, raw: bytes, transport: str) -> Telegram:
        """One reassembled APDU to a Telegram; raise a P1Error when refused."""
        body = strip_llc(apdu)
        if not body or body[0] != TAG:
            return telegram_from_apdu(body, raw, _TRANSPORT.get(transport, transport))
        frame = parse_ciphered(body)
        if frame is None:
            raise FramingError("ciphered APDU is shorter than its length says")
        if self.keys is None:
            raise NoKeyError("this meter sends encrypted frames and no key is configured: "
                             f"{KEY_HELP}")
        self.counter.check(frame)
        plain = decrypt(frame, self.keys)
        try:
            telegram = telegram_from_apdu(plain, raw, _TRANSPORT.get(transport, transport)
                                          + ", encrypted")
        except (AxdrError, UnsupportedFrame) as error:
            if frame.security_control in ENCRYPTED_ONLY:
                # No tag: unreadable plaintext is what a wrong key gives.
                raise DecryptError(f"decrypted APDU is unreadable ({error}): wrong "
                                   "encryption key, or a damaged frame") from None
            raise
        self.counter.accept(frame)
        return telegram


_TRANSPORT = {"hdlc": "HDLC", "mbus": "M-Bus"}
