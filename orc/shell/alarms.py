"""Alarms: one timer per key, each telling the manager something at a wall-clock time (an
RFC 3339 string from the log), on trio's clock (so MockClock drives it in tests).

The base of the Restarter (a task's restart backoff ends) and the JobTimer (a job asked to be
looked at again): both arm, re-arm and hold alarms the same way, and differ only in what they
say when one rings (`rings`).
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from actors import ActorRef, Mailbox
from orc.core.messages import Hold
from orc.core.times import seconds_between
from orc.shell.follower import ManagerFollower

# a little late rather than early: the wall clock and trio's need not agree to the microsecond,
# and what rings too early is only armed again
SLACK = 0.01


class Alarms(ManagerFollower):
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

    def rings(self, key: str, at: str) -> object:
        """The message for the manager when `key`'s alarm for `at` rings."""
        raise NotImplementedError

    async def run(self, mailbox: Mailbox) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await super().run(mailbox)

    def arm(self, key: str, at: str) -> None:
        """Ring for `key` at `at`; a new time replaces the old one. Nothing once held."""
        if self.held:
            return
        old = self.alarms.get(key)
        if old is not None:
            if old[0] == at:
                return  # armed for that time already
            old[1].cancel()
        scope = trio.CancelScope()
        self.alarms[key] = (at, scope)
        assert self._nursery is not None
        self._nursery.start_soon(self._ring, key, at, scope)

    def hold(self) -> None:
        """Shutting down: no alarm rings any more (the log keeps what they were for)."""
        self.held = True
        for _, scope in self.alarms.values():
            scope.cancel()
        self.alarms.clear()

    async def handle(self, message: object) -> object:
        if isinstance(message, Hold):
            self.hold()
            return None
        raise TypeError(f"{self.role}: unexpected message {message!r}")

    async def _ring(self, key: str, at: str, scope: trio.CancelScope) -> None:
        with scope:
            try:
                delay = seconds_between(self.now(), at) or 0.0
            except (ValueError, OverflowError):  # a time orc cannot read: ring now
                delay = 0.0
            await trio.sleep(max(0.0, delay) + SLACK)
            if self.alarms.get(key, ("", None))[1] is scope:
                del self.alarms[key]
            await self.manager().tell(self.rings(key, at))
