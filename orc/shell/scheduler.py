"""The Scheduler actor: turns pending tasks into placements, and remembers the ones that fit
nowhere so that they are tried again as soon as capacity appears (a node joins, a task ends).

Its allocations follow the log: it counts its own placements at once (so the next task in the
same batch sees them), the manager confirms every placement with `TasksPlaced` (idempotent, and
it covers placements the scheduler did not make, such as restarts) and frees capacity with
`TasksEnded`. A placement the manager refuses is always for a task that has ended, so the
matching `TasksEnded` frees it too. The same messages keep the placer's count of each job's
tasks per node, which spread reads.
"""

from __future__ import annotations

from collections.abc import Callable

from actors import ActorRef
from orc.core.messages import NodesChanged, Place, Schedule, TasksEnded, TasksPlaced
from orc.core.model import Task
from orc.core.placement import Placer, need_of
from orc.shell.follower import ManagerFollower


class Scheduler(ManagerFollower):
    role = "scheduler"

    def __init__(
        self,
        manager: Callable[[], ActorRef],
        now: Callable[[], str],
        policy: str = "epvm",
        replaces_crashed: bool = False,
    ) -> None:
        super().__init__(manager, replaces_crashed)
        self.now = now
        self.placer = Placer(policy)
        # Tasks that fit nowhere, with the reason last told to the manager, in arrival order.
        self.waiting: dict[str, tuple[Task, str]] = {}

    async def handle(self, message: object) -> object:
        match message:
            case Schedule(tasks):
                for task in tasks:
                    if task.id not in self.placer.placed:
                        await self._place(task, self.waiting.get(task.id, (task, task.error))[1])
            case NodesChanged(nodes):
                self.placer.set_nodes(nodes)
                await self._retry()
            case TasksPlaced(tasks):
                for task in tasks:
                    self.waiting.pop(task.id, None)
                    self.placer.assign(task.id, task.node, need_of(task), task.job_id)
            case TasksEnded(task_ids):
                freed = False
                for task_id in task_ids:
                    self.waiting.pop(task_id, None)
                    freed |= self.placer.release(task_id)
                if freed:
                    await self._retry()
            case _:
                raise TypeError(f"scheduler: unexpected message {message!r}")
        return None

    async def _retry(self) -> None:
        waiting, self.waiting = self.waiting, {}
        for task, told in waiting.values():
            await self._place(task, told)

    async def _place(self, task: Task, told: str) -> None:
        choice = self.placer.place(task)
        if choice.node:
            self.waiting.pop(task.id, None)
            await self.manager().tell(Place(task.id, choice.node, "", self.now()))
            return
        self.waiting[task.id] = (task, choice.reason)
        if choice.reason != told:
            await self.manager().tell(Place(task.id, "", choice.reason, self.now()))
