"""Units of the media queue with a fake media call (the real ones: tests/api/test_media_ops.py,
tests/e2e/test_graph_prompts.py)."""

from __future__ import annotations

import numpy as np
import pytest

from dtmfgraph.service.media import CallEndedError
from dtmfgraph.service.media_queue import _play, call_end_reason, cancelled_outcome
from dtmfgraph.service.model import CompletionReason, OpKind, OpStatus


class _Refusing:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    async def play(self, samples: np.ndarray, *, loop: bool = False) -> None:
        raise self.exc


async def test_a_beep_the_media_refuses_ends_the_recording_play_beep_failed() -> None:
    media = _Refusing(RuntimeError("no media stream"))
    out = await _play(media, np.ones(8, np.int16), CompletionReason.PLAY_BEEP_FAILED)  # type: ignore[arg-type]
    assert out is not None
    assert (out.status, out.reason, out.result.code) == (
        OpStatus.FAILED,
        CompletionReason.PLAY_BEEP_FAILED,
        500,
    )
    assert "no media stream" in out.result.message
    with pytest.raises(CallEndedError):  # the end of the call is the call's to report
        await _play(
            _Refusing(CallEndedError("gone")),
            np.ones(8, np.int16),
            CompletionReason.PLAY_PROMPT_FAILED,
        )  # type: ignore[arg-type]


def test_cancel_and_call_end_outcomes_per_kind() -> None:
    assert cancelled_outcome(OpKind.RECORD).reason is CompletionReason.OPERATION_CANCELED
    assert cancelled_outcome(OpKind.RECORD).status is OpStatus.FAILED
    for kind in (OpKind.SEND_DTMF, OpKind.PLAY_PROMPT):
        out = cancelled_outcome(kind)
        assert (out.status, out.reason) == (
            OpStatus.COMPLETED,
            CompletionReason.MEDIA_OPERATION_CANCELED,
        )
        assert (out.result.code, out.result.subcode) == (400, 8508)
        assert call_end_reason(kind) is CompletionReason.UNKNOWN
    assert call_end_reason(OpKind.RECORD) is CompletionReason.UNSPECIFIED_ERROR
