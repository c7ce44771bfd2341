"""bench/capacity.py's smallest run end to end: a real ``serve``, sipp echoing RTP, dumpcap on the
wire. Checks that the benchmark measures what it says (every call established, every key heard
back in order, the packets captured), never how fast: speed is the benchmark's business."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "capacity.py"
CALLS = 4


def test_capacity_bench_smallest_step_hears_every_key(tmp_path: Path) -> None:
    for tool in ("sipp", "dumpcap"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run the tests through scripts/test")
    out = tmp_path / "rows.json"
    run = subprocess.run(
        [sys.executable, str(BENCH), "--steps", str(CALLS), "--quick", "--json", str(out),
         "--workdir", str(tmp_path / "work")],
        check=False,
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    [row] = json.loads(out.read_text())
    assert row["calls"] == CALLS
    assert row["established"] == CALLS, row
    assert row["keys_right"] == CALLS, row  # heard back through toneInfo, in order, no extras
    assert row["on_wire_right"] == CALLS, row  # and on the wire, one stream per call
    assert row["failures"] == {}, row
    assert row["pacing_p99_ms"] >= 0.0
    # the independent prober GETs a call while the calls are carried and while they send
    assert {"carrying get", "sending get"} <= set(row["probe_p99_ms"]), row
    assert not [k for k in row["probe_failed"] if "get" in k], row  # (a send may be 503)
