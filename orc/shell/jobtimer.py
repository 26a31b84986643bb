"""The JobTimer actor: one alarm per job that must be looked at again at a given time, even if
nothing happens meanwhile (a reschedule delay ends, a new task has run for its
MinHealthyTime, a deployment's HealthyDeadline passes, a periodic job's next cron tick).

The reconciler says when (`orc.core.reconcile.Pass.wake`); the manager passes it on here as
`WakeJobs`, and this actor tells the manager `JobsDue` at that time. Nothing here is durable:
every time is derived from the log, so after a restart (or a crash of this actor, which asks
the manager to send its state again) the manager's full reconcile pass arms them again.
"""

from __future__ import annotations

from orc.core.messages import JobsDue, WakeJobs
from orc.shell.alarms import Alarms


class JobTimer(Alarms):
    role = "jobtimer"

    def rings(self, key: str, at: str) -> object:
        return JobsDue((key,), self.now())

    async def handle(self, message: object) -> object:
        if isinstance(message, WakeJobs):
            for job_id, at in message.wake.items():
                self.arm(job_id, at)
            return None
        return await super().handle(message)
