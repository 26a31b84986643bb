"""What a log says happened: the timeline, one task's life, the state at a point, the check.

Pure functions over `(seq, event)` records as the event log reads them; the CLI reads and
prints. Every event goes through the live manager's `apply`, so replay shows what the manager
believed, not a second interpretation, and rebuilds the very state the manager had (its
recorded digests match). An event that breaks the rules is reported, and `apply` does with it
what it did in the manager: it skips it, or quarantines its task (ends it Failed, saying why:
`orc.core.quarantine`), so that one bad record does not hide the rest.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import msgspec

from orc.core import times
from orc.core.events import (
    JOB_ACTIONS,
    JOB_EVENTS,
    AnyEvent,
    JobDecided,
    JobRegistered,
    JobScaled,
    JobStopped,
    NodeDown,
    NodeJoined,
    StateDigest,
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
from orc.core.jobs import JobRecord, JobView, job_view
from orc.core.model import State, Task
from orc.core.quarantine import is_quarantine
from orc.core.snapshot import state_digest
from orc.core.state import ClusterState, apply
from orc.core.transitions import TERMINAL

Record = tuple[int, AnyEvent]

EVENT_NAMES: dict[type, str] = {
    TaskSubmitted: "submitted",
    TaskUnplaced: "unplaced",
    TaskScheduled: "scheduled",
    TaskStarted: "started",
    TaskExited: "exited",
    TaskStopRequested: "stop",
    TaskFailed: "failed",
    NodeJoined: "node-joined",
    NodeDown: "node-down",
    TaskLost: "lost",
    TaskPurged: "purged",
    JobRegistered: "job-registered",
    JobScaled: "job-scaled",
    JobStopped: "job-stopped",
    JobDecided: "job-decided",
}


def event_name(event: AnyEvent) -> str:
    """`scheduled`; an event type added later: its class name in kebab case (`node-down`)."""
    name = EVENT_NAMES.get(type(event))
    return name or re.sub(r"(?<!^)(?=[A-Z])", "-", type(event).__name__).lower()


class ReplayError(ValueError):
    """A question the log cannot answer (a point past its end, a task it never saw)."""


class Row(msgspec.Struct, kw_only=True, rename={"src": "from", "dst": "to"}):
    """One event as a timeline line: the task's state before it (`src`) and after it (`dst`),
    as `apply` left it. `violation` is set when the event broke the rules; `reason` then says
    what `apply` did with it: skipped it (`dst` is `src`), or quarantined the task."""

    seq: int
    at: str
    event: str
    task: str | None
    src: str | None
    dst: str | None
    node: str
    reason: str
    violation: str | None = None


class Violation(msgspec.Struct, kw_only=True):
    seq: int
    at: str
    kind: str
    message: str
    record: AnyEvent


class Quarantined(msgspec.Struct, kw_only=True):
    """A task the record at `seq` quarantined (ended Failed, see `orc.core.quarantine`):
    `apply` refusing an event about it, or the manager finding its spec outside the bounds
    at start-up. `reason` is the task's `Error`."""

    seq: int
    at: str
    task: str
    reason: str


class Period(msgspec.Struct, kw_only=True):
    """A stretch of time a task spent in one state. `open`: still in it when the log ends."""

    state: str
    since: str
    until: str | None
    seconds: float | None
    open: bool = False


class History(msgspec.Struct, kw_only=True):
    task: Task
    rows: list[Row]
    periods: list[Period]
    totals: dict[str, float]


@dataclass
class _Step:
    row: Row
    kind: str | None  # the violation's kind, when the event broke the rules
    task: Task | None  # the task the event is about, after it (before it, if it was purged)
    quarantine: str | None = None  # the reason, when the event quarantined the task


def parse_time(text: str) -> datetime | None:
    """An RFC 3339 time as an aware datetime (naive ones are UTC), or None if it is not one."""
    try:
        return times.parse(text)
    except (TypeError, ValueError):
        return None


