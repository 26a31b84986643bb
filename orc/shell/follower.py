"""Actors whose state the manager derives from its log (the scheduler's nodes and allocations,
the restarter's timers, the health checker's watches).

The supervisor restarts a crashed actor as a fresh instance with an empty state; this base
makes that instance ask the manager to send its state again, so a crash costs a moment, not
the placements, restarts or checks that were pending.
"""

from __future__ import annotations

from collections.abc import Callable

from actors import Actor, ActorRef
from orc.core.messages import ResendState


class ManagerFollower(Actor):
    role = ""

    def __init__(self, manager: Callable[[], ActorRef], replaces_crashed: bool = False) -> None:
        self.manager = manager
        self.replaces_crashed = replaces_crashed

    async def started(self) -> None:
        if self.replaces_crashed:
            await self.manager().tell(ResendState(self.role))


def numbered(make: Callable[[bool], Actor]) -> Callable[[], Actor]:
    """A factory for the supervisor: each instance after the first replaces a crashed one."""
    made = 0

    def factory() -> Actor:
        nonlocal made
        made += 1
        return make(made > 1)

    return factory
