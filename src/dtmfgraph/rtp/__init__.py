"""Sans-I/O RTP: packet and RFC 4733 event codecs, an outbound scheduler, inbound reassembly.

Nothing here reads a clock, sleeps or touches a socket: time comes in as ``now`` (seconds, any
monotonic clock), bytes come in and go out as values, and what happened comes out as small
event dataclasses (:class:`JobStarted`, :class:`JobFinished`, :class:`KeyHeard`).
"""

from .codec import CLOCK_RATE, Codec
from .errors import BadKeyError, BankFullError, DtmfJobError, InbandFlashError, RtpError
from .inband import BankStats, InbandBank, InbandChannel, SoloInband
from .inbound import InboundStats, InboundStream, KeyHeard
from .jitter import JitterBuffer, JitterStats, Played
from .outbound import (
    AudioJob,
    DtmfJob,
    Job,
    JobFinished,
    JobStarted,
    Method,
    OutboundEvent,
    OutboundStream,
)
from .packet import RtpPacket
from .source import PROBATION, SourceGuard, Verdict
from .telephone_event import TelephoneEvent

__all__ = [
    "CLOCK_RATE",
    "PROBATION",
    "AudioJob",
    "BadKeyError",
    "BankFullError",
    "BankStats",
    "Codec",
    "DtmfJob",
    "DtmfJobError",
    "InbandBank",
    "InbandChannel",
    "InbandFlashError",
    "InboundStats",
    "InboundStream",
    "JitterBuffer",
    "JitterStats",
    "Job",
    "JobFinished",
    "JobStarted",
    "KeyHeard",
    "Method",
    "OutboundEvent",
    "OutboundStream",
    "Played",
    "RtpError",
    "RtpPacket",
    "SoloInband",
    "SourceGuard",
    "TelephoneEvent",
    "Verdict",
]