def task_of(event: AnyEvent) -> str | None:
    """The ID of the task an event is about; None for node and job events (a job's decision
    may name a task, `mentioned`, but it is about the job: it changes no task)."""
    if isinstance(event, TaskSubmitted):
        return event.task.id
    if isinstance(event, JOB_EVENTS):
        return None
    return getattr(event, "task_id", None)


def job_of(event: AnyEvent) -> str | None:
    """The ID of the job a job event is about; None for other events."""
    if isinstance(event, JobRegistered):
        return event.job.id
    if isinstance(event, JobScaled | JobStopped | JobDecided):
        return event.job_id
    return None


def mentioned(event: AnyEvent) -> str | None:
    """The task an event names: the one it is about, or the one a job's decision names."""
    if isinstance(event, JobDecided):
        return event.task_id or None
    return task_of(event)


def _problem(state: ClusterState, task: Task | None, event: AnyEvent) -> tuple[str, str] | None:
    """Why the manager would not have logged `event` given `state` (before `apply`)."""
    if isinstance(event, TaskSubmitted):
        if task is not None:
            return "duplicate-task", f"task {task.id} submitted again"
        return None
    if task is None:
        return (
            "unknown-task",
            f"event for task {task_of(event)}, which is unknown (never submitted, or purged)",
        )
    current = State(task.state)
    if isinstance(event, TaskPurged):
        if current not in TERMINAL:
            return "purge-active", f"purged while {current.label}: only ended tasks are forgotten"
        return None
    if current in TERMINAL and not isinstance(event, TaskScheduled):
        return (
            "after-terminal",
            f"{event_name(event)} after the task ended {current.label}:"
            " only a restart to Scheduled may follow",
        )
    if isinstance(event, TaskScheduled) and event.node not in state.nodes:
        return "unknown-node", f"scheduled on node {event.node!r}, which never joined"
    if isinstance(event, TaskStarted | TaskExited) and event.node != task.node:
        what = "started" if isinstance(event, TaskStarted) else "exited"
        return (
            "wrong-node",
            f"{what} on node {event.node!r} but placed on {task.node or 'no node'!r}",
        )
    return None


def _describe(event: AnyEvent, before: Task | None, after: Task | None) -> str:
    """The human reason column: why or how the event happened."""
    match event:
        case TaskSubmitted(task=task):
            what = task.image or " ".join(task.cmd or [])
            driver = f"{task.driver}: " if task.driver else ""
            name = f"{task.name} " if task.name else ""
            text = f"{name}({driver}{what})" if what or driver else name.strip()
            if task.job_id:
                text += (", " if text else "") + slot_of(task)
            return text
        case TaskUnplaced(reason=reason):
            return reason
        case TaskScheduled():
            restart = before is not None and State(before.state) in (State.RUNNING, State.FAILED)
            return "restart" if restart else ""
        case TaskStarted(container_id=container):
            return f"container {container[:12]}" if container else ""
        case TaskExited(stopped=stopped, exit_code=code, error=error):
            text = "stopped" if stopped else ("exit ?" if code is None else f"exit {code}")
            if stopped and code is not None:
                text += f" (exit {code})"
            return f"{text}: {error}" if error else text
        case TaskStopRequested():
            if after is not None and State(after.state) == State.FAILED:
                return after.error
            return "stop requested"
        case TaskFailed(error=error):
            return error
        case NodeDown(reason=reason) | TaskLost(error=reason):
            return reason
        case TaskRestarting(reason=reason, restart_count=count, delay=delay):
            return f"restart {count} in {delay:g}s: {reason}"
        case TaskRestarted(node=node):
            return f"runs again on {node}"
        case TaskHealthy():
            return "its health check passed"
        case TaskUnhealthy(reason=reason, stop=stop):
            return f"{reason}; stopping it" if stop else reason
        case StateDigest(seq=seq, digest=digest):
            return f"state up to seq {seq}: {digest}"
        case NodeJoined(node=node):
            drivers = ",".join(node.drivers) or "none"
            return f"{node.address} drivers={drivers} cores={node.cores}"
        case JobRegistered(job=job, version=version, reason=reason, parent=parent):
            run = f" (a run of {parent})" if parent else ""
            return f"job {job.id} version {version}{run}: {reason}"
        case JobScaled(job_id=job_id, reason=reason) | JobStopped(job_id=job_id, reason=reason):
            return f"job {job_id}: {reason}"
        case JobDecided(job_id=job_id, action=action, reason=reason):
            return f"job {job_id} {action}: {reason}"
    for field in ("reason", "error"):  # event types added later
        value = getattr(event, field, None)
        if isinstance(value, str) and value:
            return value
    return ""


