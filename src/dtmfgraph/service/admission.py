"""Admission control: new work is refused while the media clock runs late, before keys suffer.

The measure is :class:`~dtmfgraph.media_load.MediaLoad`: the moving average of how late the
pacer's wake-ups run (the media's own view of the event loop's lag). Two levels (our choice,
Graph says nothing; documented in docs/api.md and docs/settings.md):

- ``new_calls_ms`` (default 5 ms, a quarter of a packet slot): from this level up, new calls are
  refused: create-call and answer get 503 ``serviceNotAvailable`` with ``Retry-After``, an
  incoming INVITE SIP 503 with ``Retry-After``, until the level is back under half of it.
- ``media_ops_ms`` (default 20 ms, a whole packet slot): from this level up, new media operations
  on calls already up (sendDtmfTones, playPrompt, recordResponse) get the same 503, until the
  level is back under half of it. Below it they are served: the calls already carried keep
  working while the node sheds new calls.

Nothing accepted is ever dropped for load: an operation taken is played to its end (its packets
may leave late, never fewer), and reads, cancels and hang-ups are always served. Each refusal
is counted (``dtmfgraph_resources_exhausted_total{resource="media_load"}``); each episode of
overload is logged twice, when it starts (at the first refusal) and when it ends (at the first
admission after it), never per refusal.

Sans-I/O: the time comes in as an argument; the level from ``load()`` (``None``: no media clock,
e.g. the loopback backend: nothing is refused).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ..media_load import Episode, MediaLoad, Overload
from ..refusals import MEDIA_LOAD, Refusals
from .errors import ServiceUnavailableError

OVERLOAD_RETRY_AFTER_S: Final = 5
"""``Retry-After`` (seconds) of work refused for load: a few time constants of the gauge."""


@dataclass(frozen=True, slots=True)
class AdmissionConfig:
    """The two levels of media lateness (milliseconds; 0: never refuse for it)."""

    new_calls_ms: float = 5.0
    media_ops_ms: float = 20.0


class _Gate:
    """One level: its hysteresis, its log lines, its refusals."""

    def __init__(self, what: str, setting: str, level_ms: float, log: logging.Logger) -> None:
        self.what = what
        self.setting = setting
        self.overload = Overload(level_ms / 1000) if level_ms > 0 else None
        self.log = log

    def check(self, level: float, now: float, refusals: Refusals) -> ServiceUnavailableError | None:
        overload = self.overload
        if overload is None:
            return None
        over, changed = overload.check(level, now)
        if not over:
            if changed is not None:
                self._ended(changed, now)
            return None
        episode = overload.episode
        assert episode is not None
        episode.refused += 1
        refusals.count(MEDIA_LOAD)
        detail = (
            f"the media clock runs {level * 1000:.1f} ms late on average "
            f"({self.setting}={overload.high * 1000:g} ms)"
        )
        if changed is not None:
            self.log.warning(
                "media overloaded: %s: refusing %s with 503 + Retry-After until it is back "
                "under %g ms (calls up keep their keys; this episode is logged again when it "
                "ends)",
                detail,
                self.what,
                overload.low * 1000,
            )
        return ServiceUnavailableError(
            f"media overloaded, {detail}: try again shortly", retry_after_s=OVERLOAD_RETRY_AFTER_S
        )

    def _ended(self, episode: Episode, now: float) -> None:
        self.log.warning(
            "media load back to normal after %.1f s of overload (peak %.1f ms late on average): "
            "%d %s refused with 503 in this episode",
            now - episode.started,
            episode.peak * 1000,
            episode.refused,
            self.what,
        )


class Admission:
    """Whether new work may start now, by the media load (see the module's docstring)."""

    def __init__(
        self,
        config: AdmissionConfig,
        refusals: Refusals,
        load: Callable[[], MediaLoad | None],
        log: logging.Logger,
    ) -> None:
        self.config = config
        self._refusals = refusals
        self._load = load
        self._calls = _Gate("new calls", "overload_new_calls_ms", config.new_calls_ms, log)
        self._ops = _Gate("new media operations", "overload_media_ops_ms", config.media_ops_ms, log)

    def level(self, now: float) -> float:
        """The media clock's average lateness at ``now``, seconds (0 without a media clock)."""
        load = self._load()
        return load.level(now) if load is not None else 0.0

    def new_call(self, now: float) -> ServiceUnavailableError | None:
        """The 503 for a new call (placed, or answered, or an incoming INVITE) at ``now``, or
        ``None`` to take it."""
        return self._calls.check(self.level(now), now, self._refusals)

    def media_operation(self, now: float) -> ServiceUnavailableError | None:
        """The 503 for a new media operation on a call already up at ``now``, or ``None``."""
        return self._ops.check(self.level(now), now, self._refusals)


__all__ = ["OVERLOAD_RETRY_AFTER_S", "Admission", "AdmissionConfig"]
