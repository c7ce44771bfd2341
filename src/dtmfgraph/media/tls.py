"""SIP over TLS (RFC 3261 26.2, RFC 5630): our certificate, and how peers' certificates are checked.

The phone listens for TLS on its own port (5061 by default) and opens TLS connections to peers
whose URI asks for it (``sips:`` or ``;transport=tls``). A peer's certificate is checked
against ``ca_file`` (default: the system's CAs) and must name the host the URI named (its DNS
name, or its IP address for an IP URI), unless ``verify`` is off. Our certificate also goes
out as a client certificate, for servers that ask for one (mutual TLS).

Certificates are renewed while the phone runs (Let's Encrypt every 60-90 days, cert-manager):
the transport looks at the files' modification times every minute and, when they changed,
loads them again for new connections (open ones keep theirs); ``SIGHUP`` to ``dtmfgraph serve``
does it at once. Files that cannot be used are logged and the ones in use kept.
"""

from __future__ import annotations

import os
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
    ``verify``: check peers' certificates and names (off only for tests and labs);
    ``require_client_cert``: a peer connecting to us must present a certificate that chains to
    ``ca_file`` (or the system's CAs), mutual TLS as trunks such as Teams Direct Routing use;
    without one the handshake fails."""

    cert_file: Path
    key_file: Path | None = None
    port: int = DEFAULT_TLS_PORT
    ca_file: Path | None = None
    verify: bool = True
    require_client_cert: bool = False

    def server_context(self) -> ssl.SSLContext:
        """The context of connections peers open to us."""
        context = self._context(ssl.Purpose.CLIENT_AUTH)
        if self.require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def client_context(self) -> ssl.SSLContext:
        """The context of connections we open (the peer's name is checked per connection)."""
        context = self._context(ssl.Purpose.SERVER_AUTH)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _context(self, purpose: ssl.Purpose) -> ssl.SSLContext:
        """A context for ``purpose`` trusting ``ca_file`` (or the system's CAs), with ours."""
        try:
            context = ssl.create_default_context(
                purpose, cafile=str(self.ca_file) if self.ca_file is not None else None
            )
        except (OSError, ssl.SSLError) as exc:
            raise TlsConfigError(f"cannot use the CA file {str(self.ca_file)!r}: {exc}") from None
        self._load_ours(context)
        return context

    def check(self) -> None:
        """Load everything once: :class:`TlsConfigError` names what is wrong."""
        self.server_context()
        self.client_context()

    def stamp(self) -> tuple[tuple[int, int] | None, ...]:
        """Modification time and size of each file (``None``: missing): a change means the
        files were replaced (renewed)."""
        out: list[tuple[int, int] | None] = []
        for path in (self.cert_file, self.key_file, self.ca_file):
            if path is None:
                continue
            try:
                st = os.stat(path)
            except OSError:
                out.append(None)
            else:
                out.append((st.st_mtime_ns, st.st_size))
        return tuple(out)

    def load_ours(self, context: ssl.SSLContext) -> None:
        """Put our certificate and key (read now) into ``context``: new handshakes use them."""
        self._load_ours(context)

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
