"""What the manager decides for each command: the events to log, the reply to give, and the
notes to log.

Pure functions of the durable state and the command: no I/O, no clock (times arrive inside the
commands), no logging. The manager logs the events, applies them, and only then replies, so
nothing is acknowledged before it is on disk. What a decision wants said (why an update was
ignored) comes back as `notes`, which the Manager actor writes to the `orc.manager` logger.

Jobs: `register`, `scale`, `stop_job` and `revert` decide a client's requests about a job
(a new version, a count, a stop); what the job then does is the reconciler's
(`orc.core.reconcile`), which the manager runs after every change that touches a job.

Restarts and health:

- `review` looks at the events any other decision proposes (a worker's exit, a lost task, a
  node gone down) and, when a task's restart policy restarts it, puts a `TaskRestarting` before
  the event that ends it. That event is still logged, as a record of how the run ended; `apply`
  sees the task already waiting for its restart and changes nothing else.
- `unhealthy` turns the HealthChecker's verdict into a `TaskUnhealthy` (and a stop, unless the
  policy is `no`); the stopped run then ends as a failure with the health check's reason.
  `healthy` records a run's first passing check (`TaskHealthy`), from which a job's deployment
  counts the task's `MinHealthyTime`.
- `restart_due` ends a backoff: `TaskRestarted` on the node the task waited on while that node
  can still run it, or on the best other node (the configured placement policy, over the
  allocations in the state), or a `TaskUnplaced` saying why there is none yet.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal, NamedTuple

import msgspec

from orc.core import times
from orc.core.events import (
    AnyEvent,
    JobRegistered,
    JobScaled,
    JobStopped,
    NodeDown,
    NodeJoined,
    NodeLogReset,
    TaskExited,
    TaskFailed,
    TaskHealthy,
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
from orc.core.jobs import LIVE, STOPPED, JobAccepted, changes, rolls
from orc.core.messages import (
    Healthy,
    Join,
    LogBehind,
    NodeSilent,
    Place,
    Purge,
    Reply,
    RestartDue,
    RevertJob,
    ScaleJob,
    Stop,
    StopJob,
    Submit,
    SubmitJob,
    Unhealthy,
)
from orc.core.model import NodeInfo, State, Task, spec_of
from orc.core.placement import allocations, choose, constraints_of, job_counts, unfit
from orc.core.restarts import DEFAULT, RestartSettings, fmt_seconds, plan, policy_of
from orc.core.retention import EndedIndex
from orc.core.state import ClusterState
from orc.core.times import later, seconds_between
from orc.core.transitions import ACTIVE, TERMINAL

PURGE_BATCH = 10_000  # tasks forgotten per `Purge`: the next one takes the rest


class Note(NamedTuple):
    """A line for the manager's log, at `level`: the core does no I/O, so it says what it
    wants logged and the Manager actor logs it."""

    text: str
    level: Literal["info", "warning"] = "info"


class Decision(NamedTuple):
    """What one command comes to: the events to log durably (in order), the reply to give once
    they are on disk (None when nobody waits for one), and notes for the manager's log."""

    events: list[AnyEvent]
    reply: Reply | None = None
    notes: tuple[Note, ...] = ()


def nothing(*notes: Note) -> Decision:
    """No event and no reply; the notes say why, when that is worth a log line."""
    return Decision([], None, notes)


class Limits(NamedTuple):
    """How much the manager takes on before it says no: tasks held (every task it knows, until
    ended ones are forgotten), and tasks waiting to be placed."""

    max_tasks: int = 1_000_000
    max_pending: int = 10_000


NO_LIMITS = Limits(max_tasks=2**62, max_pending=2**62)
PENDING_RETRY = 1.0  # seconds: placements drain the queue quickly
HELD_RETRY = 60.0  # seconds: held tasks go only as ended ones are forgotten


