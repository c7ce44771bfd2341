"""The media backend protocol: what the service needs from a phone.

The real SIP phone (``dtmfgraph.media.Phone``) implements these; ``LoopbackMedia`` is the
in-process simulation used by tests and demos.

``MediaBackend``
    ``await start(on_incoming)`` is called once by the service (a backend that binds sockets
    does it here, if it has not already); the backend calls
    ``on_incoming(IncomingCall)`` for each new incoming call (an awaitable callback).
    ``dial(target, timeout=)`` places a call to a ``sip:``/``sips:`` URI and returns a
    ``MediaCall`` once it is answered, or raises ``DialError`` with the final SIP status
    (0 when there was no final response, e.g. no route; 408 for a dial timeout), or
    ``MediaSetupError`` when the local media could not be set up. ``close()`` ends all.
    Optional ``check_capacity()``: raise ``ServiceUnavailableError`` when a call placed now
    could not get its media (every RTP port taken); the service asks before it answers 201.

``MediaCall``
    ``send_dtmf(keys, method=, tone_ms=, gap_ms=)``: ``keys`` are keypad characters
    (``0-9 * # A-D``, and ``F`` for flash, as in ``dtmfgraph.tones.ALL_KEYS``); ``method`` is
    ``rfc4733``, ``sipinfo`` or ``inband`` (never ``auto``: the service resolves it from
    ``can_send_*``). Returns when the last packet of the last key has left; raises
    ``CallEndedError`` if the call ends first; cancellable with asyncio cancel, which stops
    at a key boundary (a key that has started is finished, so the far end never hears half a
    key).
    ``keys_heard()``: async iterator of ``KeyHeardInfo`` for keys received from the far end;
    it ends when the call ends.
    ``hangup()``: sends BYE (idempotent). ``ended``: a future resolved with the ``EndReason``
    (local BYE, remote BYE, media error, timeout).
    ``on_key`` (optional) is told of each key that left and when (as it leaves, or once the
    send is over, whichever the backend can tell).
    ``dtmf_keys_sent``: how many keys have left on this call so far (whole keys, counted
    when ``send_dtmf`` returns, raises or is cancelled; a refused SIP INFO is not counted).
    ``can_send_rfc4733``/``can_send_sipinfo``: what the SDP/SIP negotiation allows; in-band
    audio is always possible (``flash`` has no in-band form).
    ``play(samples, loop=)``: play int16 8 kHz audio to the far end (after keys queued before
    it), returning when its last packet has left; cancellable (the audio stops at the next
    frame, faded); ``CallEndedError`` if the call ends first.
    ``listen(sink)``: hand the far end's audio (int16, 8 kHz, as played out) to ``sink`` until
    the returned function is called or the call ends.

``IncomingCall``
    ``caller``/``callee`` URIs; ``cancelled``: a future resolved when the caller gives up
    before an answer or a reject; ``answer()`` returns the ``MediaCall`` (``CallEndedError`` if the
    caller has gone, ``MediaSetupError`` if our media failed); ``reject(sip_status)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeAlias

import numpy as np
import numpy.typing as npt

Audio: TypeAlias = npt.NDArray[np.int16]
AudioSink: TypeAlias = Callable[[Audio], None]


class EndKind(StrEnum):
    LOCAL_BYE = "localBye"
    REMOTE_BYE = "remoteBye"
    MEDIA_ERROR = "mediaError"
    TIMEOUT = "timeout"


@dataclass(frozen=True, slots=True)
class EndReason:
    kind: EndKind
    sip_status: int = 0
    detail: str = ""


@dataclass(frozen=True, slots=True)
class KeyHeardInfo:
    key: str
    method: str
    time: float
    duration: float | None = None
    level_dbm0: float | None = None


KeySent = Callable[[str, float], None]
"""Told of each key that left in a ``send_dtmf``: the key and when it left (wall clock)."""


class MediaBackendError(Exception):
    """Base of the media backend errors."""


class DialError(MediaBackendError):
    """The call could not be set up; ``sip_status`` is the final response (0: none)."""

    def __init__(self, sip_status: int, reason: str) -> None:
        super().__init__(f"SIP {sip_status}: {reason}" if sip_status else reason)
        self.sip_status = sip_status
        self.reason = reason


class MediaSetupError(DialError):
    """Our own media could not be set up (no RTP port, socket error): not the far end's fault."""


