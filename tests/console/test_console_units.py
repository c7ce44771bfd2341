"""The console's parts without a browser: the journal, the SIP summary and the inbox parsers
(fuzzed), sessions, the spectrogram's limits, and the console's HTTP rules over ASGI (login,
CSRF, scoping, limits)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtmfgraph.api import create_app, mint_token
from dtmfgraph.console.inbox import MAX_BODY, Delivery, Inbox
from dtmfgraph.console.sessions import ConsoleAuth
from dtmfgraph.journal import AudioRing, Journal
from dtmfgraph.journal.sipsummary import summarize
from dtmfgraph.notify import CallbackSigner
from dtmfgraph.service import ROLE_INITIATE, ROLE_MEDIA, LoopbackMedia, Principal
from dtmfgraph.service.hooks import DIALLING
from dtmfgraph.service.model import Event, EventKind
from dtmfgraph.store import SqlRepository, upgrade
from dtmfgraph.store.journals import JournalStore
from dtmfgraph.tones import synthesize
from dtmfgraph.tones.spectrum import MAX_SAMPLES, key_marks, spectrogram

from ..api.harness import APP, SECRET, TENANT, make_settings, pg_database

INVITE = (
    b"INVITE sip:alice@127.0.0.1:5070 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n"
    b"Call-ID: abc@127.0.0.1\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n\r\n"
    b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 20000 RTP/AVP 0 101\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)
WHO = Principal(TENANT, APP, frozenset({ROLE_INITIATE, ROLE_MEDIA}))


# --- parsers ----------------------------------------------------------------------------------
def test_sip_summary_of_an_invite() -> None:
    s = summarize(INVITE)
    assert (s["method"], s["call_id"], s["cseq"]) == ("INVITE", "abc@127.0.0.1", "1 INVITE")
    assert s["sdp"] == (
        "c=IN IP4 127.0.0.1 m=audio 20000 RTP/AVP 0 101 "
        "a=rtpmap:101 telephone-event/8000 a=sendrecv"
    )
    r = summarize(b"SIP/2.0 486 Busy Here\r\ni: x\r\n\r\n")
    assert (r["status"], r["label"], r["call_id"]) == (486, "486 Busy Here", "x")
    big = summarize(INVITE + b"a=x\r\n" * 5000)
    assert len(big["text"]) == 8192 and big["cut"] > 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_sip_summary_never_raises(data: bytes) -> None:
    out = summarize(data)
    assert len(out["text"]) <= 8192 and isinstance(out["first"], str)


def _inbox(secret: str = SECRET) -> Inbox:
    return Inbox(issuer="dtmfgraph", secret=secret, jwks={"keys": []})


def test_inbox_checks_each_token() -> None:
    signer = CallbackSigner(issuer="dtmfgraph", hs256_secret=SECRET)
    body = json.dumps({"value": [{"changeType": "updated", "resourceUrl": "/x"}]}).encode()
    good = f"Bearer {signer.token(audience=APP, call_id='c1')}"
    inbox = _inbox()
    d = inbox.take("a", good, body)
    assert d.valid and (d.app_id, d.call_id) == (APP, "c1")
    forged = CallbackSigner(issuer="dtmfgraph", hs256_secret="another-" + "y" * 40)
    bad = inbox.take("a", f"Bearer {forged.token(audience=APP, call_id='c1')}", body)
    assert not bad.valid and "Signature" in bad.reason and bad.body is None
    assert not inbox.take("a", None, body).valid
    assert not inbox.take("a", good, b"[1, 2]").valid  # not an object
    other = CallbackSigner(issuer="someone", hs256_secret=SECRET)
    assert (
        "issuer" in inbox.take("a", f"Bearer {other.token(audience=APP, call_id='c')}", body).reason
    )
    assert [x.id for x in inbox.deliveries(APP)] == [5, 4, 3, 2, 1]
    assert [x.id for x in inbox.deliveries("another-app")] == [5, 4, 3, 2]  # refused ones only


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=300)), st.binary(max_size=600))
def test_inbox_never_raises(header: str | None, body: bytes) -> None:
    d = _inbox().take("fuzz", header, body)
    assert not d.valid and d.reason


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries({"changeType": _JSON, "resourceUrl": _JSON, "resourceData": _JSON}),
        max_size=3,
    )
)
def test_a_delivery_of_any_shape_is_shown_never_raises(value: list[dict[str, Any]]) -> None:
    """What the inbox page lists of a delivery whose token was good: a roster update carries a
    list of participants as its resourceData, a sender may put anything there."""
    shown = Delivery(1, "fuzz", 0.0, True, "", "app", "c1", {"value": value}).to_json()
    assert len(shown["changes"]) == len(value)
    for change, note in zip(shown["changes"], value, strict=True):
        if isinstance(note["resourceData"], list):
            assert change["type"] == "participants"


def test_sessions_one_time_links_and_csrf() -> None:
    auth = ConsoleAuth()
    token = auth.login_link(WHO)
    assert auth.spend(token) == WHO and auth.spend(token) is None
    session = auth.start(WHO)
    assert auth.session(session.id) == session and auth.session("nope") is None
    assert ConsoleAuth.csrf_ok(session, session.csrf)
    assert not ConsoleAuth.csrf_ok(session, None) and not ConsoleAuth.csrf_ok(session, "x")
    auth.end(session.id)
    assert auth.session(session.id) is None


def test_spectrogram_limits_and_marks() -> None:
    x = synthesize("4#", rate=8000, tone_ms=100, gap_ms=100, level_dbm0=-10.0)
    assert [(m.key, m.low_hz, m.high_hz) for m in key_marks(x)] == [
        ("4", 770.0, 1209.0),
        ("#", 941.0, 1477.0),
    ]
    spec = spectrogram(x)
    peak = spec.freqs[np.argmax(spec.level[5])]
    assert abs(peak - 1209.0) < 20 or abs(peak - 770.0) < 20
    for bad in (np.zeros((2, 10)), np.zeros(MAX_SAMPLES + 1)):
        with pytest.raises(ValueError):
            spectrogram(bad)
    with pytest.raises(ValueError):
        spectrogram(x, bins=1)
    assert spectrogram(x[:50]).level.shape == (0, 160)


# --- the journal ------------------------------------------------------------------------------
async def test_journal_bounds_and_links() -> None:
    journal = Journal(max_calls=3, max_entries=5)
    for i in range(8):
        journal.add("c1", "note", n=i)
    entries = journal.entries("c1")
    assert [e["n"] for e in entries] == [3, 4, 5, 6, 7] and journal.get("c1").dropped == 3  # type: ignore[union-attr]
    # an INVITE sent while call c2 dials is c2's; its later responses follow the Call-ID
    token = DIALLING.set("c2")
    try:
        journal.sip("out", INVITE, ("127.0.0.1", 5070), "udp")
    finally:
        DIALLING.reset(token)
    journal.sip("in", b"SIP/2.0 200 OK\r\nCall-ID: abc@127.0.0.1\r\nCSeq: 1 INVITE\r\n\r\n",
                ("127.0.0.1", 5070), "udp")  # fmt: skip
    assert [e["label"] for e in journal.entries("c2")] == ["INVITE", "200 OK"]
    # a dialog nobody claimed waits, bounded, and joins its call when linked
    journal.sip("in", INVITE.replace(b"abc@", b"in@"), ("127.0.0.1", 5070), "udp")
    journal._link("in@127.0.0.1", "c3")
    assert [e["label"] for e in journal.entries("c3")] == ["INVITE"]
    journal.add("c4", "note")  # a fourth call: the oldest goes
    assert journal.get("c1") is None and journal.get("c4") is not None
    journal.note("c4", "prompt", {"uri": "https://x/a.wav", "seq": -1})  # a later feature's line
    [_, prompt] = journal.entries("c4")
    assert (prompt["kind"], prompt["uri"]) == ("prompt", "https://x/a.wav") and prompt["seq"] > 0
    journal.sip("in", b"garbage", ("127.0.0.1", 1), "udp")  # no Call-ID: nowhere to put it
    await journal.close()


async def test_a_roster_change_is_journaled_as_who_is_on_the_call() -> None:
    journal = Journal()
    call = {
        "id": "c1",
        "appId": "bot-app",
        "tenantId": TENANT,
        "state": "established",
        "direction": "outgoing",
        "properties": {"targets": [{"identity": {"phone": {"id": "+15550100"}}}]},
        "control": {"muted": True, "rosterSeq": 2},
    }
    journal.committed([Event(EventKind.ROSTER, "c1", call)], ["bot-app"])
    [entry] = journal.entries("c1")
    assert entry["kind"] == "roster"
    assert entry["participants"] == [
        {"who": "bot-app", "muted": True, "direction": "sendReceive"},
        {"who": "+15550100", "muted": False, "direction": "sendReceive"},
    ]
    assert journal.get("c1").state is None  # type: ignore[union-attr]  # not a state change
    await journal.close()


def test_audio_ring_keeps_the_last_seconds() -> None:
    ring = AudioRing(max_seconds=0.1)
    t = 1000.0
    for i in range(10):
        ring.push(np.full(160, i, np.int16), t + i * 0.02)
    assert ring.seconds == pytest.approx(0.1)
    t0, samples = ring.samples()
    assert t0 == pytest.approx(t + 0.1) and len(samples) == 800 and samples[-1] == 9


# --- the console over HTTP --------------------------------------------------------------------
@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    s = make_settings(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'c.sqlite3'}", 8000, media="loopback"
    )
    app = create_app(s, LoopbackMedia(speed=0.05))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
            yield c, app


def _login(app: Any, who: Principal = WHO) -> tuple[dict[str, str], str]:
    session = app.state.console.auth.start(who)
    return {"Cookie": f"dtmfgraph_console={session.id}"}, session.csrf


async def test_console_http_rules(client: tuple[httpx.AsyncClient, Any]) -> None:
    c, app = client
    r = await c.get("/console", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    assert (await c.get("/console/api/calls")).status_code == 401
    link = app.state.console.auth.login_link(WHO)
    r = await c.get(f"/console/login?token={link}", follow_redirects=False)
    cookie = r.headers["set-cookie"].lower()
    assert r.status_code == 303 and "httponly" in cookie and "samesite=strict" in cookie
    c.cookies.clear()
    cookies, csrf = _login(app)
    token = mint_token(app.state.settings, tenant_id=TENANT, app_id=APP)
    made = await c.post(
        "/v1.0/communications/calls",
        headers={"Authorization": f"Bearer {token}"},
        json={"callbackUri": "http://127.0.0.1:9/cb", "requestedModalities": ["audio"],
              "targets": [{"identity": {"user": {"id": "sip:a@127.0.0.1"}}}]},
    )  # fmt: skip
    call_id = made.json()["id"]
    page = await c.get(f"/console/calls/{call_id}", headers=cookies)
    assert page.status_code == 200 and call_id in page.text
    # POSTs need the CSRF token
    no = await c.post(f"/console/api/calls/{call_id}/far/hold", headers=cookies)
    assert no.status_code == 403
    headers = {**cookies, "X-CSRF-Token": csrf}
    for _ in range(100):  # the loopback far end answers at once; wait for it
        if app.state.service.media_of(call_id) is not None:
            break
        await asyncio.sleep(0.02)
    press = f"/console/api/calls/{call_id}/far/press"
    bad = await c.post(press, headers=headers, json={"keys": "x" * 40})
    assert bad.status_code == 400 and "keys" in bad.json()["error"]
    big = await c.post("/console/api/calls", headers=headers,
                       content=b"{" + b" " * 70000 + b"}")  # fmt: skip
    assert big.status_code == 413
    bad_body = await c.post("/console/api/calls", headers=headers, json={})
    assert bad_body.status_code == 400 and "callbackUri" in bad_body.json()["error"]
    # another app sees none of it
    other, other_csrf = _login(app, Principal(TENANT, "other", WHO.roles))
    assert (await c.get(f"/console/calls/{call_id}", headers=other)).status_code == 404
    assert (await c.get(f"/console/api/calls/{call_id}", headers=other)).status_code == 404
    assert (await c.get(f"/console/api/stream?call={call_id}", headers=other)).status_code == 404
    r = await c.post(f"/console/api/calls/{call_id}/hangup",
                     headers={**other, "X-CSRF-Token": other_csrf})  # fmt: skip
    assert r.status_code == 404
    assert (await c.get("/console/api/calls", headers=other)).json() == {"value": []}
    # the inbox: bad names and oversized bodies
    assert (await c.post("/inbox/no%20spaces", content=b"{}")).status_code == 404
    assert (await c.post("/inbox/x", content=b"0" * (MAX_BODY + 1))).status_code == 413
    assert (await c.post("/inbox/x", content=b"{}")).status_code == 401


async def test_console_off_and_open(tmp_path: Path) -> None:
    off = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'o.sqlite3'}", 8000,
                        media="loopback", console_enabled=False)  # fmt: skip
    app = create_app(off, LoopbackMedia())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c:
        assert (await c.get("/console")).status_code == 404
        assert (await c.post("/inbox/a", content=b"{}")).status_code == 404
    # API auth off (loopback only): the console opens without a login, CSRF still required
    open_ = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'p.sqlite3'}", 8000,
                          media="loopback", auth_enabled=False)  # fmt: skip
    app = create_app(open_, LoopbackMedia())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
            r = await c.get("/console")
            assert r.status_code == 200 and "dtmfgraph_console" in r.headers["set-cookie"]
            assert (await c.post("/console/api/incoming", json={})).status_code == 403
            started = time.monotonic()
            assert (await c.get("/console/api/calls")).status_code == 200
            assert time.monotonic() - started < 30


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'j.sqlite3'}"
        return
    async with pg_database() as url:
        yield url


async def test_ended_calls_journals_are_saved_and_read_back(store_url: str) -> None:
    """An ended call's journal is written to the database (migration 0009) after its end, read
    back once it left memory, and only the latest ``keep`` stay."""
    repo = SqlRepository(store_url)
    try:
        await upgrade(repo.engine)
        journal = Journal(max_calls=2, store=JournalStore(repo.engine, keep=2), save_after_s=0.0)
        for n, call_id in enumerate(("a", "b", "c")):
            end = Event(
                EventKind.CALL_DELETED, call_id, {"state": "terminated", "tenantId": TENANT}
            )
            journal.add(call_id, "note", n=n, text="x" * 100)
            journal.committed([end], [APP])
            await asyncio.sleep(0.05)  # the save runs soon after the end
        assert journal.get("a") is None  # left memory (max_calls=2)
        entries, dropped = await journal.saved_or_live("b")
        assert [e["kind"] for e in entries] == ["note", "state"] and dropped == 0
        assert entries[0]["text"] == "x" * 100
        assert await journal.saved_or_live("a") == ([], 0)  # past keep=2: gone from the database
        await journal.close()
    finally:
        await repo.close()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
BODY = st.one_of(
    JSON.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"tones": st.lists(st.sampled_from(["tone1", "pound", "x", 3]), max_size=4)},
        optional={"dtmfMethod": st.sampled_from(["auto", "inband", "nope"]),
                  "delayBetweenTonesMs": st.integers(-5, 20_000)},
    ).map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
)  # fmt: skip


PATHS = (
    "/console/api/calls",
    "/console/api/calls/{call}/sendDtmfTones",
    "/console/api/calls/{call}/playPrompt",
    "/console/api/calls/{call}/recordResponse",
    "/console/api/calls/{call}/far/press",
    "/console/api/calls/{call}/far/nope",
    "/console/api/calls/no-such-call/sendDtmfTones",
    "/console/api/incoming",
)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(path=st.sampled_from(PATHS), body=BODY)
async def test_console_posts_fuzzed(
    client: tuple[httpx.AsyncClient, Any], path: str, body: bytes
) -> None:
    """Whatever a page (or anyone with its cookie and token) POSTs, the answer is a clear 4xx or
    a success, never a server error."""
    c, app = client
    if not hasattr(app.state, "fuzz"):  # one login and one call for every example
        cookies, csrf = _login(app)
        token = mint_token(app.state.settings, tenant_id=TENANT, app_id=APP)
        made = await c.post(
            "/v1.0/communications/calls",
            headers={"Authorization": f"Bearer {token}"},
            json={"callbackUri": "http://127.0.0.1:9/cb", "requestedModalities": ["audio"],
                  "targets": [{"identity": {"user": {"id": "sip:a@127.0.0.1"}}}]},
        )  # fmt: skip
        headers = {**cookies, "X-CSRF-Token": csrf, "Content-Type": "application/json"}
        app.state.fuzz = (headers, made.json()["id"])
    headers, call_id = app.state.fuzz
    r = await c.post(path.format(call=call_id), headers=headers, content=body)
    assert r.status_code < 500, (path, body, r.status_code, r.text)
    if r.status_code >= 400:
        assert r.json()["error"], r.text
