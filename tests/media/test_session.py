"""RtpSession send -> listen between two of our own endpoints over real loopback sockets."""

from __future__ import annotations

import asyncio
import random
import socket

import pytest

from dtmfgraph.media import (
    InbandBanks,
    MediaError,
    NoRemoteError,
    Pacer,
    PortRange,
    PortRangeExhaustedError,
    RtpSession,
    SessionClosedError,
    open_udp_endpoint,
)
from dtmfgraph.rtp import Codec, DtmfJobError, JobFinished, JobStarted, KeyHeard, RtpPacket
from dtmfgraph.rtp.outbound import OutboundStream
from dtmfgraph.rtp.srtp import SrtpContext, SrtpKey

from ..judges.ports import free_udp_port
from ..rtp.test_rtp_inbound import datagrams_of
from .nat import NatRelay

ALL = "0123456789*#ABCD"


async def _heard(session: RtpSession, n: int, timeout: float = 10.0) -> list[KeyHeard]:
    return [await session.next_key(timeout) for _ in range(n)]


@pytest.mark.parametrize(
    ("method", "codec", "host"),
    [
        ("rfc4733", Codec.PCMU, "127.0.0.1"),
        ("inband", Codec.PCMU, "127.0.0.1"),
        ("inband", Codec.PCMA, "127.0.0.1"),
        ("rfc4733", Codec.PCMA, "::1"),
        ("inband", Codec.PCMU, "::1"),
    ],
)
async def test_send_to_listen(method: str, codec: Codec, host: str) -> None:
    pacer = Pacer()
    b = await RtpSession.open(pacer, host=host, codec=codec, send=False)
    a = await RtpSession.open(pacer, host=host, codec=codec, remote=b.local_address, receive=False)
    keys = ALL + ("F" if method == "rfc4733" else "")
    t0 = pacer.time()
    job = await a.send_dtmf(keys, method=method, tone_ms=80, gap_ms=80)  # type: ignore[arg-type]
    assert job.done and not job.cancelled and job.keys_sent == len(keys)
    # returned once the last packet was due and sent: 17 keys x 160 ms
    assert pacer.time() - t0 >= (len(keys) - 1) * 0.160
    assert job.finished_at is not None and job.finished_at <= pacer.time()
    heard = await _heard(b, len(keys))
    assert "".join(k.key for k in heard) == keys
    assert {k.method for k in heard} == {method}
    assert {k.ssrc for k in heard} == {a.outbound.ssrc}  # type: ignore[union-attr]
    for k in heard:
        assert 0.05 <= k.duration <= 0.12, k
    await a.close()
    await b.close()
    assert b.stats is not None and b.stats.dropped == 0
    pacer.close()


async def test_full_duplex_with_latching() -> None:
    """b does not know a's address: it latches on a's stream and answers on the same socket."""
    pacer = Pacer()
    b = await RtpSession.open(pacer)  # no remote: latch
    a = await RtpSession.open(pacer, remote=b.local_address)
    await a.send_dtmf("12", method="rfc4733")
    assert [k.key for k in await _heard(b, 2)] == ["1", "2"]
    assert b.remote == a.local_address
    await b.send_dtmf("#9", method="inband")
    assert [k.key for k in await _heard(a, 2)] == ["#", "9"]
    await a.close()
    await b.close()
    pacer.close()


async def test_jobs_are_fifo_and_report_started_and_finished() -> None:
    pacer = Pacer()
    b = await RtpSession.open(pacer, send=False)
    a = await RtpSession.open(pacer, remote=b.local_address, receive=False)
    seen: list[tuple[str, int]] = []
    a.on_job_event = lambda ev: seen.append(
        ("started" if isinstance(ev, JobStarted) else "finished", ev.job.id)
    )
    # in-band after events: 250 ms apart, or the receiver takes "3" for the echo of an event
    first = a.start_dtmf("12", tone_ms=60, gap_ms=250)
    second = a.start_dtmf("34", method="inband", tone_ms=60, gap_ms=60)
    j1, j2 = await asyncio.gather(first.done, second.done)
    assert j1.finished_at is not None and j2.started_at is not None
    assert j1.finished_at < j2.started_at
    assert seen == [
        ("started", j1.id),
        ("finished", j1.id),
        ("started", j2.id),
        ("finished", j2.id),
    ]
    assert "".join(k.key for k in await _heard(b, 4)) == "1234"
    await a.close()
    await b.close()
    pacer.close()


