"""SDP (RFC 4566) and the offer/answer rules we follow (RFC 3264) for one audio stream, with
SDES crypto attributes (RFC 4568) for SRTP."""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from dtmfgraph.sip.errors import SdpNegotiationError, SdpParseError
from dtmfgraph.sip.grammar import small_int

SDP_CONTENT_TYPE: Final = "application/sdp"
_SESSION_ORDER: Final = "vosiuepcbtrzkam"
_MEDIA_ORDER: Final = "micbka"
MAX_PT: Final = 127
"""RTP payload types are 7 bits (RFC 3550 5.1): 0-127."""
MAX_PTIME_MS: Final = 1000
"""The longest ``a=ptime`` / ``a=maxptime`` we read (ms)."""
_PTIME_RE: Final = re.compile(r"[0-9]{1,4}(?:\.[0-9]{1,4})?")
HOLD_ADDRESSES: Final = frozenset({"0.0.0.0", "::"})
"""Connection addresses that mean "send me nothing" (RFC 2543-style hold)."""


class Direction(enum.StrEnum):
    """Media direction attribute (RFC 3264 5.1), from the describing side's point of view."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        """Whether the describing side sends media."""
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        """Whether the describing side receives media."""
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    @classmethod
    def of(cls, sends: bool, receives: bool) -> Direction:
        """The direction with these send/receive flags."""
        if sends and receives:
            return cls.SENDRECV
        if sends:
            return cls.SENDONLY
        return cls.RECVONLY if receives else cls.INACTIVE

    def answer(self, *, we_send: bool = True, we_receive: bool = True) -> Direction:
        """The direction an answerer gives to this offered direction (RFC 3264 6.1)."""
        return Direction.of(self.receives and we_send, self.sends and we_receive)


_DIRECTION_NAMES: Final = frozenset(d.value for d in Direction)


@dataclass(frozen=True, slots=True)
class Codec:
    """One RTP payload format: payload type, encoding name, clock rate, optional fmtp."""

    payload_type: int
    name: str
    clock_rate: int = 8000
    channels: int | None = None
    fmtp: str | None = None

    def same_format(self, other: Codec) -> bool:
        """Whether ``other`` is the same encoding (name and clock rate; PTs may differ)."""
        return self.name.lower() == other.name.lower() and self.clock_rate == other.clock_rate

    @property
    def rtpmap(self) -> str:
        """The ``a=rtpmap`` value."""
        text = f"{self.payload_type} {self.name}/{self.clock_rate}"
        return text + (f"/{self.channels}" if self.channels else "")


PCMU: Final = Codec(0, "PCMU", 8000)
PCMA: Final = Codec(8, "PCMA", 8000)
TELEPHONE_EVENT: Final = Codec(101, "telephone-event", 8000, fmtp="0-16")
DEFAULT_CODECS: Final = (PCMU, PCMA)
_STATIC: Final = {0: PCMU, 8: PCMA, 3: Codec(3, "GSM"), 9: Codec(9, "G722"), 18: Codec(18, "G729")}


@dataclass(frozen=True, slots=True)
class Origin:
    """The ``o=`` line."""

    username: str
    session_id: str
    version: int
    address: str
    nettype: str = "IN"

    @property
    def addrtype(self) -> str:
        """``IP6`` for IPv6 addresses, else ``IP4``."""
        return "IP6" if ":" in self.address else "IP4"

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


Attribute = tuple[str, str | None]


@dataclass(frozen=True, slots=True)
class CryptoAttribute:
    """One ``a=crypto`` line (RFC 4568): its tag, suite name and ``inline:`` key (base64 of
    master key and salt). ``extra``: it carries what we do not take (an MKI, several keys,
    session parameters), so it cannot be used."""

    tag: int
    suite: str
    inline: str
    extra: bool = False

    def __str__(self) -> str:
        return f"{self.tag} {self.suite} inline:{self.inline}"

    @classmethod
    def parse(cls, value: str) -> CryptoAttribute | None:
        """The attribute of an ``a=crypto:`` value, or ``None`` when it is malformed."""
        parts = value.split()
        tag = small_int(parts[0], 10) if parts else None
        if len(parts) < 3 or tag is None or not parts[2].startswith("inline:"):
            return None
        key_params = parts[2][len("inline:") :]
        extra = len(parts) > 3 or ";" in key_params
        key, _, rest = key_params.partition("|")
        for param in rest.split("|") if rest else ():
            if ":" in param:  # an MKI (value:length); a lifetime alone is fine
                extra = True
        return cls(tag, parts[1], key, extra)


CryptoChooser = Callable[[Sequence[CryptoAttribute]], CryptoAttribute | None]
"""Given the crypto lines of an offer, the one line to answer with (our key, the tag and suite
of an offered line we take), or ``None`` to take none."""


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """One ``m=`` section with its connection address and attributes."""

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    connection: str | None = None
    attributes: tuple[Attribute, ...] = ()
    other_lines: tuple[tuple[str, str], ...] = ()

    def attribute(self, name: str) -> str | None:
        """The value of the first ``a=name`` (``""`` for a flag), or ``None``."""
        for key, value in self.attributes:
            if key == name:
                return value if value is not None else ""
        return None

    def attribute_values(self, name: str) -> list[str]:
        """The values of every ``a=name:value``."""
        return [value for key, value in self.attributes if key == name and value is not None]

    @property
    def codecs(self) -> list[Codec]:
        """The formats as codecs, in preference order (static PTs need no rtpmap)."""
        rtpmaps: dict[int, Codec] = {}
        fmtps: dict[int, str] = {}
        for value in self.attribute_values("rtpmap"):
            codec = _parse_rtpmap(value)
            if codec is not None:
                rtpmaps[codec.payload_type] = codec
        for value in self.attribute_values("fmtp"):
            pt_text, _, params = value.partition(" ")
            fmtp_pt = _payload_type(pt_text)
            if fmtp_pt is not None:
                fmtps[fmtp_pt] = params.strip()
        codecs: list[Codec] = []
        for fmt in self.formats:
            pt = _payload_type(fmt)
            if pt is None:
                continue
            codec = rtpmaps.get(pt) or _STATIC.get(pt)
            if codec is not None:
                codecs.append(replace(codec, fmtp=fmtps.get(pt)))
        return codecs

    @property
    def direction(self) -> Direction | None:
        """The media-level direction attribute, or ``None`` when absent."""
        for key, _ in self.attributes:
            if key in _DIRECTION_NAMES:
                return Direction(key)
        return None

    @property
    def ptime(self) -> int | None:
        """The ``a=ptime`` value in ms."""
        ms = small_int(self.attribute("ptime") or "", 4)
        return ms if ms is not None and 0 < ms <= MAX_PTIME_MS else None


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A whole SDP body."""

    origin: Origin
    media: tuple[MediaDescription, ...] = ()
    connection: str | None = None
    session_name: str = "-"
    attributes: tuple[Attribute, ...] = ()
    times: tuple[str, ...] = ("0 0",)
    other_lines: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        """Parse an SDP body; raises :class:`SdpParseError` on any fault."""
        return _parse(data)

    def __bytes__(self) -> bytes:
        return self.serialize().encode()

    def serialize(self) -> str:
        """The body as text with CRLF line ends."""
        lines: list[tuple[str, str]] = [
            ("v", "0"),
            ("o", str(self.origin)),
            ("s", self.session_name),
        ]
        if self.connection is not None:
            lines.append(("c", _connection_line(self.connection)))
        lines.extend(("t", t) for t in self.times)
        lines.extend(self.other_lines)
        lines.extend(("a", _attribute_line(a)) for a in self.attributes)
        lines.sort(key=lambda kv: _SESSION_ORDER.index(kv[0]) if kv[0] in _SESSION_ORDER else 12)
        out = [f"{k}={v}\r\n" for k, v in lines]
        for m in self.media:
            media_lines: list[tuple[str, str]] = [
                ("m", f"{m.media} {m.port} {m.proto} {' '.join(m.formats)}")
            ]
            if m.connection is not None:
                media_lines.append(("c", _connection_line(m.connection)))
            media_lines.extend(m.other_lines)
            media_lines.extend(("a", _attribute_line(a)) for a in m.attributes)
            media_lines.sort(
                key=lambda kv: _MEDIA_ORDER.index(kv[0]) if kv[0] in _MEDIA_ORDER else 4
            )
            out.extend(f"{k}={v}\r\n" for k, v in media_lines)
        return "".join(out)

    def with_version(self, version: int) -> SessionDescription:
        """A copy with another ``o=`` session version."""
        return replace(self, origin=replace(self.origin, version=version))

    @property
    def audio(self) -> MediaDescription | None:
        """The first active (port != 0) audio stream."""
        for m in self.media:
            if m.media == "audio" and m.port != 0:
                return m
        return None


