"""``GET /metrics``: drive calls and operations through the API, scrape, check the deltas."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from dtmfgraph.api.metrics import SIP_EVENTS, Metrics

from .conftest import ServiceFactory
from .harness import Receiver, Service

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
CALL = "/v1.0/communications/calls/{call_id}"


async def scrape(svc: Service, **headers: str) -> Samples:
    async with httpx.AsyncClient() as http:
        resp = await http.get(f"{svc.base}/metrics", headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain; version=")
    out: Samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def val(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def eventually(
    svc: Service, check: Callable[[Samples], bool], timeout: float = 10
) -> Samples:
    """Scrape until ``check`` holds (counters of delivery move just after the receiver sees it)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = await scrape(svc)
        if check(samples):
            return samples
        assert time.monotonic() < deadline, (
            "metrics did not reach the expected values: "
            f"{ {k: v for k, v in samples.items() if 'notification' in k[0] or 'outbox' in k[0]} }"
        )
        await asyncio.sleep(0.05)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return val(after, name, **labels) - val(before, name, **labels)


async def test_metrics_follow_a_call(svc: Service, receiver: Receiver) -> None:
    before = await scrape(svc)
    assert val(before, "dtmfgraph_calls", state="established") == 0
    headers = {"Authorization": f"Bearer {svc.token()}"}
    async with httpx.AsyncClient(base_url=f"{svc.base}/v1.0", headers=headers) as http:
        resp = await http.post(
            "/communications/calls",
            json={
                "callbackUri": receiver.url,
                "targets": [{"identity": {"user": {"id": "sip:bob@127.0.0.1"}}}],
            },
        )
        cid = resp.json()["id"]
        await receiver.wait_for(lambda n: n["resourceData"].get("state") == "established")
        mid = await scrape(svc)
        assert val(mid, "dtmfgraph_calls", state="established") == 1

        # one send that completes: 3 keys by SIP INFO
        ok = (
            await http.post(
                f"/communications/calls/{cid}/sendDtmfTones",
                json={"tones": ["tone1", "star", "pound"], "dtmfMethod": "sipinfo"},
            )
        ).json()
        await receiver.wait_for(lambda n: n["resourceData"].get("id") == ok["id"])
        # one long RFC 4733 send, cancelled part-way
        long = (
            await http.post(
                f"/communications/calls/{cid}/sendDtmfTones",
                json={"tones": ["tone2"] * 60, "dtmfMethod": "rfc4733"},
            )
        ).json()
        await asyncio.sleep(0.1)
        cancel = await http.post(f"/communications/calls/{cid}/cancelMediaProcessing", json={})
        assert cancel.status_code == 200
        await receiver.wait_for(lambda n: n["resourceData"].get("id") == long["id"])
        assert (await http.get("/communications/calls/nope")).status_code == 404
        assert (await http.delete(f"/communications/calls/{cid}")).status_code == 204
        notes = await receiver.wait_for(lambda n: True, count=6)

    heard = svc.media.calls[0].heard
    rfc4733 = sum(1 for _, m in heard if m == "rfc4733")
    assert 0 < rfc4733 < 60
    assert sum(1 for _, m in heard if m == "sipinfo") == 3
    assert len(notes) == 6  # establishing, established, 2 operation ends, terminating, terminated

    after = await eventually(
        svc,
        lambda s: (
            delta(before, s, "dtmfgraph_notifications_total", outcome="delivered") >= 6
            and val(s, "dtmfgraph_outbox_backlog", state="pending") == 0
        ),
    )
    d = lambda name, **labels: delta(before, after, name, **labels)  # noqa: E731
    # calls by state (from the database)
    assert val(after, "dtmfgraph_calls", state="terminated") == 1
    assert val(after, "dtmfgraph_calls", state="established") == 0
    # operations by kind and final status
    send = "sendDtmfTonesOperation"
    assert (
        d(
            "dtmfgraph_operations_finished_total",
            kind=send,
            status="completed",
            completion_reason="completedSuccessfully",
        )
        == 1
    )
    assert (
        d(
            "dtmfgraph_operations_finished_total",
            kind=send,
            status="completed",
            completion_reason="mediaOperationCanceled",
        )
        == 1
    )
    assert (
        d(
            "dtmfgraph_operations_finished_total",
            kind="cancelMediaProcessingOperation",
            status="completed",
            completion_reason="",
        )
        == 1
    )
    assert d("dtmfgraph_operations_finished_total", kind=send, status="failed",
             completion_reason="unknown") == 0  # fmt: skip
    # keys by method: exactly what the far end heard
    assert d("dtmfgraph_dtmf_keys_sent_total", method="sipinfo") == 3
    assert d("dtmfgraph_dtmf_keys_sent_total", method="rfc4733") == rfc4733
    assert d("dtmfgraph_dtmf_keys_sent_total", method="inband") == 0
    # notifications and their latency
    assert d("dtmfgraph_notifications_total", outcome="delivered") == 6
    assert d("dtmfgraph_notifications_total", outcome="retried") == 0
    assert d("dtmfgraph_notifications_total", outcome="dead") == 0
    # POSTs: a notification each, or several of the call together (queued while one was sent)
    posts = d("dtmfgraph_webhook_posts_total", outcome="delivered")
    assert posts == len(receiver.batches) and 1 <= posts <= 6
    assert d("dtmfgraph_webhook_posts_total", outcome="retried") == 0
    assert d("dtmfgraph_webhook_delivery_seconds_count", outcome="delivered") == posts
    assert d("dtmfgraph_webhook_delivery_seconds_sum", outcome="delivered") > 0
    assert d("dtmfgraph_webhook_delivery_seconds_bucket", outcome="delivered", le="+Inf") == posts
    assert val(after, "dtmfgraph_outbox_backlog", state="pending") == 0
    # HTTP requests by route template and status
    http_total = "dtmfgraph_http_requests_total"
    assert d(http_total, method="POST", route="/v1.0/communications/calls", status="201") == 1
    assert d(http_total, method="POST", route=CALL + "/sendDtmfTones", status="200") == 2
    assert d(http_total, method="POST", route=CALL + "/cancelMediaProcessing", status="200") == 1
    assert d(http_total, method="GET", route=CALL, status="404") == 1
    assert d(http_total, method="DELETE", route=CALL, status="204") == 1
    assert d(http_total, method="GET", route="/metrics", status="200") >= 2


