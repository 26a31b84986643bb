"""What the manager decides for each command: the events to log and the reply to give.

Pure functions of the durable state and the command. The manager logs the events, applies
them, and only then replies, so nothing is acknowledged before it is on disk.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import msgspec

from orc.core import times
from orc.core.events import (
    AnyEvent,
    NodeDown,
    NodeJoined,
    NodeLogReset,
    TaskExited,
    TaskFailed,
    TaskLost,
    TaskPurged,
    TaskScheduled,
    TaskStarted,
    TaskStopRequested,
    TaskSubmitted,
    TaskUnplaced,
)
from orc.core.messages import Join, LogBehind, NodeSilent, Place, Purge, Reply, Stop, Submit
from orc.core.model import State, Task, spec_of
from orc.core.restarts import fmt_seconds
from orc.core.state import ClusterState
from orc.core.transitions import ACTIVE, TERMINAL

log = logging.getLogger("orc.manager")

Decision = tuple[list[AnyEvent], Reply | None]
NONE: Decision = ([], None)
PURGE_BATCH = 10_000  # tasks forgotten per `Purge`: the next one takes the rest


def submit(state: ClusterState, cmd: Submit) -> Decision:
    event = cmd.event
    assert event.task is not None
    if event.state == State.COMPLETED:
        return stop(state, Stop(event.task.id, cmd.now))
    existing = state.tasks.get(event.task.id)
    if existing is not None:
        if spec_of(existing) == spec_of(event.task):
            return [], Reply(200, event=msgspec.structs.replace(event, task=existing))
        return [], Reply(
            409,
            message=f"task {existing.id} already exists with a different spec;"
            " use a new ID, or DELETE the old task first",
        )
    task = msgspec.structs.replace(
        event.task,
        state=State.PENDING,
        container_id="",
        node="",
        starts_at=None,
        finished_at=None,
        host_ports=None,
        restart_count=0,
        exit_code=None,
        error="",
        state_name="",
        created_at=cmd.now,
        updated_at=cmd.now,
    )
    recorded = msgspec.structs.replace(event, task=task, requested_at=event.requested_at or cmd.now)
    return [TaskSubmitted(at=cmd.now, task=task)], Reply(201, event=recorded)


def stop(state: ClusterState, cmd: Stop) -> Decision:
    task = state.tasks.get(cmd.task_id)
    if task is None:
        return [], Reply(404, message=f"no task with ID {cmd.task_id}")
    if task.state in TERMINAL or task.id in state.stop_requested:
        return [], Reply(204, task=task)
    return [TaskStopRequested(at=cmd.now, task_id=task.id)], Reply(204, task=task)


def place(state: ClusterState, cmd: Place) -> Decision:
    task = state.tasks.get(cmd.task_id)
    if task is None or task.state != State.PENDING:
        return NONE
    if cmd.node:
        if cmd.node not in state.nodes:
            log.warning("scheduler placed task %s on unknown node %s", task.id, cmd.node)
            return NONE
        if cmd.node in state.down:
            log.info("not placing task %s on node %s: it is down", task.id, cmd.node)
            return NONE
        return [TaskScheduled(at=cmd.now, task_id=task.id, node=cmd.node)], None
    if task.error == cmd.reason or task.state != State.PENDING:
        return NONE
    return [TaskUnplaced(at=cmd.now, task_id=task.id, reason=cmd.reason)], None


def _duplicate(state: ClusterState, node: str, worker_seq: int, what: str) -> bool:
    """An update from a worker's log that was applied already (its seq is not past the last)."""
    last = state.node_seqs.get(node, 0)
    if worker_seq and worker_seq <= last:
        log.info(
            "ignoring %s from node %s: worker seq %d, and %d was applied already",
            what,
            node,
            worker_seq,
            last,
        )
        return True
    return False


def _placed_here(state: ClusterState, task_id: str, node: str, what: str):
    task = state.tasks.get(task_id)
    if task is None:
        log.info("ignoring %s for unknown task %s from node %s", what, task_id, node)
        return None
    if task.node != node:
        log.info(
            "ignoring %s for task %s from node %s: it is placed on %r",
            what,
            task_id,
            node,
            task.node,
        )
        return None
    return task


def started(state: ClusterState, event: TaskStarted) -> Decision:
    if _duplicate(state, event.node, event.worker_seq, "a start"):
        return NONE
    task = _placed_here(state, event.task_id, event.node, "a start")
    if task is None or task.state != State.SCHEDULED:
        return NONE
    return [event], None


