"""Two user agents talking over a simulated network: calls, timers, CANCEL, auth, routing."""

from __future__ import annotations

import json
import random

import pytest

from dtmfgraph.sip import (
    CallEnded,
    CallEstablished,
    CallFailed,
    CallRinging,
    CallState,
    Credentials,
    DialogState,
    Direction,
    IncomingCall,
    InfoDtmf,
    ReInvite,
    RequestCompleted,
    RequestFailed,
    SipParseError,
    SipRequest,
    SipResponse,
    SipStateError,
    SipTimers,
    UserAgent,
    audio_media,
    build_answer,
    build_offer,
    parse_message,
)
from dtmfgraph.sip.agent import RESTORE_SEQ_GAP
from dtmfgraph.sip.call import Call
from dtmfgraph.sip.message import response_to

from .harness import Network

A = ("127.0.0.1", 5060)
B = ("127.0.0.1", 5070)


def setup() -> tuple[Network, UserAgent, UserAgent]:
    net = Network()
    return net, net.add(*A, "alice", seed=1), net.add(*B, "bob", seed=2)


def dial(net: Network, a: UserAgent, b: UserAgent, **kw: object) -> tuple[Call, Call]:
    call = a.invite(
        "sip:bob@127.0.0.1:5070", build_offer("127.0.0.1", 40000, session_id="1"), net.now, **kw
    )  # type: ignore[arg-type]
    net.flush()
    incoming = [e for e in net.take(b) if isinstance(e, IncomingCall)]
    assert len(incoming) == 1
    return call, incoming[0].call


def connect(net: Network, a: UserAgent, b: UserAgent) -> tuple[Call, Call]:
    call, inc = dial(net, a, b)
    b.ringing(inc, net.now)
    assert inc.remote_sdp is not None
    b.answer(inc, build_answer(inc.remote_sdp, "127.0.0.1", 41000, session_id="2"), net.now)
    net.flush()
    net.take(a)
    net.take(b)
    return call, inc


def test_full_call_flow_on_the_wire() -> None:
    net, a, b = setup()
    call, inc = dial(net, a, b)
    assert net.lines() == ["INVITE sip:bob@127.0.0.1:5070 SIP/2.0", "SIP/2.0 100 Trying"]
    invite = net.log[0].message
    assert isinstance(invite, SipRequest)
    assert invite.top_via.branch and invite.top_via.branch.startswith("z9hG4bK")
    assert "rport" in invite.top_via.params
    assert invite.from_.tag and invite.to.tag is None
    assert invite.headers.get("Max-Forwards") == "70"
    assert invite.contacts[0].sip_uri.address == A
    assert net.log[1].message.to.tag is None  # 100 Trying carries no tag
    assert inc.state is CallState.INCOMING and inc.dialog_state is DialogState.EARLY

    b.ringing(inc, net.now)
    net.flush()
    ringing = net.log[2].message
    assert isinstance(ringing, SipResponse) and ringing.status == 180
    assert ringing.to.tag == inc.dialog.local_tag  # type: ignore[union-attr]
    events = net.take(a)
    assert isinstance(events[0], CallRinging) and events[0].status == 180
    assert call.state is CallState.PROCEEDING and call.dialog_state is DialogState.EARLY

    assert inc.remote_sdp is not None
    b.answer(inc, build_answer(inc.remote_sdp, "127.0.0.1", 41000, session_id="2"), net.now)
    net.flush()
    assert net.lines(since=3) == ["SIP/2.0 200 OK", "ACK sip:bob@127.0.0.1:5070 SIP/2.0"]
    ack = net.log[4].message
    assert isinstance(ack, SipRequest)
    assert ack.top_via.branch != invite.top_via.branch  # 2xx ACK is a new transaction
    assert ack.cseq.seq == invite.cseq.seq and ack.cseq.method == "ACK"
    [established] = net.take(a)
    assert isinstance(established, CallEstablished)
    media = audio_media(established.sdp)  # type: ignore[arg-type]
    assert media is not None and (media.port, media.telephone_event_pt) == (41000, 101)
    assert call.media == media
    [b_established] = net.take(b)
    assert isinstance(b_established, CallEstablished)
    assert call.state is inc.state is CallState.ESTABLISHED
    assert call.dialog_state is inc.dialog_state is DialogState.CONFIRMED

    request_id = a.send_info_dtmf(call, "5", 160, net.now)
    net.flush()
    info = net.log[5].message
    assert isinstance(info, SipRequest)
    assert info.cseq.seq == invite.cseq.seq + 1
    assert info.content_type == "application/dtmf-relay"
    assert info.body == b"Signal=5\r\nDuration=160\r\n"
    [dtmf] = net.take(b)
    assert isinstance(dtmf, InfoDtmf) and (dtmf.key, dtmf.duration_ms) == ("5", 160)
    [done] = net.take(a)
    assert isinstance(done, RequestCompleted) and done.request_id == request_id

    b.bye(inc, net.now)  # the callee hangs up: BYE flows the other way
    net.flush()
    bye = net.log[7].message
    assert isinstance(bye, SipRequest) and bye.method == "BYE"
    assert bye.cseq.seq == 1  # the callee's own CSeq space
    assert bye.from_.tag == inc.dialog.local_tag  # type: ignore[union-attr]
    [ended_a] = net.take(a)
    [ended_b] = net.take(b)
    assert isinstance(ended_a, CallEnded) and ended_a.by_remote
    assert isinstance(ended_b, CallEnded) and not ended_b.by_remote
    assert call.is_over and inc.is_over
    assert a.counters.retransmissions_sent == b.counters.retransmissions_sent == 0

    net.advance(64)  # everything lingering expires
    assert a.next_deadline() is None and b.next_deadline() is None
    assert a.calls == {} and b.calls == {}