def submit(
    state: ClusterState, cmd: Submit, limits: Limits = NO_LIMITS, pending: int = 0
) -> Decision:
    """A new task is recorded Pending; the same one again is answered as it is now; one that
    would take the manager past its limits is refused (`pending`: tasks waiting to be placed,
    as the manager counts them)."""
    event = cmd.event
    if event.task is None:
        return Decision([], Reply(400, message="Object missing required field Task - at $"))
    if event.state == State.COMPLETED:
        return stop(state, Stop(event.task.id, cmd.now))
    existing = state.tasks.get(event.task.id)
    if existing is not None:
        if spec_of(existing) == spec_of(event.task):
            return Decision([], Reply(200, event=msgspec.structs.replace(event, task=existing)))
        return Decision(
            [],
            Reply(
                409,
                message=f"task {existing.id} already exists with a different spec;"
                " use a new ID, or DELETE the old task first",
            ),
        )
    if len(state.tasks) >= limits.max_tasks:
        return Decision(
            [],
            Reply(
                503,
                message=f"orc holds {len(state.tasks)} tasks, its limit (ORC_MAX_TASKS);"
                " ended tasks are forgotten after ORC_TASK_RETENTION: retry later",
                retry_after=HELD_RETRY,
            ),
        )
    if pending >= limits.max_pending:
        return Decision(
            [],
            Reply(
                429,
                message=f"{pending} tasks already wait to be placed, the limit"
                " (ORC_MAX_PENDING): retry shortly",
                retry_after=PENDING_RETRY,
            ),
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
    return Decision([TaskSubmitted(at=cmd.now, task=task)], Reply(201, event=recorded))


def stop(state: ClusterState, cmd: Stop) -> Decision:
    """Stop a task in any state. An ended task stays as it is. A task whose stop was asked for
    before and that still runs (its node never confirmed: it was lost, or the stop order was)
    is asked again: the stop goes to its node once more, and a node that does not know the task
    answers so, which ends it."""
    task = state.tasks.get(cmd.task_id)
    if task is None:
        return Decision([], Reply(404, message=f"no task with ID {cmd.task_id}"))
    if task.state in TERMINAL:
        return Decision([], Reply(204, task=task))
    return Decision([TaskStopRequested(at=cmd.now, task_id=task.id)], Reply(204, task=task))


def place(state: ClusterState, cmd: Place) -> Decision:
    task = state.tasks.get(cmd.task_id)
    if task is None or task.state != State.PENDING:
        return nothing()
    if cmd.node:
        if cmd.node not in state.nodes:
            return nothing(
                Note(f"scheduler placed task {task.id} on unknown node {cmd.node}", "warning")
            )
        if cmd.node in state.down:
            return nothing(Note(f"not placing task {task.id} on node {cmd.node}: it is down"))
        return Decision([TaskScheduled(at=cmd.now, task_id=task.id, node=cmd.node)])
    if task.error == cmd.reason or task.state != State.PENDING:
        return nothing()
    return Decision([TaskUnplaced(at=cmd.now, task_id=task.id, reason=cmd.reason)])


def _duplicate(state: ClusterState, node: str, worker_seq: int, what: str) -> Note | None:
    """Why an update from a worker's log is ignored when it was applied already (its seq is not
    past the last); None when it is new."""
    last = state.node_seqs.get(node, 0)
    if worker_seq and worker_seq <= last:
        return Note(
            f"ignoring {what} from node {node}: worker seq {worker_seq},"
            f" and {last} was applied already"
        )
    return None


def _update_for(
    state: ClusterState, event: TaskStarted | TaskExited | TaskLost, what: str
) -> Task | Decision:
    """The task a worker's update is about, or the decision to ignore the update: applied
    already, about an unknown task or another node's (each with a note saying so), or about a
    task that no longer runs (nothing to change)."""
    if seen := _duplicate(state, event.node, event.worker_seq, what):
        return nothing(seen)
    task = _placed_here(state, event.task_id, event.node, what)
    if isinstance(task, Note):
        return nothing(task)
    return task if task.state in ACTIVE else nothing()


def _placed_here(state: ClusterState, task_id: str, node: str, what: str) -> Task | Note:
    """The task an update from `node` is about, or why the update is ignored."""
    task = state.tasks.get(task_id)
    if task is None:
        return Note(f"ignoring {what} for unknown task {task_id} from node {node}")
    if task.node != node:
        return Note(
            f"ignoring {what} for task {task_id} from node {node}: it is placed on {task.node!r}"
        )
    return task


def started(state: ClusterState, event: TaskStarted) -> Decision:
    task = _update_for(state, event, "a start")
    if isinstance(task, Decision):
        return task
    if task.state != State.SCHEDULED:
        return nothing()
    return Decision([event])


def exited(state: ClusterState, event: TaskExited) -> Decision:
    task = _update_for(state, event, "an exit")
    if isinstance(task, Decision):
        return task
    if task.id in state.stop_requested and not event.stopped:
        event = msgspec.structs.replace(event, stopped=True)
    return Decision([event])


def lost(state: ClusterState, event: TaskLost) -> Decision:
    """A worker has no trace of a task: it failed (or, if a stop was asked for, it is done).

    With a worker seq, the `TaskLost` itself is logged first, so the seq is applied once.
    """
    task = _update_for(state, event, "a loss")
    if isinstance(task, Decision):
        return task
    marker: list[AnyEvent] = [event] if event.worker_seq else []
    if task.id in state.stop_requested:
        return Decision(
            [*marker, TaskExited(at=event.at, task_id=task.id, node=event.node, stopped=True)]
        )
    return Decision([*marker, TaskFailed(at=event.at, task_id=task.id, error=event.error)])


def node_down(state: ClusterState, cmd: NodeSilent) -> Decision:
    """A node went silent: it is down, and each task placed there failed (or, if a stop was
    asked for, ended). What happens to a failed task next is its restart policy's business."""
    if cmd.node not in state.nodes or cmd.node in state.down:
        return nothing()
    events: list[AnyEvent] = [NodeDown(at=cmd.now, node=cmd.node, reason=cmd.reason)]
    error = f"node {cmd.node} lost: {cmd.reason}"
    for task in state.tasks_on(cmd.node):
        if task.state not in ACTIVE:
            continue
        if task.id in state.stop_requested:
            events.append(TaskExited(at=cmd.now, task_id=task.id, node=cmd.node, stopped=True))
        else:
            events.append(TaskFailed(at=cmd.now, task_id=task.id, error=error))
    return Decision(events)


def log_behind(state: ClusterState, cmd: LogBehind) -> Decision:
    """A node whose log restarted (a wiped data directory) is followed from its new end."""
    applied = state.node_seqs.get(cmd.node, 0)
    if cmd.node not in state.nodes or cmd.last_seq >= applied:
        return nothing()
    reason = (
        f"its log ends at seq {cmd.last_seq} but updates up to {applied} were applied:"
        " its data directory was replaced"
    )
    return Decision([NodeLogReset(at=cmd.now, node=cmd.node, seq=cmd.last_seq, reason=reason)])


def join(state: ClusterState, cmd: Join) -> Decision:
    """Logged when the node is new, offers something else, or comes back from down."""
    if state.nodes.get(cmd.node.name) == cmd.node and cmd.node.name not in state.down:
        return nothing()
    return Decision([NodeJoined(at=cmd.now, node=cmd.node)])


def purge(state: ClusterState, cmd: Purge, ended: EndedIndex | None = None) -> Decision:
    """Forget the tasks that ended at least `retention` seconds ago: a cluster that runs for
    months must not keep (and list, snapshot and replay) every task it ever ran.

    A task waiting out a restart backoff is Scheduled, not ended, and is kept; one that was
    restarted before and has ended since is forgotten like any other. `ended` is the manager's
    index of ended tasks, so that a look costs what it purges; without one (a test, a tool) it
    is built from the state.
    """
    try:
        cutoff = times.parse(cmd.now) - timedelta(seconds=cmd.retention)
    except (OverflowError, ValueError):  # a retention longer than dates go back: none is due
        return nothing()
    reason = f"ended more than {fmt_seconds(cmd.retention)} ago (ORC_TASK_RETENTION)"
    index = ended if ended is not None else EndedIndex.of(state.tasks.values())
    due = index.due(state.tasks, cutoff, PURGE_BATCH)
    return Decision([TaskPurged(at=cmd.now, task_id=task_id, reason=reason) for task_id in due])


def key_of(message: object) -> str | None:
    """The task (or job) a command touches: two commands for one never share a log batch."""
    if isinstance(message, Submit):
        return message.event.task.id if message.event.task else None
    if isinstance(message, SubmitJob):
        return f"job:{message.spec.id}"
    if isinstance(message, ScaleJob | StopJob | RevertJob):
        return f"job:{message.job_id}"
    task_id = getattr(message, "task_id", None)
    return task_id if isinstance(task_id, str) else None


# -- restarts and health ------------------------------------------------------------------------


def _end_of(event: AnyEvent) -> tuple[bool, str, int | None] | None:
    """For an event that ends a run and is not a user's stop: (clean, reason, exit code)."""
    match event:
        case TaskExited(stopped=False, exit_code=code, error=error):
            clean = code == 0 and not error
            return clean, error or ("exited 0" if code == 0 else f"exited with status {code}"), code
        case TaskFailed(error=error):
            return False, error, None
    return None


def review(
    state: ClusterState, decision: Decision, settings: RestartSettings = DEFAULT
) -> Decision:
    """`decision` with restarts added to its events, and stale reports of a waiting task
    dropped (with a note saying so)."""
    out: list[AnyEvent] = []
    notes = list(decision.notes)
    for event in decision.events:
        task_id = getattr(event, "task_id", None)
        task = state.tasks.get(task_id) if isinstance(task_id, str) else None
        if task is None or not isinstance(event, TaskStarted | TaskExited | TaskFailed):
            out.append(event)
            continue
        if state.waiting(task.id):
            notes.append(
                Note(f"ignoring {type(event).__name__} for task {task.id}: it waits to restart")
            )
            continue
        killed = task.id in state.unhealthy and task.id not in state.stop_requested
        if isinstance(event, TaskExited) and event.stopped and killed:
            # orc stopped it for its health check: a failure, with that reason
            event = msgspec.structs.replace(event, stopped=False, error=state.unhealthy[task.id])
        end = _end_of(event)
        if end is None or task.state not in ACTIVE:
            out.append(event)
            continue
        clean, reason, code = end
        restart = _restart(state, task, event.at, clean, reason, code, settings)
        if isinstance(restart, str):  # not restarted: say why, when the policy would have
            if restart:
                event = msgspec.structs.replace(event, error=f"{reason}; {restart}")
            if killed and isinstance(event, TaskExited):
                # it may well have exited 0 on orc's SIGTERM: it failed all the same
                event = TaskFailed(at=event.at, task_id=task.id, error=event.error)
        else:
            out.append(restart)
        out.append(event)
    return Decision(out, decision.reply, tuple(notes))


def _restart(
    state: ClusterState,
    task: Task,
    at: str,
    clean: bool,
    reason: str,
    code: int | None,
    settings: RestartSettings,
) -> TaskRestarting | str:
    if clean and task.state == State.SCHEDULED:
        return ""  # a clean end of a task that never ran: nothing to restart
    previous = state.restarts.get(task.id)
    try:  # times come from workers and old logs: one orc cannot read is a run of unknown length
        ran_for = seconds_between(task.starts_at, at) if task.state == State.RUNNING else None
    except (ValueError, OverflowError):
        ran_for = None
    p = plan(policy_of(task), clean, previous.streak if previous else 0, ran_for, settings)
    if not p.restart:
        return p.why_not
    try:
        not_before = later(at, p.delay)
    except (ValueError, OverflowError):  # no backoff can be counted from it
        return f"not restarted: its end time {at!r} is not a time orc can count from"
    return TaskRestarting(
        at=at,
        task_id=task.id,
        node=task.node,
        reason=reason,
        restart_count=task.restart_count + 1,
        streak=p.streak,
        delay=p.delay,
        not_before=not_before,
        exit_code=code,
    )


def _current_run(state: ClusterState, task_id: str, node: str, starts_at: str) -> Task | None:
    """The task a health verdict is about, if it still runs the run the verdict is on."""
    task = state.tasks.get(task_id)
    if task is None or task.state != State.RUNNING:
        return None
    return task if (task.node, task.starts_at) == (node, starts_at) else None


def healthy(state: ClusterState, cmd: Healthy) -> Decision:
    """The HealthChecker's first pass on a run: recorded once, for the run it is about."""
    task = _current_run(state, cmd.task_id, cmd.node, cmd.starts_at)
    if task is None or state.checked.get(task.id, ("",))[0] == cmd.starts_at:
        return nothing()  # a run that is over, or one whose pass is recorded already
    return Decision(
        [TaskHealthy(at=cmd.now, task_id=task.id, node=task.node, starts_at=cmd.starts_at)]
    )


def unhealthy(state: ClusterState, cmd: Unhealthy, settings: RestartSettings = DEFAULT) -> Decision:
    task = _current_run(state, cmd.task_id, cmd.node, cmd.starts_at)
    if task is None or task.id in state.unhealthy or task.id in state.stop_requested:
        return nothing()  # a verdict on a run that is over, or one already acted on
    reason = f"unhealthy: {cmd.reason}"
    event = TaskUnhealthy(
        at=cmd.now,
        task_id=task.id,
        node=task.node,
        reason=reason,
        failures=cmd.failures,
        stop=policy_of(task) != "no",
    )
    return Decision([event])


def can_run(state: ClusterState, node: str, task: Task) -> bool:
    """`node` is up, has the task's driver, and meets its constraints (a job's)."""
    info = state.nodes.get(node)
    if info is None or node in state.down or not task.driver:
        return False
    return not unfit(info, task.driver, constraints_of(task))


def restart_due(
    state: ClusterState, cmd: RestartDue, settings: RestartSettings = DEFAULT
) -> Decision:
    task = state.tasks.get(cmd.task_id)
    r = state.restarts.get(cmd.task_id)
    if task is None or r is None or not r.waiting or r.not_before != cmd.not_before:
        return nothing()  # stopped meanwhile, or a timer of an earlier backoff
    if can_run(state, task.node, task):
        return Decision([TaskRestarted(at=cmd.now, task_id=task.id, node=task.node)])
    nodes: list[NodeInfo] = [n for n in state.nodes.values() if n.name not in state.down]
    others = [t for t in state.tasks.values() if t.id != task.id]
    choice = choose(settings.placement, task, nodes, allocations(others), jobs=job_counts(others))
    if choice.node:
        return Decision([TaskRestarted(at=cmd.now, task_id=task.id, node=choice.node)])
    reason = f"waits to restart: node {task.node} cannot run it and {choice.reason}"
    if task.error == reason:
        return nothing()
    return Decision([TaskUnplaced(at=cmd.now, task_id=task.id, reason=reason)])


# -- jobs: a client's requests (what a job then does is orc.core.reconcile's) ---------------


def _no_job(job_id: str) -> Decision:
    return Decision([], Reply(404, message=f"no job with ID {job_id}"))


def register(state: ClusterState, cmd: SubmitJob, limits: Limits) -> Decision:
    """Create or change a job: a new version of it, unless the spec is the current one (then
    nothing changes, and the answer says so)."""
    spec = cmd.spec
    job = state.jobs.get(spec.id)
    if spec.count > limits.max_tasks:
        return Decision(
            [],
            Reply(
                400,
                message=f"Job.Count: {spec.count} is more tasks than orc holds at once"
                f" ({limits.max_tasks}, ORC_MAX_TASKS)",
            ),
        )
    if job is not None and job.spec == spec and job.status == LIVE:
        accepted = JobAccepted(spec.id, job.version, "unchanged: this is the current version")
        return Decision([], Reply(200, body=accepted))
    if spec.type != "system" and (full := _past_max_tasks(state, spec.id, spec.count, limits)):
        return full
    if job is None:
        version, reason = 0, "submitted"
    else:
        version = job.version + 1
        diff = changes(job.spec, spec)
        reason = "updated: " + ("; ".join(diff) if diff else "restarted after a stop")
    event = JobRegistered(at=cmd.now, job=spec, version=version, reason=reason)
    rolling = job is not None and rolls(job.spec, spec)
    message = (
        f"version {version}: a rolling update replaces the tasks of older versions"
        if rolling
        else f"version {version}"
    )
    return Decision(
        [event], Reply(201 if job is None else 200, body=JobAccepted(spec.id, version, message))
    )


def _past_max_tasks(
    state: ClusterState, job_id: str, count: int, limits: Limits
) -> Decision | None:
    """The refusal of a job's Count that would take orc past ORC_MAX_TASKS, as `submit`
    refuses a task: the tasks it holds now, plus those the job would add to its live ones
    (ended tasks count until they are forgotten). None when it fits."""
    live = sum(
        1
        for task_id in state.job_tasks.get(job_id, {})
        if (t := state.tasks.get(task_id)) is not None and t.state not in TERMINAL
    )
    added = count - live
    if added <= 0 or len(state.tasks) + added <= limits.max_tasks:
        return None
    return Decision(
        [],
        Reply(
            503,
            message=f"orc holds {len(state.tasks)} tasks and job {job_id} would add {added},"
            f" past its limit of {limits.max_tasks} (ORC_MAX_TASKS); ended tasks are forgotten"
            " after ORC_TASK_RETENTION: retry later, or ask for fewer",
            retry_after=HELD_RETRY,
        ),
    )


def scale(state: ClusterState, cmd: ScaleJob, limits: Limits = NO_LIMITS) -> Decision:
    job = state.jobs.get(cmd.job_id)
    if job is None:
        return _no_job(cmd.job_id)
    if job.spec.type == "system":
        return Decision(
            [],
            Reply(400, message=f"job {job.spec.id} is a system job: it runs one task per node"),
        )
    if job.spec.periodic is not None:
        return Decision(
            [],
            Reply(
                400,
                message=f"job {job.spec.id} is periodic: scale its runs by its Count"
                " in a new version (POST /jobs)",
            ),
        )
    accepted = JobAccepted(job.spec.id, job.version, f"count {job.spec.count} -> {cmd.count}")
    if cmd.count == job.spec.count and job.status == LIVE:
        return Decision([], Reply(200, body=accepted))
    if full := _past_max_tasks(state, job.spec.id, cmd.count, limits):
        return full
    reason = f"scaled from {job.spec.count} to {cmd.count} by request"
    return Decision(
        [JobScaled(at=cmd.now, job_id=job.spec.id, count=cmd.count, reason=reason)],
        Reply(200, body=accepted),
    )


def stop_job(state: ClusterState, cmd: StopJob) -> Decision:
    job = state.jobs.get(cmd.job_id)
    if job is None:
        return _no_job(cmd.job_id)
    accepted = JobAccepted(job.spec.id, job.version, "stopping its tasks")
    if job.status == STOPPED:
        return Decision(
            [], Reply(200, body=JobAccepted(job.spec.id, job.version, "stopped already"))
        )
    return Decision(
        [JobStopped(at=cmd.now, job_id=job.spec.id, reason="stopped by request")],
        Reply(200, body=accepted),
    )


def revert(state: ClusterState, cmd: RevertJob) -> Decision:
    job = state.jobs.get(cmd.job_id)
    if job is None:
        return _no_job(cmd.job_id)
    spec = job.spec_of(cmd.version)
    if spec is None:
        known = ", ".join(str(v.version) for v in job.versions)
        return Decision(
            [],
            Reply(
                404,
                message=f"job {job.spec.id} has no version {cmd.version} (it has {known}):"
                " see GET /jobs/{id}/versions",
            ),
        )
    if spec == job.spec and job.status == LIVE:
        accepted = JobAccepted(job.spec.id, job.version, f"version {cmd.version} is current")
        return Decision([], Reply(200, body=accepted))
    version = job.version + 1
    reason = f"reverted to version {cmd.version} by request"
    return Decision(
        [JobRegistered(at=cmd.now, job=spec, version=version, reason=reason)],
        Reply(200, body=JobAccepted(job.spec.id, version, reason)),
    )