@dataclass(frozen=True, slots=True)
class AudioMedia:
    """What one side's SDP says about its audio stream.

    ``codec`` is the first non-telephone-event format (in an answer: the chosen one);
    ``telephone_event_pt`` is the RFC 4733 payload type at the codec's clock rate, or ``None``.
    """

    address: str
    port: int
    codec: Codec | None
    telephone_event_pt: int | None
    direction: Direction
    ptime: int | None = None
    codecs: tuple[Codec, ...] = field(default=())
    proto: str = "RTP/AVP"
    crypto: tuple[CryptoAttribute, ...] = field(default=())
    """Its ``a=crypto`` lines (SDES keys for SRTP), in order."""
    rtcp: tuple[str | None, int] | None = None
    """Its ``a=rtcp`` (RFC 3605): the address (``None``: the stream's) and port its RTCP uses."""
    rtcp_mux: bool = False
    """It carries ``a=rtcp-mux`` (RFC 5761): RTCP on the RTP port, when offer and answer do."""

    @property
    def rtcp_address(self) -> tuple[str, int]:
        """Where this side takes RTCP: ``a=rtcp`` if given, else the RTP port + 1."""
        if self.rtcp is None:
            return self.address, self.port + 1
        host, port = self.rtcp
        return host or self.address, port

    @property
    def secure(self) -> bool:
        """Whether the stream is SRTP (``RTP/SAVP``, or crypto lines in ``RTP/AVP``)."""
        return "SAVP" in self.proto.upper() or bool(self.crypto)

    @property
    def flowing(self) -> bool:
        """Whether this side has the audio flowing both ways (not held, ``sendrecv``)."""
        return not self.on_hold and self.direction is Direction.SENDRECV

    @property
    def on_hold(self) -> bool:
        """Whether this side asks not to receive media (sendonly, inactive or 0.0.0.0)."""
        return not self.direction.receives or self.address in HOLD_ADDRESSES


