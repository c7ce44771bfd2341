"""Transfers on a :class:`~dtmfgraph.media.phone.PhoneCall`: the asyncio side of REFER.

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dtmfgraph.sip import SipError
from dtmfgraph.sip.refer import Replaces, TransferProgress

from .phone import CallEndedError

if TYPE_CHECKING:
    from .phone import PhoneCall

log = logging.getLogger(__name__)

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


__all__ = ["TransferError", "TransferOutcome", "blind_transfer"]
