"""The Journal actor: a worker node's write-ahead log of its own updates (`orc worker`).

The Worker actor reports each start and exit here; the Journal appends it to the worker's
durable log (`<data dir>/worker-log`) before anything can see it, many per fsync. The worker's
HTTP app serves that log as `GET /events`, which the manager's proxy follows from the last seq
it applied: so an update survives a lost connection, a restarted manager and a restarted
worker, and is applied once.
"""

from __future__ import annotations

import logging

import trio

from actors import Actor, Mailbox
from eventlog import EventLog, LogWriteError
from orc.core.events import WORKER_UPDATES

log = logging.getLogger("orc.worker")

BATCH = 512
RETRY_DELAY = 0.5


class Journal(Actor):
    """Appends the worker's updates to its log, many per fsync; an update is answered (and
    streamed) only once it is durable. A write that fails is retried until it succeeds."""

    def __init__(self, log: EventLog) -> None:
        self.log = log

    async def run(self, mailbox: Mailbox) -> None:
        while True:
            batch = [await mailbox.receive(), *mailbox.receive_nowait_many(BATCH)]
            updates = [env.message for env in batch if isinstance(env.message, WORKER_UPDATES)]
            while updates:
                try:
                    await self.log.append_batch(updates)
                    break
                except LogWriteError as exc:
                    log.error("worker log: %s; retrying in %g s", exc, RETRY_DELAY)
                    await trio.sleep(RETRY_DELAY)
            for env in batch:
                env.reply(None)
