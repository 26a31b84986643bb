"""The Scheduler actor: turns pending tasks into placements, and remembers the ones that fit
nowhere so that they are tried again when the nodes change.
"""

from __future__ import annotations

from collections.abc import Callable

from actors import Actor, ActorRef
from orc.messages import NodesChanged, Place, Schedule
from orc.model import NodeInfo, Task
from orc.scheduling import pick_round_robin, select_candidates


class Scheduler(Actor):
    def __init__(self, manager: Callable[[], ActorRef], now: Callable[[], str]) -> None:
        self.manager = manager
        self.now = now
        self.nodes: tuple[NodeInfo, ...] = ()
        self.waiting: dict[str, Task] = {}
        self.cursor = -1

    async def handle(self, message: object) -> object:
        match message:
            case Schedule(tasks):
                for task in tasks:
                    await self._place(task)
            case NodesChanged(nodes):
                self.nodes = nodes
                waiting, self.waiting = self.waiting, {}
                for task in waiting.values():
                    await self._place(task)
            case _:
                raise TypeError(f"scheduler: unexpected message {message!r}")
        return None

    async def _place(self, task: Task) -> None:
        candidates, reason = select_candidates(task, self.nodes)
        if candidates:
            node, self.cursor = pick_round_robin(candidates, self.cursor)
            self.waiting.pop(task.id, None)
            await self.manager().tell(Place(task.id, node.name, "", self.now()))
        else:
            self.waiting[task.id] = task
            await self.manager().tell(Place(task.id, "", reason, self.now()))
