"""Call control on real SIP calls, the official SDK as the bot and baresip as the far end:
the roster of a SIP call, and mute judged by what baresip heard.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dtmfgraph.service.model import far_participant_id
from dtmfgraph.tones.wav import encode_wav

from ..api.audio import PromptServer, play_prompt_body, tone
from ..api.harness import Receiver, stop
from ..api.sdkhelp import dtmf_body, sdk_mod
from ..judges.baresip import Baresip, require_baresip
from ..judges.sipp import sipp_uas, uas_reject_scenario
from .refer_scenarios import ivr_refer_scenario, refer_scenario
from .test_graph_sip import SipService, ev, is_op_end, place_call, start_sip_service


@pytest.fixture
async def svc(tmp_path: Path, receiver: Receiver) -> AsyncIterator[SipService]:
    require_baresip()
    service, server, task = await start_sip_service(tmp_path / "svc", receiver)
    try:
        yield service
    finally:
        await stop(server, task)


@pytest.fixture
async def prompts() -> AsyncIterator[PromptServer]:
    async with PromptServer().running() as server:
        yield server


def _loud_samples(audio: np.ndarray) -> int:
    return int(np.count_nonzero(np.abs(audio.astype(np.int32)) > 1000))


async def test_muted_bot_is_silent_to_baresip_but_keys_still_go_out(
    tmp_path: Path, svc: SipService, receiver: Receiver, prompts: PromptServer
) -> None:
    """The SDK mutes the bot: a 0.5 s prompt played then completes as usual but baresip
    records silence, and a key sent meanwhile (RFC 4733) reaches it; unmuted, the same
    prompt is heard. The roster says isMuted and names baresip's URI as the far end."""
    prompts.files["beep.wav"] = encode_wav(tone(1000, 0.5), 16000)
    async with Baresip(tmp_path / "bs", record=True) as bs:
        client, call = await place_call(svc, receiver, "v1.0", bs.uri)
        await bs.wait_event("CALL_ESTABLISHED", 5)
        calls = client.communications.calls.by_call_id(call.id)
        roster = await calls.participants.get()
        bot, far = roster.value
        assert bot.id == call.my_participant_id
        assert far.info.identity.user.id == bs.uri
        assert ev(far.media_streams[0].direction) == "sendReceive"

        mute = sdk_mod("v1.0", "communications.calls.item.mute.mute_post_request_body")
        op = await calls.mute.post(mute.MutePostRequestBody(client_context="m"))
        assert ev(op.status) == "completed"
        played = await calls.play_prompt.post(play_prompt_body("v1.0", prompts.url("beep.wav")))
        [done] = await receiver.wait_for(is_op_end(played.id), timeout=10)
        assert done["resourceData"]["completionReason"] == "completedSuccessfully"
        keys = await calls.send_dtmf_tones.post(dtmf_body("v1.0", "5", dtmfMethod="rfc4733"))
        await receiver.wait_for(is_op_end(keys.id), timeout=10)
        await bs.wait_for(lambda b: b.rfc4733_keys() == "5", 5, "the key sent while muted")

        unmute = sdk_mod("v1.0", "communications.calls.item.unmute.unmute_post_request_body")
        await calls.unmute.post(unmute.UnmutePostRequestBody(client_context="u"))
        played = await calls.play_prompt.post(play_prompt_body("v1.0", prompts.url("beep.wav")))
        await receiver.wait_for(is_op_end(played.id), timeout=10)
        await asyncio.sleep(0.3)
        await calls.delete()
        await bs.wait_event("CALL_CLOSED", 5)
    heard = bs.recorded_audio()
    loud = _loud_samples(heard)
    # one prompt's worth: the one played while muted went out as silence
    assert 0.2 * 8000 < loud <= 0.55 * 8000, f"{loud} loud samples: one prompt's worth expected"
    rosters = [
        n["resourceData"]
        for n in receiver.notes
        if n["resourceUrl"] == f"/communications/calls/{call.id}/participants"
    ]
    assert [r[0]["isMuted"] for r in rosters] == [True, False]


