"""The G.711 audio codecs an RTP stream can carry: PCMU (PT 0) and PCMA (PT 8), 8 kHz."""

from __future__ import annotations

import enum
from functools import cache
from typing import Final

import numpy as np
import numpy.typing as npt

from dtmfgraph.tones import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

CLOCK_RATE: Final = 8000
"""Samples per second, and RTP timestamp units per second, of both codecs."""


class Codec(enum.Enum):
    """A G.711 codec; the value is its static RTP payload type."""

    PCMU = 0
    PCMA = 8

    @property
    def payload_type(self) -> int:
        return int(self.value)

    @property
    def clock_rate(self) -> int:
        return CLOCK_RATE

    @property
    def silence_byte(self) -> int:
        """The code of a zero sample."""
        return _SILENCE_BYTE[self]

    @classmethod
    def from_payload_type(cls, payload_type: int) -> Codec:
        """The codec with static ``payload_type``; raises ``ValueError`` for any other."""
        return cls(payload_type)

    def encode(self, samples: npt.ArrayLike) -> bytes:
        """Encode int16 PCM samples (1-D) to payload bytes."""
        codes = ulaw_encode(samples) if self is Codec.PCMU else alaw_encode(samples)
        return codes.tobytes()

    def decode(self, payload: bytes | bytearray | memoryview) -> npt.NDArray[np.int16]:
        """Decode payload bytes to int16 PCM samples."""
        return ulaw_decode(payload) if self is Codec.PCMU else alaw_decode(payload)

    def silence(self, samples: int = 160) -> bytes:
        """The payload of ``samples`` samples of silence (cached per length)."""
        return _silence(self, samples)


_SILENCE_BYTE: Final = {
    Codec.PCMU: int(ulaw_encode(np.zeros(1, np.int16))[0]),
    Codec.PCMA: int(alaw_encode(np.zeros(1, np.int16))[0]),
}


@cache
def _silence(codec: Codec, samples: int) -> bytes:
    if samples < 0:
        raise ValueError(f"samples must be >= 0, got {samples}")
    return bytes((_SILENCE_BYTE[codec],)) * samples
