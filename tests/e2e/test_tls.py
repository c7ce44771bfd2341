"""SIP over TLS against baresip (libre with OpenSSL): calls both ways, the certificate and name
checks, and tshark's view of the wire (TLS records, no SIP in clear)."""

from __future__ import annotations

import asyncio
import signal
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dtmfgraph.media import SipResolver, TlsConfig, TlsConfigError
from dtmfgraph.media.phone import DialError, Phone, SrtpPolicy
from dtmfgraph.rtp.srtp import SrtpSuite
from dtmfgraph.tones import detect

from ..api.harness import Receiver, free_port, stop
from ..judges.baresip import Baresip
from ..judges.certs import Issued, TestCa
from ..judges.dnsmasq import Dnsmasq
from ..judges.kamailio import Kamailio
from ..media.helpers import capture, tshark
from .answering import answer_every_call, baresip_calls_and_presses
from .test_graph_restart import ServeProcess, ready, reap
from .test_graph_sip import keys_reach_baresip_then_hang_up, start_sip_service


@pytest.fixture
def ca(tmp_path: Path) -> TestCa:
    return TestCa(tmp_path / "ca")


async def _tls_phone(ca: TestCa, *, require_client_cert: bool = False, **kw: object) -> Phone:
    ours = ca.issue("us", "127.0.0.1")
    tls = TlsConfig(
        ours.cert, ours.key, port=0, ca_file=ca.cert_file, require_client_cert=require_client_cert
    )
    return await Phone.start("127.0.0.1", 0, tls=tls, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def tls_phone(ca: TestCa) -> AsyncIterator[Phone]:
    phone = await _tls_phone(ca)
    try:
        yield phone
    finally:
        await phone.close()


def _baresip(workdir: Path, ca: TestCa, *names: str, **kw: object) -> Baresip:
    cert = ca.issue(f"baresip-{workdir.name}", *(names or ("127.0.0.1",)))
    return Baresip(workdir / "bs", tls=cert, ca_file=ca.cert_file, **kw)  # type: ignore[arg-type]


async def test_we_call_baresip_over_tls_and_the_wire_shows_no_sip(
    tmp_path: Path, ca: TestCa, tls_phone: Phone
) -> None:
    pcap = tmp_path / "tls.pcap"
    async with _baresip(tmp_path, ca) as bs:
        with capture(bs.sip_port + 1, pcap, protocol="tcp"):
            call = await tls_phone.dial(bs.tls_uri, timeout=10)
            assert call.srtp_suite is None  # offered best-effort; baresip without SRTP: RTP
            await call.send_dtmf("159", method="sipinfo")
            await call.send_dtmf("#0", method="rfc4733")
            await bs.wait_for(lambda b: len(b.dtmf_starts()) >= 5, 5, "5 keys")
            await call.hangup()
            await bs.wait_event("CALL_CLOSED", 5)
    assert bs.info_keys() == "159" and bs.rfc4733_keys() == "#0"
    stats = tls_phone.transport.stats
    assert (stats.tls_connections, stats.tls_errors, stats.datagrams_out) == (1, 0, 0)
    raw = pcap.read_bytes()
    for clear in (b"INVITE sip:", b"INFO sip:", b"BYE sip:", b"SIP/2.0 200", b"dtmf-relay"):
        assert clear not in raw, clear
    port = bs.sip_port + 1
    fields = ["-T", "fields", "-e", "tls.record.content_type", "-e", "tls.record.opaque_type"]
    records = subprocess.run(
        [tshark(), "-r", str(pcap), "-d", f"tcp.port=={port},tls", "-Y", "tls.record", *fields],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    kinds = {int(k) for field in records for k in field.split(",")}
    # a handshake, then application data (the SIP; TLS 1.3 shows it as the opaque type)
    assert 22 in kinds and 23 in kinds, kinds


async def test_baresip_calls_us_over_tls_and_presses_keys(
    tmp_path: Path, ca: TestCa, tls_phone: Phone
) -> None:
    calls, heard = answer_every_call(tls_phone)
    assert tls_phone.tls_uri is not None
    async with _baresip(tmp_path, ca, answer=False) as bs:
        await baresip_calls_and_presses(bs, tls_phone.tls_uri, "42*", calls, heard)
    assert [k.key for k in heard] == ["4", "2", "*"]
    stats = tls_phone.transport.stats
    assert (stats.tls_connections, stats.datagrams_in, stats.datagrams_out) == (1, 0, 0)


async def test_a_certificate_from_another_ca_fails_the_call_at_once(
    tmp_path: Path, ca: TestCa, tls_phone: Phone
) -> None:
    stranger = TestCa(tmp_path / "other-ca", "someone else's CA")
    async with _baresip(tmp_path, stranger) as bs:
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(DialError) as info:
            await tls_phone.dial(bs.tls_uri, timeout=60)
        took = loop.time() - began
        await asyncio.sleep(0.2)
        assert not bs.of_type("CALL_INCOMING")
    assert info.value.status == 503
    assert "certificate verify failed" in info.value.detail
    assert took < 30  # a transport error (503), not the 60 s dial timeout
    assert tls_phone.transport.stats.tls_errors == 1


async def test_the_certificate_must_name_the_host_the_uri_names(tmp_path: Path, ca: TestCa) -> None:
    """baresip's certificate names ``right.test``; both names lead to it (dnsmasq)."""
    async with (
        _baresip(tmp_path, ca, "right.test") as bs,
        Dnsmasq(
            tmp_path / "dns", hosts={"right.test": "127.0.0.1", "wrong.test": "127.0.0.1"}
        ) as dns,
    ):
        phone = await _tls_phone(ca, resolver=SipResolver(dns.address))
        try:
            port = bs.sip_port + 1
            call = await phone.dial(f"sip:{bs.user}@right.test:{port};transport=tls", timeout=10)
            await call.hangup()
            with pytest.raises(DialError) as info:
                await phone.dial(f"sip:{bs.user}@wrong.test:{port};transport=tls", timeout=10)
        finally:
            await phone.close()
    assert info.value.status == 503
    assert "wrong.test" in info.value.detail and "certificate" in info.value.detail


async def test_tls_without_configuration_and_bad_files_are_clear_errors(
    tmp_path: Path, ca: TestCa, phone: Phone
) -> None:
    with pytest.raises(DialError, match="asks for TLS, which is not configured here"):
        await phone.dial("sip:alice@127.0.0.1:5061;transport=tls", timeout=2)
    missing = tmp_path / "nope.pem"
    with pytest.raises(TlsConfigError, match="cannot use the TLS certificate"):
        await Phone.start("127.0.0.1", 0, tls=TlsConfig(missing, port=0))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(TlsConfigError, match=r"garbage\.pem"):
        await Phone.start("127.0.0.1", 0, tls=TlsConfig(garbage, port=0))
    ours = ca.issue("us", "127.0.0.1")
    with pytest.raises(TlsConfigError, match="cannot use the CA file"):
        await Phone.start("127.0.0.1", 0, tls=TlsConfig(ours.cert, ours.key, ca_file=missing))


@pytest.mark.parametrize(("method", "srtp"), [("sipinfo", None), ("rfc4733", "mandatory")])
async def test_the_graph_service_calls_over_tls(
    tmp_path: Path, ca: TestCa, receiver: Receiver, method: str, srtp: str | None
) -> None:
    """Through the official SDK: a call to baresip's ``;transport=tls`` URI, keys, DELETE; no
    SIP went over UDP. By SIP INFO (inside the TLS connection) with plain RTP; and by RFC 4733
    with ``--srtp mandatory`` against a baresip that takes only SRTP."""
    ours = ca.issue("service", "127.0.0.1")
    mediaenc = "srtp-mand" if srtp else None
    async with _baresip(tmp_path, ca, mediaenc=mediaenc) as bs:
        service, server, task = await start_sip_service(
            tmp_path / "svc",
            receiver,
            sip_tls_cert_file=ours.cert,
            sip_tls_key_file=ours.key,
            sip_tls_port=0,
            sip_tls_ca_file=ca.cert_file,
            **({"srtp": srtp} if srtp else {}),
        )
        try:
            await keys_reach_baresip_then_hang_up(service, receiver, bs, bs.tls_uri, "73", method)
            phone = service.media.phone  # type: ignore[attr-defined]
            stats = phone.transport.stats
        finally:
            await stop(server, task)
    assert (stats.tls_connections, stats.datagrams_out) == (1, 0)


async def test_registered_over_tls_at_kamailio_and_called_through_it(
    tmp_path: Path, ca: TestCa
) -> None:
    """Kamailio with its tls module: our REGISTER goes over TLS (a ;transport=tls registrar),
    the binding it saves is our TLS Contact, and a call baresip places to our AOR reaches us
    over a TLS connection Kamailio opens (checking our certificate against the CA); no SIP of
    ours goes over UDP."""
    users = {"bot": "bot-secret", "alice": "alice-secret"}
    kam_cert = ca.issue("kamailio", "127.0.0.1")
    async with Kamailio(tmp_path / "kam", users, tls=kam_cert, ca_file=ca.cert_file) as kam:
        phone = await _tls_phone(ca)
        try:
            calls, heard = answer_every_call(phone)
            registrar = f"sip:127.0.0.1:{kam.tls_port};transport=tls"
            reg = await phone.register(
                kam.uri("bot"), registrar=registrar, auth=("bot", "bot-secret"), expires=60
            )
            await reg.wait(5)
            assert phone.tls_address is not None
            await kam.wait_bound("bot")  # its log line may come after its 200 OK
            [contact] = kam.bindings("bot")
            assert f":{phone.tls_address[1]};transport=tls" in contact, contact
            async with Baresip(
                tmp_path / "bs",
                user="alice",
                answer=False,
                registrar=kam.domain,
                password="alice-secret",
            ) as bs:
                await kam.wait_bound("alice")
                await baresip_calls_and_presses(bs, kam.uri("bot"), "58", calls, heard, 10)
            stats = phone.transport.stats
        finally:
            await phone.close()
    assert [k.key for k in heard] == ["5", "8"]
    ours = [r for r in kam.requests() if r.startswith("REGISTER") and "'bot'" in r]
    assert ours and all(r.endswith("over tls") for r in ours), ours
    assert (stats.datagrams_in, stats.datagrams_out, stats.tls_errors) == (0, 0, 0)
    assert stats.tls_connections >= 2  # ours to Kamailio, and Kamailio's to our TLS port


@pytest.mark.parametrize(("mediaenc", "ours"), [("srtp", "optional"), ("srtp-mand", "mandatory")])
async def test_srtp_with_baresip_both_ways(
    tmp_path: Path, ca: TestCa, mediaenc: str, ours: SrtpPolicy
) -> None:
    """baresip with SDES SRTP: ``srtp`` (best effort: crypto lines in RTP/AVP) against our
    default ``optional``, ``srtp-mand`` (RTP/SAVP) against ``mandatory``. We call it over TLS:
    it hears our RFC 4733 keys and, in the audio it decrypted and recorded, our in-band ones.
    It calls us: we take its SRTP and hear its keys. Nothing failed authentication here."""
    phone = await _tls_phone(ca, srtp=ours)
    try:
        async with _baresip(tmp_path / "out", ca, mediaenc=mediaenc, record=True) as bs:
            call = await phone.dial(bs.tls_uri, timeout=10)
            assert call.srtp_suite is SrtpSuite.AES_CM_128_HMAC_SHA1_80
            await call.send_dtmf("47", method="rfc4733")
            await call.send_dtmf("#0", method="inband", tone_ms=100, gap_ms=100)
            await bs.wait_for(lambda b: b.rfc4733_keys() == "47", 5, "keys 47")
            await asyncio.sleep(0.3)
            await call.hangup()
            await bs.wait_event("CALL_CLOSED", 5)
            assert call.session is not None and call.session.srtp_receive is not None
            assert call.session.srtp_receive.auth_failures == 0
        assert "".join(e.key for e in detect(bs.recorded_audio())).endswith("#0")
        calls, heard = answer_every_call(phone)
        async with _baresip(tmp_path / "in", ca, mediaenc=mediaenc, answer=False) as bs:
            target = phone.tls_uri
            assert target is not None
            await baresip_calls_and_presses(bs, target, "9*", calls, heard)
    finally:
        await phone.close()
    assert [k.key for k in heard] == ["9", "*"]
    assert calls[0].srtp_suite is not None
    session = calls[0].session
    assert session is not None and session.srtp_receive is not None
    assert (session.srtp_receive.auth_failures, session.srtp_receive.replays) == (0, 0)


async def test_srtcp_with_baresip(tmp_path: Path, ca: TestCa) -> None:
    """An SRTP call to baresip carries RTCP as SRTCP both ways: baresip's reports on our
    stream authenticate under its key (RTT, its CNAME, nothing lost), and it goes on reporting
    on ours, so it read our SRTCP reports (its LSR echoes our SR)."""
    phone = await _tls_phone(ca, srtp="mandatory")
    phone.rtcp_interval = 1.0
    try:
        async with _baresip(tmp_path, ca, mediaenc="srtp-mand") as bs:
            call = await phone.dial(bs.tls_uri, timeout=10)
            assert call.srtp_suite is SrtpSuite.AES_CM_128_HMAC_SHA1_80
            stats = call.rtcp
            assert stats is not None
            for _ in range(150):
                if stats.rtt is not None:
                    break
                await asyncio.sleep(0.1)
            assert stats.rtt is not None, stats  # needs an LSR: it decrypted one of our SRs
            assert stats.received >= 1 and stats.unauthenticated == 0 and stats.malformed == 0
            assert stats.peer_cname and stats.peer_lost == 0
            await call.hangup()
            await bs.wait_event("CALL_CLOSED", 5)
    finally:
        await phone.close()


async def test_srtp_policies_refuse_what_they_must(tmp_path: Path, ca: TestCa) -> None:
    """``never`` refuses baresip's RTP/SAVP offer (488); ``mandatory`` refuses a plain one.
    (``optional`` calling a TLS peer without SRTP gets plain RTP: the first test.)"""
    never = await _tls_phone(ca, srtp="never")
    mandatory = await _tls_phone(ca, srtp="mandatory")
    try:
        for phone, mediaenc in ((never, "srtp-mand"), (mandatory, None)):
            calls, _ = answer_every_call(phone)
            name = f"{phone.srtp}-{mediaenc}"
            async with _baresip(tmp_path / name, ca, mediaenc=mediaenc, answer=False) as bs:
                await bs.dial(phone.tls_uri)  # type: ignore[arg-type]
                closed = await bs.wait_event("CALL_CLOSED", 5)
            assert calls == [] and "488" in closed.param, closed
    finally:
        await never.close()
        await mandatory.close()


async def _served_by(address: tuple[str, int], ca: TestCa) -> bool:
    """Whether a TLS client that trusts only ``ca`` (and checks the name) gets through to us."""
    context = ssl.create_default_context(cafile=str(ca.cert_file))
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(*address, ssl=context, server_hostname=address[0]), 5
        )
    except ssl.SSLCertVerificationError:
        return False
    writer.close()
    return True


async def test_a_renewed_certificate_is_served_without_a_restart(
    tmp_path: Path, ca: TestCa
) -> None:
    """Certificates are renewed while the phone runs: once the files are replaced, the
    transport's periodic look at them loads the new ones for new connections (a TLS client
    that trusts only the new certificate's CA is refused before and let in after, and baresip
    calls in over it); new files that cannot be used are logged and the old ones kept."""
    ours = ca.issue("us", "127.0.0.1")
    tls = TlsConfig(ours.cert, ours.key, port=0, ca_file=ca.cert_file)
    renewer = TestCa(tmp_path / "renewer", "the renewing CA")
    async with await Phone.start("127.0.0.1", 0, tls=tls) as phone:
        address, uri = phone.tls_address, phone.tls_uri
        assert address is not None and uri is not None
        phone.transport.tls_check_interval = 0.1
        assert await _served_by(address, ca) and not await _served_by(address, renewer)
        renewed = renewer.issue("us-renewed", "127.0.0.1")
        ours.key.write_bytes(renewed.key.read_bytes())
        ours.cert.write_bytes(renewed.cert.read_bytes())
        for _ in range(50):
            if phone.transport.stats.tls_reloads:
                break
            await asyncio.sleep(0.05)
        assert phone.transport.stats.tls_reloads == 1
        assert await _served_by(address, renewer) and not await _served_by(address, ca)
        calls, heard = answer_every_call(phone)
        async with _baresip(tmp_path, renewer, answer=False) as bs:
            await baresip_calls_and_presses(bs, uri, "7#", calls, heard)
        assert [k.key for k in heard] == ["7", "#"]
        ours.cert.write_text("not a certificate")  # a botched renewal
        await asyncio.sleep(0.5)
        with pytest.raises(TlsConfigError, match="cannot use the TLS certificate"):
            phone.transport.reload_tls()
        assert phone.transport.stats.tls_reloads == 1
        assert await _served_by(address, renewer)  # the renewed one is still served


async def test_sighup_makes_serve_load_renewed_certificates_at_once(
    tmp_path: Path, ca: TestCa
) -> None:
    """``kill -HUP`` to ``dtmfgraph serve``: the renewed files are served now, not within the
    minute of the periodic look."""
    ours = ca.issue("service", "127.0.0.1")
    serve = ServeProcess(tmp_path)
    tls_port = free_port()
    proc = serve.start(
        *("--sip-tls-cert-file", str(ours.cert), "--sip-tls-key-file", str(ours.key)),
        *("--sip-tls-port", str(tls_port)),
    )
    try:
        await ready(serve.base, proc, serve.log)
        address = ("127.0.0.1", tls_port)
        assert await _served_by(address, ca)
        renewer = TestCa(tmp_path / "renewer", "the renewing CA")
        renewed = renewer.issue("service-renewed", "127.0.0.1")
        ours.key.write_bytes(renewed.key.read_bytes())
        ours.cert.write_bytes(renewed.cert.read_bytes())
        proc.send_signal(signal.SIGHUP)
        for _ in range(40):
            if await _served_by(address, renewer):
                break
            await asyncio.sleep(0.05)
        assert await _served_by(address, renewer), serve.log.read_text()
        assert proc.poll() is None  # SIGHUP does not stop it
        assert (
            f"INFO dtmfgraph.media.sip_transport: SIP TLS: certificate {ours.cert} loaded again"
            in (serve.log.read_text())
        )
    finally:
        reap(proc)


async def _options_over_tls(address: tuple[str, int], ca: TestCa, cert: Issued | None) -> bool:
    """Whether an OPTIONS over TLS (checking our certificate against ``ca``, presenting
    ``cert`` as a client certificate) gets an answer."""
    context = ssl.create_default_context(cafile=str(ca.cert_file))
    if cert is not None:
        context.load_cert_chain(str(cert.cert), str(cert.key))
    reader, writer = await asyncio.open_connection(
        *address, ssl=context, server_hostname=address[0]
    )
    host, port = writer.get_extra_info("sockname")[:2]
    writer.write(
        (
            f"OPTIONS sip:dtmfgraph@{address[0]}:{address[1]};transport=tls SIP/2.0\r\n"
            f"Via: SIP/2.0/TLS {host}:{port};branch=z9hG4bKmtls{port}\r\n"
            f"From: <sip:probe@{host}>;tag=p\r\nTo: <sip:dtmfgraph@{address[0]}>\r\n"
            "Call-ID: mtls-probe\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
    )
    try:
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    except (ssl.SSLError, ConnectionError, asyncio.IncompleteReadError):
        return False
    finally:
        writer.close()
    return answer.startswith(b"SIP/2.0 200")


async def test_mutual_tls_lets_in_only_peers_with_a_certificate_from_our_ca(
    tmp_path: Path, ca: TestCa
) -> None:
    """``require_client_cert``: a peer connecting over TLS must present a certificate that
    chains to our CA file. One without a certificate, or with one from another CA, gets no
    SIP through; baresip with its certificate from our CA calls in and presses keys."""
    phone = await _tls_phone(ca, require_client_cert=True)
    stranger = TestCa(tmp_path / "other-ca", "someone else's CA")
    try:
        address = phone.tls_address
        assert address is not None and phone.tls_uri is not None
        assert not await _options_over_tls(address, ca, None)
        assert not await _options_over_tls(address, ca, stranger.issue("intruder", "127.0.0.1"))
        assert await _options_over_tls(address, ca, ca.issue("friend", "127.0.0.1"))
        calls, heard = answer_every_call(phone)
        async with _baresip(tmp_path, ca, answer=False) as bs:
            await baresip_calls_and_presses(bs, phone.tls_uri, "5", calls, heard)
        assert [k.key for k in heard] == ["5"]
    finally:
        await phone.close()
