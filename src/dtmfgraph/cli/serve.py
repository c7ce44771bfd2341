"""``dtmfgraph serve`` (the Graph API) and ``dtmfgraph token`` (a development bearer token)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..private_file import write_private
from ..settings import Settings
from . import loops
from . import workers as workers_module
from .config import ConfigError, ConfigFile, load
from .limits import raise_open_file_limit
from .panels import ServeCommand
from .preflight import StartError, bind_http, check_data_dir

if TYPE_CHECKING:
    from ..media.sip_transport import SipTransport

_OPTION_OF = {
    "host": "--host",
    "port": "--port",
    "data_dir": "--data-dir",
    "database_url": "--database-url",
    "media": "--media",
    "sip_host": "--sip-host",
    "sip_port": "--sip-port",
    "rtp_ports": "--rtp-ports",
    "sip_public_host": "--sip-public-host",
    "sip_trunk_uri": "--sip-trunk",
    "sip_auth_user": "--sip-auth-user",
    "sip_inbound_auth_user": "--sip-inbound-auth-user",
    "sip_inbound_auth_password_file": "--sip-inbound-auth-password-file",
    "sip_dns_server": "--sip-dns-server",
    "sip_failover_after_s": "--sip-failover-after",
    "sip_tls_cert_file": "--sip-tls-cert-file",
    "sip_tls_key_file": "--sip-tls-key-file",
    "sip_tls_port": "--sip-tls-port",
    "sip_tls_ca_file": "--sip-tls-ca-file",
    "sip_tls_verify": "--sip-tls-verify/--no-sip-tls-verify",
    "sip_tls_require_client_cert": "--sip-tls-require-client-cert",
    "srtp": "--srtp",
    "sip_auth_password": "DTMFGRAPH_SIP_AUTH_PASSWORD",
    "sip_auth_password_file": "--sip-auth-password-file",
    "sip_register": "--sip-register",
    "sip_registrar": "--sip-registrar",
    "sip_register_expires": "--sip-register-expires",
    "loopback_speed": "--loopback-speed",
    "callback_allowed_hosts": "--callback-allow-host",
    "sip_allow_from": "--sip-allow-from",
    "callback_ca_file": "--callback-ca-file",
    "jwt_rs256_extra_public_key_files": "--jwt-rs256-extra-public-key-file",
    "callback_jwks_extra_public_key_files": "--callback-jwks-extra-public-key-file",
    "incoming_callback_uri": "--incoming-callback-uri",
    "keepalive_timeout_s": "--keepalive-timeout",
    "media_timeout_s": "--media-timeout",
    "strict_rtp": "--strict-rtp/--no-strict-rtp",
    "log_level": "--log-level",
    "console_enabled": "--console/--no-console",
    "node_id": "--node-id",
    "jwt_rs256_public_key_file": "--jwt-rs256-public-key-file",
    "callback_rs256_private_key_file": "--callback-rs256-private-key-file",
    "prompt_dir": "--prompt-dir",
    "prompt_allowed_hosts": "--prompt-allow-host",
    "callback_issuer": "--callback-issuer",
    "notify_batch_max": "--notify-batch-max",
    "event_loop": "--loop",
    "overload_new_calls_ms": "--overload-new-calls",
    "overload_media_ops_ms": "--overload-media-ops",
    "workers": "--workers",
    "workers_private_port": "--workers-private-port",
}
"""The ``serve`` option behind each setting, for error messages."""

SECRET_FILE = "jwt-secret"


def _ensure_secret(settings: Settings) -> Settings:
    """Keys to run with: the configured HS256 secret, or one kept in ``data_dir`` (created on
    first use) unless API tokens are RS256. (The callbacks' RSA key is the app's: made in
    ``data_dir`` on first start unless one is configured.)"""
    public_pem = _check_api_key(settings)
    if settings.jwt_hs256_secret or public_pem:
        return settings
    path = settings.data_dir / SECRET_FILE
    if not path.exists():
        write_private(path, secrets.token_urlsafe(48))
    return settings.model_copy(update={"jwt_hs256_secret": path.read_text().strip()})


def _check_api_key(settings: Settings) -> str | None:
    """The RS256 public key of API tokens, if one is configured; ``ValueError`` when it is not
    a usable key (refused before anything is written)."""
    public_pem = settings.rs256_public_key_pem()
    if public_pem:
        from ..api.auth import load_rs256_public_key  # noqa: PLC0415 (cryptography: only then)

        load_rs256_public_key(public_pem)
    return public_pem


DataDir = Annotated[
    Path | None, typer.Option(help="Where the SQLite file and the dev secret live.")
]


def serve(
    config: ConfigFile = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port.")] = None,
    data_dir: DataDir = None,
    database_url: Annotated[
        str | None,
        typer.Option(help="e.g. postgresql+asyncpg://user@127.0.0.1/db (default: SQLite file)."),
    ] = None,
    media: Annotated[
        str | None,
        typer.Option(help="Media backend: sip (real SIP calls, the default) or loopback (demo)."),
    ] = None,
    sip_host: Annotated[
        str | None, typer.Option(help="Address for SIP and RTP (default 127.0.0.1).")
    ] = None,
    sip_port: Annotated[
        int | None, typer.Option(help="SIP UDP port (default 5060; 0 = any free port).")
    ] = None,
    rtp_ports: Annotated[
        str | None, typer.Option(help="RTP port range FIRST-LAST (default 20000-29999).")
    ] = None,
    sip_public_host: Annotated[
        str | None,
        typer.Option(help="Address written into SDP and Contact (needed with --sip-host 0.0.0.0)."),
    ] = None,
    sip_trunk: Annotated[
        str | None,
        typer.Option(
            help="Where E.164 targets go: HOST[:PORT] (sip:+E164@HOST[:PORT]) or a URI "
            "template with {number}."
        ),
    ] = None,
    sip_dns_server: Annotated[
        str | None,
        typer.Option(
            help="IP[:PORT] of the DNS server for SIP host names (SRV _sip._udp, then A/AAAA); "
            "default the system's resolver."
        ),
    ] = None,
    sip_failover_after: Annotated[
        float | None,
        typer.Option(
            help="When DNS names several servers for a target (SRV), seconds without a single "
            "response after which a call goes to the next one; a 503 moves it at once "
            "(default 4)."
        ),
    ] = None,
    sip_tls_cert_file: Annotated[
        Path | None,
        typer.Option(
            help="Our TLS certificate chain (PEM): with it, SIP over TLS is taken on "
            "--sip-tls-port, and sips: or ;transport=tls targets, trunks and registrars are "
            "reached over TLS."
        ),
    ] = None,
    sip_tls_key_file: Annotated[
        Path | None, typer.Option(help="Its private key (PEM; default: in the certificate file).")
    ] = None,
    sip_tls_port: Annotated[
        int | None, typer.Option(help="SIP over TLS port (default 5061; 0: any free port).")
    ] = None,
    sip_tls_ca_file: Annotated[
        Path | None,
        typer.Option(
            help="CAs that peers' TLS certificates must chain to (default: the system's)."
        ),
    ] = None,
    sip_tls_verify: Annotated[
        bool | None,
        typer.Option(
            "--sip-tls-verify/--no-sip-tls-verify",
            help="Check peers' TLS certificates and names (default: on; off only in a lab).",
        ),
    ] = None,
    sip_tls_require_client_cert: Annotated[
        bool | None,
        typer.Option(
            "--sip-tls-require-client-cert/--no-sip-tls-require-client-cert",
            help="Peers connecting over TLS must present a certificate from --sip-tls-ca-file "
            "(mutual TLS; default: off).",
        ),
    ] = None,
    srtp: Annotated[
        str | None,
        typer.Option(
            help="SRTP media (SDES keys): optional (the default: offered best-effort on TLS "
            "calls, taken when offered), mandatory (every call RTP/SAVP; plain offers refused "
            "488), or never."
        ),
    ] = None,
    sip_auth_user: Annotated[
        str | None,
        typer.Option(
            help="Digest user name answering SIP challenges: calls out (e.g. through the trunk) "
            "and REGISTER. The password comes from DTMFGRAPH_SIP_AUTH_PASSWORD or "
            "--sip-auth-password-file."
        ),
    ] = None,
    sip_auth_password_file: Annotated[
        Path | None, typer.Option(help="File holding the SIP password (one line).")
    ] = None,
    sip_inbound_auth_user: Annotated[
        str | None,
        typer.Option(
            help="Calls to the service must answer a digest challenge for this user (realm "
            "dtmfgraph; 403 for a wrong password). The password comes from "
            "DTMFGRAPH_SIP_INBOUND_AUTH_PASSWORD or --sip-inbound-auth-password-file."
        ),
    ] = None,
    sip_inbound_auth_password_file: Annotated[
        Path | None, typer.Option(help="File holding that password (one line).")
    ] = None,
    sip_register: Annotated[
        str | None,
        typer.Option(
            help="Keep this address-of-record registered (e.g. sip:bot@pbx.example.com), so "
            "that calls to it reach the service; refreshed, retried, removed at shutdown."
        ),
    ] = None,
    sip_registrar: Annotated[
        str | None,
        typer.Option(help="Registrar URI for REGISTER (default: the AOR's domain and port)."),
    ] = None,
    sip_register_expires: Annotated[
        int | None, typer.Option(help="Seconds of registration asked for (default 3600).")
    ] = None,
    loopback_speed: Annotated[
        float | None, typer.Option(help="Loopback time scale (0.1 = ten times faster).")
    ] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Accept requests without a token (loopback only).")
    ] = False,
    console: Annotated[
        bool | None,
        typer.Option(
            "--console/--no-console",
            help="The browser console on /console and the webhook inbox on /inbox/NAME "
            "(default: on; serve prints a one-time login link).",
        ),
    ] = None,
    jwt_rs256_public_key_file: Annotated[
        Path | None,
        typer.Option(help="PEM public key (or certificate) that verifies RS256 API tokens."),
    ] = None,
    callback_rs256_private_key_file: Annotated[
        Path | None,
        typer.Option(help="PEM RSA private key that signs callbacks RS256 (published as JWKS)."),
    ] = None,
    jwt_rs256_extra_public_key_file: Annotated[
        list[Path] | None,
        typer.Option(
            help="Another PEM public key that verifies RS256 API tokens (repeatable: key rotation)."
        ),
    ] = None,
    callback_jwks_extra_public_key_file: Annotated[
        list[Path] | None,
        typer.Option(
            help="Another PEM public key published in the callbacks' JWKS (repeatable: rotation)."
        ),
    ] = None,
    callback_ca_file: Annotated[
        Path | None,
        typer.Option(help="PEM CA certificates trusted for https callbacks (a private CA)."),
    ] = None,
    callback_allow_host: Annotated[
        list[str] | None,
        typer.Option(help="Host allowed as an http:// callbackUri (repeatable)."),
    ] = None,
    sip_allow_from: Annotated[
        list[str] | None,
        typer.Option(
            help="Network (10.0.0.0/8, 203.0.113.7) whose hosts may call in or send other "
            "out-of-dialog SIP requests; others get 403 (repeatable; default: everyone)."
        ),
    ] = None,
    incoming_callback_uri: Annotated[
        str | None, typer.Option(help="Where incoming calls are announced.")
    ] = None,
    keepalive_timeout: Annotated[
        float | None, typer.Option(help="Seconds without keepAlive before a call ends.")
    ] = None,
    node_id: Annotated[
        str | None,
        typer.Option(
            help="This node's name when several share one PostgreSQL database (default: "
            "HOST:PORT). Keep it across restarts."
        ),
    ] = None,
    media_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds without RTP or RTCP from the far end before a SIP call is hung up "
            "(410/301005; default 30; 0 = never)."
        ),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option(help="Log to stderr from this level: debug, info (default), warning, error."),
    ] = None,
    strict_rtp: Annotated[
        bool | None,
        typer.Option(
            "--strict-rtp/--no-strict-rtp",
            help="Take a call's RTP only from the address its SDP names, or from one that sends "
            "4 packets in sequence before that one has (a peer behind NAT); drop and count "
            "the rest (default: on).",
        ),
    ] = None,
    prompt_dir: Annotated[
        Path | None,
        typer.Option(help="Directory that file: prompt URIs (playPrompt) are read from."),
    ] = None,
    prompt_allow_host: Annotated[
        list[str] | None,
        typer.Option(
            help="Host prompts may be fetched from over http://, and that may resolve to any "
            "address (repeatable; loopback hosts need none)."
        ),
    ] = None,
    callback_issuer: Annotated[
        str | None,
        typer.Option(
            help="iss of callback tokens and of the OpenID metadata (default: the base URL)."
        ),
    ] = None,
    notify_batch_max: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=1000,
            help="At most this many queued notifications of a call in one callback POST (its "
            "value array, in order; default 50; 1 = one per POST).",
        ),
    ] = None,
    overload_new_calls: Annotated[
        float | None,
        typer.Option(
            help="Refuse new calls 503 + Retry-After (API and SIP) while the media clock runs "
            "this many ms late on average (default 5; 0 = never)."
        ),
    ] = None,
    overload_media_ops: Annotated[
        float | None,
        typer.Option(
            help="Refuse new sendDtmfTones/playPrompt/recordResponse on calls up 503 + "
            "Retry-After from this many ms late (default 20; 0 = never)."
        ),
    ] = None,
    loop: Annotated[
        str | None,
        typer.Option(
            help="Event loop: auto (uvloop and httptools where installed: dtmfgraph[fast]), "
            "asyncio (asyncio's own loop and h11), or uvloop."
        ),
    ] = None,
    workers: Annotated[
        str | None,
        typer.Option(
            help="Node processes on this machine, one per core (auto: one per CPU; default 1). "
            "They share --port; worker I takes SIP port --sip-port + I and the I-th slice of "
            "--rtp-ports. More than one needs PostgreSQL (docs/workers.md)."
        ),
    ] = None,
    workers_private_port: Annotated[
        int | None,
        typer.Option(
            help="With --workers: worker I also serves the API on 127.0.0.1 at this port + I "
            "(its own /metrics to scrape; default: none)."
        ),
    ] = None,
) -> None:
    """Run the Graph calls API (uvicorn) on real SIP calls (or the loopback simulation)."""
    updates: dict[str, object] = {}
    for key, value in {
        "host": host,
        "port": port,
        "data_dir": data_dir,
        "database_url": database_url,
        "media": media,
        "sip_host": sip_host,
        "sip_port": sip_port,
        "rtp_ports": rtp_ports,
        "sip_public_host": sip_public_host,
        "sip_trunk_uri": sip_trunk,
        "sip_auth_user": sip_auth_user,
        "sip_inbound_auth_user": sip_inbound_auth_user,
        "sip_inbound_auth_password_file": sip_inbound_auth_password_file,
        "sip_dns_server": sip_dns_server,
        "sip_failover_after_s": sip_failover_after,
        "sip_tls_cert_file": sip_tls_cert_file,
        "sip_tls_key_file": sip_tls_key_file,
        "sip_tls_port": sip_tls_port,
        "sip_tls_ca_file": sip_tls_ca_file,
        "sip_tls_verify": sip_tls_verify,
        "sip_tls_require_client_cert": sip_tls_require_client_cert,
        "srtp": srtp,
        "sip_auth_password_file": sip_auth_password_file,
        "sip_register": sip_register,
        "sip_registrar": sip_registrar,
        "sip_register_expires": sip_register_expires,
        "loopback_speed": loopback_speed,
        "callback_allowed_hosts": callback_allow_host,
        "sip_allow_from": sip_allow_from,
        "callback_ca_file": callback_ca_file,
        "jwt_rs256_extra_public_key_files": jwt_rs256_extra_public_key_file,
        "callback_jwks_extra_public_key_files": callback_jwks_extra_public_key_file,
        "incoming_callback_uri": incoming_callback_uri,
        "keepalive_timeout_s": keepalive_timeout,
        "media_timeout_s": media_timeout,
        "strict_rtp": strict_rtp,
        "log_level": log_level,
        "console_enabled": console,
        "node_id": node_id,
        "jwt_rs256_public_key_file": jwt_rs256_public_key_file,
        "callback_rs256_private_key_file": callback_rs256_private_key_file,
        "prompt_dir": prompt_dir,
        "prompt_allowed_hosts": prompt_allow_host,
        "callback_issuer": callback_issuer,
        "notify_batch_max": notify_batch_max,
        "event_loop": loop,
        "overload_new_calls_ms": overload_new_calls,
        "overload_media_ops_ms": overload_media_ops,
        "workers": workers,
        "workers_private_port": workers_private_port,
    }.items():
        if value is not None:
            updates[key] = value
    if no_auth:
        updates["auth_enabled"] = False
    try:
        settings = load(updates, config, lambda name: _OPTION_OF.get(name, name)).settings
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if settings.media not in ("sip", "loopback"):
        typer.echo(
            f"error: unknown media backend {settings.media!r} (use sip or loopback)", err=True
        )
        raise typer.Exit(2)
    try:
        event_loop = loops.resolve(settings.event_loop)
    except loops.LoopError as exc:
        typer.echo(f"error: --loop: {exc}", err=True)
        raise typer.Exit(2) from None
    if not settings.auth_enabled and not settings.listens_on_loopback():
        typer.echo(
            f"error: --no-auth (auth_enabled=false) is allowed only on a loopback address "
            f"(127.0.0.1, ::1, localhost), not {settings.host!r}: anyone who can reach the "
            "server could place calls. Listen on 127.0.0.1, or keep authentication on.",
            err=True,
        )
        raise typer.Exit(2)
    try:
        settings.sip_credentials()
        settings.sip_inbound_credentials()
        settings.sip_dns_address()
        _check_api_key(settings)
        check_data_dir(settings)
        settings = _ensure_secret(settings)
    except (ValueError, OSError, StartError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        count = workers_module.count_for(settings)
        if count > 1:
            raise typer.Exit(workers_module.supervise(settings, count, event_loop))
    except (workers_module.WorkersError, StartError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    _log_to_stderr(settings.log_level)
    raise_open_file_limit()
    loops.run(_serve(settings, event_loop), event_loop)


def _reload_tls_on_sighup(transport: SipTransport) -> None:
    """``kill -HUP``: read the TLS certificate files again now (they are also looked at every
    minute); unusable files are logged and the ones in use kept."""

    from ..media.tls import TlsConfigError  # noqa: PLC0415

    def reload() -> None:
        try:
            transport.reload_tls()
        except TlsConfigError as exc:
            logging.getLogger("dtmfgraph.cli.serve").warning("SIGHUP: %s; the old ones kept", exc)

    with contextlib.suppress(NotImplementedError, AttributeError):  # no SIGHUP (Windows)
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)


def _log_to_stderr(level: str, tag: str = "") -> None:
    """dtmfgraph's loggers to stderr, one timestamped line per record, from ``level``
    (``tag``: a worker's name, before the logger's)."""
    handler = logging.StreamHandler()
    where = f"{tag} %(name)s" if tag else "%(name)s"
    handler.setFormatter(
        logging.Formatter(
            f"%(asctime)s.%(msecs)03d %(levelname)s {where}: %(message)s", "%Y-%m-%dT%H:%M:%S"
        )
    )
    root = logging.getLogger("dtmfgraph")
    root.handlers = [handler]
    root.setLevel(level.upper())
    root.propagate = False


async def _serve(
    settings: Settings,
    event_loop: str = "asyncio",
    *,
    reuse_port: bool = False,
    banner: bool = True,
    private_port: int | None = None,
) -> None:
    """One node. Listen at once with the start gate as the app, then start the service behind
    it (:class:`.starter.Starter`): the first requests are answered while the API, the store and
    the media stack load; the others wait for them. The app is on ``settings``' HTTP port
    (shared with the other workers when ``reuse_port``), and on 127.0.0.1:``private_port`` too
    if given; ``banner``: print what it serves (a worker after the first prints only errors and
    logs)."""
    # imported here so that other dtmfgraph commands do not pay for the web server
    import uvicorn  # noqa: PLC0415

    from .starter import Starter  # noqa: PLC0415

    sockets = []
    try:
        sockets.append(bind_http(settings.host, settings.port, reuse_port=reuse_port))
        if private_port:
            sockets.append(bind_http("127.0.0.1", private_port))
    except StartError as exc:
        for each in sockets:
            each.close()
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    starter = Starter(
        settings, lambda s, app, media: _announce(s, app, media, event_loop, banner=banner)
    )
    try:
        # uvloop goes with httptools where installed (uvicorn's "auto"); asyncio with h11; no
        # WebSocket protocol to load (the API and the console have none)
        http = "auto" if event_loop == "uvloop" else "h11"
        config = uvicorn.Config(
            starter.gate,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            http=http,
            ws="none",
        )
        starter.server = _server(config, lambda: starter.gate.api)
        await starter.server.serve(sockets=sockets)
    finally:
        for each in sockets:
            each.close()
        await starter.end()
    if starter.exit_code:
        raise typer.Exit(starter.exit_code)


def _quiet(*_args: object, **_kwargs: object) -> None:
    """What a worker after the first prints of the start-up banner: nothing."""


def _announce(
    settings: Settings, app: Any, media: Any, event_loop: str, *, banner: bool = True
) -> None:
    """What serve prints once SIP is open: where SIP, the API and the console are (``banner``
    false: nothing; SIGHUP still reloads the TLS certificate)."""
    from ..api import mint_token  # noqa: PLC0415
    from ..service.sip_media import SipMedia  # noqa: PLC0415

    echo = typer.echo if banner else _quiet
    if isinstance(media, SipMedia):
        sip_host, sip_port = media.sip_address
        where = f"UDP and TCP {sip_host}:{sip_port}"
        if media.phone is not None and media.phone.tls_address is not None:
            tls_host, tls_port = media.phone.tls_address
            where += f"; TLS {tls_host}:{tls_port}"
            _reload_tls_on_sighup(media.phone.transport)
        echo(f"dtmfgraph: SIP on {media.uri} ({where})", err=True)
        trunk = settings.sip_trunk_template()
        echo(
            f"dtmfgraph: E.164 targets go to {trunk}"
            if trunk
            else "dtmfgraph: no --sip-trunk: targets must be sip: URIs",
            err=True,
        )
        if media.auth is not None:
            echo(f"dtmfgraph: SIP challenges answered as {media.auth.username!r}", err=True)
        if settings.sip_register:
            echo(
                f"dtmfgraph: registering {settings.sip_register} (refreshed; with several "
                "nodes, by the first one alive; see /metrics dtmfgraph_sip_registered)",
                err=True,
            )
    else:
        echo("dtmfgraph: media is the LOOPBACK simulation (no real calls)", err=True)
    if banner:
        _print_banner(settings, mint_token, real_sip=isinstance(media, SipMedia))
        _print_console(settings, app)
    echo(f"dtmfgraph: event loop {event_loop}", err=True)


def _server(config: Any, app: Callable[[], Any]) -> Any:
    """A uvicorn server that, when told to stop, first ends the console's live streams (a page
    left open would otherwise hold the stop up); ``app()``: the app once it is up, or ``None``."""
    import uvicorn  # noqa: PLC0415

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            console = getattr(getattr(app(), "state", None), "console", None)
            if console is not None:
                console.stopping = True
                console.journal.hub.close()
            super().handle_exit(sig, frame)

    return Server(config)


def _print_console(settings: Settings, app: Any) -> None:
    """The console's address: a one-time login link for the app incoming calls belong to (the
    dev app by default), or the plain address where API auth is off."""
    console = getattr(app.state, "console", None)
    if console is None:
        return
    from ..service import ROLE_INITIATE, ROLE_MEDIA, Principal  # noqa: PLC0415

    base = settings.effective_base_url()
    if not settings.auth_enabled:
        typer.echo(f"dtmfgraph: console at {base}/console (no login: API auth is off)", err=True)
        return
    who = Principal(
        settings.incoming_tenant_id,
        settings.incoming_app_id,
        frozenset({ROLE_INITIATE, ROLE_MEDIA}),
    )
    token = console.auth.login_link(who)
    typer.echo(
        f"dtmfgraph: console (app {who.app_id}; the link logs in once):\n"
        f"  {base}/console/login?token={token}",
        err=True,
    )


def _print_banner(settings: Settings, mint: Callable[[Settings], str], *, real_sip: bool) -> None:
    base = settings.effective_base_url()
    typer.echo(f"dtmfgraph: Graph API on {base}/v1.0 and {base}/beta", err=True)
    if settings.auth_enabled and settings.jwt_hs256_secret:
        token = mint(settings)
        typer.echo(f"token (24 h, dev app):\n{token}\n", err=True)
        auth_header = f'-H "Authorization: Bearer {token}" '
    elif settings.auth_enabled:
        typer.echo(
            f"dtmfgraph: API tokens are RS256 (iss {settings.jwt_issuer!r}, "
            f"aud {settings.jwt_audience!r}, claims tid and appid)",
            err=True,
        )
        auth_header = '-H "Authorization: Bearer $TOKEN" '
    else:
        typer.secho(
            "WARNING: AUTHENTICATION IS DISABLED (--no-auth): every request is accepted as the "
            "dev app, without a token. Anyone and anything on this machine can place calls "
            "and press keys in them. Never use this beyond local development.",
            fg=typer.colors.RED,
            bold=True,
            err=True,
        )
        auth_header = ""
    typer.echo(
        f"dtmfgraph: callbacks signed {settings.callback_algorithm} (iss "
        f"{settings.effective_callback_issuer()}); OpenID metadata at "
        f"{base}/.well-known/openid-configuration, keys at {base}/v1/keys; "
        f"metrics at {base}/metrics",
        err=True,
    )
    callback = "http://127.0.0.1:9000/cb"
    if settings.console_enabled and settings.console_inbox:
        callback = f"{base}/inbox/first"  # the console's built-in receiver shows it
    if real_sip and settings.sip_trunk_template() is None:
        target = '{"user":{"id":"sip:alice@127.0.0.1:5070"}}'
    else:
        target = '{"phone":{"id":"+14255550100"}}'
    typer.echo(
        "example:\n"
        f"  curl -s {auth_header}-H 'Content-Type: application/json' "
        f"{base}/v1.0/communications/calls "
        f'-d \'{{"callbackUri":"{callback}","requestedModalities":["audio"],'
        f'"targets":[{{"identity":{target}}}]}}\'\n',
        err=True,
    )


def token(
    tenant: Annotated[
        str, typer.Option(help="tid claim.")
    ] = "00000000-0000-0000-0000-000000000000",
    app_id: Annotated[str, typer.Option("--app", help="appid claim.")] = "dtmfgraph-dev-app",
    role: Annotated[
        list[str] | None, typer.Option(help="roles claim (repeatable; default both roles).")
    ] = None,
    lifetime: Annotated[int, typer.Option(help="Seconds.")] = 24 * 3600,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Print a development bearer token that ``dtmfgraph serve`` accepts."""
    from ..api import mint_token  # noqa: PLC0415

    try:
        settings = load({} if data_dir is None else {"data_dir": data_dir}, config).settings
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        settings = _ensure_secret(settings)
        roles = tuple(role) if role else ("Calls.Initiate.All", "Calls.AccessMedia.All")
        text = mint_token(
            settings, tenant_id=tenant, app_id=app_id, roles=roles, lifetime_s=lifetime
        )
    except ValueError as exc:
        typer.echo(
            f"error: {exc} (the service verifies RS256 tokens: mint them with your issuer's "
            "private key)",
            err=True,
        )
        raise typer.Exit(2) from None
    typer.echo(text)


def register(app: typer.Typer) -> None:
    app.command("serve", cls=ServeCommand)(serve)
    app.command("token")(token)