def slot_of(task: Task) -> str:
    """`slot 1 of job web version 2`: which of its job's tasks a task is (a system job's tasks
    are one per node, not numbered)."""
    where = f"slot {task.slot} of " if task.slot >= 0 else ""
    return f"{where}job {task.job_id} version {task.job_version}"


def _job_problem(state: ClusterState, event: AnyEvent) -> tuple[str, str] | None:
    """Why the manager would not have logged a job event given `state` (before `apply`)."""
    job_id = job_of(event)
    job = state.jobs.get(job_id) if job_id is not None else None
    if isinstance(event, JobRegistered):
        if job is not None and event.version <= job.version:
            return (
                "job-version",
                f"job {job_id} version {event.version} registered after version {job.version}:"
                " a job's versions only grow",
            )
        return None
    if job is None:
        return "unknown-job", f"event for job {job_id}, which was never registered"
    if isinstance(event, JobDecided) and event.action not in JOB_ACTIONS:
        return (
            "unknown-action",
            f"decision {event.action!r} is none of orc's ({', '.join(JOB_ACTIONS)})",
        )
    return None


# The job rules whose events `apply` does nothing with (the others it applies all the same).
_JOB_SKIPPED = frozenset({"unknown-job", "unknown-action"})


def _node_of(event: AnyEvent, before: Task | None, after: Task | None) -> str:
    if isinstance(event, NodeJoined):
        return event.node.name
    node = getattr(event, "node", None)
    if isinstance(node, str):
        return node
    task = after or before
    return task.node if task is not None else ""


def _digest_problem(state: ClusterState, seq: int, event: StateDigest) -> tuple[str, str] | None:
    """A recorded digest that the replayed state does not match: `apply` has changed since the
    log was written (or the log was edited), so replay no longer tells what really happened."""
    if event.seq != seq - 1:
        return "digest-seq", f"digest claims to cover up to seq {event.seq}, recorded at {seq}"
    actual = state_digest(state)
    if actual == event.digest:
        return None
    return (
        "digest-mismatch",
        f"replayed state digest {actual} differs from {event.digest} recorded at seq {seq}:"
        " apply no longer rebuilds the state the manager had",
    )


