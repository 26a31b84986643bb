"""The Restarter actor: one timer per task waiting out a restart backoff.

The manager arms a timer for every `TaskRestarting` it logs, and, when it starts, for every task
its log says is still waiting; the deadline (`not_before`) comes from the log, so a manager
restart neither restarts a task early nor forgets it. When a timer fires the Restarter tells
the manager `RestartDue`, and the manager decides (and logs) the restart. Sleeping here keeps
the manager's mailbox moving during a backoff.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from actors import ActorRef, Mailbox
from orc.core.messages import Arm, Hold, RestartDue
from orc.core.times import seconds_between
from orc.shell.follower import ManagerFollower


class Restarter(ManagerFollower):
    role = "restarter"

    def __init__(
        self,
        manager: Callable[[], ActorRef],
        now: Callable[[], str],
        replaces_crashed: bool = False,
    ) -> None:
        super().__init__(manager, replaces_crashed)
        self.now = now
        self.timers: dict[str, trio.CancelScope] = {}
        self.held = False
        self._nursery: trio.Nursery | None = None

    async def run(self, mailbox: Mailbox) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await super().run(mailbox)

    async def handle(self, message: object) -> object:
        match message:
            case Arm(task_id, not_before):
                if self.held:
                    return None
                old = self.timers.pop(task_id, None)
                if old is not None:
                    old.cancel()
                scope = trio.CancelScope()
                self.timers[task_id] = scope
                assert self._nursery is not None
                self._nursery.start_soon(self._fire, task_id, not_before, scope)
            case Hold():
                self.held = True
                for scope in self.timers.values():
                    scope.cancel()
                self.timers.clear()
            case _:
                raise TypeError(f"restarter: unexpected message {message!r}")
        return None

    async def _fire(self, task_id: str, not_before: str, scope: trio.CancelScope) -> None:
        with scope:
            delay = seconds_between(self.now(), not_before) or 0.0
            await trio.sleep(max(0.0, delay))
            if self.timers.get(task_id) is scope:
                del self.timers[task_id]
            await self.manager().tell(RestartDue(task_id, not_before, self.now()))