def test_invite_retransmitted_at_t1_doubling_when_dropped() -> None:
    net, a, b = setup()
    net.drop = lambda s: s.first_line.startswith("INVITE") and net.now < 1003.0
    start = net.now
    a.invite("sip:bob@127.0.0.1:5070", None, net.now)
    net.advance(4.0)
    sent = [s.at - start for s in net.log if s.first_line.startswith("INVITE")]
    # Timer A: T1, then doubling: 0, 0.5, 1.5, 3.5 (the one at 3.5 gets through)
    assert sent == [0.0, 0.5, 1.5, 3.5]
    assert [s.dropped for s in net.log if s.first_line.startswith("INVITE")] == [True] * 3 + [False]
    assert a.counters.retransmissions_sent == 3
    assert any(isinstance(e, IncomingCall) for e in net.take(b))


def test_timer_b_timeout_after_64_t1() -> None:
    net, a, _b = setup()
    net.drop = lambda s: True
    start = net.now
    call = a.invite("sip:bob@127.0.0.1:5070", None, net.now)
    net.advance(40)
    sent = [round(s.at - start, 3) for s in net.log]
    assert sent == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    [failed] = net.take(a)
    assert isinstance(failed, CallFailed) and failed.timed_out and failed.status == 408
    assert failed.unanswered  # not a single response: another server may do better
    assert call.state is CallState.TERMINATED
    assert a.counters.timeouts == 1


def test_give_up_on_a_silent_server() -> None:
    """``give_up_s``: no response at all by then fails the call 408 ``unanswered`` (so that
    the phone tries the target's next server) and stops the retransmissions."""
    net, a, _b = setup()
    net.drop = lambda s: True
    start = net.now
    call = a.invite("sip:bob@127.0.0.1:5070", None, net.now, give_up_s=4.0)
    net.advance(4.0)
    [failed] = net.take(a)
    assert isinstance(failed, CallFailed) and (failed.status, failed.unanswered) == (408, True)
    assert failed.timed_out and failed.detail == "no response from 127.0.0.1:5070"
    assert call.is_over
    net.advance(60)
    assert [round(s.at - start, 3) for s in net.log] == [0, 0.5, 1.5, 3.5]
    assert net.take(a) == []


def test_give_up_is_off_once_the_server_answers() -> None:
    net, a, b = setup()
    call, inc = dial(net, a, b, give_up_s=1.0)
    b.ringing(inc, net.now)
    net.advance(5.0)
    assert [type(e) for e in net.take(a)] == [CallRinging]
    b.answer(inc, None, net.now)
    net.flush()
    assert call.state is CallState.ESTABLISHED


def test_a_server_that_answers_after_we_gave_up_is_acked_and_hung_up() -> None:
    net, a, b = setup()
    net.drop = lambda s: s.src == B and net.now < 1003.0  # bob's answers are lost at first
    call, inc = dial(net, a, b, give_up_s=2.0)
    b.ringing(inc, net.now)
    net.advance(2.5)
    [failed] = net.take(a)
    assert isinstance(failed, CallFailed) and failed.unanswered
    net.advance(1.0)
    b.answer(inc, None, net.now)  # the 200 gets through now
    net.flush()
    lines = net.lines(delivered_only=True)
    assert "ACK sip:bob@127.0.0.1:5070 SIP/2.0" in lines
    assert "BYE sip:bob@127.0.0.1:5070 SIP/2.0" in lines
    assert [type(e) for e in net.take(b)] == [CallEstablished, CallEnded]
    assert net.take(a) == [] and call.is_over


