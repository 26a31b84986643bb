"""Cluster state and `apply`, the only code that changes it, live and in replay.

`apply` mutates the state it is given and returns it: copying the whole cluster per event
would make replay of a long log slow for no benefit, since the manager owns its state alone.
Tasks themselves are immutable structs, replaced on every change, so a task handed to another
actor never changes under it. `apply` does no I/O and reads no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from orc.events import (
    AnyEvent,
    NodeJoined,
    StateDigest,
    TaskExited,
    TaskFailed,
    TaskScheduled,
    TaskStarted,
    TaskStopRequested,
    TaskSubmitted,
    TaskUnplaced,
)
from orc.model import NodeInfo, State, Task
from orc.transitions import IllegalTransition, is_legal

_replace = msgspec.structs.replace


class EventLogReader(Protocol):
    def read(self, from_seq: int) -> Iterator[tuple[int, AnyEvent]]: ...


@dataclass
class ClusterState:
    tasks: dict[str, Task] = field(default_factory=dict)
    nodes: dict[str, NodeInfo] = field(default_factory=dict)
    # Tasks a client asked to stop; they end Completed when their process is gone.
    stop_requested: set[str] = field(default_factory=set)

    def tasks_on(self, node: str) -> list[Task]:
        return [t for t in self.tasks.values() if t.node == node]


def _move(task: Task, dst: State, at: str, **changes: object) -> Task:
    src = State(task.state)
    if not is_legal(src, dst):
        raise IllegalTransition(task.id, src, dst)
    return _replace(task, state=dst, updated_at=at, **changes)


def _submitted(state: ClusterState, e: TaskSubmitted) -> None:
    state.tasks[e.task.id] = e.task


def _unplaced(state: ClusterState, e: TaskUnplaced) -> None:
    task = state.tasks[e.task_id]
    state.tasks[e.task_id] = _replace(task, error=e.reason, updated_at=e.at)


def _scheduled(state: ClusterState, e: TaskScheduled) -> None:
    task = state.tasks[e.task_id]
    state.tasks[e.task_id] = _move(task, State.SCHEDULED, e.at, node=e.node, error="")


def _started(state: ClusterState, e: TaskStarted) -> None:
    task = state.tasks[e.task_id]
    state.tasks[e.task_id] = _move(
        task,
        State.RUNNING,
        e.at,
        starts_at=e.at,
        container_id=e.container_id,
        host_ports=e.host_ports,
    )


def _exited(state: ClusterState, e: TaskExited) -> None:
    task = state.tasks[e.task_id]
    ok = e.stopped or e.exit_code == 0
    dst = State.COMPLETED if ok else State.FAILED
    state.tasks[e.task_id] = _move(
        task, dst, e.at, finished_at=e.at, exit_code=e.exit_code, error=e.error
    )
    state.stop_requested.discard(e.task_id)


def _stop_requested(state: ClusterState, e: TaskStopRequested) -> None:
    task = state.tasks[e.task_id]
    if task.state == State.PENDING:
        # Never placed, so nothing to stop: the table allows only Failed from Pending.
        state.tasks[e.task_id] = _move(
            task, State.FAILED, e.at, finished_at=e.at, error="stopped before it was placed"
        )
    else:
        state.stop_requested.add(e.task_id)


def _failed(state: ClusterState, e: TaskFailed) -> None:
    task = state.tasks[e.task_id]
    state.tasks[e.task_id] = _move(task, State.FAILED, e.at, finished_at=e.at, error=e.error)
    state.stop_requested.discard(e.task_id)


def _node_joined(state: ClusterState, e: NodeJoined) -> None:
    state.nodes[e.node.name] = e.node


def _digest(state: ClusterState, e: StateDigest) -> None:
    """Changes nothing: it records what the state was (see `orc replay --check`)."""


_HANDLERS = {
    TaskSubmitted: _submitted,
    TaskUnplaced: _unplaced,
    TaskScheduled: _scheduled,
    TaskStarted: _started,
    TaskExited: _exited,
    TaskStopRequested: _stop_requested,
    TaskFailed: _failed,
    NodeJoined: _node_joined,
    StateDigest: _digest,
}


def apply(state: ClusterState, event: AnyEvent) -> ClusterState:
    """Fold one event into the state. Raises IllegalTransition for an event the table forbids."""
    _HANDLERS[type(event)](state, event)
    return state


def replay(records: Iterable[tuple[int, AnyEvent]]) -> ClusterState:
    """The state after `(seq, event)` records, as an event log reads them."""
    state = ClusterState()
    for _, event in records:
        apply(state, event)
    return state


def load_state(log: EventLogReader) -> ClusterState:
    """The state recorded in a log. Blocking: it reads files."""
    return replay(log.read(1))
