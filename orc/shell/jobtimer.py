"""The JobTimer actor: one alarm per job that must be looked at again at a given time, even if
nothing happens meanwhile (a reschedule delay ends, a new task has run for its
MinHealthyTime, a deployment's HealthyDeadline passes, a periodic job's next cron tick).

The reconciler says when (`orc.core.reconcile.Pass.wake`); the manager passes it on here as
`WakeJobs`, and this actor tells the manager `JobsDue` at that time. Nothing here is durable:
every time is derived from the log, so after a restart (or a crash of this actor, which asks
the manager to send its state again) the manager's full reconcile pass arms them again.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from actors import ActorRef, Mailbox
from orc.core.messages import Hold, JobsDue, WakeJobs
from orc.core.times import seconds_between
from orc.shell.follower import ManagerFollower

SLACK = 0.01


class JobTimer(ManagerFollower):
    role = "jobtimer"

    def __init__(
        self,
        manager: Callable[[], ActorRef],
        now: Callable[[], str],
        replaces_crashed: bool = False,
    ) -> None:
        super().__init__(manager, replaces_crashed)
        self.now = now
        self.alarms: dict[str, tuple[str, trio.CancelScope]] = {}
        self.held = False
        self._nursery: trio.Nursery | None = None

    async def run(self, mailbox: Mailbox) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await super().run(mailbox)

    async def handle(self, message: object) -> object:
        match message:
            case WakeJobs(wake):
                if not self.held:
                    for job_id, at in wake.items():
                        self._arm(job_id, at)
            case Hold():
                self.held = True
                for _, scope in self.alarms.values():
                    scope.cancel()
                self.alarms.clear()
            case _:
                raise TypeError(f"jobtimer: unexpected message {message!r}")
        return None

    def _arm(self, job_id: str, at: str) -> None:
        old = self.alarms.get(job_id)
        if old is not None:
            if old[0] == at:
                return  # armed for that time already
            old[1].cancel()
        scope = trio.CancelScope()
        self.alarms[job_id] = (at, scope)
        assert self._nursery is not None
        self._nursery.start_soon(self._fire, job_id, at, scope)

    async def _fire(self, job_id: str, at: str, scope: trio.CancelScope) -> None:
        with scope:
            try:
                delay = seconds_between(self.now(), at) or 0.0
            except (ValueError, OverflowError):
                delay = 0.0
            # a little late rather than early: the wall clock and trio's need not agree to the
            # microsecond, and a job looked at too early is only armed again
            await trio.sleep(max(0.0, delay) + SLACK)
            if self.alarms.get(job_id, ("", None))[1] is scope:
                del self.alarms[job_id]
            await self.manager().tell(JobsDue((job_id,), self.now()))
