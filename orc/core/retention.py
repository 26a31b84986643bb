"""Which ended tasks are due to be forgotten, found in proportion to how many are due.

Walking every task on each look would cost the manager a tenth of a second at 250,000 ended
tasks, once a minute, for nothing. `EndedIndex` keeps ended tasks in a heap by the moment they
ended; a look pops only what is due (and what went stale: a task restarted, or already
forgotten, since it was noted).

The index is not part of the state: it is derived from it (`EndedIndex.of`, once at start-up)
and kept current by the manager after each batch it applies, so `apply` and replay pay nothing
for it and snapshots do not carry it.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from datetime import datetime

from orc.core import times
from orc.core.model import Task
from orc.core.transitions import TERMINAL


def ended_at(task: Task) -> str | None:
    """When an ended task ended, as the log recorded it."""
    return task.finished_at or task.updated_at


class EndedIndex:
    """Ended tasks by the time they ended, earliest first."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, str, str]] = []  # (POSIX seconds, end time, task ID)

    @classmethod
    def of(cls, tasks: Iterable[Task]) -> EndedIndex:
        index = cls()
        for task in tasks:
            index.note(task)
        return index

    def __len__(self) -> int:
        return len(self._heap)

    def note(self, task: Task) -> None:
        """Remember `task` if it has ended with a time orc can read; otherwise it is kept
        forever rather than guessed about."""
        if task.state not in TERMINAL:
            return
        at = ended_at(task)
        if at is None:
            return
        try:
            when = times.parse(at).timestamp()
        except ValueError:
            return
        heapq.heappush(self._heap, (when, at, task.id))

    def due(self, tasks: dict[str, Task], cutoff: datetime, limit: int) -> list[str]:
        """The IDs of at most `limit` tasks that ended at or before `cutoff`, earliest first.

        An entry is dropped when its task no longer ended at that time (it was forgotten, or
        restarted and perhaps ended again, which noted it anew). Entries that are due stay until
        a later look finds them stale: if the log cannot take the purge now, the next look finds
        the same tasks again.
        """
        found: list[tuple[float, str, str]] = []
        limit_at = cutoff.timestamp()
        heap = self._heap
        while heap and len(found) < limit and heap[0][0] <= limit_at:
            entry = heapq.heappop(heap)
            task = tasks.get(entry[2])
            if task is not None and task.state in TERMINAL and ended_at(task) == entry[1]:
                found.append(entry)
        for entry in found:
            heapq.heappush(heap, entry)
        return [task_id for _, _, task_id in found]