def test_timer_b_is_configurable() -> None:
    net = Network()
    a = net.add(*A, "alice", timers=SipTimers(timer_b=2.0))
    net.add(*B, "bob")
    net.drop = lambda s: True
    a.invite("sip:bob@127.0.0.1:5070", None, net.now)
    net.advance(2.01)
    [failed] = net.take(a)
    assert isinstance(failed, CallFailed) and failed.timed_out


def test_dial_timeout_cancels_a_ringing_call() -> None:
    net, a, b = setup()
    call, inc = dial(net, a, b, timeout=10.0)
    b.ringing(inc, net.now)
    net.advance(10.0)
    events = net.take(a)
    assert [type(e) for e in events] == [CallRinging, CallFailed]
    assert events[1].timed_out  # type: ignore[attr-defined]
    assert "CANCEL sip:bob@127.0.0.1:5070 SIP/2.0" in net.lines()
    assert "SIP/2.0 487 Request Terminated" in net.lines()
    assert call.is_over and inc.is_over
    [ended] = net.take(b)
    assert isinstance(ended, CallEnded) and ended.reason == "cancelled"


def test_2xx_retransmitted_until_ack() -> None:
    net, a, b = setup()
    _call, inc = dial(net, a, b)
    net.drop = lambda s: s.first_line.startswith("ACK") and net.now < 1002.0
    start = net.now
    assert inc.remote_sdp is not None
    b.answer(inc, build_answer(inc.remote_sdp, "127.0.0.1", 41000, session_id="2"), net.now)
    net.advance(5)
    oks = [round(s.at - start, 3) for s in net.log if s.first_line == "SIP/2.0 200 OK"]
    assert oks == [0, 0.5, 1.5, 3.5]  # T1, 2T1, 4T1 ... until an ACK gets through
    acks = [s for s in net.log if s.first_line.startswith("ACK")]
    assert len(acks) == 4 and len({s.data for s in acks}) == 1  # the same ACK each time
    assert inc.state is CallState.ESTABLISHED
    assert [type(e) for e in net.take(b)] == [CallEstablished]
    assert [type(e) for e in net.take(a)] == [CallEstablished]


def test_2xx_gives_up_without_ack_and_sends_bye() -> None:
    net, a, b = setup()
    _call, inc = dial(net, a, b)
    net.drop = lambda s: s.first_line.startswith("ACK")
    assert inc.remote_sdp is not None
    b.answer(inc, build_answer(inc.remote_sdp, "127.0.0.1", 41000, session_id="2"), net.now)
    net.advance(40)
    oks = [s for s in net.log if s.first_line == "SIP/2.0 200 OK" and s.src == B]
    assert len(oks) == 11  # 0, .5, 1.5, 3.5, 7.5, then every T2 = 4 s until 64*T1
    events = net.take(b)
    assert isinstance(events[-1], CallEnded) and events[-1].reason == "no ACK"


def test_non_invite_retransmission_caps_at_t2() -> None:
    net, a, b = setup()
    call, _ = connect(net, a, b)
    net.drop = lambda s: True
    start = net.now
    rid = a.send_info_dtmf(call, "1", 100, net.now)
    net.advance(40)
    sent = [round(s.at - start, 3) for s in net.log if s.first_line.startswith("INFO")]
    assert sent[:6] == [0, 0.5, 1.5, 3.5, 7.5, 11.5]  # E doubles to T2 then stays
    assert sent[-1] < 32
    [failed] = net.take(a)
    assert isinstance(failed, RequestFailed) and failed.request_id == rid and failed.timed_out


def test_non_2xx_final_is_retransmitted_until_ack_same_branch() -> None:
    net, a, b = setup()
    call, inc = dial(net, a, b)
    net.drop = lambda s: s.first_line.startswith("ACK") and net.now < 1001.0
    start = net.now
    b.reject(inc, 486, net.now)
    net.advance(5)
    busy = [round(s.at - start, 3) for s in net.log if s.first_line.startswith("SIP/2.0 486")]
    assert busy == [0, 0.5, 1.5]  # Timer G until the ACK arrives
    acks = [s.message for s in net.log if s.first_line.startswith("ACK")]
    invite = net.log[0].message
    assert all(ack.top_via.branch == invite.top_via.branch for ack in acks)  # hop-by-hop
    assert all(ack.to.tag == inc.dialog.local_tag for ack in acks)  # type: ignore[union-attr]
    [failed] = net.take(a)
    assert isinstance(failed, CallFailed) and (failed.status, failed.reason) == (486, "Busy Here")
    assert call.end_status == 486


