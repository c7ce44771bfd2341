"""Shared in-band detector banks: many inbound streams, one vectorised detector call per frame."""

from __future__ import annotations

from dtmfgraph.rtp import InbandBank

from .pacer import Pacer


class InbandBanks:
    """Hands out :class:`~dtmfgraph.rtp.InbandBank` channels, adding banks as they fill up.

    Every bank in use is driven by ``pacer`` (one detector call per bank per frame). Pass the
    bank from :meth:`bank` to an inbound stream, e.g. ``RtpSession.open(pacer,
    bank=banks.bank())``; a stream gives its channel back when it is closed.

    A bank is on the pacer only while a channel of it is attached: when its last stream closes it
    leaves the clock and the list (no tick on silent channels: an idle process costs nothing),
    and the next stream to attach to it puts it back, re-anchored on the pacer's grid.
    """

    def __init__(self, pacer: Pacer, *, channels: int = 256, ptime_ms: int = 20) -> None:
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        pacer.check_ptime(ptime_ms)
        self._pacer = pacer
        self.channels = channels
        self.ptime_ms = ptime_ms
        self.banks: list[InbandBank] = []
        """The banks in use (a new one is listed as soon as it is handed out)."""

    def bank(self) -> InbandBank:
        """A bank with a free channel (a new one when all are full)."""
        for bank in self.banks:
            if bank.free:
                return bank
        bank = InbandBank(self.channels, start=self._pacer.next_tick(), ptime_ms=self.ptime_ms)
        bank.on_use = lambda busy: self._use(bank, busy)
        self.banks.append(bank)
        return bank

    def _use(self, bank: InbandBank, busy: bool) -> None:
        if busy:  # its first channel: on the clock from the next grid point
            bank.restart(self._pacer.next_tick())
            self._pacer.add_clock(bank)
            if bank not in self.banks:
                self.banks.append(bank)
        else:  # its last channel went: off the clock until a stream attaches again
            self._pacer.remove_clock(bank)
            if bank in self.banks:
                self.banks.remove(bank)

    @property
    def in_use(self) -> int:
        """Channels attached to a stream, over all banks."""
        return sum(b.channels - b.free for b in self.banks)

    def close(self) -> None:
        """Take every bank off the pacer."""
        for bank in self.banks:
            bank.on_use = None
            self._pacer.remove_clock(bank)
        self.banks.clear()
