"""Encrypted P1: general-glo-ciphering frames in, validated DSMR telegrams out.

Sans-I/O, with the interface of :class:`~p1_exporter.core.stream.TelegramStream`
(``feed``/``flush`` return :class:`~p1_exporter.core.stream.Outcome`). Each
frame is found by its header and length, refused on a replayed frame counter,
decrypted (see :mod:`p1_exporter.core.cipher`), and the plaintext goes through
the same framing, CRC check and parser as a plain telegram. For encrypted-only
frames (no GCM tag) the telegram's CRC is the integrity check, so one without a
CRC is refused.
"""

from __future__ import annotations

from p1_exporter.core.cipher import (
    ENCRYPTED_ONLY,
    SYSTEM_TITLE_LENGTH,
    TAG,
    DecryptError,
    FrameCounter,
    Keys,
    open_checked,
    parse_ciphered,
)
from p1_exporter.core.errors import FramingError, P1Error, TelegramTooLarge
from p1_exporter.core.framing import DEFAULT_MAX_SIZE, Framer
from p1_exporter.core.parser import MEMO_SIZE, LineMemo
from p1_exporter.core.stream import Outcome, ReportsNoiseAtOnce, decode_frame
from p1_exporter.core.telegram import Telegram

_START = bytes([TAG, SYSTEM_TITLE_LENGTH])


class CipherFramer:
    """Finds general-glo-ciphering frames (``DB 08 ...``) in a byte stream; bounded memory."""

    __slots__ = ("_buf", "garbage_bytes", "max_size")

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.max_size = max_size
        self.garbage_bytes = 0
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held for a frame that has not ended yet."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | FramingError]:
        """Add bytes; return whole frames and framing errors, in order."""
        self._buf += data
        events: list[bytes | FramingError] = []
        buf = self._buf
        while buf:
            start = buf.find(_START)
            if start < 0:
                keep = 1 if buf[-1] == TAG else 0  # a header split between reads
                self.garbage_bytes += len(buf) - keep
                del buf[: len(buf) - keep]
                return events
            if start:
                self.garbage_bytes += start
                del buf[:start]
            try:
                frame = parse_ciphered(buf)
            except FramingError as error:
                events.append(error)
                del buf[:1]  # resynchronise on the next header
                continue
            if frame is None:
                if len(buf) > self.max_size:
                    events.append(
                        TelegramTooLarge(f"ciphered frame exceeds {self.max_size} bytes; dropped")
                    )
                    del buf[:1]
                    continue
                return events
            if frame.length > self.max_size:
                events.append(
                    TelegramTooLarge(
                        f"ciphered frame of {frame.length} bytes exceeds {self.max_size}"
                    )
                )
                del buf[:1]
                continue
            events.append(bytes(buf[: frame.length]))
            del buf[: frame.length]
        return events

    def flush(self) -> list[bytes | FramingError]:
        """End of stream: an unfinished frame is reported and dropped."""
        if not self._buf:
            return []
        size = len(self._buf)
        self._buf.clear()
        return [FramingError(f"stream ended inside a ciphered frame ({size} bytes)")]


class EncryptedTelegramStream(ReportsNoiseAtOnce):
    """Feed the bytes of an encrypted P1 port; get one Outcome per frame.

    ``counter`` may be shared between streams of one meter (a reconnect makes a
    new stream, but a replayed frame must still be refused).
    """

    framer: CipherFramer

    def __init__(
        self,
        keys: Keys | None,
        *,
        check_crc: bool = True,
        max_size: int = DEFAULT_MAX_SIZE,
        memo_size: int = MEMO_SIZE,
        counter: FrameCounter | None = None,
    ) -> None:
        self.keys = keys
        self.check_crc = check_crc
        self.max_size = max_size
        self.framer = CipherFramer(max_size)
        self.memo = LineMemo(memo_size)
        self.counter = counter or FrameCounter()

    def feed(self, data: bytes) -> list[Outcome]:
        """Add bytes; return the outcomes they complete, in order."""
        return [self._outcome(event) for event in self.framer.feed(data)]

    def flush(self) -> list[Outcome]:
        """End of stream: report what is left in the buffer."""
        return [self._outcome(event) for event in self.framer.flush()]

    def _outcome(self, event: bytes | FramingError) -> Outcome:
        if isinstance(event, FramingError):
            return Outcome(None, event, b"")
        try:
            telegram = self.open(event)
        except P1Error as error:
            return Outcome(None, error, event)
        return Outcome(telegram, None, event)

    def open(self, raw: bytes) -> Telegram:
        """Check, decrypt and parse one whole frame; raise a P1Error when refused."""
        frame = parse_ciphered(raw)
        if frame is None:
            raise FramingError("ciphered frame is incomplete")
        plain = open_checked(frame, self.keys, self.counter, "telegrams")
        if frame.security_control in ENCRYPTED_ONLY:
            # No tag: the telegram's CRC is the only proof the key was right.
            try:
                telegram = decode_plaintext(
                    plain, check_crc=True, max_size=self.max_size, memo=self.memo
                )
            except P1Error as error:
                raise DecryptError(
                    f"decrypted data is not a valid telegram ({error}): "
                    "wrong encryption key, or a damaged frame"
                ) from None
            if not telegram.crc_verified:
                raise DecryptError(
                    "encrypted-only frame whose telegram has no CRC: nothing "
                    "proves it was decrypted with the right key"
                )
        else:
            telegram = decode_plaintext(
                plain, check_crc=self.check_crc, max_size=self.max_size, memo=self.memo
            )
        self.counter.accept(frame)
        return telegram


def decode_plaintext(
    plain: bytes,
    *,
    check_crc: bool = True,
    max_size: int = DEFAULT_MAX_SIZE,
    memo: LineMemo | None = None,
) -> Telegram:
    """The one telegram in decrypted bytes, through the plain framer, CRC check and parser."""
    framer = Framer(max_size)
    events = framer.feed(plain) + framer.flush()
    frames = [event for event in events if isinstance(event, bytes)]
    if len(frames) != 1:
        errors = [event for event in events if isinstance(event, P1Error)]
        if errors:
            raise errors[0]
        raise FramingError(f"decrypted data holds {len(frames)} telegrams, not one (wrong key?)")
    return decode_frame(frames[0], check_crc=check_crc, memo=memo)
