"""Messages between orc's actors. All are msgspec structs so that the same types can cross
HTTP between separate manager and worker processes.

Worker -> manager updates are the log's own `TaskStarted`, `TaskExited` and `TaskLost` events.
"""

from __future__ import annotations

from typing import Any

import msgspec

from orc.core.jobspec import JobSpec
from orc.core.model import NodeInfo, Task, TaskEvent, wire_name

# -- to the manager ---------------------------------------------------------------------------


class Submit(msgspec.Struct, frozen=True):
    """A checked TaskEvent from a client (IDs filled in) and the time it arrived."""

    event: TaskEvent
    now: str


class Stop(msgspec.Struct, frozen=True):
    task_id: str
    now: str


class Place(msgspec.Struct, frozen=True):
    """The scheduler's decision for one task: a node, or the reason there is none."""

    task_id: str
    node: str
    reason: str
    now: str


class NodeSilent(msgspec.Struct, frozen=True):
    """From the node monitor: nothing was heard from `node` for ORC_NODE_TTL."""

    node: str
    reason: str
    now: str


class Purge(msgspec.Struct, frozen=True):
    """From the reaper: forget the tasks that ended more than `retention` seconds before `now`."""

    now: str
    retention: float


class Join(msgspec.Struct, frozen=True):
    node: NodeInfo
    now: str


class GetTask(msgspec.Struct, frozen=True):
    task_id: str


class ListTasks(msgspec.Struct, frozen=True):
    """Every task, or only those of the job `job` (`GET /tasks?job=ID`)."""

    job: str = ""


# -- jobs: a client's requests (`orc.core.decide`), the reads, and the reconciler's timer ------


class SubmitJob(msgspec.Struct, frozen=True):
    """`POST /jobs`: a checked spec (its template's driver decided) and when it arrived."""

    spec: JobSpec
    now: str


class ScaleJob(msgspec.Struct, frozen=True):
    job_id: str
    count: int
    now: str


class StopJob(msgspec.Struct, frozen=True):
    job_id: str
    now: str


class RevertJob(msgspec.Struct, frozen=True):
    job_id: str
    version: int
    now: str


class GetJob(msgspec.Struct, frozen=True):
    """Answered with a `Reply` whose body is the job's `orc.core.jobs.JobView`."""

    job_id: str


class ListJobs(msgspec.Struct, frozen=True):
    """Answered with a list of `orc.core.jobs.JobView`, by ID."""


class JobVersions(msgspec.Struct, frozen=True):
    """Answered with a `Reply` whose body is a list of `orc.core.jobs.JobVersionView`."""

    job_id: str


class PlanJob(msgspec.Struct, frozen=True):
    """`POST /jobs/{id}/plan`: what submitting `spec` would do (nothing is changed). Answered
    with a `Reply` whose body is an `orc.core.dryrun.JobPlan`."""

    spec: JobSpec
    now: str


class JobsDue(msgspec.Struct, frozen=True):
    """From the job timer: these jobs asked to be looked at again by now (a reschedule delay
    ended, a task's MinHealthyTime passed, a cron tick)."""

    job_ids: tuple[str, ...]
    now: str


class WakeJobs(msgspec.Struct, frozen=True):
    """To the job timer: send `JobsDue` for each job at its time (RFC 3339); a job's new
    time replaces its old one."""

    wake: dict[str, str]


class GetStats(msgspec.Struct, frozen=True):
    pass


class ListNodes(msgspec.Struct, frozen=True):
    """Answered with `orc.core.nodeview.NodeView`s (GET /nodes)."""


class PlacedOn(msgspec.Struct, frozen=True):
    """Answered with the tasks the manager has Scheduled or Running on `node` (less those
    waiting out a restart backoff), and the last worker seq it applied from it: what a proxy
    needs to (re)connect to its worker and reconcile with it."""

    node: str


class AttachProxy(msgspec.Struct, frozen=True):
    """The node's WorkerProxy now exists (separate processes: made when a node registers)."""

    node: str
    proxy: object


class Reply(msgspec.Struct, frozen=True):
    """The manager's answer to a client command: an HTTP status and what to send."""

    status: int
    task: Task | None = None
    event: TaskEvent | None = None
    message: str = ""
    # seconds a refused client should wait before it tries again (429, 503): `Retry-After`
    retry_after: float = 0.0
    # any other answer (a job's view, a plan): a msgspec struct, sent as JSON
    body: Any = None


# -- to the scheduler -------------------------------------------------------------------------


class Schedule(msgspec.Struct, frozen=True):
    tasks: tuple[Task, ...]


class NodesChanged(msgspec.Struct, frozen=True):
    nodes: tuple[NodeInfo, ...]


