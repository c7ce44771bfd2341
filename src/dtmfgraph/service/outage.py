"""``StoreHealth``: whether the store answers, and the outages it had (one log line at the start
of an outage, one at its end with the duration; counters for ``/metrics``).

The store reports each transaction to it (:meth:`StoreHealth.failed` / :meth:`StoreHealth.ok`);
the clock comes in as an argument so the bookkeeping is plain and testable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class StoreHealth:
    """Up or down, with totals: ``outages``, ``outage_seconds`` (ended outages, plus the one
    going on), ``failures`` (failed transactions)."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, *, settle_s: float = 1.0
    ) -> None:
        self._clock = clock
        self.settle_s = settle_s
        """An outage ends once writes have gone through for this long with no failure
        between (a full disk frees a little space now and then: one outage, not several)."""
        self.down_since: float | None = None
        self._ok_since: float | None = None
        self.outages = 0
        self.failures = 0
        self._ended_seconds = 0.0
        self._first_error = ""
        self.on_down: Callable[[], None] = lambda: None
        """Told when an outage starts (the write-behind starts probing for the end of it)."""

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def outage_seconds(self) -> float:
        """Seconds spent in outages so far (the current one included, up to the first write
        that went through if it is settling)."""
        end = self._ok_since if self._ok_since is not None else self._clock()
        current = 0.0 if self.down_since is None else end - self.down_since
        return self._ended_seconds + current

    def failed(self, exc: BaseException) -> None:
        """A transaction failed because the store is unavailable."""
        self.failures += 1
        self._ok_since = None
        if self.down_since is not None:
            return
        self.down_since = self._clock()
        self.outages += 1
        self._first_error = _short(exc)
        log.error(
            "store unavailable (%s): live calls go on from memory and their changes are written "
            "when it is back; requests that need it answer 503 serviceNotAvailable",
            self._first_error,
        )
        self.on_down()

    def ok(self) -> None:
        """A write committed: the store is back (if it was away, once writes have gone
        through for ``settle_s``)."""
        if self.down_since is None:
            return
        t = self._clock()
        if self._ok_since is None:
            self._ok_since = t
        if t - self._ok_since < self.settle_s:
            return
        took = self._ok_since - self.down_since
        self._ended_seconds += took
        self.down_since = self._ok_since = None
        log.warning(
            "store available again after %.1f s (outage began with: %s)", took, self._first_error
        )


def _short(exc: BaseException) -> str:
    """The first line of what went wrong, without SQLAlchemy's SQL and background link."""
    text = str(getattr(exc, "orig", None) or exc) or type(exc).__name__
    return text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__


__all__ = ["StoreHealth"]
