"""Attended transfers on real SIP calls, the official SDK as the bot and sipp as the peers:
the bot's consultative transfer (sipp as the caller, the transferee of call A, and as the
agent, the target of call B), and an INVITE with Replaces taking over one of our calls."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dtmfgraph.service.model import far_participant_id

from ..api.harness import Receiver, stop
from ..api.sdkhelp import dtmf_body, sdk_mod
from ..judges.baresip import require_baresip
from ..judges.sipp import run_sipp, sipp_logged, sipp_uas
from .refer_scenarios import (
    consultative_refer_scenario,
    holding_scenario,
    refer_scenario,
    replaced_scenario,
    replacing_caller_scenario,
)
from .test_graph_sip import place_call, start_sip_service


def _consultative_body(target: str, replaces_call_id: str) -> Any:
    m = lambda p: sdk_mod("v1.0", p)  # noqa: E731
    ident = m("models.identity").Identity(id=target)
    info = m("models.invitation_participant_info").InvitationParticipantInfo(
        identity=m("models.communications_identity_set").CommunicationsIdentitySet(user=ident),
        replaces_call_id=replaces_call_id,
    )
    body = m("communications.calls.item.transfer.transfer_post_request_body")
    return body.TransferPostRequestBody(transfer_target=info)


def _ended(call_id: str) -> Any:
    return lambda n: (
        n["resourceUrl"] == f"/communications/calls/{call_id}" and n["changeType"] == "deleted"
    )


async def test_consultative_transfer_refers_a_to_b_with_replaces(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The bot has call A with the caller (sipp) and call B with the agent (sipp). It
    transfers A with transferTarget.replacesCallId = B: the caller gets REFER with
    Refer-To <agent?Replaces=B's Call-ID;to-tag=agent's tag;from-tag=ours> (sipp checks it),
    accepts it and reports 100 then 200; A ends transferring, transferAccepted, terminated
    0/7015 with terminationReason AppTransferred; when the agent hangs up B (replaced), B ends
    0/7015 as well."""
    require_baresip()  # the SIP service's test set-up
    service, server, task = await start_sip_service(tmp_path / "svc", receiver)
    try:
        host, sip_port = service.media.sip_address
        peer = (f"{host}:{sip_port}", "-trace_logs")
        async with sipp_uas(tmp_path / "agent", replaced_scenario(), timeout_s=30, extra=peer) as (
            agent_port,
            agent,
        ):
            agent_uri = f"sip:agent@127.0.0.1:{agent_port}"
            client, call_b = await place_call(service, receiver, "v1.0", agent_uri)
            async with sipp_uas(
                tmp_path / "caller",
                consultative_refer_scenario(agent_uri),
                timeout_s=30,
                extra=peer,
            ) as (caller_port, caller):
                _, call_a = await place_call(
                    service, receiver, "v1.0", f"sip:caller@127.0.0.1:{caller_port}"
                )
                calls = client.communications.calls
                await calls.by_call_id(call_a.id).transfer.post(
                    _consultative_body(agent_uri, call_b.id)
                )
                [end_a] = await receiver.wait_for(_ended(call_a.id), timeout=15)
                _, err = await asyncio.wait_for(caller.communicate(), 15)
                assert caller.returncode == 0, err.decode(errors="replace")
                # the agent, its call taken over, hangs up B (told to by an INFO here)
                await calls.by_call_id(call_b.id).send_dtmf_tones.post(
                    dtmf_body("v1.0", "1", dtmfMethod="sipinfo")
                )
                [end_b] = await receiver.wait_for(_ended(call_b.id), timeout=15)
                _, err = await asyncio.wait_for(agent.communicate(), 15)
                assert agent.returncode == 0, err.decode(errors="replace")
    finally:
        await stop(server, task)
    refer_to = await sipp_logged(tmp_path / "caller", "REFER-TO")
    b_call_id = await sipp_logged(tmp_path / "agent", "CALL-ID")
    assert refer_to.startswith(f"{agent_uri}?Replaces={quote(b_call_id, safe='')}%3Bto-tag%3D")
    states = [
        n["resourceData"]["state"]
        for n in receiver.notes
        if n["resourceUrl"] == f"/communications/calls/{call_a.id}"
    ]
    assert states == ["establishing", "established", "transferring", "transferAccepted",
                      "terminated"]  # fmt: skip
    assert end_a["resourceData"]["terminationReason"] == "AppTransferred"
    for end in (end_a, end_b):
        info = end["resourceData"]["resultInfo"]
        assert (info["code"], info["subcode"], info["message"]) == (
            0,
            7015,
            "GracefulTransferCompleted",
        )


