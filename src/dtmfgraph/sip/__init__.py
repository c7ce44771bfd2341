"""Sans-I/O SIP for dtmfgraph: message codec, SDP offer/answer, transactions, dialogs, digest
authentication, registration and SIP INFO DTMF relay, driven by one :class:`UserAgent` object
per address."""

from dtmfgraph.sip.acl import SourceAllowlist
from dtmfgraph.sip.agent import ALLOWED_METHODS, UserAgent
from dtmfgraph.sip.call import Call, CallState, Role
from dtmfgraph.sip.counters import SipCounters
from dtmfgraph.sip.dialog import Dialog, DialogState
from dtmfgraph.sip.digest import Challenge, Credentials
from dtmfgraph.sip.digest_server import DigestGuard
from dtmfgraph.sip.errors import (
    DigestError,
    SdpNegotiationError,
    SdpParseError,
    SipError,
    SipParseError,
    SipStateError,
)
from dtmfgraph.sip.events import (
    CallEnded,
    CallEstablished,
    CallFailed,
    CallRinging,
    Event,
    IncomingCall,
    InfoDtmf,
    Registered,
    RegistrationEvent,
    RegistrationFailed,
    ReInvite,
    RequestCompleted,
    RequestFailed,
    Unregistered,
)
from dtmfgraph.sip.headers import CSeq, Headers, Via
from dtmfgraph.sip.message import SipMessage, SipRequest, SipResponse, parse_message
from dtmfgraph.sip.registration import Registration, RegistrationState
from dtmfgraph.sip.sdp import (
    PCMA,
    PCMU,
    TELEPHONE_EVENT,
    AudioMedia,
    Codec,
    CryptoAttribute,
    Direction,
    SessionDescription,
    audio_media,
    build_answer,
    build_offer,
)
from dtmfgraph.sip.transaction import SipTimers
from dtmfgraph.sip.uri import NameAddr, SipUri

__all__ = [
    "ALLOWED_METHODS",
    "PCMA",
    "PCMU",
    "TELEPHONE_EVENT",
    "AudioMedia",
    "CSeq",
    "Call",
    "CallEnded",
    "CallEstablished",
    "CallFailed",
    "CallRinging",
    "CallState",
    "Challenge",
    "Codec",
    "Credentials",
    "CryptoAttribute",
    "Dialog",
    "DialogState",
    "DigestError",
    "DigestGuard",
    "Direction",
    "Event",
    "Headers",
    "IncomingCall",
    "InfoDtmf",
    "NameAddr",
    "ReInvite",
    "Registered",
    "Registration",
    "RegistrationEvent",
    "RegistrationFailed",
    "RegistrationState",
    "RequestCompleted",
    "RequestFailed",
    "Role",
    "SdpNegotiationError",
    "SdpParseError",
    "SessionDescription",
    "SipCounters",
    "SipError",
    "SipMessage",
    "SipParseError",
    "SipRequest",
    "SipResponse",
    "SipStateError",
    "SipTimers",
    "SipUri",
    "SourceAllowlist",
    "Unregistered",
    "UserAgent",
    "Via",
    "audio_media",
    "build_answer",
    "build_offer",
    "parse_message",
]
