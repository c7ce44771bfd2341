"""REGISTER (RFC 3261 10): the requests on the wire, digest, refresh, retry, 423, unregister.

The registrar here is a function the test writes: it gets each REGISTER the agent sent and
returns the response (or ``None``: lost). Kamailio, a real registrar, is in tests/e2e.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

import pytest

from dtmfgraph.sip import (
    Credentials,
    Registered,
    RegistrationFailed,
    RegistrationState,
    SipError,
    SipRequest,
    SipResponse,
    Unregistered,
    UserAgent,
    parse_message,
)
from dtmfgraph.sip.message import response_to
from dtmfgraph.sip.registration import REFRESH_MARGIN_S

US = ("127.0.0.1", 5060)
REGISTRAR = ("127.0.0.1", 5080)
AOR = "sip:bot@127.0.0.1:5080"
Registrar = Callable[[SipRequest], SipResponse | None]


class Clock:
    """Drives one agent against a scripted registrar; keeps what was sent and reported."""

    def __init__(self, registrar: Registrar) -> None:
        self.now = 1000.0
        self.ua = UserAgent(*US, "dtmfgraph", rng=random.Random(7))
        self.registrar = registrar
        self.sent: list[SipRequest] = []
        self.sent_to: list[tuple[float, tuple[str, int]]] = []
        self.events: list[object] = []

    def flush(self) -> None:
        for _ in range(100):
            out = self.ua.datagrams_to_send(self.now)
            for data, dest in out:
                self.sent_to.append((self.now, dest))
                if dest != REGISTRAR:
                    continue  # a server that is down
                request = parse_message(data)
                assert isinstance(request, SipRequest)
                self.sent.append(request)
                response = self.registrar(request)
                if response is not None:
                    self.ua.receive_datagram(bytes(response), REGISTRAR, self.now)
            while (event := self.ua.next_event()) is not None:
                self.events.append(event)
            if not out:
                return
        raise AssertionError("REGISTER storm")

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        self.flush()
        while (when := self.ua.next_deadline()) is not None and when <= end:
            self.now = max(self.now, when)
            self.ua.handle_deadline(self.now)
            self.flush()
        self.now = end

    def registers(self) -> list[SipRequest]:
        return [r for r in self.sent if r.method == "REGISTER"]


def ok(
    request: SipRequest, expires: str | None = None, contact_expires: int | None = None
) -> SipResponse:
    response = response_to(request, 200, to_tag="reg")
    for contact in request.headers.get_list("Contact"):
        value = contact if contact_expires is None else f"{contact};expires={contact_expires}"
        response.headers.add("Contact", value)
    if expires is not None:
        response.headers.add("Expires", expires)
    return response


def digest_registrar(password: str = "pw", stale_first: bool = False) -> Registrar:
    """Challenges each REGISTER without a right Authorization (checked independently here)."""
    nonces = iter(f"nonce{i}" for i in range(100))
    state = {"nonce": next(nonces), "stale_sent": False}

    def registrar(request: SipRequest) -> SipResponse:
        header = request.headers.get("Authorization")
        if header is not None:
            fields = _params(header)
            if _expected(fields, request, password) == fields["response"]:
                if stale_first and not state["stale_sent"]:
                    state["stale_sent"] = True
                    state["nonce"] = next(nonces)
                    return _challenge(request, str(state["nonce"]), stale=True)
                return ok(request, expires=request.headers.get("Expires"))
        state["nonce"] = next(nonces)
        return _challenge(request, str(state["nonce"]))

    return registrar


def _challenge(request: SipRequest, nonce: str, stale: bool = False) -> SipResponse:
    response = response_to(request, 401, to_tag="reg")
    extra = ", stale=true" if stale else ""
    response.headers.add(
        "WWW-Authenticate",
        f'Digest realm="pbx", nonce="{nonce}", algorithm=MD5, qop="auth"{extra}',
    )
    return response


def _params(header: str) -> dict[str, str]:
    assert header.startswith("Digest ")
    out = {}
    for part in header[len("Digest ") :].split(","):
        key, _, value = part.strip().partition("=")
        out[key] = value.strip('"')
    return out


def _expected(fields: dict[str, str], request: SipRequest, password: str) -> str:
    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5(f"{fields['username']}:{fields['realm']}:{password}")
    ha2 = md5(f"REGISTER:{fields['uri']}")
    assert fields["uri"] == str(request.uri)
    return md5(f"{ha1}:{fields['nonce']}:{fields['nc']}:{fields['cnonce']}:auth:{ha2}")


def test_register_on_the_wire_and_refresh_before_expiry() -> None:
    clock = Clock(lambda r: ok(r, contact_expires=600))
    reg = clock.ua.register(AOR, clock.now, expires=3600)
    clock.flush()
    (first,) = clock.registers()
    assert str(first.uri) == "sip:127.0.0.1:5080"  # the AOR's domain and port
    assert str(first.from_.uri) == AOR and str(first.to.uri) == AOR
    assert first.from_.tag and first.to.tag is None
    assert first.headers.get("Expires") == "3600"
    assert first.headers.get("Contact") == "<sip:dtmfgraph@127.0.0.1:5060>"
    assert first.cseq.method == "REGISTER" and first.cseq.seq == 1
    assert first.top_via.branch and first.top_via.branch.startswith("z9hG4bK")
    assert first.headers.get("Max-Forwards") == "70"
    assert not first.body
    # the registrar granted 600 s on our Contact: that wins over what we asked
    (event,) = clock.events
    assert isinstance(event, Registered) and event.expires == 600
    assert event.contacts == ("<sip:dtmfgraph@127.0.0.1:5060>;expires=600",)
    assert reg.state is RegistrationState.REGISTERED and reg.expires == 600
    assert reg.deadline == pytest.approx(clock.now + 600 - REFRESH_MARGIN_S)
    clock.advance(600 - REFRESH_MARGIN_S - 1)
    assert len(clock.registers()) == 1
    clock.advance(2)
    second = clock.registers()[1]
    assert second.call_id == first.call_id and second.from_.tag == first.from_.tag
    assert second.cseq.seq == 2 and second.top_via.branch != first.top_via.branch
    assert second.headers.get("Expires") == "3600"
    assert len([e for e in clock.events if isinstance(e, Registered)]) == 2


def test_short_binding_refreshed_halfway_and_expires_header_used() -> None:
    clock = Clock(lambda r: ok(r, expires="20"))  # no expires on the Contact
    reg = clock.ua.register(AOR, clock.now, expires=20)
    clock.flush()
    assert reg.expires == 20
    clock.advance(9.9)
    assert len(clock.registers()) == 1
    clock.advance(0.2)
    assert len(clock.registers()) == 2


def test_digest_challenge_answered_and_checked_by_the_registrar() -> None:
    clock = Clock(digest_registrar())
    reg = clock.ua.register(AOR, clock.now, auth=Credentials("bot", "pw"), expires=300)
    clock.flush()
    first, second = clock.registers()
    assert "Authorization" not in first.headers
    fields = _params(second.headers.get("Authorization") or "")
    assert (fields["username"], fields["realm"], fields["nc"]) == ("bot", "pbx", "00000001")
    assert second.cseq.seq == first.cseq.seq + 1 and second.call_id == first.call_id
    assert reg.state is RegistrationState.REGISTERED
    assert [type(e) for e in clock.events] == [Registered]
    # each refresh is challenged afresh and answered again
    clock.advance(300)
    assert len(clock.registers()) == 4
    assert reg.state is RegistrationState.REGISTERED


def test_stale_nonce_is_answered_again() -> None:
    clock = Clock(digest_registrar(stale_first=True))
    reg = clock.ua.register(AOR, clock.now, auth=Credentials("bot", "pw"))
    clock.flush()
    assert len(clock.registers()) == 3
    assert reg.state is RegistrationState.REGISTERED


def test_wrong_password_fails_then_retries_later() -> None:
    clock = Clock(digest_registrar(password="right"))
    reg = clock.ua.register(AOR, clock.now, auth=Credentials("bot", "wrong"), retry_s=45)
    clock.flush()
    assert len(clock.registers()) == 2  # one answer to the challenge, not a loop
    (failed,) = clock.events
    assert isinstance(failed, RegistrationFailed) and failed.status == 401
    assert "credentials rejected by realm 'pbx'" in failed.detail
    assert failed.retry_at == pytest.approx(clock.now + 45)
    assert reg.state is RegistrationState.FAILED
    clock.advance(44)
    assert len(clock.registers()) == 2
    clock.advance(2)
    assert len(clock.registers()) == 4
    assert reg.state is RegistrationState.FAILED


def test_no_credentials_for_a_challenge() -> None:
    clock = Clock(digest_registrar())
    clock.ua.register(AOR, clock.now)
    clock.flush()
    (failed,) = clock.events
    assert isinstance(failed, RegistrationFailed)
    assert failed.detail == "authentication required and no credentials were given"


def test_423_interval_too_brief_retried_with_min_expires() -> None:
    def registrar(request: SipRequest) -> SipResponse:
        if int(request.headers.get("Expires") or 0) < 900:
            response = response_to(request, 423, to_tag="reg")
            response.headers.add("Min-Expires", "900")
            return response
        return ok(request, expires="900")

    clock = Clock(registrar)
    reg = clock.ua.register(AOR, clock.now, expires=60)
    clock.flush()
    assert [r.headers.get("Expires") for r in clock.registers()] == ["60", "900"]
    assert reg.expires == 900 and reg.expires_requested == 900


def test_retry_after_and_timeout() -> None:
    mode = {"now": "busy"}

    def registrar(request: SipRequest) -> SipResponse | None:
        if mode["now"] == "busy":
            mode["now"] = "lost"
            response = response_to(request, 503, to_tag="reg")
            response.headers.add("Retry-After", "120 (maintenance)")
            return response
        if mode["now"] == "lost":
            return None  # nothing comes back, retransmissions included
        return ok(request)

    clock = Clock(registrar)
    reg = clock.ua.register(AOR, clock.now, retry_s=10)
    clock.flush()
    failed = clock.events[-1]
    assert isinstance(failed, RegistrationFailed) and failed.status == 503
    assert failed.retry_at == pytest.approx(clock.now + 120)
    clock.advance(121)  # retried, and that REGISTER goes unanswered: Timer F (32 s)
    assert len(clock.registers()) > 2  # retransmitted meanwhile
    clock.advance(40)
    timed_out = clock.events[-1]
    assert isinstance(timed_out, RegistrationFailed)
    assert (timed_out.status, timed_out.timed_out) == (408, True)
    assert reg.state is RegistrationState.FAILED
    mode["now"] = "up"
    clock.advance(11)  # retry_s after the timeout
    assert reg.state is RegistrationState.REGISTERED


def test_unregister_sends_expires_zero_and_ends() -> None:
    clock = Clock(lambda r: ok(r, expires=r.headers.get("Expires")))
    reg = clock.ua.register(AOR, clock.now, expires=600)
    clock.flush()
    clock.ua.unregister(reg, clock.now)
    clock.flush()
    last = clock.registers()[-1]
    assert last.headers.get("Expires") == "0" and last.cseq.seq == 2
    assert isinstance(clock.events[-1], Unregistered) and clock.events[-1].status == 200
    assert reg.state is RegistrationState.UNREGISTERED and reg.deadline is None
    clock.ua.unregister(reg, clock.now)  # over: nothing more is sent
    clock.advance(3600)
    assert len(clock.registers()) == 2


def test_unregister_overtakes_a_register_in_flight() -> None:
    held: list[SipRequest] = []

    def registrar(request: SipRequest) -> SipResponse | None:
        if request.headers.get("Expires") != "0":
            held.append(request)
            return None
        return ok(request, expires="0")

    clock = Clock(registrar)
    reg = clock.ua.register(AOR, clock.now)
    clock.flush()
    clock.ua.unregister(reg, clock.now)
    clock.flush()
    assert reg.state is RegistrationState.UNREGISTERED
    # the late 200 to the first REGISTER changes nothing
    clock.ua.receive_datagram(bytes(ok(held[0], expires="3600")), REGISTRAR, clock.now)
    clock.flush()
    assert reg.state is RegistrationState.UNREGISTERED
    assert not any(isinstance(e, Registered) for e in clock.events)


def test_bad_arguments() -> None:
    ua = UserAgent(*US, "dtmfgraph")
    with pytest.raises(SipError, match="user part"):
        ua.register("sip:127.0.0.1", 0.0)
    with pytest.raises(SipError, match="no DNS"):
        ua.register("sip:bot@pbx.example.com", 0.0)
    with pytest.raises(ValueError, match="expires"):
        ua.register(AOR, 0.0, expires=0)
    reg = ua.register("sip:bot@pbx.example.com", 0.0, destination=REGISTRAR)
    assert reg.destination == REGISTRAR and str(reg.registrar) == "sip:pbx.example.com"


def test_moved_to_another_server_after_a_timeout_the_retry_goes_there_at_once() -> None:
    """RFC 3263 4.3 as the phone drives it: the first server never answers (Timer F), the
    registration is moved to the next one and retried at once, not after retry_s."""
    down = ("127.0.0.1", 5090)
    clock = Clock(ok)
    reg = clock.ua.register(AOR, clock.now, destination=down, retry_s=300)
    clock.advance(40)
    [timed_out] = clock.events
    assert isinstance(timed_out, RegistrationFailed) and timed_out.timed_out
    assert {dest for _, dest in clock.sent_to} == {down}
    assert clock.registers() == []
    moved_at = clock.now
    clock.ua.move_registration(reg, REGISTRAR, clock.now, at_once=True)
    clock.advance(0)
    assert reg.state is RegistrationState.REGISTERED and reg.destination == REGISTRAR
    [request] = clock.registers()
    assert clock.sent_to[-1] == (moved_at, REGISTRAR)
    # Call-ID and CSeq go on: it is the same registration
    assert request.headers.get("Call-ID") == reg.call_id and request.cseq.seq == 2


def test_moved_without_at_once_waits_for_the_retry() -> None:
    down = ("127.0.0.1", 5090)
    clock = Clock(ok)
    reg = clock.ua.register(AOR, clock.now, destination=down, retry_s=100)
    clock.advance(40)
    clock.ua.move_registration(reg, REGISTRAR, clock.now, at_once=False)
    clock.advance(50)
    assert clock.registers() == [] and reg.state is RegistrationState.FAILED
    clock.advance(45)  # retry_s (100) after the timeout at 32 s
    assert reg.state is RegistrationState.REGISTERED
