"""The one settings object of the Graph service (``DTMFGRAPH_*`` variables and CLI flags)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything ``dtmfgraph serve`` can be told. Each field is also ``DTMFGRAPH_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="DTMFGRAPH_", extra="ignore")

    # HTTP
    host: str = "127.0.0.1"
    port: int = 8000
    public_base_url: str | None = Field(
        default=None, description="Base URL used in Location headers; default http://host:port."
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
    jwt_rs256_public_key: str | None = Field(default=None, description="PEM text.")

    # Signing of callbacks
    callback_issuer: str = "dtmfgraph"
    callback_signing_secret: str | None = Field(
        default=None, description="HS256 secret for callback JWTs; default jwt_hs256_secret."
    )
    callback_rs256_private_key: str | None = Field(default=None, description="PEM text.")
    callback_allowed_hosts: list[str] = Field(default_factory=list)

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
    loopback_speed: float = Field(default=1.0, gt=0, description="Loopback time scale.")

    # Incoming calls: who owns them and where they are announced
    incoming_tenant_id: str = "00000000-0000-0000-0000-000000000000"
    incoming_app_id: str = "dtmfgraph-dev-app"
    incoming_callback_uri: str | None = None
    incoming_answer_timeout_s: float = 15.0

    # Call life
    keepalive_timeout_s: float = 45 * 60.0
    dial_timeout_s: float = 60.0

    # Outbox delivery
    notify_timeout_s: float = 5.0
    notify_max_attempts: int = 10
    notify_backoff_initial_s: float = 0.5
    notify_backoff_max_s: float = 60.0

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
