"""HttpWorkerProxy: the manager's side of a worker in another process, over HTTP.

It carries the same messages as `LocalWorkerProxy`. Orders (RunTask, StopTask, Reconcile) go
to the worker's routes, in order, retried until delivered and dropped once the node is down.
Updates come the other way: the proxy follows the worker's `GET /events?after=SEQ` stream
(the worker's own durable log), reconnecting with backoff, and tells the manager each update
with its worker seq, so the manager applies each exactly once. Each (re)connection starts with
a Reconcile: the worker reports what became of the tasks placed on it, and stops any it runs
that the manager has since failed or placed elsewhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import msgspec
import trio

from actors import Actor, ActorRef, Mailbox
from orc.clock import now
from orc.core.events import NodeDown, WorkerUpdate
from orc.core.messages import (
    GetLogs,
    ListWorkerTasks,
    LogBehind,
    Ping,
    PlacedOn,
    Reconcile,
    RunTask,
    Shutdown,
    StopTask,
)
from orc.core.model import State, Task, TaskEvent, wire_name

log = logging.getLogger("orc.remote")

ASK_TIMEOUT = 10.0
FIRST_BACKOFF = 0.05
MAX_BACKOFF = 1.0


def auth_headers(token: str) -> dict[str, str]:
    """What orc's own requests to another node carry."""
    return {"Authorization": f"Bearer {token}"} if token else {}


class Resync(msgspec.Struct, frozen=True):
    """The node came back after being down: reconcile with it again."""


class MoveTo(msgspec.Struct, frozen=True):
    """The node registered again from another address: reach it there from now on."""

    address: str


class Seen(msgspec.Struct, frozen=True):
    """To the node monitor: something (a stream line, a registration) came from `node`."""

    node: str


class StreamLine(msgspec.Struct):
    """A line of `GET /events`: an update with its seq, or a heartbeat."""

    Seq: int
    Event: WorkerUpdate | None = None  # type: ignore[valid-type]
    Heartbeat: bool = False


class ReconcileBody(msgspec.Struct, rename=wire_name, forbid_unknown_fields=True):
    """The body of a worker's `POST /reconcile`: every task placed on it."""

    tasks: list[Task]


_lines = msgspec.json.Decoder(StreamLine)


