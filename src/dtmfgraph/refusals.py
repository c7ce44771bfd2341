"""Calls refused for want of a resource: counted by resource, logged once per burst.

Sans-I/O: the caller passes the time. A flood of refusals must not flood the log too, yet an
operator must see each episode: the first refusal after ``quiet_s`` without one starts a burst
and is logged (one WARNING naming the resource, why, and the running total); the others of the
burst are only counted (``counts``, exported in /metrics as
``dtmfgraph_resources_exhausted_total{resource=...}``).
"""

from __future__ import annotations

import errno
import logging
from typing import Final

RTP_PORTS: Final = "rtp_ports"
CALLS: Final = "calls"
FILE_DESCRIPTORS: Final = "file_descriptors"
MEDIA_LOAD: Final = "media_load"
"""The media clock runs late (``dtmfgraph.service.admission``): new calls and media operations
are refused; those episodes are logged by the admission, not here."""
RESOURCES: Final = (RTP_PORTS, CALLS, FILE_DESCRIPTORS, MEDIA_LOAD)
"""The resources whose exhaustion refuses a call (the ``resource`` label of the metric)."""

BURST_QUIET_S: Final = 60.0
"""A refusal this long after the previous one (of the same resource) starts a new burst."""

FD_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE})
"""``OSError.errno`` values meaning "no file descriptor left" (this process's limit, or the
system's)."""


def out_of_fds(exc: BaseException) -> bool:
    """Whether ``exc`` says the process (or the system) has no file descriptor left."""
    return isinstance(exc, OSError) and exc.errno in FD_ERRNOS


class Refusals:
    """Refusals by resource, each burst logged once to ``logger``."""

    def __init__(self, logger: logging.Logger, *, quiet_s: float = BURST_QUIET_S) -> None:
        self.logger = logger
        self.quiet_s = quiet_s
        self.counts: dict[str, int] = dict.fromkeys(RESOURCES, 0)
        self._last: dict[str, float] = {}

    def count(self, resource: str) -> None:
        """Count one refusal for want of ``resource`` without logging it (the caller logs)."""
        self.counts[resource] = self.counts.get(resource, 0) + 1

    def refuse(self, resource: str, detail: str, now: float) -> bool:
        """Count one refusal for want of ``resource``; log it if it starts a burst (returned)."""
        self.count(resource)
        last = self._last.get(resource)
        self._last[resource] = now
        if last is not None and now - last < self.quiet_s:
            return False
        self.logger.warning(
            "%s exhausted: refusing calls with 503 + Retry-After (%d refused so far; later "
            "refusals of this burst are only counted): %s",
            resource.replace("_", " "),
            self.counts[resource],
            detail,
        )
        return True


__all__ = [
    "BURST_QUIET_S",
    "CALLS",
    "FD_ERRNOS",
    "FILE_DESCRIPTORS",
    "MEDIA_LOAD",
    "RESOURCES",
    "RTP_PORTS",
    "Refusals",
    "out_of_fds",
]
