"""CPU time of a process tree, from /proc (the benchmarks' service and peer processes)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(root: int) -> dict[int, float]:
    """CPU seconds (user + system, every thread, and the children each has reaped) of ``root``
    and every live descendant, by pid."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            raw = Path(f"/proc/{entry}/stat").read_text()
            fields = raw[raw.rindex(")") + 2 :].split()
            stats[int(entry)] = (int(fields[1]), sum(int(f) for f in fields[11:15]) / TICK)
    keep = {root}
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _) in stats.items():
            if ppid in keep and pid not in keep:
                keep.add(pid)
                grew = True
    return {pid: stats[pid][1] for pid in keep if pid in stats}


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds the tree used from ``before`` to ``after`` (two :func:`tree_cpu`)."""
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())
