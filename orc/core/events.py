"""The records of the manager's event log: every fact that changes cluster state.

Each event carries its own time (`at`, RFC 3339) so that `apply` needs no clock. The same
`TaskStarted` and `TaskExited` types are what a worker reports, so a worker's update is logged
as it arrived.
"""

from __future__ import annotations

import msgspec

from orc.core.model import HostPort, NodeInfo, Task, wire_name


class Event(
    msgspec.Struct,
    tag=True,
    tag_field="Type",
    rename=wire_name,
    frozen=True,
    kw_only=True,
    gc=False,  # plain data, never in a cycle: see Task
):
    """Keys are PascalCase and `Type` names the event, in the log as on the wire."""

    at: str


class NodeJoined(Event, frozen=True):
    """A node registered (or came back, or changed what it offers): it is up."""

    node: NodeInfo


class NodeDown(Event, frozen=True):
    """The manager stopped hearing from a node (no heartbeat for ORC_NODE_TTL): it is down,
    nothing is placed on it, and its tasks were failed (each by its own `TaskFailed`)."""

    node: str
    reason: str


class NodeLogReset(Event, frozen=True):
    """A node's own log starts again at `seq`, below what the manager had applied from it: its
    data directory was wiped or replaced. The manager follows the new log from `seq`; the tasks
    the node no longer knows are reported lost when it reconciles."""

    node: str
    seq: int
    reason: str


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
    # The record's sequence number in the worker's own log (0: in-process, not numbered); the
    # manager applies each worker seq once (see `ClusterState.node_seqs`).
    worker_seq: int = 0


class TaskExited(Event, frozen=True):
    """The task's process or container ended (or was never found again).

    It ends Completed when it exited 0 or was stopped on request, Failed otherwise.
    """

    task_id: str
    node: str
    exit_code: int | None = None
    error: str = ""
    stopped: bool = False
    worker_seq: int = 0


class TaskLost(Event, frozen=True):
    """A worker found no trace of a task it was meant to run (say, after its own restart).

    In the manager's log it records that the worker's update was applied; the task's change
    follows as its own event (`TaskFailed`, or `TaskExited` when a stop was requested).
    """

    task_id: str
    node: str
    error: str
    worker_seq: int = 0


class TaskStopRequested(Event, frozen=True):
    task_id: str


class TaskFailed(Event, frozen=True):
    """orc itself gave up on the task: it could not launch it, or lost it."""

    task_id: str
    error: str


class TaskRestarting(Event, frozen=True):
    """The task ended and its restart policy restarts it: it goes back to Scheduled on `node`
    (where it ran) and waits there until `not_before` (the backoff), when `TaskRestarted` says
    it runs again.

    It records the end it replaces (`exit_code`, `reason`): a restarted task goes from Running
    (or, after a launch error, Scheduled) straight back to Scheduled, never through Completed
    or Failed. `restart_count` is the task's new `RestartCount`; `streak` counts restarts in a
    row (the backoff doubles along a streak; a long enough run ends it). `delay` is the backoff
    in seconds, `not_before` = `at` + `delay`: the log holds the deadline, so a manager that
    restarts keeps it.
    """

    task_id: str
    node: str
    reason: str
    restart_count: int
    streak: int
    delay: float
    not_before: str
    exit_code: int | None = None


class TaskRestarted(Event, frozen=True):
    """A restart's backoff is over: the task runs again on `node`, the node it waited on when
    that node can still run it, another one otherwise."""

    task_id: str
    node: str


class TaskUnhealthy(Event, frozen=True):
    """`HealthCheck` failed `failures` times in a row on the run that started at `starts_at`.

    With `stop` (its restart policy is not `no`) orc stops the task; its end then counts as a
    failure with `reason`, and the policy decides whether it runs again. Without, the task keeps
    running and `Error` says it is unhealthy.
    """

    task_id: str
    node: str
    reason: str
    failures: int
    stop: bool


class TaskPurged(Event, frozen=True):
    """An ended task is forgotten: ORC_TASK_RETENTION passed since it finished. It leaves the
    state (and `GET /tasks`); its events stay in the log until compaction removes them."""

    task_id: str
    reason: str


class StateDigest(Event, frozen=True):
    """A hash of the manager's state after every event up to `seq`: replay recomputes it, and a
    difference means `apply` no longer does what it did when the log was written."""

    seq: int
    digest: str


AnyEvent = (
    NodeJoined
    | NodeDown
    | NodeLogReset
    | TaskSubmitted
    | TaskUnplaced
    | TaskScheduled
    | TaskStarted
    | TaskExited
    | TaskStopRequested
    | TaskFailed
    | TaskLost
    | TaskRestarting
    | TaskRestarted
    | TaskUnhealthy
    | TaskPurged
    | StateDigest
)

# What a worker reports, in its own log and on its `GET /events` stream.
WorkerUpdate = TaskStarted | TaskExited | TaskLost
WORKER_UPDATES = (TaskStarted, TaskExited, TaskLost)

TASK_EVENTS = (
    TaskSubmitted,
    TaskUnplaced,
    TaskScheduled,
    TaskStarted,
    TaskExited,
    TaskStopRequested,
    TaskFailed,
    TaskLost,
    TaskRestarting,
    TaskRestarted,
    TaskUnhealthy,
    TaskPurged,
)