def is_ip_literal(text: str) -> bool:
    """Whether ``text`` is an IPv4 or IPv6 address as written (no host name, no zone)."""
    if "%" in text:
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def check_media(desc: SessionDescription) -> None:
    """Refuse (:class:`SdpNegotiationError`, a 488) an SDP we could not use safely.

    Every active stream's connection address (and ``a=rtcp`` address) must be an IP literal:
    a host name would have to be resolved, and we never resolve names for media (a name
    server that does not answer would stall every call), and an address with a NUL or other
    junk cannot be sent to.
    """
    for m in desc.media:
        if m.port == 0:
            continue
        address = m.connection or desc.connection
        if address is None or not is_ip_literal(address):
            raise SdpNegotiationError(
                f"m={_printable(m.media)}: the connection address {_printable(address)} "
                "is not an IP address (host names are not resolved)"
            )
        rtcp = m.attribute("rtcp")
        if rtcp is not None:
            parts = rtcp.split()
            if len(parts) == 4 and not is_ip_literal(parts[3]):
                raise SdpNegotiationError(
                    f"a=rtcp: the address {_printable(parts[3])} is not an IP address "
                    "(host names are not resolved)"
                )
            if _rtcp_attribute(rtcp) is None:
                raise SdpNegotiationError(f"a=rtcp: {_printable(rtcp)} is not a port 1-65535")
        if m.proto.upper().startswith("RTP/"):
            _check_numbers(m)


def _check_numbers(m: MediaDescription) -> None:
    """Every number an RTP stream's SDP gives is one we can read and use: payload types 0-127
    (in ``m=``, ``a=rtpmap``, ``a=fmtp``), clock rates, ptime."""
    for fmt in m.formats:
        if _payload_type(fmt) is None:
            raise SdpNegotiationError(f"m=: payload type {_printable(fmt)} is not in 0-{MAX_PT}")
    for key, value in m.attributes:
        if key in ("rtpmap", "fmtp"):
            pt_text = (value or "").partition(" ")[0]
            if _payload_type(pt_text) is None:
                raise SdpNegotiationError(
                    f"a={key}: payload type {_printable(pt_text)} is not in 0-{MAX_PT}"
                )
            if key == "rtpmap" and _parse_rtpmap(value or "") is None:
                raise SdpNegotiationError(f"a=rtpmap: unreadable {_printable(value)}")
        elif key in ("ptime", "maxptime"):
            text = value or ""
            if _PTIME_RE.fullmatch(text) is None or not 0 < float(text) <= MAX_PTIME_MS:
                raise SdpNegotiationError(
                    f"a={key}: {_printable(text)} is not a number of ms in 1-{MAX_PTIME_MS}"
                )


