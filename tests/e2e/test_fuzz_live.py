"""Fuzzing a live answerer: a mutation corpus of real SIP messages (over UDP and TCP) and of
real RTP/RTCP packets, thrown at a running Phone on real loopback sockets; afterwards nothing
has raised inside it and a valid call still works end to end (keys both ways).

The budget is fixed and small in the suite (a couple of seconds per target, seeded). As a
release check, run it longer: ``DTMFGRAPH_FUZZ_SECONDS=300 DTMFGRAPH_FUZZ_SEED=7 pytest
tests/e2e/test_fuzz_live.py`` (seconds per target; any seed; docs/sip.md)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket

import pytest

from dtmfgraph.media.phone import IncomingInvite, Phone, PhoneCall
from dtmfgraph.rtp import RtpPacket
from dtmfgraph.rtp.telephone_event import TelephoneEvent

from ..sip.hostile import invite, sdp

BUDGET_S = float(os.environ.get("DTMFGRAPH_FUZZ_SECONDS", "1.5"))
"""Seconds of fuzzing per target (SIP over UDP, SIP over TCP, RTP/RTCP)."""
SEED = int(os.environ.get("DTMFGRAPH_FUZZ_SEED", "14"))

_TOKENS = [
    b"\x00",
    b"\xff\xfe",
    b"\r\n",
    b"\r\n\r\n",
    b" ",
    b";",
    b":",
    b"<",
    b">",
    b'"',
    b"9" * 5000,
    b"4294967296",
    b"-1",
    b"0",
    b"128",
    b"65536",
    b"pbx.example.com",
    b"127.0.0.1\x00",
    b"[::1",
    b"sip:",
    b"tel:+1",
    b"z9hG4bK",
    b"a=rtpmap:128 telephone-event/8000\r\n",
    b"a=rtcp:99999999999999999999 IN IP4 evil.example\r\n",
    b"c=IN IP4 evil.example\r\n",
    b"m=audio 99999 RTP/AVP 300\r\n",
    b"Content-Length: 99999999\r\n",
    b"Max-Forwards: 99999999999999999999\r\n",
    b"Via: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bKx\r\n",
    b"Require: 100rel\r\n",
    b"CSeq: 1 BYE\r\n",
    b"To: <sip:bot@127.0.0.1>;tag=zzz\r\n",
    b"\xc3\x28",
    b"%00",
]


def _request(
    method: str, target: tuple[str, int], port: int, body: str = "", **extra: str
) -> bytes:
    lines = [
        f"{method} sip:bot@{target[0]}:{target[1]} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{method.lower()}{port};rport",
        "Max-Forwards: 70",
        "From: <sip:fuzz@127.0.0.1>;tag=f1",
        f"To: <sip:bot@{target[0]}>" + (";tag=t1" if method in ("BYE", "INFO") else ""),
        f"Call-ID: fuzz-{method.lower()}",
        f"CSeq: 2 {method}",
        f"Contact: <sip:fuzz@127.0.0.1:{port}>",
        *(f"{k.replace('_', '-')}: {v}" for k, v in extra.items()),
        f"Content-Length: {len(body.encode())}",
        "",
        body,
    ]
    return "\r\n".join(lines).encode()


def _corpus(target: tuple[str, int], port: int) -> list[bytes]:
    """Real messages of the kinds a phone meets."""
    offer = sdp(attributes="a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n")
    return [
        invite(offer, target=target, via_port=port, call_id="fuzz-invite"),
        _request("OPTIONS", target, port),
        _request("BYE", target, port),
        _request("CANCEL", target, port),
        _request(
            "INFO",
            target,
            port,
            "Signal=5\r\nDuration=160\r\n",
            Content_Type="application/dtmf-relay",
        ),
        _request("REGISTER", target, port, Expires="3600"),
        _request("ACK", target, port),
        (
            "SIP/2.0 200 OK\r\n"
            f"Via: SIP/2.0/UDP {target[0]}:{target[1]};branch=z9hG4bKnothing\r\n"
            "From: <sip:bot@127.0.0.1>;tag=a\r\nTo: <sip:x@127.0.0.1>;tag=b\r\n"
            "Call-ID: stray\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        ).encode(),
    ]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to four random edits: flip, insert a token, delete, duplicate or swap lines, cut."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(6)
        at = rng.randrange(len(out) + 1)
        if kind == 0 and out:
            out[min(at, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif kind == 1:
            out[at:at] = rng.choice(_TOKENS)
        elif kind == 2:
            del out[at : at + rng.randint(1, 40)]
        elif kind == 3:
            lines = bytes(out).split(b"\r\n")
            i = rng.randrange(len(lines))
            lines.insert(rng.randrange(len(lines) + 1), lines[i])
            out = bytearray(b"\r\n".join(lines))
        elif kind == 4:
            lines = bytes(out).split(b"\r\n")
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
            out = bytearray(b"\r\n".join(lines))
        else:
            out = out[:at]
    return bytes(out)


def _rtp_corpus(rng: random.Random) -> list[bytes]:
    event = TelephoneEvent(9, True, 10, 800).serialize()
    return [
        RtpPacket(0, 1, 160, 0x1234, b"\xff" * 160).serialize(),
        RtpPacket(101, 2, 320, 0x1234, event, marker=True).serialize(),
        bytes.fromhex("80c9000100000001"),  # RTCP RR
        bytes.fromhex("81ca0003000000010105616c696365000000"),  # RTCP SDES
        bytes(rng.getrandbits(8) for _ in range(64)),
    ]


async def _fuzz_udp(target: tuple[str, int], corpus: list[bytes], rng: random.Random) -> int:
    loop = asyncio.get_running_loop()
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        end = loop.time() + BUDGET_S
        while loop.time() < end:
            with contextlib.suppress(OSError):
                sock.sendto(mutate(rng.choice(corpus), rng)[:65000], target)
                sent += 1
            if sent % 20 == 0:
                await asyncio.sleep(0.005)  # let the phone read (a full buffer only drops)
    return sent


async def _fuzz_tcp(target: tuple[str, int], corpus: list[bytes], rng: random.Random) -> int:
    loop = asyncio.get_running_loop()
    sent = 0
    end = loop.time() + BUDGET_S
    while loop.time() < end:
        try:
            reader, writer = await asyncio.open_connection(*target)
        except OSError:
            await asyncio.sleep(0.01)
            continue
        try:
            for _ in range(rng.randint(1, 20)):
                writer.write(mutate(rng.choice(corpus), rng))
                sent += 1
                await writer.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader.read(65536), 0.01)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
    return sent


async def _answered_call(caller: Phone, callee: Phone) -> tuple[PhoneCall, PhoneCall]:
    answered: asyncio.Future[PhoneCall] = asyncio.get_running_loop().create_future()

    async def on_incoming(inc: IncomingInvite) -> None:
        call = await inc.answer()  # whatever the fuzzing made of an INVITE too: media and all
        if "legit" in inc.caller and not answered.done():
            answered.set_result(call)

    callee.on_incoming = on_incoming
    host, port = callee.sip_address
    ours = await caller.dial(f"sip:bot@{host}:{port}", timeout=5)
    return ours, await asyncio.wait_for(answered, 5)


async def _keys_both_ways(a: PhoneCall, b: PhoneCall, keys: str) -> None:
    await a.send_dtmf(keys, method="rfc4733")
    assert "".join([(await b.next_key(5)).key for _ in keys]) == keys
    await b.send_dtmf(keys[::-1], method="rfc4733")
    assert "".join([(await a.next_key(5)).key for _ in keys]) == keys[::-1]


async def test_a_live_answerer_survives_mutated_sip_and_rtp(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Mutated SIP (UDP and TCP) and RTP/RTCP at a live Phone with a call up: no error is
    logged and nothing raised inside the transport; the call up before still carries keys
    both ways, and a new call is placed, answered and carries keys."""
    rng = random.Random(SEED)
    callee = await Phone.start("127.0.0.1", 0, user="bot")
    caller = await Phone.start("127.0.0.1", 0, user="legit")
    caplog.set_level(logging.WARNING, logger="dtmfgraph")
    try:
        before, before_callee = await _answered_call(caller, callee)
        target = callee.sip_address
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            corpus = _corpus(target, probe.getsockname()[1])
        udp = await _fuzz_udp(target, corpus, rng)
        tcp = await _fuzz_tcp(target, corpus, rng)
        assert before_callee.session is not None
        rtp_target = before_callee.session.local_address
        rtp = await _fuzz_udp(rtp_target, _rtp_corpus(rng), rng)
        rtcp = before_callee.session.rtcp_endpoint
        if rtcp is not None:
            rtp += await _fuzz_udp(rtcp.local_address, _rtp_corpus(rng), rng)
        assert min(udp, tcp, rtp) > 0
        await _keys_both_ways(before, before_callee, "159#")
        after, after_callee = await _answered_call(caller, callee)
        await _keys_both_ways(after, after_callee, "*0D")
        await after.hangup()
        await before.hangup()
        stats = callee.transport.stats
        assert (stats.agent_errors, stats.handler_errors) == (0, 0)
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == [], [r.getMessage() for r in errors][:5]
    finally:
        await caller.close()
        await callee.close()
