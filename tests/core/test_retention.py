"""Forgetting ended tasks: `decide.purge` and `TaskPurged` in `apply`, pure."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from orc.core import decide
from orc.core.events import (
    AnyEvent,
    NodeJoined,
    TaskExited,
    TaskPurged,
    TaskRestarted,
    TaskRestarting,
    TaskScheduled,
    TaskStarted,
    TaskSubmitted,
)
from orc.core.messages import Purge
from orc.core.model import NodeInfo, State, Task
from orc.core.state import ClusterState
from orc.core.state import replay as fold
from orc.core.times import later
from orc.replay import story as replay

T0 = "2026-11-28T10:00:00+00:00"
NODE = NodeInfo(name="w1", address="127.0.0.1:1", drivers=("process",))


def purged(events: Sequence[AnyEvent]) -> list[str]:
    """The IDs a decision forgets, in its order."""
    return [e.task_id for e in events if isinstance(e, TaskPurged)]


def _life(task_id: str, ended: str | None, exit_code: int = 0) -> list[AnyEvent]:
    """Submitted at T0, running from T0 + 1 s; ended at `ended` unless it is None."""
    events: list[AnyEvent] = [
        TaskSubmitted(at=T0, task=Task(id=task_id, cmd=["true"], created_at=T0, updated_at=T0)),
        TaskScheduled(at=T0, task_id=task_id, node="w1"),
        TaskStarted(at=later(T0, 1), task_id=task_id, node="w1"),
    ]
    if ended is not None:
        events.append(TaskExited(at=ended, task_id=task_id, node="w1", exit_code=exit_code))
    return events


def _state() -> ClusterState:
    """old: ended at T0 + 10 s; failed: failed at T0 + 20 s; recent: ended at T0 + 100 s;
    running: still runs."""
    return fold(
        [
            NodeJoined(at=T0, node=NODE),
            *_life("old", later(T0, 10)),
            *_life("failed", later(T0, 20), exit_code=1),
            *_life("recent", later(T0, 100)),
            *_life("running", None),
        ]
    )


def test_purge_forgets_only_what_ended_before_the_retention() -> None:
    state = _state()
    events, reply, _ = decide.purge(state, Purge(now=later(T0, 110), retention=90))
    assert reply is None
    assert purged(events) == ["old", "failed"]
    assert all(isinstance(e, TaskPurged) and "1.5min" in e.reason for e in events)
    fold(events, state)
    assert set(state.tasks) == {"recent", "running"}
    # a minute later, `recent` is old enough too; a running task never is
    events = decide.purge(state, Purge(now=later(T0, 250), retention=90)).events
    assert purged(events) == ["recent"]


def test_a_task_waiting_to_restart_is_kept() -> None:
    state = _state()
    restarting = TaskRestarting(
        at=later(T0, 30),
        task_id="running",
        node="w1",
        reason="exit 1",
        restart_count=1,
        streak=1,
        delay=1000,
        not_before=later(T0, 1030),
    )
    fold([restarting], state)
    assert state.tasks["running"].state == State.SCHEDULED
    events = decide.purge(state, Purge(now=later(T0, 999), retention=1)).events
    assert "running" not in set(purged(events))


def test_a_task_restarted_before_and_ended_since_is_forgotten() -> None:
    """Its restart streak stays in the state after it ends; that must not keep it forever."""
    state = _state()
    restarting = TaskRestarting(
        at=later(T0, 30),
        task_id="running",
        node="w1",
        reason="exit 1",
        restart_count=1,
        streak=1,
        delay=1,
        not_before=later(T0, 31),
    )
    second_run: list[AnyEvent] = [
        restarting,
        TaskRestarted(at=later(T0, 31), task_id="running", node="w1"),
        TaskStarted(at=later(T0, 32), task_id="running", node="w1"),
        TaskExited(at=later(T0, 40), task_id="running", node="w1", exit_code=0),
    ]
    fold(second_run, state)
    assert state.tasks["running"].state == State.COMPLETED and "running" in state.restarts
    events = decide.purge(state, Purge(now=later(T0, 500), retention=90)).events
    assert "running" in set(purged(events))
    # and `orc replay --check` takes that purge as legal
    purge = [e for e in events if isinstance(e, TaskPurged) and e.task_id == "running"]
    log = [NodeJoined(at=T0, node=NODE), *_life("running", None), *second_run, *purge]
    assert replay.check(list(enumerate(log, 1))).violations == []
    fold(events, state)
    assert "running" not in state.tasks and "running" not in state.restarts


def test_purge_takes_a_bounded_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decide, "PURGE_BATCH", 1)
    events = decide.purge(_state(), Purge(now=later(T0, 110), retention=90)).events
    assert purged(events) == ["old"]


def test_apply_forgets_every_trace_of_a_purged_task() -> None:
    state = _state()
    state.stop_requested.add("old")
    state.unhealthy["old"] = "probe failed"
    fold([TaskPurged(at=later(T0, 200), task_id="old", reason="r")], state)
    assert "old" not in state.tasks
    assert "old" not in state.stop_requested and "old" not in state.unhealthy
