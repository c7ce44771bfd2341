"""A call's audio both ways beside its keys: prompts out on the stream, the far end's audio in.

* :func:`play_audio` puts 8 kHz samples on a session's outbound stream (the one pacer's clock,
  the negotiated codec, the same SSRC and sequence as the call's silence and keys) and returns
  once the last packet has left; cancelling it ends the audio at the next frame, faded out.
* :class:`TapSet` hands the far end's audio, as played out (the inbound stream's ``tap``: codes
  in order, gaps concealed), to any number of listeners, decoded to int16; with no listener the
  inbound stream has no tap at all (its fast path).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from dtmfgraph.rtp import AudioJob, Codec, InboundStream

from .session import RtpSession

log = logging.getLogger(__name__)

PcmSink = Callable[[npt.NDArray[np.int16]], None]
CodeSink = Callable[[bytes], None]
_CANCEL_GRACE_S = 0.5
"""How long a cancelled prompt may take to put its faded last frame out."""


async def play_audio(
    session: RtpSession, samples: npt.NDArray[np.int16], *, loop: bool = False
) -> AudioJob:
    """Play ``samples`` (int16, 8 kHz) on ``session``; the finished job once its last packet has
    left. A cancel stops it at the next frame (faded) before re-raising. Raises what
    :meth:`RtpSession.start_audio` raises, and ``SessionClosedError`` if the session closes."""
    sending = session.start_audio(samples, loop=loop)
    try:
        return await asyncio.shield(sending.done)
    except asyncio.CancelledError:
        session.cancel(sending.job)
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(sending.done), _CANCEL_GRACE_S)
        raise


class TapSet:
    """Listeners of one call's received audio (see the module docstring)."""

    def __init__(self) -> None:
        self._codes: list[CodeSink] = []
        self._inbound: InboundStream | None = None
        self._codec: Codec | None = None

    def attach(self, inbound: InboundStream | None, codec: Codec | None) -> None:
        """The call's inbound stream (once its media starts; ``None`` when it closes)."""
        if self._inbound is not None:
            self._inbound.tap = None
        self._inbound, self._codec = inbound, codec
        self._sync()

    def add_codes(self, sink: CodeSink) -> Callable[[], None]:
        """``sink`` gets the codec's codes as they play out; returns its remover."""
        self._codes.append(sink)
        self._sync()

        def remove() -> None:
            if sink in self._codes:
                self._codes.remove(sink)
                self._sync()

        return remove

    def add_pcm(self, sink: PcmSink) -> Callable[[], None]:
        """``sink`` gets the audio decoded to int16 (8 kHz) as it plays out."""

        def decode(codes: bytes) -> None:
            codec = self._codec
            if codec is not None:
                sink(codec.decode(codes))

        return self.add_codes(decode)

    def _sync(self) -> None:
        inbound = self._inbound
        if inbound is not None:
            inbound.tap = self._push if self._codes else None

    def _push(self, codes: bytes) -> None:
        for sink in tuple(self._codes):
            try:
                sink(codes)
            except Exception:  # one listener's failure must not take the media down
                log.exception("an audio listener failed; removed")
                with contextlib.suppress(ValueError):
                    self._codes.remove(sink)
                self._sync()


__all__ = ["PcmSink", "TapSet", "play_audio"]