def _step(state: ClusterState, seq: int, event: AnyEvent) -> _Step:
    """Apply one event to `state`, as the manager did, and say what it did and which rule it
    broke, if any."""
    name = event_name(event)
    task_id = task_of(event)
    named = mentioned(event)  # the task it is about, or the one a job's decision names
    before = state.tasks.get(named) if named is not None else None
    problem = None
    if task_id is not None:
        problem = _problem(state, before, event)
    elif isinstance(event, JOB_EVENTS):
        problem = _job_problem(state, event)
    elif isinstance(event, StateDigest):
        problem = _digest_problem(state, seq, event)
    earlier = state.quarantined.get(named) if named is not None else None
    apply(state, event)
    after = state.tasks.get(named) if named is not None else None
    record = state.quarantined.get(named) if named is not None else None
    quarantine = None
    if record is not None and record is not earlier:
        # `apply` refused the event and quarantined the task
        quarantine = record.reason
        problem = problem or (record.kind, record.detail)
    elif isinstance(event, TaskFailed) and is_quarantine(event.error) and after is not before:
        quarantine = event.error  # the manager quarantined it at start-up
    if (
        problem is None
        and before is not None
        and after is not None
        and after.restart_count < before.restart_count
    ):
        problem = (
            "restart-count",
            f"restart count went back from {before.restart_count} to {after.restart_count}",
        )
    reason = _describe(event, before, after)
    if problem is not None and task_id is not None:
        reason = _effect(before, after, quarantine, reason)
    elif problem is not None and quarantine is not None:
        reason = quarantine  # a job's decision `apply` refused, quarantining the task it named
    elif problem is not None and problem[0] in _JOB_SKIPPED:
        reason = f"skipped; {reason}"
    row = Row(
        seq=seq,
        at=event.at,
        event=name,
        task=named,
        src=State(before.state).label if before is not None else None,
        dst=State(after.state).label if after is not None else None,
        node=_node_of(event, before, after),
        reason=reason,
        violation=problem[1] if problem else None,
    )
    return _Step(row, problem[0] if problem else None, after or before, quarantine)


def _effect(before: Task | None, after: Task | None, quarantine: str | None, how: str) -> str:
    """What `apply` did with an event that broke a rule: the timeline's reason for it."""
    if quarantine is not None:
        return quarantine  # `quarantined: ...`: what was refused
    if after is before:
        return f"skipped; {how}" if how else "skipped"
    return how


def walk(
    records: Iterable[Record], base: ClusterState | None = None
) -> tuple[list[_Step], ClusterState]:
    """Each record's step, and the state they lead to from `base` (a snapshot's state, when
    compaction removed the events before the records; it is not changed)."""
    state = copy.deepcopy(base) if base is not None else ClusterState()
    return [_step(state, seq, event) for seq, event in records], state


def timeline(records: Iterable[Record], base: ClusterState | None = None) -> list[Row]:
    """Every event as a row, with the state each task moved from and to."""
    return [s.row for s in walk(records, base)[0]]


class CheckResult(msgspec.Struct, kw_only=True):
    ok: bool
    events: int
    tasks: int
    nodes: int
    violations: list[Violation]
    quarantined: list[Quarantined] = msgspec.field(default_factory=list)


def check(records: Sequence[Record], base: ClusterState | None = None) -> CheckResult:
    """Every record that breaks a rule: an illegal transition, an event for an unknown task or
    after a terminal state (other than a restart), a task started or exited on a node it is
    not placed on, a restart count going back. Checking goes on after each one. Every task
    quarantined is listed too, with the record that did it."""
    steps, state = walk(records, base)
    violations = [
        Violation(
            seq=step.row.seq,
            at=step.row.at,
            kind=step.kind,
            message=step.row.violation or "",
            record=event,
        )
        for step, (_, event) in zip(steps, records, strict=True)
        if step.kind is not None
    ]
    _locate_divergence(records, violations)
    quarantined = [
        Quarantined(seq=step.row.seq, at=step.row.at, task=step.row.task, reason=step.quarantine)
        for step in steps
        if step.quarantine is not None and step.row.task is not None
    ]
    return CheckResult(
        ok=not violations,
        events=len(records),
        tasks=len(state.tasks),
        nodes=len(state.nodes),
        violations=violations,
        quarantined=quarantined,
    )


def _locate_divergence(records: Sequence[Record], violations: list[Violation]) -> None:
    """Name the events between the last digest that matched and the first that did not:
    the divergence is among them (Temporal reports non-determinism the same way)."""
    first = next((v for v in violations if v.kind == "digest-mismatch"), None)
    if first is None:
        return
    bad = {v.seq for v in violations if v.kind == "digest-mismatch"}
    last_good = max(
        (
            seq
            for seq, e in records
            if isinstance(e, StateDigest) and seq < first.seq and seq not in bad
        ),
        default=0,
    )
    window = [(seq, e) for seq, e in records if last_good < seq < first.seq]
    names = ", ".join(f"{seq} {event_name(e)}" for seq, e in window[:12])
    more = f" and {len(window) - 12} more" if len(window) > 12 else ""
    first.message += (
        f"; first divergence: between seq {last_good + 1} and {first.seq - 1} ({names}{more})"
    )


