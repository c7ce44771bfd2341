"""Who may call us (``Phone.allow_sources``, ``--sip-allow-from``), against baresip and sipp:
strangers get 403 before anything else happens; our own calls, and what comes within them, are
not checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from dtmfgraph.media.phone import EndReason, Phone

from ..judges.baresip import Baresip
from .answering import answer_every_call, baresip_calls_and_presses


async def test_a_caller_outside_the_allowed_networks_gets_403(tmp_path: Path, phone: Phone) -> None:
    calls, heard = answer_every_call(phone)
    phone.allow_sources = ["192.0.2.0/24", "2001:db8::/32"]
    assert phone.allow_sources == ("192.0.2.0/24", "2001:db8::/32")
    async with Baresip(tmp_path / "refused", answer=False) as bs:
        await bs.dial(phone.uri)
        closed = await bs.wait_event("CALL_CLOSED", 5)
    assert "403" in closed.param, closed
    assert not calls and phone.ua.counters.forbidden == 1
    phone.allow_sources = ["127.0.0.0/8"]
    async with Baresip(tmp_path / "let-in", answer=False) as bs:
        await baresip_calls_and_presses(bs, phone.uri, "9", calls, heard)
    assert [k.key for k in heard] == ["9"] and phone.ua.counters.forbidden == 1
    with pytest.raises(ValueError, match="not a network"):
        phone.allow_sources = ["10.0.0.0/8", "pbx.example.com"]
    assert phone.allow_sources == ("127.0.0.0/8",)  # unchanged


async def test_our_own_calls_and_their_requests_are_not_checked(
    tmp_path: Path, phone: Phone
) -> None:
    """We call baresip although its address is not allowed; its BYE (within our dialog) ends
    the call as usual."""
    phone.allow_sources = ["192.0.2.0/24"]
    async with Baresip(tmp_path / "bs") as bs:
        call = await phone.dial(bs.uri, timeout=5)
        await call.send_dtmf("5", method="rfc4733")
        await bs.wait_for(lambda b: b.rfc4733_keys() == "5", 5, "the key")
        await bs.hangup()
        end = await call.wait_ended(5)
    assert end.reason is EndReason.REMOTE_BYE and phone.ua.counters.forbidden == 0


async def test_calls_to_us_must_answer_our_digest_challenge(tmp_path: Path, phone: Phone) -> None:
    """``phone.require_auth``: baresip with the right password answers our 401 and its call
    goes through (keys heard); with a wrong one, or none (it answers with an empty password),
    it gets 403."""
    calls, heard = answer_every_call(phone)
    phone.require_auth("alice", "s3cret")
    async with Baresip(tmp_path / "right", answer=False, password="s3cret") as bs:
        await baresip_calls_and_presses(bs, phone.uri, "42", calls, heard)
    assert [k.key for k in heard] == ["4", "2"]
    assert phone.ua.counters.auth_refused == 1  # the first INVITE, challenged
    async with Baresip(tmp_path / "wrong", answer=False, password="guess") as bs:
        await bs.dial(phone.uri)
        closed = await bs.wait_event("CALL_CLOSED", 5)
    assert "403" in closed.param, closed
    async with Baresip(tmp_path / "none", answer=False) as bs:
        await bs.dial(phone.uri)
        closed = await bs.wait_event("CALL_CLOSED", 5)
    assert "403" in closed.param, closed
    assert len(calls) == 1  # only the right password's call was answered
    phone.require_auth(None)
    async with Baresip(tmp_path / "open", answer=False) as bs:
        await baresip_calls_and_presses(bs, phone.uri, "7", calls, heard)
