"""Transfers on a :class:`~dtmfgraph.media.phone.PhoneCall`: the asyncio side of REFER.

:func:`follow_refer` is the other direction: the far end (an IVR handing us to an agent) sends
REFER; the :class:`~dtmfgraph.media.phone.Phone` answers it 202 or 603 as its ``refer_policy``
says (:func:`refer_allowed`), calls the target, reports with NOTIFY sipfrag, and ends the old
call; ``PhoneCall.transferred`` then holds the new call.

:func:`take_over` honours an INVITE with ``Replaces`` (RFC 3891) naming one of our calls:
the new call takes the old one's place (``PhoneCall.transferred``), the old one is ended.

:func:`blind_transfer` asks the far end to call a target (REFER, RFC 3515) and follows its
NOTIFYs (``message/sipfrag``) until the transferee's call to the target is answered (then our
call is ended with BYE, unless the transferee already ended it, RFC 5589 section 6) or fails:
the REFER refused (any final >= 300, or no answer: 408), a final sipfrag >= 300, the
subscription ended with no final status, or nothing final within ``timeout``. A failure raises
:class:`TransferError` and leaves the call as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dtmfgraph.sip import SipError, SipUri
from dtmfgraph.sip.refer import ReferReceived, Replaces, TransferProgress

from .phone import CallEndedError, DialError, PhoneError, ReferPolicy

if TYPE_CHECKING:
    from .phone import IncomingInvite, PhoneCall

log = logging.getLogger(__name__)

_NOTIFY_WAIT_S = 2.0
"""How long a NOTIFY about a REFER we follow may wait for its answer."""
_BYE_AFTER_S = 1.0
"""After a final 2xx sipfrag, how long the transferee has to hang up before we do."""


class TransferError(Exception):
    """The transfer failed; ``status`` is the SIP status that says why (0: none)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class TransferOutcome:
    """A transfer that succeeded: the final sipfrag status, and who ended our call."""

    status: int
    reason: str
    far_end_hung_up: bool


async def blind_transfer(
    call: PhoneCall,
    target: str,
    *,
    timeout: float,
    on_accepted: Callable[[], Awaitable[None]] | None = None,
    replaces: Replaces | None = None,
) -> TransferOutcome:
    """Transfer ``call``'s far end to ``target`` (see the module docstring); ``on_accepted`` is
    awaited when the REFER is accepted (2xx), before any NOTIFY is looked at."""
    phone = call.phone
    loop = phone.loop
    while not call.transfer_progress.empty():  # NOTIFYs of an earlier REFER
        call.transfer_progress.get_nowait()
    try:
        request_id = phone.ua.refer(call.sip, target, loop.time(), replaces)
    except SipError as exc:
        raise TransferError(0, f"Transfer failed: cannot send REFER ({exc})") from None
    answer: asyncio.Future[int] = loop.create_future()
    call._requests[request_id] = answer
    phone.transport.kick()
    deadline = loop.time() + timeout
    try:
        status = await asyncio.wait_for(answer, timeout)
    except TimeoutError:
        raise TransferError(408, "Transfer failed: no answer to REFER") from None
    except CallEndedError as exc:
        raise TransferError(0, f"Transfer failed: the call ended ({exc})") from None
    finally:
        call._requests.pop(request_id, None)
    if status >= 300:
        raise TransferError(status, f"Transfer failed: REFER refused with SIP {status}")
    if on_accepted is not None:
        await on_accepted()
    while True:
        progress = await _next_progress(call, deadline - loop.time())
        if progress is None:  # the transferee hung up after it accepted: its call goes on
            return TransferOutcome(0, "the transferee ended the call", True)
        log.debug("%s: transfer progress %d %s", call.call_id, progress.status, progress.reason)
        if progress.final:
            break
        if progress.terminated:
            raise TransferError(0, "Transfer failed: the transferee ended the subscription")
    if progress.status >= 300:
        raise TransferError(
            progress.status, f"Transfer failed: SIP {progress.status} {progress.reason}".strip()
        )
    far_end = True
    with contextlib.suppress(TimeoutError):
        await call.wait_ended(_BYE_AFTER_S)
    if call.ended is None:
        far_end = False
        await call.hangup()
    return TransferOutcome(progress.status, progress.reason, far_end)