async def test_cancelling_the_awaiting_task_stops_at_a_key_boundary() -> None:
    pacer = Pacer()
    b = await RtpSession.open(pacer, send=False)
    a = await RtpSession.open(pacer, remote=b.local_address, receive=False)
    sending = a.start_dtmf("0123456789", tone_ms=100, gap_ms=100)
    task = asyncio.create_task(a.send_dtmf("99"))
    await asyncio.sleep(0.01)
    task.cancel()  # the queued job is dropped before it starts
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.35)
    a.cancel(sending.job)
    job = await asyncio.wait_for(sending.done, 2)
    assert job.cancelled and 1 <= job.keys_sent < 10
    heard = []
    with pytest.raises(TimeoutError):
        while True:
            heard.append((await b.next_key(0.5)).key)
    assert "".join(heard) == "0123456789"[: job.keys_sent]
    await a.close()
    await b.close()
    pacer.close()


async def test_errors() -> None:
    pacer = Pacer()
    lone = await RtpSession.open(pacer)  # no remote yet
    with pytest.raises(NoRemoteError):
        await lone.send_dtmf("1")
    rx_only = await RtpSession.open(pacer, send=False)
    with pytest.raises(MediaError, match="send=False"):
        rx_only.start_dtmf("1")
    a = await RtpSession.open(pacer, remote=rx_only.local_address, receive=False)
    with pytest.raises(ValueError, match="unknown DTMF key"):
        a.start_dtmf("1X")
    with pytest.raises(ValueError, match="flash"):
        a.start_dtmf("1F", method="inband")
    no_events = await RtpSession.open(pacer, remote=rx_only.local_address, event_pt=None)
    with pytest.raises(DtmfJobError, match="telephone-event"):
        no_events.start_dtmf("1")
    with pytest.raises(ValueError, match="not a multiple"):
        await RtpSession.open(Pacer(tick=0.020), ptime_ms=30, remote=rx_only.local_address)
    # closing fails the jobs in flight
    sending = a.start_dtmf("123456")
    await asyncio.sleep(0.05)
    await a.close()
    with pytest.raises(SessionClosedError):
        await sending.done
    with pytest.raises(SessionClosedError):
        a.start_dtmf("1")
    await rx_only.close()
    with pytest.raises(SessionClosedError):  # after the keys heard before closing
        while True:
            await rx_only.next_key(1)
    assert [k async for k in rx_only.keys()] == []  # noqa: SIM118 (an async iterator, not a dict)
    for s in (lone, no_events):
        await s.close()
    pacer.close()


async def test_sessions_from_a_port_range_and_exhaustion() -> None:
    pacer = Pacer()
    base = free_udp_port() & ~1
    ports = PortRange(base, base + 7, even=True)
    sessions = []
    try:
        for _ in range(4):
            sessions.append(await RtpSession.open(pacer, port=ports))
    except PortRangeExhaustedError:
        pytest.skip("someone else holds a port of the range")  # raced by another test process
    assert sorted(s.local_address[1] for s in sessions) == [base, base + 2, base + 4, base + 6]
    with pytest.raises(PortRangeExhaustedError, match="even ports only"):
        await RtpSession.open(pacer, port=ports)
    await sessions[0].close()
    again = await RtpSession.open(pacer, port=ports)  # the freed port is reused
    assert again.local_address[1] == sessions[0].local_address[1]
    for s in [*sessions[1:], again]:
        await s.close()
    pacer.close()


async def test_many_sessions_with_shared_inband_banks() -> None:
    pacer = Pacer()
    banks = InbandBanks(pacer, channels=16)
    receivers = [await RtpSession.open(pacer, send=False, bank=banks.bank()) for _ in range(40)]
    assert len(banks.banks) == 3 and banks.in_use == 40
    senders = [
        await RtpSession.open(pacer, remote=r.local_address, receive=False) for r in receivers
    ]
    keys = [f"{i % 10}{i * 7 % 10}#" for i in range(40)]
    await asyncio.gather(
        *(
            s.send_dtmf(k, method="inband", tone_ms=70, gap_ms=70)
            for s, k in zip(senders, keys, strict=True)
        )
    )
    heard = await asyncio.gather(*(_heard(r, 3) for r in receivers))
    assert ["".join(k.key for k in h) for h in heard] == keys
    assert all(k.method == "inband" for h in heard for k in h)
    for s in senders + receivers:
        await s.close()
    assert banks.in_use == 0
    banks.close()
    pacer.close()


