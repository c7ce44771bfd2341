"""Load: sipp places 200 calls, 50 at once, to ``dtmfgraph answer``; every call completes."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from ..judges.sipp import dtmf_scenario, run_sipp

CALLS = 200
AT_ONCE = 50
ANSWER = [sys.executable, "-m", "dtmfgraph", "answer"]


async def _lines(stream: asyncio.StreamReader, out: list[dict[str, Any]]) -> None:
    while line := await stream.readline():
        out.append(json.loads(line))


async def test_sipp_load_against_answer(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        *ANSWER,
        "--port",
        "0",
        "--count",
        str(CALLS),
        "--duration",
        "90",
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        first = await asyncio.wait_for(proc.stdout.readline(), 20)
        ready = json.loads(first)
        assert ready["event"] == "ready", first
        port = int(ready["uri"].rsplit(":", 1)[1])
        lines: list[dict[str, Any]] = []
        reader = asyncio.create_task(_lines(proc.stdout, lines))
        scenario = dtmf_scenario("1", "5", pcap_pause_ms=300, info_pause_ms=0, hold_ms=1000)
        result = await run_sipp(
            scenario,
            ("127.0.0.1", port),
            tmp_path / "sipp",
            calls=CALLS,
            rate=100,
            limit=AT_ONCE,
            timeout_s=60,
        )
        await asyncio.wait_for(proc.wait(), 30)
        await reader
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    stderr = (await proc.stderr.read()).decode(errors="replace")
    assert result.returncode == 0, result.explain()
    assert proc.returncode == 0, stderr
    ended = [x for x in lines if x["event"] == "ended"]
    summary = next(x for x in lines if x["event"] == "summary")
    assert len(ended) == CALLS, summary
    assert {x["reason"] for x in ended} == {"remote-bye"}
    assert sorted({x["keys"] for x in ended}) == ["15"], [x["keys"] for x in ended]
    assert summary["answered"] == CALLS and summary["failed"] == 0
    print(
        f"\nload: {CALLS} calls ({AT_ONCE} at once) in {result.seconds:.1f} s; "
        f"dtmfgraph answer used {summary['cpu_s']:.2f} s CPU in {summary['wall_s']:.1f} s "
        f"({1000 * summary['cpu_s'] / CALLS:.1f} ms CPU per call, "
        f"{100 * summary['cpu_s'] / summary['wall_s']:.0f}% of one core); "
        f"{summary['keys']} keys heard"
    )
