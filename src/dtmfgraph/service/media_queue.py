"""One call's media queue: sendDtmfTones, playPrompt and recordResponse, one at a time, in order.

Graph (Docs call-cancelmediaprocessing): "IVR operations playPrompt and recordResponse ... are by
default queued to process in order". Ours, as the spec: one FIFO per call holds all three; the
head runs (``running``), the rest wait (``notStarted``); while the call is ``establishing``
everything waits. Each operation ends with exactly one ``deleted`` notification:

* done: sendDtmfTones and playPrompt ``completed`` ``completedSuccessfully`` 200/0;
  recordResponse as its recorder decides: ``completed`` ``stopToneDetected`` 200/0,
  ``maxRecordDurationReached`` 200/8515, ``maxSilenceTimeout`` 200/0; ``failed``
  ``initialSilenceTimeout`` 408/0, ``mediaReceiveTimeout`` 410/0.
* cancelMediaProcessing or a barge-in: ``completed`` ``mediaOperationCanceled`` 400/8508;
  recordResponse ``failed`` ``operationCanceled`` 400/8508, location and token ``""``.
* a prompt that cannot be had: ``failed`` ``unknown`` 400/0 naming why; recordResponse
  ``failed`` ``playPromptFailed`` 400/0.
* the end of the call: ``failed`` ``unknown`` (recordResponse ``unspecifiedError``) with the
  call's resultInfo; a recording cut short keeps what it had if that is 1 s or more.

A recordResponse with ``bargeInAllowed`` ends every running and queued playPrompt and
recordResponse (cancelled, as above) and goes to the head of the queue; a sendDtmfTones that is
sounding finishes first, and queued ones stay queued behind it. subscribeToTone is not in the
queue: tones are reported throughout.

The queue keeps the call's store writes going through the service's own transaction helpers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..tones.resample import beep
from .errors import InvalidRequestError, NotSupportedError
from .media import Audio, CallEndedError, MediaCall
from .model import (
    Call,
    CompletionReason,
    DtmfMethod,
    EventKind,
    Operation,
    OpKind,
    OpStatus,
    ResultInfo,
    Results,
)
from .prompts import PromptError, PromptRef
from .recordings import (
    MIN_CALL_END_S,
    RETENTION_S,
    Recording,
    RecordParams,
    ResponseRecorder,
    new_token,
    token_digest,
    wav_bytes,
)
from .repository import UnitOfWork

if TYPE_CHECKING:
    from .calls import CallService

log = logging.getLogger(__name__)

_BARGED = (OpKind.PLAY_PROMPT, OpKind.RECORD)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a media operation ended (``audio``: a recording to keep)."""

    status: OpStatus
    reason: CompletionReason
    result: ResultInfo
    audio: Audio | None = None


_RECORDER_OUTCOMES = {
    CompletionReason.STOP_TONE_DETECTED: (OpStatus.COMPLETED, Results.STOP_TONE, True),
    CompletionReason.MAX_RECORD_DURATION_REACHED: (OpStatus.COMPLETED, Results.MAX_DURATION, True),
    CompletionReason.MAX_SILENCE_TIMEOUT: (OpStatus.COMPLETED, Results.MAX_SILENCE, True),
    CompletionReason.INITIAL_SILENCE_TIMEOUT: (OpStatus.FAILED, Results.INITIAL_SILENCE, False),
    CompletionReason.MEDIA_RECEIVE_TIMEOUT: (OpStatus.FAILED, Results.NO_MEDIA, False),
}


def cancelled_outcome(kind: OpKind) -> Outcome:
    """What cancelMediaProcessing or a barge-in makes of an operation of ``kind``."""
    if kind is OpKind.RECORD:
        return Outcome(OpStatus.FAILED, CompletionReason.OPERATION_CANCELED, Results.CANCELED)
    return Outcome(OpStatus.COMPLETED, CompletionReason.MEDIA_OPERATION_CANCELED, Results.CANCELED)


def call_end_reason(kind: OpKind) -> CompletionReason:
    """The completionReason of an operation of ``kind`` cut short by the end of its call."""
    return CompletionReason.UNSPECIFIED_ERROR if kind is OpKind.RECORD else CompletionReason.UNKNOWN