def test_603_decline() -> None:
    net, a, b = setup()
    _call, inc = dial(net, a, b)
    b.reject(inc, 603, net.now)
    net.flush()
    [failed] = net.take(a)
    assert isinstance(failed, CallFailed) and (failed.status, failed.reason) == (603, "Decline")


def test_cancel_before_provisional_waits_for_one() -> None:
    net, a, b = setup()
    net.drop = lambda s: s.first_line == "SIP/2.0 100 Trying"
    call, inc = dial(net, a, b)
    a.cancel(call, net.now)
    net.flush()
    assert not any(line.startswith("CANCEL") for line in net.lines())
    net.drop = lambda s: False
    b.ringing(inc, net.now)
    net.flush()
    lines = net.lines()
    assert "CANCEL sip:bob@127.0.0.1:5070 SIP/2.0" in lines
    cancel = next(s.message for s in net.log if s.first_line.startswith("CANCEL"))
    invite = net.log[0].message
    assert cancel.top_via.branch == invite.top_via.branch
    assert cancel.cseq.seq == invite.cseq.seq and cancel.cseq.method == "CANCEL"
    assert "SIP/2.0 487 Request Terminated" in lines
    [failed] = net.take(a)  # no CallRinging after we cancelled
    assert isinstance(failed, CallFailed) and failed.status == 487
    assert isinstance(net.take(b)[-1], CallEnded)


def test_cancel_of_unknown_transaction_gets_481() -> None:
    net, a, b = setup()
    _call, _inc = connect(net, a, b)
    invite = net.log[0].message
    assert isinstance(invite, SipRequest)
    cancel = SipRequest("CANCEL", invite.uri, invite.headers.copy())
    cancel.headers.set("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKnothere")
    cancel.headers.set("CSeq", "1 CANCEL")
    cancel.body = b""
    cancel.headers.remove("Content-Type")
    b.receive_datagram(bytes(cancel), A, net.now)
    [(data, _)] = b.datagrams_to_send(net.now)
    assert data.startswith(b"SIP/2.0 481 ")


def test_cancel_after_final_answer_is_a_no_op() -> None:
    net, a, b = setup()
    call, _inc = connect(net, a, b)
    with pytest.raises(SipStateError):
        a.cancel(call, net.now)


def test_retransmitted_invite_gets_last_provisional_again() -> None:
    net, a, b = setup()
    _call, inc = dial(net, a, b)
    b.ringing(inc, net.now)
    net.flush()
    invite = net.log[0].data
    b.receive_datagram(invite, A, net.now)
    [(data, dst)] = b.datagrams_to_send(net.now)
    assert data.startswith(b"SIP/2.0 180 Ringing") and dst == A
    assert b.counters.retransmissions_received == 1
    assert net.take(b) == []  # no second IncomingCall


def auth_proxy_network(
    algorithm: str = "MD5", qop: str | None = "auth", always: bool = False
) -> tuple[Network, UserAgent, list[SipRequest]]:
    """alice behind a 'registrar' that challenges every INVITE without credentials."""
    net = Network()
    a = net.add(*A, "alice", seed=5)
    b = net.add(*B, "bob", seed=6)
    seen: list[SipRequest] = []
    original = b.receive_datagram

    def challenging_receive(data: bytes, addr: tuple[str, int], now: float) -> None:
        m = parse_message(data)
        if isinstance(m, SipRequest) and m.method == "INVITE":
            seen.append(m)
            if always or "Authorization" not in m.headers:
                resp = response_to(m, 401, to_tag="srv")
                qop_part = f', qop="{qop}"' if qop else ""
                resp.headers.add(
                    "WWW-Authenticate",
                    f'Digest realm="dtmf", nonce="n{len(seen)}", algorithm={algorithm}{qop_part}',
                )
                b._wire.send(bytes(resp), addr)
                return
        if isinstance(m, SipRequest) and m.method == "ACK" and m.to.tag == "srv":
            return
        original(data, addr, now)

    b.receive_datagram = challenging_receive  # type: ignore[method-assign]
    return net, a, seen


