"""SIP messages out of a byte stream (TCP, RFC 3261 18.3): the header block up to the empty
line, then exactly ``Content-Length`` bytes of body. CRLFs between messages (RFC 5626
keep-alives) are skipped and counted: a double CRLF is a ping (a server answers it with one
CRLF), a single CRLF a pong. Sans-I/O: bytes in, whole messages out."""

from __future__ import annotations

import re
from typing import Final

from dtmfgraph.sip.errors import SipParseError

MAX_HEADER_BYTES: Final = 64 * 1024
"""A header block longer than this (no empty line yet) breaks the stream."""
MAX_BODY_BYTES: Final = 1024 * 1024
"""A Content-Length above this breaks the stream."""

_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\d+)[ \t]*\r?$", re.I | re.M)


class StreamFramer:
    """Cuts one connection's bytes into SIP messages.

    :meth:`feed` returns the messages completed so far; a stream that cannot be framed (a
    message without Content-Length, one too large) raises :class:`SipParseError`, after which
    the connection must be closed: where the next message starts is unknown.
    """

    def __init__(self, *, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.max_body_bytes = max_body_bytes
        """A Content-Length above this breaks the stream."""
        self._buffer = bytearray()
        self._run = 0
        """CRLFs in the gap before the next message, not yet counted as a ping."""
        self.crlfs = 0
        """CRLFs read between messages (keep-alive pings and pongs)."""
        self.pings = 0
        """Double CRLFs read between messages (RFC 5626 pings)."""

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return every message now complete, in order."""
        self._buffer += data
        out: list[bytes] = []
        while True:
            buffer = self._buffer
            start = 0
            while buffer[start : start + 2] == b"\r\n":
                start += 2
            if start:
                del buffer[:start]
                self._count_crlfs(start // 2)
            if buffer and buffer[0] != 0x0D:  # not a CR
                self._run = 0  # a message starts: the next CRLFs begin a new gap
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEADER_BYTES:
                    raise SipParseError(f"no end of the header block in {len(buffer)} bytes")
                return out
            head = bytes(buffer[:end])
            lengths = _CONTENT_LENGTH.findall(head)
            if not lengths:
                raise SipParseError("a message on a stream needs a Content-Length (RFC 3261 18.3)")
            if len(set(lengths)) > 1:
                raise SipParseError("conflicting Content-Length headers")
            if len(lengths[0]) > 9:
                raise SipParseError(f"Content-Length of {len(lengths[0])} digits")
            length = int(lengths[0])
            if length > self.max_body_bytes:
                raise SipParseError(
                    f"Content-Length {length} is too large (over {self.max_body_bytes} bytes)"
                )
            total = end + 4 + length
            if len(buffer) < total:
                return out
            out.append(bytes(buffer[:total]))
            del buffer[:total]

    def _count_crlfs(self, n: int) -> None:
        self.crlfs += n
        run = self._run + n
        self.pings += run // 2
        self._run = run % 2

    @property
    def pending(self) -> int:
        """Bytes held that do not yet make a message."""
        return len(self._buffer)
