"""What the manager decides for each command: the events to log and the reply to give.

Pure functions of the durable state and the command. The manager logs the events, applies
them, and only then replies, so nothing is acknowledged before it is on disk.
"""

from __future__ import annotations

import logging

import msgspec

from orc.events import (
    AnyEvent,
    NodeJoined,
    TaskExited,
    TaskFailed,
    TaskScheduled,
    TaskStarted,
    TaskStopRequested,
    TaskSubmitted,
    TaskUnplaced,
)
from orc.messages import Join, Lost, Place, Reply, Stop, Submit
from orc.model import State, spec_of
from orc.state import ClusterState
from orc.transitions import ACTIVE, TERMINAL

log = logging.getLogger("orc.manager")

Decision = tuple[list[AnyEvent], Reply | None]
NONE: Decision = ([], None)


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
        return [TaskScheduled(at=cmd.now, task_id=task.id, node=cmd.node)], None
    if task.error == cmd.reason:
        return NONE
    return [TaskUnplaced(at=cmd.now, task_id=task.id, reason=cmd.reason)], None


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
    task = _placed_here(state, event.task_id, event.node, "a start")
    if task is None or task.state != State.SCHEDULED:
        return NONE
    return [event], None


def exited(state: ClusterState, event: TaskExited) -> Decision:
    task = _placed_here(state, event.task_id, event.node, "an exit")
    if task is None or task.state not in ACTIVE:
        return NONE
    if task.id in state.stop_requested and not event.stopped:
        event = msgspec.structs.replace(event, stopped=True)
    return [event], None


def lost(state: ClusterState, cmd: Lost) -> Decision:
    task = _placed_here(state, cmd.task_id, cmd.node, "a loss")
    if task is None or task.state not in ACTIVE:
        return NONE
    if task.id in state.stop_requested:
        return [TaskExited(at=cmd.now, task_id=task.id, node=cmd.node, stopped=True)], None
    return [TaskFailed(at=cmd.now, task_id=task.id, error=cmd.error)], None


def join(state: ClusterState, cmd: Join) -> Decision:
    if state.nodes.get(cmd.node.name) == cmd.node:
        return NONE
    return [NodeJoined(at=cmd.now, node=cmd.node)], None


def key_of(message: object) -> str | None:
    """The task a command touches: two commands for one task never share a log batch."""
    if isinstance(message, Submit):
        return message.event.task.id if message.event.task else None
    return getattr(message, "task_id", None)
