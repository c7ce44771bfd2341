"""One RTP media session: a UDP endpoint, an outbound stream on the shared pacer, an inbound stream.

``await session.send_dtmf("123#")`` returns when the last packet of those keys has left the socket;
``async for key in session.keys()`` yields every key heard (RFC 4733 events or in-band tones).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from dtmfgraph.rtp import (
    AudioJob,
    Codec,
    DtmfJob,
    InbandBank,
    InboundStats,
    InboundStream,
    Job,
    JobFinished,
    JobStarted,
    KeyHeard,
    OutboundStream,
    SourceGuard,
    Verdict,
)
from dtmfgraph.rtp.jitter import MAX_DELAY, MIN_DELAY
from dtmfgraph.rtp.rtcp import MIN_INTERVAL, RtcpSession, RtcpStats
from dtmfgraph.rtp.source import canonical_host
from dtmfgraph.rtp.srtp import SrtcpContext, SrtpContext

from .pacer import Outbound, Pacer
from .udp import (
    Address,
    MediaError,
    PortRange,
    UdpEndpoint,
    open_rtcp_endpoint,
    open_udp_endpoint,
)

logger = logging.getLogger(__name__)

Method: TypeAlias = Literal["rfc4733", "inband"]
JobEvent: TypeAlias = JobStarted | JobFinished


class NoRemoteError(MediaError):
    """Keys were to be sent before the session knew where to send them."""


class SessionClosedError(MediaError):
    """The session was closed (before or while keys were being sent)."""


@dataclass(frozen=True, slots=True)
class DtmfSending:
    """A DTMF job in flight: ``done`` resolves to the job once its last packet has been sent."""

    job: DtmfJob
    done: asyncio.Future[DtmfJob]


@dataclass(frozen=True, slots=True)
class AudioSending:
    """Audio in flight: ``done`` resolves to the job once its last packet has been sent."""

    job: AudioJob
    done: asyncio.Future[AudioJob]


_CLOSED = object()


class RtpSession:
    """A full-duplex RTP session on one UDP socket, paced by a shared :class:`Pacer`.

    Make one with :meth:`open`. Outbound media (silence when idle, as a phone does) starts once
    the remote address is known: given at open, set later with :meth:`set_remote`, or latched
    from the first datagram received when ``latch`` is on (symmetric RTP).

    ``strict`` (strict RTP, see :class:`~dtmfgraph.rtp.SourceGuard`): take packets only from
    the remote address, or from one address that proves itself with a few packets in sequence
    while the remote has not sent (a peer behind NAT; the session then sends there too). Others
    are dropped, counted in :attr:`guard` and reported to :attr:`on_foreign`.

    ``srtp`` (a context for what we send, one for what we receive): SRTP (RFC 3711). Every
    packet is protected on its way out; a datagram that does not authenticate is dropped
    (``srtp_receive`` counts why) before anything else looks at it.

    ``rtcp`` (the endpoint on the RTP port + 1) and ``rtcp_remote`` (where the far end takes
    RTCP; default: its RTP port + 1): RTCP (RFC 3550) — a report (SR while we send, else RR,
    with SDES CNAME) about every ``rtcp_interval`` seconds, randomised, and a BYE at close;
    the far end's reports give the round-trip time and what it lost of our stream
    (:attr:`rtcp_stats`). ``rtcp_mux`` (RFC 5761, when both SDPs said ``a=rtcp-mux``): RTCP
    on the RTP port instead, to the far end's RTP address; RTCP arriving on the RTP port is
    read either way. The far end's RTCP is taken only from the ports its SDP signalled
    (``a=rtcp``, or its RTP port + 1) or its RTP source's (that port, or the one after it),
    never from another port of its host, and each valid report from there sets where ours go
    (symmetric RTCP, RFC 4961). With
    ``srtp``, RTCP is SRTCP (RFC 3711 3.4) under the same master keys; what does not
    authenticate is dropped and counted.
    """

    def __init__(
        self,
        pacer: Pacer,
        endpoint: UdpEndpoint,
        *,
        codec: Codec = Codec.PCMU,
        event_pt: int | None = 101,
        ptime_ms: int = 20,
        send: bool = True,
        inbound: InboundStream | None = None,
        remote: Address | None = None,
        latch: bool = False,
        strict: bool = False,
        srtp: tuple[SrtpContext, SrtpContext] | None = None,
        rng: random.Random | None = None,
        rtcp: UdpEndpoint | None = None,
        rtcp_remote: Address | None = None,
        rtcp_interval: float = MIN_INTERVAL,
        cname: str | None = None,
        rtcp_mux: bool = False,
    ) -> None:
        if send:
            pacer.check_ptime(ptime_ms)
        if rtcp_remote is not None:
            _check_literal(rtcp_remote)
        self._pacer = pacer
        self._loop = asyncio.get_running_loop()
        self.endpoint = endpoint
        self.codec = codec
        self.event_pt = event_pt
        self.ptime_ms = ptime_ms
        self._send = send
        self._rng = rng
        self.inbound = inbound
        self.outbound: OutboundStream | None = None
        self._entry: Outbound | None = None
        self._muted = False
        self.remote: Address | None = None
        self.latch = latch
        self.guard = SourceGuard(strict=strict)
        self.srtp_send: SrtpContext | None = srtp[0] if srtp is not None else None
        self.srtp_receive: SrtpContext | None = srtp[1] if srtp is not None else None
        self.on_foreign: Callable[[Address], None] | None = None
        """Optional observer of every datagram dropped by the strict RTP check (its source)."""
        self._moves = 0
        self.on_moved: Callable[[Address], None] | None = None
        """Optional observer of the far end's stream moving to a new address (a NAT rebinding
        followed by the strict RTP check): the new address."""
        self._jobs: dict[int, tuple[Job, asyncio.Future[Any]]] = {}
        self._keys: asyncio.Queue[KeyHeard | object] = asyncio.Queue()
        self._closed = False
        self.last_heard = self._loop.time()
        """Event-loop time of the last RTP packet, or valid RTCP report, received from the far
        end (of the session's start before any): the clock a media timeout is judged on (as
        Asterisk's ``rtptimeout``: a far end that sends no RTP while quiet still reports).
        Datagrams that are neither, or come from strangers, do not count."""
        self.on_job_event: Callable[[JobEvent], None] | None = None
        """Optional observer of every job started / finished (called on the pacer's tick)."""
        ssrc_rng = rng or random.Random()
        self._ssrc = ssrc_rng.getrandbits(32)
        self.rtcp = RtcpSession(
            self._ssrc,
            cname or f"{ssrc_rng.getrandbits(64):016x}@dtmfgraph",
            rtcp_interval,
            ssrc_rng,
        )
        self.rtcp_endpoint = rtcp
        self.rtcp_mux = rtcp_mux
        """RTCP goes on the RTP port (RFC 5761, both SDPs said ``a=rtcp-mux``)."""
        self._rtcp_out = endpoint if rtcp_mux else rtcp
        self._rtcp_given = self._rtcp_remote = rtcp_remote
        self._rtcp_latched = False
        self._rtcp_timer: asyncio.TimerHandle | None = None
        endpoint.on_datagram = self._on_datagram
        self._srtcp_send = _srtcp_of(self.srtp_send)
        self._srtcp_receive: tuple[SrtpContext | None, SrtcpContext | None] = (None, None)
        if rtcp is not None:
            rtcp.on_datagram = self._on_rtcp_datagram
        if self._rtcp_out is not None and (self.srtp_send is None or self._srtcp_send is not None):
            self._schedule_rtcp()
        if inbound is not None:
            pacer.add_inbound(inbound, self._on_key_event)
        if remote is not None:
            self.set_remote(remote)

    @classmethod
    async def open(
        cls,
        pacer: Pacer,
        *,
        host: str = "127.0.0.1",
        port: int | PortRange = 0,
        remote: Address | None = None,
        codec: Codec = Codec.PCMU,
        event_pt: int | None = 101,
        ptime_ms: int = 20,
        send: bool = True,
        receive: bool = True,
        inband: bool = True,
        bank: InbandBank | None = None,
        latch: bool | None = None,
        strict: bool = False,
        rng: random.Random | None = None,
        rtcp: bool = False,
        rtcp_interval: float = MIN_INTERVAL,
        jitter_max_delay: float = MAX_DELAY,
    ) -> RtpSession:
        """Bind a UDP endpoint on ``host`` (a port, a :class:`PortRange`, or 0 for any) and start.

        ``send``: pace an outbound stream (silence, then DTMF on demand) to ``remote``.
        ``receive``: hear keys; ``inband`` also runs the tone detector on the audio, on a
        channel of ``bank`` if given (see :class:`~dtmfgraph.media.InbandBanks`), else its own.
        ``latch`` (default: on when ``remote`` is not given) sends back to the first sender heard.
        ``strict``: take packets only from the remote address (or one learned; see the class).
        ``rtcp``: also RTCP, on the RTP port + 1 (left out when that port is taken).
        ``jitter_max_delay``: greatest play-out delay of the received audio's jitter buffer.
        """
        endpoint = await open_udp_endpoint(host, port)
        inbound: InboundStream | None = None
        rtcp_endpoint = open_rtcp_endpoint(endpoint) if rtcp else None
        try:
            inbound = (
                InboundStream(
                    codec=codec,
                    event_pt=event_pt,
                    inband=inband,
                    bank=bank,
                    max_delay=max(jitter_max_delay, MIN_DELAY),
                )
                if receive
                else None
            )
            return cls(
                pacer,
                endpoint,
                codec=codec,
                event_pt=event_pt,
                ptime_ms=ptime_ms,
                send=send,
                inbound=inbound,
                remote=remote,
                latch=remote is None if latch is None else latch,
                strict=strict,
                rng=rng,
                rtcp=rtcp_endpoint,
                rtcp_interval=rtcp_interval,
            )
        except BaseException:
            if inbound is not None:
                pacer.remove_inbound(inbound)
                inbound.close(pacer.time())
            await endpoint.close()
            if rtcp_endpoint is not None:
                await rtcp_endpoint.close()
            raise

    # -- addresses ------------------------------------------------------------------------------
    @property
    def local_address(self) -> Address:
        return self.endpoint.local_address

    def set_remote(self, remote: Address) -> None:
        """Send to ``remote`` from now on, and take packets from it (under ``strict``, also
        from one address learned anew); the first call starts the outbound stream on the grid."""
        self._check_open()
        _check_literal(remote)
        self.guard.expect(remote)
        self._send_to(remote)

    def _send_to(self, remote: Address) -> None:
        if not self._rtcp_latched and self._rtcp_given is None:
            self._rtcp_remote = remote if self.rtcp_mux else (remote[0], remote[1] + 1)
        self.remote = remote
        if not self._send:
            return
        if self._entry is not None:
            self._entry.addr = remote
            return
        if self.endpoint.closed:
            raise SessionClosedError("the session's socket is closed")
        self.outbound = OutboundStream(
            start=self._pacer.start_time(),
            codec=self.codec,
            event_pt=self.event_pt,
            ptime_ms=self.ptime_ms,
            ssrc=self._ssrc,
            rng=self._rng,
        )
        self.outbound.muted = self._muted
        # Straight to the socket: one C call per packet. A packet the kernel cannot take now is
        # dropped by the pacer (late media is useless), never queued.
        sendto: Callable[[bytes, Address], object] = self.endpoint.sock.sendto
        if self.srtp_send is not None:
            sendto = _protected(self.srtp_send, self.endpoint.sock.sendto)
        self._entry = self._pacer.add_outbound(self.outbound, sendto, remote)

    @property
    def muted(self) -> bool:
        """Audio jobs (prompts) go out as silence (see ``OutboundStream.muted``)."""
        return self._muted

    @muted.setter
    def muted(self, muted: bool) -> None:
        self._muted = muted
        if self.outbound is not None:
            self.outbound.muted = muted

    def tap_sent(self, tap: Callable[[bytes], None] | None) -> None:
        """Observe each RTP packet this session sends, before any SRTP protection (a console's
        spectrogram of our side); ``None`` stops. The tap must be cheap and must not raise.
        Nothing happens before the outbound stream has started (a remote is known)."""
        if self._entry is not None:
            self._entry.tap = tap

    # -- sending --------------------------------------------------------------------------------
    def _sending(self) -> tuple[OutboundStream, Outbound]:
        """The outbound stream and its pacer entry; raises when there is none to send on."""
        self._check_open()
        stream, entry = self.outbound, self._entry
        if stream is None or entry is None:
            if not self._send:
                raise MediaError("this session was opened with send=False")
            raise NoRemoteError("no remote address yet: call set_remote() or wait for a peer")
        return stream, entry

    def start_dtmf(
        self,
        keys: str,
        *,
        method: Method = "rfc4733",
        tone_ms: int = 100,
        gap_ms: int = 100,
        volume: int = 10,
    ) -> DtmfSending:
        """Queue ``keys`` (FIFO after earlier jobs) and return at once; see :meth:`send_dtmf`.

        Raises ``ValueError`` (from the RTP layer) for bad keys, ``flash`` in-band, or RFC 4733
        without a telephone-event payload type; :class:`NoRemoteError` before a remote is known.
        """
        stream, entry = self._sending()
        job = stream.send_dtmf(
            keys,
            method=method,
            tone_ms=tone_ms,
            gap_ms=gap_ms,
            volume=volume,
            now=self._pacer.time(),
        )
        done: asyncio.Future[DtmfJob] = self._loop.create_future()
        self._jobs[job.id] = (job, done)
        entry.on_event = self._on_job_event
        return DtmfSending(job, done)

    async def send_dtmf(
        self,
        keys: str,
        *,
        method: Method = "rfc4733",
        tone_ms: int = 100,
        gap_ms: int = 100,
        volume: int = 10,
    ) -> DtmfJob:
        """Send ``keys`` and return the finished job once its last packet has left.

        Cancelling the awaiting task cancels the job: it stops at the next key boundary.
        """
        sending = self.start_dtmf(
            keys, method=method, tone_ms=tone_ms, gap_ms=gap_ms, volume=volume
        )
        try:
            return await asyncio.shield(sending.done)
        except asyncio.CancelledError:
            if not sending.done.done():
                self.cancel(sending.job)
            raise

    def start_audio(self, samples: npt.NDArray[np.int16], *, loop: bool = False) -> AudioSending:
        """Queue 8 kHz int16 ``samples`` (FIFO after earlier jobs) on the outbound stream, in the
        negotiated codec on the same clock, and return at once; ``done`` resolves when the last
        packet has left (never, with ``loop``, until :meth:`cancel`). Errors as
        :meth:`start_dtmf`."""
        stream, entry = self._sending()
        job = stream.play_audio(samples, loop=loop, now=self._pacer.time())
        done: asyncio.Future[AudioJob] = self._loop.create_future()
        self._jobs[job.id] = (job, done)
        entry.on_event = self._on_job_event
        return AudioSending(job, done)

    def cancel(self, job: Job) -> None:
        """Stop ``job`` at its next key boundary, audio at the next frame (its ``done`` future
        still resolves)."""
        if self.outbound is not None and not job.done:
            self.outbound.cancel(job, self._pacer.time())

    def _on_job_event(self, event: object) -> None:
        inbound = self.inbound
        if inbound is not None:  # what we send may come back as (line) echo
            if isinstance(event, JobStarted):
                inbound.sending(event.job.id, event.job.keys, event.at)
            elif isinstance(event, JobFinished):
                inbound.sent(event.job.id, event.at)
        if isinstance(event, JobFinished):
            item = self._jobs.pop(event.job.id, None)
            if item is not None and not item[1].done():
                item[1].set_result(event.job)
            if not self._jobs and self._entry is not None and self.on_job_event is None:
                self._entry.on_event = None  # idle: the pacer stops polling our events
        if self.on_job_event is not None and isinstance(event, (JobStarted, JobFinished)):
            self.on_job_event(event)

    # -- receiving ------------------------------------------------------------------------------
    def _on_datagram(self, data: bytes, addr: Address) -> None:
        if len(data) > 1 and 199 < data[1] < 205:  # RTCP_TYPES: multiplexed on the RTP port
            self._on_rtcp_datagram(data, addr)
            return
        if self.srtp_receive is not None:
            clear = self.srtp_receive.unprotect(data)
            if clear is None:
                return  # forged, replayed or not SRTP: counted by the context
            data = clear
        now = self._loop.time()
        verdict = self.guard.admit(data, addr, now)
        if verdict is not Verdict.ACCEPT:
            if verdict is Verdict.LEARNED:
                if (self.latch or self.guard.strict) and not self._closed:
                    self._send_to((addr[0], addr[1]))
                if self.guard.moved != self._moves and self.on_moved is not None:
                    self.on_moved((addr[0], addr[1]))
                self._moves = self.guard.moved
            else:
                if verdict is Verdict.DROP and self.on_foreign is not None:
                    self.on_foreign((addr[0], addr[1]))
                return
        inbound = self.inbound
        if inbound is None:  # (else the inbound stream keeps RTCP's loss figures)
            if len(data) >= 12 and data[0] >> 6 == 2:
                self.rtcp.note_rtp(int.from_bytes(data[8:12]), data[2] << 8 | data[3])
            self.last_heard = now
            return
        malformed = inbound.stats.malformed
        inbound.receive(data, now)
        if inbound.stats.malformed == malformed:
            self.last_heard = now
        event = inbound.next_event()
        while event is not None:
            self._keys.put_nowait(event)
            event = inbound.next_event()

    # -- RTCP -----------------------------------------------------------------------------------
    @property
    def rtcp_stats(self) -> RtcpStats:
        """What the far end's RTCP said (round-trip time, what it lost of ours) and counts."""
        return self.rtcp.stats

    @property
    def rtcp_remote(self) -> Address | None:
        """Where our RTCP goes (``None`` until the far end's address is known)."""
        return self._rtcp_remote

    def set_rtcp_remote(self, remote: Address | None) -> None:
        """Send RTCP to ``remote`` (the far end's ``a=rtcp``); ``None``: its RTP port + 1."""
        if remote is not None:
            _check_literal(remote)
        self._rtcp_given = remote
        if remote is None and self.remote is not None:
            remote = self.remote if self.rtcp_mux else (self.remote[0], self.remote[1] + 1)
        if not self._rtcp_latched:
            self._rtcp_remote = remote

    def _rtcp_sources(self) -> set[Address]:
        """Where the far end's RTCP may come from: the address its SDP gave for RTCP (``a=rtcp``,
        else the RTP port + 1), and the RTP address it sends from (or its SDP gave) and the
        port after it; never any other port of its host, which anyone there could use."""
        sources: set[Address] = set()
        if self._rtcp_given is not None:
            sources.add((canonical_host(self._rtcp_given[0]), self._rtcp_given[1]))
        for rtp in (self.guard.source, self.guard.expected, self.remote):
            if rtp is not None:
                host = canonical_host(rtp[0])
                sources.update({(host, rtp[1]), (host, rtp[1] + 1)})
        return sources

    def _on_rtcp_datagram(self, data: bytes, addr: Address) -> None:
        if (addr[0], addr[1]) not in self._rtcp_sources():
            self.rtcp.stats.foreign += 1
            return
        if not self._on_rtcp(data):
            return
        self.last_heard = self._loop.time()  # a far end that suppresses silence still reports
        # symmetric RTCP: answer where the latest report came from (follows a NAT rebinding)
        self._rtcp_latched = True
        self._rtcp_remote = (addr[0], addr[1])

    def _on_rtcp(self, data: bytes) -> bool:
        """Read one RTCP (or, with SRTP, SRTCP) datagram; whether it was valid."""
        if self.srtp_receive is not None:
            srtcp = self._srtcp_in()
            clear = srtcp.unprotect(data) if srtcp is not None else None
            if clear is None:
                self.rtcp.stats.unauthenticated += 1
                return False
            data = clear
        return bool(self.rtcp.receive(data, self._loop.time(), time.time()))

    def _srtcp_in(self) -> SrtcpContext | None:
        """The SRTCP context of the SRTP receive context in use (made again on a re-key)."""
        made_for, context = self._srtcp_receive
        if made_for is not self.srtp_receive:
            context = _srtcp_of(self.srtp_receive)
            self._srtcp_receive = (self.srtp_receive, context)
        return context

    def _schedule_rtcp(self) -> None:
        at = self.rtcp.next_report_at(self._loop.time())
        self._rtcp_timer = self._loop.call_at(at, self._send_rtcp)

    def _send_rtcp(self, goodbye: str | None = None) -> None:
        endpoint, target = self._rtcp_out, self._rtcp_remote
        if endpoint is None or endpoint.closed:
            return
        if target is not None:
            self._note_sent()
            inbound = self.inbound
            if inbound is not None:
                self.rtcp.jitter = inbound.stats.jitter
                self.rtcp.source = inbound.reception
            report = self.rtcp.report(self._loop.time(), time.time(), goodbye=goodbye)
            if self._srtcp_send is not None:
                report = self._srtcp_send.protect(report)
            endpoint.sendto(report, target)
        if goodbye is None:
            self._schedule_rtcp()

    def _note_sent(self) -> None:
        stream = self.outbound
        if stream is not None:
            now = self._pacer.time()
            self.rtcp.note_sent(stream.packets_sent, stream.octets_sent, stream.timestamp_at(now))

    def _on_key_event(self, event: object) -> None:
        if isinstance(event, KeyHeard):
            self._keys.put_nowait(event)

    async def keys(self) -> AsyncIterator[KeyHeard]:
        """Every key heard, in order, until the session closes. One consumer at a time."""
        while True:
            item = await self._keys.get()
            if item is _CLOSED:
                self._keys.put_nowait(_CLOSED)  # let a later iterator end too
                return
            assert isinstance(item, KeyHeard)
            yield item

    async def next_key(self, timeout: float | None = None) -> KeyHeard:
        """The next key heard; ``TimeoutError`` after ``timeout`` s; raises on close."""
        item = await asyncio.wait_for(self._keys.get(), timeout)
        if item is _CLOSED:
            self._keys.put_nowait(_CLOSED)
            raise SessionClosedError("session closed")
        assert isinstance(item, KeyHeard)
        return item

    @property
    def stats(self) -> InboundStats | None:
        return self.inbound.stats if self.inbound is not None else None

    # -- lifetime -------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise SessionClosedError("session closed")

    async def close(self, drain: float = 0.0) -> None:
        """Stop sending and receiving, fail jobs still in flight, close the socket.

        With ``drain`` (seconds), sending stops at once but hearing goes on that long first, so
        in-band audio already received (buffered for the detector) is still heard through to
        the end of its last key — what a far end that hangs up right after a key needs.
        """
        if self._closed:
            return
        self._closed = True
        try:
            await self._wind_down(drain)
        except Exception:  # whatever failed, the sockets below are closed
            logger.warning("closing an RTP session failed; its sockets are closed", exc_info=True)
        finally:
            for _, done in self._jobs.values():
                if not done.done():
                    error = SessionClosedError("session closed before the keys were sent")
                    done.set_exception(error)
                    done.exception()  # retrieved: no "never retrieved" warning if none awaits
            self._jobs.clear()
            self.endpoint.on_datagram = None
            self.endpoint.close_now()
            if self.rtcp_endpoint is not None:
                self.rtcp_endpoint.on_datagram = None
                self.rtcp_endpoint.close_now()
            self._keys.put_nowait(_CLOSED)

    async def _wind_down(self, drain: float) -> None:
        """Stop sending, say goodbye (RTCP BYE), hear through ``drain``; each step is tried
        whatever the one before did."""
        if self.outbound is not None:
            self._pacer.remove_outbound(self.outbound)
        if self._rtcp_timer is not None:
            self._rtcp_timer.cancel()
            self._rtcp_timer = None
            try:
                self._send_rtcp(goodbye="")  # our last report, and BYE
            except Exception:
                logger.warning("could not send the RTCP BYE", exc_info=True)
        inbound = self.inbound
        try:
            if inbound is not None and drain > 0:
                await asyncio.sleep(drain)
        finally:
            if inbound is not None:
                try:  # what already arrived is heard, even if the loop was too busy to read it
                    self.endpoint.read_now()
                except Exception:
                    logger.warning("the last read of an RTP session failed", exc_info=True)
                self._pacer.remove_inbound(inbound)
                inbound.close(self._loop.time())  # flushes a key still sounding, frees a channel
                event = inbound.next_event()
                while event is not None:
                    self._keys.put_nowait(event)
                    event = inbound.next_event()

    async def __aenter__(self) -> RtpSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _check_literal(address: Address) -> None:
    """``MediaError`` unless ``address`` names an IP literal: a host name would be resolved by
    ``sendto`` on the event loop for every packet (a name server that does not answer stalls
    the whole process), and junk (a NUL byte) raises there."""
    host = address[0]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise MediaError(
            f"not an IP address: {host[:60]!r} (host names are not resolved)"
        ) from None


def _srtcp_of(context: SrtpContext | None) -> SrtcpContext | None:
    """SRTCP under the master key of an SRTP ``context`` (``None`` without one)."""
    if context is None or context.master is None:
        return None
    return SrtcpContext(context.master)


def _protected(
    context: SrtpContext, sendto: Callable[[bytes, Address], object]
) -> Callable[[bytes, Address], object]:
    """``sendto`` that sends each packet SRTP-protected by ``context``."""
    protect = context.protect

    def send(data: bytes, addr: Address) -> object:
        return sendto(protect(data), addr)

    return send