async def test_invite_with_replaces_takes_over_the_graph_call(
    tmp_path: Path, receiver: Receiver
) -> None:
    """An attended transfer to us: the bot calls sipp (the old far end); another sipp calls us
    with Replaces naming that dialog (its to-tag ours, its from-tag the old far end's). We
    answer it, BYE the old dialog (sipp checks), and the same Graph call goes on with the new
    far end: still established, the roster notified with the new participant, and a key the
    bot sends (SIP INFO) reaches the new far end, which then hangs up. Replaces naming no
    dialog of ours is 481."""
    require_baresip()  # the SIP service's test set-up
    service, server, task = await start_sip_service(tmp_path / "svc", receiver)
    try:
        host, sip_port = service.media.sip_address
        extra = (f"{host}:{sip_port}", "-trace_logs")
        async with sipp_uas(tmp_path / "old", holding_scenario(), timeout_s=30, extra=extra) as (
            old_port,
            old,
        ):
            client, call = await place_call(
                service, receiver, "v1.0", f"sip:old@127.0.0.1:{old_port}"
            )
            sip_call_id, our_tag, its_tag = (await sipp_logged(tmp_path / "old", "DIALOG")).split()
            unknown = await run_sipp(
                replacing_caller_scenario(
                    f"{sip_call_id};to-tag=nope;from-tag={its_tag}", expect=481
                ),
                (host, sip_port),
                tmp_path / "unknown",
            )
            assert unknown.returncode == 0, unknown.explain()
            replaces = f"{sip_call_id};to-tag={our_tag};from-tag={its_tag}"
            new = asyncio.ensure_future(
                run_sipp(replacing_caller_scenario(replaces), (host, sip_port), tmp_path / "new")
            )
            _, err = await asyncio.wait_for(old.communicate(), 15)
            assert old.returncode == 0, err.decode(errors="replace")  # our BYE reached it
            roster_url = f"/communications/calls/{call.id}/participants"
            [roster] = await receiver.wait_for(lambda n: n["resourceUrl"] == roster_url, 10)
            calls = client.communications.calls.by_call_id(call.id)
            await calls.send_dtmf_tones.post(dtmf_body("v1.0", "7", dtmfMethod="sipinfo"))
            result = await asyncio.wait_for(new, 30)
            assert result.returncode == 0, result.explain()
            [end] = await receiver.wait_for(_ended(call.id), timeout=15)
    finally:
        await stop(server, task)
    far = roster["resourceData"][1]
    assert far["id"] == far_participant_id(call.id, 1)
    assert far["info"]["identity"]["user"]["id"].startswith("sip:sipp@127.0.0.1:")
    states = [
        n["resourceData"]["state"]
        for n in receiver.notes
        if n["resourceUrl"] == f"/communications/calls/{call.id}"
    ]
    assert states == ["establishing", "established", "terminated"]
    assert end["resourceData"]["resultInfo"]["code"] == 200  # the new far end hung up


async def test_refused_consultative_transfer_leaves_both_calls(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The caller (sipp) refuses the REFER of a consultative transfer (603): call A is
    established again with 500/7700 naming the refusal; call B is untouched (still
    established, no notification); the bot then hangs both up."""
    require_baresip()
    service, server, task = await start_sip_service(tmp_path / "svc", receiver)
    try:
        host, sip_port = service.media.sip_address
        async with (
            sipp_uas(tmp_path / "agent", timeout_s=30) as (agent_port, agent),
            sipp_uas(
                tmp_path / "caller",
                refer_scenario(603, "Decline"),
                timeout_s=30,
                extra=(f"{host}:{sip_port}",),
            ) as (caller_port, caller),
        ):
            agent_uri = f"sip:agent@127.0.0.1:{agent_port}"
            client, call_b = await place_call(service, receiver, "v1.0", agent_uri)
            _, call_a = await place_call(
                service, receiver, "v1.0", f"sip:caller@127.0.0.1:{caller_port}"
            )
            calls = client.communications.calls
            await calls.by_call_id(call_a.id).transfer.post(
                _consultative_body(agent_uri, call_b.id)
            )
            [back] = await receiver.wait_for(
                lambda n: (
                    n["resourceUrl"] == f"/communications/calls/{call_a.id}"
                    and n["resourceData"]["state"] == "established"
                    and n["resourceData"].get("resultInfo") is not None
                ),
                timeout=15,
            )
            b_now = await calls.by_call_id(call_b.id).get()
            assert b_now is not None and b_now.state.value == "established"
            for cid in (call_a.id, call_b.id):
                await calls.by_call_id(cid).delete()
            for proc in (caller, agent):
                _, err = await asyncio.wait_for(proc.communicate(), 15)
                assert proc.returncode == 0, err.decode(errors="replace")
    finally:
        await stop(server, task)
    info = back["resourceData"]["resultInfo"]
    assert (info["code"], info["subcode"]) == (500, 7700)
    assert "603" in info["message"]
    b_states = [
        n["resourceData"]["state"]
        for n in receiver.notes
        if n["resourceUrl"] == f"/communications/calls/{call_b.id}"
    ]
    assert b_states == ["establishing", "established", "terminating", "terminated"]