def _transfer_body(version: str, target: str) -> Any:
    m = lambda p: sdk_mod(version, p)  # noqa: E731
    ident = m("models.identity").Identity(id=target)
    ids = m("models.communications_identity_set").CommunicationsIdentitySet(user=ident)
    info = m("models.invitation_participant_info").InvitationParticipantInfo(identity=ids)
    body = m("communications.calls.item.transfer.transfer_post_request_body")
    return body.TransferPostRequestBody(transfer_target=info)


def _states(receiver: Receiver, call_id: str) -> list[tuple[str, str, Any]]:
    return [
        (n["changeType"], n["resourceData"]["state"], n["resourceData"].get("resultInfo"))
        for n in receiver.notes
        if n["resourceUrl"] == f"/communications/calls/{call_id}"
    ]


@pytest.mark.parametrize("version", ["v1.0", "beta"])
async def test_blind_transfer_of_baresip_to_a_second_baresip(
    tmp_path: Path, svc: SipService, receiver: Receiver, version: str
) -> None:
    """The bot transfers baresip (alice) to another baresip (bob) with REFER: bob gets alice's
    INVITE and answers it; the bot is told transferring, transferAccepted, then terminated
    with resultInfo 0/7015 GracefulTransferCompleted, in that order."""
    async with (
        Baresip(tmp_path / "alice") as alice,
        Baresip(tmp_path / "bob", user="bob") as bob,
    ):
        client, call = await place_call(svc, receiver, version, alice.uri)
        await alice.wait_event("CALL_ESTABLISHED", 5)
        calls = client.communications.calls.by_call_id(call.id)
        assert await calls.transfer.post(_transfer_body(version, bob.uri)) is None
        await receiver.wait_for(
            lambda n: (
                n["resourceUrl"] == f"/communications/calls/{call.id}"
                and n["resourceData"]["state"] == "terminated"
            ),
            timeout=15,
        )
        await bob.wait_event("CALL_ESTABLISHED", 5)  # alice called bob, bob answered
        [invited] = bob.of_type("CALL_ESTABLISHED")
        assert invited.data["direction"] == "incoming"
        assert invited.data["peeruri"] == alice.uri
    states = _states(receiver, call.id)
    assert [s[:2] for s in states] == [
        ("updated", "establishing"),
        ("updated", "established"),
        ("updated", "transferring"),
        ("updated", "transferAccepted"),
        ("deleted", "terminated"),
    ]
    result = states[-1][2]
    assert (result["code"], result["subcode"], result["message"]) == (
        0,
        7015,
        "GracefulTransferCompleted",
    )


async def test_transfer_to_a_busy_target_leaves_the_call_established_with_keys(
    tmp_path: Path, svc: SipService, receiver: Receiver
) -> None:
    """The target (sipp) answers baresip's INVITE 486: baresip reports the failure in a
    sipfrag NOTIFY; the bot is told transferring, transferAccepted, then established again
    with 500/7000 naming SIP 486; the call goes on: keys still reach baresip."""
    scenario = uas_reject_scenario(486, "Busy Here")
    async with (
        sipp_uas(tmp_path / "sipp", scenario, timeout_s=15) as (port, sipp),
        Baresip(tmp_path / "alice") as alice,
    ):
        client, call = await place_call(svc, receiver, "v1.0", alice.uri)
        await alice.wait_event("CALL_ESTABLISHED", 5)
        calls = client.communications.calls.by_call_id(call.id)
        await calls.transfer.post(_transfer_body("v1.0", f"sip:busy@127.0.0.1:{port}"))
        await receiver.wait_for(
            lambda n: (
                n["resourceUrl"] == f"/communications/calls/{call.id}"
                and n["resourceData"]["state"] == "established"
            ),
            count=2,
            timeout=15,
        )
        assert (await sipp.wait()) == 0  # sipp got the INVITE and refused it
        keys = await calls.send_dtmf_tones.post(dtmf_body("v1.0", "42", dtmfMethod="rfc4733"))
        await receiver.wait_for(is_op_end(keys.id), timeout=10)
        await alice.wait_for(lambda b: b.rfc4733_keys() == "42", 5, "keys after the failure")
        back = await calls.get()
        assert ev(back.state) == "established" and back.result_info is None
        await calls.delete()
        await receiver.wait_for(
            lambda n: (
                n["resourceUrl"] == f"/communications/calls/{call.id}"
                and n["changeType"] == "deleted"
            )
        )
    states = _states(receiver, call.id)
    assert [s[:2] for s in states][2:5] == [
        ("updated", "transferring"),
        ("updated", "transferAccepted"),
        ("updated", "established"),
    ]
    failed = states[4][2]
    assert (failed["code"], failed["subcode"]) == (500, 7000)
    assert "486" in failed["message"]
    assert states[-1][1] == "terminated" and states[-1][2]["subcode"] == 7000


