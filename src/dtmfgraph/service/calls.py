"""``CallService``: calls, operation lifecycle, tones, keep-alive.

Concurrency model: each live call has one ``asyncio.Lock``; every state change of that call and
the events it causes are written in one transaction while holding it, so notifications are
ordered per call. The media operations of a call (sendDtmfTones, playPrompt, recordResponse)
run one at a time from its :class:`~dtmfgraph.service.media_queue.MediaQueue`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..refusals import CALLS, Refusals
from ..tones.keypad import ALL_KEYS
from .admission import Admission, AdmissionConfig
from .control import CallControls
from .errors import (
    AccessDeniedError,
    InvalidRequestError,
    NotAllowedError,
    NotFoundError,
    NotSupportedError,
    ServiceUnavailableError,
    StoreUnavailableError,
)
from .hooks import DIALLING, CallTap, NullTap
from .lease import ReapGuard
from .media import (
    CallEndedError,
    DialError,
    EndKind,
    EndReason,
    IncomingCall,
    MediaBackend,
    MediaBackendError,
    MediaCall,
    MediaSetupError,
)
from .media_queue import MediaQueue, call_end_reason, new_media_operation
from .model import (
    Call,
    CallState,
    CompletionReason,
    Direction,
    DtmfMethod,
    Event,
    EventKind,
    Operation,
    OpKind,
    OpStatus,
    ResultInfo,
    Results,
    now,
    snapshot_call,
    snapshot_operation,
)
from .outage import StoreHealth
from .prompts import PromptConfig, PromptFetcher, PromptRef
from .recordings import MEDIA_TIMEOUT_S, Recording, RecordParams
from .repository import Repository, UnitOfWork
from .transfer import Transfers
from .write_behind import Batch, CallRecord, LiveUnit, WriteBehind

log = logging.getLogger(__name__)

ROLE_INITIATE = "Calls.Initiate.All"
ROLE_MEDIA = "Calls.AccessMedia.All"
CALLS_FULL_RETRY_AFTER_S = 5
"""``Retry-After`` of a call refused for the calls limit (``max_calls``)."""

TONE_TO_KEY = {entry.tone: entry.key for entry in ALL_KEYS.values()}
"""Graph tone name -> keypad key (the keypad's own table; flash is ``F``)."""
KEY_TO_TONE = {entry.key: entry.tone for entry in ALL_KEYS.values()}
E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
RESOURCE_ID = re.compile(r"[A-Za-z0-9._~-]{1,64}")
"""What a call or operation id can be (ours are UUIDs): anything else is not found, before any
database sees it (PostgreSQL refuses NUL in text)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Our choices where Graph is silent (documented in docs/api.md)."""

    max_tones: int = 100
    delay_min_ms: int = 40
    """Shortest gap we send (Q.24); a smaller ``delayBetweenTonesMs`` (Graph takes any) is
    raised to it."""
    delay_max_ms: int = 10_000
    delay_default_ms: int = 100
    tone_min_ms: int = 40
    tone_max_ms: int = 2_000
    tone_default_ms: int = 100


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    sip_trunk_uri: str | None = None
    """Template for E.164 targets (``{number}``); ``None``: only ``sip:`` targets."""
    callback_allowed_hosts: tuple[str, ...] = ()
    incoming_tenant_id: str = "00000000-0000-0000-0000-000000000000"
    incoming_app_id: str = "dtmfgraph-dev-app"
    incoming_callback_uri: str | None = None
    incoming_answer_timeout_s: float = 15.0
    keepalive_timeout_s: float = 2700.0
    dial_timeout_s: float = 60.0
    node_id: str = "dtmfgraph"
    """This process's name among the nodes sharing the database (the owner of its calls)."""
    node_heartbeat_s: float = 1.0
    node_dead_after_s: float = 5.0
    """A node with no heartbeat for this long is gone: another node ends its calls."""
    limits: Limits = field(default_factory=Limits)
    public_base_url: str = "http://127.0.0.1:8000"
    """Where recordings are downloaded from (``{public_base_url}/recordings/{opId}``)."""
    prompts: PromptConfig = field(default_factory=PromptConfig)
    record_media_timeout_s: float = MEDIA_TIMEOUT_S
    """A recordResponse that hears no audio at all for this long fails mediaReceiveTimeout."""
    max_calls: int = 0
    """Calls this node carries at once (0: no limit); past it new ones are refused 503."""
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)
    """The media load past which new calls and media operations are refused 503."""


class Observer(Protocol):
    """What the service reports for monitoring (``dtmfgraph.api.metrics`` implements it).

    Calls come after the change is committed; they must be cheap and never raise."""

    def operation_finished(
        self, kind: OpKind, status: OpStatus, reason: CompletionReason | None
    ) -> None: ...

    def dtmf_keys_sent(self, method: DtmfMethod, count: int) -> None: ...


class NullObserver:
    """An :class:`Observer` that ignores everything."""

    def operation_finished(
        self, kind: OpKind, status: OpStatus, reason: CompletionReason | None
    ) -> None:
        return None

    def dtmf_keys_sent(self, method: DtmfMethod, count: int) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: str
    app_id: str
    roles: frozenset[str]


@dataclass(frozen=True, slots=True)
class DtmfRequest:
    tones: list[str]
    delay_ms: int | None = None
    tone_ms: int | None = None
    method: DtmfMethod = DtmfMethod.AUTO
    client_context: str | None = None
    repeat_key: str | None = None


@dataclass(frozen=True, slots=True)
class NewCall:
    callback_uri: str
    targets: list[dict[str, Any]]
    tenant_id: str | None
    properties: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PromptRequest:
    """A playPrompt: ``prompts`` played in order, all again and again with ``loop``."""

    prompts: list[PromptRef]
    loop: bool = False
    client_context: str | None = None
    repeat_key: str | None = None


@dataclass(frozen=True, slots=True)
class RecordRequest:
    """A recordResponse (see :class:`~dtmfgraph.service.recordings.RecordParams`)."""

    params: RecordParams
    client_context: str | None = None
    repeat_key: str | None = None


@dataclass(slots=True)
class _Live:
    """Runtime state of a call that this process owns."""

    call_id: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    media: MediaCall | None = None
    incoming: IncomingCall | None = None
    mq: MediaQueue = field(init=False)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    forced_result: ResultInfo | None = None
    ending: bool = False
    last_keepalive: float = field(default_factory=now)


