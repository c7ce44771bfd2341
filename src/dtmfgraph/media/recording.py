"""A call's recording: the far end's audio, as played out, into a 16-bit 8 kHz WAV file.

The RTP layer hands over the codec's codes in order as its jitter buffer plays them out, lost
packets concealed as for the detector (:attr:`~dtmfgraph.rtp.InboundStream.tap`): the file holds
what a receiver would play. They are decoded (numpy tables, no ``audioop``) and appended to a
:class:`~dtmfgraph.tones.wav.WavWriter`; :attr:`CallRecording.concealed` counts the packets in
it that were lost and concealed. Silences without packets longer than a second are not in the
file.
"""

from __future__ import annotations

import os

import numpy as np

from dtmfgraph.rtp import Codec, InboundStats
from dtmfgraph.tones import alaw_decode, ulaw_decode
from dtmfgraph.tones.wav import WavWriter


class CallRecording:
    """Decodes ``codec`` codes pushed to :meth:`push` into the WAV file at ``path``."""

    def __init__(
        self, path: str | os.PathLike[str], codec: Codec, stats: InboundStats | None = None
    ) -> None:
        self.path = path
        self._stats = stats
        self._concealed_before = stats.concealed if stats is not None else 0
        self._decode = alaw_decode if codec is Codec.PCMA else ulaw_decode
        self._wav = WavWriter(path, 8000)

    @property
    def seconds(self) -> float:
        """Audio written so far."""
        return self._wav.frames / 8000

    @property
    def concealed(self) -> int:
        """Packets lost and concealed in the recording so far (given the stream's ``stats``)."""
        if self._stats is None:
            return 0
        return self._stats.concealed - self._concealed_before

    def push(self, codes: bytes) -> None:
        if not self._wav.closed:
            self._wav.write(self._decode(np.frombuffer(codes, dtype=np.uint8)))

    def close(self) -> None:
        self._wav.close()
