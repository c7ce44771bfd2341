"""Transfer and redirect with Kamailio in the path: a registrar and record-routing proxy that
challenges every new INVITE, as a PBX or trunk in front of the service would be. The official
SDK is the bot, baresip (registered at Kamailio) the far ends."""

from __future__ import annotations

from pathlib import Path

from ..api.harness import Receiver, stop
from ..judges.baresip import Baresip, require_baresip
from ..judges.kamailio import Kamailio
from .test_graph_control import _redirect_body, _states, _transfer_body
from .test_graph_sip import place_call, start_sip_service

USERS = {"bot": "bot-secret", "alice": "alice-secret", "bob": "bob-secret"}


def _requests(kam: Kamailio, method: str) -> list[str]:
    return [r for r in kam.requests() if r.startswith(method + " ")]


async def test_blind_transfer_through_kamailio(tmp_path: Path, receiver: Receiver) -> None:
    """The bot calls alice through Kamailio (answering its 407), then transfers her to bob:
    the REFER and alice's NOTIFYs follow the record-routed dialog through Kamailio, alice's
    INVITE to bob goes through it too, bob answers alice, and the bot's call ends
    transferring, transferAccepted, terminated 0/7015."""
    require_baresip()
    async with Kamailio(tmp_path / "kam", USERS) as kam:
        service, server, task = await start_sip_service(
            tmp_path / "svc", receiver, sip_auth_user="bot", sip_auth_password="bot-secret"
        )
        try:
            async with (
                Baresip(tmp_path / "alice", registrar=kam.domain, password="alice-secret") as alice,
                Baresip(
                    tmp_path / "bob", user="bob", registrar=kam.domain, password="bob-secret"
                ) as bob,
            ):
                await kam.wait_bound("alice")
                await kam.wait_bound("bob")
                client, call = await place_call(service, receiver, "v1.0", kam.uri("alice"))
                await alice.wait_event("CALL_ESTABLISHED", 5)
                calls = client.communications.calls.by_call_id(call.id)
                await calls.transfer.post(_transfer_body("v1.0", kam.uri("bob")))
                await receiver.wait_for(
                    lambda n: (
                        n["resourceUrl"] == f"/communications/calls/{call.id}"
                        and n["changeType"] == "deleted"
                    ),
                    timeout=15,
                )
                await bob.wait_event("CALL_ESTABLISHED", 5)
                [invited] = bob.of_type("CALL_ESTABLISHED")
                assert invited.data["direction"] == "incoming"
        except BaseException:
            print(kam.explain())
            raise
        finally:
            await stop(server, task)
        assert _requests(kam, "REFER"), kam.requests()  # in-dialog, along the route set
        assert _requests(kam, "NOTIFY"), kam.requests()
        assert any("sip:bob@" in r for r in _requests(kam, "INVITE")), kam.requests()
    states = _states(receiver, call.id)
    assert [s[1] for s in states] == [
        "establishing",
        "established",
        "transferring",
        "transferAccepted",
        "terminated",
    ]
    result = states[-1][2]
    assert (result["code"], result["subcode"]) == (0, 7015)


async def test_redirect_through_kamailio(tmp_path: Path, receiver: Receiver) -> None:
    """The service registers at Kamailio; alice calls the bot's AOR through it; the bot
    redirects the ringing call to bob: our 302 goes back through Kamailio to alice, who
    follows it (a new INVITE to bob through Kamailio), and bob answers alice. The call ends
    terminated 200/7000."""
    require_baresip()
    async with Kamailio(tmp_path / "kam", USERS) as kam:
        service, server, task = await start_sip_service(
            tmp_path / "svc",
            receiver,
            sip_auth_user="bot",
            sip_auth_password="bot-secret",
            sip_register=kam.uri("bot"),
        )
        try:
            async with (
                Baresip(
                    tmp_path / "alice",
                    registrar=kam.domain,
                    password="alice-secret",
                    answer=False,
                ) as alice,
                Baresip(
                    tmp_path / "bob", user="bob", registrar=kam.domain, password="bob-secret"
                ) as bob,
            ):
                for user in ("bot", "alice", "bob"):
                    await kam.wait_bound(user)
                await alice.dial(kam.uri("bot"))
                [created] = await receiver.wait_for(lambda n: n["changeType"] == "created")
                cid = created["resourceData"]["id"]
                calls = service.incoming_sdk("v1.0").communications.calls.by_call_id(cid)
                await calls.redirect.post(_redirect_body("v1.0", kam.uri("bob")))
                [end] = await receiver.wait_for(
                    lambda n: (
                        n["resourceUrl"] == f"/communications/calls/{cid}"
                        and n["changeType"] == "deleted"
                    )
                )
                await bob.wait_event("CALL_ESTABLISHED", 10)
                [invited] = bob.of_type("CALL_ESTABLISHED")
                assert invited.data["direction"] == "incoming"
        except BaseException:
            print(kam.explain())
            raise
        finally:
            await stop(server, task)
        invites = _requests(kam, "INVITE")
        assert any("sip:bot@" in r for r in invites), invites
        assert any("sip:bob@" in r for r in invites), invites
    info = end["resourceData"]["resultInfo"]
    assert (info["code"], info["subcode"]) == (200, 7000)
    assert [s[1] for s in _states(receiver, cid)] == ["incoming", "terminated"]
