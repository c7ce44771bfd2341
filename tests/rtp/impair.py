"""Impaired in-band DTMF RTP streams, built here with our own seeds and G.711 (tests and bench).

:func:`keys_stream` synthesises keys (50 ms on / 50 ms off at -10 dBm0 by default, Q.24's
shortest), encodes them as PCMU in 20 ms RTP packets, and :data:`PROFILES` impair the packets:
random loss, Gilbert-Elliott burst loss, jitter with reordering, a µ-law -> A-law -> µ-law
tandem. Each impaired stream is a list of ``(arrival time, datagram)`` in arrival order.
"""

from __future__ import annotations

import difflib
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dtmfgraph.rtp import Codec, RtpPacket
from dtmfgraph.tones import alaw_decode, alaw_encode, synthesize, ulaw_decode, ulaw_encode

FRAME = 160
PTIME = 0.02


@dataclass(frozen=True)
class Stream:
    keys: str
    packets: list[tuple[float, bytes]]
    """``(send time, datagram)``, one every 20 ms."""


def key_sequence(rng: random.Random, n: int) -> str:
    """``n`` random keys, a third of them repeating the key before (equal keys must not merge)."""
    out: list[str] = []
    for _ in range(n):
        out.append(out[-1] if out and rng.random() < 1 / 3 else rng.choice("0123456789*#ABCD"))
    return "".join(out)


def keys_stream(
    n_keys: int,
    seed: int,
    *,
    tone_ms: float = 50.0,
    gap_ms: float = 50.0,
    level_dbm0: float = -10.0,
    tandem: bool = False,
) -> Stream:
    """``n_keys`` keys as 20 ms PCMU RTP packets sent in real time from time 0."""
    rng = random.Random(seed)
    keys = key_sequence(rng, n_keys)
    lead = np.zeros(4 * FRAME + rng.randrange(FRAME), np.int16)  # any phase against the frames
    x = np.concatenate(
        [
            lead,
            synthesize(keys, tone_ms=tone_ms, gap_ms=gap_ms, level_dbm0=level_dbm0),
            np.zeros(10 * FRAME, np.int16),
        ]
    )
    x = x[: len(x) // FRAME * FRAME]
    codes = ulaw_encode(x)
    if tandem:  # a transcoding gateway pair: µ-law -> A-law -> µ-law
        codes = ulaw_encode(alaw_decode(alaw_encode(ulaw_decode(codes))))
    ssrc, seq0, ts0 = rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(32)
    packets = []
    for k, frame in enumerate(np.asarray(codes).reshape(-1, FRAME)):
        packet = RtpPacket(
            Codec.PCMU.payload_type,
            (seq0 + k) & 0xFFFF,
            (ts0 + k * FRAME) & 0xFFFFFFFF,
            ssrc,
            frame.tobytes(),
        )
        packets.append((k * PTIME, packet.serialize()))
    return Stream(keys, packets)


def random_loss(p: float) -> Callable[[Stream, random.Random], list[tuple[float, bytes]]]:
    def impair(stream: Stream, rng: random.Random) -> list[tuple[float, bytes]]:
        return [pk for pk in stream.packets if rng.random() >= p]

    return impair


def gilbert_loss(
    p_good_bad: float = 0.02, p_bad_good: float = 0.5
) -> Callable[[Stream, random.Random], list[tuple[float, bytes]]]:
    """Gilbert-Elliott: bursts (mean 1 / ``p_bad_good`` packets) begin with ``p_good_bad``;
    all packets of a burst are lost."""

    def impair(stream: Stream, rng: random.Random) -> list[tuple[float, bytes]]:
        out, bad = [], False
        for pk in stream.packets:
            bad = rng.random() >= p_bad_good if bad else rng.random() < p_good_bad
            if not bad:
                out.append(pk)
        return out

    return impair


def jitter(max_ms: float = 60.0) -> Callable[[Stream, random.Random], list[tuple[float, bytes]]]:
    """Each packet delayed by 0..``max_ms`` (uniform): packets overtake each other."""

    def impair(stream: Stream, rng: random.Random) -> list[tuple[float, bytes]]:
        delayed = [(t + rng.uniform(0, max_ms / 1000), d) for t, d in stream.packets]
        return sorted(delayed, key=lambda pk: pk[0])

    return impair


def clean() -> Callable[[Stream, random.Random], list[tuple[float, bytes]]]:
    return lambda stream, rng: list(stream.packets)


@dataclass(frozen=True)
class Profile:
    name: str
    impair: Callable[[Stream, random.Random], list[tuple[float, bytes]]]
    tandem: bool = False
    target: float = 0.99
    """Least fraction of keys right the issue asks for (0: only report it)."""


PROFILES = (
    Profile("random loss 1 %", random_loss(0.01)),
    Profile("random loss 3 %", random_loss(0.03)),
    Profile("random loss 5 %", random_loss(0.05)),
    Profile("random loss 10 %", random_loss(0.10), target=0.0),
    Profile("Gilbert burst loss (2 % -> bursts of 2)", gilbert_loss(0.02, 0.5), target=0.0),
    Profile("jitter 0-60 ms, reordering", jitter(60.0)),
    Profile("µ-law -> A-law -> µ-law tandem", clean(), tandem=True),
)


def impaired(profile: Profile, n_keys: int, seed: int) -> tuple[str, list[tuple[float, bytes]]]:
    stream = keys_stream(n_keys, seed, tandem=profile.tandem)
    return stream.keys, profile.impair(stream, random.Random(seed * 7919 + 1))


def score(sent: str, heard: str) -> tuple[int, int]:
    """Keys right (in order, by the longest matching) and extra keys heard."""
    matcher = difflib.SequenceMatcher(None, sent, heard, autojunk=False)
    right = sum(block.size for block in matcher.get_matching_blocks())
    return right, len(heard) - right


def hear(packets: list[tuple[float, bytes]], **kw: object) -> str:
    """The keys an :class:`~dtmfgraph.rtp.InboundStream` hears from ``packets`` on simulated
    time, its deadlines handled every 20 ms as the pacer's sweep does."""
    from dtmfgraph.rtp import InboundStream

    stream = InboundStream(codec=Codec.PCMU, **kw)  # type: ignore[arg-type]
    heard: list[str] = []
    end = packets[-1][0] + 0.5 if packets else 0.0
    i, k = 0, 0
    while k * PTIME <= end:
        now = k * PTIME + 0.0005
        while i < len(packets) and packets[i][0] <= now:
            stream.receive(packets[i][1], packets[i][0])
            i += 1
        deadline = stream.next_deadline()
        if deadline is not None and deadline <= now:
            stream.handle_deadline(now)
        while (key := stream.next_event()) is not None:
            heard.append(key.key)
        k += 1
    stream.close(end)
    while (key := stream.next_event()) is not None:
        heard.append(key.key)
    return "".join(heard)