def prompt_refs(params: dict[str, Any] | None) -> list[PromptRef]:
    return [PromptRef(uri, rid) for uri, rid in (params or {}).get("prompts", [])]


@dataclass(slots=True)
class _Running:
    op_id: str
    kind: OpKind
    task: asyncio.Task[Outcome]


class MediaQueue:
    """The FIFO and the worker of one call (see the module docstring)."""

    def __init__(self, service: CallService, call_id: str, lock: asyncio.Lock) -> None:
        self._svc = service
        self.call_id = call_id
        self._lock = lock
        self.entries: deque[tuple[str, OpKind]] = deque()
        self.wake = asyncio.Event()
        self.current: _Running | None = None
        self.ending = False
        self._recorder: ResponseRecorder | None = None
        self._recorder_changed = asyncio.Event()
        self._partial: tuple[str, ResponseRecorder] | None = None

    @property
    def idle(self) -> bool:
        return not self.entries and self.current is None

    # -- queueing --------------------------------------------------------------------------------
    def push(self, op: Operation) -> None:
        """Queue ``op`` (already stored) behind the others."""
        self.entries.append((op.id, op.kind))
        self._prefetch(op)
        self.wake.set()

    def _prefetch(self, op: Operation) -> None:
        refs = prompt_refs(op.params)
        if op.kind is OpKind.RECORD and op.params is not None:
            prompt = RecordParams.from_json(op.params).prompt
            refs = [prompt] if prompt is not None else []
        if refs:
            self._svc.prompts.prefetch(refs)

    async def barge_in(self, op: Operation) -> None:
        """``op`` (a recordResponse with bargeInAllowed, stored) ends the running and queued
        prompts and recordings and goes first. Hold the call's lock."""
        victims = await self.stop(lambda kind: kind in _BARGED)
        self.entries.appendleft((op.id, op.kind))
        self._prefetch(op)
        async with self._svc._call_unit(self.call_id) as uow:
            call = await uow.get_call(self.call_id)
            if call is not None:
                await self.write_cancelled(uow, call, victims)
        self.wake.set()

    async def stop(self, which: Callable[[OpKind], bool]) -> list[str]:
        """Stop the running operation if ``which`` its kind, and drop the queued ones it picks;
        their ids (the running one first) for :meth:`write_cancelled`. Hold the call's lock."""
        stopped: list[str] = []
        current = self.current
        if current is not None and which(current.kind):
            current.task.cancel()
            await asyncio.wait([current.task])
            if current.task.cancelled():  # else it ended first: the worker records how
                stopped.append(current.op_id)
        kept: deque[tuple[str, OpKind]] = deque()
        for entry in self.entries:
            if which(entry[1]):
                stopped.append(entry[0])
            else:
                kept.append(entry)
        self.entries = kept
        return stopped

    async def write_cancelled(self, uow: UnitOfWork, call: Call, op_ids: list[str]) -> None:
        for op_id in op_ids:
            op = await uow.get_operation(self.call_id, op_id)
            if op is not None and not op.finished:
                await self._write(uow, call, op, cancelled_outcome(op.kind))

    async def mark_head_running(self, uow: UnitOfWork) -> None:
        """The call is established: the first queued operation is ``running`` from now."""
        if self.entries and self.current is None:
            first = await uow.get_operation(self.call_id, self.entries[0][0])
            if first is not None and first.status is OpStatus.NOT_STARTED:
                first.status = OpStatus.RUNNING
                await uow.update_operation(first)

    def key_heard(self, key: str, at: float) -> None:
        """A key from the far end (a stop tone, perhaps)."""
        recorder = self._recorder
        if recorder is not None:
            recorder.key(key, at, time.time())
            self._recorder_changed.set()

    # -- the end of the call ---------------------------------------------------------------------
    async def end(self) -> None:
        """The call is over: stop the running operation (its outcome is the call's)."""
        self.ending = True
        current = self.current
        if current is not None:
            current.task.cancel()
            await asyncio.wait([current.task])

    async def save_partial(self, uow: UnitOfWork, call: Call, result: ResultInfo) -> None:
        """A recordResponse cut short by the end of the call keeps what it had (1 s or more)."""
        partial, self._partial = self._partial, None
        if partial is None:
            return
        op = await uow.get_operation(self.call_id, partial[0])
        recorder = partial[1]
        if op is None or op.finished or recorder.seconds < MIN_CALL_END_S:
            return
        outcome = Outcome(OpStatus.FAILED, CompletionReason.UNSPECIFIED_ERROR, result)
        await self._write(uow, call, op, outcome, recorder.audio())

    # -- the worker ------------------------------------------------------------------------------
    async def run(self, media: MediaCall) -> None:
        while True:
            while not self.entries:
                self.wake.clear()
                await self.wake.wait()
            async with self._lock:
                if self.ending or media.ended.done():
                    return  # the call is over: its end writes every outcome
                op_id, kind = self.entries.popleft()
                async with self._svc._call_unit(self.call_id) as uow:
                    op = await uow.get_operation(self.call_id, op_id)
                    if op is None or op.finished:
                        continue
                    if op.status is not OpStatus.RUNNING:
                        op.status = OpStatus.RUNNING
                        await uow.update_operation(op)
                self._partial = None
                job = asyncio.ensure_future(self._job(op, media))
                job.add_done_callback(self._settled)
                self.current = _Running(op_id, kind, job)
            try:
                await asyncio.wait([job])
            except asyncio.CancelledError:
                job.cancel()
                raise
            async with self._lock:
                self.current = None
                if job.cancelled() or self.ending:
                    continue  # cancel or the end of the call has written the outcome
                exc = job.exception()
                if isinstance(exc, CallEndedError):
                    return  # the call is over: its end writes every outcome
                if exc is not None:
                    log.error("%s on call %s failed", kind.value, self.call_id, exc_info=exc)
                    outcome = Outcome(OpStatus.FAILED, call_end_reason(kind), Results.MEDIA_ERROR)
                else:
                    outcome = job.result()
                async with self._svc._call_unit(self.call_id) as uow:
                    op = await uow.get_operation(self.call_id, op_id)
                    call = await uow.get_call(self.call_id)
                    if op is None or call is None or op.finished:
                        continue
                    audio = outcome.audio
                    await self._write(uow, call, op, outcome, audio)
                    await self.mark_head_running(uow)

    def _settled(self, job: asyncio.Future[Outcome]) -> None:
        """Read a finished job's error at once: the worker reads it too, but not once the call
        is ending (a job cut short by the end of the call fails with ``CallEndedError``, and
        the end writes the outcome), which asyncio would log as never retrieved."""
        exc = None if job.cancelled() else job.exception()
        if exc is not None and self.ending and not isinstance(exc, CallEndedError):
            log.error("a media job on call %s failed as the call ended", self.call_id, exc_info=exc)

    async def _write(
        self,
        uow: UnitOfWork,
        call: Call,
        op: Operation,
        outcome: Outcome,
        audio: Audio | None = None,
    ) -> None:
        """Record ``op``'s end (and its recording) and announce it, in ``uow``."""
        op.status, op.completion_reason, op.result_info = (
            outcome.status,
            outcome.reason,
            outcome.result,
        )
        if op.kind is OpKind.RECORD:
            op.recording_location, op.recording_access_token = "", ""
            if audio is not None:
                token, t = new_token(), time.time()
                wav = wav_bytes(audio)
                await uow.insert_recording(
                    Recording(op.id, op.call_id, token_digest(token), wav, t, t + RETENTION_S)
                )
                op.recording_location = f"{self._svc.base_url}/recordings/{op.id}"
                op.recording_access_token = token
        await uow.update_operation(op)
        await self._svc._emit(uow, call, EventKind.OPERATION_DELETED, op)

    async def _job(self, op: Operation, media: MediaCall) -> Outcome:
        if op.kind is OpKind.SEND_DTMF:
            return await self._send_dtmf(op, media)
        if op.kind is OpKind.PLAY_PROMPT:
            return await self._play_prompt(op, media)
        return await self._record(op, media)

    async def _send_dtmf(self, op: Operation, media: MediaCall) -> Outcome:
        svc = self._svc
        try:
            method = svc._resolve_method(media, op.method or DtmfMethod.AUTO, op.tones)
        except (InvalidRequestError, NotSupportedError) as exc:  # queued before the call was up
            return Outcome(OpStatus.FAILED, CompletionReason.UNKNOWN, ResultInfo(400, 0, str(exc)))
        keys = "".join(svc.tone_keys(op.tones))
        sent_before = media.dtmf_keys_sent
        try:
            await media.send_dtmf(
                keys,
                method=method.value,
                tone_ms=op.tone_ms,
                gap_ms=op.delay_ms,
                on_key=svc._key_sent(self.call_id, op.id, method),
            )
        finally:
            svc._count_keys(method, media.dtmf_keys_sent - sent_before)
        return Outcome(OpStatus.COMPLETED, CompletionReason.COMPLETED_SUCCESSFULLY, Results.OK)

    async def _prompt_audio(self, refs: list[PromptRef]) -> Audio:
        parts = [await self._svc.prompts.get(ref) for ref in refs]
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    async def _play_prompt(self, op: Operation, media: MediaCall) -> Outcome:
        try:
            audio = await self._prompt_audio(prompt_refs(op.params))
        except PromptError as exc:
            return Outcome(OpStatus.FAILED, CompletionReason.UNKNOWN, ResultInfo(400, 0, str(exc)))
        self._note(op, "prompt", seconds=round(len(audio) / 8000, 3))
        await media.play(audio, loop=bool((op.params or {}).get("loop")))
        return Outcome(OpStatus.COMPLETED, CompletionReason.COMPLETED_SUCCESSFULLY, Results.OK)

    def _note(self, op: Operation, kind: str, **data: Any) -> None:
        """A line in the call's journal (the console's timeline)."""
        svc = self._svc
        svc._tell(svc.tap.note, self.call_id, kind, {"operation": op.id, **data})

    async def _record(self, op: Operation, media: MediaCall) -> Outcome:
        params = RecordParams.from_json(op.params or {})
        if params.prompt is not None:
            try:
                audio = await self._prompt_audio([params.prompt])
            except PromptError as exc:
                failed = ResultInfo(400, 0, str(exc))
                return Outcome(OpStatus.FAILED, CompletionReason.PLAY_PROMPT_FAILED, failed)
            played = await _play(media, audio, CompletionReason.PLAY_PROMPT_FAILED)
            if played is not None:
                return played
        if params.play_beep:
            played = await _play(media, beep(), CompletionReason.PLAY_BEEP_FAILED)
            if played is not None:
                return played
        recorder = ResponseRecorder(
            params, start=time.time(), media_timeout_s=self._svc.record_media_timeout_s
        )
        changed = self._recorder_changed

        def hear(samples: Audio) -> None:
            recorder.push(samples, time.time())
            if recorder.outcome is not None:
                changed.set()

        self._recorder, self._partial = recorder, (op.id, recorder)
        remove = media.listen(hear)
        try:
            while recorder.check(time.time()) is None:
                changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        changed.wait(), max(0.0, recorder.next_deadline() - time.time())
                    )
        finally:
            remove()
            self._recorder = None
        reason = recorder.outcome
        assert reason is not None
        self._partial = None
        status, result, keep = _RECORDER_OUTCOMES[reason]
        self._note(op, "recording", seconds=round(recorder.seconds, 3), reason=reason.value)
        return Outcome(status, reason, result, recorder.audio() if keep else None)


async def _play(media: MediaCall, audio: Audio, failure: CompletionReason) -> Outcome | None:
    """Play ``audio`` before a recording; the operation's outcome if it could not be played."""
    try:
        await media.play(audio)
    except CallEndedError:
        raise
    except Exception as exc:  # the media refused it: the recording cannot go on
        log.warning("recordResponse: playing failed: %s", exc)
        return Outcome(OpStatus.FAILED, failure, ResultInfo(500, 0, f"playing failed: {exc}"))
    return None


def new_media_operation(
    call_id: str,
    kind: OpKind,
    *,
    running: bool,
    client_context: str | None,
    repeat_key: str | None,
    **fields: Any,
) -> Operation:
    """A media operation to store and queue: ``running`` when it will start at once."""
    return Operation(
        id=str(uuid.uuid4()),
        call_id=call_id,
        kind=kind,
        status=OpStatus.RUNNING if running else OpStatus.NOT_STARTED,
        client_context=client_context,
        repeat_key=repeat_key,
        **fields,
    )


__all__ = [
    "MediaQueue",
    "Outcome",
    "call_end_reason",
    "cancelled_outcome",
    "new_media_operation",
    "prompt_refs",
]
