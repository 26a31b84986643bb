"""The Reaper actor: now and then, asks the manager to forget tasks that ended long ago.

Finished tasks are kept for ORC_TASK_RETENTION so that clients can read how they ended; after
that, a cluster that runs for months must not carry every task it ever ran in its state, its
listings and its snapshots. The decision (which tasks, logged as `TaskPurged`) is the
manager's (`decide.purge`); this actor only keeps the time. Its timer runs on trio's clock, so
MockClock drives it in tests.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from actors import Actor, ActorRef, Mailbox
from orc.core.messages import Purge

LONGEST_WAIT = 60.0  # seconds between looks, at most


def interval_for(retention: float) -> float:
    """A tenth of the retention, at most a minute: a task outlives it by that much at most."""
    return min(retention / 10, LONGEST_WAIT)


class Reaper(Actor):
    def __init__(
        self, manager: Callable[[], ActorRef], now: Callable[[], str], retention: float
    ) -> None:
        self.manager = manager
        self.now = now
        self.retention = retention

    async def run(self, mailbox: Mailbox) -> None:
        while True:
            await trio.sleep(interval_for(self.retention))
            await self.manager().tell(Purge(self.now(), self.retention))
