"""The one settings object of the Graph service (``DTMFGRAPH_*`` variables and CLI flags)."""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
from pathlib import Path
from typing import Annotated, Any, Literal

import certifi
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Everything ``dtmfgraph serve`` can be told. Each field is also ``DTMFGRAPH_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="DTMFGRAPH_", extra="ignore")

    # HTTP
    host: str = "127.0.0.1"
    port: int = 8000
    public_base_url: str | None = Field(
        default=None, description="Base URL used in Location headers; default http://host:port."
    )
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        default="auto",
        description=(
            "The event loop serve runs on: uvloop where installed (auto; the extra "
            "dtmfgraph[fast], with httptools), or asyncio's own (with h11)."
        ),
    )
    data_dir: Path = Path("dtmfgraph-data")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy async URL; default sqlite+aiosqlite in data_dir."
    )

    # Auth of API callers
    auth_enabled: bool = True
    jwt_issuer: str = "dtmfgraph"
    jwt_audience: str = "dtmfgraph"
    jwt_hs256_secret: str | None = None
    jwt_rs256_public_key: str | None = Field(
        default=None, description="PEM text of the RS256 public key that verifies API tokens."
    )
    jwt_rs256_public_key_file: Path | None = Field(
        default=None, description="A PEM file with that key (instead of jwt_rs256_public_key)."
    )
    jwt_rs256_extra_public_key_files: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description=(
            "More PEM files of RS256 public keys that verify API tokens: the next key before a "
            "rotation, or the previous one after it (comma-separated or a JSON list)."
        ),
    )

    # Signing of callbacks
    callback_issuer: str | None = Field(
        default=None,
        description=(
            "The iss of callback tokens and the OpenID metadata's issuer; default "
            "public_base_url (https://api.botframework.com makes validators written for "
            "Microsoft's issuer need only the metadata URL changed)."
        ),
    )
    callback_algorithm: Literal["RS256", "HS256"] = Field(
        default="RS256",
        description=(
            "RS256 (the default: a key made in data_dir on first start unless one is given; "
            "published with OpenID metadata) or HS256 with callback_signing_secret."
        ),
    )
    callback_key_grace_s: float = Field(
        default=86_400.0,
        ge=0,
        description="How long a rolled-over callback key stays published after the next one "
        "took over.",
    )
    callback_signing_secret: str | None = Field(
        default=None, description="HS256 secret for callback JWTs; default jwt_hs256_secret."
    )
    callback_rs256_private_key: str | None = Field(
        default=None, description="PEM text of the RS256 private key that signs callbacks."
    )
    callback_rs256_private_key_file: Path | None = Field(
        default=None, description="A PEM file with that key (instead of the text)."
    )
    callback_jwks_extra_public_key_files: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description=(
            "More PEM files of RSA public keys published in the callbacks' JWKS beside the "
            "signing key: the next key before a rotation, the previous one after it."
        ),
    )
    callback_ca_file: Path | None = Field(
        default=None,
        description=(
            "PEM file of CA certificates trusted for https callbackUri receivers, in addition "
            "to the public ones (certifi): for receivers with a private CA."
        ),
    )
    callback_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts allowed as http:// callbackUri (comma-separated or a JSON list).",
    )

    # Prompts (playPrompt, recordResponse) and recordings
    prompt_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Hosts prompts may be fetched from over http:// (loopback hosts need no entry), "
            "and that may resolve to any address (comma-separated or a JSON list)."
        ),
    )
    prompt_dir: Path | None = Field(
        default=None,
        description="Directory file: prompt URIs are read from (none: file: prompts fail).",
    )
    prompt_max_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024, description="Largest prompt file, in bytes."
    )
    prompt_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="Longest a prompt fetch may take, all told."
    )
    record_media_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="A recordResponse hearing no audio at all for this long fails (410).",
    )

    # Monitoring
    metrics_bearer_token: str | None = Field(
        default=None,
        description=(
            "Bearer token /metrics requires. Without one, /metrics is open when the server "
            "listens on a loopback address and refused (403) otherwise."
        ),
    )

    # The browser console (docs/console.md)
    console_enabled: bool = Field(
        default=True,
        description=(
            "Serve the browser console on /console (login by the one-time link serve prints, or "
            "an API token; no login only where API auth is off, which is loopback only)."
        ),
    )
    console_inbox: bool = Field(
        default=True,
        description=(
            "With the console: a built-in webhook receiver on /inbox/{name} that checks each "
            "callback's token and shows the deliveries in the console."
        ),
    )
    journal_max_calls: int = Field(
        default=500, ge=1, le=100_000, description="Calls whose journal the console keeps."
    )
    journal_saved_calls: int = Field(
        default=1000,
        ge=0,
        le=1_000_000,
        description="Ended calls whose journal stays in the database for the console (latest).",
    )
    journal_audio_calls: int = Field(
        default=16,
        ge=0,
        le=1000,
        description="Live calls whose audio is kept for the console's spectrogram at once.",
    )
    journal_audio_s: float = Field(
        default=120.0, gt=0, le=600, description="Seconds of each call's audio kept (the last)."
    )

    # Media
    media: str = Field(default="sip", description="sip (real calls) or loopback (simulated).")
    sip_host: str = Field(default="127.0.0.1", description="Address the SIP/RTP sockets bind.")
    sip_port: int = Field(default=5060, ge=0, le=65535, description="SIP UDP port (0: any).")
    rtp_ports: str = Field(default="20000-29999", description="RTP port range FIRST-LAST.")
    sip_public_host: str | None = Field(
        default=None, description="Address written into SDP/Contact; default sip_host."
    )
    sip_trunk_uri: str | None = Field(
        default=None,
        description=(
            "Where E.164 targets go: a template with {number} (the number with its '+'), "
            "e.g. sip:{number}@192.0.2.10:5060, or just the trunk's host[:port]."
        ),
    )
    sip_dns_server: str | None = Field(
        default=None,
        description=(
            "IP[:PORT] of the DNS server for SIP targets named by host name (SRV _sip._udp, "
            "then A/AAAA); default the system's resolver."
        ),
    )
    sip_failover_after_s: float = Field(
        default=4.0,
        gt=0,
        le=32,
        description=(
            "When DNS names several servers for a target, seconds without a single response "
            "after which a call goes to the next one (a 503 moves it at once)."
        ),
    )
    sip_keepalive_s: float = Field(
        default=120.0,
        ge=0,
        description=(
            "Ping each TCP/TLS connection the service opened and still needs this often "
            "(RFC 5626 double-CRLF, less up to 20 % at random); a peer that answers pings and "
            "leaves one unanswered for 10 s has its connection closed and its registration "
            "sent again at once. 0: no pings."
        ),
    )
    sip_allow_from: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Networks (10.0.0.0/8, 203.0.113.7, 2001:db8::/32; comma-separated or a JSON "
            "list) whose hosts may call the service or send it other out-of-dialog SIP "
            "requests; others are answered 403. Empty: everyone."
        ),
    )
    sip_tcp_idle_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description=(
            "A SIP TCP/TLS connection with no traffic for this long, that no transaction, call "
            "or registration needs, is closed."
        ),
    )
    sip_tcp_message_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="A SIP message begun on a TCP/TLS connection must be complete within this "
        "(header block and body), or the connection is closed (slowloris).",
    )
    sip_tcp_max_connections: int = Field(
        default=4096,
        ge=1,
        description="Open SIP TCP/TLS connections; past it the least recently active one that "
        "nothing needs is closed to make room, else the new one is refused.",
    )
    sip_tcp_max_per_source: int = Field(
        default=64,
        ge=1,
        description="Open SIP TCP/TLS connections from one IP address (same rule past it).",
    )
    sip_tcp_max_body_bytes: int = Field(
        default=65536,
        ge=1024,
        description="The largest body a SIP message over TCP/TLS may announce; past it the "
        "connection is closed.",
    )
    sip_tcp_max_buffered_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=65536,
        description="Bytes of incomplete SIP messages held for all TCP/TLS connections "
        "together; the connection that would go past it is closed.",
    )
    sip_udp_keepalive_s: float = Field(
        default=25.0,
        ge=0,
        description=(
            "Send each registrar reached over UDP a double-CRLF datagram this often, so that a "
            "NAT on the way keeps the mapping its calls to us come through. 0: none."
        ),
    )
    jitter_max_ms: int = Field(
        default=120,
        ge=20,
        le=1000,
        description=(
            "Greatest play-out delay of a call's jitter buffer for in-band DTMF, ms (it adapts "
            "from 20 ms to this to the far end's jitter; lost packets are concealed)."
        ),
    )
    rtcp_interval_s: float = Field(
        default=5.0,
        ge=0,
        description=(
            "Seconds between the RTCP reports of a SIP call's media (RFC 3550; randomised "
            "0.5-1.5x, the first sooner), sent to the far end's RTP port + 1 or its a=rtcp. "
            "SRTP calls send SRTCP. 0: no RTCP."
        ),
    )
    sip_refer_policy: Literal["accept", "reject", "domains"] = Field(
        default="accept",
        description=(
            "What a far end's REFER (an IVR transferring our call) gets: accept (follow it: "
            "the Graph call goes on with the new far end), reject (603), or domains (follow it "
            "only to hosts in sip_refer_domains, else 603)."
        ),
    )
    sip_refer_domains: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "With sip_refer_policy=domains: the hosts (and their subdomains) a REFER may send "
            "our calls to (comma-separated or a JSON list)."
        ),
    )
    rtcp_mux_offer: bool = Field(
        default=False,
        description=(
            "Calls the service places offer a=rtcp-mux (RFC 5761: RTCP on the RTP port); offers "
            "that carry it are always taken."
        ),
    )
    sip_auth_user: str | None = Field(
        default=None,
        description="Digest user name for SIP challenges (calls out, REGISTER); any realm.",
    )
    sip_auth_password: str | None = Field(
        default=None,
        description="Its password (prefer DTMFGRAPH_SIP_AUTH_PASSWORD or sip_auth_password_file).",
    )
    sip_auth_password_file: Path | None = Field(
        default=None, description="File holding the SIP password (trailing newline ignored)."
    )
    sip_inbound_auth_user: str | None = Field(
        default=None,
        description=(
            "Calls to the service must answer a digest challenge (401) for this user name "
            "(realm dtmfgraph); a wrong password gets 403. Default: anyone may call."
        ),
    )
    sip_inbound_auth_password: str | None = Field(
        default=None,
        description=(
            "Its password (prefer DTMFGRAPH_SIP_INBOUND_AUTH_PASSWORD or "
            "sip_inbound_auth_password_file)."
        ),
    )
    sip_inbound_auth_password_file: Path | None = Field(
        default=None, description="File holding that password (trailing newline ignored)."
    )
    sip_inbound_auth_sha256: bool = Field(
        default=False,
        description=(
            "The inbound digest challenge also offers SHA-256 (RFC 8760), named first; callers "
            "that know it answer with it. Off by default: some phones (baresip 1.0) give up on a "
            "challenge naming an algorithm they do not know."
        ),
    )
    sip_register: str | None = Field(
        default=None,
        description=(
            "Address-of-record to keep registered, e.g. sip:bot@pbx.example.com, so that calls "
            "to it reach the service (incoming calls)."
        ),
    )
    sip_registrar: str | None = Field(
        default=None, description="Registrar URI for REGISTER; default the AOR's domain."
    )
    sip_register_expires: int = Field(
        default=3600, ge=10, le=86400, description="Seconds of binding asked for."
    )
    sip_tls_cert_file: Path | None = Field(
        default=None,
        description=(
            "Our TLS certificate chain (PEM): with it, SIP over TLS is taken on sip_tls_port "
            "and sips: / ;transport=tls URIs are reached over TLS."
        ),
    )
    sip_tls_key_file: Path | None = Field(
        default=None, description="Its private key (PEM); default: in the certificate file."
    )
    sip_tls_port: int = Field(
        default=5061, ge=0, le=65535, description="SIP over TLS port (0: any free port)."
    )
    sip_tls_ca_file: Path | None = Field(
        default=None,
        description="CAs that peers' TLS certificates must chain to; default the system's.",
    )
    srtp: Literal["never", "optional", "mandatory"] = Field(
        default="optional",
        description=(
            "SRTP media (SDES keys, RFC 4568): optional (offered best-effort on TLS calls, "
            "taken when offered), mandatory (every call RTP/SAVP; plain offers refused 488), "
            "or never."
        ),
    )
    sip_tls_verify: bool = Field(
        default=True,
        description="Check peers' TLS certificates and names (turn off only in a lab).",
    )
    sip_tls_require_client_cert: bool = Field(
        default=False,
        description=(
            "Peers that connect to us over TLS must present a certificate that chains to "
            "sip_tls_ca_file (mutual TLS); without one the handshake fails."
        ),
    )
    loopback_speed: float = Field(default=1.0, gt=0, description="Loopback time scale.")
    media_timeout_s: float = Field(
        default=30.0,
        ge=0,
        description=(
            "Seconds without RTP or RTCP from the far end after which a SIP call is hung up and "
            "ends 410/301005 (not while the far end holds it); 0: never."
        ),
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info",
        description="What dtmfgraph logs to stderr (timestamped lines; the web server's own: "
        "warnings only).",
    )
    strict_rtp: bool = Field(
        default=True,
        description=(
            "Take a SIP call's RTP only from the address its SDP names (or one that proves "
            "itself with 4 packets in sequence before that one has sent: a peer behind NAT); "
            "drop and count the rest. Off: from anyone."
        ),
    )

    # Incoming calls: who owns them and where they are announced
    incoming_tenant_id: str = "00000000-0000-0000-0000-000000000000"
    incoming_app_id: str = "dtmfgraph-dev-app"
    incoming_callback_uri: str | None = None
    incoming_answer_timeout_s: float = 15.0

    # Call life
    keepalive_timeout_s: float = 45 * 60.0
    dial_timeout_s: float = 60.0

    # Several nodes on one PostgreSQL database
    node_id: str | None = Field(
        default=None,
        max_length=128,
        description=(
            "This node's name among the nodes sharing the database: the owner of the calls it "
            "carries. Default: host name and API port. Keep it across restarts."
        ),
    )
    node_heartbeat_s: float = Field(
        default=1.0, gt=0, description="How often a node tells the others it is alive."
    )
    node_dead_after_s: float = Field(
        default=5.0,
        gt=0,
        description=(
            "The node lease: no heartbeat for this long and the node is dead: another node ends "
            "its calls, and requests for them are answered 503 with Retry-After meanwhile."
        ),
    )
    node_forward_timeout_s: float = Field(
        default=15.0, gt=0, description="How long a request forwarded to a call's node may take."
    )
    workers: int | Literal["auto"] = Field(
        default=1,
        description=(
            "Node processes serve runs on this machine (auto: one per CPU), sharing the HTTP "
            "port (SO_REUSEPORT); worker I takes SIP port sip_port + I and the I-th slice of "
            "rtp_ports. More than one needs PostgreSQL."
        ),
    )
    workers_private_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description=(
            "With workers > 1: worker I also serves the API on 127.0.0.1 at this port + I "
            "(its own /metrics to scrape; 0: none)."
        ),
    )

    # API request limits (docs/api.md "Limits")
    max_body_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="Largest Graph API request body; larger: 413.",
    )
    body_read_timeout_s: float = Field(
        default=10.0, gt=0, description="Longest a request body may take to arrive; then 408."
    )
    max_calls: int = Field(
        default=1000,
        ge=0,
        description="Calls this node carries at once (placed, ringing or established; 0: no "
        "limit); past it create-call is 503 serviceNotAvailable and an INVITE 503, both with "
        "Retry-After.",
    )
    overload_new_calls_ms: float = Field(
        default=5.0,
        ge=0,
        description="Media overload: from this average lateness of the media clock (ms; 0: "
        "never) new calls are refused (create-call and answer 503 serviceNotAvailable, an "
        "INVITE 503, with Retry-After) until it is back under half of it.",
    )
    overload_media_ops_ms: float = Field(
        default=20.0,
        ge=0,
        description="Media overload: from this average lateness (ms; 0: never) new "
        "sendDtmfTones, playPrompt and recordResponse on calls up are refused 503 with "
        "Retry-After too, until it is back under half of it. What was accepted plays in full.",
    )

    # Outbox delivery
    notify_timeout_s: float = Field(
        default=5.0, gt=0, description="How long one callback POST may take, start to answer."
    )
    notify_retry_for_s: float = Field(
        default=86_400.0,
        gt=0,
        description=(
            "How long a notification is retried (from when it was written, or redelivered) "
            "before it is kept as dead; `dtmfgraph notifications redeliver` sends it again."
        ),
    )
    notify_backoff_initial_s: float = 0.5
    notify_backoff_max_s: float = 60.0
    notify_receiver_concurrency: int = Field(
        default=8, ge=1, description="Callback POSTs in flight at once to one receiver (origin)."
    )
    notify_concurrency: int = Field(
        default=100, ge=1, description="Callback POSTs in flight at once in all."
    )
    notify_token_reuse_s: float = Field(
        default=300.0,
        ge=0,
        le=300,
        description=(
            "How long one signed callback token is reused for a call's notifications (at "
            "most 300: half its 10 min lifetime); 0: a token per notification, its jti the "
            "notification's id."
        ),
    )
    notify_batch_max: int = Field(
        default=50,
        ge=1,
        le=1000,
        description=(
            "At most this many queued notifications of one call go in one callback POST (the "
            "`value` array, in order; bodies past 128 KiB are split); 1: one per POST. "
            "Tokens not reused (notify_token_reuse_s 0): one per POST."
        ),
    )
    notify_poll_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description=(
            "How often an idle node reads the outbox for work that no wake-up announces "
            "(a `notifications redeliver` from another process, rows left by a node that "
            "died); its own notifications, retries and dead nodes' claims wake it at once."
        ),
    )
    notify_drain_on_stop_s: float = Field(
        default=5.0,
        ge=0,
        description=(
            "At a graceful stop, how long to keep delivering the notifications that are due "
            "(the calls the stop ends) before exiting; the rest go out at the next start."
        ),
    )

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: object) -> object:
        text = str(value).strip().lower()
        if text == "auto":
            return "auto"
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"{value!r}: give a number of workers (1, 2, ...) or auto")
        return int(text)

    @field_validator("sip_allow_from")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        if value:
            from .sip.acl import SourceAllowlist  # noqa: PLC0415 (light imports for the CLI)

            SourceAllowlist(value)  # ValueError naming the one that does not parse
        return value

    @field_validator(
        "callback_allowed_hosts",
        "prompt_allowed_hosts",
        "sip_allow_from",
        "sip_refer_domains",
        "jwt_rs256_extra_public_key_files",
        "callback_jwks_extra_public_key_files",
        mode="before",
    )
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [h.strip() for h in text.split(",") if h.strip()]
        return value

    def rs256_public_key_pem(self) -> str | None:
        """The API's RS256 public key (PEM text), from the text or the file setting."""
        return _pem(
            self.jwt_rs256_public_key, self.jwt_rs256_public_key_file, "jwt_rs256_public_key"
        )

    def extra_pems(self, name: str) -> list[str]:
        """The PEM texts of the files of list setting ``name`` (a ``ValueError`` naming the
        setting and the file when one cannot be read)."""
        texts = []
        for path in getattr(self, name):
            try:
                texts.append(Path(path).read_text())
            except OSError as exc:
                raise ValueError(f"{name}: cannot read {str(path)!r}: {exc.strerror}") from None
        return texts

    def callback_private_key_pem(self) -> str | None:
        """The callbacks' RS256 private key (PEM text), from the text or the file setting."""
        return _pem(
            self.callback_rs256_private_key,
            self.callback_rs256_private_key_file,
            "callback_rs256_private_key",
        )

    def effective_node_id(self) -> str:
        """``node_id``, or the host name and the API port (stable across restarts)."""
        return self.node_id or f"{socket.gethostname()}:{self.port}"

    def callback_tls_context(self) -> ssl.SSLContext:
        """How https callbacks are verified: the public CAs (certifi), plus ``callback_ca_file``.
        Raises ``ValueError`` naming the file when it cannot be read as PEM certificates."""
        context = ssl.create_default_context(cafile=certifi.where())
        path = self.callback_ca_file
        if path is not None:
            try:
                context.load_verify_locations(cafile=str(path))
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(
                    f"callback_ca_file: cannot read {str(path)!r} as PEM CA certificates: {exc}"
                ) from None
        return context

    def sip_trunk_template(self) -> str | None:
        """``sip_trunk_uri`` as a ``{number}`` template (a bare host[:port] becomes
        ``sip:{number}@host[:port]``); ``None`` when no trunk is configured."""
        trunk = (self.sip_trunk_uri or "").strip()
        if not trunk:
            return None
        if "{number}" in trunk:
            return trunk
        scheme, sep, rest = trunk.partition(":")
        if sep and scheme.lower() in ("sip", "sips"):
            return f"{scheme.lower()}:{{number}}@{rest.rpartition('@')[2]}"
        return f"sip:{{number}}@{trunk}"

    def sip_dns_address(self) -> tuple[str, int] | None:
        """``sip_dns_server`` as (IP, port), port 53 when not given; ``ValueError`` naming the
        setting when it is not an IP address with an optional port."""
        text = (self.sip_dns_server or "").strip()
        if not text:
            return None
        host, port = text, 53
        if text.startswith("[") or text.count(":") == 1:
            host, _, port_text = text.rpartition(":")
            host = host.strip("[]")
            if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
                raise ValueError(f"sip_dns_server: bad port in {text!r}")
            port = int(port_text)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"sip_dns_server: {text!r} is not an IP address[:port]") from None
        return host, port

    def sip_credentials(self) -> tuple[str, str] | None:
        """(user, password) for SIP digest challenges, or ``None``; a ``ValueError`` names the
        setting when only half is given or the password file cannot be read."""
        return self._user_password("sip_auth", "DTMFGRAPH_SIP_AUTH_PASSWORD")

    def sip_inbound_credentials(self) -> tuple[str, str] | None:
        """(user, password) that calls to the service must answer a digest challenge for, or
        ``None`` (anyone may call); ``ValueError`` as :meth:`sip_credentials`."""
        return self._user_password("sip_inbound_auth", "DTMFGRAPH_SIP_INBOUND_AUTH_PASSWORD")

    def _user_password(self, prefix: str, env: str) -> tuple[str, str] | None:
        user: str | None = getattr(self, f"{prefix}_user")
        password: str | None = getattr(self, f"{prefix}_password")
        path: Path | None = getattr(self, f"{prefix}_password_file")
        if password is not None and path is not None:
            raise ValueError(f"{prefix}_password: give the password or the file, not both")
        if path is not None:
            try:
                password = Path(path).read_text().rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                why = getattr(exc, "strerror", None) or str(exc)
                raise ValueError(
                    f"{prefix}_password_file: cannot read {str(path)!r}: {why}"
                ) from None
        if user is None:
            if password is not None:
                raise ValueError(f"{prefix}_user: a SIP password needs a user name")
            return None
        if not user.strip():
            raise ValueError(f"{prefix}_user: empty user name")
        if not password:
            raise ValueError(
                f"{prefix}_password: the SIP user needs a password ({env} or a password file)"
            )
        return user, password

    def listens_on_loopback(self) -> bool:
        """Whether ``host`` is a loopback address (``127.0.0.0/8``, ``::1``, ``localhost``)."""
        host = self.host.strip().strip("[]").lower()
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'dtmfgraph.sqlite3').resolve()}"

    def effective_base_url(self) -> str:
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        return f"http://{self.host}:{self.port}"

    def effective_callback_secret(self) -> str | None:
        return self.callback_signing_secret or self.jwt_hs256_secret

    def effective_callback_issuer(self) -> str:
        return self.callback_issuer or self.effective_base_url()


def _pem(text: str | None, path: Path | None, name: str) -> str | None:
    if text and path:
        raise ValueError(f"set {name} or {name}_file, not both")
    if path is None:
        return text or None
    try:
        return path.read_text()
    except OSError as exc:
        raise ValueError(f"{name}_file: cannot read {str(path)!r}: {exc.strerror}") from None