async def test_job_finished_future_resolves_after_the_last_packet_left() -> None:
    pacer = Pacer()
    got: list[tuple[float, bytes]] = []
    b = await RtpSession.open(pacer, send=False)
    loop = asyncio.get_running_loop()
    inner = b.endpoint.on_datagram
    assert inner is not None

    def tap(data: bytes, addr: tuple[str, int]) -> None:
        got.append((loop.time(), data))
        inner(data, addr)

    b.endpoint.on_datagram = tap
    a = await RtpSession.open(pacer, remote=b.local_address, receive=False)
    events: list[object] = []
    a.on_job_event = events.append
    await a.send_dtmf("5", tone_ms=60)
    await asyncio.sleep(0)  # datagrams already in b's socket are read on the next loop turn
    await asyncio.sleep(0)
    end_packets = [t for t, d in got if d[1] & 0x7F == 101 and d[13] & 0x80]
    assert len(end_packets) == 3
    finished = [e for e in events if isinstance(e, JobFinished)]
    assert len(finished) == 1
    await a.close()
    await b.close()
    pacer.close()


async def test_last_heard_counts_rtp_only() -> None:
    """The clock a media timeout is judged on: RTP from the far end moves it, garbage does not."""
    pacer = Pacer()
    b = await RtpSession.open(pacer, codec=Codec.PCMU, send=False)
    started = b.last_heard
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.sendto(b"\x00not rtp at all", b.local_address)
        await asyncio.sleep(0.1)
        assert b.stats is not None and b.stats.malformed == 1
        assert b.last_heard == started
        packet = RtpPacket(payload_type=0, sequence=1, timestamp=160, ssrc=7, payload=b"\xff" * 160)
        peer.sendto(packet.serialize(), b.local_address)
        await asyncio.sleep(0.1)
        assert b.stats.received == 2 and b.stats.malformed == 1
        assert b.last_heard > started
    await b.close()
    pacer.close()


async def test_strict_session_drops_a_strangers_keys_and_hears_its_peers() -> None:
    """Strict RTP over real sockets: a third socket injecting RFC 4733 keys into b's port is
    dropped and counted, and does not keep b's media clock alive; a's keys get through."""
    pacer = Pacer()
    b = await RtpSession.open(pacer, send=False, strict=True)
    a = await RtpSession.open(pacer, remote=b.local_address, receive=False)
    b.set_remote(a.local_address)  # what a's SDP said
    dropped: list[tuple[str, int]] = []
    b.on_foreign = dropped.append
    stranger = await RtpSession.open(pacer, remote=b.local_address, receive=False)
    heard_before = b.last_heard
    await stranger.send_dtmf("99", method="rfc4733", tone_ms=60, gap_ms=60)
    await a.send_dtmf("12", method="rfc4733")
    assert [k.key for k in await _heard(b, 2)] == ["1", "2"]
    with pytest.raises(TimeoutError):
        await b.next_key(0.3)  # no 9s
    assert b.guard.source == a.local_address
    assert b.guard.dropped == len(dropped) >= 20
    assert set(dropped) == {stranger.local_address}
    assert b.stats is not None and b.stats.received > 0 and heard_before < b.last_heard
    await a.close()  # the peer goes quiet; the stranger's stream goes on
    await asyncio.sleep(0.1)
    quiet_since, dropped_then = b.last_heard, b.guard.dropped
    await asyncio.sleep(0.3)
    assert b.last_heard == quiet_since  # a media timeout would see silence
    assert b.guard.dropped >= dropped_then + 10
    for s in (b, stranger):
        await s.close()
    pacer.close()


async def test_strict_session_learns_a_peer_behind_nat_and_answers_it_there() -> None:
    """b was told (by SDP) an address that never sends; a sends from elsewhere (NAT). After 4
    packets in sequence b takes a as its peer, hears its keys and sends its own back to a."""
    pacer = Pacer()
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    told = silent.getsockname()
    b = await RtpSession.open(pacer, remote=told, strict=True)
    a = await RtpSession.open(pacer, remote=b.local_address)
    await a.send_dtmf("47", method="rfc4733")
    assert [k.key for k in await _heard(b, 2)] == ["4", "7"]
    assert b.guard.source == a.local_address and b.guard.learned == 1
    assert b.remote == a.local_address
    await b.send_dtmf("#", method="rfc4733")
    assert [k.key for k in await _heard(a, 1)] == ["#"]
    silent.close()
    await a.close()
    await b.close()
    pacer.close()


