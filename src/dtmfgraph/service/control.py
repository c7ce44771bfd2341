"""Call control that needs no new leg: the roster, mute/unmute, updateRecordingStatus.

Graph (spec section 5/6): a 1:1 call has two participants, the bot (``myParticipantId``) and
the far end. ``mute``/``unmute`` answer a ``completed`` operation and, when the bot's
``isMuted`` changes, the roster is notified (``updated`` on ``.../participants``, the whole
roster, ``rosterSequenceNumber`` + 1). Muting replaces the bot's prompts and beeps with
silence (RTP keeps flowing); DTMF keys still go out. ``updateRecordingStatus`` records the
status on the bot participant and answers ``completed``, without a notification.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import TYPE_CHECKING

from .errors import InvalidRequestError, NotAllowedError, NotFoundError, NotSupportedError
from .media import MediaCall
from .model import (
    Call,
    CallState,
    EventKind,
    Operation,
    OpKind,
    bot_participant_id,
    far_participant_id,
)
from .repository import UnitOfWork

if TYPE_CHECKING:
    from .calls import CallService, Principal, _Live

log = logging.getLogger(__name__)
E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")

RECORDING_STATUSES = {s.lower(): s for s in ("notRecording", "recording", "failed")}
"""What ``updateRecordingStatus`` takes (any case; Docs call-updaterecordingstatus)."""
_LIVE = (CallState.ESTABLISHED, CallState.TRANSFERRING, CallState.TRANSFER_ACCEPTED)


class CallControls:
    """The roster and mute actions of a :class:`~dtmfgraph.service.calls.CallService`."""

    def __init__(self, svc: CallService) -> None:
        self._svc = svc

    async def call_for_roster(self, p: Principal, call_id: str) -> Call:
        """The call whose participants are asked for (404 if it is not the caller's)."""
        return await self._svc.get_call(p, call_id)

    async def roster_changed(self, uow: UnitOfWork, call: Call) -> None:
        """Store ``call`` with its roster's sequence number + 1 and notify the roster (only
        once the call is up: never an initial roster)."""
        call.control.roster_seq += 1
        await uow.update_call(call)
        if call.state in _LIVE:
            await self._svc._emit(uow, call, EventKind.ROSTER)

    async def follow_far_ends(self, live: _Live, media: MediaCall) -> None:
        """The far end transferred the call and the media followed: the same Graph call goes
        on (still ``established``) with a new far end, a new participant in the roster
        (notified), whose identity is the SIP URI it was transferred to."""
        svc = self._svc
        async for uri in media.far_ends():
            with contextlib.suppress(NotFoundError):  # ended (and written away) meanwhile
                async with live.lock, svc._call_unit(live.call_id) as uow:
                    call = await uow.get_call(live.call_id)
                    if call is None or call.ended:
                        continue
                    user = uri.split(":", 1)[-1].split("@", 1)[0]
                    kind = "phone" if E164.match(user) else "user"
                    call.control.far_leg += 1
                    call.control.far_identity = {kind: {"id": uri, "displayName": uri}}
                    call.control.far_direction = media.audio_direction
                    call.media_record = media.recovery_record()
                    log.info("call %s: the far end transferred it to %s", call.id, uri)
                    await self.roster_changed(uow, call)

    async def mute(
        self,
        p: Principal,
        call_id: str,
        muted: bool,
        client_context: str | None,
        repeat_key: str | None = None,
        participant_id: str | None = None,
    ) -> Operation:
        """Mute or unmute the bot (``participant_id``: the bot's, for participant mute)."""
        svc = self._svc
        svc._require(p, "Calls.Initiate.All")
        kind = OpKind.MUTE if muted else OpKind.UNMUTE
        live = svc._live.get(call_id)
        async with svc._changing(call_id) as uow:
            call = await svc._owned(uow, p, call_id)
            if repeat_key and (found := await uow.find_repeat(call_id, repeat_key)):
                return found
            if participant_id is not None:
                self._check_participant(call, participant_id)
            if call.state not in _LIVE or live is None or live.media is None:
                raise NotAllowedError(
                    f"call {call_id} is {call.state.value}: mute and unmute need an "
                    "established call"
                )
            if call.control.muted != muted:
                call.control.muted = muted
                live.media.set_muted(muted)
                await self.roster_changed(uow, call)
            return await svc._completed_operation(uow, call_id, kind, client_context, repeat_key)

    @staticmethod
    def _check_participant(call: Call, participant_id: str) -> None:
        if participant_id == bot_participant_id(call.id):
            return
        if participant_id == far_participant_id(call.id, call.control.far_leg):
            raise NotSupportedError(
                f"participant {participant_id} is the far end: dtmfgraph mutes only the bot "
                "(its own audio); muting a far end needs a mixer"
            )
        raise NotFoundError(f"participant {participant_id} was not found on call {call.id}")

    async def update_recording_status(
        self,
        p: Principal,
        call_id: str,
        status: str,
        client_context: str | None,
        repeat_key: str | None = None,
    ) -> Operation:
        svc = self._svc
        svc._require(p, "Calls.AccessMedia.All")
        value = RECORDING_STATUSES.get(status.lower()) if isinstance(status, str) else None
        if value is None:
            raise InvalidRequestError(
                f"status: {status!r} is not one of notRecording, recording, failed"
            )
        async with svc._changing(call_id) as uow:
            call = await svc._owned(uow, p, call_id)
            if repeat_key and (found := await uow.find_repeat(call_id, repeat_key)):
                return found
            if call.ended:
                raise NotAllowedError(f"call {call_id} is {call.state.value}")
            call.control.recording_status = value
            await uow.update_call(call)
            return await svc._completed_operation(
                uow, call_id, OpKind.UPDATE_RECORDING_STATUS, client_context, repeat_key
            )


__all__ = ["RECORDING_STATUSES", "CallControls"]
