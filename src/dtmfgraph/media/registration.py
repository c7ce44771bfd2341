"""A :class:`~dtmfgraph.media.phone.Phone`'s binding at a registrar, as asyncio sees it.

The sans-I/O :class:`~dtmfgraph.sip.Registration` does the protocol (refresh before expiry,
retry after failures, digest); :class:`PhoneRegistration` lets a program wait for it to be
registered, read how it stands, and remove it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from dtmfgraph.sip import (
    Registered,
    Registration,
    RegistrationEvent,
    RegistrationFailed,
    RegistrationState,
    Unregistered,
)

from .udp import Address, MediaError

if TYPE_CHECKING:
    from .phone import Phone

logger = logging.getLogger(__name__)


class RegistrationError(MediaError):
    """Registering did not succeed in time; ``status``, ``reason`` and ``detail`` say what the
    last attempt got (0 / "not sent" when none was made)."""

    def __init__(self, aor: str, status: int, reason: str, detail: str = "") -> None:
        self.aor, self.status, self.reason, self.detail = aor, status, reason, detail
        text = f"registering {aor} failed: {status} {reason}".rstrip()
        super().__init__(f"{text} ({detail})" if detail else text)


class PhoneRegistration:
    """One address-of-record kept bound to the phone's Contact (see :meth:`Phone.register`).

    ``destinations``: the registrar's servers, best first, when DNS named several (then
    ``target``, the URI they were found for, is looked up again once all have failed).
    """

    def __init__(
        self,
        phone: Phone,
        sip: Registration,
        destinations: list[Address] | None = None,
        target: str | None = None,
    ) -> None:
        self._phone = phone
        self.sip = sip
        self.destinations = destinations or [sip.destination]
        """Servers of the registrar, best first; REGISTERs go to :attr:`destination`."""
        self._target = target
        self._lookup: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.registrations = 0
        """2xx answers to our REGISTERs so far (the first binding and each refresh)."""
        self.failures = 0
        """Failed attempts so far (each is retried)."""
        self.last_error: RegistrationError | None = None
        """The last failure, until a later attempt succeeds."""

    def __repr__(self) -> str:
        return f"<PhoneRegistration {self.aor} {self.state}>"

    @property
    def aor(self) -> str:
        return str(self.sip.aor)

    @property
    def destination(self) -> Address:
        """The server REGISTERs go to now."""
        return self.sip.destination

    @property
    def state(self) -> RegistrationState:
        return self.sip.state

    @property
    def expires(self) -> int | None:
        """Seconds the registrar granted last time (``None`` before any 2xx)."""
        return self.sip.expires

    @property
    def registered(self) -> bool:
        """Whether the registrar holds our binding now (it may be between refreshes)."""
        until = self.sip.registered_until
        return until is not None and until > self._phone.loop.time() and not self.sip.is_over

    async def wait(self, timeout: float = 10.0) -> None:
        """Return once registered; :class:`RegistrationError` (the last failure) if that does
        not happen within ``timeout`` seconds or the registration ends."""
        loop = self._phone.loop
        deadline = loop.time() + timeout
        while not self.registered:
            if self.sip.is_over:
                raise self.last_error or RegistrationError(self.aor, 0, "unregistered")
            left = deadline - loop.time()
            if left <= 0:
                raise self.last_error or RegistrationError(
                    self.aor, 408, "Request Timeout", f"not registered within {timeout:g} s"
                )
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                continue

    async def unregister(self, timeout: float = 5.0) -> None:
        """Remove the binding (``Expires: 0``) and wait at most ``timeout`` for the answer; the
        registration is over either way."""
        phone = self._phone
        if phone._transport is None or phone.transport.closed:  # nothing can be sent any more
            phone._forget_registration(self)
            return
        phone.ua.unregister(self.sip, phone.loop.time())
        phone.transport.kick()
        loop = phone.loop
        deadline = loop.time() + timeout
        while not self.sip.is_over and loop.time() < deadline:
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), deadline - loop.time())
            except TimeoutError:
                break
        phone._forget_registration(self)

    def _on_event(self, event: RegistrationEvent) -> None:
        if isinstance(event, Registered):
            self.registrations += 1
            self.last_error = None
            if self.registrations == 1:
                logger.info("registered %s for %d s", self.aor, event.expires)
            else:
                logger.debug("refreshed %s for %d s", self.aor, event.expires)
        elif isinstance(event, RegistrationFailed):
            self.failures += 1
            self.last_error = RegistrationError(self.aor, event.status, event.reason, event.detail)
            if (event.timed_out or event.status == 503) and self._fail_over():
                return
            wait = (event.retry_at - self._phone.loop.time()) if event.retry_at else 0.0
            logger.warning("%s; trying again in %.0f s", self.last_error, max(wait, 0.0))
        elif isinstance(event, Unregistered):
            logger.info("unregistered %s (%d %s)", self.aor, event.status, event.reason)
        self._changed.set()

    def _fail_over(self) -> bool:
        """The server did not answer, or answered 503: move to the next one and retry at once
        (True); after the last one, look the name up again for the next retry (False)."""
        servers = self.destinations
        if len(servers) < 2 or self.sip.is_over:
            return False
        phone = self._phone
        index = servers.index(self.destination) if self.destination in servers else -1
        if index + 1 < len(servers):
            following = servers[index + 1]
            logger.warning("%s; trying the next server, %s:%d", self.last_error, *following)
            phone.failovers += 1
            phone.ua.move_registration(self.sip, following, phone.loop.time(), at_once=True)
            phone.transport.kick()
            self._changed.set()
            return True
        phone.ua.move_registration(self.sip, servers[0], phone.loop.time(), at_once=False)
        if self._target is not None and (self._lookup is None or self._lookup.done()):
            self._lookup = phone.loop.create_task(self._look_up_again(self._target))
        return False

    async def _look_up_again(self, target: str) -> None:
        """Every server failed: ask DNS again, for the next retry."""
        phone = self._phone
        try:
            found = [d for d in await phone._resolve_all(target, 5.0) if d is not None]
        except MediaError as exc:
            logger.warning("registering %s: looking up %s again failed: %s", self.aor, target, exc)
            return
        if found and not self.sip.is_over and not phone.closed:
            self.destinations = found
            phone.ua.move_registration(self.sip, found[0], phone.loop.time(), at_once=False)
