"""Message codec: torture-style requests (after RFC 4475), compact forms, folding, lists."""

from __future__ import annotations

import pytest

from dtmfgraph.sip import SipParseError, SipRequest, SipResponse, parse_message
from dtmfgraph.sip.headers import CSeq, Headers, Via
from dtmfgraph.sip.uri import AbsoluteUri, NameAddr, SipUri, parse_uri


def msg(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


INVITE = msg(
    """INVITE sip:bob@example.com SIP/2.0
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport
Max-Forwards: 70
To: Bob <sip:bob@example.com>
From: "Alice A." <sip:alice@example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.example.com
CSeq: 314159 INVITE
Contact: <sip:alice@192.0.2.1>
Content-Type: application/sdp
Content-Length: 4

v=0
"""
)


def test_parse_basic_request() -> None:
    m = parse_message(INVITE)
    assert isinstance(m, SipRequest)
    assert m.method == "INVITE"
    assert str(m.uri) == "sip:bob@example.com"
    assert m.top_via.branch == "z9hG4bK776asdhds"
    assert m.top_via.sent_by == ("192.0.2.1", 5060)
    assert "rport" in m.top_via.params and m.top_via.params["rport"] is None
    assert m.from_.display_name == "Alice A."
    assert m.from_.tag == "1928301774"
    assert m.to.tag is None
    assert m.cseq == CSeq(314159, "INVITE")
    assert m.call_id == "a84b4c76e66710@pc33.example.com"
    assert m.body == b"v=0\r"  # Content-Length: 4 cuts the body
    assert m.content_type == "application/sdp"


def test_round_trip_recomputes_content_length() -> None:
    m = parse_message(INVITE)
    m.body = b"hello world"
    again = parse_message(bytes(m))
    assert again.body == b"hello world"
    assert again.headers.get("Content-Length") == "11"
    assert bytes(again) == bytes(m)


def test_compact_forms_and_case_insensitive_names() -> None:
    data = msg(
        """OPTIONS sip:user@192.0.2.5 SIP/2.0
v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa
f: <sip:a@x>;tag=1
t: sip:user@192.0.2.5
i: cid-1
cSeQ: 8 OPTIONS
m: <sip:a@192.0.2.1>
k: timer, 100rel
l: 0
c: text/plain
s: hi

"""
    )
    m = parse_message(data)
    assert m.headers.get("via") == "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa"
    assert m.headers.get("CALL-ID") == "cid-1"
    assert m.headers.get("Supported") == "timer, 100rel"
    assert m.headers.get_list("k") == ["timer", "100rel"]
    assert m.content_type == "text/plain"
    assert m.headers.get("Subject") == "hi"
    assert m.cseq.seq == 8
    assert m.top_via.sent_by == ("192.0.2.1", 5060)
    # serialized with the long, canonical names
    text = bytes(m).decode()
    assert "\r\nCall-ID: cid-1\r\n" in text and "\r\nCSeq: 8 OPTIONS\r\n" in text
    assert "\r\nContact: <sip:a@192.0.2.1>\r\n" in text


def test_line_folding_is_unfolded() -> None:
    data = msg(
        """INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0
TO :
 sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n
from   : "J Rosenberg \\\\\\"" <sip:jdrosen@example.com>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: wsinv.ndaksdj@192.0.2.1
Content-Length   : 0
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    192.0.2.2;branch=390skdjuw
s :
NewFangledHeader:   newfangled value
 continued newfangled value
v:  SIP  / 2.0  / UDP  192.0.2.1;branch=z9hG4bKhjhs8ass877

"""
    )
    m = parse_message(data)
    assert isinstance(m, SipRequest)
    assert m.to.tag == "1918181833n"
    assert m.from_.tag == "98asjd8"
    assert m.from_.display_name == 'J Rosenberg \\"'
    assert m.cseq == CSeq(9, "INVITE")
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    vias = m.vias
    assert [v.branch for v in vias] == ["390skdjuw", "z9hG4bKhjhs8ass877"]
    assert vias[0].host == "192.0.2.2" and vias[0].transport == "UDP"
    assert m.headers.get("Max-Forwards") == "0068"
    assert m.uri == parse_uri("sip:vivekg@chair-dnrc.example.com;unknownparam")


def test_multiple_values_comma_and_repeated() -> None:
    data = msg(
        """BYE sip:a@192.0.2.1 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1, SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bK2
Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK3
Route: <sip:p1.example.com;lr>, "Proxy, Two" <sip:p2.example.com;lr>
Route: <sip:p3.example.com;lr>
From: <sip:b@x>;tag=2
To: <sip:a@y>;tag=1
Call-ID: c
CSeq: 2 BYE
Content-Length: 0

"""
    )
    m = parse_message(data)
    assert [v.branch for v in m.vias] == ["z9hG4bK1", "z9hG4bK2", "z9hG4bK3"]
    assert m.vias[1].host == "2001:db8::9" and m.vias[1].port == 5070
    assert str(m.vias[1]) == "SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bK2"
    routes = m.routes
    assert [r.sip_uri.host for r in routes] == [
        "p1.example.com",
        "p2.example.com",
        "p3.example.com",
    ]
    assert routes[1].display_name == "Proxy, Two"
    assert all(r.sip_uri.loose_route for r in routes)


def test_response_parse() -> None:
    data = msg(
        """SIP/2.0 486 Busy Here
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx
From: <sip:a@x>;tag=1
To: <sip:b@y>;tag=2
Call-ID: c
CSeq: 1 INVITE
Content-Length: 0

"""
    )
    m = parse_message(data)
    assert isinstance(m, SipResponse)
    assert (m.status, m.reason) == (486, "Busy Here")
    assert bytes(m).startswith(b"SIP/2.0 486 Busy Here\r\n")


def test_no_content_length_body_runs_to_end_of_datagram() -> None:
    data = INVITE.replace(b"Content-Length: 4\r\n", b"")
    assert parse_message(data).body == b"v=0\r\n"


def test_escaped_and_ipv6_uris() -> None:
    uri = SipUri.parse("sip:%61lice:secret@[2001:db8::10]:5070;transport=udp;lr?subject=x")
    assert uri.user == "%61lice" and uri.password == "secret"
    assert uri.host == "2001:db8::10" and uri.port == 5070
    assert uri.params == {"transport": "udp", "lr": None}
    assert uri.headers == "subject=x"
    assert str(uri) == "sip:%61lice:secret@[2001:db8::10]:5070;transport=udp;lr?subject=x"
    assert uri.address == ("2001:db8::10", 5070)
    assert SipUri.parse("sips:b@example.com").address == ("example.com", 5061)
    assert parse_uri("tel:+1-201-555-0123") == AbsoluteUri("tel", "+1-201-555-0123")
    with pytest.raises(SipParseError) as info:
        SipUri.parse("tel:+1234")
    assert info.value.status == 416


def test_name_addr_forms() -> None:
    a = NameAddr.parse('"Bob \\"B\\" Smith" <sip:bob@example.com;transport=udp>;tag=abc;x')
    assert a.display_name == 'Bob "B" Smith'
    assert isinstance(a.uri, SipUri) and a.uri.params == {"transport": "udp"}
    assert a.params == {"tag": "abc", "x": None}
    b = NameAddr.parse("sip:bob@example.com;tag=abc")  # addr-spec: params belong to the header
    assert b.tag == "abc" and b.sip_uri.params == {}
    c = NameAddr.parse("Bob  Smith <sip:bob@example.com>")
    assert c.display_name == "Bob Smith"
    assert str(a.with_tag("z")) == '"Bob \\"B\\" Smith" <sip:bob@example.com;transport=udp>;tag=z;x'


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"", 400),
        (b"INVITE sip:a@b SIP/2.0\r\n\r\n", 400),  # no mandatory headers
        (INVITE.replace(b"Content-Length: 4", b"Content-Length: 400"), 400),  # truncated body
        (INVITE.replace(b"Content-Length: 4", b"Content-Length: four"), 400),
        (INVITE.replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1), 505),
        (INVITE.replace(b"INVITE sip:bob", b"INVITE  sip:bob"), 400),  # extra space
        (INVITE.replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE"), 400),
        (INVITE.replace(b"CSeq: 314159 INVITE", b"CSeq: 99999999999 INVITE"), 400),
        (INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards: 300"), 400),
        (INVITE.replace(b"To: Bob <sip:bob@example.com>", b"To: Bob <sip:bob@example.com"), 400),
        (INVITE.replace(b"192.0.2.1:5060", b"192.0.2.1:99999"), 400),
        (INVITE.replace(b"From: ", b"From: \xff"), 400),
        (INVITE.replace(b"sip:bob@example.com SIP", b"sip:bob@exa mple.com SIP"), 400),
        (b"SIP/2.0 99 Odd\r\n\r\n", 400),
        (INVITE.replace(b"Call-ID: a84b4c76e66710@pc33.example.com\r\n", b""), 400),
    ],
)
def test_malformed_messages_raise_sip_parse_error(data: bytes, status: int) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.status == status


