"""The user agent against hostile INVITEs: every one gets a final answer, none a traceback."""

from __future__ import annotations

import pytest

from dtmfgraph.sip import UserAgent

from .hostile import exchange, incoming, invite, sdp


def _ua() -> UserAgent:
    return UserAgent("127.0.0.1", 5060, "bot")


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1\x00", "1.2.3.4\x00evil", "pbx.example.com", "localhost", "fe80::1%eth0", "-"],
)
def test_an_sdp_address_that_is_not_an_ip_literal_gets_488(address: str) -> None:
    """A NUL byte (a TypeError at sendto once) or a host name (resolved on the event loop for
    every packet once) in ``c=``: 488 with a Warning saying why, and no call is raised."""
    ua = _ua()
    [*provisional, final] = exchange(ua, invite(sdp(address)))
    assert not provisional
    assert final.status == 488, final
    warning = final.headers.get("Warning")
    assert warning is not None and warning.startswith("301 ") and "not an IP" in warning
    assert incoming(ua) == []
    assert ua.counters.sdp_refused == 1


def test_an_ip_literal_is_taken() -> None:
    ua = _ua()
    responses = exchange(ua, invite(sdp("::1").replace("IP4 ::1", "IP6 ::1")))
    assert [r.status for r in responses] == [100]
    assert len(incoming(ua)) == 1