def _printable(text: str | None, limit: int = 60) -> str:
    """``text`` quoted, cut and made ASCII, for an error message (and a Warning header)."""
    shown = ascii(text if text is None else text[:limit])
    return shown + ("..." if text is not None and len(text) > limit else "")


def audio_media(desc: SessionDescription) -> AudioMedia | None:
    """The audio stream of ``desc`` (its first active ``m=audio``), or ``None``."""
    m = desc.audio
    if m is None:
        return None
    address = m.connection or desc.connection
    if address is None:
        return None
    codecs = m.codecs
    media_codecs = [c for c in codecs if c.name.lower() != "telephone-event"]
    codec = media_codecs[0] if media_codecs else None
    rate = codec.clock_rate if codec is not None else 8000
    te = next(
        (c for c in codecs if c.name.lower() == "telephone-event" and c.clock_rate == rate), None
    )
    direction = m.direction or _session_direction(desc) or Direction.SENDRECV
    crypto = (CryptoAttribute.parse(v) for v in m.attribute_values("crypto"))
    return AudioMedia(
        address,
        m.port,
        codec,
        te.payload_type if te else None,
        direction,
        m.ptime,
        tuple(codecs),
        m.proto,
        tuple(c for c in crypto if c is not None),
        _rtcp_attribute(m.attribute("rtcp")),
        any(key == "rtcp-mux" for key, _ in m.attributes),
    )


def _rtcp_attribute(value: str | None) -> tuple[str | None, int] | None:
    """``a=rtcp:PORT [IN IP4|IP6 ADDRESS]`` (RFC 3605); ``None`` when absent or unreadable."""
    if value is None:
        return None
    parts = value.split()
    port = small_int(parts[0], 5) if parts else None
    if port is None or not 0 < port < 65536:
        return None
    host = parts[3] if len(parts) == 4 and parts[0] and parts[1].upper() == "IN" else None
    return host, port


def build_offer(
    address: str,
    port: int,
    *,
    session_id: str,
    version: int = 1,
    codecs: Sequence[Codec] = DEFAULT_CODECS,
    telephone_event: Codec | None = TELEPHONE_EVENT,
    direction: Direction = Direction.SENDRECV,
    ptime: int | None = 20,
    username: str = "-",
    crypto: Sequence[CryptoAttribute] = (),
    srtp_required: bool = True,
    rtcp_mux: bool = False,
) -> SessionDescription:
    """An offer for one audio stream (default: PCMU, PCMA, telephone-event 101, ptime 20);
    with ``crypto`` lines, an SRTP one: ``RTP/SAVP``, or with ``srtp_required=False``
    ``RTP/AVP`` (best-effort SRTP: a peer without SRTP ignores the lines and answers RTP);
    ``rtcp_mux`` offers RTCP on the RTP port (``a=rtcp-mux``, RFC 5761)."""
    formats = list(codecs) + ([telephone_event] if telephone_event else [])
    proto = "RTP/SAVP" if crypto and srtp_required else "RTP/AVP"
    return SessionDescription(
        Origin(username, session_id, version, address),
        (_audio_section(port, formats, direction, ptime, proto, crypto, rtcp_mux),),
        connection=address,
    )


