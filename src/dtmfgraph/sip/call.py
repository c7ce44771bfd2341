"""A call as the user agent tracks it: explicit states, the transitions between them, and
which API action each state allows (the tables are the documentation)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final

from dtmfgraph.sip.dialog import Dialog, DialogState
from dtmfgraph.sip.digest import Credentials
from dtmfgraph.sip.errors import SipStateError
from dtmfgraph.sip.message import SipRequest
from dtmfgraph.sip.sdp import AudioMedia, SessionDescription, audio_media
from dtmfgraph.sip.transaction import Addr, ServerTransaction
from dtmfgraph.sip.uri import NameAddr


class Role(enum.StrEnum):
    """Which side of the INVITE we are."""

    CALLER = "caller"
    CALLEE = "callee"


class CallState(enum.StrEnum):
    """Where a call stands."""

    CALLING = "calling"
    """Caller: INVITE sent, no response yet."""
    PROCEEDING = "proceeding"
    """Caller: a provisional response arrived."""
    CANCELLING = "cancelling"
    """Caller: CANCEL sent (or waiting for a provisional before it may be sent)."""
    INCOMING = "incoming"
    """Callee: INVITE received, no final response sent."""
    ANSWERED = "answered"
    """Callee: 2xx sent, ACK not yet received (the 2xx is retransmitted)."""
    ESTABLISHED = "established"
    """Dialog confirmed; media may flow."""
    TERMINATING = "terminating"
    """BYE sent, its response not yet received."""
    TERMINATED = "terminated"
    """Over."""


S = CallState
TRANSITIONS: Final[dict[CallState, frozenset[CallState]]] = {
    S.CALLING: frozenset({S.PROCEEDING, S.CANCELLING, S.ESTABLISHED, S.TERMINATED}),
    S.PROCEEDING: frozenset({S.CANCELLING, S.ESTABLISHED, S.TERMINATED}),
    S.CANCELLING: frozenset({S.TERMINATING, S.TERMINATED}),
    S.INCOMING: frozenset({S.ANSWERED, S.TERMINATED}),
    S.ANSWERED: frozenset({S.ESTABLISHED, S.TERMINATING, S.TERMINATED}),
    S.ESTABLISHED: frozenset({S.TERMINATING, S.TERMINATED}),
    S.TERMINATING: frozenset({S.TERMINATED}),
    S.TERMINATED: frozenset(),
}
"""Every state change a call may make."""

ALLOWED: Final[dict[str, frozenset[CallState]]] = {
    "ringing": frozenset({S.INCOMING}),
    "answer": frozenset({S.INCOMING}),
    "reject": frozenset({S.INCOMING}),
    "cancel": frozenset({S.CALLING, S.PROCEEDING}),
    "bye": frozenset({S.ANSWERED, S.ESTABLISHED}),
    "info": frozenset({S.ANSWERED, S.ESTABLISHED}),
    "reinvite": frozenset({S.ESTABLISHED}),
}
"""Which API action each state allows (anything else raises :class:`SipStateError`)."""


@dataclass(eq=False, repr=False)
class Call:
    """One call (one INVITE dialog). Read its attributes; change it through the UserAgent."""

    call_id: str
    role: Role
    local: NameAddr
    """Our From (caller) or To (callee) with our tag."""
    remote: NameAddr
    """The peer's address (its tag once known)."""
    peer_addr: Addr
    """Where the INVITE went (caller) or came from (callee)."""
    state: CallState = CallState.CALLING
    dialog: Dialog | None = None
    local_sdp: SessionDescription | None = None
    remote_sdp: SessionDescription | None = None
    credentials: Credentials | None = field(default=None, repr=False)
    invite: SipRequest | None = field(default=None, repr=False)
    """Our latest INVITE (caller) or the peer's INVITE (callee)."""
    end_status: int | None = None
    """The final status that ended the call attempt (None while alive, or after BYE)."""
    _server_tx: ServerTransaction | None = field(default=None, repr=False)
    _auth_attempts: int = field(default=0, repr=False)
    _nonce_counts: dict[str, int] = field(default_factory=dict, repr=False)
    _provisional_seen: bool = field(default=False, repr=False)
    _cancel_requested: bool = field(default=False, repr=False)
    _ack: tuple[bytes, Addr] | None = field(default=None, repr=False)
    _ok: tuple[bytes, Addr] | None = field(default=None, repr=False)
    _ok_interval: float = field(default=0.0, repr=False)
    _ok_seq: int = field(default=0, repr=False)
    _reack: tuple[int, bytes, Addr] | None = field(default=None, repr=False)
    _end_reason: str = field(default="BYE", repr=False)
    _failure_reported: bool = field(default=False, repr=False)
    _refer_tx: ServerTransaction | None = field(default=None, repr=False)
    """A REFER from the far end waiting for our answer (see ``UserAgent.answer_refer``)."""
    deadlines: dict[str, float] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return f"Call({self.call_id!r}, {self.role.value}, {self.state.value})"

    @property
    def dialog_state(self) -> DialogState | None:
        """The dialog's state (early/confirmed/terminated), or ``None`` before there is one."""
        return self.dialog.state if self.dialog else None

    @property
    def media(self) -> AudioMedia | None:
        """The peer's audio stream from its latest SDP (address, port, codec, event PT)."""
        return audio_media(self.remote_sdp) if self.remote_sdp else None

    @property
    def is_over(self) -> bool:
        """Whether the call reached ``TERMINATED``."""
        return self.state is CallState.TERMINATED

    def next_deadline(self) -> float | None:
        """The earliest call-level timer (2xx retransmission, dial timeout...)."""
        return min(self.deadlines.values(), default=None)

    def require(self, action: str) -> None:
        """Raise :class:`SipStateError` unless ``action`` is allowed in the current state."""
        if self.state not in ALLOWED[action]:
            raise SipStateError(f"cannot {action} a call in state {self.state.value}")

    def move_to(self, state: CallState) -> None:
        """Change state along an edge of :data:`TRANSITIONS`."""
        if state is self.state:
            return
        if state not in TRANSITIONS[self.state]:
            raise SipStateError(f"call {self.call_id}: {self.state.value} -> {state.value}")
        self.state = state
        if state is CallState.TERMINATED:
            self.deadlines.clear()
            if self.dialog is not None:
                self.dialog.state = DialogState.TERMINATED