async def test_metrics_retries_dead_and_backlog(
    service_factory: ServiceFactory, receiver: Receiver
) -> None:
    receiver.up = False  # answers 503
    async with service_factory(notify_retry_for_s=1.0) as svc:
        headers = {"Authorization": f"Bearer {svc.token()}"}
        async with httpx.AsyncClient(base_url=f"{svc.base}/v1.0", headers=headers) as http:
            resp = await http.post(
                "/communications/calls",
                json={
                    "callbackUri": receiver.url,
                    "targets": [{"identity": {"user": {"id": "sip:bob@127.0.0.1"}}}],
                },
            )
            assert resp.status_code == 201
        # establishing: tried for its window (1 s), then given up; established: held
        # behind it, never sent, dead too (a scrape reads the database gauges first: wait
        # for both views to agree)
        after = await eventually(
            svc,
            lambda s: (
                val(s, "dtmfgraph_notifications_total", outcome="dead") >= 1
                and val(s, "dtmfgraph_outbox_backlog", state="dead") >= 2
            ),
        )
        rows = await svc.app.state.repo.outbox_rows()
        dead = sum(1 for r in rows if r["state"] == "dead")
        tries = receiver.refused
        assert tries >= 2
        # the first (establishing) died, alone or with established in the same POST; an
        # established that never went with it is held behind it (never sent: not counted)
        held = sum(1 for r in rows if (r["last_error"] or "").startswith("held behind"))
        assert val(after, "dtmfgraph_notifications_total", outcome="dead") + held == 2
        died_in_a_post = val(after, "dtmfgraph_webhook_delivery_seconds_count", outcome="dead")
        posts = lambda outcome: val(after, "dtmfgraph_webhook_posts_total", outcome=outcome)  # noqa: E731
        assert posts("retried") + died_in_a_post == tries
        assert posts("dead") == died_in_a_post
        # each failed POST carried one or both notifications
        retried = val(after, "dtmfgraph_notifications_total", outcome="retried")
        assert posts("retried") <= retried <= 2 * posts("retried")
        assert val(after, "dtmfgraph_notifications_total", outcome="delivered") == 0
        # the first died in its last POST, or while it waited for the receiver's backoff (no
        # POST: no duration)
        assert died_in_a_post <= 1
        assert val(after, "dtmfgraph_outbox_backlog", state="dead") == dead == 2
        assert val(after, "dtmfgraph_outbox_backlog", state="pending") == 0


