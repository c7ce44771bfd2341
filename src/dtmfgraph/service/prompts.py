"""Prompts for playPrompt and recordResponse: checked, fetched, decoded, cached.

A prompt is a ``mediaInfo`` (``uri``, and ``resourceId``: the cache key when given). Where a
URI may point, decided twice:

* at the request (:meth:`PromptFetcher.check_uri`, a 400 when it fails): ``https:`` any host;
  ``http:`` only to a loopback host (``localhost``, ``127.0.0.1``, ``::1``) or a host on the
  allow-list (``prompt_allowed_hosts``), as for callbackUri; ``file:`` (read only inside the
  prompt directory, see below); nothing else.
* at the connection (every hop of a redirect too): the host's addresses are looked up off the
  event loop and the connection goes to an address that was checked, never a second lookup. A
  link-local address (169.254.0.0/16, fe80::/10: cloud metadata services live there), a known
  metadata address (fd00:ec2::254, 100.100.100.200), an unspecified, multicast or reserved
  address is refused, and a loopback address unless the URI named a loopback host; a host on
  the allow-list may go anywhere.

``file:`` URIs are read only from the configured prompt directory (``prompt_dir``): the path,
symbolic links resolved, must lie inside it; without one every ``file:`` prompt fails.

Limits (each failure ends the operation ``failed`` with a message naming the cause): the body
at most ``max_bytes`` (10 MiB; a larger ``Content-Length`` is refused before reading), the whole
fetch (connection, redirects, every byte: a server that trickles gets cut off) at most
``timeout_s`` (10 s), at most ``max_redirects`` (5) redirects, audio at most ``max_seconds``
(300 s). The WAV is decoded and resampled off the event loop. Decoded prompts are kept in an LRU
cache of ``cache_bytes`` (64 MiB) by resourceId (else URI); a fetch in flight is shared.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import ssl
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import certifi
import httpcore
import httpx
import numpy as np
import numpy.typing as npt

from ..tones.resample import PromptAudioError, prepare
from ..tones.wav import WavError, parse_wav
from .errors import InvalidRequestError

log = logging.getLogger(__name__)

Audio = npt.NDArray[np.int16]
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
URI_MAX = 2048


class PromptError(Exception):
    """A prompt that cannot be played; the message names the URI and why."""


@dataclass(frozen=True, slots=True)
class PromptRef:
    """One ``mediaInfo``: where the audio is, and its cache key."""

    uri: str
    resource_id: str | None = None

    @property
    def key(self) -> str:
        return f"id:{self.resource_id}" if self.resource_id else f"uri:{self.uri}"


@dataclass(frozen=True, slots=True)
class PromptConfig:
    """Where prompts may come from and how much of them (documented in docs/api.md)."""

    allowed_hosts: tuple[str, ...] = ()
    prompt_dir: Path | None = None
    max_bytes: int = 10 * 1024 * 1024
    timeout_s: float = 10.0
    max_redirects: int = 5
    max_seconds: float = 300.0
    cache_bytes: int = 64 * 1024 * 1024
    concurrency: int = 16
    ca_file: Path | None = None


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def address_refusal(address: str, *, host_is_loopback: bool) -> str | None:
    """Why a connection to ``address`` is refused (``None``: allowed)."""
    ip = _ip(address)
    if ip is None:
        return f"{address} is not an IP address"
    if ip in METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata address"
    if ip.is_link_local:
        return f"{ip} is a link-local address"
    if ip.is_loopback:
        return None if host_is_loopback else f"{ip} is a loopback address"
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        return f"{ip} is not a unicast address"
    return None


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to checked addresses of the host (see the module docstring)."""

    def __init__(self, allowed_hosts: frozenset[str]) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allowed = allowed_hosts

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        name = host.strip("[]").lower()
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {name}: {exc}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if name not in self._allowed:
            for address in addresses:
                why = address_refusal(address, host_is_loopback=name in LOOPBACK_HOSTS)
                if why is not None:
                    raise httpcore.ConnectError(f"{name} is refused: {why}")
        if not addresses:
            raise httpcore.ConnectError(f"{name} has no address")
        return await self._inner.connect_tcp(
            addresses[0], port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not prompt sources")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport on a connection pool whose connections go through the guard."""

    def __init__(self, ssl_context: ssl.SSLContext, allowed_hosts: frozenset[str]) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        # httpx 0.28 (pinned) keeps its pool here; it has no option for the network backend
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=32,
            network_backend=_GuardedBackend(allowed_hosts),
        )


