"""asyncio drivers for the sans-I/O cores: UDP endpoints, one shared pacer clock, RTP sessions,
and the SIP :class:`Phone` that places and answers calls and presses keys in them."""

from .banks import InbandBanks
from .pacer import Clocked, Outbound, PacedStream, Pacer, PacerStats, settle_heap
from .phone import (
    DEFAULT_MEDIA_TIMEOUT,
    CallEnd,
    CallEndedError,
    DialError,
    DialTimeoutError,
    DtmfError,
    DtmfResult,
    DtmfSendError,
    EndReason,
    HeardKey,
    IncomingInvite,
    Phone,
    PhoneCall,
    PhoneError,
)
from .registration import PhoneRegistration, RegistrationError
from .resolve import ResolveError, SipResolver, SrvRecord, srv_order
from .session import DtmfSending, NoRemoteError, RtpSession, SessionClosedError
from .sip_transport import SipTransport
from .tls import DEFAULT_TLS_PORT, TlsConfig, TlsConfigError
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
    "DEFAULT_MEDIA_TIMEOUT",
    "DEFAULT_TLS_PORT",
    "Address",
    "CallEnd",
    "CallEndedError",
    "Clocked",
    "DialError",
    "DialTimeoutError",
    "DtmfError",
    "DtmfResult",
    "DtmfSendError",
    "DtmfSending",
    "EndReason",
    "HeardKey",
    "InbandBanks",
    "IncomingInvite",
    "MediaError",
    "NoRemoteError",
    "Outbound",
    "PacedStream",
    "Pacer",
    "PacerStats",
    "Phone",
    "PhoneCall",
    "PhoneError",
    "PhoneRegistration",
    "PortRange",
    "PortRangeExhaustedError",
    "RegistrationError",
    "ResolveError",
    "RtpSession",
    "SessionClosedError",
    "SipResolver",
    "SipTransport",
    "SrvRecord",
    "TlsConfig",
    "TlsConfigError",
    "UdpEndpoint",
    "bind_udp",
    "open_udp_endpoint",
    "parse_address",
    "settle_heap",
    "srv_order",
]