async def test_strict_session_follows_its_peer_when_its_nat_rebinds_mid_call() -> None:
    """a talks to b through a NAT (real sockets). Mid-call the NAT gives a a new outside port:
    b follows the stream there (same SSRC, sequence going on), keeps hearing a's keys, sends its
    own to the new port, and no longer takes anything from the old one; a stranger still gets
    nothing in."""
    pacer = Pacer()
    b = await RtpSession.open(pacer, strict=True)
    nat = await NatRelay(b.local_address).open()
    b.set_remote(nat.outside(0))  # what a's SDP said (its public address, say)
    moved: list[tuple[str, int]] = []
    b.on_moved = moved.append
    a = await RtpSession.open(pacer, remote=nat.inside)
    try:
        await a.send_dtmf("12", method="rfc4733")
        assert [k.key for k in await _heard(b, 2)] == ["1", "2"]
        assert b.guard.source == nat.outside(0)
        nat.rebind()
        await a.send_dtmf("34", method="rfc4733")
        assert [k.key for k in await _heard(b, 2)] == ["3", "4"]
        assert moved == [nat.outside(1)] and b.guard.source == nat.outside(1)
        assert b.remote == nat.outside(1)
        back_before = nat.back[1]
        await b.send_dtmf("#", method="rfc4733")
        assert [k.key for k in await _heard(a, 1)] == ["#"]
        assert nat.back[1] > back_before  # b answers at the new mapping
        # the old mapping (and a stranger with its own stream) are strangers now
        stranger = await RtpSession.open(pacer, remote=b.local_address, receive=False)
        await stranger.send_dtmf("9", method="rfc4733")
        with pytest.raises(TimeoutError):
            await b.next_key(0.3)
        assert b.guard.dropped > 0 and b.guard.moved == 1
        await stranger.close()
    finally:
        for s in (a, b):
            await s.close()
        nat.close()
        pacer.close()


