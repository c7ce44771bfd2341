"""SIP over TCP (RFC 3261 18) against real peers: baresip both ways, sipp calling in."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from dtmfgraph.media import RegistrationError
from dtmfgraph.media.phone import EndReason, IncomingInvite, Phone, PhoneCall

from ..api.harness import Receiver, stop
from ..judges.baresip import Baresip
from ..judges.baresip import free_port as free_udp_port
from ..judges.kamailio import Kamailio
from ..judges.sipp import dtmf_scenario, run_sipp
from .answering import answer_every_call
from .test_graph_sip import keys_reach_baresip_then_hang_up, start_sip_service


async def test_we_call_baresip_over_tcp(tmp_path: Path, phone: Phone) -> None:
    async with Baresip(tmp_path / "bs") as bs:
        call = await phone.dial(f"{bs.uri};transport=tcp", timeout=5)
        await call.send_dtmf("12", method="sipinfo", tone_ms=60)
        await call.send_dtmf("34", method="rfc4733", tone_ms=60)
        await bs.wait_for(lambda b: b.dtmf_starts() == "1234", 5, "keys 1234")
        await call.hangup()
        await bs.wait_event("CALL_CLOSED", 5)
    stats = phone.transport.stats
    # INVITE, ACK, 2 INFO, BYE out; 100/180/200, 2 x 200, 200 in: no UDP SIP at all
    assert stats.datagrams_out == 0 and stats.datagrams_in == 0, stats
    assert stats.tcp_connections == 1 and stats.tcp_messages_out == 5, stats
    assert stats.tcp_errors == 0
    assert bs.info_keys() == "12" and bs.rfc4733_keys() == "34"


async def test_baresip_calls_us_over_tcp(tmp_path: Path, phone: Phone) -> None:
    answered: asyncio.Future[PhoneCall] = asyncio.get_running_loop().create_future()

    async def on_incoming(invite: IncomingInvite) -> None:
        answered.set_result(await invite.answer())

    phone.on_incoming = on_incoming
    async with Baresip(tmp_path / "bs", answer=False) as bs:
        await bs.dial(f"{phone.uri};transport=tcp")
        call = await asyncio.wait_for(answered, 5)
        await bs.wait_event("CALL_ESTABLISHED", 5)
        for key in "90":
            await bs.sndcode(key)
        heard = [(await call.next_key(5)).key for _ in range(2)]
        await bs.hangup()
        end = await call.wait_ended(5)
    assert heard == ["9", "0"]
    assert end.reason is EndReason.REMOTE_BYE
    stats = phone.transport.stats
    assert stats.datagrams_in == 0 and stats.tcp_connections == 1, stats


async def test_sipp_calls_us_over_one_tcp_connection(tmp_path: Path, phone: Phone) -> None:
    calls, heard = answer_every_call(phone)
    result = await run_sipp(
        dtmf_scenario("", "5#"), phone.sip_address, tmp_path / "sipp", transport="t1"
    )
    assert result.returncode == 0, result.explain()
    end = await calls[0].wait_ended(5)
    assert end.reason is EndReason.REMOTE_BYE
    assert [(k.key, k.method) for k in heard] == [("5", "sipinfo"), ("#", "sipinfo")]
    stats = phone.transport.stats
    assert stats.datagrams_in == 0 and stats.tcp_connections == 1, stats
    assert (stats.tcp_messages_in, stats.tcp_errors) == (5, 0), stats  # INVITE ACK INFO INFO BYE


async def test_register_over_tcp_and_be_called_through_kamailio(tmp_path: Path) -> None:
    users = {"bot": "bot-secret", "alice": "alice-secret"}
    async with (
        Kamailio(tmp_path / "kam", users) as kam,
        await Phone.start("127.0.0.1", 0) as bot,
        await Phone.start("127.0.0.1", 0) as alice,
    ):
        answered: asyncio.Future[PhoneCall] = asyncio.get_running_loop().create_future()

        async def on_incoming(invite: IncomingInvite) -> None:
            answered.set_result(await invite.answer())

        bot.on_incoming = on_incoming
        reg = await bot.register(
            kam.uri("bot"), registrar=f"sip:{kam.domain};transport=tcp", auth=("bot", "pw")
        )
        with pytest.raises(RegistrationError, match="credentials rejected"):
            await reg.wait(3)
        await reg.unregister()
        reg = await bot.register(
            kam.uri("bot"), registrar=f"sip:{kam.domain};transport=tcp", auth=("bot", users["bot"])
        )
        await reg.wait(5)
        # alice (UDP) calls bot; Kamailio reaches bot's TCP contact
        call = await alice.dial(kam.uri("bot"), timeout=5, auth=("alice", "alice-secret"))
        theirs = await asyncio.wait_for(answered, 5)
        await call.send_dtmf("8", method="sipinfo", tone_ms=60)
        assert (await theirs.next_key(5)).key == "8"
        await call.hangup()
        await theirs.wait_ended(5)
        stats = bot.transport.stats
        assert stats.datagrams_in == 0 and stats.tcp_messages_in >= 6, stats
    registers = [r for r in kam.requests() if r.startswith("REGISTER")]
    assert registers


async def test_graph_trunk_over_tcp(tmp_path: Path, receiver: Receiver) -> None:
    bs = Baresip(tmp_path / "bs", user="+14255550100", sip_port=free_udp_port())
    trunk = f"sip:{{number}}@127.0.0.1:{bs.sip_port};transport=tcp"
    service, server, task = await start_sip_service(tmp_path / "svc", receiver, sip_trunk_uri=trunk)
    try:
        async with bs:
            await keys_reach_baresip_then_hang_up(
                service, receiver, bs, "+14255550100", "26", "sipinfo"
            )
        stats = service.media.phone.transport.stats  # type: ignore[attr-defined]
        assert stats.tcp_connections == 1 and stats.datagrams_out == 0, stats
    finally:
        await stop(server, task)


async def test_a_keepalive_ping_is_answered_with_a_pong(phone: Phone) -> None:
    """RFC 5626 3.5.1: a double CRLF on a connection to us gets one CRLF back (a client behind
    NAT keeps its flow to us alive this way, and learns that it still works)."""
    reader, writer = await asyncio.open_connection(*phone.transport.local_address)
    try:
        for _ in range(2):
            writer.write(b"\r\n\r\n")
            assert await asyncio.wait_for(reader.readexactly(2), 2) == b"\r\n"
        writer.write(b"\r\n")  # a lone CRLF (a pong) is not answered
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.3)
    finally:
        writer.close()
    assert phone.transport.stats.pongs_sent == 2


async def test_a_registrar_that_stops_answering_keepalives_is_registered_with_again(
    tmp_path: Path,
) -> None:
    """RFC 5626 4.4.1 against Kamailio (which answers pings): we ping the connection our
    registration uses; when Kamailio hangs (SIGSTOP: the connection looks open, nothing
    answers) the unanswered ping closes it and the registration is sent again at once on a new
    connection, which Kamailio takes once it runs again: re-bound within seconds, where the
    refresh would have come in an hour."""
    users = {"bot": "bot-secret"}
    async with Kamailio(tmp_path / "kam", users) as kam, await Phone.start("127.0.0.1", 0) as bot:
        stats = bot.transport.stats
        bot.transport.keepalive_interval, bot.transport.keepalive_timeout = 0.3, 1.0
        reg = await bot.register(
            kam.uri("bot"), registrar=f"sip:{kam.domain};transport=tcp", auth=("bot", "bot-secret")
        )
        await reg.wait(5)
        assert reg.registrations == 1 and stats.tcp_connections == 1
        await _until(lambda: stats.pongs_received >= 2, 5, "Kamailio's pongs")
        kam.freeze()
        try:
            await _until(lambda: stats.keepalive_failures == 1, 5, "the dead connection")
            await _until(lambda: stats.tcp_connections == 2, 5, "a new connection")
        finally:
            kam.thaw()
        await _until(lambda: reg.registrations == 2, 10, "the binding renewed")
        assert reg.registered and stats.keepalive_failures == 1
        await kam.wait_bound("bot")
    registers = [r for r in kam.requests() if r.startswith("REGISTER")]
    assert len(registers) >= 3  # the challenged first one, its answer, the one after the hang


async def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_a_registrar_reached_over_udp_gets_keepalive_datagrams(phone: Phone) -> None:
    """What a NAT between us and the registrar sees: besides REGISTERs, a double-CRLF datagram
    every ``udp_keepalive_interval``, so its mapping for the registrar's calls stays."""
    registrar = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    registrar.bind(("127.0.0.1", 0))
    registrar.setblocking(False)
    host, port = registrar.getsockname()
    try:
        phone.transport.udp_keepalive_interval = 0.1
        await phone.register(f"sip:bot@{host}:{port}")
        await asyncio.sleep(0.55)
        got: list[bytes] = []
        with contextlib.suppress(BlockingIOError):
            while True:
                got.append(registrar.recv(65536))
    finally:
        registrar.close()
    keepalives = [d for d in got if d == b"\r\n\r\n"]
    assert any(d.startswith(b"REGISTER ") for d in got)
    assert 3 <= len(keepalives) <= 6, got
    assert phone.transport.stats.udp_keepalives == len(keepalives)
