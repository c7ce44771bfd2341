"""The Phone followed by a far end's REFER (an IVR handing the caller to an agent): sipp is the
IVR that transfers us, baresip the agent. Keys pressed after the transfer reach the agent. And
the Phone taken over by an INVITE with Replaces (an attended transfer to us), sipp both ends."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from dtmfgraph.media import Phone

from ..judges.baresip import Baresip, require_baresip
from ..judges.baresip import free_port as free_udp_port
from ..judges.sipp import run_sipp, sipp_logged, sipp_uas
from .refer_scenarios import holding_scenario, ivr_refer_scenario, replacing_caller_scenario
from .test_cli import _run


async def test_phone_follows_an_ivrs_refer_to_baresip(tmp_path: Path) -> None:
    """We call the IVR (sipp); it REFERs us to baresip: we answer 202, NOTIFY 100 then 200,
    call baresip, BYE the IVR (sipp checks each message and exits 0); ``transferred`` is the
    new call, and keys sent on it reach baresip."""
    require_baresip()
    async with (
        Baresip(tmp_path / "agent", user="agent") as agent,
        await Phone.start("127.0.0.1", 0, (31000, 31200)) as phone,
    ):
        host, port = phone.sip_address
        scenario = ivr_refer_scenario(agent.uri)
        async with sipp_uas(
            tmp_path / "ivr", scenario, timeout_s=20, extra=(f"{host}:{port}",)
        ) as (
            ivr_port,
            ivr,
        ):
            call = await phone.dial(f"sip:ivr@127.0.0.1:{ivr_port}", timeout=5)
            new = await asyncio.wait_for(call.transferred, 10)
            await agent.wait_event("CALL_ESTABLISHED", 5)
            end = await call.wait_ended(5)
            assert not end.by_remote  # we ended the IVR's leg
            _, err = await asyncio.wait_for(ivr.communicate(), 15)
            assert ivr.returncode == 0, err.decode(errors="replace")
        assert new.remote_uri == agent.uri
        await new.send_dtmf("73", method="rfc4733")
        await agent.wait_for(lambda b: b.rfc4733_keys() == "73", 5, "keys after the transfer")
        await new.hangup()


async def test_phone_refuses_a_refer_by_policy(tmp_path: Path) -> None:
    """``refer_policy = "domains"`` with the target's host not listed: 603 to the REFER (sipp
    insists on it), no transfer, the call goes on until we hang up."""
    require_baresip()
    async with await Phone.start("127.0.0.1", 0, (31200, 31400)) as phone:
        phone.refer_policy = "domains"
        phone.refer_domains = ("agents.example.com",)
        host, port = phone.sip_address
        scenario = ivr_refer_scenario("sip:agent@127.0.0.1:9", accepted=False)
        async with sipp_uas(
            tmp_path / "ivr", scenario, timeout_s=20, extra=(f"{host}:{port}",)
        ) as (
            ivr_port,
            ivr,
        ):
            call = await phone.dial(f"sip:ivr@127.0.0.1:{ivr_port}", timeout=5)
            await asyncio.sleep(1.0)
            assert call.ended is None and not call.transferred.done()
            await call.hangup()
            _, err = await asyncio.wait_for(ivr.communicate(), 15)
            assert ivr.returncode == 0, err.decode(errors="replace")


async def test_dtmfgraph_call_follows_the_transfer_and_says_where(tmp_path: Path) -> None:
    """``dtmfgraph call`` to the IVR (sipp) that transfers it to baresip: it prints where it
    was transferred, and the keys it presses after the pause reach baresip."""
    require_baresip()
    sip_port = free_udp_port()
    async with Baresip(tmp_path / "agent", user="agent") as agent:
        scenario = ivr_refer_scenario(agent.uri)
        peer = f"127.0.0.1:{sip_port}"
        async with sipp_uas(tmp_path / "ivr", scenario, timeout_s=20, extra=(peer,)) as (
            ivr_port,
            ivr,
        ):
            code, out, err = await _run(
                "call", f"sip:ivr@127.0.0.1:{ivr_port}", "--sip-port", str(sip_port),
                "--send", "WW73", "--method", "rfc4733", "--json",
            )  # fmt: skip
            assert code == 0, err
            _, sipp_err = await asyncio.wait_for(ivr.communicate(), 15)
            assert ivr.returncode == 0, sipp_err.decode(errors="replace")
        await agent.wait_for(lambda b: b.rfc4733_keys() == "73", 5, "keys after the transfer")
    events = [json.loads(line) for line in out.splitlines()]
    moved = [e for e in events if e["event"] == "transferred"]
    assert [e["uri"] for e in moved] == [agent.uri]
    kinds = [e["event"] for e in events]
    assert kinds.index("transferred") < kinds.index("sent")


async def test_phone_honours_an_invite_with_replaces(tmp_path: Path) -> None:
    """We call sipp (the old far end); another sipp calls us with Replaces naming that dialog:
    the Phone answers it without asking ``on_incoming``, BYEs the old call (sipp checks), and
    ``transferred`` is the new call, on which a key (SIP INFO) reaches the new far end."""
    asked: list[object] = []
    async with await Phone.start("127.0.0.1", 0, (31000, 31200)) as phone:
        phone.on_incoming = asked.append
        host, port = phone.sip_address
        extra = (f"{host}:{port}", "-trace_logs")
        async with sipp_uas(tmp_path / "old", holding_scenario(), timeout_s=20, extra=extra) as (
            old_port,
            old,
        ):
            call = await phone.dial(f"sip:old@127.0.0.1:{old_port}", timeout=5)
            dialog = await sipp_logged(tmp_path / "old", "DIALOG")
            sip_call_id, our_tag, its_tag = dialog.split()
            assert sip_call_id == call.call_id
            replacer = asyncio.ensure_future(
                run_sipp(
                    replacing_caller_scenario(f"{sip_call_id};to-tag={our_tag};from-tag={its_tag}"),
                    (host, port),
                    tmp_path / "new",
                )
            )
            new = await asyncio.wait_for(call.transferred, 10)
            end = await call.wait_ended(5)
            assert not end.by_remote  # we ended the old leg
            _, err = await asyncio.wait_for(old.communicate(), 15)
            assert old.returncode == 0, err.decode(errors="replace")
            assert new.direction == "inbound" and new.remote_uri.startswith("sip:sipp@")
            await new.send_dtmf("7", method="sipinfo")
            result = await asyncio.wait_for(replacer, 30)
            assert result.returncode == 0, result.explain()
    assert asked == []