async def test_the_echo_of_our_own_inband_keys_is_not_heard_as_the_far_ends() -> None:
    """A far end that echoes our audio back (a line with poor echo cancelling, at 0 dB here):
    the keys we send in-band come back, and are not reported as keys it pressed; a key it
    presses itself afterwards is."""
    loop = asyncio.get_running_loop()
    echoed = 0

    class Line(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            nonlocal echoed
            if len(data) > 12 and data[1] & 0x7F == 0:  # PCMU audio comes back; events do not
                echoed += 1
                self.transport.sendto(data, addr)  # type: ignore[attr-defined]

    transport, _ = await loop.create_datagram_endpoint(Line, local_addr=("127.0.0.1", 0))
    pacer = Pacer()
    a = await RtpSession.open(pacer, remote=transport.get_extra_info("sockname")[:2])
    try:
        await a.send_dtmf("123", method="inband", tone_ms=80, gap_ms=80)
        with pytest.raises(TimeoutError):
            await a.next_key(1.0)
        assert echoed > 20
        assert a.stats is not None and a.stats.inband_echo == 3
        presser = OutboundStream(start=0.0, rng=random.Random(3))
        presser.send_dtmf("9", method="inband", tone_ms=100, gap_ms=100, now=0.0)
        for _, packet in datagrams_of(presser, 0.5):  # the far end's own key, 20 ms apart
            transport.sendto(packet, a.local_address)
            await asyncio.sleep(0.02)
        assert (await a.next_key(2.0)).key == "9"
    finally:
        await a.close()
        transport.close()
        pacer.close()


async def test_close_closes_the_sockets_whatever_failed_before() -> None:
    """A failure while winding down (here the last RTCP report cannot be made) is logged, and
    the RTP and RTCP sockets are closed all the same: before, close() raised first and left
    both bound for good."""
    pacer = Pacer()
    peer = await RtpSession.open(pacer, latch=True)
    session = await RtpSession.open(pacer, remote=peer.local_address, rtcp=True)
    assert session.rtcp_endpoint is not None

    def broken(*_: object, **__: object) -> None:
        raise TypeError("host name must not contain null character")

    session._send_rtcp = broken  # type: ignore[method-assign]
    await session.close()
    assert session.endpoint.closed and session.rtcp_endpoint.closed
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(session.local_address)  # the port is free again
    with pytest.raises(SessionClosedError):
        await session.next_key(0.1)
    await peer.close()
    pacer.close()


@pytest.mark.parametrize("host", ["localhost", "pbx.example.com", "127.0.0.1\x00"])
async def test_a_session_never_sends_to_a_host_name(host: str) -> None:
    """``sendto((name, port))`` would resolve ``name`` on the event loop for every packet (a
    name server that never answers froze the process): only IP literals are taken."""
    pacer = Pacer()
    session = await RtpSession.open(pacer, rtcp=True)
    try:
        with pytest.raises(MediaError, match="not an IP address"):
            session.set_remote((host, 4000))
        with pytest.raises(MediaError, match="not an IP address"):
            session.set_rtcp_remote((host, 4001))
        assert session.remote is None and session.outbound is None
    finally:
        await session.close()
        pacer.close()


def _keys_stream(keys: str, ssrc: int, sequence: int) -> list[bytes]:
    """The RTP packets of ``keys`` (PCMU and RFC 4733 on PT 101), 20 ms apart."""
    out = OutboundStream(start=0.0, ssrc=ssrc, sequence=sequence, rng=random.Random(7))
    out.send_dtmf(keys, now=0.0)
    return [data for _, data in datagrams_of(out, 0.25 * len(keys) + 0.1)]


async def _play(sock: socket.socket, packets: list[bytes], to: tuple[str, int]) -> None:
    for data in packets:
        sock.sendto(data, to)
        await asyncio.sleep(0.02)


async def test_a_stranger_on_the_far_ends_host_takes_over_nothing() -> None:
    """The attack of issue 14, on real sockets. A stranger on the caller's host (another
    port) sends one RTCP report: before, our RTCP then went to it, revealing the caller's SSRC
    and highest sequence; now it is dropped and counted. Knowing them anyway, it sends "909"
    continuing the caller's stream 32,000 ahead while the caller is quiet: before, that moved
    the stream and the caller's "6" was lost for minutes; now the caller is heard, the
    stranger not."""
    pacer = Pacer()
    us = await RtpSession.open(pacer, strict=True, rtcp=True, rtcp_interval=60.0)
    caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    thief = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        caller.bind(("127.0.0.1", 0))
        thief.bind(("127.0.0.1", 0))
        far = caller.getsockname()
        us.set_remote(far)
        assert us.rtcp_endpoint is not None and us.rtcp_remote == (far[0], far[1] + 1)
        thief.sendto(bytes.fromhex("80c9000100000001"), us.rtcp_endpoint.local_address)
        ssrc, seq = 0x5EC12E7, 1000
        five = _keys_stream("5", ssrc, seq)
        await _play(caller, five, us.local_address)
        assert [k.key for k in await _heard(us, 1)] == ["5"]
        assert us.rtcp_stats.foreign == 1 and us.rtcp_remote == (far[0], far[1] + 1)
        last = seq + len(five) - 1
        await asyncio.sleep(0.3)  # the caller is quiet (silence suppression)
        await _play(thief, _keys_stream("909", ssrc, last + 32000), us.local_address)
        await _play(caller, _keys_stream("6", ssrc, last + 1), us.local_address)
        assert [k.key for k in await _heard(us, 1)] == ["6"]
        with pytest.raises(TimeoutError):
            await us.next_key(0.3)
        assert us.guard.source == far and us.guard.moved == 0 and us.guard.dropped > 0
    finally:
        caller.close()
        thief.close()
        await us.close()
        pacer.close()


async def test_tap_sent_sees_each_packet_before_srtp_and_stops_when_removed() -> None:
    """What a journal records of our side: every packet the session sends, in order, as RTP
    (the wire carries it SRTP-protected); after ``tap_sent(None)`` the tap hears nothing more."""
    pacer = Pacer()
    key = SrtpKey.generate()
    wire: list[bytes] = []
    far = await open_udp_endpoint("127.0.0.1", on_datagram=lambda data, addr: wire.append(data))
    endpoint = await open_udp_endpoint("127.0.0.1")
    a = RtpSession(
        pacer, endpoint, srtp=(SrtpContext(key), SrtpContext(key)), remote=far.local_address
    )
    tapped: list[bytes] = []
    a.tap_sent(tapped.append)
    await a.send_dtmf("5", method="rfc4733")
    a.tap_sent(None)
    count = len(tapped)
    await asyncio.sleep(0.1)
    assert len(tapped) == count  # removed: nothing more
    assert count >= 7  # the event: 5 slots of 100 ms, its end packet twice more
    packets = [RtpPacket.parse(p) for p in tapped]
    assert [p.sequence for p in packets] == [
        (packets[0].sequence + i) & 0xFFFF for i in range(count)
    ]
    events = [p for p in packets if p.payload_type == 101]
    assert events[0].marker and sum(p.payload[1] & 0x80 != 0 for p in events) == 3
    receiver = SrtpContext(key)  # the same packets went out, protected
    clear = [receiver.unprotect(d) for d in wire[:count]]
    assert clear == tapped
    assert all(d not in tapped for d in wire[:count])
    await a.close()
    await far.close()
    pacer.close()
