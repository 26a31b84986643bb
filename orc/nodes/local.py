"""LocalWorkerProxy: the manager's side of a worker in the same process.

Orders go to the Worker actor's mailbox, a batch (`Orders`) per hand-over; the worker's
updates come back through this proxy's mailbox and go on to the manager. A memory channel
does not fail, so nothing is ever retried here; the protocol is `WorkerProxy`'s.
"""

from __future__ import annotations

from collections.abc import Callable

from actors import ActorRef
from orc.core.messages import GetLogs, Orders
from orc.nodes.base import ASK_TIMEOUT, WorkerProxy, log


class LocalWorkerProxy(WorkerProxy):
    def __init__(
        self,
        node: str,
        worker: Callable[[], ActorRef[object]],
        manager: Callable[[], ActorRef[object]],
    ) -> None:
        super().__init__(node, manager)
        self.worker = worker

    async def send(self, orders: Orders, *, retry: bool) -> None:
        """Told, not asked: the worker carries orders out in its mailbox's order, and what
        becomes of each reaches the manager as the worker's updates."""
        await self.worker().tell(orders)

    async def logs(self, question: GetLogs) -> tuple[bytes, bytes] | None:
        answer = await self.worker().ask(question, timeout=ASK_TIMEOUT)
        match answer:
            case (bytes() as out, bytes() as err):
                return out, err
        return None

    async def move_to(self, address: str) -> None:
        """A worker in this process has no address to move from."""
        log.warning("node %s runs in this process: ignoring a move to %s", self.node, address)
