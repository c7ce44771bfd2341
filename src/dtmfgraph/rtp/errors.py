"""The errors of the RTP layer."""

from __future__ import annotations

from dtmfgraph.tones import NoTonePairError, UnknownKeyError


class RtpError(ValueError):
    """A malformed RTP packet or telephone-event payload, or fields that cannot be serialised."""


class DtmfJobError(ValueError):
    """A DTMF job that cannot be sent as asked (bad keys, parameters or method)."""


class BadKeyError(DtmfJobError, UnknownKeyError):
    """A key that is not on the keypad (``0``-``9``, ``*``, ``#``, ``A``-``D``, ``F`` = flash)."""


class InbandFlashError(DtmfJobError, NoTonePairError):
    """``flash`` asked in-band: it has no tone pair and exists only as RFC 4733 event 16."""


class BankFullError(RuntimeError):
    """Every channel of an :class:`~dtmfgraph.rtp.inband.InbandBank` is taken."""
