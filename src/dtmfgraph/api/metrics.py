"""Prometheus metrics: ``GET /metrics`` (text exposition format) and what feeds it.

Counters count what this process did (sum them across nodes); the ``calls`` and
``outbox_backlog`` gauges are read from the database at each scrape, so every node reports the
whole deployment's value (take ``max``, not ``sum``, across nodes). Names and labels are listed
in docs/api.md.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import re
from collections.abc import Mapping
from typing import Final

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..notify.outbox import Outcome
from ..refusals import RESOURCES
from ..rtp.rtcp import RtcpStats
from ..service import AccessDeniedError, CallState, DtmfMethod, OpKind, OpStatus
from ..service.errors import StoreUnavailableError
from ..service.model import CompletionReason
from ..service.write_behind import WriteBehind
from ..settings import Settings
from ..store import SqlRepository
from .auth import AuthError
from .gc_pauses import GcPauses

WEBHOOK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RTT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0)
UNMATCHED = "unmatched"
"""The ``route`` label of requests that matched no route (404s), to bound cardinality."""


SIP_EVENTS: Final = ("orphans_hung_up", "sdp_refused", "ended_dialog_invites", "byes_crossed")
"""The SIP user agent's counters (``sip.counters.SipCounters``) exported as
``dtmfgraph_sip_events_total{event}``."""


class Metrics:
    """One registry per app (several apps may live in one process, e.g. in tests)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.gc = GcPauses(r)
        """Garbage-collection pauses (timed between ``gc.start()`` and ``gc.stop()``)."""
        self.calls = Gauge(
            "dtmfgraph_calls",
            "Calls in the database by state (whole deployment, read at scrape time).",
            ["state"],
            registry=r,
        )
        self.store_up = Gauge(
            "dtmfgraph_store_up",
            "1 while this node's store (database) answers, 0 during an outage.",
            registry=r,
        )
        self.store_outages = Counter(
            "dtmfgraph_store_outages", "Store outages this node has seen.", registry=r
        )
        self.store_outage_seconds = Counter(
            "dtmfgraph_store_outage_seconds",
            "Seconds this node's store was unavailable (the outage going on included).",
            registry=r,
        )
        self.store_pending = Gauge(
            "dtmfgraph_store_pending_writes",
            "Changes of live calls waiting in memory for the store (0 unless it is away).",
            registry=r,
        )
        self.store_dropped = Counter(
            "dtmfgraph_store_dropped_tone_notifications",
            "tone notifications dropped because too many waited for the store on one call.",
            registry=r,
        )
        self._store_seen = {"outages": 0.0, "seconds": 0.0, "dropped": 0.0}
        self.operations = Counter(
            "dtmfgraph_operations_finished",
            "Operations that reached a final status, by kind, status and completion reason "
            "(completion_reason is empty for operations other than sendDtmfTones).",
            ["kind", "status", "completion_reason"],
            registry=r,
        )
        self.keys = Counter(
            "dtmfgraph_dtmf_keys_sent",
            "DTMF keys that have left on calls, by method (rfc4733, sipinfo, inband).",
            ["method"],
            registry=r,
        )
        self.notifications = Counter(
            "dtmfgraph_notifications",
            "Notifications by the outcome of each POST that carried them: delivered (2xx), "
            "retried (failed, will be retried), dead (failed for the last time, kept as dead).",
            ["outcome"],
            registry=r,
        )
        self.webhook_posts = Counter(
            "dtmfgraph_webhook_posts",
            "Callback POSTs by outcome (as dtmfgraph_notifications; a POST carries one or "
            "more notifications of a call).",
            ["outcome"],
            registry=r,
        )
        self.outbox = Gauge(
            "dtmfgraph_outbox_backlog",
            "Notifications not delivered, by state: pending (due or waiting for a retry) and "
            "dead (whole deployment, read at scrape time).",
            ["state"],
            registry=r,
        )
        self.webhook_seconds = Histogram(
            "dtmfgraph_webhook_delivery_seconds",
            "Duration of each callback POST (to its answer, error or timeout), by outcome.",
            ["outcome"],
            buckets=WEBHOOK_BUCKETS,
            registry=r,
        )
        self.sip_registered = Gauge(
            "dtmfgraph_sip_registered",
            "1 while the registrar holds this node's binding of --sip-register, else 0 "
            "(absent without --sip-register).",
            ["aor"],
            registry=r,
        )
        self.rtp_foreign = Counter(
            "dtmfgraph_rtp_foreign_dropped",
            "RTP datagrams dropped because they did not come from the call's far end "
            "(strict RTP; absent with the loopback media).",
            registry=r,
        )
        self.rtp_ports_exhausted = Counter(
            "dtmfgraph_rtp_ports_exhausted",
            "Calls refused because every RTP port was taken: incoming INVITEs answered 503 "
            "with Retry-After, create-call requests answered 503 serviceNotAvailable.",
            registry=r,
        )
        self.resources_exhausted = Counter(
            "dtmfgraph_resources_exhausted",
            "Calls refused 503 with Retry-After (create-call and incoming INVITEs) because a "
            "resource was exhausted: rtp_ports, calls (max_calls), file_descriptors, "
            "media_load (the media clock ran late: also answer and new media operations).",
            ["resource"],
            registry=r,
        )
        for resource in RESOURCES:
            self.resources_exhausted.labels(resource)
        self._refused_seen: dict[str, int] = {}
        self.media_lateness = Gauge(
            "dtmfgraph_media_lateness_seconds",
            "How late this node's media clock runs, moving average (the load that refuses new "
            "calls past overload_new_calls_ms; 0 with nothing to pace).",
            registry=r,
        )
        self.sip_unauthenticated = Counter(
            "dtmfgraph_sip_calls_unauthenticated",
            "Calls to the service refused for want of a good answer to its digest challenge "
            "(401 or 403; with --sip-inbound-auth-user).",
            registry=r,
        )
        self.sip_forbidden = Counter(
            "dtmfgraph_sip_requests_forbidden",
            "SIP requests from sources outside --sip-allow-from, answered 403.",
            registry=r,
        )
        self.rtp_inbound = Counter(
            "dtmfgraph_rtp_inbound_packets",
            "Far ends' RTP audio packets lost, late (after their play-out), reordered, and "
            "concealed (lost audio made up for in-band DTMF detection and recordings).",
            ["kind"],
            registry=r,
        )
        self.sip_events = Counter(
            "dtmfgraph_sip_events",
            "What the SIP user agent did about odd traffic: 2xx for INVITEs it had no call for "
            "ACKed and BYEd (orphans_hung_up), INVITEs refused 488 for unusable SDP "
            "(sdp_refused), late or stray INVITEs of ended dialogs answered 481 "
            "(ended_dialog_invites), our BYEs stopped because the far end's crossed them "
            "(byes_crossed).",
            ["event"],
            registry=r,
        )
        self.rtp_moved = Counter(
            "dtmfgraph_rtp_moved",
            "Far ends' RTP streams followed to a new address in the middle of a call (their NAT "
            "rebound; strict RTP).",
            registry=r,
        )
        self.sip_failovers = Counter(
            "dtmfgraph_sip_failovers",
            "Calls and REGISTERs moved to the next server DNS named for their target, the one "
            "tried sending no response or 503 (absent with the loopback media).",
            registry=r,
        )
        self.rtcp_packets = Counter(
            "dtmfgraph_rtcp_packets",
            "RTCP compound packets of SIP calls' media, sent and received (RFC 3550 reports).",
            ["direction"],
            registry=r,
        )
        self.rtcp_dropped = Counter(
            "dtmfgraph_rtcp_dropped",
            "RTCP datagrams dropped: malformed, from another host than the call's media, or "
            "(SRTP calls) SRTCP that does not authenticate.",
            ["reason"],
            registry=r,
        )
        self.rtcp_rtt = Histogram(
            "dtmfgraph_rtcp_rtt_seconds",
            "Round-trip time of SIP calls' media at their end, from the far end's RTCP reports "
            "(calls without one are not counted).",
            buckets=RTT_BUCKETS,
            registry=r,
        )
        self._phone_seen: dict[str, int] = {}
        self.http = Counter(
            "dtmfgraph_http_requests",
            "HTTP requests served, by method, route template and status code.",
            ["method", "route", "status"],
            registry=r,
        )
        for state in CallState:
            self.calls.labels(state.value)
        for kind in OpKind:
            for status in (OpStatus.COMPLETED, OpStatus.FAILED):
                reasons = list(CompletionReason) if kind is OpKind.SEND_DTMF else [None]
                for reason in reasons:
                    self.operations.labels(kind.value, status.value, _reason(reason))
        for method in (DtmfMethod.RFC4733, DtmfMethod.SIPINFO, DtmfMethod.INBAND):
            self.keys.labels(method.value)
        for what in ("lost", "late", "reordered", "concealed"):
            self.rtp_inbound.labels(what)
        for event in SIP_EVENTS:
            self.sip_events.labels(event)
        for outcome in ("delivered", "retried", "dead"):
            self.notifications.labels(outcome)
            self.webhook_posts.labels(outcome)
            self.webhook_seconds.labels(outcome)

    # service.Observer
    def operation_finished(
        self, kind: OpKind, status: OpStatus, reason: CompletionReason | None
    ) -> None:
        self.operations.labels(kind.value, status.value, _reason(reason)).inc()

    def dtmf_keys_sent(self, method: DtmfMethod, count: int) -> None:
        self.keys.labels(method.value).inc(count)

    # notify.DeliveryObserver
    def attempt(self, outcome: Outcome, seconds: float | None, notifications: int = 1) -> None:
        self.notifications.labels(outcome).inc(notifications)
        if seconds is not None:
            self.webhook_posts.labels(outcome).inc()
            self.webhook_seconds.labels(outcome).observe(seconds)

    def registration(self, aor: str, registered: bool) -> None:
        """Set the registration gauge of ``aor``."""
        self.sip_registered.labels(aor).set(1 if registered else 0)

    def phone_counters(
        self,
        rtp_foreign_dropped: int,
        failovers: int,
        rtp_moved: int,
        forbidden: int,
        unauthenticated: int,
        rtcp: RtcpStats | None = None,
        rtts: collections.deque[float] | None = None,
        rtp_ports_exhausted: int = 0,
        media: Mapping[str, int] | None = None,
        sip: Mapping[str, int] | None = None,
    ) -> None:
        """Bring the counters kept by the SIP phone up to its running totals; ``rtts`` (the
        round trips of calls ended since, drained here) go into the histogram."""
        while rtts:
            self.rtcp_rtt.observe(rtts.popleft())
        rtcp = rtcp or RtcpStats()
        for name, counter, total in (
            ("rtcp_sent", self.rtcp_packets.labels("sent"), rtcp.sent),
            ("rtcp_received", self.rtcp_packets.labels("received"), rtcp.received),
            ("rtcp_malformed", self.rtcp_dropped.labels("malformed"), rtcp.malformed),
            ("rtcp_foreign", self.rtcp_dropped.labels("foreign"), rtcp.foreign),
            (
                "rtcp_unauthenticated",
                self.rtcp_dropped.labels("unauthenticated"),
                rtcp.unauthenticated,
            ),
            ("unauthenticated", self.sip_unauthenticated, unauthenticated),
            ("forbidden", self.sip_forbidden, forbidden),
            ("rtp_foreign_dropped", self.rtp_foreign, rtp_foreign_dropped),
            ("rtp_moved", self.rtp_moved, rtp_moved),
            ("failovers", self.sip_failovers, failovers),
            ("rtp_ports_exhausted", self.rtp_ports_exhausted, rtp_ports_exhausted),
            *(
                (f"rtp_{kind}", self.rtp_inbound.labels(kind), total)
                for kind, total in (media or {}).items()
            ),
            *(
                (f"sip_{event}", self.sip_events.labels(event), total)
                for event, total in (sip or {}).items()
            ),
        ):
            seen = self._phone_seen.get(name, 0)
            if total > seen:
                counter.inc(total - seen)
                self._phone_seen[name] = total

    def refusals(self, *counts: Mapping[str, int]) -> None:
        """Bring ``dtmfgraph_resources_exhausted_total`` up to the summed running totals of
        ``counts`` (the phone's and the service's refusals by resource)."""
        for resource in RESOURCES:
            total = sum(c.get(resource, 0) for c in counts)
            seen = self._refused_seen.get(resource, 0)
            if total > seen:
                self.resources_exhausted.labels(resource).inc(total - seen)
                self._refused_seen[resource] = total

    async def refresh(self, repo: SqlRepository, writes: WriteBehind | None = None) -> None:
        """Read the database gauges (kept as they were while the store is away) and the
        store's health."""
        if writes is not None:
            self.store_health(writes)
        try:
            by_state = await repo.calls_by_state()
            backlog = await repo.outbox_backlog()
        except StoreUnavailableError:
            if writes is not None:
                self.store_health(writes)
            return
        for state in CallState:
            self.calls.labels(state.value).set(by_state.get(state.value, 0))
        for row_state, n in backlog.items():
            self.outbox.labels(row_state).set(n)

    def store_health(self, writes: WriteBehind) -> None:
        health = writes.health
        self.store_up.set(0 if health.down else 1)
        self.store_pending.set(writes.pending)
        for name, counter, total in (
            ("outages", self.store_outages, float(health.outages)),
            ("seconds", self.store_outage_seconds, health.outage_seconds()),
            ("dropped", self.store_dropped, float(writes.dropped)),
        ):
            seen = self._store_seen[name]
            if total > seen:
                counter.inc(total - seen)
                self._store_seen[name] = total

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _reason(reason: CompletionReason | None) -> str:
    return "" if reason is None else reason.value


KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""The ``method`` labels; any other method is counted as ``other`` (a client may send any
token as a method: each would otherwise make a new series)."""


class HttpMetricsMiddleware:
    """Counts every HTTP request by method, route template (``/v1.0/communications/calls/
    {call_id}``, never the raw path) and final status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets when the app raises before answering

        async def send_and_see(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_see)
        finally:
            route = route_template(scope.get("route"), scope["path"])
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
            self.metrics.http.labels(method, route, str(status)).inc()


def route_template(route: object, path: str) -> str:
    """The matched route's template with the prefix it was included under, e.g.
    ``/v1.0/communications/calls/{call_id}`` (FastAPI hands over the route without the prefix
    of ``include_router``); :data:`UNMATCHED` when no route matched."""
    template = getattr(route, "path", None)
    regex = getattr(route, "path_regex", None)
    if not isinstance(template, str) or not isinstance(regex, re.Pattern):
        return UNMATCHED
    prefix = ""
    for part in path.split("/")[1:]:
        if regex.match(path[len(prefix) :]):
            return prefix + template
        prefix += "/" + part
    return template


def check_access(settings: Settings, authorization: str | None) -> None:
    """``/metrics`` access: with ``metrics_bearer_token`` that token is required; without
    one, the endpoint is open on a loopback listener and refused on any other."""
    expected = settings.metrics_bearer_token
    if expected:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), expected.encode()
        ):
            raise AuthError("/metrics needs 'Authorization: Bearer <metrics_bearer_token>'.")
        return
    if not settings.listens_on_loopback():
        raise AccessDeniedError(
            "/metrics is open only on a loopback listener; set metrics_bearer_token "
            "(DTMFGRAPH_METRICS_BEARER_TOKEN) to scrape it from elsewhere"
        )


router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    check_access(request.app.state.settings, request.headers.get("authorization"))
    m: Metrics = request.app.state.metrics
    await m.refresh(request.app.state.repo, request.app.state.service.writes)
    media = request.app.state.media
    registered = getattr(media, "registered", None)
    if registered is not None:
        m.registration(str(media.register_aor), registered)
    phone = getattr(media, "phone", None)
    service = request.app.state.service
    m.refusals(service.refusals.counts, *([phone.refusals.counts] if phone is not None else []))
    m.media_lateness.set(service.admission.level(asyncio.get_running_loop().time()))
    if phone is not None:
        m.phone_counters(
            phone.rtp_foreign_dropped,
            phone.failovers,
            phone.rtp_moved,
            phone.ua.counters.forbidden,
            phone.ua.counters.auth_refused,
            phone.rtcp_counts(),
            phone.ended_rtts,
            phone.rtp_ports_exhausted,
            phone.media_counts(),
            {event: getattr(phone.ua.counters, event) for event in SIP_EVENTS},
        )
    return Response(m.exposition(), media_type=CONTENT_TYPE_LATEST)