async def test_metrics_access(service_factory: ServiceFactory) -> None:
    async with service_factory(metrics_bearer_token="scrape-me") as svc:
        async with httpx.AsyncClient() as http:
            resp = await http.get(f"{svc.base}/metrics")
            assert resp.status_code == 401
            assert resp.json()["error"]["code"] == "unauthenticated"
            resp = await http.get(f"{svc.base}/metrics", headers=_bearer("wrong"))
            assert resp.status_code == 401
        await scrape(svc, **_bearer("scrape-me"))
    # listening beyond loopback with no metrics token: refused
    async with service_factory(host="0.0.0.0") as svc:
        async with httpx.AsyncClient() as http:
            resp = await http.get(f"http://127.0.0.1:{svc.settings.port}/metrics")
        assert resp.status_code == 403
        err: dict[str, Any] = resp.json()["error"]
        assert err["code"] == "accessDenied" and "metrics_bearer_token" in err["message"]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_garbage_collection_pauses_are_timed(svc: Service) -> None:
    """Each collection the running service goes through is in the histogram, with its
    duration; a full one walks the whole heap, so it takes measurably long."""
    before = await scrape(svc)
    junk = [[i] for i in range(200_000)]  # objects for the collector to walk
    gc.collect(2)
    del junk
    after = await scrape(svc)
    count = delta(before, after, "dtmfgraph_gc_pause_seconds_count", generation="2")
    assert count >= 1
    took = delta(before, after, "dtmfgraph_gc_pause_seconds_sum", generation="2")
    assert 0.0 < took < 5.0
    assert val(after, "dtmfgraph_gc_pause_seconds_bucket", generation="2", le="+Inf") >= count


def test_received_rtp_counts_are_exported() -> None:
    """The phone's totals of far ends' RTP lost, late, reordered and concealed reach /metrics
    as increments of ``dtmfgraph_rtp_inbound_packets_total``."""
    m = Metrics()
    m.phone_counters(0, 0, 0, 0, 0, media={"lost": 3, "late": 1, "reordered": 2, "concealed": 3})
    m.phone_counters(0, 0, 0, 0, 0, media={"lost": 5, "late": 1, "reordered": 2, "concealed": 4})
    got: Samples = {}
    for family in text_string_to_metric_families(m.exposition().decode()):
        for s in family.samples:
            got[(s.name, tuple(sorted(s.labels.items())))] = s.value
    name = "dtmfgraph_rtp_inbound_packets_total"
    assert [val(got, name, kind=k) for k in ("lost", "late", "reordered", "concealed")] == [
        5,
        1,
        2,
        4,
    ]


def test_sip_user_agent_events_are_exported() -> None:
    """The SIP user agent's counters of odd traffic (orphan 2xx, unusable SDP, late INVITEs of
    ended dialogs, crossed BYEs) reach /metrics as increments of ``dtmfgraph_sip_events_total``;
    every event is there from the start, at 0."""
    m = Metrics()

    def samples() -> Samples:
        got: Samples = {}
        for family in text_string_to_metric_families(m.exposition().decode()):
            for s in family.samples:
                got[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return got

    name = "dtmfgraph_sip_events_total"
    assert [val(samples(), name, event=e) for e in SIP_EVENTS] == [0, 0, 0, 0]
    m.phone_counters(0, 0, 0, 0, 0, sip={"ended_dialog_invites": 2, "byes_crossed": 1})
    m.phone_counters(0, 0, 0, 0, 0, sip={"ended_dialog_invites": 3, "sdp_refused": 4})
    got = samples()
    assert val(got, name, event="ended_dialog_invites") == 3
    assert val(got, name, event="byes_crossed") == 1
    assert val(got, name, event="sdp_refused") == 4
    assert val(got, name, event="orphans_hung_up") == 0
