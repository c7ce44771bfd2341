"""``ReapGuard``: when this node may declare other nodes dead (sans-I/O: the clock comes in).

A node is dead when it has not beaten for the lease (``node_dead_after_s``); the nodes beating
end the calls of dead ones. But a storage outage as long as the lease stops every node's
heartbeat: when the store is back, every node looks dead to the first one that beats again,
which would end the live calls of all the others. So a node declares others dead only once it
has itself beaten without a gap as long as the lease for a whole lease: by then every node alive
has beaten again (it beats every ``node_heartbeat_s``, well under the lease).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class ReapGuard:
    """Told of each heartbeat of this node (:meth:`beat_ok`, :meth:`beat_failed`); says whether
    it may end other nodes' calls now (:meth:`may_reap`). At first it may (the node just
    reached the store to start)."""

    def __init__(self, lease_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.lease_s = lease_s
        self._clock = clock
        now = clock()
        self._steady_since: float | None = now - lease_s
        self._last_ok = now

    def beat_ok(self) -> None:
        now = self._clock()
        if self._steady_since is None or now - self._last_ok >= self.lease_s:
            self._steady_since = now  # beating again after a gap: the others may not be yet
        self._last_ok = now

    def beat_failed(self) -> None:
        self._steady_since = None

    def may_reap(self) -> bool:
        since = self._steady_since
        return since is not None and self._clock() - since >= self.lease_s


__all__ = ["ReapGuard"]
