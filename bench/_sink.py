"""The capacity bench's webhook sink: an HTTP/1.1 server on the bench's event loop that takes
every notification and keeps what it says of each call (established, keys heard, operations
ended)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field

from _ports import free_port

SEQUENCE = 10
"""Keys each call sends (and so hears back)."""
_CALL_URL = re.compile(r"/communications/calls/([^/]+)(?:/operations/([^/]+))?$")


@dataclass(slots=True)
class Calls:
    """What the notifications told about the step's calls."""

    established: dict[str, asyncio.Event] = field(
        default_factory=lambda: defaultdict(asyncio.Event)
    )
    heard: dict[str, list[tuple[int, str]]] = field(default_factory=lambda: defaultdict(list))
    ended_ops: dict[str, str] = field(default_factory=dict)
    full: dict[str, asyncio.Event] = field(default_factory=lambda: defaultdict(asyncio.Event))
    full_at: dict[str, float] = field(default_factory=dict)
    notes: int = 0

    def take(self, note: dict[str, object]) -> None:
        self.notes += 1
        match = _CALL_URL.search(str(note.get("resourceUrl", "")))
        data = note.get("resourceData")
        if not match or not isinstance(data, dict):
            return
        call_id, op_id = match.groups()
        if op_id is not None:
            if note.get("changeType") == "deleted":
                self.ended_ops[op_id] = str(data.get("completionReason") or data.get("status"))
            return
        tone = data.get("toneInfo")
        if isinstance(tone, dict):
            self.heard[call_id].append((int(tone["sequenceId"]), str(tone["tone"])))
            if len(self.heard[call_id]) == SEQUENCE:
                self.full[call_id].set()
                self.full_at[call_id] = time.monotonic()
        elif data.get("state") == "established":
            self.established[call_id].set()


class Sink:
    """An HTTP/1.1 server on this process's event loop answering every POST with 202 and handing
    each notification of its body to ``calls.take``."""

    def __init__(self) -> None:
        self.calls = Calls()
        self.port = free_port()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Sink:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, backlog=1024)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        quiet = (
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            asyncio.CancelledError,
        )
        with contextlib.suppress(*quiet):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                match = re.search(rb"(?i)content-length:\s*(\d+)", head)
                body = await reader.readexactly(int(match.group(1))) if match else b""
                writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                with contextlib.suppress(ValueError):
                    for note in json.loads(body).get("value", []):
                        self.calls.take(note)
        writer.close()