@pytest.mark.parametrize(
    ("algorithm", "qop"), [("MD5", "auth"), ("SHA-256", "auth"), ("MD5", None)]
)
def test_digest_auth_retry(algorithm: str, qop: str | None) -> None:
    net, a, seen = auth_proxy_network(algorithm, qop)
    call = a.invite("sip:bob@127.0.0.1:5070", None, net.now, auth=Credentials("alice", "pw"))
    net.flush()
    assert len(seen) == 2
    first, second = seen
    assert second.cseq.seq == first.cseq.seq + 1
    assert second.call_id == first.call_id and second.from_.tag == first.from_.tag
    assert second.top_via.branch != first.top_via.branch
    # the 401 was ACKed hop-by-hop on the first branch
    ack = next(s.message for s in net.log if s.first_line.startswith("ACK"))
    assert ack.top_via.branch == first.top_via.branch
    header = second.headers.get("Authorization") or ""
    from dtmfgraph.sip.digest import Challenge, digest_response, parse_auth_params

    params = parse_auth_params(header.removeprefix("Digest "))
    challenge = Challenge("dtmf", "n1", algorithm, (qop,) if qop else ())
    expected = digest_response(
        challenge,
        Credentials("alice", "pw"),
        "INVITE",
        "sip:bob@127.0.0.1:5070",
        cnonce=params.get("cnonce", ""),
        nonce_count=1,
    )
    assert params["response"] == expected and params["uri"] == "sip:bob@127.0.0.1:5070"
    assert params["username"] == "alice" and params["algorithm"] == algorithm
    assert ("qop" in params) is (qop is not None)
    assert call.state is CallState.PROCEEDING  # bob sent 100 Trying to the authorised INVITE


def test_second_challenge_fails_clearly() -> None:
    net, a, seen = auth_proxy_network(always=True)
    call = a.invite("sip:bob@127.0.0.1:5070", None, net.now, auth=Credentials("alice", "bad"))
    net.flush()
    assert len(seen) == 2  # credentials are tried once
    [failed] = net.take(a)
    assert isinstance(failed, CallFailed) and failed.status == 401
    assert "rejected" in failed.detail
    assert call.is_over


def test_challenge_without_credentials_fails() -> None:
    net, a, _seen = auth_proxy_network()
    a.invite("sip:bob@127.0.0.1:5070", None, net.now)
    net.flush()
    [failed] = net.take(a)
    assert (
        isinstance(failed, CallFailed)
        and failed.status == 401
        and "no credentials" in failed.detail
    )


def test_record_route_builds_route_set_and_loose_routes() -> None:
    net, a, b = setup()
    call, inc = dial(net, a, b)
    # Pretend two loose-routing proxies recorded the route on the way to bob.
    assert inc.invite is not None
    inc.invite.headers.add("Record-Route", "<sip:p2.example.net;lr>")
    inc.invite.headers.add("Record-Route", "<sip:127.0.0.1:5999;lr>")
    assert inc.dialog is not None
    inc.dialog.route_set = [*inc.invite.record_routes]
    b.answer(inc, None, net.now)
    ok = b.datagrams_to_send(net.now)[0][0]
    response = parse_message(ok)
    assert [str(r) for r in response.record_routes] == [
        "<sip:p2.example.net;lr>",
        "<sip:127.0.0.1:5999;lr>",
    ]
    a.receive_datagram(ok, B, net.now)
    assert call.dialog is not None
    # the caller reverses Record-Route
    assert [r.sip_uri.host for r in call.dialog.route_set] == ["127.0.0.1", "p2.example.net"]
    [(ack_data, ack_dst)] = a.datagrams_to_send(net.now)
    ack = parse_message(ack_data)
    assert ack_dst == ("127.0.0.1", 5999)  # the first route, not the remote target
    assert str(ack.uri) == "sip:bob@127.0.0.1:5070"  # loose routing keeps the target
    assert [str(r) for r in ack.routes] == ["<sip:127.0.0.1:5999;lr>", "<sip:p2.example.net;lr>"]
    a.bye(call, net.now)
    [(bye_data, bye_dst)] = a.datagrams_to_send(net.now)
    assert bye_dst == ("127.0.0.1", 5999)
    assert len(parse_message(bye_data).routes) == 2