def state_of(records: Iterable[Record], base: ClusterState | None = None) -> ClusterState:
    """The state the records lead to: the manager's, rule-breaking events and all."""
    return walk(records, base)[1]


def parse_at(text: str) -> int | datetime:
    """`--at`: a sequence number, or an RFC 3339 time."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    moment = parse_time(text.replace(" ", "T", 1) if " " in text else text)
    if moment is None:
        raise ReplayError(f"--at {text!r} is neither a sequence number nor an RFC 3339 time")
    return moment


def until(records: Sequence[Record], at: int | datetime) -> list[Record]:
    """The records up to and including `at` (a seq, or the last event at or before a time)."""
    if not records:
        raise ReplayError("the log is empty")
    first_seq, last_seq = records[0][0], records[-1][0]
    last_at = records[-1][1].at
    if isinstance(at, int):
        if at > last_seq:
            raise ReplayError(f"--at {at} is beyond the end of the log (last seq {last_seq})")
        if at < first_seq:
            raise ReplayError(f"--at {at} is before the start of the log (first seq {first_seq})")
        return [r for r in records if r[0] <= at]
    end = parse_time(last_at)
    if end is not None and at > end:
        raise ReplayError(
            f"--at {at.isoformat()} is beyond the end of the log (last event at {last_at})"
        )
    kept: list[Record] = []
    for record in records:
        moment = parse_time(record[1].at)
        if moment is not None and moment > at:
            break
        kept.append(record)
    if not kept:
        raise ReplayError(
            f"--at {at.isoformat()} is before the first event (at {records[0][1].at})"
        )
    return kept


def find_task(records: Iterable[Record], wanted: str, base: ClusterState | None = None) -> str:
    """The task ID `wanted` names: an exact ID, or a prefix of exactly one."""
    ids = {task_of(event) for _, event in records} - {None}
    ids |= set(base.tasks) if base is not None else set()
    if wanted in ids:
        return wanted
    matches = sorted(i for i in ids if i is not None and i.startswith(wanted))
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ReplayError(f"task {wanted!r} is ambiguous: {len(matches)} task IDs start with it")
    raise ReplayError(f"no task {wanted!r} in the log ({len(ids)} tasks)")


def history(records: Sequence[Record], task_id: str, base: ClusterState | None = None) -> History:
    """One task's events and the time it spent in each state.

    The last state is open-ended: its time is counted to the last event of the log, unless it
    is terminal.
    """
    steps, state = walk(records, base)
    mine = [s for s in steps if s.row.task == task_id]
    task = state.tasks.get(task_id) or next((s.task for s in reversed(mine) if s.task), None)
    if task is None:
        raise ReplayError(f"no task {task_id!r} in the log")
    rows = [s.row for s in mine]
    periods: list[Period] = []
    for row in rows:
        if row.dst is None or row.dst == row.src:
            continue
        if periods:
            _close(periods[-1], row.at)
        periods.append(Period(state=row.dst, since=row.at, until=None, seconds=None))
    if periods and periods[-1].state not in {s.label for s in TERMINAL} and records:
        _close(periods[-1], records[-1][1].at)
        periods[-1].open = True
    totals: dict[str, float] = {}
    for period in periods:
        if period.seconds is not None:
            totals[period.state] = totals.get(period.state, 0.0) + period.seconds
    return History(task=task, rows=rows, periods=periods, totals=totals)


def _close(period: Period, at: str) -> None:
    start, end = parse_time(period.since), parse_time(at)
    period.until = at
    if start is not None and end is not None:
        period.seconds = max(0.0, (end - start).total_seconds())


# -- one job ----------------------------------------------------------------------------------


class JobLine(msgspec.Struct, kw_only=True, rename={"src": "from", "dst": "to"}):
    """One event of a job's story: the job's own (`job-registered`, `job-scaled`,
    `job-stopped`, `job-decided` with its `action`), or one of its tasks' (as the timeline
    names them). `slot` and `version` say which of the job's tasks `task` is (for a decision
    that names no task, the slot and version it is about, if any); `from` and `to` are that
    task's states before and after."""

    seq: int
    at: str
    event: str
    action: str
    task: str | None
    slot: int | None
    version: int | None
    src: str | None
    dst: str | None
    node: str
    reason: str
    violation: str | None = None


