"""What the service needs from persistence; ``dtmfgraph.store`` implements it."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

from .model import Call, Event, Operation
from .recordings import Recording


class UnitOfWork(Protocol):
    """One transaction: state changes and the events they cause commit together."""

    async def get_call(self, call_id: str) -> Call | None: ...

    async def insert_call(self, call: Call) -> None: ...

    async def save_call(self, call: Call) -> None:
        """Insert ``call``; where it is already there (a retried write), update it."""

    async def update_call(self, call: Call) -> None: ...

    async def get_operation(self, call_id: str, op_id: str) -> Operation | None: ...

    async def list_operations(self, call_id: str) -> list[Operation]: ...

    async def find_repeat(self, call_id: str, repeat_key: str) -> Operation | None: ...

    async def insert_operation(self, op: Operation) -> None:
        """Insert ``op``; where it is already there (a retried write), update it."""

    async def update_operation(self, op: Operation) -> None: ...

    async def add_event(self, event: Event, *, callback_uri: str, app_id: str) -> None: ...

    async def insert_recording(self, rec: Recording) -> None: ...

    async def get_recording(self, op_id: str) -> Recording | None: ...

    async def delete_expired_recordings(self, now: float) -> int: ...

    async def unfinished_calls(self) -> list[Call]: ...

    async def node_alive(self, node_id: str, now: float, *, started: bool = False) -> None: ...

    async def orphaned_calls(self, me: str, dead_before: float, *, own: bool) -> list[Call]: ...

    async def release_claims(self, me: str, dead_before: float, *, own: bool) -> int: ...

    async def first_node_alive(self, me: str, dead_before: float) -> bool: ...

    async def node_stopped(self, node_id: str) -> None: ...
    async def calls_of_node(self, node_id: str) -> list[Call]: ...


class Repository(Protocol):
    def unit(self) -> AbstractAsyncContextManager[UnitOfWork]: ...

    def batched_unit(self) -> AbstractAsyncContextManager[UnitOfWork]:
        """A :meth:`unit` for many calls' changes at once: the store may hold its writes and
        write them together when it ends (reads inside it still see them); by default an
        ordinary :meth:`unit`."""
        return self.unit()

    def beat_unit(self) -> AbstractAsyncContextManager[UnitOfWork]:
        """A transaction for the node's heartbeat, on a connection of its own where the store
        has several (requests that hold every pooled connection must not make this node look
        dead to the others); by default an ordinary :meth:`unit`."""
        return self.unit()
