"""WorkerProxy: the manager's side of one worker node.

In one process it passes messages over memory channels: orders to the worker, updates to the
manager. A proxy over HTTP carries the same message types; nothing above it can tell.
"""

from __future__ import annotations

from collections.abc import Callable

from actors import Actor, ActorRef
from orc.core.events import WORKER_UPDATES, NodeDown
from orc.core.messages import GetLogs, ListWorkerTasks, Ping, Reconcile, RunTask, Shutdown, StopTask

_UPDATES = WORKER_UPDATES
_ORDERS = (RunTask, StopTask, Reconcile, Shutdown, ListWorkerTasks)
_QUESTIONS = (GetLogs,)
ASK_TIMEOUT = 10.0


class LocalWorkerProxy(Actor):
    def __init__(self, worker: Callable[[], ActorRef], manager: Callable[[], ActorRef]) -> None:
        self.worker = worker
        self.manager = manager

    async def handle(self, message: object) -> object:
        if isinstance(message, _UPDATES):
            await self.manager().tell(message)
        elif isinstance(message, _ORDERS):
            await self.worker().tell(message)
        elif isinstance(message, _QUESTIONS):
            return await self.worker().ask(message, timeout=ASK_TIMEOUT)
        elif not isinstance(message, Ping | NodeDown):
            raise TypeError(f"worker proxy: unexpected message {message!r}")
        return None
