"""DLMS security suite 0: the general-glo-ciphering frame around a telegram or an APDU.

Encrypted P1 ports (Luxembourg's Smarty, Austrian operators) and encrypted HAN
meters (Denmark, Austria) wrap their data in the same frame::

    0xDB  len(system title)=8  system title  A-XDR length  SC  frame counter(4)  data  [tag(12)]

AES-128-GCM with IV = system title ‖ frame counter. The security control byte
(SC) says what the frame carries:

* ``0x30``/``0x31``: encrypted and authenticated; the 12-byte GCM tag over
  AAD = SC ‖ authentication key is verified before any byte is used.
* ``0x20``/``0x21``: encrypted only, no tag (some Austrian operators). The
  plaintext is GCM's keystream applied to the data, so a wrong key or a damaged
  byte yields garbage rather than an error: the caller must check the content's
  own integrity (a DSMR telegram's CRC, an HDLC FCS or M-Bus checksum around the
  frame) before trusting it. :class:`FrameCounter` lets it advance the replay
  counter only after that check passed.

The crypto itself comes from ``cryptography`` (an optional extra,
``p1-exporter[crypto]``); nothing here implements AES or GCM.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

from p1_exporter.core.errors import FramingError, P1Error, Result

TAG = 0xDB
#: Bytes of the GCM tag DLMS suite 0 sends (GCM allows truncated tags; DLMS uses 96 bits).
TAG_LENGTH = 12
SYSTEM_TITLE_LENGTH = 8
#: Luxembourg's Smarty meters all use this authentication key (Luxmetering P1 specification).
LUXEMBOURG_AUTH_KEY = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
#: Largest ciphered frame accepted; real ones are under 2 KiB.
MAX_FRAME = 16 * 1024
_AUTHENTICATED = frozenset({0x30, 0x31})
ENCRYPTED_ONLY = frozenset({0x20, 0x21})
SUPPORTED_SC = _AUTHENTICATED | ENCRYPTED_ONLY

KEY_HELP = (
    "ask the grid operator for the meter's encryption key (Luxembourg: the supplier's "
    "customer portal; Austria: the network operator's smart-meter web portal) and set it "
    "as the meter's key or key_file in --config, or in P1_EXPORTER_KEY"
)


class DecryptError(P1Error):
    """The frame failed authentication, or cannot be decrypted with the keys given."""

    result: ClassVar[Result] = "decrypt_error"


class ReplayError(P1Error):
    """The frame counter did not increase: a replayed (or re-sent) frame."""

    result: ClassVar[Result] = "replay"


class NoKeyError(P1Error):
    """An encrypted frame arrived for a meter that has no key configured."""

    result: ClassVar[Result] = "no_key"


class UnsupportedFrame(P1Error):
    """A frame of a kind this exporter does not read (security suite, APDU, layout)."""

    result: ClassVar[Result] = "unsupported"


class CryptoMissing(RuntimeError):
    """A key is configured but the ``cryptography`` package is not installed."""


class Keys(NamedTuple):
    """A meter's keys: 16 bytes each. ``authentication`` is needed only for SC 0x30/0x31."""

    encryption: bytes
    authentication: bytes | None = None

    def __repr__(self) -> str:  # keys never reach a log line through a repr
        return "Keys(<hidden>)"


class Ciphered(NamedTuple):
    """A parsed general-glo-ciphering frame (nothing decrypted yet)."""

    system_title: bytes
    security_control: int
    frame_counter: int
    data: bytes  # ciphertext, followed by the tag when authenticated
    length: int  # bytes the whole frame occupies


def parse_key(text: str, what: str = "key") -> bytes:
    """A key as 32 hex digits (spaces and a 0x prefix refused): 16 bytes, or ValueError."""
    cleaned = text.strip()
    if len(cleaned) != 32 or any(c not in "0123456789abcdefABCDEF" for c in cleaned):
        raise ValueError(f"{what} must be exactly 32 hexadecimal digits (16 bytes)")
    return bytes.fromhex(cleaned)


def require_crypto() -> None:
    """Raise CryptoMissing with the install hint when ``cryptography`` cannot be imported."""
    try:
        import cryptography.hazmat.primitives.ciphers  # noqa: F401
    except ImportError as exc:
        raise CryptoMissing(
            "a meter key is configured but the 'cryptography' package is missing: "
            "pip install 'p1-exporter[crypto]'"
        ) from exc


