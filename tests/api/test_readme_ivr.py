"""The README's IVR bot, run as written (its code block is executed) against the service with
the loopback far end: the caller presses 1 (the bot presses 42# on), or 2 and leaves a message
(the bot downloads the recording)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dtmfgraph.service import LoopbackMedia

from .audio import PromptServer, best_lag, espeak_wav, tone, wav_samples
from .harness import Receiver, Service, free_port, make_settings, running_service
from .sdkhelp import new_call

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_bot() -> Any:
    """The ``ivr`` coroutine function of the README's code block."""
    text = README.read_text()
    [code] = re.findall(r"```python\n(# An IVR bot\..*?)```", text, flags=re.S)
    scope: dict[str, Any] = {}
    exec(compile(code, str(README), "exec"), scope)
    return scope["ivr"]


@pytest.fixture
async def svc(tmp_path: Path, receiver: Receiver) -> AsyncIterator[Service]:
    settings = make_settings(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'g.sqlite3'}", free_port(), loopback_speed=0.05
    )
    async with running_service(settings, LoopbackMedia(speed=0.05)) as s:
        yield s


async def _feed(receiver: Receiver, notes: asyncio.Queue[dict[str, Any]]) -> None:
    seen = 0
    while True:
        await receiver.wait_for(lambda n: True, count=seen + 1, timeout=3600)
        for note in receiver.notes[seen:]:
            notes.put_nowait(note)
        seen = len(receiver.notes)


@pytest.mark.parametrize("choice", ["1", "2"])
async def test_the_readme_ivr_bot(
    svc: Service, receiver: Receiver, tmp_path: Path, choice: str
) -> None:
    ivr = readme_bot()
    menu = espeak_wav("Press one for sales, two to leave a message.", tmp_path / "menu.wav")
    server = PromptServer(files={"menu.wav": menu})
    async with server.running():
        client = svc.sdk()
        call = await client.communications.calls.post(new_call("v1.0", receiver.url))
        await receiver.wait_for(lambda n: n["resourceData"].get("state") == "established")
        notes: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        feeder = asyncio.ensure_future(_feed(receiver, notes))
        bot = asyncio.ensure_future(ivr(client, call.id, notes, server.url("menu.wav")))
        far = svc.media.calls[0]
        while not far.played:  # the menu has played
            await asyncio.sleep(0.01)
        far.press(choice)
        if choice == "2":
            while len(far.played) < 2:  # the beep: recording
                await asyncio.sleep(0.01)
            message = tone(300, 1.5, rate=8000, dbfs=-15)
            far.speak(message)
            await asyncio.sleep(1.5 * 0.05 + 0.3)
            far.press("#")
        wav = await asyncio.wait_for(bot, 20)
        feeder.cancel()
    if choice == "1":
        assert wav is None

        async def keys_heard() -> None:
            while far.heard_keys != "42#":
                await asyncio.sleep(0.01)

        await asyncio.wait_for(keys_heard(), 10)
    else:
        _, corr = best_lag(wav_samples(wav), message)
        assert corr > 0.95 and np.abs(wav_samples(wav)).max() > 1000
