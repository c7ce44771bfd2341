"""Audio jobs (prompts) on the OutboundStream, on simulated time: the frames go out one per slot,
in the codec, with keys queued behind them starting in the next slot; loop and cancel."""

from __future__ import annotations

import random

import numpy as np
import pytest

from dtmfgraph.rtp import AudioJob, Codec, DtmfJobError, JobFinished, JobStarted, OutboundStream
from dtmfgraph.tones import ulaw_decode

from .drive import PTIME, run


def tone(seconds: float, hz: float = 440.0, amp: float = 8000.0) -> np.ndarray:
    t = np.arange(round(8000 * seconds)) / 8000
    return np.rint(amp * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def stream(codec: Codec = Codec.PCMU) -> OutboundStream:
    return OutboundStream(start=0.0, codec=codec, rng=random.Random(3))


@pytest.mark.parametrize("codec", [Codec.PCMU, Codec.PCMA])
def test_audio_goes_out_one_frame_per_slot_then_silence(codec: Codec) -> None:
    out = stream(codec)
    audio = tone(0.25)  # 12.5 frames: the last one padded with silence
    out.packets_due(0.1)  # six slots of silence first
    job = out.play_audio(audio, now=0.1)
    sent, events = run(out, until=1.0, t0=0.12)
    payload = b"".join(s.packet.payload for s in sent)
    assert payload[: len(audio)] == codec.encode(audio)
    assert set(payload[len(audio) : 13 * 160]) == {codec.silence_byte}
    assert all(s.packet.payload_type == codec.payload_type for s in sent)
    assert [type(e) for e in events] == [JobStarted, JobFinished]
    assert events[0].at == pytest.approx(0.12)  # the first slot from now
    assert events[1].at == pytest.approx(0.12 + 12 * PTIME)  # its 13th frame
    assert job.done and job.frames_sent == 13 and not job.cancelled


def test_keys_queued_behind_a_prompt_start_in_the_slot_after_its_last_frame() -> None:
    out = stream()
    prompt = out.play_audio(tone(0.2), now=0.0)
    keys = out.send_dtmf("5", method="rfc4733", tone_ms=60, gap_ms=40, now=0.0)
    sent, _ = run(out, until=0.8)
    first_event = next(i for i, s in enumerate(sent) if s.packet.payload_type == 101)
    assert first_event == 10  # frames 0..9 are the prompt
    assert prompt.finished_at == pytest.approx(9 * PTIME)
    assert keys.started_at == pytest.approx(10 * PTIME)
    assert sent[first_event].packet.marker


def test_loop_repeats_without_a_gap_until_cancelled_then_fades_out() -> None:
    out = stream()
    audio = tone(0.1, amp=12000.0)  # 5 frames a round
    job = out.play_audio(audio, loop=True, now=0.0)
    sent, _ = run(out, until=0.35)  # 18 slots: three rounds and three frames
    got = ulaw_decode(b"".join(s.packet.payload for s in sent))
    want = ulaw_decode(Codec.PCMU.encode(np.tile(audio, 4)[: 18 * 160]))
    assert np.array_equal(got, want) and not job.done
    out.cancel(job, now=0.355)
    more, events = run(out, until=0.6, t0=0.36)
    faded = ulaw_decode(more[0].packet.payload).astype(float)
    assert np.abs(faded[-4:]).max() < 500  # the last frame ends near zero: no click
    assert np.abs(faded[:20]).max() > 2000  # and starts where the round was
    assert set(b"".join(s.packet.payload for s in more[1:])) == {0xFF}
    assert [type(e) for e in events] == [JobFinished] and job.cancelled
    assert job.finished_at == pytest.approx(0.36)
    assert job.frames_sent == 19


def test_a_queued_audio_job_cancelled_before_it_starts_never_sounds() -> None:
    out = stream()
    first = out.play_audio(tone(0.1), now=0.0)
    second = out.play_audio(tone(0.1, hz=1000.0), now=0.0)
    out.cancel(second, now=0.0)
    sent, events = run(out, until=0.4)
    assert second.done and second.started_at is None and second.frames_sent == 0
    assert first.frames_sent == 5
    assert set(b"".join(s.packet.payload for s in sent[5:])) == {0xFF}
    assert [type(e) for e in events] == [JobFinished, JobStarted, JobFinished]


def test_empty_or_2d_audio_is_refused() -> None:
    out = stream()
    with pytest.raises(DtmfJobError):
        out.play_audio(np.zeros(0, np.int16), now=0.0)
    with pytest.raises(DtmfJobError):
        out.play_audio(np.zeros((2, 160), np.int16), now=0.0)
    assert isinstance(out.play_audio(np.ones(1, np.int16), now=0.0), AudioJob)