REFER_CASES = [
    # (what sipp does, the call's outcome, words in the message or result)
    pytest.param(603, (), ("established", 500, 7000, "603"), id="603-to-REFER"),
    pytest.param(202, (), ("established", 500, 7000, "no final report"), id="no-NOTIFY"),
    pytest.param(
        202,
        (
            ("100 Trying", "active;expires=60"),
            ("180 Ringing", "active;expires=60"),
            ("200 OK", "terminated;reason=noresource"),
        ),
        ("terminated", 0, 7015, "GracefulTransferCompleted"),
        id="sipfrag-100-180-200",
    ),
    pytest.param(
        202,
        (("200 OK", "terminated;reason=noresource"),),
        ("terminated", 0, 7015, "GracefulTransferCompleted"),
        id="one-NOTIFY-terminated",
    ),
    pytest.param(
        202,
        (("183 Session Progress", "active"), ("503 Service Unavailable", "terminated")),
        ("established", 500, 7000, "503"),
        id="sipfrag-503",
    ),
]


@pytest.mark.parametrize(("refer_status", "notifies", "want"), REFER_CASES)
async def test_refer_edge_cases_with_sipp(
    tmp_path: Path,
    receiver: Receiver,
    refer_status: int,
    notifies: tuple[tuple[str, str], ...],
    want: tuple[str, int, int, str],
) -> None:
    """sipp as the transferee: REFER refused, no NOTIFY at all (the dial timeout ends the
    wait), sipfrag 100/180 then 200, a single NOTIFY that ends the subscription, a final 503:
    each ends as the spec says; a failure leaves the call established, and our BYE ends it."""
    require_baresip()
    service, server, task = await start_sip_service(tmp_path / "svc", receiver, dial_timeout_s=5.0)
    scenario = refer_scenario(
        refer_status, "Decline" if refer_status == 603 else "Accepted", notifies
    )
    try:
        host, sip_port = service.media.sip_address
        peer = f"{host}:{sip_port}"
        # sipp's own requests (NOTIFY) go to its remote host: the service
        async with sipp_uas(tmp_path / "sipp", scenario, timeout_s=20, extra=(peer,)) as (
            port,
            sipp,
        ):
            client, call = await place_call(service, receiver, "v1.0", f"sip:bob@127.0.0.1:{port}")
            calls = client.communications.calls.by_call_id(call.id)
            await calls.transfer.post(_transfer_body("v1.0", "sip:carol@127.0.0.1:9"))
            state, code_, subcode, words = want
            [note] = await receiver.wait_for(
                lambda n: (
                    n["resourceUrl"] == f"/communications/calls/{call.id}"
                    and n["resourceData"]["state"] == state
                    and n["resourceData"].get("resultInfo") is not None
                ),
                timeout=15,
            )
            info = note["resourceData"]["resultInfo"]
            assert (info["code"], info["subcode"]) == (code_, subcode)
            assert words in info["message"]
            if state == "established":
                await calls.delete()
            _, err = await asyncio.wait_for(sipp.communicate(), 15)
            assert sipp.returncode == 0, err.decode(errors="replace")
    finally:
        await stop(server, task)
    states = [s[1] for s in _states(receiver, call.id)]
    assert states[2] == "transferring"
    if refer_status < 300:
        assert states[3] == "transferAccepted"
    else:
        assert "transferAccepted" not in states
    assert states[-1] == "terminated"


