"""WAV (RIFF) encode/decode for PCM, float, µ-law and A-law audio, from and to bytes."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .g711 import alaw_decode, ulaw_decode

_PCM, _FLOAT, _ALAW, _ULAW, _EXTENSIBLE = 1, 3, 6, 7, 0xFFFE


class WavError(ValueError):
    """Bytes that are not a WAV file this module can read."""


@dataclass(frozen=True, slots=True)
class Wav:
    """Decoded audio: ``samples`` is int16 shaped (channels, frames)."""

    rate: int
    samples: npt.NDArray[np.int16]

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        return float(self.samples.shape[1] / self.rate)


def _chunks(data: bytes) -> dict[bytes, bytes]:
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError("not a WAV file (no RIFF/WAVE header)")
    chunks: dict[bytes, bytes] = {}
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = data[pos + 8 : pos + 8 + size]
        chunks.setdefault(cid, body)
        pos += 8 + size + (size & 1)
    if b"fmt " not in chunks:
        raise WavError("WAV file has no fmt chunk")
    if b"data" not in chunks:
        raise WavError("WAV file has no data chunk")
    return chunks


def _decode_samples(raw: bytes, fmt: int, bits: int) -> npt.NDArray[np.int16]:
    if fmt == _PCM and bits == 8:
        return ((np.frombuffer(raw, np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)
    if fmt == _PCM and bits == 16:
        return np.frombuffer(raw[: len(raw) // 2 * 2], "<i2").astype(np.int16)
    if fmt == _PCM and bits == 24:
        b = np.frombuffer(raw[: len(raw) // 3 * 3], np.uint8).reshape(-1, 3)
        return (b[:, 2].astype(np.int8).astype(np.int16) << 8 | b[:, 1]).astype(np.int16)
    if fmt == _PCM and bits == 32:
        return (np.frombuffer(raw[: len(raw) // 4 * 4], "<i4") >> 16).astype(np.int16)
    if fmt == _FLOAT and bits in (32, 64):
        x = np.frombuffer(raw[: len(raw) // (bits // 8) * (bits // 8)], f"<f{bits // 8}")
        return np.clip(np.rint(x * 32768.0), -32768, 32767).astype(np.int16)
    if fmt == _ULAW and bits == 8:
        return ulaw_decode(raw)
    if fmt == _ALAW and bits == 8:
        return alaw_decode(raw)
    raise WavError(f"unsupported WAV encoding: format tag {fmt} with {bits} bits per sample")


def parse_wav(data: bytes) -> Wav:
    """Decode a WAV file's bytes (PCM 8/16/24/32-bit, float, µ-law, A-law; any channel count)."""
    chunks = _chunks(data)
    fmt_chunk = chunks[b"fmt "]
    if len(fmt_chunk) < 16:
        raise WavError("WAV fmt chunk is too short")
    fmt, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt_chunk)
    if fmt == _EXTENSIBLE:
        if len(fmt_chunk) < 26:
            raise WavError("WAV extensible fmt chunk is too short")
        fmt = struct.unpack_from("<H", fmt_chunk, 24)[0]
    if channels < 1 or rate < 1:
        raise WavError(f"WAV header has {channels} channels at {rate} Hz")
    mono = _decode_samples(chunks[b"data"], fmt, bits)
    frames = len(mono) // channels
    return Wav(rate=rate, samples=mono[: frames * channels].reshape(frames, channels).T.copy())


def encode_wav(samples: npt.ArrayLike, rate: int) -> bytes:
    """Encode int16 samples, 1-D (mono) or (channels, frames), as a 16-bit PCM WAV file."""
    x = np.asarray(samples, dtype=np.int16)
    if x.ndim == 1:
        x = x[np.newaxis, :]
    channels = x.shape[0]
    body = np.ascontiguousarray(x.T).astype("<i2").tobytes()
    return _pcm_header(channels, rate, len(body)) + body


def _pcm_header(channels: int, rate: int, body: int) -> bytes:
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", 36 + body, b"WAVE", b"fmt ", 16, _PCM, channels, rate,
        rate * channels * 2, channels * 2, 16, b"data", body,
    )  # fmt: skip


class WavWriter:
    """A mono 16-bit PCM WAV file written as the audio comes (a call's recording). The sizes in
    its header are brought up to date every second of audio and at :meth:`close`, so a file read
    while it grows, or left by a crash, is valid up to the last second."""

    def __init__(self, path: str | os.PathLike[str], rate: int = 8000) -> None:
        self.rate = rate
        self.frames = 0
        self._stamped = 0
        self._file = open(path, "wb")  # noqa: SIM115 (closed by close())
        self._file.write(_pcm_header(1, rate, 0))

    @property
    def closed(self) -> bool:
        return self._file.closed

    def write(self, samples: npt.ArrayLike) -> None:
        """Append int16 samples (1-D)."""
        body = np.asarray(samples, dtype=np.int16).astype("<i2", copy=False).tobytes()
        self._file.write(body)
        self.frames += len(body) // 2
        if self.frames - self._stamped >= self.rate:
            self._stamp()

    def _stamp(self) -> None:
        f, size = self._file, 2 * self.frames
        f.seek(4)
        f.write(struct.pack("<I", 36 + size))
        f.seek(40)
        f.write(struct.pack("<I", size))
        f.seek(0, os.SEEK_END)
        f.flush()
        self._stamped = self.frames

    def close(self) -> None:
        if not self._file.closed:
            self._stamp()
            self._file.close()
