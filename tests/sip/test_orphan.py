"""A 2xx to an INVITE the agent has no call for (it restarted while the call rang) is ACKed
and then hung up with a BYE; its retransmissions get the same ACK, never a second BYE."""

from __future__ import annotations

import random

from dtmfgraph.sip import (
    CallEnded,
    CallEstablished,
    CallState,
    IncomingCall,
    SipRequest,
    SipResponse,
    UserAgent,
    build_answer,
    build_offer,
    parse_message,
)
from dtmfgraph.sip.acl import SourceAllowlist
from dtmfgraph.sip.call import Call
from dtmfgraph.sip.orphan import OrphanAnswers

from .harness import Network

A = ("127.0.0.1", 5060)
B = ("127.0.0.1", 5070)


def ringing_then_restart(net: Network) -> tuple[UserAgent, UserAgent, Call]:
    """alice calls bob, bob rings; alice's process is replaced by a fresh agent on the same
    address (a restart: it knows nothing of the call). Returns (fresh alice, bob, bob's call)."""
    a, b = net.add(*A, "alice", seed=1), net.add(*B, "bob", seed=2)
    a.invite("sip:bob@127.0.0.1:5070", build_offer("127.0.0.1", 40000, session_id="1"), net.now)
    net.flush()
    [incoming] = [e for e in net.take(b) if isinstance(e, IncomingCall)]
    b.ringing(incoming.call, net.now)
    net.flush()
    fresh = net.add(*A, "restarted", seed=9)
    return fresh, b, incoming.call


def answer(net: Network, b: UserAgent, call: Call) -> int:
    """bob answers; the index in the wire log where that starts."""
    since = len(net.log)
    assert call.remote_sdp is not None
    b.answer(call, build_answer(call.remote_sdp, "127.0.0.1", 41000, session_id="2"), net.now)
    return since


def test_answer_after_restart_is_acked_then_hung_up() -> None:
    net = Network()
    fresh, b, call = ringing_then_restart(net)
    since = answer(net, b, call)
    net.flush()
    assert net.lines(since=since) == [
        "SIP/2.0 200 OK",
        "ACK sip:bob@127.0.0.1:5070 SIP/2.0",
        "BYE sip:bob@127.0.0.1:5070 SIP/2.0",
        "SIP/2.0 200 OK",
    ]
    ok, ack, bye = (net.log[since + i].message for i in range(3))
    assert isinstance(ok, SipResponse) and isinstance(ack, SipRequest)
    assert isinstance(bye, SipRequest)
    for request in (ack, bye):
        assert request.call_id == ok.call_id
        assert request.from_.tag == ok.from_.tag and request.to.tag == ok.to.tag
    assert ack.cseq.seq == ok.cseq.seq and bye.cseq.seq == ok.cseq.seq + 1
    assert [type(e) for e in net.take(b)] == [CallEstablished, CallEnded]
    assert call.state is CallState.TERMINATED
    assert fresh.counters.orphans_hung_up == 1 and fresh.counters.stray_responses == 0
    assert net.take(fresh) == [] and not fresh.calls  # nothing to report: not our call
    net.advance(100)
    assert fresh.next_deadline() is None


def test_retransmitted_2xx_gets_the_same_ack_and_no_second_bye() -> None:
    net = Network()
    fresh, b, call = ringing_then_restart(net)
    since = answer(net, b, call)
    start = net.now
    net.drop = lambda s: s.src == A and s.at < start + 1.2  # bob keeps resending its 200
    net.advance(1.2)  # T1 = 0.5: two retransmissions
    net.advance(5)
    lines = net.lines(since=since)
    assert lines.count("SIP/2.0 200 OK") >= 4  # three 2xx and the BYE's 200
    acks = {s.data for s in net.log[since:] if s.first_line.startswith("ACK")}
    byes = {s.data for s in net.log[since:] if s.first_line.startswith("BYE")}
    assert len(acks) == 1 and len(byes) == 1  # the same ACK again; BYE only retransmitted
    assert call.state is CallState.TERMINATED and net.take(b)[-1].__class__ is CallEnded
    assert fresh.counters.orphans_hung_up == 1


def test_a_2xx_whose_via_is_not_ours_is_dropped() -> None:
    net = Network()
    fresh, b, call = ringing_then_restart(net)
    answer(net, b, call)
    [(ok, _)] = b.datagrams_to_send(net.now)
    forged = ok.replace(b"127.0.0.1:5060;branch", b"192.0.2.9:5060;branch")
    fresh.receive_datagram(forged, B, net.now)
    assert fresh.datagrams_to_send(net.now) == []
    assert fresh.counters.stray_responses == 1 and fresh.counters.orphans_hung_up == 0
    fresh.allow_source = SourceAllowlist(["10.0.0.0/8"])
    fresh.receive_datagram(ok, B, net.now)  # from a source not allowed
    assert fresh.datagrams_to_send(net.now) == []
    fresh.allow_source = None
    fresh.receive_datagram(ok, B, net.now)
    sent = [parse_message(d) for d, _ in fresh.datagrams_to_send(net.now)]
    assert [m.method for m in sent if isinstance(m, SipRequest)] == ["ACK", "BYE"]


def test_orphans_are_bounded_in_count_and_time() -> None:
    kept = OrphanAnswers(keep_s=32.0, cap=2)
    kept.remember(("a", "t", 1), b"ack-a", A, 0.0)
    kept.remember(("b", "t", 1), b"ack-b", A, 1.0)
    assert kept.full(1.0) and kept.ack_of(("a", "t", 1), 1.0) == (b"ack-a", A)
    assert not kept.full(32.0) and kept.ack_of(("a", "t", 1), 32.0) is None
    assert kept.ack_of(("b", "t", 1), 32.0) == (b"ack-b", A) and len(kept) == 1
    assert kept.ack_of(("b", "t", 1), 33.0) is None and len(kept) == 0


def test_flood_of_orphans_is_capped() -> None:
    ua = UserAgent("127.0.0.1", 5060, "alice", rng=random.Random(1))
    ua._orphans = OrphanAnswers(cap=3)  # a small cap, to test it

    def ok(n: int) -> bytes:
        return (
            "SIP/2.0 200 OK\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{n}\r\n"
            f"From: <sip:alice@127.0.0.1:5060>;tag=a{n}\r\n"
            f"To: <sip:bob@127.0.0.1:5070>;tag=b{n}\r\n"
            f"Call-ID: orphan-{n}\r\n"
            "CSeq: 1 INVITE\r\n"
            "Contact: <sip:bob@127.0.0.1:5070>\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()

    for n in range(5):
        ua.receive_datagram(ok(n), B, 0.0)
    sent = [parse_message(d) for d, _ in ua.datagrams_to_send(0.0)]
    assert sum(1 for m in sent if isinstance(m, SipRequest) and m.method == "BYE") == 3
    assert ua.counters.orphans_hung_up == 3 and ua.counters.stray_responses == 2