class JobVersionStory(msgspec.Struct, kw_only=True):
    """A version of the job: when and why it was registered. `rolling_update`: its template
    is new, so its deployment replaces the tasks of older versions."""

    version: int
    seq: int
    at: str
    reason: str
    rolling_update: bool


class Fate(msgspec.Struct, kw_only=True):
    """A step in the life of one of the job's tasks, in words."""

    seq: int
    at: str
    what: str


class JobTask(msgspec.Struct, kw_only=True):
    """One task the job made: which one (its slot, -1 for a system job's, and the version
    whose template it runs), how it ended up, what happened to it, and the task that took its
    slot after it (`replaced_by`)."""

    id: str
    slot: int
    version: int
    state: str
    node: str
    fate: list[Fate]
    replaced_by: str | None = None


class JobRun(msgspec.Struct, kw_only=True):
    """A run a periodic job launched: a job of its own (`orc replay --job` tells its story
    too). `tasks` counts its tasks by state (those the state still holds)."""

    id: str
    seq: int
    launched_at: str
    version: int
    status: str
    waiting: str
    tasks: dict[str, int]


class JobStory(msgspec.Struct, kw_only=True):
    """A job as the log tells it: the job now (as `GET /jobs/{id}` shows it), each of its
    versions, every event about it or its tasks, each task's fate, and a periodic job's runs."""

    job: JobView
    versions: list[JobVersionStory]
    events: list[JobLine]
    tasks: list[JobTask]
    runs: list[JobRun]


def find_job(records: Iterable[Record], wanted: str, base: ClusterState | None = None) -> str:
    """The job ID `wanted` names: an exact ID, or a prefix of exactly one."""
    ids = {job_of(event) for _, event in records} - {None}
    ids |= set(base.jobs) if base is not None else set()
    if wanted in ids:
        return wanted
    matches = sorted(i for i in ids if i is not None and i.startswith(wanted))
    if len(matches) == 1:
        return matches[0]
    if matches:
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise ReplayError(
            f"job {wanted!r} is ambiguous: {len(matches)} job IDs start with it ({shown})"
        )
    raise ReplayError(f"no job {wanted!r} in the log ({len(ids)} job{'s' * (len(ids) != 1)})")


def job_tasks(records: Iterable[Record], job_id: str, base: ClusterState | None = None) -> set[str]:
    """The IDs of the tasks job `job_id` made (those submitted with its ID)."""
    ids = {t.id for t in base.tasks.values() if t.job_id == job_id} if base is not None else set()
    if base is not None:
        ids.update(base.job_tasks.get(job_id, {}))
    ids.update(
        e.task.id for _, e in records if isinstance(e, TaskSubmitted) and e.task.job_id == job_id
    )
    return ids


# Decisions about a version of the job rather than about one task; their `version` is the one
# they judge (`wait`, `complete` and `launch` carry none).
_VERSIONED = frozenset(
    {"place", "replace", "revert", "healthy", "unhealthy", "deployed", "deployment-failed"}
)


