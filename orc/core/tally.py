"""Tasks by state, and what the placed ones ask of each node, kept up to date one change at a
time; and the few words a placement failure is counted under.

`GET /metrics` reports both tallies at every scrape. Recounting them from the state walks every
task (at 10,000 tasks that alone is most of the 2 ms a scrape may cost the manager, see
bench/metrics.py), so the manager folds in each task's change as it applies the event that
made it: `moved(before, after)` with the task as it was and as it is. `of(tasks)` counts from
scratch (at start, and in the tests that check the two agree).

Allocations follow `orc.core.placement.allocations`: the Scheduled and Running tasks on a node.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from orc.core.model import State, Task
from orc.core.placement import PLACED_STATES, Allocation, nano_cpus


class TaskTally:
    """Tasks per state, and per node the CPU (NanoCPUs), memory, disk and count of its
    Scheduled and Running tasks."""

    __slots__ = ("_allocated", "by_state")

    def __init__(self) -> None:
        self.by_state: dict[State, int] = dict.fromkeys(State, 0)
        self._allocated: dict[str, list[int]] = {}

    @classmethod
    def of(cls, tasks: Iterable[Task]) -> TaskTally:
        tally = cls()
        for task in tasks:
            tally._count(task, 1)
        return tally

    def moved(self, before: Task | None, after: Task | None) -> None:
        """One task changed from `before` to `after` (None: it was not there, or is gone)."""
        if before is after:
            return
        if before is not None and after is not None and before.node == after.node:
            # Most events: a task moves on (or stays on) its node. What it asks for never
            # changes, so only its state's count moves, and its node's share if it was or is
            # now placed there and not both.
            if before.state != after.state:
                self.by_state[before.state] -= 1
                self.by_state[after.state] += 1
                was, now = before.state in PLACED_STATES, after.state in PLACED_STATES
                if was != now and after.node:
                    self._allocate(after, 1 if now else -1)
            return
        if before is not None:
            self._count(before, -1)
        if after is not None:
            self._count(after, 1)

    def allocated(self, node: str) -> Allocation:
        """What the Scheduled and Running tasks on `node` ask for."""
        a = self._allocated.get(node)
        return Allocation(*a) if a is not None else Allocation()

    def _count(self, task: Task, sign: int) -> None:
        self.by_state[task.state] += sign
        if task.node and task.state in PLACED_STATES:
            self._allocate(task, sign)

    def _allocate(self, task: Task, sign: int) -> None:
        a = self._allocated.get(task.node)
        if a is None:
            a = self._allocated[task.node] = [0, 0, 0, 0]
        a[0] += sign * nano_cpus(task.cpu)
        a[1] += sign * task.memory
        a[2] += sign * task.disk
        a[3] += sign


# -- placement failures, in a few words --------------------------------------------------------

# The words a placement failure is counted under: a metric's label takes a handful of values,
# never the failure's text, which carries numbers (`2 lack memory (need 512 MiB, ...)`).
UNPLACED_KINDS = ("no_nodes", "constraint", "driver", "memory", "cpu", "disk", "other")
_LACK = re.compile(r"\b(?:lacks?|fails?) (driver|memory|CPU|disk|constraint)\b")


def unplaced_kind(reason: str) -> str:
    """The kind of a `TaskUnplaced` reason, as `orc.core.placement.reason` words it: what the
    most nodes lack or fail (it names that first), or that no node has joined yet."""
    if "no worker nodes" in reason:
        return "no_nodes"
    m = _LACK.search(reason)
    return m.group(1).lower() if m else "other"
