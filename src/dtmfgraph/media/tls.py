"""SIP over TLS (RFC 3261 26.2, RFC 5630): our certificate, and how peers' certificates are checked.

The phone listens for TLS on its own port (5061 by default) and opens TLS connections to peers
whose URI asks for it (``sips:`` or ``;transport=tls``). A peer's certificate is checked
against ``ca_file`` (default: the system's CAs) and must name the host the URI named (its DNS
name, or its IP address for an IP URI), unless ``verify`` is off. Our certificate also goes
out as a client certificate, for servers that ask for one (mutual TLS).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .udp import MediaError

DEFAULT_TLS_PORT: Final = 5061


class TlsConfigError(MediaError):
    """A certificate, key or CA file that cannot be used (the message says which and why)."""


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """``cert_file``: our certificate chain (PEM, ours first); ``key_file``: its private key
    (PEM; ``None``: in ``cert_file``); ``port``: where we listen (0: any free port);
    ``ca_file``: the CAs peers' certificates must chain to (``None``: the system's);
    ``verify``: check peers' certificates and names (off only for tests and labs)."""

    cert_file: Path
    key_file: Path | None = None
    port: int = DEFAULT_TLS_PORT
    ca_file: Path | None = None
    verify: bool = True

    def server_context(self) -> ssl.SSLContext:
        """The context of connections peers open to us."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._load_ours(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        """The context of connections we open (the peer's name is checked per connection)."""
        try:
            context = ssl.create_default_context(
                ssl.Purpose.SERVER_AUTH,
                cafile=str(self.ca_file) if self.ca_file is not None else None,
            )
        except (OSError, ssl.SSLError) as exc:
            raise TlsConfigError(f"cannot use the CA file {str(self.ca_file)!r}: {exc}") from None
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        self._load_ours(context)
        return context

    def check(self) -> None:
        """Load everything once: :class:`TlsConfigError` names what is wrong."""
        self.server_context()
        self.client_context()

    def _load_ours(self, context: ssl.SSLContext) -> None:
        try:
            context.load_cert_chain(
                str(self.cert_file), str(self.key_file) if self.key_file is not None else None
            )
        except (OSError, ssl.SSLError) as exc:
            files = repr(str(self.cert_file))
            if self.key_file is not None:
                files += f" and key {str(self.key_file)!r}"
            raise TlsConfigError(f"cannot use the TLS certificate {files}: {exc}") from None
