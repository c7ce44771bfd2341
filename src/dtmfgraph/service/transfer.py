"""``transfer`` (spec section 3) and ``redirect`` (section 4).

``redirect`` answers a ringing incoming call with SIP 302, the targets as Contacts, and ends the
call ``terminated`` 200/7000 (notified to the redirect's callbackUri when it gives one).

``transfer`` hands the far end of an established call to another party.

Blind: the far end is asked to call the target (SIP REFER). Consultative
(``transferTarget.replacesCallId`` names call B, the bot's call with the target): the far end is
asked to call B's far end replacing B (REFER with ``Replaces``, RFC 3891); the final
notification also says ``terminationReason: AppTransferred``, a failure is 500/7700, and B ends
0/7015 when the target, replaced, hangs it up. Notified as Graph does: ``transferring`` when
asked, ``transferAccepted`` when the far end accepts, then the call ends ``terminated`` with
resultInfo 0/7015 ``GracefulTransferCompleted`` (media operations still running end ``failed``
with it). A transfer that fails (refused, the target busy, no report in ``dial_timeout_s``)
returns the call to ``established`` with 500/7000 and a message naming the SIP outcome; the call
goes on, keys and all.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from .errors import InvalidRequestError, NotAllowedError, NotFoundError
from .media import TransferFailedError
from .model import CallState, EventKind, ResultInfo, Results, far_participant_id

if TYPE_CHECKING:
    from .calls import CallService, Principal, _Live

log = logging.getLogger(__name__)

_IN_FLIGHT = (CallState.TRANSFERRING, CallState.TRANSFER_ACCEPTED)
MAX_REDIRECT_TARGETS = 25
"""Graph's limit (Docs call-redirect: "up to 25 targets")."""


def _failed(message: str, consultative: bool = False) -> ResultInfo:
    return ResultInfo(500, 7700 if consultative else 7000, message)