def job_story(records: Sequence[Record], job_id: str, base: ClusterState | None = None) -> JobStory:
    """Job `job_id`'s story: every version (and why), every decision the reconciler logged
    about it with its reason, and the fate of each task it made, replayed with `apply` as the
    manager applied them. A task is the job's when it was submitted with the job's ID; the
    runs of a periodic job are the jobs registered with it as their `parent`."""
    state = copy.deepcopy(base) if base is not None else ClusterState()
    tasks: dict[str, None] = {}  # the job's tasks, in the order they were made
    if base is not None:
        tasks.update(base.job_tasks.get(job_id, {}))
        tasks.update((t.id, None) for t in base.tasks.values() if t.job_id == job_id)
    known: dict[str, Task] = {t: base.tasks[t] for t in tasks if base and t in base.tasks}
    fates: dict[str, list[Fate]] = {}
    lines: list[JobLine] = []
    versions: list[JobVersionStory] = []
    runs: dict[str, tuple[int, str]] = {}  # a periodic job's runs: the seq and time of each
    for seq, event in records:
        if isinstance(event, JobRegistered) and event.parent == job_id:
            runs.setdefault(event.job.id, (seq, event.at))
        if isinstance(event, TaskSubmitted) and event.task.job_id == job_id:
            tasks[event.task.id] = None
        ours = job_of(event) == job_id
        named = mentioned(event)
        if not ours and (named is None or named not in tasks or isinstance(event, JOB_EVENTS)):
            apply(state, event)
            continue
        job_before = state.jobs.get(job_id)
        step = _step(state, seq, event)
        task = step.task
        if task is not None:
            known[task.id] = task
        row = step.row
        line = JobLine(
            seq=seq,
            at=row.at,
            event=row.event,
            action=event.action if isinstance(event, JobDecided) else "",
            task=row.task,
            slot=task.slot if task is not None else None,
            version=task.job_version if task is not None else None,
            src=row.src,
            dst=row.dst,
            node=row.node,
            reason=row.reason,
            violation=row.violation,
        )
        match event:
            case JobRegistered(version=version, reason=reason):
                rolls = _rolls(job_before, state.jobs.get(job_id), version)
                said = f"{reason}; rolling update to version {version}" if rolls else reason
                versions.append(
                    JobVersionStory(
                        version=version, seq=seq, at=event.at, reason=reason, rolling_update=rolls
                    )
                )
                line.version, line.reason = version, said
                if row.violation is not None:
                    line.reason = f"{said} (!! {row.violation})"
            case JobScaled(reason=reason) | JobStopped(reason=reason):
                line.reason = reason if row.violation is None else row.reason
            case JobDecided(reason=reason, slot=slot, version=version, action=action):
                if action == "wait" and not reason:
                    reason = "waits for nothing now"
                line.reason = reason if row.violation is None else row.reason
                if task is None:
                    line.slot = slot if slot >= 0 else None
                    line.version = version if version or action in _VERSIONED else None
                if named is not None:
                    fates.setdefault(named, []).append(
                        Fate(seq=seq, at=event.at, what=f"{action}: {line.reason}")
                    )
        if named is not None and not isinstance(event, JOB_EVENTS):
            what = _fate(event, row)
            if what:
                fates.setdefault(named, []).append(Fate(seq=seq, at=event.at, what=what))
        lines.append(line)
    record = state.jobs.get(job_id)
    if record is None:
        raise ReplayError(f"no job {job_id!r} in the log")
    held = [state.tasks[t] for t in state.job_tasks.get(job_id, {}) if t in state.tasks]
    view = job_view(record, held, state.stop_requested)
    return JobStory(
        job=view,
        versions=versions,
        events=lines,
        tasks=_job_tasks(tasks, known, fates, state),
        runs=[_run(state, run, seq, at) for run, (seq, at) in runs.items()],
    )


def _rolls(before: JobRecord | None, after: JobRecord | None, version: int) -> bool:
    """`apply` started a deployment of `version` for a job that had one before: a rolling
    update (a new job's first deployment replaces nothing)."""
    if before is None or after is None or after.deployment is None:
        return False
    new = after.deployment
    return new.version == version and (before.deployment is None or before.deployment != new)