def build_answer(
    offer: SessionDescription,
    address: str,
    port: int,
    *,
    session_id: str,
    version: int = 1,
    codecs: Sequence[Codec] = DEFAULT_CODECS,
    telephone_event: bool = True,
    direction: Direction = Direction.SENDRECV,
    ptime: int | None = 20,
    username: str = "-",
    crypto: CryptoChooser | None = None,
    rtcp_mux: bool = False,
) -> SessionDescription:
    """Answer ``offer``: the first offered codec we support, in the offerer's order.
    With ``rtcp_mux``, an offered ``a=rtcp-mux`` (RFC 5761) is taken (echoed in the answer).

    telephone-event is answered only when offered, with the offerer's payload type. Every
    other ``m=`` line is refused with port 0. An SRTP stream (``RTP/SAVP``) is taken only when
    ``crypto`` picks one of its crypto lines; crypto lines in ``RTP/AVP`` (best-effort SRTP)
    are answered when it picks one, else the stream is plain RTP. Raises
    :class:`SdpNegotiationError` when there is no usable audio stream or no common codec, or
    the offer fails :func:`check_media`.
    """
    check_media(offer)
    chosen_index: int | None = None
    formats: list[Codec] = []
    offered: AudioMedia | None = None
    answer_crypto: CryptoAttribute | None = None
    refused_srtp = False
    for index, m in enumerate(offer.media):
        if m.media != "audio" or m.port == 0 or not m.proto.upper().startswith("RTP/"):
            continue
        offered = audio_media(replace(offer, media=(m,)))
        if offered is None:
            continue
        usable = [c for c in offered.crypto if not c.extra]
        answer_crypto = crypto(usable) if crypto is not None and usable else None
        if answer_crypto is None and "SAVP" in m.proto.upper():
            refused_srtp = True
            continue
        pick = next((c for c in m.codecs if any(c.same_format(o) for o in codecs)), None)
        if pick is None or pick.name.lower() == "telephone-event":
            continue
        formats = [replace(pick, fmtp=pick.fmtp)]
        if telephone_event and offered.telephone_event_pt is not None:
            formats.append(
                Codec(offered.telephone_event_pt, "telephone-event", pick.clock_rate, fmtp="0-16")
            )
        chosen_index = index
        break
    if chosen_index is None or offered is None:
        if refused_srtp:
            raise SdpNegotiationError("no SRTP crypto suite we take in the offer (RTP/SAVP)")
        raise SdpNegotiationError("no common audio codec in the offer")
    offered_direction = offered.direction
    if offered.address in HOLD_ADDRESSES:
        offered_direction = Direction.of(offered_direction.sends, False)
    answer_direction = offered_direction.answer(
        we_send=direction.sends, we_receive=direction.receives
    )
    media: list[MediaDescription] = []
    for index, m in enumerate(offer.media):
        if index == chosen_index:
            proto = offer.media[index].proto
            crypto_lines = (answer_crypto,) if answer_crypto is not None else ()
            mux = rtcp_mux and any(key == "rtcp-mux" for key, _ in m.attributes)
            media.append(
                _audio_section(port, formats, answer_direction, ptime, proto, crypto_lines, mux)
            )
        else:
            media.append(MediaDescription(m.media, 0, m.proto, m.formats[:1] or ("0",)))
    return SessionDescription(
        Origin(username, session_id, version, address), tuple(media), connection=address
    )


def next_local_version(
    previous: SessionDescription | None, new: SessionDescription
) -> SessionDescription:
    """``new`` stamped to follow ``previous`` (RFC 3264 8): same origin, version + 1 if changed."""
    if previous is None:
        return new
    origin = replace(previous.origin, address=new.origin.address)
    same = replace(new, origin=origin) == previous
    return replace(
        new, origin=replace(origin, version=previous.origin.version + (0 if same else 1))
    )


def _audio_section(
    port: int,
    formats: Iterable[Codec],
    direction: Direction,
    ptime: int | None,
    proto: str = "RTP/AVP",
    crypto: Sequence[CryptoAttribute] = (),
    rtcp_mux: bool = False,
) -> MediaDescription:
    formats = list(formats)
    attributes: list[Attribute] = []
    for codec in formats:
        attributes.append(("rtpmap", codec.rtpmap))
        if codec.fmtp:
            attributes.append(("fmtp", f"{codec.payload_type} {codec.fmtp}"))
    if ptime:
        attributes.append(("ptime", str(ptime)))
    attributes.append((direction.value, None))
    attributes += [("crypto", str(line)) for line in crypto]
    if rtcp_mux:
        attributes.append(("rtcp-mux", None))
    return MediaDescription(
        "audio",
        port,
        proto,
        tuple(str(c.payload_type) for c in formats),
        None,
        tuple(attributes),
    )


def _session_direction(desc: SessionDescription) -> Direction | None:
    for key, _ in desc.attributes:
        if key in _DIRECTION_NAMES:
            return Direction(key)
    return None


