"""The manager's running tallies for /metrics (orc/core/tally.py), pure: kept change by change
they must equal a recount from scratch (and the allocations `GET /nodes` computes), and a
placement failure's text must come down to the word the reason starts from."""

from __future__ import annotations

import random

import pytest

from orc.core.events import (
    AnyEvent,
    NodeJoined,
    TaskExited,
    TaskFailed,
    TaskPurged,
    TaskRestarted,
    TaskRestarting,
    TaskScheduled,
    TaskStarted,
    TaskStopRequested,
    TaskSubmitted,
    TaskUnplaced,
)
from orc.core.model import NodeInfo, State, Task
from orc.core.placement import Allocation, allocations_of, need_of, reason
from orc.core.state import ClusterState, apply
from orc.core.tally import UNPLACED_KINDS, TaskTally, unplaced_kind

T0 = "2026-01-01T00:00:00+00:00"
GiB = 1 << 30


def _task_id(event: AnyEvent) -> str | None:
    if isinstance(event, TaskSubmitted):
        return event.task.id
    return getattr(event, "task_id", None)


def _assert_same(tally: TaskTally, state: ClusterState) -> None:
    fresh = TaskTally.of(state.tasks.values())
    assert tally.by_state == fresh.by_state
    counted = {s: sum(1 for t in state.tasks.values() if t.state == s) for s in State}
    assert tally.by_state == counted
    recounted = allocations_of(state)
    for node in {*state.nodes, *recounted}:
        assert tally.allocated(node) == recounted.get(node, Allocation())


def _fold(tally: TaskTally, state: ClusterState, event: AnyEvent) -> None:
    task_id = _task_id(event)
    before = state.tasks.get(task_id) if task_id else None
    apply(state, event)
    tally.moved(before, state.tasks.get(task_id) if task_id else None)


def _life(task_id: str, rng: random.Random) -> list[AnyEvent]:
    """One task's events, along one of the paths the table allows."""
    cpu, memory = rng.choice([0.0, 0.25, 1.5]), rng.choice([0, 64 << 20, GiB])
    task = Task(id=task_id, cmd=["x"], driver="process", cpu=cpu, memory=memory, disk=1024)
    node = rng.choice(["w1", "w2"])
    events: list[AnyEvent] = [TaskSubmitted(at=T0, task=task)]
    path = rng.choice(["pending", "unplaced", "exit", "fail", "restart", "stop", "stop-early"])
    if path == "pending":
        return events
    if path == "unplaced":
        return [*events, TaskUnplaced(at=T0, task_id=task_id, reason="no worker nodes")]
    if path == "stop-early":
        return [*events, TaskStopRequested(at=T0, task_id=task_id)]
    events += [
        TaskScheduled(at=T0, task_id=task_id, node=node),
        TaskStarted(at=T0, task_id=task_id, node=node),
    ]
    if path == "exit":
        events.append(TaskExited(at=T0, task_id=task_id, node=node, exit_code=0))
    elif path == "fail":
        events.append(TaskFailed(at=T0, task_id=task_id, error="lost"))
    elif path == "restart":
        other = "w2" if node == "w1" else "w1"
        events += [
            TaskRestarting(
                at=T0,
                task_id=task_id,
                node=node,
                reason="exited 1",
                restart_count=1,
                streak=1,
                delay=1.0,
                not_before=T0,
            ),
            TaskExited(at=T0, task_id=task_id, node=node, exit_code=1),
            TaskRestarted(at=T0, task_id=task_id, node=other),
        ]
    elif path == "stop":
        events += [
            TaskStopRequested(at=T0, task_id=task_id),
            TaskExited(at=T0, task_id=task_id, node=node, stopped=True),
        ]
    if path in ("exit", "fail") and rng.random() < 0.5:
        events.append(TaskPurged(at=T0, task_id=task_id, reason="ended long ago"))
    return events


@pytest.mark.parametrize("seed", range(5))
def test_the_tally_kept_event_by_event_equals_a_recount(seed: int) -> None:
    rng = random.Random(seed)
    state, tally = ClusterState(), TaskTally()
    for name in ("w1", "w2"):
        info = NodeInfo(name, f"{name}:1", ("process",), cores=4, memory=8 * GiB, disk=GiB)
        _fold(tally, state, NodeJoined(at=T0, node=info))
    lives = [_life(f"t{i}", rng) for i in range(60)]
    while any(lives):  # the tasks' lives interleaved, each in its own order
        life = rng.choice([life for life in lives if life])
        _fold(tally, state, life.pop(0))
        _assert_same(tally, state)
    assert sum(tally.by_state.values()) == len(state.tasks)


def test_a_tally_counts_from_scratch() -> None:
    tasks = [
        Task(id="a", state=State.RUNNING, node="w1", cpu=0.5, memory=10, disk=1),
        Task(id="b", state=State.SCHEDULED, node="w1", cpu=0.25, memory=5),
        Task(id="c", state=State.COMPLETED, node="w1", cpu=8.0, memory=99),
        Task(id="d", state=State.PENDING),
    ]
    tally = TaskTally.of(tasks)
    assert tally.by_state[State.RUNNING] == tally.by_state[State.PENDING] == 1
    assert tally.by_state[State.FAILED] == 0
    a = tally.allocated("w1")
    assert (a.cpu, a.memory, a.disk, a.tasks) == (750_000_000, 15, 1, 2)
    assert tally.allocated("nowhere").tasks == 0


def test_placement_failures_are_counted_under_what_the_most_nodes_lack() -> None:
    small = NodeInfo("s", "s:1", ("process",), cores=1, memory=GiB, disk=GiB)
    no_docker = NodeInfo("p", "p:1", ("process",), cores=64, memory=64 * GiB, disk=GiB)
    big = Task(id="x", driver="process", memory=2 * GiB)
    empty = Allocation()
    cases = {
        reason(need_of(big), [small, small], [empty, empty]): "memory",
        reason(need_of(Task(driver="docker")), [no_docker], [empty]): "driver",
        reason(need_of(Task(driver="process", cpu=4)), [small], [empty]): "cpu",
        reason(need_of(Task(driver="process", disk=2 * GiB)), [small], [empty]): "disk",
        reason(need_of(big), [], []): "no_nodes",
        "waits to restart: node w1 cannot run it and 1 node: 1 lacks memory (need 2 GiB)": "memory",
        "3 nodes: 2 fail constraint rack = a, 1 lacks memory (need 1 GiB)": "constraint",
        "something new": "other",
    }
    for text, kind in cases.items():
        assert unplaced_kind(text) == kind, text
        assert kind in UNPLACED_KINDS