class PromptFetcher:
    """Checks, fetches, decodes and caches prompts (see the module docstring)."""

    def __init__(self, config: PromptConfig | None = None) -> None:
        self.config = cfg = config or PromptConfig()
        self._allowed = frozenset(h.lower() for h in cfg.allowed_hosts)
        context = ssl.create_default_context(cafile=certifi.where())
        if cfg.ca_file is not None:
            context.load_verify_locations(cafile=str(cfg.ca_file))
        self._client = httpx.AsyncClient(
            transport=_GuardedTransport(context, self._allowed),
            follow_redirects=False,
            timeout=httpx.Timeout(cfg.timeout_s),
            trust_env=False,
        )
        self._cache: OrderedDict[str, Audio] = OrderedDict()
        self._cached_bytes = 0
        self._inflight: dict[str, asyncio.Task[Audio]] = {}
        self._slots = asyncio.Semaphore(cfg.concurrency)
        self.fetched = 0
        """Prompts fetched (not from the cache)."""

    async def close(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        await self._client.aclose()

    # -- checks at the request -------------------------------------------------------------------
    def check_uri(self, uri: str, where: str) -> None:
        """400 ``invalidRequest`` (naming ``where``) for a URI no prompt may have."""
        if not isinstance(uri, str) or not uri:
            raise InvalidRequestError(f"{where}: is required")
        if len(uri) > URI_MAX:
            raise InvalidRequestError(f"{where}: at most {URI_MAX} characters")
        parts = urlsplit(uri)
        scheme = parts.scheme.lower()
        if scheme == "file":
            return
        host = (parts.hostname or "").lower()
        if scheme not in ("http", "https") or not host:
            raise InvalidRequestError(
                f"{where}: {uri!r} is not an absolute https URL (or http to an allowed host, "
                "or file: in the prompt directory)"
            )
        if scheme == "http" and host not in LOOPBACK_HOSTS and host not in self._allowed:
            raise InvalidRequestError(
                f"{where}: must be an https URL (http is allowed only for loopback and "
                f"allow-listed hosts), got {uri!r}"
            )

    # -- getting audio ---------------------------------------------------------------------------
    def prefetch(self, refs: Iterable[PromptRef]) -> None:
        """Start fetching ``refs`` now (``mediaConfig.preFetchMedia``, or a queued operation's
        prompts); failures are logged and retried by the operation that needs the prompt."""
        for ref in refs:
            if ref.key not in self._cache:
                self._start(ref)

    async def get(self, ref: PromptRef) -> Audio:
        """The prompt's audio (int16, 8 kHz mono); :class:`PromptError` naming the cause."""
        audio = self._cache.get(ref.key)
        if audio is not None:
            self._cache.move_to_end(ref.key)
            return audio
        return await asyncio.shield(self._start(ref))

    def _start(self, ref: PromptRef) -> asyncio.Task[Audio]:
        task = self._inflight.get(ref.key)
        if task is None:
            task = asyncio.ensure_future(self._load(ref))
            self._inflight[ref.key] = task
            task.add_done_callback(lambda t: self._settle(ref, t))
        return task

    def _settle(self, ref: PromptRef, task: asyncio.Task[Audio]) -> None:
        if self._inflight.get(ref.key) is task:
            del self._inflight[ref.key]
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.info("prompt %s: %s", ref.uri, exc)
            return
        self._remember(ref.key, task.result())

    def _remember(self, key: str, audio: Audio) -> None:
        old = self._cache.pop(key, None)
        if old is not None:
            self._cached_bytes -= old.nbytes
        if audio.nbytes > self.config.cache_bytes:
            return
        self._cache[key] = audio
        self._cached_bytes += audio.nbytes
        while self._cached_bytes > self.config.cache_bytes:
            _, evicted = self._cache.popitem(last=False)
            self._cached_bytes -= evicted.nbytes

    async def _load(self, ref: PromptRef) -> Audio:
        async with self._slots:
            try:
                async with asyncio.timeout(self.config.timeout_s):
                    data = await self._read(ref.uri)
            except TimeoutError:
                raise PromptError(
                    f"prompt {ref.uri}: fetching took more than {self.config.timeout_s:g} s"
                ) from None
        self.fetched += 1
        return await asyncio.to_thread(self._decode, ref.uri, data)

    def _decode(self, uri: str, data: bytes) -> Audio:
        try:
            return prepare(parse_wav(data), 8000, max_seconds=self.config.max_seconds)
        except WavError as exc:
            raise PromptError(f"prompt {uri}: not a WAV file we can read ({exc})") from None
        except PromptAudioError as exc:
            raise PromptError(f"prompt {uri}: {exc}") from None

    async def _read(self, uri: str) -> bytes:
        if urlsplit(uri).scheme.lower() == "file":
            return await asyncio.to_thread(self._read_file, uri)
        url = uri
        from_loopback = (urlsplit(uri).hostname or "").lower() in LOOPBACK_HOSTS
        for _ in range(self.config.max_redirects + 1):
            try:
                self.check_uri(url, "redirect")
            except InvalidRequestError as exc:
                raise PromptError(f"prompt {uri}: refused {exc}") from None
            host = (urlsplit(url).hostname or "").lower()
            if urlsplit(url).scheme.lower() == "file":
                raise PromptError(f"prompt {uri}: a redirect to file: is refused")
            if host in LOOPBACK_HOSTS and not from_loopback and host not in self._allowed:
                raise PromptError(f"prompt {uri}: a redirect to loopback host {host} is refused")
            try:
                async with self._client.stream("GET", url) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if response.status_code != 200:
                        raise PromptError(
                            f"prompt {uri}: HTTP {response.status_code} "
                            f"{response.reason_phrase} from {url}"
                        )
                    return await self._body(uri, response)
            except httpx.HTTPError as exc:
                raise PromptError(f"prompt {uri}: {exc or type(exc).__name__}") from None
        raise PromptError(
            f"prompt {uri}: too many redirects (more than {self.config.max_redirects})"
        )

    async def _body(self, uri: str, response: httpx.Response) -> bytes:
        limit = self.config.max_bytes
        size = response.headers.get("content-length", "")
        if size.isdigit() and int(size) > limit:
            raise PromptError(f"prompt {uri}: {int(size)} bytes; prompts are at most {limit} bytes")
        chunks: list[bytes] = []
        got = 0
        async for chunk in response.aiter_bytes():
            got += len(chunk)
            if got > limit:
                raise PromptError(f"prompt {uri}: over {limit} bytes; prompts are at most that")
            chunks.append(chunk)
        return b"".join(chunks)

    def _read_file(self, uri: str) -> bytes:
        root = self.config.prompt_dir
        if root is None:
            raise PromptError(
                f"prompt {uri}: file: URIs are read only from the prompt directory "
                "(prompt_dir), and none is configured"
            )
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise PromptError(f"prompt {uri}: a file: URI must name a local path")
        try:
            base = root.resolve(strict=True)
            path = Path(unquote(parts.path)).resolve(strict=True)
        except OSError as exc:
            raise PromptError(f"prompt {uri}: {exc.strerror or exc}") from None
        if not path.is_relative_to(base):
            raise PromptError(f"prompt {uri}: outside the prompt directory")
        try:
            if os.path.getsize(path) > self.config.max_bytes:
                raise PromptError(
                    f"prompt {uri}: larger than {self.config.max_bytes} bytes; prompts are at "
                    "most that"
                )
            return path.read_bytes()
        except OSError as exc:
            raise PromptError(f"prompt {uri}: {exc.strerror or exc}") from None


__all__ = [
    "LOOPBACK_HOSTS",
    "PromptConfig",
    "PromptError",
    "PromptFetcher",
    "PromptRef",
    "address_refusal",
]
