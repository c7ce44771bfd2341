"""G.711 µ-law (PCMU) and A-law (PCMA) codecs as numpy lookup tables.

Decoding follows the G.711 tables exactly (the same tables as spandsp and the former ``audioop``).
Encoding is a 65,536-entry table built once at import. ``encode(decode(c)) == c`` for every code
except µ-law ``0x7F`` ("negative zero"), which decodes to 0 and so encodes back as ``0xFF``.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

_ULAW_BIAS: Final = 0x84
_ULAW_CLIP: Final = 32635

Int16Array = npt.NDArray[np.int16]
Uint8Array = npt.NDArray[np.uint8]


def _top_bit(x: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Index of the highest set bit of each positive value."""
    return np.floor(np.log2(np.maximum(x, 1))).astype(np.int64)


def _build_ulaw_decode() -> Int16Array:
    code = ~np.arange(256, dtype=np.int64) & 0xFF
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return np.where(code & 0x80, -magnitude, magnitude).astype(np.int16)


def _build_alaw_decode() -> Int16Array:
    code = np.arange(256, dtype=np.int64) ^ 0x55
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = np.where(
        exponent == 0,
        (mantissa << 4) + 8,
        ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0),
    )
    return np.where(code & 0x80, magnitude, -magnitude).astype(np.int16)


def _all_samples() -> npt.NDArray[np.int64]:
    """Every int16 value, ordered by its bit pattern read as uint16 (the table index)."""
    return np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int64)


def _build_ulaw_encode() -> Uint8Array:
    x = _all_samples()
    mask = np.where(x < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(x), _ULAW_CLIP) + _ULAW_BIAS
    exponent = np.clip(_top_bit(mag) - 7, 0, 7)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (((exponent << 4) | mantissa) ^ mask).astype(np.uint8)


def _build_alaw_encode() -> Uint8Array:
    x = _all_samples()
    mask = np.where(x >= 0, 0xD5, 0x55)
    mag = np.abs(x)
    segment = np.clip(_top_bit(mag | 0xFF) - 7, 0, 8)
    shift = np.where(segment == 0, 4, segment + 3)
    code = (np.minimum(segment, 7) << 4) | ((mag >> shift) & 0x0F)
    code = np.where(segment >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


ULAW_DECODE: Final[Int16Array] = _build_ulaw_decode()
ALAW_DECODE: Final[Int16Array] = _build_alaw_decode()
ULAW_ENCODE: Final[Uint8Array] = _build_ulaw_encode()
ALAW_ENCODE: Final[Uint8Array] = _build_alaw_encode()
for _table in (ULAW_DECODE, ALAW_DECODE, ULAW_ENCODE, ALAW_ENCODE):
    _table.setflags(write=False)


def _as_index(samples: npt.ArrayLike) -> npt.NDArray[np.uint16]:
    arr = np.asarray(samples)
    if arr.dtype != np.int16:
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"G.711 encode needs integer PCM samples, got {arr.dtype}")
        arr = np.clip(arr, -32768, 32767).astype(np.int16)
    return arr.view(np.uint16)


def _as_codes(codes: npt.ArrayLike | bytes) -> Uint8Array:
    if isinstance(codes, bytes | bytearray | memoryview):
        return np.frombuffer(codes, dtype=np.uint8)
    arr = np.asarray(codes)
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.integer) or (
            arr.size and (arr.min() < 0 or arr.max() > 255)
        ):
            raise ValueError("G.711 codes must be integers 0..255")
        arr = arr.astype(np.uint8)
    return arr


def ulaw_encode(samples: npt.ArrayLike) -> Uint8Array:
    """Encode int16 PCM (any shape) to µ-law codes (uint8, same shape)."""
    return ULAW_ENCODE[_as_index(samples)]


def ulaw_decode(codes: npt.ArrayLike | bytes) -> Int16Array:
    """Decode µ-law codes (uint8 array or bytes) to int16 PCM."""
    return ULAW_DECODE[_as_codes(codes)]


def alaw_encode(samples: npt.ArrayLike) -> Uint8Array:
    """Encode int16 PCM (any shape) to A-law codes (uint8, same shape)."""
    return ALAW_ENCODE[_as_index(samples)]


def alaw_decode(codes: npt.ArrayLike | bytes) -> Int16Array:
    """Decode A-law codes (uint8 array or bytes) to int16 PCM."""
    return ALAW_DECODE[_as_codes(codes)]