def map_end(reason: EndReason) -> ResultInfo:
    """Media end reason -> Graph resultInfo."""
    if reason.kind is EndKind.LOCAL_BYE:
        return Results.ENDED_BY_APP
    if reason.kind is EndKind.REMOTE_BYE:
        return Results.ENDED_BY_REMOTE
    if reason.kind is EndKind.TIMEOUT:
        return Results.MEDIA_LOST
    return Results.MEDIA_ERROR


def map_dial_error(err: DialError) -> ResultInfo:
    """Final SIP response of a failed dial -> Graph resultInfo (see docs/api.md)."""
    if isinstance(err, MediaSetupError):
        return Results.MEDIA_ERROR
    s = err.sip_status
    if s in (404, 604):
        return Results.NOT_FOUND
    if s in (408, 0) and "route" not in err.reason:
        return Results.NO_SIGNALLING
    if s in (480, 486, 600, 603):
        return ResultInfo(480, 10076, f"The callee could not be reached (SIP {s} {err.reason}).")
    why = f"SIP {s} {err.reason}" if s else err.reason
    if not why:
        return Results.NO_ROUTE
    return ResultInfo(480, 10134, f"The call cannot be routed ({why}).")


LOOPBACK_CALLBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
"""Hosts that may take plain-http callbacks without being allow-listed (the rest of 127/8 must
be listed like any other host)."""


CALLBACK_URI_MAX = 2048
"""Longest callbackUri taken (browsers' and servers' common URL limit)."""
_URI_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
"""The characters RFC 3986 allows in a URI (nothing else: no spaces, controls or non-ASCII)."""


