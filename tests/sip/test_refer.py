"""REFER/NOTIFY helpers (sans-I/O): Refer-To with Replaces, sipfrag, how a NOTIFY is judged."""

from __future__ import annotations

import pytest

from dtmfgraph.sip import IncomingCall
from dtmfgraph.sip.message import SipRequest, parse_message
from dtmfgraph.sip.refer import (
    ReferError,
    Replaces,
    parse_refer_to,
    parse_replaces,
    parse_sipfrag,
    read_notify,
    refer_headers,
    sipfrag,
)

from .test_call_flows import connect, setup


def _notify(
    event: str, state: str, body: bytes, ctype: str = "message/sipfrag;version=2.0"
) -> SipRequest:
    head = (
        "NOTIFY sip:a@127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n"
        "From: <sip:b@127.0.0.1>;tag=b\r\nTo: <sip:a@127.0.0.1>;tag=a\r\n"
        "Call-ID: c1\r\nCSeq: 1 NOTIFY\r\n"
        f"Event: {event}\r\nSubscription-State: {state}\r\n"
        f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    message = parse_message(head.encode() + body)
    assert isinstance(message, SipRequest)
    return message


def test_refer_headers_blind_and_with_replaces() -> None:
    assert refer_headers("sip:+1425@trunk.example", "sip:bot@10.0.0.1") == (
        ("Refer-To", "<sip:+1425@trunk.example>"),
        ("Referred-By", "<sip:bot@10.0.0.1>"),
    )
    replaces = Replaces("abc@host", to_tag="t1", from_tag="f1")
    [(_, refer_to), _] = refer_headers("sip:carol@h", "sip:bot@h", replaces)
    assert refer_to == "<sip:carol@h?Replaces=abc%40host%3Bto-tag%3Dt1%3Bfrom-tag%3Df1>"


@pytest.mark.parametrize(
    ("body", "want"),
    [
        (b"SIP/2.0 200 OK\r\n", (200, "OK")),
        (b"SIP/2.0 180 Ringing", (180, "Ringing")),
        (b"sip/2.0 486 Busy Here\r\nVia: x\r\n", (486, "Busy Here")),
        (b"SIP/2.0 100", (100, "")),
    ],
)
def test_sipfrag_status_lines(body: bytes, want: tuple[int, str]) -> None:
    assert parse_sipfrag(body) == want


@pytest.mark.parametrize("body", [b"", b"INVITE sip:x SIP/2.0", b"SIP/2.0 abc", b"SIP/2.0 99 X"])
def test_bad_sipfrag(body: bytes) -> None:
    with pytest.raises(ReferError):
        parse_sipfrag(body)


def test_sipfrag_round_trip() -> None:
    assert parse_sipfrag(sipfrag(503, "Service Unavailable")) == (503, "Service Unavailable")


def test_notify_verdicts() -> None:
    v = read_notify(_notify("refer", "active;expires=60", b"SIP/2.0 180 Ringing\r\n"))
    assert (v.status, v.progress) == (200, (180, "Ringing", False))
    v = read_notify(_notify("refer;id=93809824", "terminated;reason=noresource", b"SIP/2.0 200 OK"))
    assert (v.status, v.progress) == (200, (200, "OK", True))
    assert read_notify(_notify("presence", "active", b"x")).status == 489
    assert read_notify(_notify("refer", "active", b"SIP/2.0 200 OK", "text/plain")).status == 415
    assert read_notify(_notify("refer", "active", b"garbage")).status == 400
    empty = read_notify(_notify("refer", "active", b""))
    assert (empty.status, empty.progress) == (200, None)


@pytest.mark.parametrize(
    ("value", "target", "replaces"),
    [
        ("<sip:agent@10.0.0.5:5070>", "sip:agent@10.0.0.5:5070", None),
        ("sip:agent@h;method=INVITE", "sip:agent@h", None),
        (
            "<sip:carol@h?Replaces=abc%40h%3Bto-tag%3Dt1%3Bfrom-tag%3Df1>",
            "sip:carol@h",
            Replaces("abc@h", "t1", "f1"),
        ),
    ],
)
def test_refer_to_values(value: str, target: str, replaces: Replaces | None) -> None:
    assert parse_refer_to(value) == (target, replaces)


@pytest.mark.parametrize(
    "value", ["<tel:+1425>", "<sip:carol@h", "<sip:c@h?Replaces=abc%3Bto-tag%3Dt1>", "mailto:x"]
)
def test_bad_refer_to(value: str) -> None:
    with pytest.raises(ReferError):
        parse_refer_to(value)


def test_replaces_header_values() -> None:
    """RFC 3891 Replaces: Call-ID and both tags in any order, other parameters ignored; a
    missing part is an error (the INVITE is answered 400)."""
    want = Replaces("abc@host", to_tag="t1", from_tag="f1")
    assert parse_replaces("abc@host;to-tag=t1;from-tag=f1") == want
    assert parse_replaces(" abc@host ; from-tag=f1;early-only; to-tag=t1") == want
    for bad in ("abc@host;to-tag=t1", ";to-tag=t1;from-tag=f1", "abc;to-tag=;from-tag=f1"):
        with pytest.raises(ReferError):
            parse_replaces(bad)


def test_invite_with_replaces_names_our_dialog_or_gets_481() -> None:
    """An INVITE whose Replaces names a confirmed dialog of ours (to-tag ours, from-tag the
    far end's) is an ``IncomingCall`` whose ``replaces`` is that call, even with
    ``Require: replaces``; tags swapped or an unknown Call-ID: 481; a malformed one: 400."""
    net, a, b = setup()
    _call, held = connect(net, a, b)
    assert held.dialog is not None
    dialog = held.dialog
    invite = net.log[0].message
    assert isinstance(invite, SipRequest)

    def replacing(n: int, value: str) -> bytes:
        new = SipRequest("INVITE", invite.uri, invite.headers.copy(), invite.body)
        new.headers.set("Via", f"SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKrepl{n}")
        new.headers.set("Call-ID", f"replacing-{n}")
        new.headers.set("From", f"<sip:carol@127.0.0.1:5080>;tag=c{n}")
        new.headers.set("Replaces", value)
        new.headers.set("Require", "replaces")
        return bytes(new)

    ours = f"{dialog.call_id};to-tag={dialog.local_tag};from-tag={dialog.remote_tag}"
    swapped = f"{dialog.call_id};to-tag={dialog.remote_tag};from-tag={dialog.local_tag}"
    cases = [(swapped, b"SIP/2.0 481 "), ("nope;to-tag=x;from-tag=y", b"SIP/2.0 481 ")]
    cases.append(("just-a-call-id", b"SIP/2.0 400 Bad Replaces"))
    for n, (value, want) in enumerate(cases):
        b.receive_datagram(replacing(n, value), ("127.0.0.1", 5080), net.now)
        [(data, _)] = b.datagrams_to_send(net.now)
        assert data.startswith(want), data[:60]
    b.receive_datagram(replacing(9, ours), ("127.0.0.1", 5080), net.now)
    [(data, _)] = b.datagrams_to_send(net.now)
    assert data.startswith(b"SIP/2.0 100 ")
    [event] = [e for e in iter(b.next_event, None) if isinstance(e, IncomingCall)]
    assert event.replaces is held and event.call.call_id == "replacing-9"
