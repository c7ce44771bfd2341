"""Shared in-band detector banks: many inbound streams, one vectorised detector call per frame."""

from __future__ import annotations

from dtmfgraph.rtp import InbandBank

from .pacer import Pacer


class InbandBanks:
    """Hands out :class:`~dtmfgraph.rtp.InbandBank` channels, adding banks as they fill up.

    Every bank is driven by ``pacer`` (one detector call per bank per frame). Pass the bank from
    :meth:`bank` to an inbound stream, e.g. ``RtpSession.open(pacer, bank=banks.bank())``; a
    stream gives its channel back when it is closed.
    """

    def __init__(self, pacer: Pacer, *, channels: int = 256, ptime_ms: int = 20) -> None:
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        pacer.check_ptime(ptime_ms)
        self._pacer = pacer
        self.channels = channels
        self.ptime_ms = ptime_ms
        self.banks: list[InbandBank] = []

    def bank(self) -> InbandBank:
        """A bank with a free channel (a new one when all are full)."""
        for bank in self.banks:
            if bank.free:
                return bank
        bank = InbandBank(self.channels, start=self._pacer.next_tick(), ptime_ms=self.ptime_ms)
        self._pacer.add_clock(bank)
        self.banks.append(bank)
        return bank

    @property
    def in_use(self) -> int:
        """Channels attached to a stream, over all banks."""
        return sum(b.channels - b.free for b in self.banks)

    def close(self) -> None:
        """Take every bank off the pacer."""
        for bank in self.banks:
            self._pacer.remove_clock(bank)
        self.banks.clear()