def _redirect_body(version: str, *targets: str, callback: str | None = None) -> Any:
    m = lambda p: sdk_mod(version, p)  # noqa: E731
    infos = [
        m("models.invitation_participant_info").InvitationParticipantInfo(
            identity=m("models.communications_identity_set").CommunicationsIdentitySet(
                user=m("models.identity").Identity(id=t)
            )
        )
        for t in targets
    ]
    body = m("communications.calls.item.redirect.redirect_post_request_body")
    return body.RedirectPostRequestBody(targets=infos, timeout=30, callback_uri=callback)


async def test_redirect_baresip_caller_to_another_baresip(
    tmp_path: Path, svc: SipService, receiver: Receiver
) -> None:
    """baresip (alice) calls the service; the bot redirects the ringing call to bob: alice
    gets 302 with bob as Contact, follows it, and bob answers alice; the call ends
    terminated 200/7000 and was never answered by us."""
    async with (
        Baresip(tmp_path / "alice", answer=False) as alice,
        Baresip(tmp_path / "bob", user="bob") as bob,
    ):
        await alice.dial(svc.media.uri)  # type: ignore[attr-defined]
        [created] = await receiver.wait_for(lambda n: n["changeType"] == "created")
        cid = created["resourceData"]["id"]
        calls = svc.incoming_sdk("v1.0").communications.calls.by_call_id(cid)
        assert await calls.redirect.post(_redirect_body("v1.0", bob.uri)) is None
        [end] = await receiver.wait_for(
            lambda n: (
                n["resourceUrl"] == f"/communications/calls/{cid}" and n["changeType"] == "deleted"
            )
        )
        info = end["resourceData"]["resultInfo"]
        assert (info["code"], info["subcode"]) == (200, 7000)
        assert end["resourceData"]["state"] == "terminated"
        await bob.wait_event("CALL_ESTABLISHED", 10)
        [invited] = bob.of_type("CALL_ESTABLISHED")
        assert invited.data["peeruri"] == alice.uri
    states = [s[1] for s in _states(receiver, cid)]
    assert states == ["incoming", "terminated"]


async def test_graph_call_follows_an_ivrs_transfer_and_keys_go_on(
    tmp_path: Path, svc: SipService, receiver: Receiver
) -> None:
    """The bot calls an IVR (sipp) that transfers the call to an agent (baresip) with REFER:
    the service follows it (sipp checks our 202, NOTIFYs and BYE); the same Graph call stays
    established, its roster is notified with the new far end (baresip's URI, a new participant
    id); keys sent afterwards reach baresip and baresip's keys reach the bot's subscription."""
    async with Baresip(tmp_path / "agent", user="agent") as agent:
        host, sip_port = svc.media.sip_address  # type: ignore[attr-defined]
        scenario = ivr_refer_scenario(agent.uri)
        async with sipp_uas(
            tmp_path / "ivr", scenario, timeout_s=20, extra=(f"{host}:{sip_port}",)
        ) as (port, ivr):
            client, call = await place_call(svc, receiver, "v1.0", f"sip:ivr@127.0.0.1:{port}")
            calls = client.communications.calls.by_call_id(call.id)
            [roster] = await receiver.wait_for(
                lambda n: n["resourceUrl"] == f"/communications/calls/{call.id}/participants",
                timeout=15,
            )
            _, err = await asyncio.wait_for(ivr.communicate(), 15)
            assert ivr.returncode == 0, err.decode(errors="replace")
        await agent.wait_event("CALL_ESTABLISHED", 5)
        far = roster["resourceData"][1]
        assert far["info"]["identity"]["user"]["id"] == agent.uri
        # a new participant: the far end's id counts the far ends the call has had
        assert far["id"] == far_participant_id(call.id, 1) != far_participant_id(call.id, 0)
        back = await calls.get()
        assert ev(back.state) == "established"
        keys = await calls.send_dtmf_tones.post(dtmf_body("v1.0", "73", dtmfMethod="rfc4733"))
        await receiver.wait_for(is_op_end(keys.id), timeout=10)
        await agent.wait_for(lambda b: b.rfc4733_keys() == "73", 5, "keys after the transfer")
        subscribe = sdk_mod(
            "v1.0",
            "communications.calls.item.subscribe_to_tone.subscribe_to_tone_post_request_body",
        )
        await calls.subscribe_to_tone.post(subscribe.SubscribeToTonePostRequestBody())
        await agent.sndcode("5")
        [tone] = await receiver.wait_for(lambda n: "toneInfo" in n["resourceData"], timeout=10)
        assert tone["resourceData"]["toneInfo"]["tone"] == "tone5"
        roster_now = (await calls.participants.get()).value
        assert roster_now[1].info.identity.user.id == agent.uri
        await calls.delete()
        await agent.wait_event("CALL_CLOSED", 5)
    assert [s[1] for s in _states(receiver, call.id)][:2] == ["establishing", "established"]
    assert "terminated" not in [s[1] for s in _states(receiver, call.id)][:-1]


