"""The API under media overload: which requests get 503 + Retry-After, and which are served.

The loopback backend has no media clock of its own; the test gives it one (a ``MediaLoad`` it
sets the level of, as the SIP phone's pacer would). Past ``overload_new_calls_ms`` create-call
and ``answer`` are 503; past ``overload_media_ops_ms`` a new sendDtmfTones too; reads and
hang-ups are always served; back under, everything is taken again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from dtmfgraph.media_load import MediaLoad
from dtmfgraph.service import LoopbackMedia

from .harness import Receiver, free_port, make_settings, running_service
from .sdkhelp import new_call

V = "/v1.0/communications/calls"


def _loaded(level: float) -> MediaLoad:
    """A media clock that has run ``level`` seconds late for the last 10 s, as of now."""
    load = MediaLoad()
    now = asyncio.get_running_loop().time()
    for k in range(10_000):
        load.observe(level, now - 10 + k * 0.001)
    load.observe(level, now)
    return load


def _counted(metrics: str, line: str) -> float:
    [value] = [x.rsplit(" ", 1)[1] for x in metrics.splitlines() if x.startswith(line + " ")]
    return float(value)


async def test_overload_refuses_new_calls_then_operations_and_serves_the_rest(
    tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path / 'graph.sqlite3'}",
        free_port(),
        incoming_callback_uri=receiver.url,
        overload_new_calls_ms=5,
        overload_media_ops_ms=20,
    )
    media = LoopbackMedia(speed=0.05)
    async with running_service(settings, media) as svc:
        body = new_call("v1.0", receiver.url)
        sdk_body = svc.sdk("v1.0").communications.calls
        call = await sdk_body.post(body)
        await receiver.wait_for(
            lambda n: (
                n["resourceData"].get("id") == call.id
                and n["resourceData"].get("state") == "established"
            )
        )
        await media.incoming("sip:carol@127.0.0.1", "sip:bot@127.0.0.1")
        [created] = await receiver.wait_for(lambda n: n["changeType"] == "created")
        incoming = created["resourceData"]["id"]
        send = {"tones": ["tone1", "tone2"]}
        answer = {
            "callbackUri": receiver.url,
            "acceptedModalities": ["audio"],
            "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
        }
        async with (
            httpx.AsyncClient(
                base_url=svc.base, headers={"Authorization": f"Bearer {svc.token()}"}
            ) as http,
            httpx.AsyncClient(
                base_url=svc.base, headers={"Authorization": f"Bearer {svc.incoming_token()}"}
            ) as answering,
        ):
            media.load = _loaded(0.010)  # type: ignore[attr-defined]  # past new calls only
            r = await answering.post(f"{V}/{incoming}/answer", json=answer)
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "serviceNotAvailable"
            assert r.headers["Retry-After"] == "5"
            r = await http.post(f"{V}/{call.id}/sendDtmfTones", json=send)
            assert r.status_code == 200, r.text  # a call up is served below the second level

            media.load = _loaded(0.030)  # type: ignore[attr-defined]  # past both
            r = await http.post(f"{V}/{call.id}/sendDtmfTones", json=send)
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "serviceNotAvailable"
            assert r.headers["Retry-After"] == "5"
            assert (await http.get(f"{V}/{call.id}")).status_code == 200
            assert (await http.get(f"{V}/{call.id}/operations")).status_code == 200
            metrics = (await http.get("/metrics")).text
            assert _counted(metrics, "dtmfgraph_media_lateness_seconds") > 0.02
            assert _counted(metrics, 'dtmfgraph_resources_exhausted_total{resource="media_load"}')

            media.load = _loaded(0.0)  # type: ignore[attr-defined]  # back to normal
            r = await answering.post(f"{V}/{incoming}/answer", json=answer)
            assert r.status_code == 202, r.text
            r = await http.post(f"{V}/{call.id}/sendDtmfTones", json=send)
            assert r.status_code == 200, r.text
            assert (await http.delete(f"{V}/{call.id}")).status_code == 204
            metrics = (await http.get("/metrics")).text
            assert (
                _counted(metrics, 'dtmfgraph_resources_exhausted_total{resource="media_load"}') == 2
            )
