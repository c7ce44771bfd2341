"""Dialogs that are over stay over: a late INVITE copy gets 481, crossed BYEs stop at once."""

from __future__ import annotations

from dtmfgraph.sip import CallEnded, CallEstablished, IncomingCall, UserAgent, build_answer
from dtmfgraph.sip.ended import KEEP_S, EndedDialogs

from .hostile import exchange, incoming, invite, sdp
from .test_call_flows import A, B, connect, dial, setup

T0 = 1000.0


def _in_dialog(method: str, to_tag: str, seq: int, branch: str) -> bytes:
    return (
        f"{method} sip:bot@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@127.0.0.1>;tag=a1\r\n"
        f"To: <sip:bot@127.0.0.1>;tag={to_tag}\r\n"
        "Call-ID: late-1\r\n"
        f"CSeq: {seq} {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def _answered_and_hung_up(ua: UserAgent) -> bytes:
    """A call from the far end (Call-ID ``late-1``) answered, ACKed and ended by its BYE at
    ``T0 + 1``; the INVITE it began with."""
    first = invite(sdp(), call_id="late-1")
    assert [r.status for r in exchange(ua, first, T0)] == [100]
    [event] = incoming(ua)
    assert event.offer is not None
    ua.answer(event.call, build_answer(event.offer, "127.0.0.1", 41000, session_id="2"), T0)
    [(ok, _)] = ua.datagrams_to_send(T0)
    tag = event.call.dialog.local_tag if event.call.dialog else ""
    assert tag and tag.encode() in ok
    assert exchange(ua, _in_dialog("ACK", tag, 1, "ack1"), T0 + 0.1) == []
    assert [r.status for r in exchange(ua, _in_dialog("BYE", tag, 2, "bye1"), T0 + 1)] == [200]
    assert [type(e) for e in iter(ua.next_event, None)] == [CallEstablished, CallEnded]
    return first


def test_a_late_invite_retransmission_of_an_ended_call_gets_481_not_a_new_call() -> None:
    ua = UserAgent("127.0.0.1", 5060, "bot")
    first = _answered_and_hung_up(ua)
    for at in (T0 + 0.8, T0 + 5.0):  # its transaction still absorbs it (RFC 6026 Timer L)
        ua.handle_deadline(at)
        assert exchange(ua, first, at) == []  # absorbed (the 2xx was ACKed)
        assert incoming(ua) == []
    for at in (T0 + 40.0, T0 + 200.0):  # transaction and call gone: 481, counted
        ua.handle_deadline(at)
        ua.datagrams_to_send(at)  # the first 481's own retransmissions (never ACKed here)
        responses = exchange(ua, first, at)
        assert [r.status for r in responses] == [481]
        assert responses[0].to.tag  # a final response to an INVITE carries a To tag
        assert incoming(ua) == []
    assert ua.counters.ended_dialog_invites == 2
    assert ua.calls == {}


def test_any_invite_of_an_answered_dialog_is_refused_even_with_a_new_branch_and_cseq() -> None:
    ua = UserAgent("127.0.0.1", 5060, "bot")
    _answered_and_hung_up(ua)
    ua.handle_deadline(T0 + 60)
    stray = invite(sdp(), call_id="late-1").replace(b"CSeq: 1 ", b"CSeq: 7 ")
    stray = stray.replace(b"branch=z9hG4bKlate-1", b"branch=z9hG4bKother")
    assert [r.status for r in exchange(ua, stray, T0 + 60)] == [481]
    assert incoming(ua) == []
    # another From tag with the same Call-ID is another dialog: not ours to refuse
    other = invite(sdp(), call_id="late-1").replace(b"tag=a1", b"tag=a2")
    assert [r.status for r in exchange(ua, other, T0 + 61)] == [100]
    assert len(incoming(ua)) == 1


def test_the_memory_is_bounded_in_time() -> None:
    ua = UserAgent("127.0.0.1", 5060, "bot")
    first = _answered_and_hung_up(ua)
    late = T0 + 1 + KEEP_S + 1
    ua.handle_deadline(late)
    assert [r.status for r in exchange(ua, first, late)] == [100]  # forgotten: a call again
    assert len(incoming(ua)) == 1
    assert ua.counters.ended_dialog_invites == 0


def test_a_refused_invite_tried_again_with_a_higher_cseq_is_a_new_call() -> None:
    net, a, b = setup()
    call, inc = dial(net, a, b)
    b.reject(inc, 486, net.now)
    net.flush()
    net.advance(40)  # transaction and call forgotten
    assert b.calls == {}
    assert call.invite is not None
    late = bytes(call.invite)
    b.receive_datagram(late, A, net.now)  # a late copy of the refused INVITE
    [(data, _)] = b.datagrams_to_send(net.now)
    assert data.startswith(b"SIP/2.0 481 ")
    retry = late.replace(b"CSeq: 1 INVITE", b"CSeq: 2 INVITE").replace(b"z9hG4bK", b"z9hG4bKr")
    b.receive_datagram(retry, A, net.now)  # RFC 3261 8.1.3.5: a new request
    assert b.datagrams_to_send(net.now)[0][0].startswith(b"SIP/2.0 100 ")
    assert [type(e) for e in iter(b.next_event, None)] == [IncomingCall]
    assert b.counters.ended_dialog_invites == 1


def test_a_refused_invite_tried_again_at_once_with_a_higher_cseq_is_a_new_call() -> None:
    """Within 64*T1 of the refusal the refused call is still remembered: a retry with the
    same Call-ID and From tag and a higher CSeq (after a 486, a 503 with Retry-After or a 422)
    is still a new request, not a merged one (482 is for the same CSeq, RFC 3261 8.2.2.2)."""
    net, a, b = setup()
    call, inc = dial(net, a, b)
    b.reject(inc, 503, net.now)
    net.flush()
    assert list(b.calls) == [call.call_id]  # refused, not yet forgotten
    assert call.invite is not None
    first = bytes(call.invite)
    merged = first.replace(b"z9hG4bK", b"z9hG4bKm")  # same CSeq, another branch
    b.receive_datagram(merged, A, net.now)
    [(data, _)] = b.datagrams_to_send(net.now)
    assert data.startswith(b"SIP/2.0 48")  # 481 (its dialog is over) or 482: never a call
    retry = first.replace(b"CSeq: 1 INVITE", b"CSeq: 2 INVITE").replace(b"z9hG4bK", b"z9hG4bKr")
    b.receive_datagram(retry, A, net.now)
    assert b.datagrams_to_send(net.now)[0][0].startswith(b"SIP/2.0 100 ")
    [event] = [e for e in iter(b.next_event, None) if isinstance(e, IncomingCall)]
    b.reject(event.call, 486, net.now)
    net.advance(40)  # the first call's forgetting leaves the second alone until its own
    assert b.calls == {}


def test_ended_dialogs_keep_the_newest_up_to_their_cap() -> None:
    ended = EndedDialogs(keep_s=10.0, cap=2)
    for i in range(3):
        ended.remember(f"c{i}", "t", 1, True, float(i))
    assert len(ended) == 2
    assert not ended.refuses("c0", "t", 1, 3.0)  # pushed out by the cap
    assert ended.refuses("c1", "t", 9, 3.0) and ended.refuses("c2", "t", 1, 3.0)
    assert not ended.refuses("c2", "other", 1, 3.0)
    assert not ended.refuses("c1", "t", 1, 11.0)  # kept 10 s from its end
    assert ended.refuses("c2", "t", 1, 11.0)
    refused = EndedDialogs()
    refused.remember("r", "t", 3, False, 0.0)
    assert refused.refuses("r", "t", 3, 1.0) and not refused.refuses("r", "t", 4, 1.0)


def test_crossed_byes_stop_our_retransmissions_when_the_far_end_never_answers() -> None:
    net, a, b = setup()
    call, inc = connect(net, a, b)
    # a (a sipp-like far end) never answers the BYE of a dialog it has already ended
    net.drop = lambda s: s.src == A and s.first_line.startswith("SIP/2.0")
    b.bye(inc, net.now)
    a.bye(call, net.now)  # both hang up at once
    net.flush()
    net.advance(40)
    ours = [s for s in net.log if s.src == B and s.first_line.startswith("BYE")]
    assert len(ours) == 1  # never retransmitted
    theirs = [s for s in net.log if s.src == B and s.data.startswith(b"SIP/2.0 200 OK")]
    theirs = [s for s in theirs if s.message.cseq.method == "BYE"]
    assert len(theirs) == 1  # their BYE answered 200
    assert b.counters.byes_crossed == 1
    assert b.counters.timeouts == 0  # no Timer F, nothing to report
    [ended] = net.take(b)
    assert isinstance(ended, CallEnded) and ended.by_remote
    assert b.next_deadline() is None


def test_a_bye_answered_first_is_not_counted_as_crossed() -> None:
    net, a, b = setup()
    call, inc = connect(net, a, b)
    b.bye(inc, net.now)
    net.flush()
    net.advance(40)
    assert b.counters.byes_crossed == 0
    [ended] = net.take(b)
    assert isinstance(ended, CallEnded) and not ended.by_remote
    assert call.is_over
