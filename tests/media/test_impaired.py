"""In-band keys through impaired networks, as real RTP over UDP to live receivers (issue 19).

Every profile of ``tests/rtp/impair.py`` (random loss 1/3/5/10 %, Gilbert burst loss, 0-60 ms
jitter with reordering, a µ-law -> A-law -> µ-law tandem), built here from fixed seeds and real
G.711, 50 ms on / 50 ms off at -10 dBm0, is sent from a plain UDP socket on its own schedule to
an :class:`RtpSession` listening on 127.0.0.1 (its own detector, and a shared detector bank as
the Phone and the service use). All profiles run at once, in real time (about 10 s).
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time
import wave
from pathlib import Path

import numpy as np

from dtmfgraph.media import InbandBanks, Pacer, RtpSession
from dtmfgraph.media.recording import CallRecording
from dtmfgraph.rtp import Codec, InboundStats, InboundStream, RtpPacket
from dtmfgraph.tones import detect

from ..judges.ports import free_udp_port
from ..rtp import impair
from .test_cli import Listener

KEYS_PER_PROFILE = {"random loss 1 %": 100, "random loss 3 %": 100, "random loss 5 %": 100}
OTHERS = 40
SEED = 19


async def _send(packets: list[tuple[float, bytes]], to: tuple[str, int], t0: float) -> None:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for at, data in packets:
            wait = t0 + at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            sock.sendto(data, to)


async def _collect(session: RtpSession, quiet: float = 1.0) -> str:
    heard = []
    while True:
        try:
            heard.append((await session.next_key(quiet)).key)
        except TimeoutError:
            return "".join(heard)


async def test_every_impairment_profile_over_udp() -> None:
    pacer = Pacer()
    banks = InbandBanks(pacer, channels=8)
    runs = []
    for i, profile in enumerate(impair.PROFILES):
        n = KEYS_PER_PROFILE.get(profile.name, OTHERS)
        keys, packets = impair.impaired(profile, n, SEED + i)
        bank = banks.bank() if i % 2 else None  # half on a shared bank, half on their own
        session = await RtpSession.open(pacer, send=False, bank=bank)
        runs.append((profile, keys, packets, session))
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.1
    heard = await asyncio.gather(
        *(_send(p, s.local_address, t0) for _, _, p, s in runs),
        *(_collect(s, quiet=2.0) for _, _, _, s in runs),
    )
    report = []
    failures = []
    for (profile, keys, _, session), got in zip(runs, heard[len(runs) :], strict=True):
        right, extra = impair.score(keys, str(got))
        stats = session.stats
        assert isinstance(stats, InboundStats)
        report.append(
            f"{profile.name}: {right}/{len(keys)} right, {extra} extra; lost {stats.lost}, "
            f"late {stats.late}, reordered {stats.reordered}, concealed {stats.concealed}"
        )
        if extra or right < profile.target * len(keys):
            failures.append(profile.name)
        if "loss" in profile.name:
            assert stats.concealed > 0 and stats.lost > 0, profile.name
        if "jitter" in profile.name:
            assert stats.reordered > 0, profile.name
            assert stats.playout_delay > 0.04, profile.name
        await session.close()
    banks.close()
    pacer.close()
    assert not failures, "\n".join(report)


def test_rtp_listen_hears_keys_through_loss_and_jitter(tmp_path: Path) -> None:
    """``dtmfgraph rtp listen`` (a subprocess) given 5 % loss and 0-60 ms jitter at once."""
    keys, stream = impair.impaired(impair.PROFILES[2], 40, SEED)  # random loss 5 %
    packets = impair.jitter(60.0)(impair.Stream(keys, stream), random.Random(SEED))
    port = free_udp_port()
    listener = Listener(
        "--port", str(port), "--json", "--count", str(len(keys)), "--duration", "20",
        "--jitter-max-ms", "100",
    )  # fmt: skip
    t0 = time.monotonic() + 0.05
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for at, data in packets:
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            sock.sendto(data, ("127.0.0.1", port))
    code, out, err = listener.finish()
    assert code == 0, err
    heard = "".join(json.loads(line)["key"] for line in out.splitlines())
    right, extra = impair.score(keys, heard)
    # 0 extra keys always; the >= 99 % target is the profile test's (above, clocked in-process):
    # here this test's own sender sleeps per packet, and on a loaded box its late wake-ups add
    # jitter past the 100 ms buffer, so two keys of forty may go
    assert extra == 0 and right >= len(keys) - 2, (keys, heard)
    assert "concealed=" in err and "concealed=0," not in err


def test_a_recording_keeps_the_concealed_audio_and_counts_it(tmp_path: Path) -> None:
    keys, packets = impair.impaired(impair.PROFILES[3], 40, SEED)  # random loss 10 %
    stream = InboundStream(codec=Codec.PCMU, inband=False)
    recording = CallRecording(tmp_path / "lossy.wav", Codec.PCMU, stream.stats)
    stream.tap = recording.push
    for at, data in packets:
        stream.receive(data, at)
        stream.handle_deadline(at)
    stream.close(packets[-1][0] + 1)
    recording.close()
    assert recording.concealed == stream.stats.concealed > 0
    with wave.open(str(tmp_path / "lossy.wav")) as wav:
        audio = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    first, last = RtpPacket.parse(packets[0][1]), RtpPacket.parse(packets[-1][1])
    span = ((last.sequence - first.sequence) & 0xFFFF) + 1  # every packet in between is there
    assert len(audio) == span * impair.FRAME
    right, extra = impair.score(keys, "".join(e.key for e in detect(audio)))
    assert extra == 0 and right >= len(keys) - 1
