"""How long Python's cyclic garbage collector stops the process: every collection, timed.

A collection of the oldest generation walks every tracked object alive; in a long-running
``serve`` that may take milliseconds while no RTP packet is sent. :class:`GcPauses` times each
collection through ``gc.callbacks`` and feeds a histogram, so ``/metrics`` shows how long and
how often (``dtmfgraph_gc_pause_seconds{generation}``); the pacer's ``settle_heap`` keeps the
start-up heap out of them.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

GC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


class GcPauses:
    """Times garbage collections into a histogram of ``registry`` between :meth:`start` and
    :meth:`stop`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.histogram = Histogram(
            "dtmfgraph_gc_pause_seconds",
            "Duration of each garbage collection (the process is stopped meanwhile), by "
            "generation (2 walks every object alive).",
            ["generation"],
            buckets=GC_BUCKETS,
            registry=registry,
        )
        self._children = [self.histogram.labels(str(g)) for g in range(3)]
        self._began = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self._children[info["generation"]].observe(time.perf_counter() - self._began)

    def start(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def stop(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