def _parse_rtpmap(value: str) -> Codec | None:
    pt_text, _, encoding = value.partition(" ")
    parts = encoding.strip().split("/")
    pt = _payload_type(pt_text)
    rate = small_int(parts[1], 6) if len(parts) >= 2 else None
    if pt is None or not rate:
        return None
    channels = small_int(parts[2], 2) if len(parts) > 2 else None
    return Codec(pt, parts[0], rate, channels)


def _payload_type(text: str) -> int | None:
    """A payload type (0-127) as written in ``m=`` or an attribute, or ``None``."""
    pt = small_int(text, 3)
    return pt if pt is not None and pt <= MAX_PT else None


def _connection_line(address: str) -> str:
    return f"IN {'IP6' if ':' in address else 'IP4'} {address}"


def _attribute_line(attribute: Attribute) -> str:
    name, value = attribute
    return name if value is None else f"{name}:{value}"


def _parse_connection(value: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpParseError(f"bad c= line {value!r}")
    address = parts[2].split("/", 1)[0]
    if not address or not address.isascii():
        raise SdpParseError(f"bad connection address {value!r}")
    return address


@dataclass(slots=True)
class _MediaBuilder:
    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    connection: str | None = None
    attributes: list[Attribute] = field(default_factory=list)
    other: list[tuple[str, str]] = field(default_factory=list)

    def build(self) -> MediaDescription:
        return MediaDescription(
            self.media,
            self.port,
            self.proto,
            self.formats,
            self.connection,
            tuple(self.attributes),
            tuple(self.other),
        )


def _parse(data: bytes | str) -> SessionDescription:
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SdpParseError("SDP is not UTF-8") from exc
    lines = [line for line in data.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines or lines[0].strip() != "v=0":
        raise SdpParseError("SDP must start with v=0")
    origin: Origin | None = None
    session_name = "-"
    connection: str | None = None
    times: list[str] = []
    attributes: list[Attribute] = []
    other: list[tuple[str, str]] = []
    media: list[MediaDescription] = []
    current: _MediaBuilder | None = None

    for line in lines[1:]:
        if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
            raise SdpParseError(f"bad SDP line {line!r}")
        kind, value = line[0], line[2:].strip()
        if kind == "m":
            if current is not None:
                media.append(current.build())
            parts = value.split()
            if len(parts) < 4:
                raise SdpParseError(f"bad m= line {value!r}")
            port = small_int(parts[1].split("/", 1)[0], 5)
            if port is None or port > 65535:
                raise SdpParseError(f"bad media port {_printable(parts[1])}")
            current = _MediaBuilder(parts[0], port, parts[2], tuple(parts[3:]))
        elif kind == "a":
            name, colon, attr_value = value.partition(":")
            attribute: Attribute = (name, attr_value if colon else None)
            if current is None:
                attributes.append(attribute)
            else:
                current.attributes.append(attribute)
        elif kind == "c":
            if current is None:
                connection = _parse_connection(value)
            else:
                current.connection = _parse_connection(value)
        elif current is not None:
            current.other.append((kind, value))
        elif kind == "o":
            parts = value.split()
            if len(parts) != 6 or not parts[2].isascii() or not parts[2].isdigit():
                raise SdpParseError(f"bad o= line {value!r}")
            if len(parts[2]) > 20:
                raise SdpParseError(f"o= version too large {value!r}")
            origin = Origin(parts[0], parts[1], int(parts[2]), parts[5], parts[3])
        elif kind == "s":
            session_name = value or "-"
        elif kind == "t":
            times.append(value)
        elif kind == "v":
            raise SdpParseError("second v= line")
        else:
            other.append((kind, value))
    if current is not None:
        media.append(current.build())
    if origin is None:
        raise SdpParseError("SDP without o= line")
    for m in media:
        if m.port and (m.connection or connection) is None:
            raise SdpParseError(f"no c= line for m={m.media}")
    return SessionDescription(
        origin,
        tuple(media),
        connection,
        session_name,
        tuple(attributes),
        tuple(times) or ("0 0",),
        tuple(other),
    )


def with_direction(desc: SessionDescription, direction: Direction) -> SessionDescription:
    """A copy whose audio stream carries ``direction`` (used for hold and resume offers)."""
    media: list[MediaDescription] = []
    for m in desc.media:
        if m.media == "audio" and m.port != 0:
            attributes = tuple(a for a in m.attributes if a[0] not in _DIRECTION_NAMES)
            media.append(replace(m, attributes=(*attributes, (direction.value, None))))
        else:
            media.append(m)
    return replace(desc, media=tuple(media))
