"""Dialogs (RFC 3261 12): identifiers, route set, CSeq spaces, and in-dialog request building."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dtmfgraph.sip.errors import SipParseError
from dtmfgraph.sip.headers import CSeq, Headers, Via
from dtmfgraph.sip.message import SipRequest, SipResponse
from dtmfgraph.sip.uri import NameAddr, SipUri, Uri, parse_uri


class DialogState(enum.StrEnum):
    """RFC 3261 12 dialog states."""

    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


DialogId = tuple[str, str, str]
"""``(Call-ID, local tag, remote tag)``."""


@dataclass(slots=True)
class Dialog:
    """One dialog's state as seen by our side."""

    call_id: str
    local_tag: str
    remote_tag: str
    local: NameAddr
    """Our From (as UAC) or To (as UAS) value, with our tag."""
    remote: NameAddr
    """The peer's address-of-record with its tag."""
    remote_target: Uri
    """The peer's Contact URI: the Request-URI of in-dialog requests."""
    route_set: list[NameAddr] = field(default_factory=list)
    local_seq: int = 0
    remote_seq: int | None = None
    state: DialogState = DialogState.EARLY

    @property
    def id(self) -> DialogId:
        """The dialog identifier."""
        return (self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def as_uac(cls, request: SipRequest, response: SipResponse) -> Dialog:
        """The dialog a 1xx-with-tag or 2xx creates for the INVITE we sent (RFC 3261 12.1.2)."""
        remote = response.to
        if remote.tag is None:
            raise SipParseError("dialog-creating response without To tag")
        local = request.from_
        contacts = response.contacts
        target = contacts[0].uri if contacts else request.uri
        routes = list(reversed(response.record_routes))
        state = DialogState.CONFIRMED if 200 <= response.status < 300 else DialogState.EARLY
        return cls(
            request.call_id,
            local.tag or "",
            remote.tag,
            local,
            remote,
            target,
            routes,
            request.cseq.seq,
            None,
            state,
        )

    @classmethod
    def as_uas(cls, request: SipRequest, local_tag: str) -> Dialog:
        """The dialog our response to ``request`` creates (RFC 3261 12.1.1)."""
        contacts = request.contacts
        if not contacts:
            raise SipParseError("dialog-creating request without Contact")
        return cls(
            request.call_id,
            local_tag,
            request.from_.tag or "",
            request.to.with_tag(local_tag),
            request.from_,
            contacts[0].uri,
            list(request.record_routes),
            0,
            request.cseq.seq,
            DialogState.EARLY,
        )

    def to_record(self) -> dict[str, Any]:
        """The dialog as JSON-safe data (strings, ints), enough to send requests in it later,
        from another process: :meth:`from_record` reads it back, confirmed."""
        return {
            "call_id": self.call_id,
            "local_tag": self.local_tag,
            "remote_tag": self.remote_tag,
            "local": str(self.local),
            "remote": str(self.remote),
            "remote_target": str(self.remote_target),
            "route_set": [str(route) for route in self.route_set],
            "local_seq": self.local_seq,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any], *, seq_gap: int = 0) -> Dialog:
        """A confirmed dialog from :meth:`to_record` data; the local CSeq moves ``seq_gap``
        ahead (requests sent after the record was taken used some). Raises ``SipParseError``
        for data that is not such a record."""
        try:
            return cls(
                str(record["call_id"]),
                str(record["local_tag"]),
                str(record["remote_tag"]),
                NameAddr.parse(str(record["local"])),
                NameAddr.parse(str(record["remote"])),
                parse_uri(str(record["remote_target"])),
                [NameAddr.parse(str(route)) for route in record["route_set"]],
                int(record["local_seq"]) + seq_gap,
                None,
                DialogState.CONFIRMED,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SipParseError(f"not a dialog record: {exc!r}") from exc

    def update_from_response(self, response: SipResponse) -> None:
        """Confirm an early dialog with a 2xx; take its route set and target (12.1.2)."""
        contacts = response.contacts
        if contacts:
            self.remote_target = contacts[0].uri
        if self.state is DialogState.EARLY:
            self.route_set = list(reversed(response.record_routes))
        if 200 <= response.status < 300:
            self.state = DialogState.CONFIRMED

    def request(
        self,
        method: str,
        via: Via,
        contact: NameAddr,
        *,
        seq: int | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        max_forwards: int = 70,
    ) -> SipRequest:
        """An in-dialog request (RFC 3261 12.2.1.1). Without ``seq`` the local CSeq advances."""
        if seq is None:
            self.local_seq += 1
            seq = self.local_seq
        uri, routes = self.request_uri_and_routes()
        headers = Headers()
        headers.add("Via", str(via))
        headers.add("Max-Forwards", str(max_forwards))
        for route in routes:
            headers.add("Route", str(route))
        headers.add("From", str(self.local))
        headers.add("To", str(self.remote))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", str(CSeq(seq, method)))
        if method not in ("ACK", "CANCEL", "BYE"):
            headers.add("Contact", str(contact))
        if content_type is not None:
            headers.add("Content-Type", content_type)
        return SipRequest(method, uri, headers, body)

    def request_uri_and_routes(self) -> tuple[Uri, list[NameAddr]]:
        """Request-URI and Route values under loose or strict routing."""
        if not self.route_set:
            return self.remote_target, []
        first = self.route_set[0]
        if isinstance(first.uri, SipUri) and first.uri.loose_route:
            return self.remote_target, list(self.route_set)
        # Strict router: it takes the Request-URI; the remote target goes last in Route.
        uri = first.uri.without_params() if isinstance(first.uri, SipUri) else first.uri
        return uri, [*self.route_set[1:], NameAddr(self.remote_target)]

    def next_hop(self) -> tuple[str, int]:
        """Where in-dialog requests go: the first route, else the remote target."""
        target = self.route_set[0].uri if self.route_set else self.remote_target
        if not isinstance(target, SipUri):
            raise SipParseError(f"cannot route to non-SIP URI {target}", status=416)
        return target.address

    def accept_remote_seq(self, seq: int) -> bool:
        """Record an in-dialog request's CSeq; ``False`` when it is lower than the last one."""
        if self.remote_seq is not None and seq < self.remote_seq:
            return False
        self.remote_seq = seq
        return True
