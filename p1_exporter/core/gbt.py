"""DLMS general-block-transfer (GBT): numbered blocks in, the APDU they carry out (sans-I/O).

Some meters (Landis+Gyr E450 and E570 in Switzerland and Austria) push a notification
too long for one HDLC frame as a series of GBT APDUs, each in a frame of its own::

    E0  control  block-number(2)  block-number-ack(2)  length  block-data

``control`` bit 7 marks the last block (bits 6..0: streaming, window, unused in a
push); blocks are numbered from 1. The block-data of blocks 1..n joined is the
APDU itself (a data-notification, or a general-glo-ciphering one to decrypt).

Everything is bounded: at most ``max_blocks`` blocks and ``max_size`` bytes per
transfer, and a transfer whose next block is more than ``timeout`` seconds late is
dropped. A block that does not follow the one before (lost, repeated, out of
order) ends its transfer with one refusal, and the rest of that transfer is
skipped without more: nothing of an incomplete transfer is decoded.
"""

from __future__ import annotations

from p1_exporter.core.errors import FramingError, P1Error, TelegramTooLarge

GBT_TAG = 0xE0
_LAST = 0x80
#: Blocks one transfer may have; real pushes use 2 to 5.
MAX_BLOCKS = 64
#: Seconds a transfer waits for its next block; meters send them back to back
#: (a 130-byte frame takes 0.5 s at 2400 baud).
BLOCK_TIMEOUT = 10.0


class GbtError(FramingError):
    """A general-block-transfer that cannot be completed (counted as malformed)."""


def parse_block(apdu: bytes) -> tuple[bool, int, bytes]:
    """(last, block number, block data) of one GBT APDU; GbtError when malformed."""
    if len(apdu) < 7 or apdu[0] != GBT_TAG:
        raise GbtError("general-block-transfer APDU shorter than its header")
    last = bool(apdu[1] & _LAST)
    number = int.from_bytes(apdu[2:4], "big")
    pos = 6
    length = apdu[pos]
    pos += 1
    if length & 0x80:  # long form: the low bits count the length bytes that follow
        width = length & 0x7F
        if not 1 <= width <= 2 or pos + width > len(apdu):
            raise GbtError("general-block-transfer block length is malformed")
        length = int.from_bytes(apdu[pos : pos + width], "big")
        pos += width
    if pos + length != len(apdu):
        raise GbtError(
            f"general-block-transfer block {number} says {length} bytes of data, "
            f"has {len(apdu) - pos}"
        )
    if number == 0:
        raise GbtError("general-block-transfer block number 0 (blocks count from 1)")
    return last, number, apdu[pos:]


class BlockAssembler:
    """Joins the blocks of one transfer at a time into the APDU they carry."""

    __slots__ = (
        "_last_at",
        "_next",
        "_parts",
        "_raw",
        "_size",
        "_skip",
        "max_blocks",
        "max_size",
        "timeout",
    )

    def __init__(
        self,
        max_size: int,
        *,
        max_blocks: int = MAX_BLOCKS,
        timeout: float = BLOCK_TIMEOUT,
    ) -> None:
        self.max_size = max_size
        self.max_blocks = max_blocks
        self.timeout = timeout
        self._parts: list[bytes] = []
        self._raw: list[bytes] = []
        self._size = 0
        self._next = 1  # block number expected next; 1: no transfer under way
        self._last_at = 0.0
        self._skip = False  # after a refusal: drop that transfer's remaining blocks

    @property
    def pending(self) -> bool:
        """True while a transfer has begun and not ended."""
        return self._next > 1

    def reset(self) -> None:
        """Forget a transfer under way."""
        self._parts.clear()
        self._raw.clear()
        self._size = 0
        self._next = 1
        self._skip = False

    def unfinished(self) -> P1Error | None:
        """End of stream: the refusal of a transfer left unfinished, if any (then reset)."""
        error = None
        if self.pending:
            error = GbtError(
                f"general-block-transfer ended after block {self._next - 1}: incomplete"
            )
        self.reset()
        return error

    def add(self, apdu: bytes, raw: bytes, now: float) -> list[tuple[bytes, bytes] | P1Error]:
        """Add one GBT APDU (``raw``: its frames) received at ``now`` (seconds, monotonic).

        Returns what it completes, (APDU, raw frames of all blocks), and/or the refusals
        it causes, in order.
        """
        out: list[tuple[bytes, bytes] | P1Error] = []
        try:
            last, number, data = parse_block(apdu)
        except GbtError as error:
            self.reset()
            return [error]
        if self.pending and now - self._last_at > self.timeout:
            out.append(
                GbtError(
                    f"general-block-transfer timed out waiting {self.timeout:g} s "
                    f"for block {self._next}"
                )
            )
            self.reset()
            if number != 1:  # the rest of the late transfer: already refused
                self._skip = not last
                return out
        if number == 1:
            if self.pending:
                out.append(
                    GbtError(
                        f"general-block-transfer restarted before block {self._next} came: "
                        "the unfinished one is dropped"
                    )
                )
            self.reset()
        elif self._skip:
            self._skip = not last
            return out
        elif number != self._next:
            expected = self._next
            self.reset()
            self._skip = not last
            if expected == 1:
                out.append(GbtError(f"general-block-transfer block {number} without block 1"))
            else:
                out.append(
                    GbtError(
                        f"general-block-transfer block {number} came where block {expected} "
                        "was due: the transfer is incomplete"
                    )
                )
            return out
        self._parts.append(data)
        self._raw.append(raw)
        self._size += len(data)
        self._next = number + 1
        self._last_at = now
        if self._size > self.max_size or len(self._parts) > self.max_blocks:
            too_big = self._size > self.max_size
            what = f"{self.max_size} bytes" if too_big else f"{self.max_blocks} blocks"
            self.reset()
            self._skip = not last
            out.append(TelegramTooLarge(f"general-block-transfer exceeds {what}"))
            return out
        if last:
            out.append((b"".join(self._parts), b"".join(self._raw)))
            self.reset()
        return out
