"""``dtmfgraph answer --count N`` and ``call --count N`` show a progress bar of the calls on a
terminal, and none where stderr is not one (a pipe, a log file)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "dtmfgraph"]


async def _answer_two(terminal: bool) -> tuple[str, str]:
    """Run ``answer --count 2``, call it twice; its (stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DTMFGRAPH_", "TTY_"))}
    if terminal:  # what rich takes a terminal to be, without a pty
        env.update(TTY_INTERACTIVE="1", TTY_COMPATIBLE="1", COLUMNS="100")
    proc = await asyncio.create_subprocess_exec(
        *CLI, "answer", "--port", "0", "--count", "2",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    try:
        first = (await asyncio.wait_for(proc.stderr.readline(), 20)).decode()
        assert first.startswith("listening on sip:"), first
        uri = first.split()[2].replace("dtmfgraph@", "bob@")
        for keys in ("1", "2#"):
            call = await asyncio.create_subprocess_exec(
                *CLI, "call", uri, "--send", keys, "--method", "rfc4733",
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
            )  # fmt: skip
            assert await asyncio.wait_for(call.wait(), 30) == 0
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return out.decode(), first + err.decode()


@pytest.mark.parametrize("terminal", [True, False])
async def test_answer_count_shows_progress_on_a_terminal_only(terminal: bool) -> None:
    out, err = await _answer_two(terminal)
    assert out.count("ended: ") == 2, out + err
    assert "answered 2 calls, 2 ended, heard 3 keys" in out, out
    if terminal:
        assert "calls ended (3 keys heard)" in err and "2/2" in err, err
    else:
        assert "calls ended" not in err and "2/2" not in err, err


async def test_call_count_places_calls_one_after_another_with_progress() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DTMFGRAPH_", "TTY_"))}
    answer = await asyncio.create_subprocess_exec(
        *CLI, "answer", "--port", "0", "--count", "3", "--json",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert answer.stdout is not None
    try:
        ready = json.loads(await asyncio.wait_for(answer.stdout.readline(), 20))
        call = await asyncio.create_subprocess_exec(
            *CLI, "call", ready["uri"].replace("dtmfgraph@", "bob@"), "--send", "5",
            "--count", "3", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**env, "TTY_INTERACTIVE": "1", "TTY_COMPATIBLE": "1", "COLUMNS": "100"},
        )  # fmt: skip
        out, err = await asyncio.wait_for(call.communicate(), 60)
        assert call.returncode == 0, err
        rest, _ = await asyncio.wait_for(answer.communicate(), 20)
    finally:
        if answer.returncode is None:
            answer.kill()
            await answer.wait()
    assert out.decode().count("call ended: ") == 3, out
    assert "calls placed (0 failed)" in err.decode() and "3/3" in err.decode(), err
    events = [json.loads(line) for line in rest.decode().splitlines()]
    assert [e["keys"] for e in events if e["event"] == "ended"] == ["5", "5", "5"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--count", "0"], "error: --count 0: must be > 0"),
        (["--count", "2", "--record", "x.wav"], "error: --record takes one call"),
    ],
)
def test_call_count_refuses_what_it_cannot_do(
    args: list[str], message: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [*CLI, "call", "sip:bob@127.0.0.1:9", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 2 and done.stderr.startswith(message), done.stderr
