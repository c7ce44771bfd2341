"""What the service tells a call journal (``dtmfgraph.journal`` implements :class:`CallTap`).

The hooks are called after the change they report is committed (or as the media reports it);
they must be cheap and never raise into the service (the service guards each call).
``DIALLING`` names the call whose media is being set up in the running task, so that a tap of
a lower layer (the SIP transport) can tell which call an outgoing INVITE belongs to.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Protocol

from .media import IncomingCall, KeyHeardInfo, MediaCall
from .model import Event, Operation

DIALLING: ContextVar[str | None] = ContextVar("dtmfgraph_dialling", default=None)
"""The service call id whose ``dial``/``answer`` runs in this task (``None`` elsewhere)."""


class CallTap(Protocol):
    def committed(self, events: list[Event], app_ids: list[str]) -> None:
        """Events (state changes, operations that ended, tones) that were just committed, and
        the app each call belongs to."""

    def operation_accepted(self, op: Operation) -> None:
        """A media operation was accepted (queued or running)."""

    def media_attached(self, call_id: str, media: MediaCall) -> None:
        """The call's media is up (its far end answered, or we answered)."""

    def incoming(self, call_id: str, incoming: IncomingCall) -> None:
        """An incoming call was announced as ``call_id``."""

    def key_sent(self, call_id: str, op_id: str, key: str, method: str, at: float) -> None:
        """A key of operation ``op_id`` left at ``at`` (wall clock), by ``method``."""

    def key_heard(self, call_id: str, info: KeyHeardInfo) -> None:
        """The far end's key was heard."""

    def note(self, call_id: str, kind: str, data: dict[str, Any]) -> None:
        """Anything else worth a line in the call's timeline (a prompt played, a recording
        made, a transfer): ``kind`` names it, ``data`` is JSON-safe detail."""


class NullTap:
    """A :class:`CallTap` that ignores everything."""

    def committed(self, events: list[Event], app_ids: list[str]) -> None:
        return None

    def operation_accepted(self, op: Operation) -> None:
        return None

    def media_attached(self, call_id: str, media: MediaCall) -> None:
        return None

    def incoming(self, call_id: str, incoming: IncomingCall) -> None:
        return None

    def key_sent(self, call_id: str, op_id: str, key: str, method: str, at: float) -> None:
        return None

    def key_heard(self, call_id: str, info: KeyHeardInfo) -> None:
        return None

    def note(self, call_id: str, kind: str, data: dict[str, Any]) -> None:
        return None
