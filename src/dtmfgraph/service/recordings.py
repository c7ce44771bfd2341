"""recordResponse: its parameters, the recorder that decides when it ends, and what is stored.

:class:`ResponseRecorder` is sans-I/O: the far end's decoded audio comes in with :meth:`push`
(with the wall-clock time it arrived), keys heard with :meth:`key`, and :meth:`check` is asked
at :meth:`next_deadline`. It ends, first reason wins:

* ``stopToneDetected``: a key listed in ``stopTones`` is heard (RFC 4733, SIP INFO or in-band:
  whatever the call carries). The recording is cut where the key began (its start time, less
  60 ms), and whatever DTMF the detector still finds in the last 3 s is cut too.
* ``maxRecordDurationReached``: ``maxRecordDurationInSeconds`` of audio recorded.
* ``initialSilenceTimeout``: no speech within ``initialSilenceTimeoutInSeconds`` of audio.
* ``maxSilenceTimeout``: speech, then ``maxSilenceTimeoutInSeconds`` without speech.
* ``mediaReceiveTimeout``: no audio at all from the far end for ``media_timeout_s`` (5 s) of
  wall-clock time.

Durations are counted in audio received (8,000 samples a second), so a recording's length
never exceeds its maximum. Speech is the frame-energy detector of :mod:`dtmfgraph.tones.vad`.

Recordings are kept as WAV (PCM 16-bit mono, 8 kHz) in the database, where every node reads
them, with the SHA-256 of their access token (the token itself is only in the operation);
:data:`RETENTION_S` after the operation ends they are deleted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ..tones import detect
from ..tones.vad import SpeechDetector
from ..tones.wav import encode_wav
from .errors import InvalidRequestError
from .model import CompletionReason
from .prompts import PromptRef

RATE: Final = 8000
RETENTION_S: Final = 600.0
"""How long a recording stays downloadable after its operation ended."""
MEDIA_TIMEOUT_S: Final = 5.0
MIN_CALL_END_S: Final = 1.0
"""A recording cut short by the end of the call is kept when at least this long."""
STOP_CUT_S: Final = 0.06
TAIL_SCAN_S: Final = 3.0
SECONDS_RANGE: Final = (1, 120)
DEFAULT_SECONDS: Final = 5

_KEYS = "0123456789*#ABCD"
_TONE_KEYS = {f"tone{i}": str(i) for i in range(10)} | {
    "star": "*",
    "pound": "#",
    "a": "A",
    "b": "B",
    "c": "C",
    "d": "D",
}


def stop_keys(values: Any) -> str:
    """``stopTones`` (``"#"``, ``"1"``, ``"*"``, ``"A"``.., or tone names such as ``pound``;
    any case) as keypad characters; 400 naming the element otherwise."""
    if values is None:
        return ""
    if not isinstance(values, list):
        raise InvalidRequestError('stopTones: must be a list of keys, e.g. ["#"]')
    keys = ""
    for i, value in enumerate(values):
        text = value.strip() if isinstance(value, str) else ""
        single = text.upper() if len(text) == 1 and text.upper() in _KEYS else ""
        key = _TONE_KEYS.get(text.lower()) or single
        if not key:
            raise InvalidRequestError(
                f"stopTones[{i}]: {value!r} is not a key (0-9, *, #, A-D or a tone name)"
            )
        if key not in keys:
            keys += key
    return keys


@dataclass(frozen=True, slots=True)
class RecordParams:
    """What a recordResponse asked for (Docs defaults where a key was absent)."""

    prompt: PromptRef | None = None
    barge_in: bool = False
    initial_silence_s: int = DEFAULT_SECONDS
    max_silence_s: int = DEFAULT_SECONDS
    max_duration_s: int = DEFAULT_SECONDS
    play_beep: bool = True
    stop_tones: str = ""

    def to_json(self) -> dict[str, Any]:
        prompt = self.prompt
        return {
            "prompt": None if prompt is None else [prompt.uri, prompt.resource_id],
            "bargeIn": self.barge_in,
            "initialSilence": self.initial_silence_s,
            "maxSilence": self.max_silence_s,
            "maxDuration": self.max_duration_s,
            "playBeep": self.play_beep,
            "stopTones": self.stop_tones,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RecordParams:
        p = d.get("prompt")
        return cls(
            prompt=PromptRef(p[0], p[1]) if p else None,
            barge_in=bool(d["bargeIn"]),
            initial_silence_s=int(d["initialSilence"]),
            max_silence_s=int(d["maxSilence"]),
            max_duration_s=int(d["maxDuration"]),
            play_beep=bool(d["playBeep"]),
            stop_tones=str(d["stopTones"]),
        )


def seconds(body: dict[str, Any], name: str) -> int:
    """An Int32 seconds field of the body, 1..120, default 5; 400 naming it otherwise."""
    value = body.get(name)
    if value is None:
        return DEFAULT_SECONDS
    lo, hi = SECONDS_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidRequestError(f"{name}: must be an integer {lo}..{hi}, got {value!r}")
    return value


@dataclass(slots=True)
class ResponseRecorder:
    """Decides when a recording ends, and holds its audio (see the module docstring)."""

    params: RecordParams
    start: float
    media_timeout_s: float = MEDIA_TIMEOUT_S
    outcome: CompletionReason | None = None
    _chunks: list[npt.NDArray[np.int16]] = field(default_factory=list)
    _samples: int = 0
    _last_audio: float = 0.0
    _cut: int | None = None
    _vad: SpeechDetector = field(default_factory=SpeechDetector)

    def __post_init__(self) -> None:
        self._last_audio = self.start

    @property
    def seconds(self) -> float:
        """Audio recorded so far (after a cut: up to it)."""
        return (self._samples if self._cut is None else self._cut) / RATE

    def push(self, samples: npt.NDArray[np.int16], now: float) -> None:
        """Audio heard at ``now`` (int16, 8 kHz)."""
        if self.outcome is not None or len(samples) == 0:
            return
        self._last_audio = now
        room = self.params.max_duration_s * RATE - self._samples
        take = samples[:room]
        self._chunks.append(np.asarray(take, dtype=np.int16))
        self._samples += len(take)
        self._vad.push(take)
        if self._samples >= self.params.max_duration_s * RATE:
            self.outcome = CompletionReason.MAX_RECORD_DURATION_REACHED
        elif not self._vad.started and self._samples >= self.params.initial_silence_s * RATE:
            self.outcome = CompletionReason.INITIAL_SILENCE_TIMEOUT
        elif self._vad.started and self._vad.silent_for >= self.params.max_silence_s:
            self.outcome = CompletionReason.MAX_SILENCE_TIMEOUT

    def key(self, key: str, at: float, now: float) -> None:
        """``key`` heard, begun at ``at`` (wall clock); a stop tone ends the recording."""
        if self.outcome is not None or key.upper() not in self.params.stop_tones:
            return
        self.outcome = CompletionReason.STOP_TONE_DETECTED
        back = max(0.0, self._last_audio - at) + STOP_CUT_S
        self._cut = max(0, self._samples - round(back * RATE))
        del now

    def next_deadline(self) -> float:
        """When :meth:`check` must be asked (the media receive timeout)."""
        return self._last_audio + self.media_timeout_s

    def check(self, now: float) -> CompletionReason | None:
        if self.outcome is None and now >= self.next_deadline():
            self.outcome = CompletionReason.MEDIA_RECEIVE_TIMEOUT
        return self.outcome

    def audio(self) -> npt.NDArray[np.int16]:
        """What was recorded: up to the cut of a stop tone, and without DTMF at its end."""
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        if self._cut is None:
            return audio
        audio = audio[: self._cut]
        tail_from = max(0, len(audio) - round(TAIL_SCAN_S * RATE))
        found = detect(audio[tail_from:], RATE)
        if found:
            audio = audio[: tail_from + max(0, round((found[0].start - STOP_CUT_S) * RATE))]
        return audio


def new_token() -> str:
    """A recordingAccessToken: 256 random bits, base64url."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def token_digest(token: str) -> str:
    """What the store keeps of a token (SHA-256, hex)."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(presented: str, digest: str) -> bool:
    """Constant-time comparison of a presented token with a stored digest."""
    return hmac.compare_digest(token_digest(presented), digest)


def wav_bytes(audio: npt.NDArray[np.int16]) -> bytes:
    return encode_wav(audio, RATE)


@dataclass(frozen=True, slots=True)
class Recording:
    """One stored recording."""

    op_id: str
    call_id: str
    token_digest: str
    wav: bytes
    created_at: float
    expires_at: float


__all__ = [
    "MEDIA_TIMEOUT_S",
    "MIN_CALL_END_S",
    "RETENTION_S",
    "RecordParams",
    "Recording",
    "ResponseRecorder",
    "new_token",
    "seconds",
    "stop_keys",
    "token_digest",
    "token_matches",
    "wav_bytes",
]
