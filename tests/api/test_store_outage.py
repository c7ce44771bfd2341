"""A short storage outage loses nothing and stalls nothing (issue 13, items 1 and 2).

Real faults: the SQLite data directory made read-only, the disk under it full (a small tmpfs
filled up), a private PostgreSQL server stopped and started again. During each, one call's far
end hangs up, one call is hung up by the app (DELETE), one call's sendDtmfTones finishes; reads
of live calls are answered from memory, everything else that needs the store answers 503
``serviceNotAvailable`` with ``Retry-After``. After it, every final notification is produced,
in order per call, nothing is stuck, the call's media worker still works, and the outage was
logged once (start, end) and counted in ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from dtmfgraph.service import CallService, LoopbackMedia
from dtmfgraph.service.write_behind import CallRecord
from dtmfgraph.store.tables import calls, operations, outbox

from .harness import Receiver, Service, free_port, make_settings, running_service
from .outages import disk_full, private_postgres, read_only_store, small_tmpfs

SPEED = 0.05
LIFECYCLE = ["establishing", "established", "terminating", "terminated"]

Fault = Callable[[], contextlib.AbstractAsyncContextManager[None]]


def _auth(svc: Service) -> dict[str, str]:
    return {"Authorization": f"Bearer {svc.token()}"}


def _service(svc: Service) -> CallService:
    service: CallService = svc.app.state.service
    return service


async def _until(what: str, pred: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.02)


async def _state(http: httpx.AsyncClient, cid: str, want: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        r = await http.get(f"/communications/calls/{cid}")
        if r.status_code == 200 and r.json()["state"] == want:
            body: dict[str, Any] = r.json()
            return body
        assert time.monotonic() < deadline, r.text
        await asyncio.sleep(0.05)


async def _new_call(http: httpx.AsyncClient, receiver: Receiver, user: str) -> str:
    body = {
        "callbackUri": receiver.url,
        "targets": [{"identity": {"user": {"id": f"sip:{user}@127.0.0.1"}}}],
    }
    r = await http.post("/communications/calls", json=body)
    assert r.status_code == 201, r.text
    cid: str = r.json()["id"]
    await _state(http, cid, "established")
    return cid


def _record(svc: Service, cid: str) -> CallRecord:
    return _service(svc)._records[cid]


def _assert_503(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "serviceNotAvailable"
    assert int(r.headers["Retry-After"]) >= 1


def _assert_in_order(notes: list[dict[str, Any]], ops: list[str]) -> None:
    """The call's states come in lifecycle order, each once; its operations end in order. A
    notification delivered while the store could not record it is sent again right after
    (at-least-once): such a repeat is the same notification, next to the first."""
    notes = [n for i, n in enumerate(notes) if i == 0 or n != notes[i - 1]]
    states = [n["resourceData"]["state"] for n in notes if "state" in n["resourceData"]]
    assert states == sorted(set(states), key=LIFECYCLE.index), states
    ended = [n["resourceData"]["id"] for n in notes if "status" in n["resourceData"]]
    assert ended == ops, (ended, ops)


async def _outage_scenario(
    svc: Service, receiver: Receiver, fault: Fault, *, reads_fail: bool
) -> None:
    service = _service(svc)
    media = svc.media
    async with httpx.AsyncClient(
        base_url=f"{svc.base}/v1.0", headers=_auth(svc), timeout=30
    ) as http:
        gone = await _new_call(http, receiver, "gone")  # ended before: only in the store
        assert (await http.delete(f"/communications/calls/{gone}")).status_code == 204
        await _state(http, gone, "terminated")
        await _until("the ended call is only in the store", lambda: gone not in service._records)
        a = await _new_call(http, receiver, "a")  # its far end hangs up during the outage
        b = await _new_call(http, receiver, "b")  # its sendDtmfTones ends during the outage
        d = await _new_call(http, receiver, "d")  # the app hangs it up during the outage
        far_a = next(c for c in media.calls if c.remote.startswith("sip:a@"))
        dtmf = {"tones": ["tone1"] * 20, "toneDurationMs": 2000, "delayBetweenTonesMs": 100}
        r = await http.post(f"/communications/calls/{b}/sendDtmfTones", json=dtmf)
        assert r.status_code == 200, r.text
        op1 = r.json()["id"]

        async with fault():
            far_a.remote_hangup()
            assert (await http.delete(f"/communications/calls/{d}")).status_code == 204
            await _until(
                "the transitions are made in memory and wait for the store",
                lambda: (
                    _record(svc, a).call.state.value == "terminated"
                    and _record(svc, d).call.state.value == "terminated"
                    and _record(svc, b).ops[op1].finished
                    and all(service.writes.backlog(c) for c in (a, b, d))
                ),
            )
            assert service.writes.health.down
            # live calls (and those whose end waits for the store) are read from memory
            r = await http.get(f"/communications/calls/{a}")
            assert r.status_code == 200 and r.json()["state"] == "terminated", r.text
            r = await http.get(f"/communications/calls/{b}/operations/{op1}")
            assert r.status_code == 200 and r.json()["status"] == "completed", r.text
            # what needs the store: 503 with Retry-After, never 500 (a read-only or full
            # SQLite file may still be read)
            r = await http.get(f"/communications/calls/{gone}")
            if reads_fail or r.status_code != 200:
                _assert_503(r)
            else:
                assert r.json()["state"] == "terminated", r.text
            _assert_503(await http.post(f"/communications/calls/{b}/sendDtmfTones", json=dtmf))
            _assert_503(
                await http.post(
                    "/communications/calls",
                    json={
                        "callbackUri": receiver.url,
                        "targets": [{"identity": {"user": {"id": "sip:e@127.0.0.1"}}}],
                    },
                )
            )
            assert (await http.get(f"{svc.base}/metrics")).status_code == 200

        # after: every final notification, in order per call; the worker of b still works
        await receiver.wait_for(lambda n: n["resourceData"].get("id") == op1, timeout=30)
        for cid in (a, d):
            await receiver.wait_for(
                lambda n, cid=cid: (
                    n["resourceUrl"] == f"/communications/calls/{cid}"
                    and n["changeType"] == "deleted"
                ),
                timeout=30,
            )
        await _until("the outage is over", lambda: not service.writes.health.down)
        r = await http.post(f"/communications/calls/{b}/sendDtmfTones", json={"tones": ["tone2"]})
        assert r.status_code == 200, r.text
        op2 = r.json()["id"]
        await receiver.wait_for(lambda n: n["resourceData"].get("id") == op2, timeout=30)
        assert (await http.get(f"/communications/calls/{gone}")).status_code == 200
        for cid, ops in ((a, []), (b, [op1, op2]), (d, [])):
            _assert_in_order(receiver.for_call(cid), ops)
        far_b = next(c for c in media.calls if c.remote.startswith("sip:b@"))
        assert far_b.heard_keys == "1" * 20 + "2"
        metrics = (await http.get(f"{svc.base}/metrics")).text
    assert "dtmfgraph_store_outages_total 1.0" in metrics
    assert "dtmfgraph_store_pending_writes 0.0" in metrics

    # nothing stuck in the store
    repo = svc.app.state.repo
    async with repo.engine.connect() as conn:
        states = dict((await conn.execute(sa.select(calls.c.id, calls.c.state))).all())
        unfinished = (
            await conn.execute(
                sa.select(sa.func.count()).where(operations.c.status.in_(["running", "notStarted"]))
            )
        ).scalar()
    assert {states[c] for c in (a, d, gone)} == {"terminated"} and states[b] == "established"
    assert unfinished == 0
    await _until_delivered(repo)


async def _until_delivered(repo: Any) -> None:
    async def pending() -> int:
        async with repo.engine.connect() as conn:
            q = sa.select(sa.func.count()).where(outbox.c.state != "delivered")
            return int((await conn.execute(q)).scalar() or 0)

    deadline = time.monotonic() + 30
    while (left := await pending()) > 0:
        assert time.monotonic() < deadline, f"{left} notifications never delivered"
        await asyncio.sleep(0.05)


def _outage_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    lines = [r.getMessage() for r in caplog.records if r.name == "dtmfgraph.service.outage"]
    assert len(lines) == 2, lines
    assert lines[0].startswith("store unavailable") and lines[1].startswith(
        "store available again after"
    )
    errors = [
        r
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name != "dtmfgraph.service.outage"
    ]
    assert errors == [], [r.getMessage() for r in errors]


@contextlib.asynccontextmanager
async def _service_on(tmp: Path, db_url: str, receiver: Receiver) -> AsyncIterator[Service]:
    settings = make_settings(
        tmp, db_url, free_port(), loopback_speed=SPEED, incoming_callback_uri=receiver.url
    )
    async with running_service(settings, LoopbackMedia(speed=SPEED)) as svc:
        yield svc


async def test_sqlite_data_dir_read_only(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    data = tmp_path / "data"
    data.mkdir()

    engines: list[Any] = []

    @contextlib.asynccontextmanager
    async def fault() -> AsyncIterator[None]:
        started = time.monotonic()
        async with read_only_store(data, engines[0]):
            yield
            await asyncio.sleep(max(0.0, 2.0 - (time.monotonic() - started)))

    url = f"sqlite+aiosqlite:///{data / 'graph.sqlite3'}"
    async with _service_on(data, url, receiver) as svc:
        engines.append(svc.app.state.repo.engine)
        await _outage_scenario(svc, receiver, fault, reads_fail=False)
    _outage_logged_once(caplog)


async def test_sqlite_disk_full(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    with small_tmpfs() as data:

        @contextlib.asynccontextmanager
        async def fault() -> AsyncIterator[None]:
            started = time.monotonic()
            with disk_full(data):
                yield
                await asyncio.sleep(max(0.0, 2.0 - (time.monotonic() - started)))

        url = f"sqlite+aiosqlite:///{data / 'graph.sqlite3'}"
        async with _service_on(data, url, receiver) as svc:
            await _outage_scenario(svc, receiver, fault, reads_fail=False)
    _outage_logged_once(caplog)


async def test_postgresql_stopped_and_started(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with private_postgres() as server:
        url = await server.create_database()

        @contextlib.asynccontextmanager
        async def fault() -> AsyncIterator[None]:
            started = time.monotonic()
            await asyncio.to_thread(server.stop)
            try:
                yield
                await asyncio.sleep(max(0.0, 2.0 - (time.monotonic() - started)))
            finally:
                await asyncio.to_thread(server.start)

        async with _service_on(tmp_path, url, receiver) as svc:
            await _outage_scenario(svc, receiver, fault, reads_fail=True)
    _outage_logged_once(caplog)


async def test_keepalive_watchdog_ends_a_call_during_an_outage(
    tmp_path: Path, receiver: Receiver
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    url = f"sqlite+aiosqlite:///{data / 'graph.sqlite3'}"
    settings = make_settings(
        data,
        url,
        free_port(),
        loopback_speed=SPEED,
        incoming_callback_uri=receiver.url,
        keepalive_timeout_s=3.0,
    )
    async with (
        running_service(settings, LoopbackMedia(speed=SPEED)) as svc,
        httpx.AsyncClient(base_url=f"{svc.base}/v1.0", headers=_auth(svc), timeout=30) as http,
    ):
        service = _service(svc)
        cid = await _new_call(http, receiver, "idle")
        assert (await http.post(f"/communications/calls/{cid}/keepAlive")).status_code == 200
        async with read_only_store(data, svc.app.state.repo.engine):
            await _until(
                "the watchdog ended the call in memory, its end waiting for the store",
                lambda: (
                    _record(svc, cid).call.state.value == "terminated"
                    and service.writes.backlog(cid)
                ),
            )
            r = await http.post(f"/communications/calls/{cid}/keepAlive")
            assert r.status_code == 404, r.text  # it has ended: known from memory
        [end] = await receiver.wait_for(
            lambda n: (
                n["resourceUrl"] == f"/communications/calls/{cid}" and n["changeType"] == "deleted"
            ),
            timeout=30,
        )
        info = end["resourceData"]["resultInfo"]
        assert (info["code"], info["subcode"]) == (408, 8537)
        _assert_in_order(receiver.for_call(cid), [])
        await _until_delivered(svc.app.state.repo)
