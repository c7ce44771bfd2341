"""Digest authentication: RFC 2617 and RFC 7616 worked examples, challenge parsing."""

from __future__ import annotations

import pytest

from dtmfgraph.sip.digest import (
    Challenge,
    Credentials,
    authorization,
    choose_challenge,
    digest_response,
    parse_auth_params,
    parse_challenge,
)
from dtmfgraph.sip.digest_server import DigestGuard
from dtmfgraph.sip.errors import DigestError
from dtmfgraph.sip.message import SipRequest, parse_message


def test_rfc2617_worked_example() -> None:
    # RFC 2617 section 3.5
    challenge = parse_challenge(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    creds = Credentials("Mufasa", "Circle Of Life")
    response = digest_response(
        challenge, creds, "GET", "/dir/index.html", cnonce="0a4f113b", nonce_count=1
    )
    assert response == "6629fae49393a05397450978507c4ef1"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_worked_examples(algorithm: str, expected: str) -> None:
    # RFC 7616 section 3.9.1
    challenge = parse_challenge(
        f'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, '
        'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    assert challenge.qop == ("auth", "auth-int")
    creds = Credentials("Mufasa", "Circle of Life")
    cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
    response = digest_response(challenge, creds, "GET", "/dir/index.html", cnonce=cnonce)
    assert response == expected
    header = authorization(challenge, creds, "GET", "/dir/index.html", cnonce=cnonce)
    params = parse_auth_params(header.removeprefix("Digest "))
    assert params["response"] == expected
    assert params["nc"] == "00000001" and params["qop"] == "auth"
    assert params["opaque"] == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
    assert params["algorithm"] == algorithm


def test_legacy_no_qop_response() -> None:
    # RFC 2069 style: response = MD5(HA1:nonce:HA2)
    import hashlib

    challenge = Challenge("asterisk", "abc123")
    creds = Credentials("alice", "secret")
    ha1 = hashlib.md5(b"alice:asterisk:secret").hexdigest()
    ha2 = hashlib.md5(b"INVITE:sip:bob@192.0.2.1").hexdigest()
    expected = hashlib.md5(f"{ha1}:abc123:{ha2}".encode()).hexdigest()
    assert digest_response(challenge, creds, "INVITE", "sip:bob@192.0.2.1") == expected
    header = authorization(challenge, creds, "INVITE", "sip:bob@192.0.2.1")
    assert "qop=" not in header and "nc=" not in header and "cnonce=" not in header


def test_choose_prefers_sha256() -> None:
    md5 = Challenge("r", "n1", "MD5", ("auth",))
    sha = Challenge("r", "n2", "SHA-256", ("auth",))
    odd = Challenge("r", "n3", "SHA-512-256", ("auth",))
    assert choose_challenge([md5, odd, sha]) is sha
    with pytest.raises(DigestError):
        choose_challenge([odd])


def test_stale_and_bad_challenges() -> None:
    assert parse_challenge('Digest realm="r", nonce="n", stale=TRUE').stale
    with pytest.raises(DigestError):
        parse_challenge('Basic realm="r"')
    with pytest.raises(DigestError):
        parse_challenge('Digest realm="r"')
    with pytest.raises(DigestError):
        parse_challenge('Digest realm="r, nonce="n"')


def _invite(authorization: str | None = None) -> SipRequest:
    text = (
        "INVITE sip:bot@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKa\r\n"
        "From: <sip:alice@127.0.0.1>;tag=1\r\nTo: <sip:bot@127.0.0.1>\r\nCall-ID: x\r\n"
        "CSeq: 1 INVITE\r\n"
        + (f"Authorization: {authorization}\r\n" if authorization else "")
        + "Content-Length: 0\r\n\r\n"
    )
    request = parse_message(text.encode())
    assert isinstance(request, SipRequest)
    return request


def test_inbound_digest_guard_challenges_and_checks_answers() -> None:
    """Our challenge, answered by our own client code (and baresip in tests/e2e): right -> ok;
    wrong password -> wrong; a nonce older than its life -> stale; a nonce we did not make, or
    another realm -> a new challenge."""
    guard = DigestGuard(Credentials("alice", "s3cret"), "dtmfgraph", nonce_life=300)
    assert guard.check(_invite(), 10.0) == "missing"
    challenge = parse_challenge(guard.challenge(10.0))
    assert (challenge.realm, challenge.algorithm, challenge.qop) == ("dtmfgraph", "MD5", ("auth",))
    uri = "sip:bot@127.0.0.1"

    def answer(password: str, user: str = "alice", ch: Challenge = challenge) -> SipRequest:
        return _invite(authorization(ch, Credentials(user, password), "INVITE", uri, cnonce="c"))

    assert guard.check(answer("s3cret"), 20.0) == "ok"
    assert guard.check(answer("guess"), 20.0) == "wrong"
    assert guard.check(answer("s3cret", user="mallory"), 20.0) == "wrong"
    assert guard.check(answer("s3cret"), 400.0) == "stale"
    assert "stale=true" in guard.challenge(400.0, stale=True)
    forged = Challenge("dtmfgraph", "5f5e100.00.deadbeef", "MD5", ("auth",))
    assert guard.check(answer("s3cret", ch=forged), 20.0) == "missing"
    other = Challenge("elsewhere", challenge.nonce, "MD5", ("auth",))
    assert guard.check(answer("s3cret", ch=other), 20.0) == "missing"
    with pytest.raises(ValueError, match="needs a user name and a password"):
        DigestGuard(Credentials("alice", ""), "dtmfgraph")


def test_inbound_digest_guard_refuses_replays() -> None:
    """A copy of a request that was let in (same nonce, same nonce count) is a replay, even
    while the nonce is young; a higher count on the same nonce (a client reusing it for its
    next request) is fine; without qop a nonce is good once."""
    guard = DigestGuard(Credentials("alice", "s3cret"), "dtmfgraph")
    challenge = parse_challenge(guard.challenge(10.0))
    alice = Credentials("alice", "s3cret")
    uri = "sip:bot@127.0.0.1"

    def answer(nc: int, ch: Challenge = challenge) -> SipRequest:
        return _invite(authorization(ch, alice, "INVITE", uri, cnonce="c", nonce_count=nc))

    assert guard.check(answer(1), 20.0) == "ok"
    assert guard.check(answer(1), 21.0) == "replay"
    assert guard.check(answer(2), 22.0) == "ok"
    assert guard.check(answer(2), 23.0) == "replay"
    assert guard.check(answer(1), 24.0) == "replay"
    assert guard.replays == 3
    plain = Challenge("dtmfgraph", parse_challenge(guard.challenge(30.0)).nonce, "MD5", ())
    assert guard.check(answer(1, plain), 31.0) == "ok"
    assert guard.check(answer(1, plain), 32.0) == "replay"
    # many callers: nonces whose life is over are forgotten, young ones kept
    for i in range(300):  # one every 2 s: 600 s, two nonce lives
        ch = parse_challenge(guard.challenge(100.0 + 2 * i))
        assert guard.check(answer(1, ch), 100.0 + 2 * i) == "ok"
    assert guard.check(answer(1, ch), 700.0) == "replay"
    assert len(guard._counts) <= 256


def test_inbound_digest_guard_with_sha256() -> None:
    """RFC 8760 on request: one 401 names SHA-256 then MD5 on one nonce; an answer in either
    gets in (counted by algorithm). By default only MD5 is named and taken."""
    guard = DigestGuard(Credentials("alice", "s3cret"), "dtmfgraph", algorithms=("MD5", "SHA-256"))
    sha, md5 = (parse_challenge(v) for v in guard.challenges(10.0))
    assert (sha.algorithm, md5.algorithm) == ("SHA-256", "MD5") and sha.nonce == md5.nonce
    alice = Credentials("alice", "s3cret")
    uri = "sip:bot@127.0.0.1"
    for ch, nc in ((sha, 1), (md5, 2)):
        request = _invite(authorization(ch, alice, "INVITE", uri, cnonce="c", nonce_count=nc))
        assert guard.check(request, 20.0) == "ok"
    assert guard.answered == {"SHA-256": 1, "MD5": 1}
    plain = DigestGuard(Credentials("alice", "s3cret"), "dtmfgraph")
    assert [parse_challenge(v).algorithm for v in plain.challenges(10.0)] == ["MD5"]
    sha = Challenge("dtmfgraph", parse_challenge(plain.challenge(10.0)).nonce, "SHA-256", ("auth",))
    request = _invite(authorization(sha, alice, "INVITE", uri, cnonce="c"))
    assert plain.check(request, 20.0) == "wrong"
    with pytest.raises(ValueError, match="must be among SHA-256, MD5"):
        DigestGuard(alice, "dtmfgraph", algorithms=("SHA-512",))