def test_strict_route_puts_target_last() -> None:
    from dtmfgraph.sip.dialog import Dialog
    from dtmfgraph.sip.uri import NameAddr, SipUri

    dialog = Dialog(
        "c",
        "l",
        "r",
        NameAddr(SipUri("a")),
        NameAddr(SipUri("b")),
        SipUri("192.0.2.2", "bob"),
        [NameAddr(SipUri("192.0.2.9", port=5080))],
    )
    uri, routes = dialog.request_uri_and_routes()
    assert str(uri) == "sip:192.0.2.9:5080"
    assert [str(r) for r in routes] == ["<sip:bob@192.0.2.2>"]
    assert dialog.next_hop() == ("192.0.2.9", 5080)


def test_incoming_hold_reinvite_is_answered_and_reported() -> None:
    net, a, b = setup()
    call, inc = connect(net, a, b)
    rid = a.hold(call, net.now)
    net.flush()
    reinvite = next(
        s.message for s in net.log if s.first_line.startswith("INVITE") and s is not net.log[0]
    )
    assert b"a=sendonly" in reinvite.body
    assert b"o=- 1 2 IN IP4" in reinvite.body  # session version advanced
    [event] = net.take(b)
    assert isinstance(event, ReInvite) and event.on_hold
    answer = audio_media(event.answer)  # type: ignore[arg-type]
    assert answer is not None and answer.direction is Direction.RECVONLY
    assert inc.local_sdp is not None and inc.local_sdp.origin.version == 2
    [done] = net.take(a)
    assert isinstance(done, RequestCompleted) and done.request_id == rid and done.method == "INVITE"
    assert call.media is not None and call.media.direction is Direction.RECVONLY
    a.resume(call, net.now)
    net.flush()
    [event] = net.take(b)
    assert isinstance(event, ReInvite) and not event.on_hold
    assert call.local_sdp is not None and call.local_sdp.origin.version == 3
    assert call.state is CallState.ESTABLISHED


def test_reinvite_with_inactive_and_zero_address() -> None:
    net, a, b = setup()
    call, _inc = connect(net, a, b)
    offer = build_offer("0.0.0.0", 40000, session_id="1")
    a.reinvite(call, offer, net.now)
    net.flush()
    [event] = net.take(b)
    assert isinstance(event, ReInvite) and event.on_hold
    answer = audio_media(event.answer)  # type: ignore[arg-type]
    assert answer is not None and answer.direction is Direction.RECVONLY
    a.reinvite(
        call, build_offer("127.0.0.1", 40000, session_id="1", direction=Direction.INACTIVE), net.now
    )
    net.flush()
    [event] = net.take(b)
    answer = audio_media(event.answer)  # type: ignore[union-attr, arg-type]
    assert answer is not None and answer.direction is Direction.INACTIVE


def test_bad_info_bodies() -> None:
    net, a, b = setup()
    call, _inc = connect(net, a, b)
    assert call.dialog is not None
    for content_type, body, status in (
        ("application/dtmf-relay", b"Signal=Q\r\nDuration=160\r\n", 400),
        ("text/plain", b"hello", 415),
        ("application/dtmf", b"9", 200),
    ):
        request = call.dialog.request(
            "INFO", a._via(B), a.contact, body=body, content_type=content_type
        )
        b.receive_datagram(bytes(request), A, net.now)
        [(data, _)] = b.datagrams_to_send(net.now)
        assert parse_message(data).status == status  # type: ignore[union-attr]
    events = net.take(b)
    b_events = [e for e in [b.next_event()] if e] + events
    assert [(e.key) for e in b_events if isinstance(e, InfoDtmf)] == ["9"]


def test_flash_over_info() -> None:
    net, a, b = setup()
    call, _ = connect(net, a, b)
    a.send_info_dtmf(call, "flash", 250, net.now)
    net.flush()
    [event] = net.take(b)
    assert isinstance(event, InfoDtmf) and event.key == "F"
    info = next(s for s in net.log if s.first_line.startswith("INFO"))
    assert b"Signal=16\r\n" in info.data


def test_unknown_dialog_gets_481() -> None:
    net, a, b = setup()
    call, _ = connect(net, a, b)
    assert call.dialog is not None
    call.dialog.remote = call.dialog.remote.with_tag("nope")  # a dialog bob does not have
    rid = a.send_info_dtmf(call, "1", 100, net.now)
    net.flush()
    assert "SIP/2.0 481 Call/Transaction Does Not Exist" in net.lines()
    assert b.counters.unknown_dialog == 1
    events = net.take(a)
    assert isinstance(events[0], RequestFailed) and events[0].request_id == rid
    assert isinstance(events[1], CallEnded)  # 481 ends the dialog (RFC 3261 12.2.1.2)