def axdr_length(data: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    """A-XDR length at ``pos``: (length, position after it); None while bytes are missing.

    Raises FramingError for a length over four bytes.
    """
    if pos >= len(data):
        return None
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    count = first & 0x7F
    if count == 0 or count > 4:
        raise FramingError(f"A-XDR length with {count} length bytes")
    if pos + 1 + count > len(data):
        return None
    return int.from_bytes(data[pos + 1 : pos + 1 + count], "big"), pos + 1 + count


def parse_ciphered(data: bytes | bytearray, pos: int = 0) -> Ciphered | None:
    """Parse the frame starting at ``data[pos]`` (0xDB); None while it is incomplete.

    Raises FramingError when the header cannot be a general-glo-ciphering frame.
    """
    if len(data) - pos < 2:
        return None
    if data[pos] != TAG:
        raise FramingError(f"not a general-glo-ciphering frame (tag 0x{data[pos]:02X})")
    if data[pos + 1] != SYSTEM_TITLE_LENGTH:
        raise FramingError(f"system title of {data[pos + 1]} bytes (8 expected)")
    header = axdr_length(data, pos + 2 + SYSTEM_TITLE_LENGTH)
    if header is None:
        return None
    length, body = header
    if length < 5:
        raise FramingError(f"ciphered frame of {length} bytes has no room for SC and counter")
    if body - pos + length > MAX_FRAME:
        raise FramingError(f"ciphered frame of {length} bytes exceeds {MAX_FRAME}")
    end = body + length
    if end > len(data):
        return None
    return Ciphered(
        system_title=bytes(data[pos + 2 : pos + 2 + SYSTEM_TITLE_LENGTH]),
        security_control=data[body],
        frame_counter=int.from_bytes(data[body + 1 : body + 5], "big"),
        data=bytes(data[body + 5 : end]),
        length=end - pos,
    )


def _iv(frame: Ciphered) -> bytes:
    return frame.system_title + frame.frame_counter.to_bytes(4, "big")


def decrypt(frame: Ciphered, keys: Keys) -> bytes:
    """The plaintext of ``frame``; DecryptError when authentication fails.

    For encrypted-only frames (SC 0x20/0x21) no check is possible here: see the
    module docstring.
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    sc = frame.security_control
    if sc not in SUPPORTED_SC:
        raise UnsupportedFrame(
            f"security control 0x{sc:02X} is not suite 0 encryption (0x20, 0x21, 0x30, 0x31)"
        )
    iv = _iv(frame)
    if sc in _AUTHENTICATED:
        if keys.authentication is None:
            raise DecryptError(
                "the frame is authenticated (SC 0x30) but no authentication key is configured"
            )
        if len(frame.data) < TAG_LENGTH:
            raise DecryptError("authenticated frame shorter than its tag")
        ciphertext, tag = frame.data[:-TAG_LENGTH], frame.data[-TAG_LENGTH:]
        decryptor = Cipher(
            algorithms.AES(keys.encryption), modes.GCM(iv, tag, min_tag_length=TAG_LENGTH)
        ).decryptor()
        decryptor.authenticate_additional_data(bytes([sc]) + keys.authentication)
        try:
            return decryptor.update(ciphertext) + decryptor.finalize()
        except InvalidTag:
            raise DecryptError(
                "authentication failed: wrong encryption key or wrong authentication key "
                "(or a damaged frame)"
            ) from None
    # Encrypted only: GCM's keystream without its tag is AES-CTR from counter block IV ‖ 2.
    stream = Cipher(
        algorithms.AES(keys.encryption), modes.CTR(iv + b"\x00\x00\x00\x02")
    ).decryptor()
    return stream.update(frame.data) + stream.finalize()


def encrypt(
    plain: bytes,
    keys: Keys,
    system_title: bytes,
    frame_counter: int,
    security_control: int = 0x30,
) -> bytes:
    """A whole general-glo-ciphering frame around ``plain`` (for the simulator and tests)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    if len(system_title) != SYSTEM_TITLE_LENGTH:
        raise ValueError("system title must be 8 bytes")
    iv = system_title + frame_counter.to_bytes(4, "big")
    if security_control in _AUTHENTICATED:
        if keys.authentication is None:
            raise ValueError("an authenticated frame needs an authentication key")
        encryptor = Cipher(algorithms.AES(keys.encryption), modes.GCM(iv)).encryptor()
        encryptor.authenticate_additional_data(bytes([security_control]) + keys.authentication)
        body = encryptor.update(plain) + encryptor.finalize() + encryptor.tag[:TAG_LENGTH]
    elif security_control in ENCRYPTED_ONLY:
        stream = Cipher(
            algorithms.AES(keys.encryption), modes.CTR(iv + b"\x00\x00\x00\x02")
        ).encryptor()
        body = stream.update(plain) + stream.finalize()
    else:
        raise ValueError(f"unsupported security control 0x{security_control:02X}")
    content = bytes([security_control]) + frame_counter.to_bytes(4, "big") + body
    size = len(content)
    if size < 0x80:
        length = bytes([size])
    elif size < 0x100:
        length = bytes([0x81, size])
    else:
        length = bytes([0x82]) + size.to_bytes(2, "big")
    return bytes([TAG, SYSTEM_TITLE_LENGTH]) + system_title + length + content


def open_checked(frame: Ciphered, keys: Keys | None, counter: FrameCounter, sent: str) -> bytes:
    """The plaintext of ``frame`` once a key is there and its counter is new.

    ``sent`` names what the meter sends ("frames", "telegrams") for the no-key
    message. The counter is not advanced: call ``counter.accept`` once the
    plaintext proved valid.
    """
    if keys is None:
        raise NoKeyError(f"this meter sends encrypted {sent} and no key is configured: {KEY_HELP}")
    counter.check(frame)
    return decrypt(frame, keys)


class FrameCounter:
    """Refuses frames whose counter does not increase (per system title).

    ``check`` before use, ``accept`` once the frame's content proved valid, so a
    damaged unauthenticated frame cannot push the counter forward.
    """

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[bytes, int] = {}

    def check(self, frame: Ciphered) -> None:
        """Raise ReplayError when ``frame`` is not newer than the last accepted one."""
        last = self._last.get(frame.system_title)
        if last is not None and frame.frame_counter <= last:
            raise ReplayError(
                f"frame counter {frame.frame_counter} not above the last accepted {last}: "
                "a replayed frame (or the meter's counter was reset; restart the exporter "
                "after replacing a meter)"
            )

    def accept(self, frame: Ciphered) -> None:
        """Remember ``frame``'s counter as the newest valid one."""
        if len(self._last) > 16 and frame.system_title not in self._last:
            self._last.clear()  # bounded: one meter has one system title
        self._last[frame.system_title] = frame.frame_counter
