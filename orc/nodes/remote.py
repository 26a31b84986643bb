"""HttpWorkerProxy: the manager's side of a worker in another process, over HTTP.

It speaks `WorkerProxy`'s protocol. Orders go to the worker's `POST /orders`, every order
waiting in the mailbox in one request (the body at most `max_body` bytes), in order, retried
until the worker answers and dropped once the node is down. Updates come the other way: the
proxy follows the worker's `GET /events?after=SEQ` stream (the worker's own durable log),
reconnecting with backoff, and tells the manager each update with its worker seq, so the
manager applies each exactly once. Each (re)connection starts with a reconcile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import cast

import httpx
import msgspec
import trio

from actors import ActorRef, Mailbox
from orc.clock import now
from orc.core.events import WireWorkerUpdate, WorkerUpdate, from_wire
from orc.core.messages import GetLogs, LogBehind, Order, OrderResults, Orders
from orc.nodes.base import ASK_TIMEOUT, Seen, StreamLine, WorkerProxy, describe

log = logging.getLogger("orc.remote")

FIRST_BACKOFF = 0.05
MAX_BACKOFF = 1.0
LEADS_POLL = 0.05  # seconds between looks at whether a manager that may have lost the lead leads
_JSON = {"Content-Type": "application/json"}


def auth_headers(token: str) -> dict[str, str]:
    """What orc's own requests to another node carry."""
    return {"Authorization": f"Bearer {token}"} if token else {}


# Updates come as the wire carries events (objects with `Type`), and become events here.
_lines = msgspec.json.Decoder(StreamLine[WireWorkerUpdate])
_results = msgspec.json.Decoder(OrderResults)
_encoder = msgspec.json.Encoder()


class HttpWorkerProxy(WorkerProxy):
    def __init__(
        self,
        node: str,
        address: str,
        manager: Callable[[], ActorRef[object]],
        monitor: Callable[[], ActorRef[object] | None],
        token: str = "",
        ttl: float = 10.0,
        max_body: int = 1 << 20,
        leads: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__(node, manager)
        # highly available managers: whether this manager surely still leads (orders from one
        # that may have lost the lead wait: its lease is renewed, or its step-down cancels them)
        self.leads = leads
        self.address = address
        self.monitor = monitor
        self.token = token
        self.ttl = ttl
        self.max_body = max_body
        self.seq: int | None = None  # the last worker seq told to the manager
        self._client: httpx.AsyncClient | None = None
        self._following = trio.CancelScope()
        self._nursery: trio.Nursery | None = None
        self._last_seen = -1e9

    async def run(self, mailbox: Mailbox[object]) -> None:
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

    async def move_to(self, address: str) -> None:
        log.warning("node %s moved from %s to %s", self.node, self.address, address)
        self.address = address
        await self._connect()

    # -- orders --------------------------------------------------------------------------------

    async def send(self, orders: Orders, *, retry: bool) -> None:
        """`POST /orders`, in as few requests as the body limit allows."""
        for chunk in _chunks(orders.orders, self.max_body):
            await self._post(chunk, retry)

    async def _post(self, orders: list[tuple[Order, bytes]], retry: bool) -> None:
        """Send until the worker answers (with `retry`; once without); give up, with a log
        line, once the node is down. A body the worker finds too large is sent in halves."""
        assert self._client is not None
        what = describe([order for order, _ in orders])
        body = b'{"Orders":[' + b",".join(encoded for _, encoded in orders) + b"]}"
        backoff = FIRST_BACKOFF
        while True:
            if retry and self.node_gone():
                log.warning("node %s is down: dropping %s", self.node, what)
                return
            if self.leads is not None and not self.leads():
                await self._until_leading(what)
            try:
                r = await self._client.post("/orders", content=body, headers=_JSON)
            except httpx.HTTPError as exc:
                log.info("node %s: %s not delivered (%s); retrying", self.node, what, exc)
            else:
                if r.status_code == 200:
                    self._check(orders, r.content)
                    return
                if r.status_code == 413 and len(orders) > 1:
                    half = len(orders) // 2
                    await self._post(orders[:half], retry)
                    await self._post(orders[half:], retry)
                    return
                if r.status_code < 500:
                    log.warning("node %s refused %s: %d %s", self.node, what, r.status_code, r.text)
                    return
                log.info("node %s: %s answered %d; retrying", self.node, what, r.status_code)
            if not retry:
                return
            await trio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _until_leading(self, what: str) -> None:
        """Hold orders while this manager may have lost the lead: until its lease is renewed
        (it was only late), or for good (it lost the lead: its step-down cancels this)."""
        assert self.leads is not None
        log.info("node %s: %s held: this manager may no longer lead", self.node, what)
        while not self.leads():
            await trio.sleep(LEADS_POLL)

    def _check(self, orders: list[tuple[Order, bytes]], body: bytes) -> None:
        """Say which orders the worker refused. Not finding a task to stop (404) is no
        refusal: it ended, or never reached the worker."""
        try:
            results = _results.decode(body).results
        except msgspec.DecodeError as exc:
            log.warning("node %s: unreadable answer to its orders (%s)", self.node, exc)
            return
        for (order, _), result in zip(orders, results, strict=False):
            if result.status >= 400 and result.status != 404:
                log.warning(
                    "node %s refused %s: %d %s",
                    self.node,
                    describe([order]),
                    result.status,
                    result.message,
                )

    # -- questions -----------------------------------------------------------------------------

    async def logs(self, question: GetLogs) -> tuple[bytes, bytes] | None:
        assert self._client is not None
        params = {"driver": question.driver} if question.driver else None
        try:
            r = await self._client.get(f"/tasks/{question.task_id}/logs", params=params)
        except httpx.HTTPError as exc:
            log.info("node %s: no logs for %s (%s)", self.node, question.task_id, exc)
            return None
        if r.status_code != 200:
            return None
        try:
            body = msgspec.json.decode(r.content, type=_Logs)
        except msgspec.DecodeError:
            return None
        return body.Stdout.encode(), body.Stderr.encode()

    # -- updates -------------------------------------------------------------------------------

    async def _follow(self) -> None:
        """Follow the worker's update stream from the last seq the manager applied, forever."""
        assert self._client is not None
        backoff = FIRST_BACKOFF
        failing = False
        while True:
            try:
                if self.seq is None:
                    _, self.seq = await self.placed_on()
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
                    await self.reconcile(retry=False)
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

    async def _line(self, line: StreamLine[WireWorkerUpdate]) -> None:
        await self._seen()
        if line.Event is None:
            return
        assert self.seq is not None
        if line.Seq <= self.seq:
            return
        self.seq = line.Seq
        update = cast(WorkerUpdate, from_wire(line.Event))
        await self.report(msgspec.structs.replace(update, worker_seq=line.Seq))

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
    """What matters here of the worker's `400` to `GET /events?after=` beyond its log's end."""

    LastSeq: int


class _Logs(msgspec.Struct):
    """A worker's `GET /tasks/{id}/logs`."""

    Stdout: str
    Stderr: str


def _chunks(orders: tuple[Order, ...], max_body: int) -> list[list[tuple[Order, bytes]]]:
    """The orders, each with its JSON, in runs whose `{"Orders": [...]}` body fits in
    `max_body` bytes (an order too large alone goes alone: the worker refuses it)."""
    limit = max_body - 64
    chunks: list[list[tuple[Order, bytes]]] = []
    size = limit
    for order in orders:
        encoded = _encoder.encode(order)
        if size + len(encoded) + 1 > limit:
            chunks.append([])
            size = 0
        chunks[-1].append((order, encoded))
        size += len(encoded) + 1
    return chunks
