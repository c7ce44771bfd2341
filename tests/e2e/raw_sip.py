"""One SIP request sent as raw text from a socket of the test's own, for requests no real
client would make (a replayed INVITE, a bare probe of a challenge)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable


async def final_response(
    request: Callable[[int], str], target: tuple[str, int], timeout: float = 5.0
) -> str:
    """Send ``request(port)`` (``port``: the UDP port it leaves from, for its Via) to
    ``target``; return the first response that is not provisional (1xx)."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        await loop.sock_sendto(sock, request(sock.getsockname()[1]).encode(), target)
        while True:
            response = (await asyncio.wait_for(loop.sock_recv(sock, 65535), timeout)).decode()
            if not response.startswith("SIP/2.0 1"):
                return response
