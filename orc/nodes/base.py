"""How a manager reaches a worker: one protocol, and the base class of every proxy that speaks it.

As httpx puts every transport behind one `BaseTransport`, every way of reaching a worker is a
`WorkerProxy`: `LocalWorkerProxy` (a worker in the same process, over memory channels) and
`HttpWorkerProxy` (a worker in another process, over HTTP). The manager, the scheduler and the
node monitor talk to a node's proxy with the messages below and cannot tell which it is; a
proxy only says how its orders reach the worker (`send`), how a question is answered (`logs`)
and how it follows the node to a new address (`move_to`).

What a proxy takes:

- orders, from the manager: `RunTask`, `StopTask`, `Reconcile`. Handed to the worker in the
  order they came, every order waiting in the mailbox in one `Orders` batch; retried until
  the worker has them; dropped (with a log line) once the node is down.
- `GetLogs`, from the manager's HTTP app: the worker's `(stdout, stderr)` of a task, or None.
- `NodeDown`, from the manager: the node is down; orders are dropped until it is back.
- `Resync`, from the node monitor: the node is back; reconcile with it.
- `MoveTo`, from the node monitor: the node is at another address now.
- `Ping`, from anyone: answered once everything before it is done.
- updates, from its worker in the same process: `TaskStarted`, `TaskExited`, `TaskLost`.

What it sends back: the worker's updates, told to the manager. In process the Worker actor
tells them to its proxy; over HTTP the proxy follows the worker's log (`GET /events`) and each
update carries its sequence number there (`worker_seq`), so the manager applies it once.

A reconcile (on `Resync`, and over HTTP each time the update stream connects) tells the worker
every task the manager places on it, `exclusive`: the worker reports what became of each and
stops what it runs that is not in the list.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import msgspec
import trio

from actors import Actor, ActorRef, Envelope, Mailbox
from orc.core.events import WORKER_UPDATES, NodeDown, WorkerUpdate
from orc.core.messages import (
    GetLogs,
    Order,
    Orders,
    Ping,
    PlacedOn,
    Reconcile,
    RunTask,
    StopTask,
)
from orc.core.model import Task

__all__ = [
    "ASK_TIMEOUT",
    "MAX_BATCH",
    "ORDERS",
    "GetLogs",
    "MoveTo",
    "NodeDown",
    "Order",
    "Orders",
    "Ping",
    "Reconcile",
    "Resync",
    "RunTask",
    "Seen",
    "StopTask",
    "StreamLine",
    "WorkerProxy",
    "WorkerUpdate",
    "describe",
]

log = logging.getLogger("orc.nodes")

ASK_TIMEOUT = 10.0
MAX_BATCH = 1024  # orders in one batch at most (over HTTP, also at most ORC_MAX_BODY bytes)
ORDERS = (RunTask, StopTask, Reconcile)

E = TypeVar("E")


class Resync(msgspec.Struct, frozen=True):
    """From the node monitor: the node came back after being down; reconcile with it again."""


class MoveTo(msgspec.Struct, frozen=True):
    """From the node monitor: the node registered again from another address while it was
    down; reach it there from now on."""

    address: str


class Seen(msgspec.Struct, frozen=True):
    """To the node monitor: something (a stream line, a registration) came from `node`."""

    node: str


class StreamLine(msgspec.Struct, Generic[E], omit_defaults=True):
    """A line of a `GET /events` stream, the manager's or a worker's: an event with its
    sequence number (`{"Seq": 7, "Event": {...}}`), or a heartbeat
    (`{"Heartbeat": true, "Seq": 7}`, `Seq` the log's last). The event in its wire form
    (`orc.core.events.to_wire`): written by the HTTP app, read by `HttpWorkerProxy`."""

    Seq: int
    Event: E | None = None
    Heartbeat: bool = False


class WorkerProxy(Actor[object]):
    """The manager's side of one worker node (see the module's docstring for the protocol).

    The mailbox is read in order. Orders that wait one behind another go to the worker in one
    batch (`send`), so a burst costs one hand-over, not one per order; any other message is
    handled (`handle`) once the orders before it are delivered or dropped.
    """

    def __init__(self, node: str, manager: Callable[[], ActorRef[object]]) -> None:
        self.node = node
        self.manager = manager
        self.down = False
        # Orders and reconciles reach the worker one batch at a time (a transport may send
        # a reconcile from a task of its own: see HttpWorkerProxy).
        self._lock = trio.Lock()
        self._mailbox: Mailbox[object] | None = None
        # Taken from the mailbox, not yet handled: only while orders wait to be delivered
        # (to see a NodeDown behind them) or behind a batch's end.
        self._queue: deque[Envelope[object]] = deque()
        self._downs_queued = 0

    # -- what each transport provides ------------------------------------------------------------

    async def send(self, orders: Orders, *, retry: bool) -> None:
        """Hand `orders` to the worker, in order. With `retry`, until the worker has them or
        `node_gone()` says they are to be dropped; without, one attempt."""
        raise NotImplementedError

    async def logs(self, question: GetLogs) -> tuple[bytes, bytes] | None:
        """The worker's answer to `question`: the task's (stdout, stderr), or None."""
        raise NotImplementedError

    async def move_to(self, address: str) -> None:
        """Reach the node at `address` from now on."""
        raise NotImplementedError

    # -- the protocol, the same for every transport -----------------------------------------------

    async def run(self, mailbox: Mailbox[object]) -> None:
        self._mailbox = mailbox
        await self.started()
        while True:
            if not self._queue:
                self._enqueue(await mailbox.receive())
            self._take_waiting()
            first = self._dequeue()
            mailbox.current = first
            if isinstance(first.message, ORDERS):
                batch = [first]
                while (
                    len(batch) < MAX_BATCH
                    and self._queue
                    and isinstance(self._queue[0].message, ORDERS)
                ):
                    batch.append(self._dequeue())
                await self._settle(batch, self._deliver(batch))
            else:
                await self._settle([first], self.handle(first.message))

    async def handle(self, message: object) -> object:
        match message:
            case GetLogs():
                return await self.logs(message)
            case NodeDown():
                self.down = True
            case Resync():
                self.down = False
                await self.reconcile(retry=False)
            case MoveTo(address):
                self.down = False
                await self.move_to(address)
            case Ping():
                pass
            case _ if isinstance(message, WORKER_UPDATES):
                await self.report(message)
            case _:
                raise TypeError(f"worker proxy {self.node}: unexpected message {message!r}")
        return None

    async def report(self, update: WorkerUpdate) -> None:
        """An update from the worker, to the manager."""
        await self.manager().tell(update)

    async def reconcile(self, *, retry: bool) -> None:
        """Tell the worker every task the manager places on it, exclusively. The manager is
        asked under the lock, so no order slips in between its answer and the worker's."""
        async with self._lock:
            placed, _ = await self.placed_on()
            await self.send(Orders((Reconcile(placed, exclusive=True),)), retry=retry)

    async def placed_on(self) -> tuple[tuple[Task, ...], int]:
        """What the manager places on this node, and the last worker seq it applied."""
        answer = await self.manager().ask(PlacedOn(self.node), timeout=ASK_TIMEOUT)
        match answer:
            case (tuple() as placed, int() as seq):
                return tuple(t for t in placed if isinstance(t, Task)), seq
        raise TypeError(f"manager answered PlacedOn with {answer!r}")

    def node_gone(self) -> bool:
        """Whether orders waiting for delivery are to be dropped: the node is down, or word
        that it is down waits in the mailbox behind them. Called between attempts by the
        proxy's own task (it moves what waits in the mailbox into the proxy's queue)."""
        self._take_waiting()
        return self.down or self._downs_queued > 0

    # -- plumbing --------------------------------------------------------------------------------

    async def _deliver(self, batch: list[Envelope[object]]) -> None:
        orders = tuple(env.message for env in batch if isinstance(env.message, ORDERS))
        if self.node_gone():
            log.warning("node %s is down: dropping %s", self.node, describe(orders))
            return
        async with self._lock:
            await self.send(Orders(orders), retry=True)

    async def _settle(self, envelopes: list[Envelope[object]], work: Awaitable[object]) -> None:
        """Await `work` and answer every envelope with its result; when it raises, every
        envelope fails with it, and so does the actor (its supervisor restarts it; what it had
        taken from the mailbox is lost, and a reconcile puts the worker right)."""
        try:
            result = await work
        except Exception as exc:
            for env in envelopes:
                env.fail(exc)
            raise
        for env in envelopes:
            env.reply(result)

    def _take_waiting(self) -> None:
        """Move what waits in the mailbox into the queue, in order (at most a mailbox's worth
        is held, so the senders still feel the mailbox's bound)."""
        if self._mailbox is None:
            return
        room = self._mailbox.size - len(self._queue)
        if room > 0:
            for env in self._mailbox.receive_nowait_many(room):
                self._enqueue(env)

    def _enqueue(self, env: Envelope[object]) -> None:
        self._queue.append(env)
        if isinstance(env.message, NodeDown):
            self._downs_queued += 1

    def _dequeue(self) -> Envelope[object]:
        env = self._queue.popleft()
        if isinstance(env.message, NodeDown):
            self._downs_queued -= 1
        return env


def describe(orders: Sequence[Order]) -> str:
    """Orders for a log line: `RunTask(<id>)`, or `3 orders (RunTask(<id>), ...)`."""

    def one(order: Order) -> str:
        match order:
            case RunTask(task):
                return f"RunTask({task.id})"
            case StopTask(task_id):
                return f"StopTask({task_id})"
            case Reconcile(tasks):
                return f"Reconcile({len(tasks)} tasks)"

    if len(orders) == 1:
        return one(orders[0])
    shown = ", ".join(one(o) for o in orders[:3])
    return f"{len(orders)} orders ({shown}{', ...' if len(orders) > 3 else ''})"
