"""Cluster state and `apply`, the only code that changes it, live and in replay.

`apply` mutates the state it is given and returns it: copying the whole cluster per event
would make replay of a long log slow for no benefit, since the manager owns its state alone.
Tasks themselves are immutable structs, replaced on every change, so a task handed to another
actor never changes under it. `apply` does no I/O and reads no clock.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec

from orc.core.events import (
    AnyEvent,
    NodeDown,
    NodeJoined,
    NodeLogReset,
    StateDigest,
    TaskExited,
    TaskFailed,
    TaskLost,
    TaskPurged,
    TaskRestarted,
    TaskRestarting,
    TaskScheduled,
    TaskStarted,
    TaskStopRequested,
    TaskSubmitted,
    TaskUnhealthy,
    TaskUnplaced,
)
from orc.core.model import NodeInfo, State, Task
from orc.core.restarts import RestartState, fmt_seconds
from orc.core.transitions import LEGAL_PAIRS, IllegalTransition

_replace = msgspec.structs.replace

# The states `apply` moves tasks to, looked up once: `State.RUNNING` goes through the enum's
# metaclass, nine times slower than a global, and replay runs `apply` a million times a second.
_SCHEDULED, _RUNNING, _COMPLETED, _FAILED = (
    State.SCHEDULED,
    State.RUNNING,
    State.COMPLETED,
    State.FAILED,
)


@dataclass
class ClusterState:
    tasks: dict[str, Task] = field(default_factory=dict)
    nodes: dict[str, NodeInfo] = field(default_factory=dict)
    # Tasks a client asked to stop; they end Completed when their process is gone.
    stop_requested: set[str] = field(default_factory=set)
    # Per node, the last worker-log sequence number applied: an update at or below it is a
    # duplicate (a reconnect or a restart replays from here), and is ignored.
    node_seqs: dict[str, int] = field(default_factory=dict)
    # Nodes that are down, with the reason (a dict, not a set: ordered as the log made it).
    down: dict[str, str] = field(default_factory=dict)
    # Tasks restarted at least once: their streak, and whether they wait out a backoff.
    restarts: dict[str, RestartState] = field(default_factory=dict)
    # Running tasks orc is stopping because their health check failed, with the reason.
    unhealthy: dict[str, str] = field(default_factory=dict)

    def tasks_on(self, node: str) -> list[Task]:
        return [t for t in self.tasks.values() if t.node == node]

    def waiting(self, task_id: str) -> bool:
        """The task is Scheduled but waits out a restart backoff: nothing may run it yet."""
        r = self.restarts.get(task_id)
        return r is not None and r.waiting

    def up_nodes(self) -> tuple[NodeInfo, ...]:
        return tuple(n for n in self.nodes.values() if n.name not in self.down)


def _saw(state: ClusterState, node: str, worker_seq: int) -> None:
    if worker_seq > state.node_seqs.get(node, 0):
        state.node_seqs[node] = worker_seq


def _legal(task: Task, dst: State) -> State:
    """`dst`, if the table allows the task to move there; IllegalTransition if not."""
    if (task.state, dst) not in LEGAL_PAIRS:
        raise IllegalTransition(task.id, State(task.state), dst)
    return dst


def _submitted(state: ClusterState, e: TaskSubmitted) -> None:
    state.tasks[e.task.id] = e.task


def _unplaced(state: ClusterState, e: TaskUnplaced) -> None:
    task = state.tasks[e.task_id]
    state.tasks[e.task_id] = _replace(task, error=e.reason, updated_at=e.at)


def _scheduled(state: ClusterState, e: TaskScheduled) -> None:
    task = state.tasks[e.task_id]
    state.tasks[e.task_id] = _replace(
        task, state=_legal(task, _SCHEDULED), updated_at=e.at, node=e.node, error=""
    )


def _started(state: ClusterState, e: TaskStarted) -> None:
    if e.worker_seq:  # 0: reported in-process, not numbered
        _saw(state, e.node, e.worker_seq)
    task = state.tasks[e.task_id]
    state.tasks[e.task_id] = _replace(
        task,
        state=_legal(task, _RUNNING),
        updated_at=e.at,
        starts_at=e.at,
        container_id=e.container_id,
        host_ports=e.host_ports,
    )


def _exited(state: ClusterState, e: TaskExited) -> None:
    if e.worker_seq:  # 0: reported in-process, not numbered
        _saw(state, e.node, e.worker_seq)
    task = state.tasks[e.task_id]
    if state.restarts and state.waiting(e.task_id):
        # The end of the run that the `TaskRestarting` before it restarts: recorded only.
        state.tasks[e.task_id] = _replace(task, finished_at=e.at, exit_code=e.exit_code)
        return
    ok = e.stopped or e.exit_code == 0
    dst = _COMPLETED if ok else _FAILED
    state.tasks[e.task_id] = _replace(
        task,
        state=_legal(task, dst),
        updated_at=e.at,
        finished_at=e.at,
        exit_code=e.exit_code,
        error=e.error,
    )
    state.stop_requested.discard(e.task_id)
    state.unhealthy.pop(e.task_id, None)


def _stop_requested(state: ClusterState, e: TaskStopRequested) -> None:
    task = state.tasks[e.task_id]
    if task.state == State.PENDING:
        # Never placed, so nothing to stop: the table allows only Failed from Pending.
        state.tasks[e.task_id] = _replace(
            task,
            state=_legal(task, _FAILED),
            updated_at=e.at,
            finished_at=e.at,
            error="stopped before it was placed",
        )
    else:
        if state.waiting(e.task_id):
            # Waiting out a restart backoff: nothing runs, so it ends now, for good.
            error = "stopped while waiting to restart"
            state.tasks[e.task_id] = _replace(
                task,
                state=_legal(task, _COMPLETED),
                updated_at=e.at,
                finished_at=e.at,
                error=error,
            )
            del state.restarts[e.task_id]
            return
        state.stop_requested.add(e.task_id)


def _failed(state: ClusterState, e: TaskFailed) -> None:
    task = state.tasks[e.task_id]
    if state.restarts and state.waiting(e.task_id):
        return  # the end of a run that a `TaskRestarting` restarts (see `_exited`)
    state.tasks[e.task_id] = _replace(
        task, state=_legal(task, _FAILED), updated_at=e.at, finished_at=e.at, error=e.error
    )
    state.stop_requested.discard(e.task_id)
    state.unhealthy.pop(e.task_id, None)


def _lost(state: ClusterState, e: TaskLost) -> None:
    """Records the worker's update; the task's change is the event that follows it."""
    if e.worker_seq:  # 0: reported in-process, not numbered
        _saw(state, e.node, e.worker_seq)


def _restarting(state: ClusterState, e: TaskRestarting) -> None:
    task = state.tasks[e.task_id]
    changes = dict(
        node=e.node,
        restart_count=e.restart_count,
        exit_code=e.exit_code,
        finished_at=e.at,
        error=f"{e.reason}; restart {e.restart_count} in {fmt_seconds(e.delay)}",
    )
    if task.state == State.SCHEDULED:
        # It never ran (its launch failed): it stays Scheduled, now waiting out a backoff.
        state.tasks[e.task_id] = _replace(task, updated_at=e.at, **changes)
    else:
        state.tasks[e.task_id] = _replace(
            task, state=_legal(task, _SCHEDULED), updated_at=e.at, **changes
        )
    state.restarts[e.task_id] = RestartState(e.streak, e.not_before)
    state.unhealthy.pop(e.task_id, None)


def _restarted(state: ClusterState, e: TaskRestarted) -> None:
    task = state.tasks[e.task_id]
    state.tasks[e.task_id] = _replace(
        task,
        node=e.node,
        error="",
        updated_at=e.at,
        starts_at=None,
        container_id="",
        host_ports=None,
    )
    r = state.restarts[e.task_id]
    state.restarts[e.task_id] = RestartState(r.streak, r.not_before, waiting=False)


def _unhealthy(state: ClusterState, e: TaskUnhealthy) -> None:
    task = state.tasks[e.task_id]
    state.tasks[e.task_id] = _replace(task, error=e.reason, updated_at=e.at)
    if e.stop:
        state.unhealthy[e.task_id] = e.reason


def _purged(state: ClusterState, e: TaskPurged) -> None:
    """The manager purges only ended tasks (`decide.purge`); `orc replay --check` checks it."""
    del state.tasks[e.task_id]
    state.stop_requested.discard(e.task_id)
    state.restarts.pop(e.task_id, None)
    state.unhealthy.pop(e.task_id, None)


def _node_joined(state: ClusterState, e: NodeJoined) -> None:
    state.nodes[e.node.name] = e.node
    state.down.pop(e.node.name, None)


def _node_log_reset(state: ClusterState, e: NodeLogReset) -> None:
    state.node_seqs[e.node] = e.seq


def _node_down(state: ClusterState, e: NodeDown) -> None:
    state.down[e.node] = e.reason


def _digest(state: ClusterState, e: StateDigest) -> None:
    """Changes nothing: it records what the state was (see `orc replay --check`)."""


# Each handler takes its own event type: the table is typed by what all of them accept.
_HANDLERS: dict[type, Callable[[ClusterState, Any], None]] = {
    TaskSubmitted: _submitted,
    TaskUnplaced: _unplaced,
    TaskScheduled: _scheduled,
    TaskStarted: _started,
    TaskExited: _exited,
    TaskStopRequested: _stop_requested,
    TaskFailed: _failed,
    TaskLost: _lost,
    NodeJoined: _node_joined,
    NodeDown: _node_down,
    NodeLogReset: _node_log_reset,
    TaskRestarting: _restarting,
    TaskRestarted: _restarted,
    TaskUnhealthy: _unhealthy,
    TaskPurged: _purged,
    StateDigest: _digest,
}


def apply(state: ClusterState, event: AnyEvent) -> ClusterState:
    """Fold one event into the state. Raises IllegalTransition for an event the table forbids."""
    _HANDLERS[type(event)](state, event)
    return state


def replay(events: Iterable[AnyEvent], state: ClusterState | None = None) -> ClusterState:
    """The state after `events` (as `EventLog.records` reads them), from `state` (a snapshot's)
    or from nothing.

    The loop is `apply`'s body, inlined: at a million events a second, a call per event is a
    tenth of the time. The garbage collector is paused meanwhile: a replay makes millions of
    objects that all stay alive, and collections would only walk them again and again.
    """
    state = state if state is not None else ClusterState()
    handlers = _HANDLERS
    with collector_paused():
        for event in events:
            handlers[type(event)](state, event)
    return state


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the garbage collector while building a large state that all stays alive.

    What was built is then frozen (`gc.freeze`): the collector never walks it again. Without
    that, the first collection after the pause walks every object built (a tenth of a replay
    of a million events), and every full collection after it walks them again. Frozen objects
    are still freed when their last reference goes; only a cycle among them would never be.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.freeze()
            gc.enable()
