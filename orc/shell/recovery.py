"""The manager's state at start-up, from its log: the newest snapshot, then the events after it.

The fold itself is the core's `replay` (the same `apply` as the live manager), off the event
loop. `open_log` opens an orc log so that it reads the records of every version of orc
(`orc.core.upcast`), as every orc process must. `quarantine` is the one write of start-up: it
ends the tasks an older orc accepted outside today's bounds, so the scheduler never sees them.

The log is a `ManagerLog`: files, or etcd, where the leader may snapshot and compact while a
standby reads. A read that lost its first records to such a compaction is noticed (fewer
records than the seqs say) and made again from the newer snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import trio

from eventlog import EventLog, LogWriteError
from orc.core.events import AnyEvent
from orc.core.model import Task
from orc.core.quarantine import out_of_bounds
from orc.core.snapshot import decode_state
from orc.core.state import ClusterState, apply, replay
from orc.core.upcast import upcaster
from orc.progress import Progress, in_chunks
from orc.shell.log import ManagerLog, following

logger = logging.getLogger("orc.manager")


async def open_log(
    path: str | Path, record_type: Any = AnyEvent, segment_bytes: int = 64 * 1024 * 1024
) -> EventLog:
    """Open (or create) an orc event log of `record_type` (the manager's `AnyEvent`, a
    worker's `WorkerUpdate`): records of the current versions decode at full speed, older
    ones through their upcasters. Appends are checked in full (each record decoded back): at
    orc's rates the check costs nothing, and a record that cannot be read back would stop the
    next start."""
    return await EventLog.open(
        path, record_type, segment_bytes=segment_bytes, older=upcaster(record_type)
    )


class EventLogReader(Protocol):
    def records(self, from_seq: int) -> Iterator[AnyEvent]: ...


def load_state(log: EventLogReader) -> ClusterState:
    """The state recorded in a whole log, without snapshots. Blocking: it reads files."""
    return replay(log.records(1))


class Recovered(NamedTuple):
    """A state read from a log: the seq of the snapshot it started from (0: none) and of the
    last record in it."""

    state: ClusterState
    base: int
    seq: int


_ATTEMPTS = 5  # reads of the log racing its compaction, at most


async def recover(log: ManagerLog) -> tuple[ClusterState, int]:
    """The state recorded in `log`: the newest snapshot plus the events after it.

    Returns the state and the seq of the snapshot it started from (0 for none).
    """
    found = await recover_at(log)
    return found.state, found.base


async def recover_at(log: ManagerLog) -> Recovered:
    """`recover`, saying the seq the state stands at: a standby goes on from there."""
    for _ in range(_ATTEMPTS):
        found = await log.load_snapshot()
        state, base = (decode_state(found[1]), found[0]) if found else (ClusterState(), 0)
        last = log.last_seq  # `records` reads up to this (a standby's log moves meanwhile)
        total = max(0, last - base)
        state, folded = await trio.to_thread.run_sync(_fold, log.records(base + 1), state, total)
        if folded == total:
            return Recovered(state, base, max(base, last))
        logger.info(
            "the log was compacted while it was read (from seq %d): reading it again from its"
            " newest snapshot",
            base + 1,
        )
    raise RuntimeError(f"the log was compacted under each of {_ATTEMPTS} reads: giving up")


async def catch_up(log: ManagerLog, state: ClusterState, seq: int) -> int | None:
    """Fold into `state` (standing at `seq`) the records after it, up to the log's `last_seq`
    of now; the seq it then stands at. None when some of them were compacted away: `state` is
    then half-done, and only `recover` can rebuild it."""
    last = log.last_seq
    if seq >= last:
        return seq
    async with following(log, seq + 1) as records:
        async for item in records:
            assert item is not None  # no heartbeat asked for
            at, event = item
            if at != seq + 1:
                return None
            apply(state, event)
            seq = at
            if seq >= last:
                return seq
    return None  # it ended first: the next record was compacted away


def _fold(records: Iterable[AnyEvent], state: ClusterState, total: int) -> tuple[ClusterState, int]:
    """`replay`, a chunk at a time, saying how far it got when it takes long (a large log
    with no recent snapshot): a bar on a terminal, a log line every few seconds otherwise.
    Returns the state and how many records it folded."""
    folded = 0
    with Progress("recovering the state from the event log", total) as progress:
        for chunk in in_chunks(records, progress):
            state = replay(chunk, state)
            folded += len(chunk)
    return state, folded


async def quarantine(log: ManagerLog, state: ClusterState, now: str) -> list[Task]:
    """End Failed every task of `state` that has not ended and whose spec is outside today's
    bounds (a CPU of 1e308, a NUL in `Cmd`: what an older orc accepted), with a `TaskFailed`
    each, appended to the log before anything else sees the state, so the log says why and
    replay rebuilds the same. Returns those tasks as they were (the caller stops the ones that
    run). Called at every start; once quarantined, a task is ended and not checked again.

    If the log cannot be written now (a full disk), the tasks are left as they are and it is
    said: placement is total on any spec (a CPU past the bounds is placed nowhere), and the
    next start tries again.
    """
    failed = await trio.to_thread.run_sync(out_of_bounds, state.tasks.values(), now)
    if not failed:
        return []
    before = [state.tasks[e.task_id] for e in failed]
    try:
        await log.append_batch(failed)
    except LogWriteError as exc:
        logger.warning("cannot quarantine %d tasks outside the bounds now: %s", len(failed), exc)
        return []
    for event in failed:
        apply(state, event)
        logger.warning("task %s: %s", event.task_id, event.error)
    return before
