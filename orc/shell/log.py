"""`ManagerLog`: what the manager's shell needs of an event log, whichever keeps it.

One manager keeps its log in files (`eventlog.EventLog`); highly available managers keep it in
etcd (`orc.ha.log.EtcdLog`). Both have this interface, and the Manager, its recovery, the
meter, the event stream and the history routes use nothing else, so they run on either
without knowing which: the choice is made once, where a manager is built (orc/cmd).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol


class ManagerLog(Protocol):
    """Records numbered 1, 2, 3, ... without gaps; durable once an append returns."""

    @property
    def last_seq(self) -> int:
        """Seq of the last durable record; 0 when the log is empty."""
        ...

    @property
    def first_seq(self) -> int:
        """Seq of the first record kept (compaction removes older ones)."""
        ...

    async def append(self, record: Any) -> int: ...

    async def append_batch(self, records: Sequence[Any]) -> int: ...

    def read(self, from_seq: int = 1) -> Iterator[tuple[int, Any]]:
        """(seq, record) from `from_seq` to the `last_seq` of now. Blocking: use a thread."""
        ...

    def records(self, from_seq: int = 1) -> Iterator[Any]:
        """The records alone, as `read` finds them (blocking)."""
        ...

    def follow(
        self, from_seq: int = 1, heartbeat: float | None = None
    ) -> AsyncIterator[tuple[int, Any] | None]:
        """(seq, record) from `from_seq` on, then live; None after `heartbeat` idle seconds."""
        ...

    async def save_snapshot(self, seq: int, blob: bytes) -> None: ...

    async def load_snapshot(self) -> tuple[int, bytes] | None: ...

    async def compact(self, before_seq: int) -> int: ...

    async def aclose(self) -> None: ...


@asynccontextmanager
async def following(
    log: ManagerLog, from_seq: int
) -> AsyncIterator[AsyncIterator[tuple[int, Any] | None]]:
    """`log.follow(from_seq)`, closed on the way out even when the caller stops early (an
    async generator left to the garbage collector would be closed outside its task)."""
    records = log.follow(from_seq)
    try:
        yield records
    finally:
        aclose = getattr(records, "aclose", None)
        if aclose is not None:
            await aclose()
