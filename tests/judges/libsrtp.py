"""libsrtp 2 (Cisco's, Debian ``libsrtp2-1``) through ctypes: a reference SRTP implementation
for tests and benchmarks. Test-only: dtmfgraph itself never loads it.

One :class:`LibSrtp` session protects (``outbound``) or unprotects (``inbound``) packets of any
SSRC with one SDES master key, as an SRTP endpoint configured from an ``a=crypto`` line would.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

MISSING = (
    "libsrtp2 is not installed: run scripts/test, which installs the test judges "
    "(apt-get install -y --no-install-recommends libsrtp2-1)"
)
_SSRC_ANY_INBOUND, _SSRC_ANY_OUTBOUND = 2, 3
_MAX_TRAILER = 16 + 4 + 128  # SRTP_MAX_TRAILER_LEN, with room to spare


class _CryptoPolicy(ctypes.Structure):
    _fields_ = [
        ("cipher_type", ctypes.c_uint32),
        ("cipher_key_len", ctypes.c_int),
        ("auth_type", ctypes.c_uint32),
        ("auth_key_len", ctypes.c_int),
        ("auth_tag_len", ctypes.c_int),
        ("sec_serv", ctypes.c_int),
    ]


class _Ssrc(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("value", ctypes.c_uint)]


class _Policy(ctypes.Structure):
    pass


_Policy._fields_ = [
    ("ssrc", _Ssrc),
    ("rtp", _CryptoPolicy),
    ("rtcp", _CryptoPolicy),
    ("key", ctypes.c_char_p),
    ("keys", ctypes.c_void_p),
    ("num_master_keys", ctypes.c_ulong),
    ("deprecated_ekt", ctypes.c_void_p),
    ("window_size", ctypes.c_ulong),
    ("allow_repeat_tx", ctypes.c_int),
    ("enc_xtn_hdr", ctypes.c_void_p),
    ("enc_xtn_hdr_count", ctypes.c_int),
    ("next", ctypes.POINTER(_Policy)),
]


@cache
def library() -> ctypes.CDLL:
    name = ctypes.util.find_library("srtp2")
    assert name is not None, MISSING
    lib = ctypes.CDLL(name)
    for fn in (
        "srtp_crypto_policy_set_rtp_default",
        "srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32",
    ):
        getattr(lib, fn).argtypes = [ctypes.POINTER(_CryptoPolicy)]
        getattr(lib, fn).restype = None
    lib.srtp_create.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(_Policy)]
    lib.srtp_protect.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
    lib.srtp_unprotect.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
    lib.srtp_protect_rtcp.argtypes = lib.srtp_protect.argtypes
    lib.srtp_unprotect_rtcp.argtypes = lib.srtp_unprotect.argtypes
    lib.srtp_dealloc.argtypes = [ctypes.c_void_p]
    assert lib.srtp_init() == 0, "srtp_init failed"
    return lib


class LibSrtp:
    """A libsrtp session for one master key (30 bytes: key, then salt) and one suite."""

    def __init__(self, key_and_salt: bytes, *, outbound: bool, tag_bytes: int = 10) -> None:
        lib = library()
        policy = _Policy()
        if tag_bytes == 10:
            lib.srtp_crypto_policy_set_rtp_default(ctypes.byref(policy.rtp))
        else:
            lib.srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(ctypes.byref(policy.rtp))
        lib.srtp_crypto_policy_set_rtp_default(ctypes.byref(policy.rtcp))
        policy.ssrc.type = _SSRC_ANY_OUTBOUND if outbound else _SSRC_ANY_INBOUND
        self._key = ctypes.create_string_buffer(key_and_salt, len(key_and_salt))
        policy.key = ctypes.cast(self._key, ctypes.c_char_p)
        policy.window_size = 128
        self._session = ctypes.c_void_p()
        status = lib.srtp_create(ctypes.byref(self._session), ctypes.byref(policy))
        assert status == 0, f"srtp_create failed ({status})"
        self._buffer = ctypes.create_string_buffer(2048)
        self._length = ctypes.c_int()

    def protect(self, packet: bytes) -> bytes:
        ctypes.memmove(self._buffer, packet, len(packet))
        self._length.value = len(packet)
        status = library().srtp_protect(self._session, self._buffer, ctypes.byref(self._length))
        assert status == 0, f"srtp_protect failed ({status})"
        return self._buffer.raw[: self._length.value]

    def unprotect(self, packet: bytes) -> bytes | None:
        """The RTP packet, or ``None`` when libsrtp refuses it (authentication, replay)."""
        ctypes.memmove(self._buffer, packet, len(packet))
        self._length.value = len(packet)
        status = library().srtp_unprotect(self._session, self._buffer, ctypes.byref(self._length))
        return self._buffer.raw[: self._length.value] if status == 0 else None

    def protect_rtcp(self, packet: bytes) -> bytes:
        ctypes.memmove(self._buffer, packet, len(packet))
        self._length.value = len(packet)
        lib = library()
        status = lib.srtp_protect_rtcp(self._session, self._buffer, ctypes.byref(self._length))
        assert status == 0, f"srtp_protect_rtcp failed ({status})"
        return self._buffer.raw[: self._length.value]

    def unprotect_rtcp(self, packet: bytes) -> bytes | None:
        """The RTCP compound packet, or ``None`` when libsrtp refuses it."""
        ctypes.memmove(self._buffer, packet, len(packet))
        self._length.value = len(packet)
        lib = library()
        status = lib.srtp_unprotect_rtcp(self._session, self._buffer, ctypes.byref(self._length))
        return self._buffer.raw[: self._length.value] if status == 0 else None

    def close(self) -> None:
        if self._session:
            library().srtp_dealloc(self._session)
            self._session = ctypes.c_void_p()
