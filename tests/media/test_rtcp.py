"""RTCP between two of our sessions over real loopback sockets, judged by tshark."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from dtmfgraph.media import Pacer, RtpSession
from dtmfgraph.media.udp import open_rtcp_endpoint, open_udp_endpoint
from dtmfgraph.rtp.srtp import SrtpContext, SrtpKey

from .helpers import capture, tshark

RTCP_FIELDS = (
    "rtcp.pt",
    "rtcp.senderssrc",
    "rtcp.sender.packetcount",
    "rtcp.ssrc.identifier",
    "rtcp.ssrc.fraction",
    "rtcp.ssrc.cum_nr",
    "rtcp.sdes.text",
    "_ws.expert.message",
)


async def _until(check: object, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not check() and loop.time() < end:  # type: ignore[operator]
        await asyncio.sleep(0.05)


async def test_reports_flow_both_ways_with_rtt_and_bye(tmp_path: Path) -> None:
    pacer = Pacer()
    a = await RtpSession.open(pacer, rtcp=True, rtcp_interval=0.4)
    b = await RtpSession.open(pacer, rtcp=True, rtcp_interval=0.4, remote=a.local_address)
    a.set_remote(b.local_address)
    assert a.rtcp_endpoint is not None and b.rtcp_endpoint is not None
    assert a.rtcp_endpoint.local_address[1] == a.local_address[1] + 1
    pcap = tmp_path / "rtcp.pcap"
    with capture(a.rtcp_endpoint.local_address[1], pcap):
        await _until(lambda: a.rtcp_stats.rtt is not None and b.rtcp_stats.rtt is not None, 10)
        await a.send_dtmf("1", tone_ms=60, gap_ms=40)
        await asyncio.sleep(0.6)
        await b.close()
        await _until(lambda: a.rtcp_stats.bye is not None, 5)
    for s, other in ((a, b), (b, a)):
        stats = s.rtcp_stats
        assert stats.received >= 2 and stats.malformed == 0 and stats.foreign == 0
        assert stats.rtt is not None and 0.0 <= stats.rtt < 0.05  # loopback
        assert stats.peer_cname == other.rtcp.cname
        assert stats.peer_lost == 0 and stats.peer_fraction_lost == 0.0
    assert a.rtcp_stats.bye == ""
    await a.close()
    # tshark reads what b sent to a's RTCP port: SRs from b's SSRC with a block on a's stream,
    # its CNAME, and the BYE; nothing it flags as malformed.
    assert b.outbound is not None and a.outbound is not None
    cmd = [tshark(), "-r", str(pcap), "-Y", "rtcp", "-T", "fields", "-E", "separator=\t"]
    cmd += ["-d", f"udp.port=={a.rtcp_endpoint.local_address[1]},rtcp"]
    for field in RTCP_FIELDS:
        cmd += ["-e", field]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    lines = [line.split("\t") for line in out.splitlines()]
    from_b = [c for c in lines if int(c[1].split(",")[0], 0) == b.outbound.ssrc]
    assert len(from_b) >= 2, out
    for c in from_b:
        types = c[0].split(",")
        assert types[:2] == ["200", "202"]  # SR (b sends RTP) then SDES
        assert int(c[2]) > 0  # packets sent so far
        assert c[6] == b.rtcp.cname
        assert "alformed" not in c[7], c[7]
    blocks = [c for c in from_b if c[4] != ""]  # once b has heard a: a block on a's stream
    assert len(blocks) >= 2, out
    for c in blocks:
        assert int(c[3].split(",")[0], 0) == a.outbound.ssrc
        assert c[4] == "0" and c[5] == "0"  # nothing lost on loopback
    assert from_b[-1][0].split(",")[-1] == "203"  # the last one says BYE
    counts = [int(c[2]) for c in from_b]
    assert counts == sorted(counts) and counts[-1] > counts[0]


async def test_rtcp_from_another_host_or_garbage_is_dropped_and_counted() -> None:
    """Only valid RTCP from a port the far end signalled (``a=rtcp``) or sends RTP from (or the
    one after it) is read; it also keeps the media clock going (a far end that suppresses
    silence is alive). Another port of the same host is a stranger's (anyone on that host
    could send from it): dropped, counted, and ours never go there."""
    pacer = Pacer()
    a = await RtpSession.open(pacer, rtcp=True, rtcp_interval=60.0, remote=("127.0.0.1", 9))
    assert a.rtcp_endpoint is not None
    stranger = await open_udp_endpoint("127.0.0.2")
    friend = await open_udp_endpoint("127.0.0.1")
    neighbour = await open_udp_endpoint("127.0.0.1")  # same host, a port nobody signalled
    a.set_rtcp_remote(friend.local_address)  # the far end's a=rtcp
    try:
        target = a.rtcp_endpoint.local_address
        report = bytes.fromhex("80c9000100000001")
        started = a.last_heard
        await asyncio.sleep(0.05)
        stranger.sendto(report, target)
        neighbour.sendto(report, target)
        friend.sendto(b"\x80\xc9 not rtcp at all", target)
        await _until(lambda: a.rtcp_stats.malformed == 1 and a.rtcp_stats.foreign == 2, 5)
        assert a.last_heard == started
        assert a.rtcp_remote == friend.local_address
        friend.sendto(report, target)
        await _until(lambda: a.rtcp_stats.received == 1, 5)
        assert a.last_heard > started
        assert (a.rtcp_stats.foreign, a.rtcp_stats.malformed, a.rtcp_stats.received) == (2, 1, 1)
        assert a.rtcp_remote == friend.local_address
    finally:
        for endpoint in (stranger, friend, neighbour):
            await endpoint.close()
        await a.close()


async def test_srtp_sessions_speak_srtcp() -> None:
    """With SRTP, reports travel as SRTCP under the same master keys: both sides measure the
    round trip, nothing readable is on the wire, and a forged datagram is counted."""
    pacer = Pacer()
    k1, k2 = SrtpKey.generate(), SrtpKey.generate()
    sessions = []
    for send, receive in ((k1, k2), (k2, k1)):
        endpoint = await open_udp_endpoint("127.0.0.1")
        sessions.append(
            RtpSession(
                pacer,
                endpoint,
                srtp=(SrtpContext(send), SrtpContext(receive)),
                rtcp=open_rtcp_endpoint(endpoint),
                rtcp_interval=0.3,
            )
        )
    a, b = sessions
    assert a.rtcp_endpoint is not None
    wire: list[bytes] = []
    read = a.rtcp_endpoint.on_datagram
    assert read is not None

    def tap(data: bytes, addr: tuple[str, int]) -> None:
        wire.append(data)
        read(data, addr)

    a.rtcp_endpoint.on_datagram = tap
    a.set_remote(b.local_address)
    b.set_remote(a.local_address)
    try:
        await _until(lambda: a.rtcp_stats.rtt is not None and b.rtcp_stats.rtt is not None, 10)
        for s, other in ((a, b), (b, a)):
            assert s.rtcp_stats.rtt is not None and s.rtcp_stats.peer_cname == other.rtcp.cname
            assert s.rtcp_stats.unauthenticated == 0 and s.rtcp_stats.malformed == 0
        assert wire and not any(b.rtcp.cname.encode() in d for d in wire)
        forged = bytearray(wire[-1])
        forged[10] ^= 0xFF
        b.rtcp_endpoint.sendto(bytes(forged), a.rtcp_endpoint.local_address)  # type: ignore[union-attr]
        await _until(lambda: a.rtcp_stats.unauthenticated == 1, 5)
        assert a.rtcp_stats.unauthenticated == 1
    finally:
        await a.close()
        await b.close()
