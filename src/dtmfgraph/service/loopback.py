"""``LoopbackMedia``: a deterministic in-process far end for tests and demos.

Dialling ``sip:USER@host`` answers at once, except these USER names, which fail like SIP would:
``busy`` (486), ``decline`` (603), ``nobody`` (404), ``noanswer`` (408 after the timeout),
``noroute`` (no final response). A ``;dtmf=`` URI parameter lists what the far end negotiates
(``rfc4733``, ``sipinfo``; default both): ``;dtmf=inband`` leaves only in-band audio.

Each key takes ``(tone_ms + gap_ms) * speed`` milliseconds; the last key has no trailing gap.
The far end records every key it heard, with the method, in ``LoopbackCall.heard``, and the
audio played to it in ``LoopbackCall.played`` (a prompt takes its length ``* speed``); it can
hang up (``remote_hangup``), press keys (``press``) and speak (``speak``: while anyone listens,
the far end sends audio in 100 ms chunks, ``* speed`` apart: what it was given to say, else
silence; ``stop_media`` stops it sending altogether). ``incoming`` simulates an incoming call
(whose caller can give up before the answer: ``LoopbackIncoming.cancel``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .media import (
    Audio,
    AudioSink,
    CallEndedError,
    DialError,
    EndKind,
    EndReason,
    KeyHeardInfo,
    KeySent,
    MediaCall,
    OnIncoming,
    TransferFailedError,
)

_FAILURES = {"busy": (486, "Busy Here"), "decline": (603, "Decline"), "nobody": (404, "Not Found")}


def _user_and_params(uri: str) -> tuple[str, dict[str, str]]:
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    head, *params = rest.split(";")
    user = head.split("@", 1)[0] if "@" in head else ""
    kv = {}
    for p in params:
        k, _, v = p.partition("=")
        kv[k.lower()] = v
    return user.lower(), kv


class LoopbackCall:
    """One simulated call: this side's ``MediaCall`` and the far end's controls."""

    def __init__(self, remote: str, *, rfc4733: bool, sipinfo: bool, speed: float) -> None:
        self.remote = remote
        self.speed = speed
        self._rfc4733 = rfc4733
        self._sipinfo = sipinfo
        self.heard: list[tuple[str, str]] = []
        self.ended: asyncio.Future[EndReason] = asyncio.get_running_loop().create_future()
        self._pressed: asyncio.Queue[KeyHeardInfo | None] = asyncio.Queue()
        self.audio_active = True
        self._audio: asyncio.Queue[bool | None] = asyncio.Queue()
        self.played: list[Audio] = []
        """Audio played to the far end (each round of a loop), in order."""
        self._sinks: list[AudioSink] = []
        self._speech: deque[Audio] = deque()
        self._clock: asyncio.Task[None] | None = None
        self.media_stopped = False
        """The far end sends no audio (``stop_media``)."""
        self.muted = False
        """The bot is muted: what it plays reaches the far end as silence."""
        self.transferred_to: str | None = None
        """Where a transfer sent the far end."""

    @property
    def can_send_rfc4733(self) -> bool:
        return self._rfc4733

    def recovery_record(self) -> dict[str, Any] | None:
        return None  # a simulated far end dies with the process

    @property
    def can_send_sipinfo(self) -> bool:
        return self._sipinfo

    @property
    def dtmf_keys_sent(self) -> int:
        return len(self.heard)

    @property
    def heard_keys(self) -> str:
        return "".join(k for k, _ in self.heard)

    def _end(self, reason: EndReason) -> None:
        if not self.ended.done():
            self.ended.set_result(reason)
            self._pressed.put_nowait(None)
            self._audio.put_nowait(None)
            self._sinks.clear()

    async def _wait(self, seconds: float) -> None:
        await asyncio.wait([self.ended], timeout=max(seconds, 0.0))
        if self.ended.done():
            raise CallEndedError(f"the call ended ({self.ended.result().kind})")

    async def _tone(self, key: str, method: str, seconds: float) -> None:
        await self._wait(seconds)
        self.heard.append((key, method))

    async def send_dtmf(
        self, keys: str, *, method: str, tone_ms: int, gap_ms: int, on_key: KeySent | None = None
    ) -> None:
        for i, key in enumerate(keys):
            if self.ended.done():
                raise CallEndedError("the call has ended")
            if on_key is not None:
                on_key(key, time.time())
            task = asyncio.ensure_future(self._tone(key, method, tone_ms / 1000 * self.speed))
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                await task  # a key that has started is finished: stop at the key boundary
                raise
            if i < len(keys) - 1:
                await self._wait(gap_ms / 1000 * self.speed)

    async def play(self, samples: Audio, *, loop: bool = False) -> None:
        while True:
            if self.ended.done():
                raise CallEndedError("the call has ended")
            await self._wait(len(samples) / 8000 * self.speed)
            played = np.asarray(samples, dtype=np.int16)
            self.played.append(np.zeros_like(played) if self.muted else played)
            if not loop:
                return

    def listen(self, sink: AudioSink) -> Callable[[], None]:
        self._sinks.append(sink)
        if self._clock is None and not self.ended.done():
            self._clock = asyncio.ensure_future(self._send_audio())

        def remove() -> None:
            if sink in self._sinks:
                self._sinks.remove(sink)

        return remove

    async def _send_audio(self) -> None:
        """The far end's microphone: 100 ms chunks while anyone listens."""
        chunk = 800
        pending = np.zeros(0, np.int16)
        while not self.ended.done():
            await asyncio.wait([self.ended], timeout=chunk / 8000 * self.speed)
            if not self._sinks or self.media_stopped or self.ended.done():
                continue
            while len(pending) < chunk and self._speech:
                pending = np.concatenate([pending, self._speech.popleft()])
            out = pending[:chunk]
            pending = pending[chunk:]
            out = np.concatenate([out, np.zeros(chunk - len(out), np.int16)])
            for sink in tuple(self._sinks):
                sink(out)

    async def keys_heard(self) -> AsyncIterator[KeyHeardInfo]:
        while True:
            item = await self._pressed.get()
            if item is None:
                return
            yield item

    async def audio_changes(self) -> AsyncIterator[bool]:
        while True:
            item = await self._audio.get()
            if item is None:
                return
            yield item

    @property
    def audio_direction(self) -> str:
        return "sendReceive" if self.audio_active else "sendOnly"

    def set_muted(self, muted: bool) -> None:
        self.muted = muted

    async def far_ends(self) -> AsyncIterator[str]:
        """A simulated far end never transfers the call."""
        await asyncio.shield(self.ended)
        return
        yield  # an async generator

    async def transfer(
        self,
        target: str,
        *,
        timeout: float,
        on_accepted: Callable[[], Awaitable[None]],
        replacing: MediaCall | None = None,
    ) -> None:
        """The far end takes any transfer; one to a user named ``busy`` fails 486. The far
        end of a call it replaces hangs that call up."""
        if self.ended.done():
            raise TransferFailedError(0, "Transfer failed: the call has ended")
        await on_accepted()
        await self._wait(0.1 * self.speed)
        if _user_and_params(target)[0] == "busy":
            raise TransferFailedError(486, "Transfer failed: SIP 486 Busy Here")
        self.transferred_to = target
        if isinstance(replacing, LoopbackCall):
            replacing._end(EndReason(EndKind.REMOTE_BYE))
        self._end(EndReason(EndKind.LOCAL_BYE))

    async def hangup(self) -> None:
        self._end(EndReason(EndKind.LOCAL_BYE))

    # --- far-end controls -------------------------------------------------------------------
    def remote_hangup(self) -> None:
        """The far end sends BYE."""
        self._end(EndReason(EndKind.REMOTE_BYE))

    def media_failure(self) -> None:
        """The media path dies (e.g. RTP timeout)."""
        self._end(EndReason(EndKind.MEDIA_ERROR, detail="RTP timeout"))

    def hold(self, held: bool = True) -> None:
        """The far end holds the call (``held``) or resumes it."""
        if held == self.audio_active and not self.ended.done():
            self.audio_active = not held
            self._audio.put_nowait(not held)

    def press(self, keys: str, method: str = "rfc4733") -> None:
        """The far end presses ``keys``; this side hears them in order."""
        for key in keys:
            self._pressed.put_nowait(KeyHeardInfo(key, method, time.time()))

    def speak(self, samples: Audio) -> None:
        """The far end says ``samples`` (int16, 8 kHz), after what it was saying."""
        self._speech.append(np.asarray(samples, dtype=np.int16))

    def stop_media(self, stopped: bool = True) -> None:
        """The far end stops (or resumes) sending audio at all."""
        self.media_stopped = stopped

    @property
    def played_audio(self) -> Audio:
        """Everything played to the far end, end to end."""
        if not self.played:
            return np.zeros(0, np.int16)
        return np.concatenate(self.played)


