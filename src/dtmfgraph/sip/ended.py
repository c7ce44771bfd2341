"""INVITEs of dialogs that are over: remembered so that a late copy cannot start a new call.

An INVITE's server transaction lives 64*T1 after its 2xx (RFC 6026 Timer L) and the call is
forgotten 64*T1 after it ends. A retransmission of that INVITE arriving later (a peer that
keeps retransmitting past its Timer B, a datagram held in a queue under load) matches nothing
any more and, having no To tag, would start a new incoming call with the old Call-ID: if it
were answered, the far end (whose call is over) sends no RTP and no BYE, and the call ends
only by media timeout. :class:`EndedDialogs` keeps the Call-ID, From tag and highest CSeq of
each dialog we answered or refused, for :data:`KEEP_S`, at most :data:`CAP` of them; the user
agent answers such an INVITE 481 Call/Transaction Does Not Exist (no dialog or transaction
of ours matches it any more, RFC 3261 21.4.19; 482 is for a copy that meets the *ongoing*
transaction it merges with, 8.2.2.2).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

KEEP_S: Final = 300.0
"""How long an ended dialog is remembered (from its end): five minutes, well past a
compliant peer's last retransmission (Timer B, 64*T1 = 32 s from its INVITE)."""
CAP: Final = 16384
"""At most this many are remembered (the oldest go first): ~80 s of a 200 calls/s flood,
a few MB."""

EndedKey = tuple[str, str]
"""``(Call-ID, the far end's From tag)``."""


@dataclass(slots=True)
class EndedDialogs:
    """The dialogs a peer started with us that are over, by Call-ID and From tag."""

    keep_s: float = KEEP_S
    cap: int = CAP
    _ended: OrderedDict[EndedKey, tuple[float, int, bool]] = field(default_factory=OrderedDict)

    def remember(self, call_id: str, from_tag: str, seq: int, confirmed: bool, now: float) -> None:
        """The dialog ``(call_id, from_tag)`` ended at ``now``; ``seq`` is the highest CSeq
        the far end used in it, ``confirmed`` whether it was answered (2xx)."""
        if self.cap < 1:
            return
        key = (call_id, from_tag)
        self._ended.pop(key, None)
        self._ended[key] = (now + self.keep_s, seq, confirmed)
        while len(self._ended) > self.cap:
            self._ended.popitem(last=False)

    def refuses(self, call_id: str, from_tag: str, seq: int, now: float) -> bool:
        """Whether a new INVITE (no To tag) belongs to an ended dialog: any of an answered one,
        or one of a refused one no newer than its INVITE. A refused INVITE tried again with a
        higher CSeq (RFC 3261 8.1.3.5, e.g. with credentials) is a new request: not refused."""
        self._expire(now)
        kept = self._ended.get((call_id, from_tag))
        if kept is None:
            return False
        _, highest, confirmed = kept
        return confirmed or seq <= highest

    def __len__(self) -> int:
        return len(self._ended)

    def _expire(self, now: float) -> None:
        while self._ended:
            key, (until, _, _) = next(iter(self._ended.items()))
            if until > now:
                return
            del self._ended[key]
