"""A NAT in the middle of an RTP path, over real loopback sockets: what an inside peer sends
to :attr:`NatRelay.inside` leaves from the current outside port; what reaches an outside port
goes back to the inside peer. :meth:`NatRelay.rebind` moves to a new outside port mid-stream, as
a NAT whose mapping expired or a phone that changed networks does."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

Address = tuple[str, int]


class _Side(asyncio.DatagramProtocol):
    def __init__(self, relay: NatRelay, outside: int | None) -> None:
        self.relay, self.outside = relay, outside
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.relay.received(self, data, addr)


@dataclass
class NatRelay:
    """Inside socket and ``ports`` outside sockets on 127.0.0.1; ``outside_to`` is the far end."""

    outside_to: Address
    ports: int = 2
    current: int = 0
    """Index of the outside socket in use."""
    back: Counter[int] = field(default_factory=Counter)
    """Datagrams the far end sent to each outside socket (by index)."""
    _inside: _Side | None = None
    _outside: list[_Side] = field(default_factory=list)
    _peer: Address | None = None

    async def open(self) -> NatRelay:
        loop = asyncio.get_running_loop()
        local = ("127.0.0.1", 0)
        _, self._inside = await loop.create_datagram_endpoint(
            lambda: _Side(self, None), local_addr=local
        )
        for i in range(self.ports):
            _, side = await loop.create_datagram_endpoint(
                lambda i=i: _Side(self, i), local_addr=local
            )
            self._outside.append(side)
        return self

    @property
    def inside(self) -> Address:
        assert self._inside is not None and self._inside.transport is not None
        return self._inside.transport.get_extra_info("sockname")[:2]  # type: ignore[no-any-return]

    def outside(self, index: int) -> Address:
        transport = self._outside[index].transport
        assert transport is not None
        return transport.get_extra_info("sockname")[:2]  # type: ignore[no-any-return]

    def rebind(self) -> None:
        """From now on, the inside peer's datagrams leave from the next outside port."""
        self.current += 1

    def received(self, side: _Side, data: bytes, addr: Address) -> None:
        if side.outside is None:  # from the inside peer: out through the current mapping
            self._peer = addr
            out = self._outside[self.current].transport
            assert out is not None
            out.sendto(data, self.outside_to)
            return
        self.back[side.outside] += 1
        inside = self._inside.transport if self._inside is not None else None
        if self._peer is not None and inside is not None:
            inside.sendto(data, self._peer)

    def close(self) -> None:
        for side in [self._inside, *self._outside]:
            if side is not None and side.transport is not None:
                side.transport.close()