def test_bye_without_dialog_gets_481_and_unknown_methods() -> None:
    net, a, b = setup()
    call, _ = connect(net, a, b)
    assert call.dialog is not None
    for method, status in (("UPDATE", 405), ("FROBNICATE", 501), ("OPTIONS", 200)):
        request = call.dialog.request(method, a._via(B), a.contact)
        b.receive_datagram(bytes(request), A, net.now)
        [(data, _)] = b.datagrams_to_send(net.now)
        response = parse_message(data)
        assert isinstance(response, SipResponse) and response.status == status
        if status != 200:
            assert (
                response.headers.get("Allow")
                == "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY, REFER"
            )


def test_options_out_of_dialog() -> None:
    net, _a, b = setup()
    data = (
        b"OPTIONS sip:bob@127.0.0.1:5070 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKopt\r\n"
        b"From: <sip:alice@127.0.0.1>;tag=x\r\nTo: <sip:bob@127.0.0.1:5070>\r\n"
        b"Call-ID: opt1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    b.receive_datagram(data, A, net.now)
    [(out, dst)] = b.datagrams_to_send(net.now)
    response = parse_message(out)
    assert isinstance(response, SipResponse) and response.status == 200 and dst == A
    assert "INFO" in (response.headers.get("Allow") or "")
    assert "application/sdp" in (response.headers.get("Accept") or "")
    assert response.to.tag  # a tag on the final response


def test_malformed_request_gets_400_and_garbage_is_counted() -> None:
    net, _a, b = setup()
    data = (
        b"INVITE sip:bob@127.0.0.1:5070 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKbad\r\n"
        b"From: <sip:alice@127.0.0.1>;tag=x\r\nTo: <sip:bob@127.0.0.1:5070>\r\n"
        b"Call-ID: bad1\r\nCSeq: one INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    b.receive_datagram(data, A, net.now)
    [(out, dst)] = b.datagrams_to_send(net.now)
    assert dst == A
    assert out.startswith(b"SIP/2.0 400 Bad Request\r\n")
    assert b"\r\nCall-ID: bad1\r\n" in out and b"\r\nCSeq: one INVITE\r\n" in out  # copied
    assert b'\r\nWarning: 399 127.0.0.1 "bad CSeq' in out
    b.receive_datagram(b"\x00\x01garbage", A, net.now)
    b.receive_datagram(b"SIP/2.0 200 OK\r\nVia: broken\r\n\r\n", A, net.now)
    assert b.datagrams_to_send(net.now) == []
    assert b.counters.bad_requests_answered == 1
    assert b.counters.malformed_dropped == 2
    assert net.take(b) == []


def test_callee_bye_before_ack_waits_for_ack() -> None:
    net, a, b = setup()
    _call, inc = dial(net, a, b)
    net.drop = lambda s: s.first_line.startswith("ACK") and net.now < 1000.6
    assert inc.remote_sdp is not None
    b.answer(inc, build_answer(inc.remote_sdp, "127.0.0.1", 41000, session_id="2"), net.now)
    net.flush()
    b.bye(inc, net.now)
    net.flush()
    assert not any(line.startswith("BYE") for line in net.lines())
    net.advance(2)
    lines = net.lines()
    assert lines.index("BYE sip:alice@127.0.0.1:5060 SIP/2.0") > lines.index(
        "ACK sip:bob@127.0.0.1:5070 SIP/2.0"
    )
    assert inc.is_over


def test_state_errors() -> None:
    net, a, b = setup()
    call, inc = dial(net, a, b)
    with pytest.raises(SipStateError):
        a.bye(call, net.now)
    with pytest.raises(SipStateError):
        a.send_info_dtmf(call, "1", 100, net.now)
    b.reject(inc, 486, net.now)
    with pytest.raises(SipStateError):
        b.answer(inc, None, net.now)


def test_ipv6_call() -> None:
    net = Network()
    a = net.add("::1", 5060, "alice")
    b = net.add("::1", 5070, "bob", seed=3)
    call = a.invite("sip:bob@[::1]:5070", build_offer("::1", 40000, session_id="1"), net.now)
    net.flush()
    [incoming] = net.take(b)
    assert isinstance(incoming, IncomingCall)
    invite = net.log[0].data.decode()
    assert "INVITE sip:bob@[::1]:5070 SIP/2.0\r\n" in invite
    assert "Via: SIP/2.0/UDP [::1]:5060;branch=" in invite
    assert "Contact: <sip:alice@[::1]:5060>" in invite
    assert incoming.offer is not None
    b.answer(incoming.call, build_answer(incoming.offer, "::1", 41000, session_id="2"), net.now)
    net.flush()
    assert call.state is CallState.ESTABLISHED
    assert call.media is not None and call.media.address == "::1"


def test_many_calls_are_cheap() -> None:
    net, a, b = setup()
    calls = []
    for _ in range(300):
        call, inc = dial(net, a, b)
        b.answer(inc, None, net.now)
        calls.append(call)
    net.flush()
    assert all(c.state is CallState.ESTABLISHED for c in calls)
    for c in calls:
        a.bye(c, net.now)
    net.flush()
    assert all(c.is_over for c in calls)
    net.advance(100)
    assert a.next_deadline() is None and not a.calls


def test_late_2xx_after_timeout_is_acked_and_hung_up() -> None:
    net, a, b = setup()
    call, inc = dial(net, a, b, timeout=2.0)
    net.drop = lambda s: s.first_line.startswith("CANCEL")
    net.advance(2.0)  # the dial timeout sends CANCEL, which is lost
    [failed] = net.take(a)
    assert isinstance(failed, CallFailed) and failed.timed_out
    b.answer(inc, None, net.now)  # ... and bob answers meanwhile
    net.flush()
    lines = net.lines()
    assert "ACK sip:bob@127.0.0.1:5070 SIP/2.0" in lines
    assert "BYE sip:bob@127.0.0.1:5070 SIP/2.0" in lines
    assert [type(e) for e in net.take(b)] == [CallEstablished, CallEnded]
    assert net.take(a) == []  # the failure was already reported once
    assert call.is_over


def test_deterministic_with_seeded_rng() -> None:
    def run() -> list[bytes]:
        ua = UserAgent("127.0.0.1", 5060, "alice", rng=random.Random(42))
        ua.invite("sip:bob@127.0.0.1:5070", None, 0.0)
        return [d for d, _ in ua.datagrams_to_send(0.0)]

    assert run() == run()


@pytest.mark.parametrize("side", ["caller", "callee"])
def test_restored_call_after_a_restart_is_hung_up(side: str) -> None:
    """An agent that went away (crash, restart) can still BYE its established calls from the
    record it kept: a new agent on the same address restores the call and hangs it up; the far
    end takes the BYE (200, not 481), although its CSeq jumped."""
    net, a, b = setup()
    ringing, early = dial(net, a, b)
    assert a.call_record(ringing) is None and b.call_record(early) is None  # not confirmed yet
    a.hangup(ringing, net.now)
    net.flush()
    net.take(a), net.take(b)
    call, inc = connect(net, a, b)
    ours, theirs, other = (call, inc, b) if side == "caller" else (inc, call, a)
    agent = a if side == "caller" else b
    record = json.loads(json.dumps(agent.call_record(ours)))  # as stored in the database
    assert record["role"] == side and record["dialog"]["call_id"] == ours.call_id
    seq = ours.dialog.local_seq  # type: ignore[union-attr]
    addr = net.addr(agent)
    fresh = net.add(*addr, "restarted", seed=9)  # the new process, same SIP address
    with pytest.raises(SipParseError):
        fresh.restore({"role": side, "peer": ["127.0.0.1", 1], "dialog": {"call_id": "x"}})
    restored = fresh.restore(record)
    with pytest.raises(SipStateError):
        fresh.restore(record)
    assert restored.state is CallState.ESTABLISHED
    fresh.bye(restored, net.now)
    net.flush()
    bye = next(s.message for s in net.log if s.first_line.startswith("BYE"))
    assert isinstance(bye, SipRequest)
    assert bye.call_id == ours.call_id and bye.cseq.seq == seq + RESTORE_SEQ_GAP + 1
    assert bye.from_.tag == ours.dialog.local_tag  # type: ignore[union-attr]
    assert bye.to.tag == ours.dialog.remote_tag  # type: ignore[union-attr]
    assert net.lines()[-1] == "SIP/2.0 200 OK"
    [ended] = [e for e in net.take(other) if isinstance(e, CallEnded)]
    assert ended.by_remote and ended.reason == "BYE" and theirs.is_over
    [done] = [e for e in net.take(fresh) if isinstance(e, CallEnded)]
    assert not done.by_remote and restored.is_over
    assert agent.call_record(ours) is not None  # the old agent never knew (it was gone)
