"""The Standby: a highly available manager that does not lead (docs/ha.md).

It holds the leader's state without ever writing: read from the log in etcd at its start (the
newest snapshot, then the records after it), then kept current with each record the leader
writes, as the log it follows sees them arrive (`EtcdLog.track`). It answers what the Manager
answers from its state (tasks, jobs, nodes, stats), later by the moment a record takes to
reach it, and refuses commands: writes go to the leader (the HTTP layer redirects them before
they reach an actor; a command that reaches it all the same gets 503).

It is a Manager that only reads: the same state, the same `apply`, the same answers. When its
manager wins the election, `hand_over` hands the state over to the Manager that leads next, so a
failover does not read the log again.
"""

from __future__ import annotations

import logging

import trio

from actors import ActorRef, Mailbox
from orc.core.messages import Reply, ResendState
from orc.ha.etcd import EtcdUnavailable
from orc.ha.log import EtcdLog
from orc.shell.log import following
from orc.shell.manager import BATCH, Handoff, Manager
from orc.shell.meter import ManagerMeter
from orc.shell.recovery import Recovered, recover_at

log = logging.getLogger("orc.manager")

RETRY_AFTER = 1.0  # seconds: about when a leader is known again, if none is now
RETRY_FIRST, RETRY_MAX = 0.1, 2.0  # seconds between reads of the log while etcd is away


def _nowhere() -> ActorRef[object]:
    """The scheduler of a manager that places nothing: stopped, so a use would fail loudly."""
    mailbox: Mailbox[object] = Mailbox("no scheduler (a standby)", 1)
    mailbox.stop()
    return ActorRef(mailbox)


class Standby(Manager):
    """Follows `log` (read-only, kept current by `EtcdLog.track`) into its state. Its first
    answer comes once the state is read from the log (`started`): the manager campaigns after
    that, so that winning never waits for a whole read."""

    def __init__(self, log: EtcdLog, meter: ManagerMeter) -> None:
        super().__init__(log, _nowhere(), {}, meter=meter)
        self.etcd_log = log
        self.seq = 0  # the last record applied
        self.base = 0  # the snapshot the state was read from

    async def started(self) -> None:
        await self._load()

    async def _load(self) -> None:
        """Read the state from the log, waiting out etcd's unavailability (a standby has
        nothing better to do; crashing would only have its supervisor give up sooner)."""
        retry = RETRY_FIRST
        while True:
            try:
                found = await recover_at(self.log)
                break
            except EtcdUnavailable as exc:
                log.warning("standby: cannot read the log yet: %s", exc)
                await trio.sleep(retry)
                retry = min(retry * 2, RETRY_MAX)
        self.state, self.base, self.seq = found
        self.meter.reset(self.state)
        self.meter.snapshot_found(found.base)

    def hand_over(self) -> Handoff:
        """The state as it stands, for the Manager that leads next. Stop this actor first:
        the state is handed over, not copied."""
        return Handoff(Recovered(self.state, self.base, self.seq))

    async def run(self, mailbox: Mailbox[object]) -> None:
        await self.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow)
            while True:
                batch = [await mailbox.receive(), *mailbox.receive_nowait_many(BATCH)]
                for env in batch:
                    env.reply(self._answer(env.message))

    def _answer(self, message: object) -> object:
        if type(message) in self._deciders or isinstance(message, ResendState):
            # Nothing may write but the leader (its log would refuse the append anyway).
            return Reply(
                503,
                message="this manager is a standby: it does not take commands; send them to"
                " the leader (GET /cluster says which manager leads)",
                retry_after=RETRY_AFTER,
            )
        return self._read(message)

    async def _follow(self) -> None:
        """Apply each record as the log sees it arrive. The fold of a record is synchronous,
        so an answer sees a record applied whole or not at all. A record compacted away
        before it could be read (this standby fell far behind) means reading the state again
        from the newest snapshot."""
        while not self.etcd_log.closed:
            try:
                async with following(self.log, self.seq + 1) as records:
                    async for item in records:
                        assert item is not None  # no heartbeat asked for
                        seq, event = item
                        if seq != self.seq + 1:
                            break
                        self._apply([event])
                        self.seq = seq
            except EtcdUnavailable as exc:  # reading a record the log had not kept in memory
                log.warning("standby: cannot read the log: %s", exc)
                await trio.sleep(RETRY_FIRST)
                continue
            if self.etcd_log.closed:
                return
            log.warning(
                "standby: records after seq %d were compacted away before it read them;"
                " reading the state again from the newest snapshot",
                self.seq,
            )
            await self._load()
