"""The manager's state at start-up, from its log: the newest snapshot, then the events after it.

The fold itself is the core's `replay` (the same `apply` as the live manager); this module only
reads, off the event loop. `open_log` opens an orc log so that it reads the records of every
version of orc (`orc.core.upcast`), as every orc process must.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import trio

from eventlog import EventLog
from orc.core.events import AnyEvent
from orc.core.snapshot import decode_state
from orc.core.state import ClusterState, replay
from orc.core.upcast import upcaster


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


async def recover(log: EventLog) -> tuple[ClusterState, int]:
    """The state recorded in `log`: the newest snapshot plus the events after it.

    Returns the state and the seq of the snapshot it started from (0 for none).
    """
    found = await log.load_snapshot()
    state, base = (decode_state(found[1]), found[0]) if found else (ClusterState(), 0)
    state = await trio.to_thread.run_sync(replay, log.records(base + 1), state)
    return state, base
