"""Process limits a telephony server needs raised before it takes calls."""

from __future__ import annotations

import logging
from typing import Final

OPEN_FILES_WANTED: Final = 65_536
"""Open files to allow: each SIP call holds two UDP sockets (RTP and RTCP), the service also
TCP/TLS connections and the database's; distributions start processes at a soft limit of
1,024, which would stop a service near 500 calls."""

logger = logging.getLogger("dtmfgraph.cli.limits")


def raise_open_file_limit(wanted: int = OPEN_FILES_WANTED) -> int | None:
    """Raise the soft limit on open files towards ``wanted`` (never above the hard limit, never
    lower); return the soft limit now in force (``None`` where there is no such limit)."""
    try:
        import resource  # noqa: PLC0415 (POSIX only)
    except ImportError:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError) as exc:
        logger.warning("cannot raise the open files limit from %d to %d: %s", soft, target, exc)
        return soft
    logger.info("open files limit raised from %d to %d", soft, target)
    return target
