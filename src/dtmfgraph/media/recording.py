"""A call's recording: the far end's audio, as played out, into a 16-bit 8 kHz WAV file.

The RTP layer hands over the codec's codes in order, gaps concealed as for the detector
(:attr:`~dtmfgraph.rtp.InboundStream.tap`); they are decoded (numpy tables, no ``audioop``)
and appended to a :class:`~dtmfgraph.tones.wav.WavWriter`. Silences without packets longer
than a second are not in the file (nothing to conceal them with).
"""

from __future__ import annotations

import os

import numpy as np

from dtmfgraph.rtp import Codec
from dtmfgraph.tones import alaw_decode, ulaw_decode
from dtmfgraph.tones.wav import WavWriter


class CallRecording:
    """Decodes ``codec`` codes pushed to :meth:`push` into the WAV file at ``path``."""

    def __init__(self, path: str | os.PathLike[str], codec: Codec) -> None:
        self.path = path
        self._decode = alaw_decode if codec is Codec.PCMA else ulaw_decode
        self._wav = WavWriter(path, 8000)

    @property
    def seconds(self) -> float:
        """Audio written so far."""
        return self._wav.frames / 8000

    def push(self, codes: bytes) -> None:
        if not self._wav.closed:
            self._wav.write(self._decode(np.frombuffer(codes, dtype=np.uint8)))

    def close(self) -> None:
        self._wav.close()
