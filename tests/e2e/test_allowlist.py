"""Who may call us (``Phone.allow_sources``, ``--sip-allow-from``), against baresip and sipp:
strangers get 403 before anything else happens; our own calls, and what comes within them, are
not checked."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from dtmfgraph.media.phone import DialError, EndReason, Phone

from ..judges.baresip import Baresip
from ..media.helpers import capture, tshark
from .answering import answer_every_call, baresip_calls_and_presses
from .raw_sip import final_response


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


async def test_a_replayed_authenticated_invite_is_challenged(tmp_path: Path, phone: Phone) -> None:
    """An attacker on the path copies baresip's INVITE that answered our challenge (captured
    by tshark) and sends it again as a new call (its own Via, a new Call-ID): the digest still
    matches, but its nonce count was used, so it gets a fresh 401, not a call."""
    calls, heard = answer_every_call(phone)
    phone.require_auth("alice", "s3cret")
    pcap = tmp_path / "sip.pcap"
    with capture(phone.sip_address[1], pcap):
        async with Baresip(tmp_path / "right", answer=False, password="s3cret") as bs:
            await baresip_calls_and_presses(bs, phone.uri, "4", calls, heard)
    decode = ["-d", f"udp.port=={phone.sip_address[1]},sip"]
    select = ["-Y", "sip.Method == INVITE && sip.Authorization"]
    out = subprocess.run(
        [tshark(), "-r", str(pcap), *decode, *select, "-T", "fields", "-e", "udp.payload"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert out, "no authenticated INVITE captured"
    invite = bytes.fromhex(out[0].replace(":", "")).decode()
    assert "Authorization: Digest" in invite

    def copy(port: int) -> str:
        via = f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKreplay1;rport"
        text = re.sub(r"(?im)^Via:.*$", via, invite)
        return re.sub(r"(?im)^Call-ID:.*$", "Call-ID: replayed-call@attacker", text)

    response = await final_response(copy, phone.sip_address)
    assert response.startswith("SIP/2.0 401"), response
    assert "WWW-Authenticate: Digest" in response
    assert len(calls) == 1 and phone.ua.auth_guard is not None
    assert phone.ua.auth_guard.replays == 1


async def test_sha256_digest_between_two_phones(phone: Phone) -> None:
    """``require_auth(..., algorithms=("SHA-256", "MD5"))``: our own caller, which answers the
    strongest algorithm it knows, gets in with SHA-256 over real SIP; a wrong password still
    gets 403."""
    callee = await Phone.start("127.0.0.1", 0)
    calls, _ = answer_every_call(callee)
    callee.require_auth("alice", "s3cret", algorithms=("SHA-256", "MD5"))
    target = f"sip:bot@127.0.0.1:{callee.sip_address[1]}"
    try:
        call = await phone.dial(target, timeout=5, auth=("alice", "s3cret"))
        await call.hangup()
        guard = callee.ua.auth_guard
        assert guard is not None and guard.answered == {"SHA-256": 1}
        with pytest.raises(DialError) as info:
            await phone.dial(target, timeout=5, auth=("alice", "guess"))
        assert info.value.status == 403
        assert len(calls) == 1
    finally:
        await callee.close()