def _fate(event: AnyEvent, row: Row) -> str:
    """What a task event did to one of the job's tasks, in a few words."""
    ended = row.dst is not None and row.dst != row.src and row.dst in _ENDED
    match event:
        case TaskSubmitted(task=submitted):
            where = f"slot {submitted.slot} of " if submitted.slot >= 0 else ""
            what = f"created for {where}version {submitted.job_version}"
        case TaskUnplaced(reason=reason):
            what = f"unplaced: {reason}"
        case TaskScheduled(node=node):
            what = f"scheduled on {node}" + (" (restart)" if row.reason == "restart" else "")
        case TaskStarted(node=node):
            what = f"started on {node}"
        case TaskRestarted(node=node):
            what = f"runs again on {node}"
        case TaskStopRequested():
            what = f"ended {row.dst}: {row.reason}" if ended else "stop requested"
        case TaskExited() | TaskFailed() if ended:
            what = f"ended {row.dst}: {row.reason}"
        case TaskRestarting():
            what = row.reason  # `restart 1 in 2s: exit 1`
        case TaskHealthy():
            what = "health check passed"
        case TaskUnhealthy() | TaskLost():
            what = f"{'unhealthy' if isinstance(event, TaskUnhealthy) else 'lost'}: {row.reason}"
        case TaskPurged(reason=reason):
            what = f"forgotten: {reason}"
        case _:
            what = f"{row.event}: {row.reason}" if row.reason else row.event
    if row.violation is not None:
        what += f" (!! {row.violation})"
    return what


_ENDED = frozenset(s.label for s in TERMINAL)


def _job_tasks(
    order: dict[str, None],
    known: dict[str, Task],
    fates: dict[str, list[Fate]],
    state: ClusterState,
) -> list[JobTask]:
    """Each of the job's tasks with its fate; a task is `replaced_by` the next task made for
    its slot (a system job's: for its node)."""
    out: list[JobTask] = []
    last: dict[object, JobTask] = {}
    for task_id in order:
        task = state.tasks.get(task_id) or known.get(task_id)
        if task is None:
            continue
        fate = sorted(fates.get(task_id, []), key=lambda f: f.seq)
        entry = JobTask(
            id=task_id,
            slot=task.slot,
            version=task.job_version,
            state=State(task.state).label,
            node=task.node,
            fate=fate,
        )
        key = _slot_key(task)
        previous = last.get(key) if key is not None else None
        if previous is not None:
            previous.replaced_by = task_id
            made = next((f for f in fate if f.what.startswith("created")), None)
            if made is not None:
                note = f"replaced by {task_id[:8]} (version {task.job_version})"
                previous.fate.append(Fate(seq=made.seq, at=made.at, what=note))
                previous.fate.sort(key=lambda f: f.seq)
        if key is not None:
            last[key] = entry
        out.append(entry)
    return out


def _slot_key(task: Task) -> object:
    """What a job's task stands for: its slot, or (a system job's) the node it is pinned to."""
    if task.slot >= 0:
        return task.slot
    for c in task.constraints or ():
        if c.attribute == "node" and c.operator == "=":
            return ("node", c.value)
    return None


def _run(state: ClusterState, run_id: str, seq: int, at: str) -> JobRun:
    record = state.jobs.get(run_id)
    if record is None:  # never applied (its record broke a rule)
        return JobRun(
            id=run_id, seq=seq, launched_at=at, version=0, status="?", waiting="", tasks={}
        )
    held = [state.tasks[t] for t in state.job_tasks.get(run_id, {}) if t in state.tasks]
    view = job_view(record, held, state.stop_requested)
    return JobRun(
        id=run_id,
        seq=seq,
        launched_at=at,
        version=record.version,
        status=record.status,
        waiting=record.waiting,
        tasks={s: n for s, n in view.tasks.items() if n},
    )
