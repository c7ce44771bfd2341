"""SIP INFO DTMF bodies."""

from __future__ import annotations

import pytest

from dtmfgraph.sip import dtmf_relay
from dtmfgraph.sip.dtmf_relay import DtmfBodyError, DtmfSignal, decode, encode_dtmf_relay


def test_encode() -> None:
    assert encode_dtmf_relay("5", 160) == b"Signal=5\r\nDuration=160\r\n"
    assert encode_dtmf_relay("#", 100) == b"Signal=#\r\nDuration=100\r\n"
    assert encode_dtmf_relay("flash", 250) == b"Signal=16\r\nDuration=250\r\n"
    assert encode_dtmf_relay(10, 100) == b"Signal=*\r\nDuration=100\r\n"
    with pytest.raises(ValueError):
        encode_dtmf_relay("5", 0)
    with pytest.raises(DtmfBodyError):
        encode_dtmf_relay("X", 100)


@pytest.mark.parametrize(
    ("content_type", "body", "signal"),
    [
        (dtmf_relay.DTMF_RELAY, b"Signal=5\r\nDuration=160\r\n", DtmfSignal("5", 160)),
        (dtmf_relay.DTMF_RELAY, b"signal= *\nduration=250", DtmfSignal("*", 250)),
        (dtmf_relay.DTMF_RELAY, b"Signal=11\r\nDuration=100\r\n", DtmfSignal("#", 100)),
        (dtmf_relay.DTMF_RELAY, b"Signal=16\r\nDuration=100\r\n", DtmfSignal("F", 100)),
        (dtmf_relay.DTMF_RELAY, b"Signal=d\r\n", DtmfSignal("D", None)),
        (dtmf_relay.DTMF, b"7", DtmfSignal("7", None)),
        (dtmf_relay.DTMF, b"#\r\n", DtmfSignal("#", None)),
    ],
)
def test_decode(content_type: str, body: bytes, signal: DtmfSignal) -> None:
    assert decode(content_type, body) == signal


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        (dtmf_relay.DTMF_RELAY, b"Signal=Z\r\nDuration=160\r\n", 400),
        (dtmf_relay.DTMF_RELAY, b"Duration=160\r\n", 400),
        (dtmf_relay.DTMF_RELAY, b"Signal=5\r\nDuration=abc\r\n", 400),
        (dtmf_relay.DTMF_RELAY, b"Signal=17\r\n", 400),
        (dtmf_relay.DTMF_RELAY, b"Signal=\xff", 400),
        ("text/plain", b"Signal=5", 415),
    ],
)
def test_decode_errors(content_type: str, body: bytes, status: int) -> None:
    with pytest.raises(DtmfBodyError) as info:
        decode(content_type, body)
    assert info.value.status == status
