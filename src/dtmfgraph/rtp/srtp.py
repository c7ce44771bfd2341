"""SRTP (RFC 3711) with SDES keys (RFC 4568), sans-I/O: packets in, packets out.

Suites ``AES_CM_128_HMAC_SHA1_80`` and ``AES_CM_128_HMAC_SHA1_32``: AES-128 in counter mode
over the payload, HMAC-SHA1 over the header, the encrypted payload and the rollover counter,
truncated to 80 or 32 bits. Session keys come from the master key and salt by the AES-CM PRF
with a key derivation rate of 0 (the SDES default). One :class:`SrtpContext` protects what we
send (one SSRC) or unprotects what we receive (the rollover counter and a 64-packet replay
window per SSRC, RFC 3711 3.3.1 and appendix A). :class:`SrtcpContext` does the same for RTCP
(RFC 3711 3.4): its own session keys (labels 3-5), the compound packet encrypted after its
first 8 bytes, the E flag and a 31-bit SRTCP index appended, and an 80-bit HMAC-SHA1 tag in both
suites (RFC 4568 6.2.1).
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import hashlib
import hmac
import os
import struct
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .errors import RtpError

MASTER_KEY_BYTES: Final = 16
MASTER_SALT_BYTES: Final = 14
_AUTH_KEY_BYTES: Final = 20
_REPLAY_WINDOW: Final = 64
_LABEL_ENCRYPTION, _LABEL_AUTH, _LABEL_SALT = 0, 1, 2
_RTCP_LABELS: Final = 3
"""SRTCP's labels are SRTP's plus this (RFC 3711 4.3.2)."""
SRTCP_TAG_BYTES: Final = 10
_SRTCP_INDEX_MASK: Final = 0x7FFFFFFF
_SRTCP_HEADER: Final = 8
"""Bytes of an SRTCP packet left in the clear: the first header and the sender's SSRC."""


class SrtpError(RtpError):
    """Unusable SRTP key material (bad base64, wrong length, an unknown suite)."""


class SrtpSuite(enum.Enum):
    """The SDES crypto suites we speak, by their SDP name; the value is the tag length."""

    AES_CM_128_HMAC_SHA1_80 = 10
    AES_CM_128_HMAC_SHA1_32 = 4

    @classmethod
    def named(cls, name: str) -> SrtpSuite | None:
        """The suite called ``name`` in SDP, or ``None`` when we do not speak it."""
        return cls.__members__.get(name.upper())


