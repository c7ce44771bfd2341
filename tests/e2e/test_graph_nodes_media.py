"""playPrompt and recordResponse through the other node: two `dtmfgraph serve` processes on one
PostgreSQL database, baresip as the far end of a call that node A carries. The requests go to
node B (forwarded to A); the recording is downloaded from either node (it is in the
database)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from dtmfgraph.tones.resample import prepare
from dtmfgraph.tones.wav import encode_wav, parse_wav

from ..api.audio import PromptServer, best_lag, espeak_wav, g711, tone, wav_samples
from ..api.harness import Receiver
from ..judges.baresip import Baresip
from .test_graph_nodes import node, pg

__all__ = ["pg"]


@pytest.fixture
async def prompts(tmp_path: Path) -> AsyncIterator[PromptServer]:
    server = PromptServer()
    server.files["hello.wav"] = encode_wav(tone(1000, 0.6), 16000)
    async with server.running():
        yield server


def _op_end(op_id: str):  # type: ignore[no-untyped-def]
    return lambda n: n["changeType"] == "deleted" and n["resourceUrl"].endswith(op_id)


async def test_prompt_and_recording_through_the_other_node(
    tmp_path: Path, pg: str, receiver: Receiver, prompts: PromptServer
) -> None:
    said = prepare(parse_wav(espeak_wav("Leave your message now.", tmp_path / "s.wav")), 8000)
    mic = np.concatenate([np.zeros(8000 * 4, np.int16), said, np.zeros(8000 * 30, np.int16)])
    (tmp_path / "mic.wav").write_bytes(encode_wav(mic, 8000))
    async with (
        Baresip(tmp_path / "bs", source=tmp_path / "mic.wav", record=True) as bs,
        node(tmp_path / "a", pg, "node-a") as (a, _),
        node(tmp_path / "b", pg, "node-b") as (b, _),
    ):
        body = {"callbackUri": receiver.url, "targets": [{"identity": {"user": {"id": bs.uri}}}]}
        r = await a.post("/communications/calls", json=body)
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        await receiver.wait_for(lambda n: n["resourceData"].get("state") == "established")

        # playPrompt sent to node B runs on node A, which carries the call
        r = await b.post(
            f"/communications/calls/{cid}/playPrompt",
            json={"prompts": [{"mediaInfo": {"uri": prompts.url("hello.wav")}}]},
        )
        assert r.status_code == 200, r.text
        assert r.json()["@odata.type"] == "#microsoft.graph.playPromptOperation"
        assert r.headers["location"].endswith(f"/operations/{r.json()['id']}")
        [played] = await receiver.wait_for(_op_end(r.json()["id"]), timeout=10)
        assert played["resourceData"]["status"] == "completed"

        # recordResponse through node B: baresip speaks, then presses #
        r = await b.post(
            f"/communications/calls/{cid}/recordResponse",
            json={"stopTones": ["#"], "maxSilenceTimeoutInSeconds": 20,
                  "maxRecordDurationInSeconds": 60, "playBeep": False},
        )  # fmt: skip
        assert r.status_code == 200, r.text
        rec_id = r.json()["id"]
        await asyncio.sleep(4 + len(said) / 8000 + 0.5)
        await bs.sndcode("#")
        [done] = await receiver.wait_for(_op_end(rec_id), timeout=10)
        data = done["resourceData"]
        assert (data["status"], data["completionReason"]) == ("completed", "stopToneDetected")
        got = (await b.get(f"/communications/calls/{cid}/operations/{rec_id}")).json()
        assert got["recordingAccessToken"] == data["recordingAccessToken"]
        await a.delete(f"/communications/calls/{cid}")
        await bs.wait_event("CALL_CLOSED", 5)

        # the recording from either node, with the token alone; a wrong token gets nothing
        token = data["recordingAccessToken"]
        wavs = []
        async with httpx.AsyncClient() as http:
            for api in (a, b):
                base = str(api.base_url).rstrip("/").removesuffix("/v1.0")
                url = f"{base}/recordings/{rec_id}"
                r = await http.get(url, headers={"Authorization": f"Bearer {token}"})
                assert r.status_code == 200, r.text
                wavs.append(r.content)
                wrong = await http.get(url, headers={"Authorization": "Bearer nope"})
                assert wrong.status_code == 401
        assert data["recordingLocation"].endswith(f"/recordings/{rec_id}")

    assert wavs[0] == wavs[1]
    _, corr = best_lag(wav_samples(wavs[0]), g711(said))
    assert corr > 0.9, f"the recording correlates {corr:.3f} with what baresip said"
    _, heard = best_lag(bs.recorded_audio(), g711(prepare(parse_wav(prompts.files["hello.wav"]))))
    assert heard > 0.9, "baresip did not hear the prompt"
