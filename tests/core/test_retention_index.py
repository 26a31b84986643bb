"""The index of ended tasks: a purge finds what is due in proportion to what is due, and finds
exactly what walking every task would."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from orc.core import decide, times
from orc.core.events import AnyEvent, TaskPurged
from orc.core.messages import Purge
from orc.core.model import State, Task
from orc.core.retention import EndedIndex, ended_at
from orc.core.state import ClusterState
from orc.core.times import later
from orc.core.transitions import TERMINAL

T0 = "2026-11-28T10:00:00+00:00"


def purged(events: Sequence[AnyEvent]) -> list[str]:
    """The IDs a decision forgets, in its order."""
    return [e.task_id for e in events if isinstance(e, TaskPurged)]


class CountingTasks(dict[str, Task]):
    """The state's tasks, counting the lookups the index makes."""

    looked = 0

    def get(self, key: str, default: object = None) -> Task | None:  # type: ignore[override]
        self.looked += 1
        return super().get(key)


def _task(i: int, state: State, ended: float | None) -> Task:
    at = later(T0, ended) if ended is not None else None
    return Task(id=f"t{i}", cmd=["true"], state=state, finished_at=at, updated_at=at or T0)


def test_a_look_costs_what_is_due_not_what_is_kept() -> None:
    tasks = CountingTasks()
    for i in range(10_000):
        tasks[f"t{i}"] = _task(i, State.COMPLETED, 1000 + i)  # all ended, most recently
    for i in range(3):
        tasks[f"old{i}"] = Task(id=f"old{i}", state=State.FAILED, finished_at=later(T0, i))
    index = EndedIndex.of(tasks.values())
    cutoff = times.parse(later(T0, 10))
    assert index.due(tasks, cutoff, limit=100) == ["old0", "old1", "old2"]
    assert tasks.looked == 3
    # Once forgotten, they are dropped as stale on the next look, and nothing else is touched.
    for i in range(3):
        del tasks[f"old{i}"]
    tasks.looked = 0
    assert index.due(tasks, cutoff, limit=100) == []
    assert tasks.looked == 3 and len(index) == 10_000


def test_a_due_task_stays_until_it_is_forgotten() -> None:
    """If the purge could not be logged, the next look finds the same tasks again."""
    tasks = {"t0": _task(0, State.COMPLETED, 5)}
    index = EndedIndex.of(tasks.values())
    cutoff = times.parse(later(T0, 100))
    assert index.due(tasks, cutoff, 10) == ["t0"]
    assert index.due(tasks, cutoff, 10) == ["t0"]


lives = st.lists(
    st.tuples(
        st.sampled_from([State.PENDING, State.RUNNING, State.COMPLETED, State.FAILED]),
        st.floats(min_value=0, max_value=1000, allow_nan=False),
        st.booleans(),  # restarted and ended again later: noted twice, the first one stale
    ),
    max_size=40,
)


@given(lives=lives, now=st.floats(min_value=0, max_value=2000), retention=st.integers(0, 500))
def test_purge_with_the_index_forgets_exactly_what_ended_before_the_cutoff(
    lives: list[tuple[State, float, bool]], now: float, retention: int
) -> None:
    state = ClusterState()
    index = EndedIndex()
    for i, (task_state, ended, again) in enumerate(lives):
        if again:  # a first end, noted, then a restart that ended later (or still runs)
            index.note(_task(i, State.FAILED, ended / 2))
        task = _task(i, task_state, ended if task_state in TERMINAL else None)
        state.tasks[task.id] = task
        index.note(task)
    cmd = Purge(now=later(T0, now), retention=retention)
    cutoff = times.parse(cmd.now) - timedelta(seconds=retention)
    expected = {
        t.id
        for t in state.tasks.values()
        if t.state in TERMINAL and times.parse(ended_at(t) or T0) <= cutoff
    }
    forgotten = set(purged(decide.purge(state, cmd, index).events))
    assert forgotten == expected
    # the same without the manager's index (built from the state)
    assert set(purged(decide.purge(state, cmd).events)) == expected