class CallEndedError(MediaBackendError):
    """The call ended while an operation was using it."""


class TransferFailedError(MediaBackendError):
    """A transfer failed; ``sip_status`` says why (0: no SIP status), the message names it."""

    def __init__(self, sip_status: int, message: str) -> None:
        super().__init__(message)
        self.sip_status = sip_status


class MediaCall(Protocol):
    ended: asyncio.Future[EndReason]

    @property
    def can_send_rfc4733(self) -> bool: ...

    @property
    def can_send_sipinfo(self) -> bool: ...

    @property
    def dtmf_keys_sent(self) -> int: ...

    async def send_dtmf(
        self, keys: str, *, method: str, tone_ms: int, gap_ms: int, on_key: KeySent | None = None
    ) -> None: ...

    def keys_heard(self) -> AsyncIterator[KeyHeardInfo]: ...

    async def play(self, samples: Audio, *, loop: bool = False) -> None: ...

    def listen(self, sink: AudioSink) -> Callable[[], None]: ...

    @property
    def audio_active(self) -> bool:
        """The far end has the audio flowing (``False`` while it holds the call)."""
        ...

    def audio_changes(self) -> AsyncIterator[bool]:
        """``audio_active`` each time it changes, until the call ends."""
        ...

    @property
    def audio_direction(self) -> str:
        """The far end's audio direction as its SDP says, as a Graph ``mediaDirection``
        (``sendReceive``, ``sendOnly``, ``receiveOnly``, ``inactive``)."""
        ...

    async def transfer(
        self,
        target: str,
        *,
        timeout: float,
        on_accepted: Callable[[], Awaitable[None]],
        replacing: MediaCall | None = None,
    ) -> None:
        """Blind transfer: ask the far end to call ``target`` (a SIP URI). ``on_accepted`` is
        awaited once it accepted; returns once its call to the target is answered and this
        call is over (or being ended); raises ``TransferFailedError`` (the call goes on).
        Consultative (``replacing``, another call of this backend): the far end is asked to
        call ``replacing``'s far end in its place (``target`` is then ignored)."""
        ...

    def far_ends(self) -> AsyncIterator[str]:
        """The URI of each new far end (the far end transferred the call and the media
        followed: keys, audio and sends go on with the new one), until the call ends."""
        ...

    def set_muted(self, muted: bool) -> None:
        """Mute (``True``) or unmute the bot: while muted, audio it plays (prompts, beeps)
        goes out as silence; RTP keeps flowing and DTMF keys still go out."""
        ...

    async def hangup(self) -> None: ...

    def recovery_record(self) -> dict[str, Any] | None: ...


class IncomingCall(Protocol):
    @property
    def caller(self) -> str: ...

    @property
    def callee(self) -> str: ...

    @property
    def cancelled(self) -> asyncio.Future[None]: ...

    async def answer(self) -> MediaCall: ...

    async def reject(self, sip_status: int) -> None: ...

    async def redirect(self, targets: list[str]) -> None:
        """Answer the caller that it should call ``targets`` (SIP URIs) instead (302)."""
        ...


OnIncoming = Callable[[IncomingCall], Awaitable[None]]


class MediaBackend(Protocol):
    async def start(self, on_incoming: OnIncoming) -> None: ...

    async def hold_registration(self, hold: bool) -> None:
        """Keep the backend's registration (if it has one) bound, or remove it: of several
        nodes sharing a database only one registers, so that a call to the AOR is not
        forked to each node."""

    async def dial(self, target: str, *, timeout: float) -> MediaCall: ...

    def end_recorded(self, record: dict[str, Any]) -> bool: ...

    async def close(self) -> None: ...