@dataclass
class LoopbackIncoming:
    """A simulated incoming call waiting for answer or reject."""

    caller: str
    callee: str
    speed: float
    calls: list[LoopbackCall] = field(default_factory=list)
    outcome: asyncio.Future[LoopbackCall | int] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    cancelled: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    redirected_to: list[str] = field(default_factory=list)

    def cancel(self) -> None:
        """The caller gives up before the call is answered (SIP CANCEL)."""
        if not self.outcome.done() and not self.cancelled.done():
            self.cancelled.set_result(None)

    async def answer(self) -> MediaCall:
        call = LoopbackCall(self.caller, rfc4733=True, sipinfo=True, speed=self.speed)
        self.calls.append(call)
        if not self.outcome.done():
            self.outcome.set_result(call)
        return call

    async def reject(self, sip_status: int) -> None:
        if not self.outcome.done():
            self.outcome.set_result(sip_status)

    async def redirect(self, targets: list[str]) -> None:
        """302: ``outcome`` is 302, ``redirected_to`` the targets."""
        self.redirected_to = list(targets)
        await self.reject(302)


class LoopbackMedia:
    """The loopback ``MediaBackend``."""

    def __init__(self, *, speed: float = 1.0, answer_delay_s: float = 0.01) -> None:
        self.speed = speed
        self.answer_delay_s = answer_delay_s
        self.calls: list[LoopbackCall] = []
        self.incoming_calls: list[LoopbackIncoming] = []
        self._on_incoming: OnIncoming | None = None
        self._ids = itertools.count(1)
        self.dialled: asyncio.Queue[LoopbackCall] | None = None

    async def start(self, on_incoming: OnIncoming) -> None:
        self._on_incoming = on_incoming
        self.dialled = asyncio.Queue()

    async def dial(self, target: str, *, timeout: float) -> MediaCall:
        user, params = _user_and_params(target)
        await asyncio.sleep(self.answer_delay_s)
        if user in _FAILURES:
            raise DialError(*_FAILURES[user])
        if user == "noanswer":
            await asyncio.sleep(timeout)
            raise DialError(408, "Request Timeout")
        if user == "noroute":
            raise DialError(0, "no route to the target")
        methods = params.get("dtmf", "rfc4733,sipinfo").split(",")
        call = LoopbackCall(
            target, rfc4733="rfc4733" in methods, sipinfo="sipinfo" in methods, speed=self.speed
        )
        self.calls.append(call)
        if self.dialled is not None:
            self.dialled.put_nowait(call)
        return call

    async def incoming(self, caller: str, callee: str) -> LoopbackIncoming:
        """Simulate an incoming call; the service is told through its callback."""
        if self._on_incoming is None:
            raise RuntimeError("the media backend has not been started")
        inc = LoopbackIncoming(caller, callee, self.speed, self.calls)
        self.incoming_calls.append(inc)
        await self._on_incoming(inc)
        return inc

    async def hold_registration(self, hold: bool) -> None:
        """No registrar behind the simulation."""
        del hold

    def end_recorded(self, record: dict[str, Any]) -> bool:
        del record
        return False

    async def close(self) -> None:
        for call in self.calls:
            call._end(EndReason(EndKind.MEDIA_ERROR, detail="media backend closed"))
        for call in self.calls:
            if call._clock is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await call._clock
