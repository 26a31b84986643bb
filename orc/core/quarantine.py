"""Quarantine: what the core does with a task it cannot trust, instead of raising.

The edge refuses every value outside the bounds (`orc.core.spec`), and the decisions never
propose an event the rules forbid. Yet a log may hold both: an older orc accepted a CPU of
1e308, a bug wrote an event out of order, a worker reported something surprising. Raising on
such a record would crash the actor that meets it, and since the manager rebuilds its state
from the log at every start, one bad record would stop orc for good. So the core is total:

- `apply` never raises (see `orc.core.state`). An event that would move a task along a
  transition the table forbids, or that cannot be applied at all, *quarantines* the task: it
  ends Failed, its `Error` says what was refused (`quarantined: TaskStarted refused: illegal
  transition Completed -> Running`), and `ClusterState.quarantined` records it. Events that
  change nothing a correct manager would let them change (about a task it does not know, from a
  node the task is not on, after the task ended) are skipped.
- At start-up the manager ends Failed every task that has not ended and whose spec is outside
  today's bounds (`out_of_bounds`), with events it appends, so the log says so.

Both kinds of quarantine carry `QUARANTINED` at the start of the task's `Error`; `orc replay
--check` lists them.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from orc.core.events import TaskFailed
from orc.core.model import Task
from orc.core.spec import TaskSpec, spec_problem
from orc.core.transitions import TERMINAL

QUARANTINED = "quarantined: "
MAX_DETAIL = 500  # characters of an unexpected error kept in a reason


class Quarantine(msgspec.Struct, frozen=True, gc=False):
    """An event `apply` refused, which ended its task Failed (`ClusterState.quarantined`).

    `kind` is `illegal-transition` (the table forbids the move) or `impossible` (applying it
    failed: a value no handler can fold); `detail` says which, in the words `orc replay --check`
    uses, e.g. `illegal transition Completed -> Running`.
    """

    event: str  # the refused event's type, e.g. "TaskStarted"
    at: str
    kind: str
    detail: str

    @property
    def reason(self) -> str:
        """The quarantined task's `Error`."""
        return f"{QUARANTINED}{self.event} refused: {self.detail}"


def is_quarantine(error: str) -> bool:
    return error.startswith(QUARANTINED)


_specs = msgspec.msgpack.Decoder(list[TaskSpec])
_encoder = msgspec.msgpack.Encoder()


def out_of_bounds(tasks: Iterable[Task], now: str) -> list[TaskFailed]:
    """A `TaskFailed` for each of `tasks` (the state's) that has not ended and whose spec is
    outside the bounds a submission must keep today (`spec_problem`): tasks an older orc
    accepted.

    Ended tasks are left alone: nothing will run them again. The check costs a few
    microseconds a task (the spec's patterns), so the tasks are checked in one batch first and
    one by one only when the batch holds a bad one; start-up pays it once, for the tasks that
    have not ended.
    """
    live = [t for t in tasks if t.state not in TERMINAL]
    if not live or _all_within_bounds(live):
        return []
    failed = []
    for task in live:
        problem = spec_problem(task)
        if problem is not None:
            failed.append(TaskFailed(at=now, task_id=task.id, error=f"{QUARANTINED}{problem}"))
    return failed


def _all_within_bounds(tasks: Iterable[Task]) -> bool:
    """Whether every task's spec is within the bounds, decided at once: a task encodes to its
    wire map, and `TaskSpec` (which ignores the fields orc sets) checks each field on decoding,
    as `spec_problem` does for one."""
    try:
        _specs.decode(_encoder.encode(list(tasks)))
    except (msgspec.ValidationError, msgspec.EncodeError, OverflowError, TypeError):
        return False
    return True
