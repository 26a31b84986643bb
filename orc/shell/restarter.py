"""The Restarter actor: one timer per task waiting out a restart backoff.

The manager arms a timer for every `TaskRestarting` it logs, and, when it starts, for every task
its log says is still waiting; the deadline (`not_before`) comes from the log, so a manager
restart neither restarts a task early nor forgets it. When a timer fires the Restarter tells
the manager `RestartDue`, and the manager decides (and logs) the restart. Sleeping here keeps
the manager's mailbox moving during a backoff.
"""

from __future__ import annotations

from orc.core.messages import Arm, RestartDue
from orc.shell.alarms import Alarms


class Restarter(Alarms):
    role = "restarter"

    def rings(self, key: str, at: str) -> object:
        return RestartDue(key, at, self.now())

    async def handle(self, message: object) -> object:
        if isinstance(message, Arm):
            self.arm(message.task_id, message.not_before)
            return None
        return await super().handle(message)