def check_callback_uri(uri: str, allowed_hosts: tuple[str, ...]) -> None:
    """A URL we can deliver to: at most 2,048 characters of RFC 3986, an absolute http(s) URL
    with a host and a port in 1-65535; https only, except loopback hosts and hosts on the
    allow-list (http allowed there)."""
    if len(uri) > CALLBACK_URI_MAX:
        raise InvalidRequestError(
            f"callbackUri: is {len(uri)} characters long; at most {CALLBACK_URI_MAX} are allowed"
        )
    if not _URI_CHARS.fullmatch(uri):
        raise InvalidRequestError(
            f"callbackUri: {uri!r} holds characters a URL may not (spaces, control or non-ASCII "
            "characters: percent-encode them)"
        )
    try:
        parts = urlsplit(uri)
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError as exc:
        raise InvalidRequestError(f"callbackUri: {uri!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidRequestError(f"callbackUri: {uri!r} is not an absolute http(s) URL")
    if port == 0:
        raise InvalidRequestError(f"callbackUri: {uri!r}: the port must be 1 to 65535")
    if parts.scheme == "https":
        return
    if host not in LOOPBACK_CALLBACK_HOSTS and host not in allowed_hosts:
        raise InvalidRequestError(
            f"callbackUri: must be an https URL (http is allowed only for loopback and "
            f"allow-listed hosts), got {uri!r}"
        )


class CallService:
    """The domain service behind the Graph API."""

    def __init__(
        self,
        repo: Repository,
        media: MediaBackend,
        config: ServiceConfig,
        on_commit: Callable[[], None] = lambda: None,
        observer: Observer | None = None,
    ) -> None:
        self._repo = repo
        self._media = media
        self._cfg = config
        self._on_commit = on_commit
        self._observer: Observer = observer or NullObserver()
        self.tap: CallTap = NullTap()
        """Told what happens to each call (a console's journal); see :mod:`.hooks`."""
        self._emitted: dict[int, list[tuple[Event, str]]] = {}
        self._finished: dict[int, list[Operation]] = {}
        self._live: dict[str, _Live] = {}
        self._records: dict[str, CallRecord] = {}
        self._reap_guard = ReapGuard(config.node_dead_after_s)
        """The calls this node carries, in memory (kept after a call ends until its last
        changes are in the store): their reads are served from here."""
        health = getattr(repo, "health", None)
        if not isinstance(health, StoreHealth):
            health = StoreHealth()
        self.writes = WriteBehind(
            repo,
            health,
            drained=self._drained,
            probe=lambda uow: uow.node_alive(config.node_id, now()),
        )
        """Writes the changes of those calls, in order, retried while the store is away."""
        self._bg: set[asyncio.Task[Any]] = set()
        self.prompts = PromptFetcher(config.prompts)
        self.base_url = config.public_base_url.rstrip("/")
        self.record_media_timeout_s = config.record_media_timeout_s
        self.control = CallControls(self)
        """Participants, mute/unmute, updateRecordingStatus (see :mod:`.control`)."""
        self.transfers = Transfers(self)
        """The transfer action (see :mod:`.transfer`)."""
        self.refusals = Refusals(log)
        """Calls refused for the calls limit (``max_calls``), counted and logged per burst."""
        self.admission = Admission(
            config.admission, self.refusals, lambda: getattr(self._media, "load", None), log
        )
        """New work refused while the media clock runs late (see :mod:`.admission`)."""

    def _new_live(self, call: Call, incoming: IncomingCall | None = None) -> _Live:
        live = _Live(call.id, incoming=incoming)
        live.mq = MediaQueue(self, call.id, live.lock)
        self._live[call.id] = live
        self._records[call.id] = CallRecord(copy.deepcopy(call))
        return live

    def _forget(self, call_id: str) -> None:
        """The node no longer carries ``call_id`` (its record goes once its writes landed)."""
        self._live.pop(call_id, None)
        record = self._records.get(call_id)
        if record is not None:
            record.live = False
            if not self.writes.backlog(call_id):
                del self._records[call_id]

    def _drained(self, call_id: str) -> None:
        record = self._records.get(call_id)
        if record is not None and not record.live:
            del self._records[call_id]

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Recover after a restart: the media of this node's calls died with its last run
        (and so did that of calls of nodes that stopped beating), so end those calls; start the
        media; then hang up the far ends those calls had (they never heard), from the records
        kept when the calls were established. Then beat, and reap the calls of nodes that die
        later."""
        async with self._unit() as uow:
            await uow.node_alive(self._cfg.node_id, now(), started=True)
        records = await self._end_orphans(own=True)
        set_admission = getattr(self._media, "set_admission", None)
        if set_admission is not None:
            set_admission(self.calls_limit_refusal)  # refused 503 before ringing
        await self._media.start(self._on_incoming)
        self._hang_up_orphans(records)
        await self._hold_registration()
        self._spawn(self._keepalive_watchdog())
        self._spawn(self._heartbeat())

    async def _end_orphans(self, *, own: bool) -> list[tuple[str, dict[str, Any]]]:
        """End the calls whose node is gone (``own``: and this node's from its last run) and
        free the notifications those nodes had claimed; return the calls' media records."""
        records: list[tuple[str, dict[str, Any]]] = []
        dead_before = now() - self._cfg.node_dead_after_s
        async with self._unit() as uow:
            await uow.release_claims(self._cfg.node_id, dead_before, own=own)
            for call in await uow.orphaned_calls(self._cfg.node_id, dead_before, own=own):
                if call.media_record is not None:
                    records.append((call.id, call.media_record))
                mine = call.node_id in (self._cfg.node_id, None)
                if not mine:
                    log.warning("call %s: its node %s is gone; ending it", call.id, call.node_id)
                result = Results.RESTART_LOST if mine else Results.NODE_LOST
                await self._finish_call(uow, call, result)
        return records

    def _hang_up_orphans(self, records: list[tuple[str, dict[str, Any]]]) -> None:
        for call_id, record in records:
            if self._media.end_recorded(record):
                log.info("call %s: hung up the far end its gone node left", call_id)

    async def _heartbeat(self) -> None:
        """Tell the other nodes this one is alive; end the calls of nodes that are not (not
        right after an outage of this node's store: see :class:`.lease.ReapGuard`)."""
        while True:
            await asyncio.sleep(self._cfg.node_heartbeat_s)
            try:
                async with self._repo.beat_unit() as uow:
                    await uow.node_alive(self._cfg.node_id, now())
                self._reap_guard.beat_ok()
                async with self._unit() as uow:
                    await uow.delete_expired_recordings(now())
                if self._reap_guard.may_reap():
                    self._hang_up_orphans(await self._end_orphans(own=False))
                    await self._hold_registration()
            except StoreUnavailableError:
                self._reap_guard.beat_failed()  # logged once per outage by the store's health
            except Exception:
                self._reap_guard.beat_failed()
                log.exception("node heartbeat failed")

    async def _hold_registration(self) -> None:
        """The first node alive (by id) holds the media's registration, the others drop it:
        a registrar would fork each incoming call to every node registered (so each would
        announce it). When that node dies, the next one takes over."""
        async with self._unit() as uow:
            first = await uow.first_node_alive(
                self._cfg.node_id, now() - self._cfg.node_dead_after_s
            )
        await self._media.hold_registration(first)

    async def close(self) -> None:
        # First (while no task of ours is cut off mid-transaction): this node's calls end now,
        # recorded and announced (the notifications go out from the outbox, on the next start
        # or from another node), and the media hangs up their far ends below, so nobody ends
        # them again later (no second BYE); and the other nodes need not wait
        # node_dead_after_s, so the registration moves to the next node at once. Changes still
        # waiting for the store get a few seconds to land first.
        await self.writes.flush(5.0)
        try:
            async with self._unit() as uow:
                calls = await uow.calls_of_node(self._cfg.node_id)
                for call in calls:
                    await self._finish_call(uow, call, Results.SERVICE_STOPPED)
                await uow.node_stopped(self._cfg.node_id)
            if calls:
                log.info("stopping: ended the %d call(s) this node carried", len(calls))
        except Exception:
            log.exception("could not record that this node stopped")
        for task in list(self._bg):
            task.cancel()
        for live in list(self._live.values()):
            for task in list(live.tasks):
                task.cancel()
        await asyncio.gather(*self._bg, return_exceptions=True)
        await self.writes.close()
        await self.prompts.close()
        await self._media.close()

    def _spawn(
        self, coro: Coroutine[Any, Any, Any], live: _Live | None = None
    ) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        bucket = live.tasks if live is not None else self._bg
        bucket.add(task)
        task.add_done_callback(bucket.discard)
        task.add_done_callback(_log_failure)
        return task

    @contextlib.asynccontextmanager
    async def _unit(self) -> AsyncIterator[UnitOfWork]:
        """A transaction that may emit events; after its commit the outbox is woken (if it
        did) and the operations it finished are reported to the observer."""
        finished: list[Operation] = []
        emitted: list[tuple[Event, str]] = []
        async with self._repo.unit() as uow:
            self._finished[id(uow)] = finished
            self._emitted[id(uow)] = emitted
            try:
                yield uow
            finally:
                del self._finished[id(uow)]
                del self._emitted[id(uow)]
        if emitted:  # the outbox has new rows (an idle one is not woken for nothing)
            self._on_commit()
        for op in finished:
            self._report_finished(op)
        if emitted:
            self._tell(self.tap.committed, [e for e, _ in emitted], [a for _, a in emitted])

    @contextlib.asynccontextmanager
    async def _call_unit(self, call_id: str, *, droppable: bool = False) -> AsyncIterator[LiveUnit]:
        """A change of a call this node carries: made in memory, then written through
        :attr:`writes` (at once, or in order once the store is back); what :meth:`_unit` does
        after its commit happens when the change lands."""
        record = self._records.get(call_id)
        if record is None:  # it ended (and was written) while this waited for its lock
            raise NotFoundError(f"call {call_id} has ended")
        uow = LiveUnit(record)
        finished: list[Operation] = []
        emitted: list[tuple[Event, str]] = []
        self._finished[id(uow)] = finished
        self._emitted[id(uow)] = emitted
        try:
            yield uow
        finally:
            del self._finished[id(uow)]
            del self._emitted[id(uow)]
        uow.commit()

        def landed() -> None:
            if emitted:
                self._on_commit()
            for op in finished:
                self._report_finished(op)
            if emitted:
                self._tell(self.tap.committed, [e for e, _ in emitted], [a for _, a in emitted])

        await self.writes.submit(Batch(call_id, uow.steps, landed, droppable), record)

    @contextlib.asynccontextmanager
    async def _changing(self, call_id: str) -> AsyncIterator[UnitOfWork]:
        """A change a request makes to ``call_id``: under its lock and through :attr:`writes`
        when this node carries it (503 while its earlier changes wait for the store), else a
        transaction of the store."""
        live = self._live.get(call_id)
        if live is None:
            async with self._unit() as uow:
                yield uow
            return
        self.writes.accepting(call_id)
        async with live.lock, self._call_unit(call_id) as live_uow:
            yield live_uow

    def _reading(self, call_id: str) -> contextlib.AbstractAsyncContextManager[UnitOfWork]:
        """Reads of ``call_id``: from memory when this node has it, else from the store."""
        record = self._records.get(call_id)
        if record is None:
            return self._repo.unit()
        return contextlib.nullcontext(LiveUnit(record, copies=False))

    def _tell(self, hook: Callable[..., None], *args: Any) -> None:
        """Call a hook of :attr:`tap`; what it raises is logged, never the service's."""
        try:
            hook(*args)
        except Exception:
            log.exception("call tap %s failed", getattr(hook, "__name__", hook))

    def _report_finished(self, op: Operation) -> None:
        with contextlib.suppress(Exception):
            self._observer.operation_finished(op.kind, op.status, op.completion_reason)

    def _note_finished(self, uow: UnitOfWork, op: Operation) -> None:
        """``op`` ended in this transaction (reported once it commits)."""
        pending = self._finished.get(id(uow))
        if pending is not None:
            pending.append(op)
        else:  # a transaction not opened by _unit(): report at once
            self._report_finished(op)

    # --- helpers --------------------------------------------------------------------------
    @staticmethod
    def _require(p: Principal, role: str) -> None:
        if role not in p.roles:
            raise AccessDeniedError(f"this action requires the application role {role}")

    @staticmethod
    def _require_read(p: Principal) -> None:
        """Reading a call or its operations needs either calls role (as Graph's GET call)."""
        if not p.roles & {ROLE_INITIATE, ROLE_MEDIA}:
            raise AccessDeniedError(
                f"reading calls requires the application role {ROLE_INITIATE} or {ROLE_MEDIA}"
            )

    @staticmethod
    async def _repeat(
        uow: UnitOfWork, call_id: str, repeat_key: str | None, kind: OpKind
    ) -> Operation | None:
        """The operation an earlier request with ``repeat_key`` made on the call, if any; a key
        used there by another action is refused (keys are not shared between kinds)."""
        if repeat_key is None or (found := await uow.find_repeat(call_id, repeat_key)) is None:
            return None
        if found.kind is not kind:
            raise InvalidRequestError(
                f"Repeatability-Request-ID: {repeat_key!r} was already used on this call by "
                f"{found.kind.value.removesuffix('Operation')}; use a new key for each request"
            )
        return found

    async def _owned(self, uow: UnitOfWork, p: Principal, call_id: str) -> Call:
        if not RESOURCE_ID.fullmatch(call_id):
            raise NotFoundError(f"call {call_id!r} was not found")
        call = await uow.get_call(call_id)
        if call is None or call.tenant_id != p.tenant_id or call.app_id != p.app_id:
            raise NotFoundError(f"call {call_id} was not found")
        return call

    async def _emit(
        self, uow: UnitOfWork, call: Call, kind: EventKind, op: Operation | None = None
    ) -> None:
        event = Event(kind, call.id, snapshot_call(call), snapshot_operation(op) if op else None)
        await uow.add_event(event, callback_uri=call.callback_uri, app_id=call.app_id)
        if (emitted := self._emitted.get(id(uow))) is not None:
            emitted.append((event, call.app_id))
        if kind is EventKind.OPERATION_DELETED and op is not None:
            self._note_finished(uow, op)

    def _resolve_target(self, targets: list[dict[str, Any]]) -> str:
        identity = targets[0].get("identity")
        if not isinstance(identity, dict):
            raise InvalidRequestError("targets[0].identity: is required")
        entries = {k: v for k, v in identity.items() if isinstance(v, dict)}
        for name, ident in entries.items():
            ident_id = str(ident.get("id") or "")
            if ident_id.lower().startswith(("sip:", "sips:")):
                return ident_id
            if name == "phone" and E164.match(ident_id):
                if self._cfg.sip_trunk_uri is None:
                    raise InvalidRequestError(
                        f"targets[0].identity.phone.id: {ident_id} is a phone number but no SIP "
                        "trunk is configured (dtmfgraph serve --sip-trunk HOST[:PORT]); give a "
                        "sip: URI as the id to call an endpoint directly"
                    )
                return self._cfg.sip_trunk_uri.replace("{number}", ident_id)
        raise InvalidRequestError(
            "targets[0].identity: no dialable id: give phone.id as an E.164 number "
            "(e.g. +14255550100) or any identity id as a sip:/sips: URI"
        )

    def calls_limit_refusal(self) -> ServiceUnavailableError | None:
        """The 503 for a new call when this node already carries ``max_calls`` calls (counted
        and logged once per burst) or its media is overloaded (:mod:`.admission`), else
        ``None``."""
        limit = self._cfg.max_calls
        if not limit or len(self._live) < limit:
            return self.admission.new_call(asyncio.get_running_loop().time())
        detail = f"this node carries {len(self._live)} calls (max_calls={limit})"
        self.refusals.refuse(CALLS, detail, asyncio.get_running_loop().time())
        return ServiceUnavailableError(
            f"{detail}: try again shortly", retry_after_s=CALLS_FULL_RETRY_AFTER_S
        )

    # --- calls ----------------------------------------------------------------------------
    async def create_call(self, p: Principal, new: NewCall) -> Call:
        self._require(p, ROLE_INITIATE)
        check_callback_uri(new.callback_uri, self._cfg.callback_allowed_hosts)
        if new.tenant_id and new.tenant_id != p.tenant_id:
            raise InvalidRequestError("tenantId: does not match the caller's tenant")
        target = self._resolve_target(new.targets)
        refusal = self.calls_limit_refusal()
        if refusal is not None:
            raise refusal
        check_capacity = getattr(self._media, "check_capacity", None)
        if check_capacity is not None:
            check_capacity()  # ServiceUnavailableError (503) before a 201: no RTP port free
        call = Call(
            id=str(uuid.uuid4()),
            tenant_id=p.tenant_id,
            app_id=p.app_id,
            direction=Direction.OUTGOING,
            state=CallState.ESTABLISHING,
            node_id=self._cfg.node_id,
            callback_uri=new.callback_uri,
            target_uri=target,
            properties=new.properties,
        )
        self.writes.accepting(call.id)
        self.prefetch_media(new.properties.get("mediaConfig"))
        live = self._new_live(call)
        try:
            async with live.lock, self._call_unit(call.id) as uow:
                await uow.insert_call(call)
                await self._emit(uow, call, EventKind.CALL_UPDATED)
        except BaseException:
            self._forget(call.id)  # not taken: nothing of it stays in memory
            raise
        self._spawn(self._dial(live, target), live)
        return call

    def prefetch_media(self, media_config: Any) -> None:
        """``mediaConfig.preFetchMedia``: fetch those prompts now (bad entries are skipped)."""
        items = media_config.get("preFetchMedia") if isinstance(media_config, dict) else None
        if not isinstance(items, list):
            return
        refs = []
        for item in items[:20]:
            uri = item.get("uri") if isinstance(item, dict) else None
            rid = item.get("resourceId")
            try:
                self.prompts.check_uri(uri, "preFetchMedia")  # type: ignore[arg-type]
            except InvalidRequestError:
                continue
            refs.append(PromptRef(str(uri), str(rid) if isinstance(rid, str) and rid else None))
        self.prompts.prefetch(refs)

    async def _dial(self, live: _Live, target: str) -> None:
        DIALLING.set(live.call_id)  # this task's SIP messages belong to this call
        try:
            media = await self._media.dial(target, timeout=self._cfg.dial_timeout_s)
        except DialError as err:
            async with live.lock, self._call_unit(live.call_id) as uow:
                call = await uow.get_call(live.call_id)
                if call is not None and call.state != CallState.TERMINATED:
                    await self._finish_call(uow, call, map_dial_error(err))
            self._forget(live.call_id)
            return
        await self._established(live, media)

    async def _established(self, live: _Live, media: MediaCall) -> None:
        async with live.lock:
            live.media = media
            async with self._call_unit(live.call_id) as uow:
                call = await uow.get_call(live.call_id)
                if call is None or call.ended:
                    await media.hangup()
                    return
                call.state = CallState.ESTABLISHED
                call.media_record = media.recovery_record()
                call.audio_held = not media.audio_active
                call.control.far_direction = media.audio_direction
                await uow.update_call(call)
                await self._emit(uow, call, EventKind.CALL_UPDATED)
                await live.mq.mark_head_running(uow)
        self._tell(self.tap.media_attached, live.call_id, media)
        self._spawn(live.mq.run(media), live)
        self._spawn(self._listen(live, media), live)
        self._spawn(self._watch_audio(live, media), live)
        self._spawn(self.control.follow_far_ends(live, media), live)
        self._spawn(self._watch_end(live, media), live)
        live.mq.wake.set()

    def carries(self, call_id: str) -> bool:
        """Whether this node carries ``call_id`` now (a live call of its own)."""
        return call_id in self._live

    def media_of(self, call_id: str) -> MediaCall | None:
        """The media of a live call this node carries (``None``: not up, or not here)."""
        live = self._live.get(call_id)
        return live.media if live is not None else None

    async def get_call(self, p: Principal, call_id: str) -> Call:
        self._require_read(p)
        async with self._reading(call_id) as uow:
            return await self._owned(uow, p, call_id)

    async def hangup(self, p: Principal, call_id: str) -> None:
        """Always taken for a call this node carries, the store up or not: the far end is hung
        up now, the call's end is written when the store takes it."""
        self._require(p, ROLE_INITIATE)
        live = self._live.get(call_id)
        if live is None:
            async with self._reading(call_id) as uow:
                call = await self._owned(uow, p, call_id)
            raise NotFoundError(f"call {call.id} has already ended")
        media: MediaCall | None = None
        async with live.lock, self._call_unit(call_id) as uow:
            call = await self._owned(uow, p, call_id)
            if call.ended:
                raise NotFoundError(f"call {call_id} has already ended")
            call.state = CallState.TERMINATING
            await uow.update_call(call)
            await self._emit(uow, call, EventKind.CALL_UPDATED)
            if live.forced_result is Results.TRANSFERRED:  # the app ends it, not the transfer
                live.forced_result = None
            media = live.media
            if media is None:  # still dialling, or incoming and never answered
                for task in list(live.tasks):
                    task.cancel()
                if live.incoming is not None:
                    await live.incoming.reject(603)
                await self._finish_call(uow, call, Results.ENDED_BY_APP)
        if media is None:
            self._forget(call_id)
        else:
            await media.hangup()

    async def keep_alive(self, p: Principal, call_id: str) -> None:
        self._require(p, ROLE_INITIATE)
        live = self._live.get(call_id)
        if live is None:
            async with self._reading(call_id) as uow:
                await self._owned(uow, p, call_id)
            raise NotFoundError(f"call {call_id} has ended")
        self.writes.accepting(call_id)
        async with live.lock, self._call_unit(call_id) as uow:
            call = await self._owned(uow, p, call_id)
            if call.state is CallState.TERMINATED:
                raise NotFoundError(f"call {call_id} has ended")
            call.last_keepalive_at = now()
            await uow.update_call(call)
        live.last_keepalive = call.last_keepalive_at

    async def _finish_call(self, uow: UnitOfWork, call: Call, result: ResultInfo) -> None:
        """End every unfinished operation (failed), then the call (terminated) with ``result``."""
        for op in await uow.list_operations(call.id):
            if not op.finished:
                op.status = OpStatus.FAILED
                op.result_info = result
                if op.kind.media:
                    op.completion_reason = call_end_reason(op.kind)
                if op.kind is OpKind.RECORD:
                    op.recording_location = op.recording_access_token = ""
                await uow.update_operation(op)
                await self._emit(uow, call, EventKind.OPERATION_DELETED, op)
        call.state = CallState.TERMINATED
        call.result_info = result
        call.media_record = None
        await uow.update_call(call)
        await self._emit(uow, call, EventKind.CALL_DELETED)

    async def _watch_end(self, live: _Live, media: MediaCall) -> None:
        reason = await media.ended
        live.ending = True
        await live.mq.end()
        async with live.lock, self._call_unit(live.call_id) as uow:
            call = await uow.get_call(live.call_id)
            if call is not None and call.state is not CallState.TERMINATED:
                result = live.forced_result or map_end(reason)
                await live.mq.save_partial(uow, call, result)
                await self._finish_call(uow, call, result)
        self._forget(live.call_id)
        me = asyncio.current_task()
        for task in list(live.tasks):
            if task is not me:
                task.cancel()

    async def _keepalive_watchdog(self) -> None:
        timeout = self._cfg.keepalive_timeout_s
        while True:
            await asyncio.sleep(min(max(timeout / 4, 0.05), 30.0))
            t = now()
            for live in list(self._live.values()):
                if live.media is not None and not live.ending and t - live.last_keepalive > timeout:
                    live.forced_result = Results.KEEPALIVE_TIMEOUT
                    try:
                        await live.media.hangup()
                    except Exception:  # one call's failure never stops the watchdog
                        log.exception("call %s: hanging up after keepAlive timeout", live.call_id)

    # --- incoming -------------------------------------------------------------------------
    async def _on_incoming(self, inc: IncomingCall) -> None:
        if self._cfg.incoming_callback_uri is None:
            log.warning("incoming call from %s rejected: no incoming_callback_uri", inc.caller)
            await inc.reject(480)
            return
        if self.calls_limit_refusal() is not None:  # a backend without set_admission
            await inc.reject(503)
            return
        caller = {"@odata.type": "#microsoft.graph.identitySet"}
        ident = {"id": inc.caller, "displayName": inc.caller}
        caller["phone" if E164.match(inc.caller) else "user"] = ident  # type: ignore[assignment]
        call = Call(
            id=str(uuid.uuid4()),
            tenant_id=self._cfg.incoming_tenant_id,
            app_id=self._cfg.incoming_app_id,
            direction=Direction.INCOMING,
            state=CallState.INCOMING,
            node_id=self._cfg.node_id,
            callback_uri=self._cfg.incoming_callback_uri,
            target_uri=inc.callee,
            properties={
                "source": {
                    "@odata.type": "#microsoft.graph.participantInfo",
                    "identity": caller,
                },
                "targets": [
                    {
                        "@odata.type": "#microsoft.graph.invitationParticipantInfo",
                        "identity": {
                            "@odata.type": "#microsoft.graph.identitySet",
                            "application": {
                                "@odata.type": "#microsoft.graph.identity",
                                "id": self._cfg.incoming_app_id,
                                "displayName": inc.callee,
                            },
                        },
                    }
                ],
                "requestedModalities": ["audio"],
            },
        )
        live = self._new_live(call, incoming=inc)
        async with live.lock, self._call_unit(call.id) as uow:
            await uow.insert_call(call)
            await self._emit(uow, call, EventKind.CALL_CREATED)
        self._tell(self.tap.incoming, call.id, inc)
        self._spawn(self._answer_timeout(live), live)
        self._spawn(self._caller_gave_up(live, inc), live)

    async def _caller_gave_up(self, live: _Live, inc: IncomingCall) -> None:
        """The caller hangs up while the call is still ``incoming``: it ends 200/4097."""
        await inc.cancelled
        async with live.lock:
            if live.media is not None or live.incoming is None:
                return
            async with self._call_unit(live.call_id) as uow:
                call = await uow.get_call(live.call_id)
                if call is not None and call.state in (CallState.INCOMING, CallState.ESTABLISHING):
                    await self._finish_call(uow, call, Results.ENDED_BY_REMOTE)
        self._forget(live.call_id)
        me = asyncio.current_task()
        for task in list(live.tasks):
            if task is not me:
                task.cancel()

    async def _answer_timeout(self, live: _Live) -> None:
        await asyncio.sleep(self._cfg.incoming_answer_timeout_s)
        async with live.lock:
            if live.media is not None or live.incoming is None:
                return
            async with self._reading(live.call_id) as uow:
                call = await uow.get_call(live.call_id)
            if call is not None and call.state is CallState.ESTABLISHING:
                return  # being answered: the answer decides
            await live.incoming.reject(480)
            async with self._call_unit(live.call_id) as uow:
                call = await uow.get_call(live.call_id)
                if call is not None and call.state is CallState.INCOMING:
                    await self._finish_call(uow, call, Results.ANSWER_TIMEOUT)
        self._forget(live.call_id)
        me = asyncio.current_task()
        for task in list(live.tasks):  # the wait for a CANCEL that a caller gone never sends
            if task is not me:
                task.cancel()

    async def _incoming_live(self, p: Principal, call_id: str) -> tuple[_Live, IncomingCall]:
        async with self._reading(call_id) as uow:
            call = await self._owned(uow, p, call_id)
        live = self._live.get(call_id)
        if call.state is not CallState.INCOMING or live is None or live.incoming is None:
            raise NotAllowedError(f"call {call_id} is {call.state.value}, not incoming")
        return live, live.incoming

    async def answer(self, p: Principal, call_id: str, callback_uri: str | None) -> None:
        self._require(p, ROLE_INITIATE)
        if callback_uri is not None:
            check_callback_uri(callback_uri, self._cfg.callback_allowed_hosts)
        live, inc = await self._incoming_live(p, call_id)
        refusal = self.admission.new_call(asyncio.get_running_loop().time())
        if refusal is not None:
            raise refusal  # still ringing: the client may answer again after Retry-After
        async with live.lock, self._call_unit(call_id) as uow:
            call = await self._owned(uow, p, call_id)
            if call.state is not CallState.INCOMING:
                raise NotAllowedError(f"call {call_id} is {call.state.value}, not incoming")
            if callback_uri is not None:
                call.callback_uri = callback_uri
            call.state = CallState.ESTABLISHING  # Docs call-answer: establishing, then established
            await uow.update_call(call)
            await self._emit(uow, call, EventKind.CALL_UPDATED)
        live.last_keepalive = now()
        try:
            media = await inc.answer()
        except MediaBackendError as exc:
            gone = isinstance(exc, CallEndedError)
            async with live.lock, self._call_unit(call_id) as uow:
                call = await self._owned(uow, p, call_id)
                if not call.ended:
                    result = Results.ENDED_BY_REMOTE if gone else Results.MEDIA_ERROR
                    await self._finish_call(uow, call, result)
            for task in list(live.tasks):
                task.cancel()
            self._forget(call_id)
            raise NotAllowedError(f"call {call_id} could not be answered: {exc}") from exc
        await self._established(live, media)

    async def reject(self, p: Principal, call_id: str, reason: str) -> None:
        self._require(p, ROLE_INITIATE)
        live, inc = await self._incoming_live(p, call_id)
        await inc.reject({"busy": 486, "forbidden": 403}.get(reason, 603))
        async with live.lock, self._call_unit(call_id) as uow:
            call = await self._owned(uow, p, call_id)
            await self._finish_call(uow, call, Results.REJECTED)
        for task in list(live.tasks):
            task.cancel()
        self._forget(call_id)

    # --- operations -----------------------------------------------------------------------
    async def list_operations(self, p: Principal, call_id: str) -> list[Operation]:
        self._require_read(p)
        async with self._reading(call_id) as uow:
            await self._owned(uow, p, call_id)
            return await uow.list_operations(call_id)

    async def get_operation(self, p: Principal, call_id: str, op_id: str) -> Operation:
        self._require_read(p)
        async with self._reading(call_id) as uow:
            await self._owned(uow, p, call_id)
            op = await uow.get_operation(call_id, op_id) if RESOURCE_ID.fullmatch(op_id) else None
        if op is None:
            raise NotFoundError(f"operation {op_id!r} was not found on call {call_id}")
        return op

    def _validate_dtmf(self, req: DtmfRequest) -> tuple[int, int]:
        lim = self._cfg.limits
        if not req.tones:
            raise InvalidRequestError("tones: must contain at least one tone")
        if len(req.tones) > lim.max_tones:
            raise InvalidRequestError(
                f"tones: at most {lim.max_tones} tones per request, got {len(req.tones)}"
            )
        for i, tone in enumerate(req.tones):
            if tone not in TONE_TO_KEY:
                raise InvalidRequestError(f"tones[{i}]: {tone!r} is not a Graph tone")
        delay = lim.delay_default_ms if req.delay_ms is None else req.delay_ms
        if not 0 <= delay <= lim.delay_max_ms:
            raise InvalidRequestError(
                f"delayBetweenTonesMs: must be between 0 and {lim.delay_max_ms}, got {delay}"
            )
        delay = max(delay, lim.delay_min_ms)  # Graph takes small gaps; Q.24 needs 40 ms
        tone_ms = lim.tone_default_ms if req.tone_ms is None else req.tone_ms
        if not lim.tone_min_ms <= tone_ms <= lim.tone_max_ms:
            raise InvalidRequestError(
                f"toneDurationMs: must be between {lim.tone_min_ms} and {lim.tone_max_ms}, "
                f"got {tone_ms}"
            )
        return delay, tone_ms

    @staticmethod
    def _resolve_method(media: MediaCall | None, asked: DtmfMethod, tones: list[str]) -> DtmfMethod:
        method = asked
        if media is not None:
            if asked is DtmfMethod.AUTO:
                # as the Phone's own "auto": telephone-events when negotiated, else audio
                method = DtmfMethod.RFC4733 if media.can_send_rfc4733 else DtmfMethod.INBAND
            elif asked is DtmfMethod.RFC4733 and not media.can_send_rfc4733:
                raise NotSupportedError("dtmfMethod: rfc4733 was not negotiated on this call")
            elif asked is DtmfMethod.SIPINFO and not media.can_send_sipinfo:
                raise NotSupportedError("dtmfMethod: sipinfo was not negotiated on this call")
        if method is DtmfMethod.INBAND and "flash" in tones:
            raise InvalidRequestError(
                "tones: 'flash' cannot be sent in-band (it has no tone pair); this call can only "
                "carry in-band audio"
                if asked is DtmfMethod.AUTO
                else "tones: 'flash' cannot be sent with dtmfMethod 'inband'"
            )
        return method

    async def send_dtmf(self, p: Principal, call_id: str, req: DtmfRequest) -> Operation:
        self._require(p, ROLE_INITIATE)
        delay, tone_ms = self._validate_dtmf(req)

        def make(live: _Live, running: bool) -> Operation:
            method = self._resolve_method(live.media, req.method, req.tones)
            return new_media_operation(
                call_id,
                OpKind.SEND_DTMF,
                running=running,
                client_context=req.client_context,
                repeat_key=req.repeat_key,
                tones=list(req.tones),
                delay_ms=delay,
                tone_ms=tone_ms,
                method=method,
            )

        return await self._enqueue(p, call_id, (req.repeat_key, OpKind.SEND_DTMF), make)

    async def play_prompt(self, p: Principal, call_id: str, req: PromptRequest) -> Operation:
        self._require(p, ROLE_INITIATE)
        for i, ref in enumerate(req.prompts):
            self.prompts.check_uri(ref.uri, f"prompts[{i}].mediaInfo.uri")

        def make(_live: _Live, running: bool) -> Operation:
            return new_media_operation(
                call_id,
                OpKind.PLAY_PROMPT,
                running=running,
                client_context=req.client_context,
                repeat_key=req.repeat_key,
                params={"prompts": [[r.uri, r.resource_id] for r in req.prompts], "loop": req.loop},
            )

        return await self._enqueue(p, call_id, (req.repeat_key, OpKind.PLAY_PROMPT), make)

    async def record_response(self, p: Principal, call_id: str, req: RecordRequest) -> Operation:
        self._require(p, ROLE_MEDIA)
        if req.params.prompt is not None:
            self.prompts.check_uri(req.params.prompt.uri, "prompts[0].mediaInfo.uri")

        def make(_live: _Live, running: bool) -> Operation:
            return new_media_operation(
                call_id,
                OpKind.RECORD,
                running=running,
                client_context=req.client_context,
                repeat_key=req.repeat_key,
                params=req.params.to_json(),
            )

        barge = req.params.barge_in
        repeat = (req.repeat_key, OpKind.RECORD)
        return await self._enqueue(p, call_id, repeat, make, barge_in=barge)

    async def _enqueue(
        self,
        p: Principal,
        call_id: str,
        repeat: tuple[str | None, OpKind],
        make: Callable[[_Live, bool], Operation],
        *,
        barge_in: bool = False,
    ) -> Operation:
        """Store the media operation ``make`` gives (told whether it will run at once) and queue
        it on the call (at the head, for a barge-in); a repeat of ``repeat`` (key, kind)
        returns the operation made the first time."""
        repeat_key, kind = repeat
        live = self._live.get(call_id)
        if live is None:
            async with self._reading(call_id) as uow:
                call = await self._owned(uow, p, call_id)
                if found := await self._repeat(uow, call_id, repeat_key, kind):
                    return found
            raise NotAllowedError(f"call {call_id} is {call.state.value}")
        self.writes.accepting(call_id)
        async with live.lock:
            async with self._call_unit(call_id) as uow:
                call = await self._owned(uow, p, call_id)
                if found := await self._repeat(uow, call_id, repeat_key, kind):
                    return found
                if call.state not in (CallState.ESTABLISHING, CallState.ESTABLISHED):
                    raise NotAllowedError(f"call {call_id} is {call.state.value}")
                refusal = self.admission.media_operation(asyncio.get_running_loop().time())
                if refusal is not None:
                    raise refusal  # nothing taken; what was taken before plays on in full
                up = call.state is CallState.ESTABLISHED
                current = live.mq.current
                if barge_in:
                    running = up and (current is None or current.kind is not OpKind.SEND_DTMF)
                else:
                    running = up and live.mq.idle
                op = make(live, running)
                await uow.insert_operation(op)
            if barge_in:
                await live.mq.barge_in(op)
            else:
                live.mq.push(op)
        self._tell(self.tap.operation_accepted, op)
        return op

    @staticmethod
    def tone_keys(tones: list[str]) -> list[str]:
        """Graph tone names -> keypad characters."""
        return [TONE_TO_KEY[t] for t in tones]

    def _key_sent(
        self, call_id: str, op_id: str, method: DtmfMethod
    ) -> Callable[[str, float], None]:
        def tell(key: str, at: float) -> None:
            self._tell(self.tap.key_sent, call_id, op_id, key, method.value, at)

        return tell

    def _count_keys(self, method: DtmfMethod, count: int) -> None:
        if count > 0:
            with contextlib.suppress(Exception):
                self._observer.dtmf_keys_sent(method, count)

    async def cancel_media(
        self, p: Principal, call_id: str, client_context: str | None, repeat_key: str | None
    ) -> Operation:
        self._require(p, ROLE_INITIATE)
        live = self._live.get(call_id)
        if live is None:
            async with self._reading(call_id) as uow:
                call = await self._owned(uow, p, call_id)
                if found := await self._repeat(uow, call_id, repeat_key, OpKind.CANCEL_MEDIA):
                    return found
            raise NotAllowedError(f"call {call_id} is {call.state.value}")
        self.writes.accepting(call_id)
        async with live.lock:
            async with self._reading(call_id) as uow:
                call = await self._owned(uow, p, call_id)
                if found := await self._repeat(uow, call_id, repeat_key, OpKind.CANCEL_MEDIA):
                    return found
            cancelled_ids = await live.mq.stop(lambda _kind: True)
            async with self._call_unit(call_id) as uow:
                call = await self._owned(uow, p, call_id)
                await live.mq.write_cancelled(uow, call, cancelled_ids)
                cancel_op = await self._completed_operation(
                    uow, call_id, OpKind.CANCEL_MEDIA, client_context, repeat_key
                )
        return cancel_op

    async def recording(self, op_id: str) -> Recording | None:
        """The stored recording of recordResponse ``op_id`` (``None``: unknown or deleted)."""
        if not RESOURCE_ID.fullmatch(op_id):
            return None
        async with self._repo.unit() as uow:
            return await uow.get_recording(op_id)

    async def subscribe_to_tone(
        self, p: Principal, call_id: str, client_context: str | None, repeat_key: str | None
    ) -> Operation:
        self._require(p, ROLE_MEDIA)
        live = self._live.get(call_id)
        if live is None:
            async with self._reading(call_id) as uow:
                call = await self._owned(uow, p, call_id)
                if repeat_key and (found := await uow.find_repeat(call_id, repeat_key)):
                    return found
            raise NotAllowedError(f"call {call_id} is {call.state.value}")
        self.writes.accepting(call_id)
        async with live.lock, self._call_unit(call_id) as uow:
            call = await self._owned(uow, p, call_id)
            if found := await self._repeat(uow, call_id, repeat_key, OpKind.SUBSCRIBE_TONE):
                return found
            if call.ended:
                raise NotAllowedError(f"call {call_id} is {call.state.value}")
            call.tone_subscribed = True
            await uow.update_call(call)
            op = await self._completed_operation(
                uow, call_id, OpKind.SUBSCRIBE_TONE, client_context, repeat_key
            )
        return op

    async def _completed_operation(
        self,
        uow: UnitOfWork,
        call_id: str,
        kind: OpKind,
        client_context: str | None,
        repeat_key: str | None,
    ) -> Operation:
        """Store an operation that is done as soon as it is made (cancel, subscribeToTone):
        ``completed`` with 200/0, and no notification (Graph sends none for those)."""
        op = Operation(
            id=str(uuid.uuid4()),
            call_id=call_id,
            kind=kind,
            status=OpStatus.COMPLETED,
            client_context=client_context,
            result_info=Results.OK,
            repeat_key=repeat_key,
        )
        await uow.insert_operation(op)
        self._note_finished(uow, op)
        return op

    async def _listen(self, live: _Live, media: MediaCall) -> None:
        async for info in media.keys_heard():
            self._tell(self.tap.key_heard, live.call_id, info)
            tone = KEY_TO_TONE.get(info.key.upper())
            if tone is None:
                continue
            live.mq.key_heard(info.key.upper(), info.time)
            async with live.lock, self._call_unit(live.call_id, droppable=True) as uow:
                call = await uow.get_call(live.call_id)
                if call is None or not call.tone_subscribed or call.ended:
                    continue
                call.tone_seq += 1
                call.last_tone = tone
                await uow.update_call(call)
                await self._emit(uow, call, EventKind.TONE)

    async def _watch_audio(self, live: _Live, media: MediaCall) -> None:
        """The far end holds or resumes the call: ``mediaState.audio`` follows, notified."""
        async for active in media.audio_changes():
            async with live.lock, self._call_unit(live.call_id) as uow:
                call = await uow.get_call(live.call_id)
                if call is None or call.ended:
                    continue
                if call.audio_held != (not active):
                    call.audio_held = not active
                    await uow.update_call(call)
                    await self._emit(uow, call, EventKind.CALL_UPDATED)
                if call.control.far_direction != media.audio_direction:
                    call.control.far_direction = media.audio_direction
                    await self.control.roster_changed(uow, call)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task failed", exc_info=task.exception())


__all__ = [
    "ROLE_INITIATE",
    "ROLE_MEDIA",
    "CallService",
    "DtmfRequest",
    "Limits",
    "NewCall",
    "NullObserver",
    "Observer",
    "Principal",
    "PromptRequest",
    "RecordRequest",
    "ServiceConfig",
    "check_callback_uri",
    "map_dial_error",
    "map_end",
]
