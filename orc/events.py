"""The records of the manager's event log: every fact that changes cluster state.

Each event carries its own time (`at`, RFC 3339) so that `apply` needs no clock. The same
`TaskStarted` and `TaskExited` types are what a worker reports, so a worker's update is logged
as it arrived.
"""

from __future__ import annotations

import msgspec

from orc.model import HostPort, NodeInfo, Task, wire_name


class Event(
    msgspec.Struct, tag=True, tag_field="Type", rename=wire_name, frozen=True, kw_only=True
):
    """Keys are PascalCase and `Type` names the event, in the log as on the wire."""

    at: str


class NodeJoined(Event, frozen=True):
    node: NodeInfo


class TaskSubmitted(Event, frozen=True):
    """A task was accepted; it is Pending with orc's fields set (`CreatedAt`, `Driver`)."""

    task: Task


class TaskUnplaced(Event, frozen=True):
    """No node can run the task now; it stays Pending and `Error` says why."""

    task_id: str
    reason: str


class TaskScheduled(Event, frozen=True):
    task_id: str
    node: str


class TaskStarted(Event, frozen=True):
    task_id: str
    node: str
    container_id: str = ""
    host_ports: dict[str, list[HostPort]] | None = None


class TaskExited(Event, frozen=True):
    """The task's process or container ended (or was never found again).

    It ends Completed when it exited 0 or was stopped on request, Failed otherwise.
    """

    task_id: str
    node: str
    exit_code: int | None = None
    error: str = ""
    stopped: bool = False


class TaskStopRequested(Event, frozen=True):
    task_id: str


class TaskFailed(Event, frozen=True):
    """orc itself gave up on the task: it could not launch it, or lost it."""

    task_id: str
    error: str


class StateDigest(Event, frozen=True):
    """A hash of the manager's state after every event up to `seq`: replay recomputes it, and a
    difference means `apply` no longer does what it did when the log was written."""

    seq: int
    digest: str


AnyEvent = (
    NodeJoined
    | TaskSubmitted
    | TaskUnplaced
    | TaskScheduled
    | TaskStarted
    | TaskExited
    | TaskStopRequested
    | TaskFailed
    | StateDigest
)

TASK_EVENTS = (
    TaskSubmitted,
    TaskUnplaced,
    TaskScheduled,
    TaskStarted,
    TaskExited,
    TaskStopRequested,
    TaskFailed,
)