class TasksPlaced(msgspec.Struct, frozen=True):
    """Tasks the log now has Scheduled or Running on a node: the scheduler counts them there.

    Sent for every `TaskScheduled`, and on manager start-up for everything placed, so the
    scheduler's allocations follow the log whoever placed the task (itself or a restart).
    """

    tasks: tuple[Task, ...]


class TasksEnded(msgspec.Struct, frozen=True):
    """Tasks that finished or were stopped before they ran: their capacity is free again,
    and a waiting task may fit now.
    """

    task_ids: tuple[str, ...]


# -- to a worker (through its proxy) ----------------------------------------------------------
#
# Orders cross HTTP as they are, inside `Orders` (a worker's `POST /orders`): tagged by their
# class name in `Type`, keys in the wire's PascalCase, unknown keys refused.


class _Order(
    msgspec.Struct,
    frozen=True,
    tag=True,
    tag_field="Type",
    rename=wire_name,
    forbid_unknown_fields=True,
):
    pass


class RunTask(_Order, frozen=True):
    task: Task


class StopTask(_Order, frozen=True):
    task_id: str


class Reconcile(_Order, frozen=True):
    """After a manager start, or a (re)connection to a worker: the tasks the manager believes
    are placed on this worker. With `exclusive`, the worker also stops every task it runs
    that is not in the list (it was failed or placed elsewhere while the worker was away)."""

    tasks: tuple[Task, ...]
    exclusive: bool = False


Order = RunTask | StopTask | Reconcile


class Orders(msgspec.Struct, frozen=True, rename=wire_name, forbid_unknown_fields=True):
    """Orders for one worker, carried out one after the other, in this order: how a proxy
    hands them over (many at a time), in process and over HTTP alike. Answered with
    `OrderResults`."""

    orders: tuple[Order, ...]


class OrderResult(msgspec.Struct, frozen=True, rename=wire_name):
    """What became of one order, as the HTTP status the order's own route would answer:
    201 a task runs (or already ran), 204 a stop has begun (or the task has ended), 200 a
    reconcile is done, 404 a stop for a task the worker does not know (with `message`)."""

    status: int
    message: str = ""


class OrderResults(msgspec.Struct, frozen=True, rename=wire_name):
    """One result per order of an `Orders`, in the same order."""

    results: tuple[OrderResult, ...]


class ListWorkerTasks(msgspec.Struct, frozen=True):
    pass


class GetLogs(msgspec.Struct, frozen=True):
    """Ask a worker for a task's output: answered `(stdout, stderr)` bytes, or None if unknown.

    `driver` is set by the manager (which knows the task) so a worker that restarted since
    the task ended still finds its output.
    """

    task_id: str
    driver: str = ""


class Disown(msgspec.Struct, frozen=True):
    """Forget an adopted task the manager does not know: leave its container or process be."""

    task_id: str


class Ping(msgspec.Struct, frozen=True):
    """Answered once every message before it has been handled (any actor): a barrier."""


class Shutdown(msgspec.Struct, frozen=True):
    """Stop every task and report it, before orc exits."""


# -- restarts and health checks (orc/restarter.py, orc/health.py) -----------------------------


class Arm(msgspec.Struct, frozen=True):
    """To the Restarter: tell the manager `RestartDue` for `task_id` at `not_before`."""

    task_id: str
    not_before: str


class RestartDue(msgspec.Struct, frozen=True):
    """From the Restarter: the backoff that ends at `not_before` is over."""

    task_id: str
    not_before: str
    now: str


class Watch(msgspec.Struct, frozen=True):
    """To the HealthChecker: GET `url` for the run of `task_id` that started at `starts_at`."""

    task_id: str
    node: str
    starts_at: str
    url: str


class Unwatch(msgspec.Struct, frozen=True):
    task_id: str


class Healthy(msgspec.Struct, frozen=True):
    """From the HealthChecker: the first check of the run that started at `starts_at` passed."""

    task_id: str
    node: str
    starts_at: str
    now: str


class Unhealthy(msgspec.Struct, frozen=True):
    """From the HealthChecker: the run that started at `starts_at` failed `failures` checks in a
    row; `reason` is the last failure."""

    task_id: str
    node: str
    starts_at: str
    failures: int
    reason: str
    now: str


class Hold(msgspec.Struct, frozen=True):
    """To the Restarter, as orc shuts down: fire no more restarts (the log keeps them; the next
    start arms them again)."""


class LogBehind(msgspec.Struct, frozen=True):
    """From a node's proxy: the node's log ends at `last_seq`, below what the manager applied."""

    node: str
    last_seq: int
    now: str


class ResendState(msgspec.Struct, frozen=True):
    """To the manager, from a fresh actor that replaces a crashed one (`role`: scheduler,
    restarter or health): send it again the state it derives from the log."""

    role: str
