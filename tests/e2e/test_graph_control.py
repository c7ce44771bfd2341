"""Call control on real SIP calls, the official SDK as the bot and baresip as the far end:
the roster of a SIP call, and mute judged by what baresip heard.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from dtmfgraph.tones.wav import encode_wav

from ..api.audio import PromptServer, play_prompt_body, tone
from ..api.harness import Receiver, stop
from ..api.sdkhelp import dtmf_body, sdk_mod
from ..judges.baresip import Baresip, require_baresip
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
