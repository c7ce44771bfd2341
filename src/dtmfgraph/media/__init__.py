"""asyncio drivers for the sans-I/O cores: UDP endpoints, one shared pacer clock, RTP sessions."""

from .banks import InbandBanks
from .pacer import Clocked, Outbound, PacedStream, Pacer, PacerStats
from .session import DtmfSending, NoRemoteError, RtpSession, SessionClosedError
from .udp import (
    Address,
    MediaError,
    PortRange,
    PortRangeExhaustedError,
    UdpEndpoint,
    bind_udp,
    open_udp_endpoint,
    parse_address,
)

__all__ = [
    "Address",
    "Clocked",
    "DtmfSending",
    "InbandBanks",
    "MediaError",
    "NoRemoteError",
    "Outbound",
    "PacedStream",
    "Pacer",
    "PacerStats",
    "PortRange",
    "PortRangeExhaustedError",
    "RtpSession",
    "SessionClosedError",
    "UdpEndpoint",
    "bind_udp",
    "open_udp_endpoint",
    "parse_address",
]