def replaces_ref(call: PhoneCall) -> tuple[str, Replaces]:
    """Where a consultative transfer sends the transferee to replace ``call`` (call B): its
    far end (the address we dialed; for a call it made to us, its Contact) and the
    ``Replaces`` naming its dialog, the to-tag being the far end's (RFC 3891 section 3).
    ``TransferError`` when ``call`` has no confirmed dialog."""
    dialog = call.sip.dialog
    if call.ended is not None or dialog is None or not dialog.remote_tag:
        raise TransferError(0, "Transfer failed: the call to replace is over")
    uri = dialog.remote.uri if call.direction == "outbound" else dialog.remote_target
    return str(uri), Replaces(dialog.call_id, dialog.remote_tag, dialog.local_tag)


async def _next_progress(call: PhoneCall, left: float) -> TransferProgress | None:
    """The next NOTIFY's report (``None``: the call ended first; ``TransferError`` when
    ``left`` seconds pass first)."""
    getter = asyncio.ensure_future(call.transfer_progress.get())
    ended = asyncio.ensure_future(call.wait_ended())
    try:
        done, _ = await asyncio.wait(
            {getter, ended}, timeout=max(left, 0.0), return_when="FIRST_COMPLETED"
        )
    finally:
        ended.cancel()
        if not getter.done():
            getter.cancel()
    if getter in done:
        return getter.result()
    if ended in done:
        return None
    raise TransferError(408, "Transfer failed: no final report from the transferee in time")


async def take_over(old: PhoneCall, invite: IncomingInvite) -> None:
    """An INVITE with ``Replaces`` naming ``old`` (RFC 3891; the far end of ``old`` handed
    it to the caller of ``invite``, an attended transfer to us): answer it at once, hand the
    new call out through ``old.transferred`` and end ``old`` with BYE."""
    try:
        new = await invite.answer()
    except (PhoneError, OSError) as exc:
        log.info("%s: the call replacing it could not be answered: %s", old.call_id, exc)
        return
    log.info("%s: replaced by %s from %s", old.call_id, new.call_id, new.remote_uri)
    if not old.transferred.done():
        old.transferred.set_result(new)
    if old.ended is None:
        await old.hangup()


def refer_allowed(policy: ReferPolicy, domains: Sequence[str], target: str) -> bool:
    """Whether ``policy`` lets a REFER send us to ``target`` (a SIP URI)."""
    if policy == "accept":
        return True
    if policy == "reject":
        return False
    try:
        host = SipUri.parse(target).host.lower().strip("[]")
    except SipError:
        return False
    return any(host == d.lower() or host.endswith("." + d.lower().lstrip(".")) for d in domains)


async def follow_refer(call: PhoneCall, event: ReferReceived, *, timeout: float) -> None:
    """Follow the far end's REFER (already answered 202): call its target, report with
    NOTIFY sipfrag (100 Trying, then the final status), and once the target answered, end the
    old call and hand the new one out through ``call.transferred``. A target that cannot be
    reached is reported (its status) and the old call goes on."""
    phone = call.phone
    loop = phone.loop

    async def notify(status: int, reason: str, final: bool) -> None:
        try:
            request_id = phone.ua.notify_refer(call.sip, status, reason, loop.time(), final=final)
        except SipError:
            return  # the old call is gone: nobody to tell
        answer: asyncio.Future[int] = loop.create_future()
        call._requests[request_id] = answer
        phone.transport.kick()
        with contextlib.suppress(TimeoutError, CallEndedError):
            await asyncio.wait_for(answer, _NOTIFY_WAIT_S)
        call._requests.pop(request_id, None)

    await notify(100, "Trying", False)
    try:
        new = await phone.dial(event.target, timeout=timeout)
    except DialError as exc:
        log.info("%s: REFER to %s failed: %s", call.call_id, event.target, exc)
        status = exc.status if 300 <= exc.status <= 699 else 503
        await notify(status, exc.reason or "Service Unavailable", True)
        return
    log.info("%s: followed the REFER to %s", call.call_id, event.target)
    await notify(200, "OK", True)
    if not call.transferred.done():
        call.transferred.set_result(new)
    if call.ended is None:
        await call.hangup()


__all__ = [
    "ReferPolicy",
    "TransferError",
    "TransferOutcome",
    "blind_transfer",
    "follow_refer",
    "refer_allowed",
    "replaces_ref",
    "take_over",
]