async def test_graph_refer_policy_domains_refuses_other_hosts(
    tmp_path: Path, receiver: Receiver
) -> None:
    """``sip_refer_policy=domains`` with ``sip_refer_domains=agents.example.com``: the IVR's
    REFER to 127.0.0.1 is answered 603 (sipp insists on it); the Graph call stays with the IVR,
    no roster change, until the bot hangs up."""
    require_baresip()
    service, server, task = await start_sip_service(
        tmp_path / "svc",
        receiver,
        sip_refer_policy="domains",
        sip_refer_domains="agents.example.com",
    )
    try:
        host, sip_port = service.media.sip_address  # type: ignore[attr-defined]
        scenario = ivr_refer_scenario("sip:agent@127.0.0.1:9", accepted=False)
        async with sipp_uas(
            tmp_path / "ivr", scenario, timeout_s=20, extra=(f"{host}:{sip_port}",)
        ) as (port, ivr):
            client, call = await place_call(service, receiver, "v1.0", f"sip:ivr@127.0.0.1:{port}")
            await asyncio.sleep(1.0)  # the REFER comes 0.3 s after the answer
            calls = client.communications.calls.by_call_id(call.id)
            assert ev((await calls.get()).state) == "established"
            await calls.delete()
            _, err = await asyncio.wait_for(ivr.communicate(), 15)
            assert ivr.returncode == 0, err.decode(errors="replace")
    finally:
        await stop(server, task)
    assert _rosters_of(receiver, call.id) == []


def _rosters_of(receiver: Receiver, call_id: str) -> list[Any]:
    return [
        n
        for n in receiver.notes
        if n["resourceUrl"] == f"/communications/calls/{call_id}/participants"
    ]


async def test_hanging_up_while_a_transfer_is_accepted_ends_it_by_the_app(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The far end accepts the REFER and then reports nothing; the bot hangs up meanwhile:
    the call ends 200/7000 (ended by the application), not as a completed transfer."""
    require_baresip()
    service, server, task = await start_sip_service(tmp_path / "svc", receiver)
    try:
        host, sip_port = service.media.sip_address  # type: ignore[attr-defined]
        async with sipp_uas(
            tmp_path / "sipp", refer_scenario(), timeout_s=20, extra=(f"{host}:{sip_port}",)
        ) as (port, sipp):
            client, call = await place_call(service, receiver, "v1.0", f"sip:bob@127.0.0.1:{port}")
            calls = client.communications.calls.by_call_id(call.id)
            await calls.transfer.post(_transfer_body("v1.0", "sip:carol@127.0.0.1:9"))
            await receiver.wait_for(
                lambda n: (
                    n["resourceUrl"] == f"/communications/calls/{call.id}"
                    and n["resourceData"]["state"] == "transferAccepted"
                )
            )
            await calls.delete()
            [end] = await receiver.wait_for(
                lambda n: (
                    n["resourceUrl"] == f"/communications/calls/{call.id}"
                    and n["changeType"] == "deleted"
                )
            )
            _, err = await asyncio.wait_for(sipp.communicate(), 15)
            assert sipp.returncode == 0, err.decode(errors="replace")
    finally:
        await stop(server, task)
    info = end["resourceData"]["resultInfo"]
    assert (info["code"], info["subcode"]) == (200, 7000)
