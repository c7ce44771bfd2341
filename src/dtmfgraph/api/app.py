"""``create_app``: the FastAPI app, its lifespan (migrations, recovery, outbox), routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable

from fastapi import FastAPI

from ..media.sip_transport import TcpLimits
from ..media.tls import TlsConfig, TlsConfigError
from ..media.udp import PortRange
from ..notify import CallbackSigner, Dispatcher
from ..notify.keystore import data_dir_keys
from ..service import CallService, Limits, LoopbackMedia, MediaBackend, ServiceConfig
from ..service.admission import AdmissionConfig
from ..service.prompts import PromptConfig
from ..service.sip_media import SipMedia, TcpSettings
from ..settings import Settings
from ..store import SqlRepository, upgrade
from ..store.journals import JournalStore
from . import (
    callback_keys,
    control_routes,
    errors,
    loopback,
    media_routes,
    openapi,
    routes,
    unsupported,
)
from .auth import Authenticator, load_rs256_public_key
from .forward import Forwarder, Router, Routing, asyncpg_dsn
from .limits import BodyLimitMiddleware, BodyLimits
from .metrics import HttpMetricsMiddleware, Metrics
from .metrics import router as metrics_router
from .middleware import GraphMiddleware

log = logging.getLogger(__name__)

LOOPBACK_TRUNK = "sip:{number}@127.0.0.1"
"""Where E.164 targets go on the loopback backend when no trunk is configured (it answers all)."""
JWKS_PATH = "/.well-known/dtmfgraph/jwks.json"
"""Where the public key that verifies callback JWTs is published (a JSON Web Key Set)."""


async def _bounded(step: Awaitable[object], what: str, seconds: float = 15.0) -> None:
    """One step of a graceful stop, given at most ``seconds``: a stop must end even if the
    database or a peer hangs (what was not done is recovered at the next start)."""
    started = time.monotonic()
    try:
        await asyncio.wait_for(step, seconds)
    except TimeoutError:
        log.warning("stopping: %s took more than %.0f s; left for the next start", what, seconds)
    except Exception:
        log.exception("stopping: %s failed", what)
    else:
        took = time.monotonic() - started
        if took > 2.0:
            log.info("stopping: %s took %.1f s", what, took)


def service_config(settings: Settings, media: MediaBackend | None = None) -> ServiceConfig:
    trunk = settings.sip_trunk_template()
    if trunk is None and isinstance(media, LoopbackMedia):
        trunk = LOOPBACK_TRUNK
    incoming = settings.incoming_callback_uri
    console_inbox = settings.console_enabled and settings.console_inbox
    if incoming is None and isinstance(media, LoopbackMedia) and console_inbox:
        incoming = f"{settings.effective_base_url()}/inbox/incoming"  # the console inbox
    return ServiceConfig(
        sip_trunk_uri=trunk,
        callback_allowed_hosts=tuple(h.lower() for h in settings.callback_allowed_hosts),
        incoming_tenant_id=settings.incoming_tenant_id,
        incoming_app_id=settings.incoming_app_id,
        incoming_callback_uri=incoming,
        incoming_answer_timeout_s=settings.incoming_answer_timeout_s,
        keepalive_timeout_s=settings.keepalive_timeout_s,
        dial_timeout_s=settings.dial_timeout_s,
        node_id=settings.effective_node_id(),
        node_heartbeat_s=settings.node_heartbeat_s,
        node_dead_after_s=settings.node_dead_after_s,
        limits=Limits(),
        public_base_url=settings.effective_base_url(),
        prompts=PromptConfig(
            allowed_hosts=tuple(h.lower() for h in settings.prompt_allowed_hosts),
            prompt_dir=settings.prompt_dir,
            max_bytes=settings.prompt_max_bytes,
            timeout_s=settings.prompt_timeout_s,
            ca_file=settings.callback_ca_file,
        ),
        record_media_timeout_s=settings.record_media_timeout_s,
        max_calls=settings.max_calls,
        admission=AdmissionConfig(
            new_calls_ms=settings.overload_new_calls_ms,
            media_ops_ms=settings.overload_media_ops_ms,
        ),
    )


def callback_signer(settings: Settings) -> CallbackSigner:
    """The signer of callbacks the settings ask for: RS256 with the configured key or the keys
    of the data directory (the first made now if there is none), or HS256 when asked; a
    ``ValueError`` naming the setting when it cannot be made."""
    issuer = settings.effective_callback_issuer()
    if settings.callback_algorithm == "HS256":
        secret = settings.effective_callback_secret()
        if not secret:
            raise ValueError(
                "callback_algorithm HS256 needs callback_signing_secret (or jwt_hs256_secret)"
            )
        return CallbackSigner(issuer=issuer, hs256_secret=secret)
    pem = settings.callback_private_key_pem()
    return CallbackSigner(
        issuer=issuer,
        rs256_private_key=pem,
        keys=[] if pem else data_dir_keys(settings.data_dir),
        extra_public_keys=[
            load_rs256_public_key(text, "callback_jwks_extra_public_key_files")
            for text in settings.extra_pems("callback_jwks_extra_public_key_files")
        ],
        grace_s=settings.callback_key_grace_s,
    )


def tls_config(settings: Settings) -> TlsConfig | None:
    """The SIP TLS configuration the settings give (checked: its files load), or ``None``;
    ``ValueError`` naming the setting when it cannot be used."""
    if settings.sip_tls_cert_file is None:
        for name in ("sip_tls_key_file", "sip_tls_ca_file", "sip_tls_require_client_cert"):
            if getattr(settings, name):  # a file given, or mutual TLS asked for
                raise ValueError(f"{name}: TLS needs sip_tls_cert_file too")
        return None
    config = TlsConfig(
        settings.sip_tls_cert_file,
        settings.sip_tls_key_file,
        port=settings.sip_tls_port,
        ca_file=settings.sip_tls_ca_file,
        verify=settings.sip_tls_verify,
        require_client_cert=settings.sip_tls_require_client_cert,
    )
    try:
        config.check()
    except TlsConfigError as exc:
        raise ValueError(
            f"sip_tls_cert_file: {exc}; give readable PEM files: the certificate chain, its "
            "private key (in it or in sip_tls_key_file), CAs in sip_tls_ca_file"
        ) from None
    return config


def tcp_limits(settings: Settings) -> TcpSettings:
    """The SIP TCP/TLS limits of ``settings``."""
    return TcpSettings(
        TcpLimits(
            message_timeout=settings.sip_tcp_message_timeout_s,
            max_per_source=settings.sip_tcp_max_per_source,
            max_body_bytes=settings.sip_tcp_max_body_bytes,
            max_buffered_bytes=settings.sip_tcp_max_buffered_bytes,
        ),
        idle_timeout=settings.sip_tcp_idle_timeout_s,
        max_connections=settings.sip_tcp_max_connections,
    )


def build_media(settings: Settings) -> MediaBackend:
    """The media backend ``settings.media`` names: ``sip`` (a ``SipMedia`` on ``sip_host``,
    ``sip_port``, ``rtp_ports``; not yet bound) or ``loopback``."""
    if settings.media == "loopback":
        return LoopbackMedia(speed=settings.loopback_speed)
    if settings.media == "sip":
        return SipMedia(
            sip_host=settings.sip_host,
            sip_port=settings.sip_port,
            rtp_ports=PortRange.parse(settings.rtp_ports, even=True),
            public_host=settings.sip_public_host,
            media_timeout=settings.media_timeout_s,
            strict_rtp=settings.strict_rtp,
            auth=settings.sip_credentials(),
            register=settings.sip_register,
            registrar=settings.sip_registrar,
            register_expires=settings.sip_register_expires,
            dns_server=settings.sip_dns_address(),
            failover_after=settings.sip_failover_after_s,
            keepalive=settings.sip_keepalive_s or None,
            udp_keepalive=settings.sip_udp_keepalive_s or None,
            tcp=tcp_limits(settings),
            allow_from=settings.sip_allow_from or None,
            inbound_auth=settings.sip_inbound_credentials(),
            rtcp_interval=settings.rtcp_interval_s,
            jitter_max_delay=settings.jitter_max_ms / 1000,
            inbound_auth_sha256=settings.sip_inbound_auth_sha256,
            rtcp_mux_offer=settings.rtcp_mux_offer,
            refer_policy=settings.sip_refer_policy,
            refer_domains=tuple(settings.sip_refer_domains),
            tls=tls_config(settings),
            srtp=settings.srtp,
        )
    raise ValueError(f"unknown media backend {settings.media!r}: use sip or loopback")


def create_app(settings: Settings, media: MediaBackend | None = None) -> FastAPI:
    """The Graph API app; ``media`` defaults to :func:`build_media` of ``settings``.

    Raises ``ValueError`` for a configuration it cannot run with (no key, a bad PEM, ...)."""
    if media is None:
        media = build_media(settings)
    authenticator = Authenticator(settings)
    signer = callback_signer(settings)
    metrics = Metrics()
    journal = None
    if settings.console_enabled:
        from ..journal import Journal  # noqa: PLC0415 (the console's, only when it is on)

        journal = Journal(
            max_calls=settings.journal_max_calls,
            max_audio_calls=settings.journal_audio_calls,
            audio_seconds=settings.journal_audio_s,
        )
    config = service_config(settings, media)
    callback_tls = settings.callback_tls_context()

    routing = Routing()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = settings.effective_database_url()
        if url.startswith("sqlite"):
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        repo = SqlRepository(url)
        await upgrade(repo.engine)
        dispatcher = Dispatcher(
            repo,
            signer,
            timeout_s=settings.notify_timeout_s,
            retry_for_s=settings.notify_retry_for_s,
            backoff_initial_s=settings.notify_backoff_initial_s,
            backoff_max_s=settings.notify_backoff_max_s,
            per_receiver=settings.notify_receiver_concurrency,
            concurrency=settings.notify_concurrency,
            observer=metrics,
            verify=callback_tls,
            node=config.node_id,
            token_reuse_s=settings.notify_token_reuse_s,
            batch_max=settings.notify_batch_max,
            poll_s=settings.notify_poll_s,
        )
        service = CallService(repo, media, config, on_commit=dispatcher.wake, observer=metrics)
        if journal is not None:  # the console's journal hears what each layer does
            journal.store = JournalStore(repo.engine, keep=settings.journal_saved_calls)
            service.tap = journal
            dispatcher.tap = journal.delivery
            journal.start()
        await service.start()
        if journal is not None and isinstance(media, SipMedia) and media.phone is not None:
            media.phone.transport.tap = journal.sip
        app.state.repo = repo
        app.state.service = service
        app.state.dispatcher = dispatcher
        task = asyncio.create_task(dispatcher.run())
        forwarder: Forwarder | None = None
        if url.startswith("postgresql"):  # several nodes may share this database
            forwarder = Forwarder(
                app,
                asyncpg_dsn(url),
                config.node_id,
                timeout_s=settings.node_forward_timeout_s,
                base_url=settings.effective_base_url(),
            )
            await forwarder.start()
            routing.forwarder, routing.engine = forwarder, repo.engine
            routing.dead_after_s = settings.node_dead_after_s
            routing.heartbeat_s = settings.node_heartbeat_s
            routing.carries = service.carries
        app.state.forwarder = forwarder
        metrics.gc.start()
        try:
            yield
        finally:
            metrics.gc.stop()
            routing.forwarder = None
            if forwarder is not None:
                await _bounded(forwarder.close(), "closing the forwarding connection")
            await _bounded(service.close(), "ending this node's calls and media")
            drain = settings.notify_drain_on_stop_s
            await _bounded(dispatcher.stop(task, drain), "delivering notifications", drain + 1.0)
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await dispatcher.close()
            if journal is not None:
                await _bounded(journal.close(), "saving the console's call journals", 5.0)
            await repo.close()

    app = FastAPI(
        title="dtmfgraph",
        summary="Microsoft Graph calls API for DTMF, backed by a real media engine",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.authenticator = authenticator
    app.state.media = media
    app.state.base_url = settings.effective_base_url()
    app.state.signer = signer
    app.state.metrics = metrics
    errors.install(app)
    app.include_router(routes.router, prefix="/v1.0")
    app.include_router(routes.router, prefix="/beta")
    app.include_router(media_routes.router, prefix="/v1.0")
    app.include_router(media_routes.router, prefix="/beta")
    app.include_router(media_routes.beta_router, prefix="/beta")
    app.include_router(media_routes.recordings_router)
    app.include_router(control_routes.router, prefix="/v1.0")
    app.include_router(control_routes.router, prefix="/beta")
    app.include_router(unsupported.router, prefix="/v1.0")  # after every real route
    app.include_router(unsupported.router, prefix="/beta")
    app.include_router(metrics_router)
    if isinstance(media, LoopbackMedia):
        app.include_router(loopback.router)
    if journal is not None:
        from .. import console  # noqa: PLC0415 (the console sits beside the API)

        console.install(app, settings, journal, signer, loopback=isinstance(media, LoopbackMedia))

    app.include_router(callback_keys.router)
    openapi.install(app, config.limits)
    app.add_middleware(Router, routing=routing)  # after the path is normalised, before the app
    limits = BodyLimits(settings.max_body_bytes, settings.body_read_timeout_s)
    app.add_middleware(BodyLimitMiddleware, limits=limits)  # before any body is read
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics)
    app.add_middleware(GraphMiddleware)  # outermost: it normalises the path first
    return app
