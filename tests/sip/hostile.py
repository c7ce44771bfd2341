"""Hand-made hostile SIP requests for the hardening tests (sans-I/O and live)."""

from __future__ import annotations

from dtmfgraph.sip import IncomingCall, UserAgent, parse_message
from dtmfgraph.sip.message import SipResponse

FAR = ("127.0.0.1", 5070)


def sdp(
    address: str = "127.0.0.1",
    *,
    port: int = 40000,
    formats: str = "0 101",
    attributes: str = "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n",
) -> str:
    """An audio offer; every piece can be replaced with something hostile."""
    return (
        "v=0\r\n"
        "o=- 1 1 IN IP4 127.0.0.1\r\n"
        "s=-\r\n"
        f"c=IN IP4 {address}\r\n"
        "t=0 0\r\n"
        f"m=audio {port} RTP/AVP {formats}\r\n"
        f"{attributes}"
    )


def invite(
    body: str,
    *,
    target: tuple[str, int] = ("127.0.0.1", 5060),
    via_port: int = FAR[1],
    call_id: str = "hostile-1",
    headers: str = "",
    transport: str = "UDP",
) -> bytes:
    """An INVITE to ``target`` carrying ``body`` as SDP, with extra raw ``headers`` lines."""
    data = body.encode("utf-8", "surrogateescape")
    return (
        f"INVITE sip:bot@{target[0]}:{target[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:{via_port};branch=z9hG4bK{call_id};rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@127.0.0.1>;tag=a1\r\n"
        f"To: <sip:bot@{target[0]}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:alice@127.0.0.1:{via_port}>\r\n"
        f"{headers}"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode() + data


def exchange(ua: UserAgent, data: bytes, now: float = 1000.0) -> list[SipResponse]:
    """Feed ``data`` to ``ua`` from :data:`FAR`; the responses it sends back."""
    ua.receive_datagram(data, FAR, now)
    out = []
    for raw, _ in ua.datagrams_to_send(now):
        message = parse_message(raw)
        if isinstance(message, SipResponse):
            out.append(message)
    return out


def incoming(ua: UserAgent) -> list[IncomingCall]:
    """The IncomingCall events ``ua`` has raised so far (and drains the rest)."""
    calls = []
    while (event := ua.next_event()) is not None:
        if isinstance(event, IncomingCall):
            calls.append(event)
    return calls
