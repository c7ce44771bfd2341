"""Property tests of what playPrompt and recordResponse parse: bodies, stop tones, prompt files
and the recorder's decisions. Bad input only ever gives the layer's own error, never a crash."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from dtmfgraph.graph import PlayPromptBody, RecordResponseBody
from dtmfgraph.service.errors import InvalidRequestError
from dtmfgraph.service.model import CompletionReason
from dtmfgraph.service.prompts import PromptConfig, PromptError, PromptFetcher, address_refusal
from dtmfgraph.service.recordings import RecordParams, ResponseRecorder, stop_keys
from dtmfgraph.tones.wav import encode_wav

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
keys = st.sampled_from(
    ["prompts", "loop", "clientContext", "mediaInfo", "uri", "resourceId", "@odata.type",
     "stopTones", "playBeep", "bargeInAllowed", "maxRecordDurationInSeconds",
     "initialSilenceTimeoutInSeconds", "maxSilenceTimeoutInSeconds"]
)  # fmt: skip
bodies = st.dictionaries(keys, json_values, max_size=6)


@FAST
@given(bodies)
def test_bodies_validate_or_fail_with_a_validation_error(body: dict[str, Any]) -> None:
    for model in (PlayPromptBody, RecordResponseBody):
        try:
            parsed = model.model_validate(body)
        except ValidationError:
            continue
        if isinstance(parsed, RecordResponseBody):
            assert len(parsed.prompts) <= 1
            try:
                stop_keys(parsed.stop_tones)
            except InvalidRequestError as exc:
                assert str(exc).startswith("stopTones")
        else:
            assert 1 <= len(parsed.prompts) <= 20


@FAST
@given(st.lists(st.text(max_size=8) | st.integers(), max_size=6) | json_values)
def test_stop_tones_parse_or_name_the_bad_element(values: Any) -> None:
    try:
        out = stop_keys(values)
    except InvalidRequestError as exc:
        assert str(exc).startswith("stopTones")
        return
    assert set(out) <= set("0123456789*#ABCD") and len(set(out)) == len(out)


@FAST
@given(st.binary(max_size=2048))
def test_any_bytes_decode_to_audio_or_a_prompt_error(data: bytes) -> None:
    fetcher = PromptFetcher.__new__(PromptFetcher)
    fetcher.config = PromptConfig(max_seconds=5)
    try:
        audio = fetcher._decode("https://x/p.wav", data)
    except PromptError as exc:
        assert "https://x/p.wav" in str(exc)
        return
    assert audio.dtype == np.int16 and audio.ndim == 1


@FAST
@given(
    st.integers(1, 8000).flatmap(lambda n: st.tuples(st.just(n), st.sampled_from([1, 2]))),
    st.sampled_from([8000, 11025, 16000, 44100]),
    st.sampled_from([8, 16, 24]),
)
def test_wav_headers_that_lie_never_crash(shape: tuple[int, int], rate: int, bits: int) -> None:
    frames, channels = shape
    data = bytearray(encode_wav(np.zeros((channels, frames), np.int16), rate))
    struct.pack_into("<H", data, 34, bits)  # the header claims another sample size
    struct.pack_into("<I", data, 40, 0xFFFFFFF0)  # and a data chunk far beyond the file
    fetcher = PromptFetcher.__new__(PromptFetcher)
    fetcher.config = PromptConfig()
    try:
        audio = fetcher._decode("u", bytes(data))
    except PromptError:
        return
    assert len(audio) <= frames + 8000


pushes = st.lists(
    st.tuples(
        st.sampled_from(["silence", "speech", "key", "wait"]),
        st.integers(1, 3000),
    ),
    max_size=40,
)


@FAST
@given(pushes, st.integers(1, 5), st.integers(1, 5), st.integers(1, 5))
def test_the_recorder_never_exceeds_its_limits(
    steps: list[tuple[str, int]], initial: int, silence: int, duration: int
) -> None:
    params = RecordParams(
        initial_silence_s=initial, max_silence_s=silence, max_duration_s=duration, stop_tones="#"
    )
    rec = ResponseRecorder(params, start=0.0, media_timeout_s=1.0)
    t = 0.0
    for what, n in steps:
        if what == "wait":
            t += n / 1000
            rec.check(t)
            continue
        t += n / 8000
        if what == "key":
            rec.key("#", t - 0.05, t)
            continue
        amp = 3000.0 if what == "speech" else 0.0
        rec.push((amp * np.sin(np.arange(n) * 0.3)).astype(np.int16), t)
    audio = rec.audio()
    assert len(audio) <= duration * 8000
    outcome = rec.outcome
    if outcome is CompletionReason.MAX_RECORD_DURATION_REACHED:
        assert len(audio) == duration * 8000
    if outcome is CompletionReason.INITIAL_SILENCE_TIMEOUT:
        assert rec.seconds >= initial


@pytest.mark.parametrize(
    ("address", "loopback_host", "refused"),
    [
        ("169.254.169.254", False, "cloud metadata"),
        ("::ffff:169.254.169.254", False, "cloud metadata"),
        ("fd00:ec2::254", False, "cloud metadata"),
        ("169.254.1.1", False, "link-local"),
        ("fe80::1%lo", False, "link-local"),
        ("127.0.0.1", False, "loopback"),
        ("127.0.0.1", True, None),
        ("0.0.0.0", False, "not a unicast"),
        ("224.0.0.1", False, "not a unicast"),
        ("10.1.2.3", False, None),
        ("93.184.216.34", False, None),
    ],
)
def test_address_policy(address: str, loopback_host: bool, refused: str | None) -> None:
    why = address_refusal(address, host_is_loopback=loopback_host)
    assert (why is None) == (refused is None) and (refused is None or refused in str(why))
