"""2xx responses to INVITEs this agent has no call for (sans-I/O).

A process killed while its calls ring comes back on the same SIP address with none of them;
when a far end answers then, its 200 OK reaches an agent that never sent that INVITE. Left
alone, the far end retransmits it for 32 s and then keeps a silent answered call. RFC 3261
(13.2.2.4, 17.1.1.3) has the UAC acknowledge every 2xx and hang up a dialog it does not want:
:func:`orphan_dialog` builds that dialog from the response alone, and :class:`OrphanAnswers`
remembers the ACK sent for it (bounded in count and time) so that a retransmitted 2xx gets the
same ACK again and never a second BYE.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from dtmfgraph.sip.dialog import Dialog, DialogState
from dtmfgraph.sip.errors import SipParseError
from dtmfgraph.sip.headers import BRANCH_MAGIC_COOKIE
from dtmfgraph.sip.message import SipResponse
from dtmfgraph.sip.transaction import Addr

OrphanKey = tuple[str, str, int]
"""``(Call-ID, To tag, CSeq number)`` of an answered INVITE."""


def orphan_dialog(response: SipResponse, sent_by: set[tuple[str, int]]) -> Dialog:
    """The dialog a 2xx to one of our INVITEs creates, from the response alone: our From, the
    peer's To, its Contact as the target, its Record-Route reversed (RFC 3261 12.1.2).

    Raises :class:`SipParseError` unless the 2xx is one we could have asked for: its topmost
    Via is ours (a sent-by in ``sent_by``, an RFC 3261 branch; 18.1.2 discards anything else),
    its To carries a tag and it names a Contact."""
    via = response.top_via
    if via.sent_by not in sent_by or not (via.branch or "").startswith(BRANCH_MAGIC_COOKIE):
        raise SipParseError("a 2xx whose top Via is not ours")
    if response.to.tag is None:
        raise SipParseError("a 2xx without To tag")
    contacts = response.contacts
    if not contacts:
        raise SipParseError("a 2xx without Contact")
    return Dialog(
        response.call_id,
        response.from_.tag or "",
        response.to.tag,
        response.from_,
        response.to,
        contacts[0].uri,
        list(reversed(response.record_routes)),
        response.cseq.seq,
        None,
        DialogState.CONFIRMED,
    )


def orphan_key(response: SipResponse) -> OrphanKey:
    """What identifies a 2xx and its retransmissions."""
    return (response.call_id, response.to.tag or "", response.cseq.seq)


@dataclass(slots=True)
class OrphanAnswers:
    """The ACK sent for each orphan 2xx, kept ``keep_s`` (a 2xx is retransmitted for 64*T1)
    and at most ``cap`` of them: past that, a flood of forged 2xx gets nothing from us."""

    keep_s: float = 32.0
    cap: int = 512
    _acks: OrderedDict[OrphanKey, tuple[float, bytes, Addr]] = field(default_factory=OrderedDict)

    def ack_of(self, key: OrphanKey, now: float) -> tuple[bytes, Addr] | None:
        """The ACK already sent for ``key`` (a retransmitted 2xx), or ``None``."""
        self._expire(now)
        kept = self._acks.get(key)
        return None if kept is None else (kept[1], kept[2])

    def full(self, now: float) -> bool:
        """Whether no more orphans may be taken now."""
        self._expire(now)
        return len(self._acks) >= self.cap

    def remember(self, key: OrphanKey, ack: bytes, dest: Addr, now: float) -> None:
        """Keep the ACK sent for ``key`` until ``now + keep_s``."""
        self._acks[key] = (now + self.keep_s, ack, dest)

    def __len__(self) -> int:
        return len(self._acks)

    def _expire(self, now: float) -> None:
        while self._acks:
            key, (until, _, _) = next(iter(self._acks.items()))
            if until > now:
                return
            del self._acks[key]