def test_parse_error_keeps_what_was_read_for_a_400() -> None:
    bad = INVITE.replace(b"CSeq: 314159 INVITE", b"CSeq: x INVITE")
    with pytest.raises(SipParseError) as info:
        parse_message(bad)
    assert isinstance(info.value.message, SipRequest)
    assert info.value.message.headers.get("Call-ID") == "a84b4c76e66710@pc33.example.com"


def test_headers_container() -> None:
    h = Headers([("v", "SIP/2.0/UDP a;branch=z9hG4bK1"), ("Via", "SIP/2.0/UDP b;branch=z9hG4bK2")])
    h.add("X-Custom", "1")
    h.set("x-custom", "2")
    assert h.get_raw("VIA") == ["SIP/2.0/UDP a;branch=z9hG4bK1", "SIP/2.0/UDP b;branch=z9hG4bK2"]
    assert h.get("X-Custom") == "2" and len(h.get_raw("x-custom")) == 1
    h.remove("via")
    assert "Via" not in h
    with pytest.raises(SipParseError):
        h.add("Bad Name", "x")
    with pytest.raises(SipParseError):
        h.add("X", "a\r\nInjected: 1")


def test_via_with_whitespace_and_received() -> None:
    via = Via.parse(
        "SIP / 2.0 / udp 10.0.0.1:5062 ; branch=z9hG4bKq ; received=192.0.2.7 ; rport=5062"
    )
    assert via.transport == "UDP" and via.port == 5062
    assert via.params == {"branch": "z9hG4bKq", "received": "192.0.2.7", "rport": "5062"}
