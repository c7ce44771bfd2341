"""playPrompt and recordResponse on real SIP calls, judged by baresip and tshark, with both
official SDKs as the bot.

* A prompt (a 1 kHz marker, then espeak-ng speech) goes to baresip: baresip's recording of what
  it heard correlates with the prompt after G.711; tshark's capture shows the prompt in
  consecutive 20 ms slots of the call's one stream, from the first sample of its first packet,
  and a sendDtmfTones queued behind it starting only after the prompt's last packet.
* baresip speaks (its aufile microphone plays espeak-ng speech) and then presses ``#``: the
  recording downloaded with the token the SDK returned is that speech, ends
  ``stopToneDetected``, and holds no DTMF.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import statistics
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from kiota_abstractions.api_error import APIError

from dtmfgraph.media import Phone
from dtmfgraph.tones import detect, ulaw_decode
from dtmfgraph.tones.resample import prepare
from dtmfgraph.tones.wav import encode_wav, parse_wav

from ..api.audio import (
    PromptServer,
    best_lag,
    espeak_wav,
    g711,
    play_prompt_body,
    record_body,
    tone,
    wav_samples,
)
from ..api.harness import Receiver, stop
from ..api.sdkhelp import answer_body, dtmf_body, new_call, sdk_mod
from ..judges.baresip import Baresip, require_baresip
from ..media.helpers import capture, decode_rtp
from .test_graph_sip import SipService, code, ev, is_op_end, place_call, start_sip_service

FRAME = 160


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


def marker_then_speech(tmp_path: Path) -> tuple[bytes, np.ndarray]:
    """A 16 kHz prompt: 200 ms of 1 kHz, 100 ms pause, espeak-ng speech; and it at 8 kHz."""
    speech = parse_wav(espeak_wav("Welcome. Press one for sales.", tmp_path / "s.wav")).samples[0]
    audio = np.concatenate([tone(1000, 0.2), np.zeros(1600, np.int16), speech])
    data = encode_wav(audio, 16000)
    return data, prepare(parse_wav(data), 8000)


@pytest.mark.parametrize("version", ["v1.0", "beta"])
async def test_prompt_reaches_baresip_on_time_and_keys_follow(
    tmp_path: Path, svc: SipService, receiver: Receiver, prompts: PromptServer, version: str
) -> None:
    data, want = marker_then_speech(tmp_path)
    prompts.files["welcome.wav"] = data
    async with Baresip(tmp_path / "bs", record=True) as bs:
        client, call = await place_call(svc, receiver, version, bs.uri)
        await bs.wait_event("CALL_ESTABLISHED", 5)
        calls = client.communications.calls.by_call_id(call.id)
        (phone_call,) = svc.media.phone.calls  # type: ignore[attr-defined]
        port = phone_call.local_rtp[1]
        ssrc = phone_call.session.outbound.ssrc
        pcap = tmp_path / "cap.pcapng"
        with capture(port, pcap):
            await asyncio.sleep(0.3)
            op = await calls.play_prompt.post(play_prompt_body(version, prompts.url("welcome.wav")))
            keys = await calls.send_dtmf_tones.post(dtmf_body(version, "5", dtmfMethod="rfc4733"))
            assert (ev(op.status), ev(keys.status)) == ("running", "notStarted")
            [done] = await receiver.wait_for(is_op_end(op.id), timeout=20)
            assert done["resourceData"]["completionReason"] == "completedSuccessfully"
            assert code(done) == (200, 0)
            await receiver.wait_for(is_op_end(keys.id), timeout=10)
            await bs.wait_for(lambda b: b.rfc4733_keys() == "5", 5, "the key after the prompt")
            await asyncio.sleep(0.3)
        await calls.delete()
        await bs.wait_event("CALL_CLOSED", 5)

    rows = [r for r in decode_rtp(pcap, port) if r.ssrc == ssrc]
    audio_rows = [r for r in rows if r.pt == 0]
    stream = ulaw_decode(b"".join(r.payload for r in audio_rows))
    lag, corr = best_lag(stream, g711(want))
    assert corr > 0.99, f"the prompt on the wire correlates {corr:.3f}"
    first = lag // FRAME
    assert lag % FRAME == 0, f"the prompt starts {lag % FRAME} samples into a packet"
    assert set(stream[:lag]) <= {0}, "something else sounded before the prompt"
    n = -(-len(want) // FRAME)
    prompt_rows = audio_rows[first : first + n]
    seqs = [r.seq for r in prompt_rows]
    assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(n)], "a slot of the prompt is missing"
    gaps = [b.time - a.time for a, b in itertools.pairwise(prompt_rows)]
    assert 0.019 < statistics.median(gaps) < 0.021
    event_rows = [r for r in rows if r.pt == 101]
    assert event_rows and event_rows[0].marker
    # the keys start only after the prompt's last packet (the next operation of the queue
    # starts once the previous one is recorded as done: a few slots later)
    after = event_rows[0].time - prompt_rows[-1].time
    assert 0.015 < after < 0.2, f"keys started {after * 1000:.0f} ms after the prompt's end"
    assert ((event_rows[0].seq - prompt_rows[-1].seq) & 0xFFFF) < 10

    # what baresip heard: the prompt, starting within 40 ms of its first packet's audio
    heard = bs.recorded_audio()
    rec_lag, rec_corr = best_lag(heard, g711(want))
    assert rec_corr > 0.9, f"baresip's recording correlates {rec_corr:.3f} with the prompt"
    onset = int(np.argmax(np.abs(heard.astype(np.int32)) > 200))
    assert abs(rec_lag - onset) < 0.04 * 8000, (rec_lag, onset)


async def warm_up(svc: SipService, receiver: Receiver, version: str) -> None:
    """Use the SDK once before the call that matters: its first requests import hundreds of
    modules on the event loop (seconds during which the service's loop is blocked too, and a
    far end's first words would go by unheard)."""
    client = svc.sdk(version)
    call = await client.communications.calls.post(new_call(version, receiver.url, NOWHERE))
    calls = client.communications.calls.by_call_id(call.id)
    await calls.operations.get()
    await calls.delete()
    with contextlib.suppress(APIError):
        await calls.record_response.post(record_body(version, stop_tones=["#"]))


NOWHERE = "sip:nobody@127.0.0.1:9"
"""The discard port: a dial there is never answered."""


@pytest.mark.parametrize("version", ["v1.0", "beta"])
async def test_baresip_speaks_then_presses_pound(
    tmp_path: Path, svc: SipService, receiver: Receiver, version: str
) -> None:
    said = parse_wav(espeak_wav("Please call me back tomorrow.", tmp_path / "said.wav"))
    speech = prepare(said, 8000)
    lead = np.zeros(8000 * 2, np.int16)  # baresip talks 2 s into the call
    mic = np.concatenate([lead, speech, np.zeros(8000 * 30, np.int16)])
    (tmp_path / "mic.wav").write_bytes(encode_wav(mic, 8000))
    await warm_up(svc, receiver, version)
    async with Baresip(tmp_path / "bs", source=tmp_path / "mic.wav") as bs:
        client, call = await place_call(svc, receiver, version, bs.uri)
        calls = client.communications.calls.by_call_id(call.id)
        op = await calls.record_response.post(
            record_body(
                version,
                stop_tones=["#"],
                max_record_duration_in_seconds=30,
                max_silence_timeout_in_seconds=15,
                play_beep=False,
            )
        )
        assert ev(op.status) == "running"
        await asyncio.sleep(2.0 + len(speech) / 8000 + 0.5)
        await bs.sndcode("#")
        [note] = await receiver.wait_for(is_op_end(op.id), timeout=15)
        assert note["resourceData"]["completionReason"] == "stopToneDetected"
        assert note["resourceData"]["status"] == "completed" and code(note) == (200, 0)
        back = await calls.operations.by_comms_operation_id(op.id).get()
        assert isinstance(back, sdk_mod(version, "models.record_operation").RecordOperation)
        await calls.delete()
    async with httpx.AsyncClient() as http:
        r = await http.get(
            back.recording_location,
            headers={"Authorization": f"Bearer {back.recording_access_token}"},
        )
    assert r.status_code == 200
    recorded = wav_samples(r.content)
    _, corr = best_lag(recorded, g711(speech))
    assert corr > 0.9, f"the recording correlates {corr:.3f} with what baresip said"
    assert detect(recorded) == [], "the stop tone is in the recording"
    assert len(recorded) < (2.0 + len(speech) / 8000 + 1.5) * 8000


@pytest.mark.parametrize("method", ["inband", "sipinfo"])
async def test_our_phone_speaks_then_presses_pound_in_band_or_by_info(
    tmp_path: Path, svc: SipService, receiver: Receiver, phone: Phone, method: str
) -> None:
    """The stop tone by the other DTMF paths: a caller (our own Phone, playing speech as its
    microphone) ends the recording with ``#`` as G.711 tones or as SIP INFO; the in-band key,
    heard only once it is over, is cut from the recording all the same."""
    said = prepare(parse_wav(espeak_wav("This is my message.", tmp_path / "said.wav")), 8000)
    await warm_up(svc, receiver, "v1.0")
    answered = asyncio.ensure_future(phone.dial(svc.media.uri, timeout=10))  # type: ignore[attr-defined]
    [created] = await receiver.wait_for(lambda n: n["changeType"] == "created")
    calls = svc.incoming_sdk().communications.calls.by_call_id(created["resourceData"]["id"])
    await calls.answer.post(answer_body("v1.0", receiver.url))
    caller = await answered
    op = await calls.record_response.post(
        record_body("v1.0", stop_tones=["#"], play_beep=False, max_silence_timeout_in_seconds=10)
    )
    await asyncio.sleep(0.3)
    await caller.play(said)
    await asyncio.sleep(0.3)
    await caller.send_dtmf("#", method=method, tone_ms=200)
    [note] = await receiver.wait_for(is_op_end(op.id), timeout=15)
    assert note["resourceData"]["completionReason"] == "stopToneDetected"
    data = note["resourceData"]
    async with httpx.AsyncClient() as http:
        r = await http.get(
            data["recordingLocation"],
            headers={"Authorization": f"Bearer {data['recordingAccessToken']}"},
        )
    await caller.hangup()
    recorded = wav_samples(r.content)
    _, corr = best_lag(recorded, g711(said))
    assert corr > 0.9, f"the recording correlates {corr:.3f} with what was said"
    assert detect(recorded) == [], "the stop tone is in the recording"