@dataclass(frozen=True, slots=True)
class SrtpKey:
    """A suite and its master key and salt (the ``inline:`` key of an SDP crypto line)."""

    suite: SrtpSuite
    master_key: bytes
    master_salt: bytes

    def __post_init__(self) -> None:
        if len(self.master_key) != MASTER_KEY_BYTES or len(self.master_salt) != MASTER_SALT_BYTES:
            raise SrtpError(
                f"an SRTP master key is {MASTER_KEY_BYTES} bytes and its salt "
                f"{MASTER_SALT_BYTES}, got {len(self.master_key)} and {len(self.master_salt)}"
            )

    @classmethod
    def generate(cls, suite: SrtpSuite = SrtpSuite.AES_CM_128_HMAC_SHA1_80) -> SrtpKey:
        """A fresh random key (``os.urandom``)."""
        material = os.urandom(MASTER_KEY_BYTES + MASTER_SALT_BYTES)
        return cls(suite, material[:MASTER_KEY_BYTES], material[MASTER_KEY_BYTES:])

    @classmethod
    def from_inline(cls, suite: SrtpSuite, inline: str) -> SrtpKey:
        """From the base64 of an ``inline:`` key parameter (without lifetime or MKI)."""
        try:
            material = base64.b64decode(inline.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise SrtpError(f"SRTP inline key {inline!r} is not base64") from None
        if len(material) != MASTER_KEY_BYTES + MASTER_SALT_BYTES:
            raise SrtpError(
                f"SRTP inline key holds {len(material)} bytes, not "
                f"{MASTER_KEY_BYTES + MASTER_SALT_BYTES} (key and salt)"
            )
        return cls(suite, material[:MASTER_KEY_BYTES], material[MASTER_KEY_BYTES:])

    @property
    def inline(self) -> str:
        """The base64 of key and salt, for ``a=crypto:... inline:<this>``."""
        return base64.b64encode(self.master_key + self.master_salt).decode()

    def __repr__(self) -> str:  # never print key material
        return f"SrtpKey({self.suite.name}, <secret>)"


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """What RFC 3711 4.3 derives from a master key: encryption key, authentication key, salt."""

    encryption: bytes
    authentication: bytes
    salt: bytes


def derive_session_keys(key: SrtpKey, *, rtcp: bool = False) -> SessionKeys:
    """The SRTP (or, with ``rtcp``, SRTCP) session keys of ``key`` (key derivation rate 0)."""
    base = _RTCP_LABELS if rtcp else 0
    return SessionKeys(
        _prf(key, base + _LABEL_ENCRYPTION, MASTER_KEY_BYTES),
        _prf(key, base + _LABEL_AUTH, _AUTH_KEY_BYTES),
        _prf(key, base + _LABEL_SALT, MASTER_SALT_BYTES),
    )


def _prf(key: SrtpKey, label: int, length: int) -> bytes:
    """AES-CM keystream of the master key from x = (label << 48) XOR master salt, times 2^16."""
    block = bytearray(key.master_salt + b"\x00\x00")
    block[7] ^= label
    return _keystream(key.master_key, bytes(block), length)


def _keystream(aes_key: bytes, counter_block: bytes, length: int) -> bytes:
    encryptor = Cipher(algorithms.AES(aes_key), modes.CTR(counter_block)).encryptor()
    return encryptor.update(b"\x00" * length) + encryptor.finalize()


class SrtpContext:
    """One direction of one SRTP session: :meth:`protect` for what we send, :meth:`unprotect`
    for what we receive (never both on one context)."""

    def __init__(self, key: SrtpKey) -> None:
        self._setup(derive_session_keys(key), key.suite)
        self.master: SrtpKey | None = key
        """The master key (``None`` when made from session keys): SRTCP's keys come from it."""

    @classmethod
    def from_session_keys(cls, keys: SessionKeys, suite: SrtpSuite) -> SrtpContext:
        """A context on already derived session keys (RFC 3711's test vectors start there)."""
        context = cls.__new__(cls)
        context._setup(keys, suite)
        context.master = None
        return context

    def _setup(self, keys: SessionKeys, suite: SrtpSuite) -> None:
        self.suite = suite
        self._keys = keys
        self._cm = _CounterMode(keys)
        self._mac = hmac.new(keys.authentication, digestmod=hashlib.sha1)
        self._tag_bytes = suite.value
        self._sent: dict[int, tuple[int, int]] = {}
        """Per SSRC we send: the last sequence number and the rollover counter."""
        self._heard: dict[int, tuple[int, int]] = {}
        """Per SSRC we receive: the highest packet index authenticated, and the replay window
        (bit ``n`` set: index ``highest - n`` was received)."""
        self.auth_failures = 0
        self.replays = 0
        self.malformed = 0

    # -- sending ------------------------------------------------------------------------------
    def protect(self, packet: bytes) -> bytes:
        """The SRTP packet of the RTP ``packet`` (ours, well formed)."""
        header = _header_length(packet)
        if header is None:
            raise SrtpError("cannot protect a datagram that is not RTP")
        seq, ssrc = struct.unpack_from("!HxxxxI", packet, 2)
        last = self._sent.get(ssrc)
        roc = 0
        if last is not None:
            roc = last[1] + 1 if seq < last[0] and last[0] - seq > 0x8000 else last[1]
        self._sent[ssrc] = (seq, roc)
        index = (roc << 16) | seq
        payload = self._cm.crypt(packet[header:], ssrc, index)
        body = packet[:header] + payload
        return body + self._tag(body, roc)

    # -- receiving ----------------------------------------------------------------------------
    def unprotect(self, packet: bytes) -> bytes | None:
        """The RTP packet inside the SRTP ``packet``, or ``None`` (counted) when it is not
        SRTP, fails authentication, or replays a packet already received."""
        tag_bytes = self._tag_bytes
        header = _header_length(packet)
        if header is None or len(packet) < header + tag_bytes:
            self.malformed += 1
            return None
        seq, ssrc = struct.unpack_from("!HxxxxI", packet, 2)
        state = self._heard.get(ssrc)
        if state is None:
            index = seq  # RFC 3711 3.3.1: the first packet's ROC is 0
        else:
            index = _estimate_index(state[0], seq)
            delta = state[0] - index  # _replayed and _recorded inline: per packet (measured)
            if delta >= _REPLAY_WINDOW or (delta >= 0 and state[1] >> delta & 1):
                self.replays += 1
                return None
        body, tag = packet[:-tag_bytes], packet[-tag_bytes:]
        if not hmac.compare_digest(self._tag(body, index >> 16), tag):
            self.auth_failures += 1
            return None
        if state is None:
            self._heard[ssrc] = (index, 1)
        elif index > state[0]:
            shift = index - state[0]
            window = (state[1] << shift | 1) & ((1 << _REPLAY_WINDOW) - 1) if shift < 64 else 1
            self._heard[ssrc] = (index, window)
        else:
            self._heard[ssrc] = (state[0], state[1] | 1 << (state[0] - index))
        return body[:header] + self._cm.crypt(body[header:], ssrc, index)

    # -- the transforms -----------------------------------------------------------------------
    def _tag(self, body: bytes, roc: int) -> bytes:
        mac = self._mac.copy()
        mac.update(body)
        mac.update(roc.to_bytes(4, "big"))
        return mac.digest()[: self._tag_bytes]


class _CounterMode:
    """AES-CM of RFC 3711 4.1.1 on one session's encryption key and salt."""

    def __init__(self, keys: SessionKeys) -> None:
        # Counter mode by hand: the counter blocks of one packet encrypted in one ECB call
        # (one C call, no cipher object per packet), then XORed onto the payload.
        self._blocks = Cipher(algorithms.AES(keys.encryption), modes.ECB()).encryptor()
        self._salt = int.from_bytes(keys.salt, "big") << 16

    def crypt(self, payload: bytes, ssrc: int, index: int) -> bytes:
        """AES-CM over ``payload``: the keystream is AES of the counter blocks IV, IV + 1, ...
        with IV = salt * 2^16 XOR SSRC * 2^64 XOR index * 2^16 (whose low 16 bits are 0, so
        block ``i`` is IV with ``i`` in them)."""
        size = len(payload)
        if not size:
            return payload
        n = -(-size // 16)
        iv = (self._salt ^ (ssrc << 64) ^ (index << 16)).to_bytes(16, "big")
        counters = (int.from_bytes(iv * n, "big") | _counter_blocks(n)).to_bytes(16 * n, "big")
        keystream = self._blocks.update(counters)
        mixed = int.from_bytes(payload, "big") ^ int.from_bytes(keystream[:size], "big")
        return mixed.to_bytes(size, "big")


class SrtcpContext:
    """One direction of SRTCP (RFC 3711 3.4): :meth:`protect` compound RTCP packets we send,
    or :meth:`unprotect` those we receive (a 64-index replay window per SSRC)."""

    def __init__(self, key: SrtpKey) -> None:
        keys = derive_session_keys(key, rtcp=True)
        self._cm = _CounterMode(keys)
        self._mac = hmac.new(keys.authentication, digestmod=hashlib.sha1)
        self._index = 0
        self._heard: dict[int, tuple[int, int]] = {}
        """Per SSRC: the highest SRTCP index authenticated, and the replay window."""
        self.auth_failures = 0
        self.replays = 0
        self.malformed = 0

    def protect(self, compound: bytes) -> bytes:
        """The SRTCP packet of our RTCP ``compound`` packet (encrypted, E flag set)."""
        if len(compound) < _SRTCP_HEADER:
            raise SrtpError("cannot protect a datagram shorter than an RTCP header")
        (ssrc,) = struct.unpack_from("!I", compound, 4)
        index = self._index
        self._index = (index + 1) & _SRTCP_INDEX_MASK
        body = (
            compound[:_SRTCP_HEADER]
            + self._cm.crypt(compound[_SRTCP_HEADER:], ssrc, index)
            + (0x80000000 | index).to_bytes(4, "big")
        )
        return body + self._tag(body)

    def unprotect(self, packet: bytes) -> bytes | None:
        """The compound RTCP packet inside ``packet``, or ``None`` (counted) when it is too
        short, fails authentication, or replays an index already received."""
        if len(packet) < _SRTCP_HEADER + 4 + SRTCP_TAG_BYTES or packet[0] >> 6 != 2:
            self.malformed += 1
            return None
        body, tag = packet[:-SRTCP_TAG_BYTES], packet[-SRTCP_TAG_BYTES:]
        if not hmac.compare_digest(self._tag(body), tag):
            self.auth_failures += 1
            return None
        (ssrc,) = struct.unpack_from("!I", body, 4)
        word = int.from_bytes(body[-4:], "big")
        index = word & _SRTCP_INDEX_MASK
        state = self._heard.get(ssrc)
        if state is not None and _replayed(state, index):
            self.replays += 1
            return None
        self._heard[ssrc] = _recorded(state, index)
        payload = body[_SRTCP_HEADER:-4]
        if word >> 31:
            payload = self._cm.crypt(payload, ssrc, index)
        return body[:_SRTCP_HEADER] + payload

    def _tag(self, body: bytes) -> bytes:
        mac = self._mac.copy()
        mac.update(body)
        return mac.digest()[:SRTCP_TAG_BYTES]


def _replayed(state: tuple[int, int], index: int) -> bool:
    """Whether ``index`` is too old for the replay window, or was received already;
    ``state`` is (the highest index authenticated, the window: bit ``n`` set when index
    ``highest - n`` was received)."""
    delta = state[0] - index
    return delta >= _REPLAY_WINDOW or (delta >= 0 and bool(state[1] >> delta & 1))


def _recorded(state: tuple[int, int] | None, index: int) -> tuple[int, int]:
    """The replay state once ``index`` (authenticated, not replayed) is received."""
    if state is None:
        return index, 1
    highest, window = state
    if index > highest:
        shift = index - highest
        return index, (window << shift | 1) & ((1 << _REPLAY_WINDOW) - 1) if shift < 64 else 1
    return highest, window | 1 << (highest - index)


@functools.cache
def _counter_blocks(n: int) -> int:
    """``n`` 16-byte blocks holding 0 .. n-1 in their last two bytes, as one integer."""
    return int.from_bytes(b"".join(i.to_bytes(16, "big") for i in range(n)), "big")


def _estimate_index(highest: int, seq: int) -> int:
    """RFC 3711 appendix A: the index of sequence number ``seq`` given the highest index so far
    (the rollover counter of the highest, or one either side of it)."""
    roc, s_l = highest >> 16, highest & 0xFFFF
    if s_l < 0x8000:
        v = roc - 1 if seq - s_l > 0x8000 else roc
    else:
        v = roc + 1 if s_l - 0x8000 > seq else roc
    return max(v, 0) << 16 | seq


def _header_length(packet: bytes) -> int | None:
    """The length of the RTP header (CSRCs and extension included), or ``None`` if ``packet``
    is not RTP."""
    if len(packet) < 12 or packet[0] >> 6 != 2:
        return None
    length = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:
        if len(packet) < length + 4:
            return None
        length += 4 + 4 * int.from_bytes(packet[length + 2 : length + 4], "big")
    return length if len(packet) >= length else None
