"""Group commit: appends that arrive while a write is in flight go together in the next one.

The first submission to find no write running leads: it writes everything queued, then hands
the lead to the first submission queued meanwhile (or, with none, lets the log go idle). The
others wait. A log supplies `flush(batch)`, which must settle every submission of the batch
(set its result or its error, then its `done`). Shared by the file log (`eventlog.log`) and
orc's log in etcd (`orc.ha.log`): one write at a time, in order, as large as the load makes it;
and by the process driver's launches (`orc.drivers.process`), whose files and requests to the
launcher go in groups the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

import trio


class Pending(Protocol):
    """What the group commit needs of a submission: its `done` event, and whether it leads."""

    done: trio.Event
    lead: bool


P = TypeVar("P", bound=Pending)


class GroupCommit(Generic[P]):
    def __init__(self, flush: Callable[[list[P]], Awaitable[None]]) -> None:
        self._flush = flush
        self._queue: list[P] = []
        self._flushing = False
        self._idle = trio.Event()
        self._idle.set()

    async def submit(self, sub: P) -> None:
        """Return once `sub` was flushed (by this task or another): its result is set."""
        self._queue.append(sub)
        if self._flushing:
            await self._wait(sub)
        else:
            self._flushing = True
            self._idle = trio.Event()
            sub.lead = True
        if sub.lead:
            with trio.CancelScope(shield=True):  # the log bounds how long a write may take
                await self._lead()

    async def idle(self) -> None:
        """Return once no write is in flight (a closing log waits for what it took)."""
        while self._flushing:
            await self._idle.wait()

    async def _wait(self, sub: P) -> None:
        """Wait until `sub` is flushed, failed, or must lead the next flush."""
        try:
            await sub.done.wait()
        except trio.Cancelled:
            if sub.lead:  # the lead came while we were being cancelled: flush all the same
                with trio.CancelScope(shield=True):
                    await self._lead()
            elif sub in self._queue:  # not picked up yet: it will not be written
                self._queue.remove(sub)
            raise

    async def _lead(self) -> None:
        """Flush everything queued, then pass the lead on to a waiting submission (also when
        the flush failed: the next one must not wait for a lead that never comes)."""
        batch, self._queue = self._queue, []
        try:
            await self._flush(batch)
        finally:
            self._hand_on()

    def _hand_on(self) -> None:
        if self._queue:
            successor = self._queue[0]
            successor.lead = True
            successor.done.set()
        else:
            self._flushing = False
            self._idle.set()