def exited(state: ClusterState, event: TaskExited) -> Decision:
    if _duplicate(state, event.node, event.worker_seq, "an exit"):
        return NONE
    task = _placed_here(state, event.task_id, event.node, "an exit")
    if task is None or task.state not in ACTIVE:
        return NONE
    if task.id in state.stop_requested and not event.stopped:
        event = msgspec.structs.replace(event, stopped=True)
    return [event], None


def lost(state: ClusterState, event: TaskLost) -> Decision:
    """A worker has no trace of a task: it failed (or, if a stop was asked for, it is done).

    With a worker seq, the `TaskLost` itself is logged first, so the seq is applied once.
    """
    if _duplicate(state, event.node, event.worker_seq, "a loss"):
        return NONE
    task = _placed_here(state, event.task_id, event.node, "a loss")
    if task is None or task.state not in ACTIVE:
        return NONE
    marker: list[AnyEvent] = [event] if event.worker_seq else []
    if task.id in state.stop_requested:
        return [
            *marker,
            TaskExited(at=event.at, task_id=task.id, node=event.node, stopped=True),
        ], None
    return [*marker, TaskFailed(at=event.at, task_id=task.id, error=event.error)], None


def node_down(state: ClusterState, cmd: NodeSilent) -> Decision:
    """A node went silent: it is down, and each task placed there failed (or, if a stop was
    asked for, ended). What happens to a failed task next is its restart policy's business."""
    if cmd.node not in state.nodes or cmd.node in state.down:
        return NONE
    events: list[AnyEvent] = [NodeDown(at=cmd.now, node=cmd.node, reason=cmd.reason)]
    error = f"node {cmd.node} lost: {cmd.reason}"
    for task in state.tasks_on(cmd.node):
        if task.state not in ACTIVE:
            continue
        if task.id in state.stop_requested:
            events.append(TaskExited(at=cmd.now, task_id=task.id, node=cmd.node, stopped=True))
        else:
            events.append(TaskFailed(at=cmd.now, task_id=task.id, error=error))
    return events, None


def log_behind(state: ClusterState, cmd: LogBehind) -> Decision:
    """A node whose log restarted (a wiped data directory) is followed from its new end."""
    applied = state.node_seqs.get(cmd.node, 0)
    if cmd.node not in state.nodes or cmd.last_seq >= applied:
        return NONE
    reason = (
        f"its log ends at seq {cmd.last_seq} but updates up to {applied} were applied:"
        " its data directory was replaced"
    )
    return [NodeLogReset(at=cmd.now, node=cmd.node, seq=cmd.last_seq, reason=reason)], None


def join(state: ClusterState, cmd: Join) -> Decision:
    """Logged when the node is new, offers something else, or comes back from down."""
    if state.nodes.get(cmd.node.name) == cmd.node and cmd.node.name not in state.down:
        return NONE
    return [NodeJoined(at=cmd.now, node=cmd.node)], None


def purge(state: ClusterState, cmd: Purge) -> Decision:
    """Forget the tasks that ended at least `retention` seconds ago: a cluster that runs for
    months must not keep (and list, snapshot and replay) every task it ever ran.

    A task waiting out a restart backoff is Scheduled, not ended, and is kept; one that was
    restarted before and has ended since is forgotten like any other.
    """
    cutoff = times.parse(cmd.now) - timedelta(seconds=cmd.retention)
    reason = f"ended more than {fmt_seconds(cmd.retention)} ago (ORC_TASK_RETENTION)"
    events: list[AnyEvent] = []
    for task in state.tasks.values():
        if task.state in TERMINAL and _ended_by(task, cutoff):
            events.append(TaskPurged(at=cmd.now, task_id=task.id, reason=reason))
            if len(events) == PURGE_BATCH:
                break
    return events, None


def _ended_by(task: Task, cutoff: datetime) -> bool:
    ended = task.finished_at or task.updated_at
    try:
        return ended is not None and times.parse(ended) <= cutoff
    except ValueError:  # not a time orc wrote: keep the task rather than guess
        return False


def key_of(message: object) -> str | None:
    """The task a command touches: two commands for one task never share a log batch."""
    if isinstance(message, Submit):
        return message.event.task.id if message.event.task else None
    return getattr(message, "task_id", None)
