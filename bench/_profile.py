"""py-spy on a running service, for the benchmarks: record it, and summarise where its time went."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path


def py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """``py-spy record`` of ``pid`` and its children at 100 Hz into ``out`` (raw, with threads)
    until interrupted."""
    exe = Path(sys.executable).parent / "py-spy"
    found = str(exe) if exe.exists() else shutil.which("py-spy")
    if found is None:
        raise SystemExit("py-spy is not installed: `pip install -e '.[bench]'` (it pins py-spy)")
    argv = [
        found,
        "record",
        "-p",
        str(pid),
        "--subprocesses",
        "--nonblocking",
        "--threads",
        "-r",
        "100",
        "--format",
        "raw",
        "-o",
        str(out),
    ]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _name(frame: str) -> str:
    return frame.split(" (", 1)[0]


def summarise_profile(path: Path, top: int = 10) -> str:
    """py-spy's raw samples (``--threads``): the share of each thread, of each event-loop
    callback (the two frames under ``Handle._run``: the pacer's tick, a socket's read, a task's
    coroutine...), and of the busiest innermost functions."""
    threads: Counter[str] = Counter()
    callbacks: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        k, frames = int(count), stack.split(";")
        total += k
        thread = next((f for f in frames if f.startswith("thread (")), "?")
        threads[thread.split(": ", 1)[-1]] += k
        leaves[frames[-1]] += k
        runs = [i for i, f in enumerate(frames) if f.startswith("Handle._run ")]
        if runs:
            callbacks[" > ".join(_name(f) for f in frames[runs[-1] + 1 : runs[-1] + 3])] += k
        else:
            callbacks[f"(outside callbacks) {_name(frames[-1])}"] += k
    if not total:
        return f"py-spy: no samples in {path}"

    def share(counter: Counter[str], n: int) -> list[str]:
        return [f"  {100 * v / total:5.1f} %  {name[:150]}" for name, v in counter.most_common(n)]

    return "\n".join(
        [
            f"py-spy: {total} samples at 100 Hz (busy threads only; {path})",
            " by thread:",
            *share(threads, 4),
            " by event-loop callback:",
            *share(callbacks, top),
            " busiest innermost functions:",
            *share(leaves, top),
        ]
    )