class HttpWorkerProxy(Actor):
    def __init__(
        self,
        node: str,
        address: str,
        manager: Callable[[], ActorRef],
        monitor: Callable[[], ActorRef | None],
        token: str = "",
        ttl: float = 10.0,
    ) -> None:
        self.node = node
        self.address = address
        self.manager = manager
        self.monitor = monitor
        self.token = token
        self.ttl = ttl
        self.down = False
        self.seq: int | None = None  # the last worker seq told to the manager
        self._lock = trio.Lock()  # orders and reconciles reach the worker one at a time
        self._client: httpx.AsyncClient | None = None
        self._following = trio.CancelScope()
        self._nursery: trio.Nursery | None = None
        self._last_seen = -1e9

    async def run(self, mailbox: Mailbox) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await self._connect()
                await super().run(mailbox)
                nursery.cancel_scope.cancel()
        finally:
            if self._client is not None:
                with trio.CancelScope(shield=True):
                    await self._client.aclose()

    async def _connect(self) -> None:
        """A client for the worker's current address, and its update stream followed anew (from
        the last seq told to the manager, so nothing is missed or repeated)."""
        self._following.cancel()
        if self._client is not None:
            await self._client.aclose()
        self._client = httpx.AsyncClient(
            base_url=f"http://{self.address}",
            headers=auth_headers(self.token),
            timeout=httpx.Timeout(ASK_TIMEOUT),
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=4),
        )
        self._following = trio.CancelScope()
        assert self._nursery is not None
        self._nursery.start_soon(self._follow_in, self._following)

    async def _follow_in(self, scope: trio.CancelScope) -> None:
        with scope:
            await self._follow()

    async def handle(self, message: object) -> object:
        match message:
            case RunTask(task):
                event = TaskEvent(id=task.id, state=int(State.RUNNING), task=task)
                await self._deliver("POST", "/tasks", message, msgspec.json.encode(event))
            case StopTask(task_id):
                await self._deliver("DELETE", f"/tasks/{task_id}", message)
            case Reconcile(tasks):
                await self._deliver("POST", "/reconcile", message, _reconcile_body(tasks))
            case Resync():
                self.down = False
                await self._reconcile()
            case MoveTo(address):
                log.warning("node %s moved from %s to %s", self.node, self.address, address)
                self.address = address
                self.down = False
                await self._connect()
            case NodeDown():
                self.down = True
            case GetLogs(task_id):
                return await self._logs(task_id)
            case ListWorkerTasks():
                return []
            case Shutdown() | Ping():
                return None
            case _:
                raise TypeError(f"worker proxy {self.node}: unexpected message {message!r}")
        return None

    # -- orders --------------------------------------------------------------------------------

    async def _deliver(
        self, method: str, path: str, message: object, body: bytes | None = None
    ) -> None:
        """Send until the worker answers; give up (with a log line) once the node is down."""
        assert self._client is not None
        backoff = FIRST_BACKOFF
        while True:
            if self.down:
                log.warning("node %s is down: dropping %s", self.node, _short(message))
                return
            try:
                async with self._lock:
                    r = await self._client.request(
                        method, path, content=body, headers={"Content-Type": "application/json"}
                    )
            except httpx.HTTPError as exc:
                log.info(
                    "node %s: %s not delivered (%s); retrying", self.node, _short(message), exc
                )
            else:
                if r.status_code < 500:
                    if r.status_code >= 400 and r.status_code != 404:
                        log.warning(
                            "node %s refused %s: %d %s",
                            self.node,
                            _short(message),
                            r.status_code,
                            r.text,
                        )
                    return
                log.info("node %s: %s answered %d; retrying", self.node, path, r.status_code)
            await trio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _reconcile(self) -> None:
        assert self._client is not None
        async with self._lock:
            placed, _ = await self.manager().ask(PlacedOn(self.node), timeout=ASK_TIMEOUT)  # type: ignore[misc]
            try:
                r = await self._client.post(
                    "/reconcile",
                    content=_reconcile_body(placed),
                    headers={"Content-Type": "application/json"},
                )
            except httpx.HTTPError as exc:
                log.info("node %s: reconcile not delivered (%s)", self.node, exc)
                return
            if r.status_code != 200:
                log.warning("node %s: reconcile answered %d %s", self.node, r.status_code, r.text)

    async def _logs(self, task_id: str) -> tuple[bytes, bytes] | None:
        assert self._client is not None
        try:
            r = await self._client.get(f"/tasks/{task_id}/logs")
        except httpx.HTTPError as exc:
            log.info("node %s: no logs for %s (%s)", self.node, task_id, exc)
            return None
        if r.status_code != 200:
            return None
        body = r.json()
        return body["Stdout"].encode(), body["Stderr"].encode()

    # -- updates -------------------------------------------------------------------------------

    async def _follow(self) -> None:
        """Follow the worker's update stream from the last seq the manager applied, forever."""
        assert self._client is not None
        backoff = FIRST_BACKOFF
        failing = False
        while True:
            try:
                if self.seq is None:
                    _, self.seq = await self.manager().ask(PlacedOn(self.node), timeout=ASK_TIMEOUT)  # type: ignore[misc]
                timeout = httpx.Timeout(ASK_TIMEOUT, read=max(self.ttl, 1.0))
                async with self._client.stream(
                    "GET", "/events", params={"after": self.seq}, timeout=timeout
                ) as r:
                    if r.status_code != 200:
                        body = await r.aread()
                        if await self._log_behind(r.status_code, body):
                            continue
                        text = body.decode(errors="replace")
                        raise _Refused(f"GET /events?after={self.seq}: {r.status_code} {text}")
                    if failing:
                        log.warning("node %s: update stream back from seq %d", self.node, self.seq)
                    failing, backoff = False, FIRST_BACKOFF
                    await self._seen(force=True)
                    await self._reconcile()
                    async for line in r.aiter_lines():
                        if line:
                            await self._line(_lines.decode(line))
            except (httpx.HTTPError, _Refused, msgspec.DecodeError) as exc:
                if not failing:
                    log.warning(
                        "node %s: update stream lost (%s: %s); reconnecting",
                        self.node,
                        type(exc).__name__,
                        exc,
                    )
                failing = True
            await trio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _log_behind(self, status: int, body: bytes) -> bool:
        """The worker's log ends before the seq we follow from: its data directory was wiped.
        Once the manager has logged that, follow the new log from its end."""
        try:
            last = msgspec.json.decode(body, type=_Behind).LastSeq
        except msgspec.DecodeError:
            return False
        assert self.seq is not None
        if status != 400 or last >= self.seq:
            return False
        log.warning(
            "node %s: its log ends at seq %d, below the %d applied: following it from there",
            self.node,
            last,
            self.seq,
        )
        await self.manager().ask(LogBehind(self.node, last, now()), timeout=ASK_TIMEOUT)
        self.seq = last
        return True

    async def _line(self, line: StreamLine) -> None:
        await self._seen()
        if line.Event is None:
            return
        assert self.seq is not None
        if line.Seq <= self.seq:
            return
        self.seq = line.Seq
        update = msgspec.structs.replace(line.Event, worker_seq=line.Seq)
        await self.manager().tell(update)

    async def _seen(self, force: bool = False) -> None:
        """Tell the monitor the node lives, at most ten times per TTL."""
        monitor = self.monitor()
        at = trio.current_time()
        if monitor is None or (not force and at - self._last_seen < self.ttl / 10):
            return
        self._last_seen = at
        await monitor.tell(Seen(self.node))


class _Refused(Exception):
    pass


class _Behind(msgspec.Struct):
    LastSeq: int


def _reconcile_body(tasks: tuple[Task, ...] | list[Task]) -> bytes:
    return msgspec.json.encode(ReconcileBody(list(tasks)))


def _short(message: object) -> str:
    task = getattr(message, "task", None)
    task_id = getattr(message, "task_id", None) or getattr(task, "id", "")
    return f"{type(message).__name__}({task_id})" if task_id else type(message).__name__
