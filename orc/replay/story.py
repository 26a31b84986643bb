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
    AnyEvent,
    NodeDown,
    NodeJoined,
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
    """The ID of the task an event is about; None for node events."""
    if isinstance(event, TaskSubmitted):
        return event.task.id
    return getattr(event, "task_id", None)


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
            return f"{name}({driver}{what})" if what or driver else name.strip()
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
        case TaskUnhealthy(reason=reason, stop=stop):
            return f"{reason}; stopping it" if stop else reason
        case StateDigest(seq=seq, digest=digest):
            return f"state up to seq {seq}: {digest}"
        case NodeJoined(node=node):
            drivers = ",".join(node.drivers) or "none"
            return f"{node.address} drivers={drivers} cores={node.cores}"
    for field in ("reason", "error"):  # event types added later
        value = getattr(event, field, None)
        if isinstance(value, str) and value:
            return value
    return ""


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
    before = state.tasks.get(task_id) if task_id is not None else None
    problem = None if task_id is None else _problem(state, before, event)
    if isinstance(event, StateDigest):
        problem = _digest_problem(state, seq, event)
    earlier = state.quarantined.get(task_id) if task_id is not None else None
    apply(state, event)
    after = state.tasks.get(task_id) if task_id is not None else None
    record = state.quarantined.get(task_id) if task_id is not None else None
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
    row = Row(
        seq=seq,
        at=event.at,
        event=name,
        task=task_id,
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