class Transfers:
    """The transfer action of a :class:`~dtmfgraph.service.calls.CallService`."""

    def __init__(self, svc: CallService) -> None:
        self._svc = svc

    async def _replaced(self, p: Principal, call_id: str, other_id: Any) -> _Live:
        """Call B of a consultative transfer: ours, the same app's, established."""
        svc = self._svc
        where = "transferTarget.replacesCallId"
        if not isinstance(other_id, str) or other_id == call_id:
            raise InvalidRequestError(f"{where}: must name another call of this application")
        live = svc._live.get(other_id)
        async with svc._reading(other_id) as uow:
            other = await uow.get_call(other_id)
        if other is None or (other.tenant_id, other.app_id) != (p.tenant_id, p.app_id):
            raise InvalidRequestError(f"{where}: no call {other_id} of this application")
        if other.state is not CallState.ESTABLISHED or live is None or live.media is None:
            raise NotAllowedError(
                f"{where}: call {other_id} is {other.state.value}, not established"
            )
        return live

    def _uri(self, target: Any, where: str) -> str:
        """The SIP URI an invitationParticipantInfo maps to (as ``POST /calls`` targets)."""
        if not isinstance(target, dict) or not isinstance(target.get("identity"), dict):
            raise InvalidRequestError(f"{where}.identity: is required")
        try:
            return self._svc._resolve_target([target])
        except InvalidRequestError as exc:
            raise InvalidRequestError(str(exc).replace("targets[0].", f"{where}.")) from None

    async def redirect(
        self,
        p: Principal,
        call_id: str,
        targets: list[Any],
        timeout: int | None = None,
        callback_uri: str | None = None,
    ) -> None:
        """Send a ringing incoming call elsewhere (SIP 302 with the targets as Contacts); the
        call ends ``terminated`` 200/7000, told to ``callback_uri`` if given."""
        from .calls import check_callback_uri  # noqa: PLC0415  (calls imports this module)

        svc = self._svc
        svc._require(p, "Calls.Initiate.All")
        if not 1 <= len(targets) <= MAX_REDIRECT_TARGETS:
            raise InvalidRequestError(
                f"targets: give 1 to {MAX_REDIRECT_TARGETS} targets, got {len(targets)}"
            )
        if timeout is not None and not 15 <= timeout <= 90:
            raise InvalidRequestError(f"timeout: must be between 15 and 90 seconds, got {timeout}")
        uris = [self._uri(t, f"targets[{i}]") for i, t in enumerate(targets)]
        if callback_uri is not None:
            check_callback_uri(callback_uri, svc._cfg.callback_allowed_hosts)
        live, inc = await svc._incoming_live(p, call_id)
        await inc.redirect(uris)
        async with live.lock, svc._call_unit(call_id) as uow:
            call = await svc._owned(uow, p, call_id)
            if callback_uri is not None:
                call.callback_uri = callback_uri
            await svc._finish_call(uow, call, Results.REDIRECTED)
        for task in list(live.tasks):
            task.cancel()
        svc._forget(call_id)
        log.info("call %s: redirected to %s", call_id, ", ".join(uris))

    @staticmethod
    def _check_transferee(call_id: str, far_leg: int, transferee: dict[str, Any]) -> None:
        """A 1:1 call's transferee is its far end: a given one must name it."""
        pid = transferee.get("participantId")
        if pid is not None and pid != far_participant_id(call_id, far_leg):
            raise InvalidRequestError(
                f"transferee.participantId: {pid} is not the far end of this call (on a 1:1 "
                "call the far end is the transferee; group calls are not supported)"
            )

    async def transfer(
        self,
        p: Principal,
        call_id: str,
        target: dict[str, Any],
        transferee: dict[str, Any] | None = None,
    ) -> None:
        svc = self._svc
        svc._require(p, "Calls.Initiate.All")
        replaced: _Live | None = None
        if isinstance(target, dict) and target.get("replacesCallId") is not None:
            replaced = await self._replaced(p, call_id, target["replacesCallId"])
            uri = ""  # call B's far end, as its dialog names it
        else:
            uri = self._uri(target, "transferTarget")
        live = svc._live.get(call_id)
        if live is None:
            call = await svc.get_call(p, call_id)
            raise NotAllowedError(f"call {call_id} is {call.state.value}, not established")
        svc.writes.accepting(call_id)
        async with live.lock, svc._call_unit(call_id) as uow:
            call = await svc._owned(uow, p, call_id)
            if call.state in _IN_FLIGHT:
                raise NotAllowedError(f"call {call_id}: a transfer is already in progress")
            if call.state is not CallState.ESTABLISHED or live.media is None or live.ending:
                raise NotAllowedError(
                    f"call {call_id} is {call.state.value}: only an established call can be "
                    "transferred"
                )
            if transferee is not None:
                self._check_transferee(call_id, call.control.far_leg, transferee)
            call.state = CallState.TRANSFERRING
            call.control.transfer = {"target": uri}
            if replaced is not None:
                call.control.transfer["replacesCallId"] = replaced.call_id
            await uow.update_call(call)
            await svc._emit(uow, call, EventKind.CALL_UPDATED)
        svc._spawn(self._run(live, uri, replaced), live)

    async def _accepted(self, live: _Live, replaced: _Live | None) -> None:
        # from now on the far end leaving is the transfer completing (RFC 5589: it may BYE),
        # and so is call B's far end leaving (the target hangs up the call it replaced)
        live.forced_result = Results.TRANSFERRED
        if replaced is not None and replaced.forced_result is None:
            replaced.forced_result = Results.TRANSFERRED
        await self._change(live, (CallState.TRANSFERRING,), CallState.TRANSFER_ACCEPTED)

    async def _run(self, live: _Live, uri: str, replaced: _Live | None) -> None:
        svc = self._svc
        media = live.media
        assert media is not None
        try:
            await media.transfer(
                uri,
                timeout=svc._cfg.dial_timeout_s,
                on_accepted=lambda: self._accepted(live, replaced),
                replacing=None if replaced is None else replaced.media,
            )
        except TransferFailedError as exc:
            if replaced is not None and replaced.forced_result is Results.TRANSFERRED:
                replaced.forced_result = None
            await self._back_to_established(live, _failed(str(exc), replaced is not None))
            return
        live.forced_result = Results.TRANSFERRED
        log.info("call %s: transferred to %s", live.call_id, uri or replaced)

    async def _back_to_established(self, live: _Live, result: ResultInfo) -> None:
        if live.forced_result is Results.TRANSFERRED:
            live.forced_result = None
        await self._change(live, _IN_FLIGHT, CallState.ESTABLISHED, result)

    async def _change(
        self,
        live: _Live,
        from_states: tuple[CallState, ...],
        state: CallState,
        told: ResultInfo | None = None,
    ) -> None:
        """Move the call from one of ``from_states`` to ``state``, notified (with ``told``
        as its resultInfo in that notification only); nothing if it is elsewhere or gone."""
        svc = self._svc
        with contextlib.suppress(NotFoundError):  # it ended (and was written away) meanwhile
            async with live.lock, svc._call_unit(live.call_id) as uow:
                call = await uow.get_call(live.call_id)
                if call is None or call.state not in from_states:
                    return
                call.state = state
                if state is CallState.ESTABLISHED:
                    call.control.transfer = None
                call.result_info = told
                await svc._emit(uow, call, EventKind.CALL_UPDATED)
                call.result_info = None  # a failure is told once; the call goes on
                await uow.update_call(call)


__all__ = ["Transfers"]
