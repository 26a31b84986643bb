"""The reconciler: what a job's tasks should be, against what they are, as events.

`reconcile(state, now)` looks at each job (`orc.core.jobs.JobRecord`) and its tasks
(`ClusterState.job_tasks`) and returns a `Pass`: the events that bring the tasks towards the
job's spec (each decision a `JobDecided` with its reason, followed by the events that carry it
out), and when each job must be looked at again even if nothing happens. It is pure: it never
changes the state, reads no clock and never raises (the manager runs it after every change
that touches a job, live and in replay, and a pass that raised would stop the job for good).
The manager logs the events and applies them; the next pass sees their effect. Decisions are
made from the state alone, so the same state and `now` always give the same pass.

Words used below: a job's task *fills* its slot when it is Pending, Scheduled or Running and
no stop was asked for (a task being stopped no longer counts, so its replacement may be
placed in the same pass). A slot is `0..Count-1` for a service or batch job; a system job's
tasks are keyed by their node instead (`slot` -1, pinned by a `node =` constraint). A task
*is current* when its version runs the current template (`JobRecord.current`). A task *ended
on its own* when it ended and no stop was asked for (`stopped_on_request`: `orc.core.state`
marks the stopped end of a job's task `STOPPED_ON_REQUEST`); for a service (and a system job)
any such end is a failure, for a batch job all but a clean exit.

The rules, and the choices they make:

- At most one task fills a (job, slot) at any time: a task is placed only for a slot nothing
  fills; a task whose node went down was ended Failed by the manager (`decide.node_down`), so
  its replacement is legal and the old task stays ended when its node returns. Should two
  tasks fill a slot all the same (a log an older orc wrote), the later one is stopped.
- **service**: slots `0..Count-1` are kept filled; tasks in other slots are stopped, the
  highest slot first (a scale down). A stopped job, or Count 0, stops every task.
- **Refilling a slot** (every type): a slot that never had a task, or whose last task was
  stopped on request, is filled at once (`place`). One whose last task ended on its own is
  filled by a `replace` under `Reschedule`: not before `Delay` seconds after that end, and not
  when the slot's failures within the last `Interval` seconds are more than `Attempts`
  (`Attempts` counts replacements, as Nomad's: with 1, a first failure is replaced and a
  second within the interval is not). A slot not replaced is looked at again when its oldest
  counted failure leaves the interval, so "at most N per interval" is what it means.
- **batch**: a slot is done when a current task of it Completed with exit code 0 (and no
  stop was asked for). At most `Parallelism` (0: Count) slots are filled at once. When every
  slot is done, `complete` (once); a complete job does nothing more until it is registered
  again. A new template stops the tasks of the old one and places the new one in their slots
  at once (a batch job has no deployment), and only the new template's successes count.
- **system**: one task per eligible node: up, with the template's driver, and satisfying the
  job's constraints (`orc.core.placement.satisfies`; the built-in attribute `node` is the
  node's name). A node that joins gets one; a task whose node is no longer eligible is
  stopped and not replaced elsewhere. A new template replaces every node's task at once.
- **Deployments** (service only; `Deployment`, `update_of`): while a deployment to version V
  runs, a current task that is not yet judged is *in flight*. It is judged `healthy` once it
  has been Running for `MinHealthyTime` seconds (from `StartsAt`) without being unhealthy
  (its `Error` starts with "unhealthy", or `ClusterState.unhealthy` holds it); `unhealthy`
  when it is, or when it is not healthy `HealthyDeadline` seconds after it was made (or after
  the deployment began, for a task older than it). A task of V (or later) that ends on its
  own before it was judged healthy is judged unhealthy too; one judged healthy that fails
  later is only refilled (the version proved itself; a later loss is the node's, or
  chance's). Any unhealthy task fails the deployment (`deployment-failed`); then, with
  `AutoRevert` and a stable version whose template differs from the current one, the job is
  registered again with that version's spec and the current Count (`revert`, then
  `JobRegistered` as version current+1); the pass ends there and asks to be run again at
  once. After a failed deployment without a revert, no old task is replaced any more (failed
  slots are still refilled, with the current version).
- Group limit: while a deployment runs and the job has a stable version, at most
  `MaxParallel` tasks are in flight: each empty slot filled and each old task replaced counts
  (empty slots first, then old tasks, slot by slot). Without a stable version (the first
  deployment, or one before any succeeded) nothing is worth protecting, so every slot is
  filled and every old task replaced at once. An old task is replaced by stopping it and
  placing its slot's new task in the same `replace` decision (`JobDecided` names the new
  task, its reason the old one).
- `deployed` when every slot is filled by a current task judged healthy and no task of
  another template is still active (the old tasks being stopped have ended): the version
  becomes the job's stable one. The first version's deployment works the same way.
- **periodic** (a batch job with `Periodic`): the job itself runs no task. At the first cron
  tick (UTC) after it last launched (or was submitted) it `launch`es a run, a job of its own
  (`{id}.periodic-{unix time of the tick}`, `Parent` the job, version 0), unless
  `ProhibitOverlap` and a run is still going: then the launch waits for the run to end (the
  manager reconciles a run's parent when the run changes: `orc.core.jobs.touched`), and is
  named after the latest tick due by then. A manager that was down launches once for the
  ticks it missed, not once per tick. It always asks to be woken at its next tick.
- **wait**: what a job waits for (answering "why are only 3 of 5 running?"): tasks the
  scheduler cannot place (with its reason), a reschedule delay, attempts spent, a deployment
  waiting for health or for old tasks to stop, Parallelism, an overlapping run. Said by a
  `wait` decision only when it differs from `JobRecord.waiting`, so repeated passes log
  nothing; `wait` "" once it waits for nothing. Reasons name slots, not counts that move, so
  that they change only when the cause does.

`plan` is the dry run of a submission: the pass the spec would cause, on a copy of the state.

Performance: a job's tasks come from `ClusterState.job_tasks` (never a walk of every task),
and a job with nothing to do costs one look at each of its tasks: a pass over a service of
10,000 Running tasks takes a few milliseconds (bench/jobs.py).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Generic, NamedTuple, TypeVar

import msgspec
from croniter import croniter

from orc.core import times
from orc.core.events import AnyEvent, JobDecided, JobRegistered, TaskStopRequested, TaskSubmitted
from orc.core.health import health_url
from orc.core.jobs import COMPLETE, LIVE, RUNNING, Deployment, JobRecord, task_id_for
from orc.core.jobspec import JobSpec, constraints_of, reschedule_of, template_of, update_of
from orc.core.model import Constraint, State, Task
from orc.core.placement import NODE_ATTRIBUTE, unfit
from orc.core.restarts import fmt_seconds
from orc.core.spec import to_task
from orc.core.state import STOPPED_ON_REQUEST, ClusterState, apply
from orc.core.transitions import TERMINAL

_replace = msgspec.structs.replace

# Looked up once (see orc.core.state: an enum member through its class is slow).
_PENDING, _RUNNING, _COMPLETED, _FAILED = (
    State.PENDING,
    State.RUNNING,
    State.COMPLETED,
    State.FAILED,
)
_ENDED = TERMINAL
_NEVER = datetime.max.replace(tzinfo=UTC)
MAX_WAIT_PARTS = 5  # causes a wait reason names; the rest are counted
MAX_LABELS = 5  # slots (or nodes) a cause names; the rest are counted

# How `orc.core.state` and the worker word the end of a task that was stopped on request.
_STOPPED_BEFORE_PLACED = "stopped before it was placed"


class Pass(NamedTuple):
    """One pass of the reconciler: the events to log, in order (for each decision a
    `JobDecided` with its reason, then the events that carry it out), and per job the earliest
    RFC 3339 time it must be looked at again even if nothing happens (a reschedule delay
    ending, a task's MinHealthyTime or HealthyDeadline, the next cron tick). A job without an
    entry needs no timer."""

    events: list[AnyEvent]
    wake: dict[str, str]

    def due(self, now: str) -> set[str]:
        """The jobs that asked to be looked at again by `now` already: a pass that reverted
        a job asks for the reverted version's pass at once. Every other decision waits for
        the events it causes, or for its time."""
        at = _time(now)
        if at is None:
            return set()
        return {
            job for job, when in self.wake.items() if (w := _time(when)) is not None and w <= at
        }


def reconcile(state: ClusterState, now: str, job_ids: Iterable[str] | None = None) -> Pass:
    """The pass for `job_ids` (None: every job) at `now`. Pure and total: it never changes
    `state`, reads no clock and never raises. A job it cannot reconcile (a value no orc
    writes, a bug) gets a `wait` saying so, and the other jobs their pass."""
    at = _time(now)
    if at is None:
        return Pass([], {})  # no time to decide by: nothing is decided
    events: list[AnyEvent] = []
    wake: dict[str, str] = {}
    ids = list(state.jobs) if job_ids is None else list(dict.fromkeys(job_ids))
    for job_id in ids:
        job = state.jobs.get(job_id)
        if job is None:
            continue
        one = _Job(state, job_id, job, now, at)
        try:
            one.run()
        except Exception as exc:  # total by design: see the docstring
            one = _Job(state, job_id, job, now, at)
            one.say_wait(f"orc could not reconcile the job: {type(exc).__name__}: {exc}"[:512])
        events.extend(one.events)
        if one.wake is not None and one.wake != _NEVER:
            wake[job_id] = one.wake.astimezone(UTC).isoformat()
    return Pass(events, wake)


def plan(state: ClusterState, spec: JobSpec, now: str) -> tuple[ClusterState, Pass]:
    """The dry run of submitting `spec` (checked by the edge): a copy of the state with the
    job registered (as `orc.core.decide.register` would: version current+1, or 0 for a new
    job; nothing when the spec is the current one of a live job), the pass that follows, and
    the copy with that pass applied. `state` is not changed: the copy holds its own dicts and
    sets (tasks are immutable, so they are shared)."""
    dry = _copy(state, spec.id)
    job = dry.jobs.get(spec.id)
    if job is None:
        apply(dry, JobRegistered(at=now, job=spec, version=0, reason="plan"))
    elif not (job.spec == spec and job.status == LIVE):
        apply(dry, JobRegistered(at=now, job=spec, version=job.version + 1, reason="plan"))
    result = reconcile(dry, now, [spec.id])
    for event in result.events:
        apply(dry, event)
    return dry, result


def _copy(state: ClusterState, job_id: str) -> ClusterState:
    """A copy `apply` may change without changing `state`: each dict and set copied, and the
    per-job task index and deployment verdicts of `job_id` too (the only job a plan's pass
    adds tasks and verdicts to; a job it registers anew gets its own)."""
    fields = {f.name: copy.copy(getattr(state, f.name)) for f in dataclasses.fields(state)}
    result = ClusterState(**fields)
    if job_id in result.job_tasks:
        result.job_tasks[job_id] = dict(result.job_tasks[job_id])
    job = result.jobs.get(job_id)
    if job is not None and job.deployment is not None:
        # `apply` adds a deployment's verdicts in place (`orc.core.state`): the plan's go to a
        # copy of them, never to the live deployment
        d = job.deployment
        verdicts = msgspec.structs.replace(d, healthy=dict(d.healthy), unhealthy=dict(d.unhealthy))
        result.jobs[job_id] = msgspec.structs.replace(job, deployment=verdicts)
    return result


# -- helpers ----------------------------------------------------------------------------------


def stopped_on_request(task: Task) -> bool:
    """The task ended because a stop was asked for (by the reconciler, a client, or orc
    shutting down), not on its own: its slot is refilled without delay or penalty."""
    if task.state == _COMPLETED:
        # `STOPPED_ON_REQUEST`, and the worker's "stopped before it started" and "stopped
        # because orc shut down"; `state` says "stopped while waiting to restart"
        return task.error == STOPPED_ON_REQUEST or task.error.startswith("stopped ")
    return task.state == _FAILED and task.error == _STOPPED_BEFORE_PLACED


def succeeded(task: Task) -> bool:
    """A batch task's success: Completed with exit code 0, not stopped."""
    return task.state == _COMPLETED and task.exit_code == 0 and not stopped_on_request(task)


def pin_of(task: Task) -> str:
    """The node a system job's task belongs to: its `node =` constraint (the last one: the
    reconciler appends it after the job's own), else the node it was placed on."""
    for c in reversed(task.constraints or ()):
        if c.attribute == NODE_ATTRIBUTE and c.operator == "=":
            return c.value
    return task.node


@lru_cache(maxsize=1 << 16)
def _time(at: str | None) -> datetime | None:
    """An RFC 3339 time, or None when there is none or it is not one (an older log's).

    Remembered: a pass judges each task of a deployment by its times, and the manager runs a
    pass after every change, so the same few thousand strings would be parsed again and
    again (a fifth of the manager's time while a 500-task job starts)."""
    if not at:
        return None
    try:
        return times.parse(at)
    except (ValueError, TypeError, OverflowError):
        return None


@lru_cache(maxsize=1 << 16)
def _later(at: str | None, seconds: float) -> datetime | None:
    """`seconds` after the time `at` (None when it has none): remembered, as `_time` is, for
    the tasks a pass judges, which share a few start and creation times."""
    moment = _time(at)
    return None if moment is None else _after(moment, seconds)


def _after(moment: datetime, seconds: float) -> datetime:
    """`moment` + `seconds`; `_NEVER` past the end of dates."""
    try:
        return moment + timedelta(seconds=seconds)
    except (OverflowError, ValueError):
        return _NEVER


def _label(noun: str, keys: list[str]) -> str:
    """`slot 2`, `slots 1, 2 and 4`, `slots 0, 1, 2, 3, 4 and 95 more`."""
    if len(keys) == 1:
        return f"{noun} {keys[0]}"
    shown = keys[:MAX_LABELS]
    rest = len(keys) - len(shown)
    if rest:
        return f"{noun}s {', '.join(shown)} and {rest} more"
    return f"{noun}s {', '.join(shown[:-1])} and {shown[-1]}"


def _slot(task: Task) -> int:
    return task.slot


K = TypeVar("K", int, str)


class _Tasks(Generic[K]):
    """A job's tasks, sorted in one walk (in the order the job made them) by key (slot or
    node): the one filling each key, any other task filling it too, the tasks being stopped,
    the ended ones, and per key the last task made that does not fill it (how the key was
    last emptied)."""

    def __init__(self, state: ClusterState, job_id: str, key: Callable[[Task], K]) -> None:
        self.fill: dict[K, Task] = {}
        self.extra: list[tuple[K, Task]] = []
        self.stopping: list[Task] = []
        self.ended: dict[K, list[Task]] = {}
        self.last: dict[K, Task] = {}
        self.unplaced: list[Task] = []  # Pending with the scheduler's reason
        tasks, stop_requested, fill = state.tasks, state.stop_requested, self.fill
        for task_id in state.job_tasks.get(job_id, ()):
            t = tasks.get(task_id)
            if t is None:
                continue
            k = key(t)
            if t.state in _ENDED:
                self.ended.setdefault(k, []).append(t)
                self.last[k] = t
            elif task_id in stop_requested:
                self.stopping.append(t)
                self.last[k] = t
            elif k in fill:
                self.extra.append((k, t))
            else:
                fill[k] = t
                if t.error and t.state == _PENDING:
                    self.unplaced.append(t)


class _Job:
    """One job's part of a pass: the events decided, the wake time, what it waits for."""

    def __init__(
        self, state: ClusterState, job_id: str, job: JobRecord, now: str, at: datetime
    ) -> None:
        self.state, self.job_id, self.job, self.spec = state, job_id, job, job.spec
        self.now, self.at = now, at
        self.events: list[AnyEvent] = []
        self.wake: datetime | None = None
        self.waits: dict[str, list[str]] = {}  # a cause ("{}" for its keys) -> the keys
        self.nouns: dict[str, str] = {}  # a cause -> what its keys are ("slot", "node")
        self.made = 0  # tasks made in this pass (`job.made` counts those applied)
        self.template: Task | None = None
        self.currents: dict[int, bool] = {}
        self.settled = False  # the job's `waiting` is set otherwise (complete, revert)

    # -- what every job type shares

    def run(self) -> None:
        job, spec = self.job, self.spec
        if job.status == COMPLETE:
            return
        if spec.periodic is not None:
            self.periodic()
        elif spec.type == "service":
            self.service()
        elif spec.type == "batch":
            self.batch()
        elif spec.type == "system":
            self.system()
        if not self.settled:
            self.say_wait(self.wait_reason())

    def decide(
        self, action: str, reason: str, task_id: str = "", slot: int = -1, version: int = 0
    ) -> None:
        self.events.append(
            JobDecided(
                at=self.now,
                job_id=self.job_id,
                action=action,
                reason=reason,
                task_id=task_id,
                slot=slot,
                version=version,
            )
        )

    def wake_at(self, moment: datetime) -> None:
        if self.wake is None or moment < self.wake:
            self.wake = moment

    def wait(self, cause: str, noun: str = "", key: object = None) -> None:
        """Note a cause the job waits for; the keys (slots, nodes) noted with one cause are
        named together where its "{}" is (`slots 1, 3 and 4 failed: ...`)."""
        keys = self.waits.setdefault(cause, [])
        if noun:
            self.nouns[cause] = noun
            keys.append(str(key))

    def wait_reason(self) -> str:
        parts = []
        for cause, keys in self.waits.items():
            if keys:
                parts.append(cause.replace("{}", _label(self.nouns[cause], keys), 1))
            else:
                parts.append(cause)
        if len(parts) > MAX_WAIT_PARTS:
            parts = [*parts[:MAX_WAIT_PARTS], f"and {len(parts) - MAX_WAIT_PARTS} more"]
        return "; ".join(parts)

    def say_wait(self, reason: str) -> None:
        if reason != self.job.waiting:
            self.decide("wait", reason)

    def current(self, version: int) -> bool:
        known = self.currents.get(version)
        if known is None:
            known = self.currents[version] = self.job.current(version)
        return known

    def create(
        self, slot: int, action: str, reason: str, node: str = "", replacing: Task | None = None
    ) -> Task:
        """Decide a new task for `slot` (a system job's: for `node`) and submit it, after
        stopping the task it is `replacing` (so that it no longer fills the slot)."""
        job, spec = self.job, self.spec
        if self.template is None:
            self.template = _replace(
                to_task(spec.task),
                job_id=self.job_id,
                job_version=job.version,
                constraints=constraints_of(spec),
                spread=spec.spread.attribute if spec.spread else "",
                state=_PENDING,
                created_at=self.now,
                updated_at=self.now,
            )
        base = self.template
        task_id = task_id_for(self.job_id, job.made + self.made)
        self.made += 1
        constraints = base.constraints
        if node:
            constraints = (*(constraints or ()), Constraint(NODE_ATTRIBUTE, node, "="))
        name = spec.task.name or f"{spec.name or spec.id}[{node or slot}]"
        task = _replace(base, id=task_id, name=name, slot=slot, constraints=constraints)
        self.decide(action, reason, task_id=task_id, slot=slot, version=job.version)
        if replacing is not None:
            self.events.append(TaskStopRequested(at=self.now, task_id=replacing.id))
        self.events.append(TaskSubmitted(at=self.now, task=task))
        return task

    def stop(self, task: Task, reason: str) -> None:
        self.decide("stop", reason, task_id=task.id, slot=task.slot, version=task.job_version)
        self.events.append(TaskStopRequested(at=self.now, task_id=task.id))

    def swap(self, old: Task, reason: str, node: str = "") -> Task:
        """Replace `old` by a task of the current version in its slot: one `replace` decision
        (naming the new task) carried out by stopping the old one and submitting the new."""
        why = f"{reason}: replaces task {old.id} (version {old.job_version})"
        return self.create(old.slot, "replace", why, node, replacing=old)

    def drop_extra(self, tasks: _Tasks[K], noun: str) -> None:
        """Stop every task but the first made that fills a key (see the module's docstring)."""
        for key, t in tasks.extra:
            self.stop(t, f"{noun} {key} has two tasks: task {tasks.fill[key].id} keeps it")

    def note_unplaced(self, tasks: _Tasks[K], label: Callable[[Task], tuple[str, str]]) -> None:
        for t in tasks.unplaced:
            if t.state == _PENDING:
                noun, key = label(t)
                self.wait(f"{{}} not placed: {t.error}", noun, key)

    def failed(self, task: Task) -> bool:
        """The task ended on its own, and not as a batch task's success."""
        if task.state not in _ENDED or stopped_on_request(task):
            return False
        return not (self.spec.type == "batch" and succeeded(task))

    def refill(self, tasks: _Tasks[K], key: K, noun: str) -> tuple[str, str] | None:
        """How an empty key is filled now (`place` or `replace`, and why), or None when the
        reschedule policy says not yet (the wait and the wake are noted)."""
        label = f"{noun} {key}"
        last = tasks.last.get(key)
        if last is None:
            return "place", f"{label} has no task"
        if not self.failed(last):
            return "place", f"{label} has no task (task {last.id} was stopped)"
        policy = reschedule_of(self.spec)
        at = self.at
        if policy.attempts > 0:
            since = at - timedelta(seconds=policy.interval)
            recent = sorted(
                end
                for t in tasks.ended.get(key, ())
                if self.failed(t) and (end := _time(t.finished_at)) is not None and end > since
            )
            if len(recent) - 1 >= policy.attempts:
                self.wake_at(_after(recent[len(recent) - policy.attempts - 1], policy.interval))
                self.wait(
                    f"{{}} failed {len(recent)} times in {fmt_seconds(policy.interval)}"
                    f" (Reschedule.Attempts {policy.attempts}): not replaced",
                    noun,
                    key,
                )
                return None
        ended = _time(last.finished_at)
        if ended is not None and policy.delay > 0:
            ready = _after(ended, policy.delay)
            if at < ready:
                self.wake_at(ready)
                self.wait(
                    f"{{}} failed: replaced {fmt_seconds(policy.delay)} after the failure"
                    " (Reschedule.Delay)",
                    noun,
                    key,
                )
                return None
        return "replace", f"task {last.id} in {label} failed: {last.error or 'it ended'}"

    # -- service

    def service(self) -> None:
        job, spec = self.job, self.spec
        tasks = _Tasks(self.state, self.job_id, _slot)
        fill = tasks.fill
        live = job.status == LIVE
        count = spec.count if live else 0
        self.drop_extra(tasks, "slot")
        for slot in sorted((s for s in fill if s < 0 or s >= count), reverse=True):
            why = f"scaled to {count}: slot {slot} is not needed" if live else "job stopped"
            self.stop(fill.pop(slot), why)
        if not live:
            return
        d = job.deployment
        rolling = d is not None and d.state == RUNNING
        healthy: set[str] = set()
        if rolling:
            assert d is not None
            healthy = set(d.healthy)
            if not self.judge(d, tasks, healthy):
                if self.settled:  # reverted: the next pass works on the reverted version
                    return
                rolling = False
        self.note_unplaced(tasks, lambda t: ("slot", str(t.slot)))
        update = update_of(spec)
        budget: int | None = None  # no limit
        if rolling and job.stable >= 0:
            in_flight = sum(
                1 for t in fill.values() if t.id not in healthy and self.current(t.job_version)
            )
            budget = max(0, update.max_parallel - in_flight)
        held = False
        if len(fill) < count:
            for slot in range(count):
                if slot in fill:
                    continue
                how = self.refill(tasks, slot, "slot")
                if how is None:
                    continue
                if budget == 0:
                    held = True
                    continue
                fill[slot] = self.create(slot, *how)
                if budget is not None:
                    budget -= 1
        if not rolling:
            return
        assert d is not None
        for slot in range(count):
            old = fill.get(slot)
            if old is None or self.current(old.job_version):
                continue
            if budget == 0:
                held = True
                break
            fill[slot] = self.swap(old, f"rolling update to version {d.version}")
            if budget is not None:
                budget -= 1
        waiting_health = held or any(
            t.id not in healthy and self.current(t.job_version) for t in fill.values()
        )
        if waiting_health or len(fill) < count:
            if waiting_health:
                group = f"MaxParallel {update.max_parallel}, " if budget is not None else ""
                self.wait(
                    f"deployment of version {d.version}: waiting for new tasks to become"
                    f" healthy ({group}MinHealthyTime {fmt_seconds(update.min_healthy_time)})"
                )
            return
        old_active = any(not self.current(t.job_version) for t in tasks.stopping) or any(
            not self.current(t.job_version) for t in fill.values()
        )
        if old_active:
            self.wait(f"deployment of version {d.version}: waiting for old tasks to stop")
            return
        self.decide(
            "deployed",
            f"all {count} tasks of version {d.version} are healthy",
            version=d.version,
        )

    def judge(self, d: Deployment, tasks: _Tasks[int], healthy: set[str]) -> bool:
        """Judge the deployment's tasks not judged yet (`healthy` grows with those found
        healthy); False when the deployment failed (and was reverted, if `settled`)."""
        update = update_of(self.spec)
        judged_bad = set(d.unhealthy)
        bad: list[tuple[Task, str]] = []
        for slot in sorted(tasks.fill):
            t = tasks.fill[slot]
            if t.id in healthy or t.id in judged_bad or not self.current(t.job_version):
                continue
            verdict = self.health(t, d)
            if verdict is True:
                checked = health_url(t, self.state.nodes.get(t.node)) is not None
                since = "its health check passed" if checked else "it started"
                self.decide(
                    "healthy",
                    f"{fmt_seconds(update.min_healthy_time)} since {since} (MinHealthyTime)",
                    task_id=t.id,
                    slot=t.slot,
                    version=d.version,
                )
                healthy.add(t.id)
            elif isinstance(verdict, str):
                bad.append((t, verdict))
        for ended in tasks.ended.values():
            for t in ended:
                if (
                    t.job_version >= d.version
                    and t.id not in healthy
                    and t.id not in judged_bad
                    and self.failed(t)
                    and self.current(t.job_version)
                ):
                    bad.append((t, f"failed before it was healthy: {t.error or 'it ended'}"))
        if not bad and not judged_bad:
            return True
        for t, why in bad:
            self.decide("unhealthy", why, task_id=t.id, slot=t.slot, version=d.version)
        if bad:
            t, why = bad[0]
            cause = f"task {t.id} (slot {t.slot}) {why}"
        else:
            cause = f"task {next(iter(d.unhealthy), '?')} is unhealthy"
        self.decide("deployment-failed", f"version {d.version}: {cause}"[:1024], version=d.version)
        self.revert(d, cause)
        return False

    def health(self, t: Task, d: Deployment) -> bool | str | None:
        """True: healthy; a reason: unhealthy; None: not yet (the wake is noted)."""
        update = update_of(self.spec)
        why = self.state.unhealthy.get(t.id) or (t.error if t.error.startswith("unhealthy") else "")
        if why:
            return why
        if t.state == _RUNNING:
            # MinHealthyTime runs from the start, or for a task whose health is checked from
            # its first pass on this run (`TaskHealthy`): running is not yet healthy. A task
            # with a HealthCheck but nothing to check it on (a process, a container without
            # a host port) is judged by running, as it always was.
            since = t.starts_at
            if health_url(t, self.state.nodes.get(t.node)) is not None:
                passed = self.state.checked.get(t.id)
                since = passed[1] if passed is not None and passed[0] == t.starts_at else None
            ready = _later(since, update.min_healthy_time)
            if ready is not None:
                if self.at >= ready:
                    return True
                self.wake_at(ready)
        # the deadline runs from the task's making, or the deployment's start if later
        made = _later(t.created_at, update.healthy_deadline)
        began = _later(d.started_at, update.healthy_deadline)
        if made is None or (began is not None and began > made):
            made = began
        deadline = made if made is not None else _after(self.at, update.healthy_deadline)
        if self.at >= deadline:
            return f"not healthy within {fmt_seconds(update.healthy_deadline)} (HealthyDeadline)"
        self.wake_at(deadline)
        return None

    def revert(self, d: Deployment, cause: str) -> None:
        """After a failed deployment: back to the stable version, when `AutoRevert` says so
        and it runs another template."""
        job, spec = self.job, self.spec
        if not update_of(spec).auto_revert or job.stable < 0:
            return
        stable = job.spec_of(job.stable)
        if stable is None or template_of(stable) == template_of(spec):
            return
        version = job.version + 1
        self.decide(
            "revert",
            f"deployment of version {d.version} failed: back to version {job.stable}",
            version=job.stable,
        )
        self.events.append(
            JobRegistered(
                at=self.now,
                job=_replace(stable, count=spec.count),
                version=version,
                reason=f"auto-revert: deployment of version {d.version} failed ({cause});"
                f" back to version {job.stable}"[:2048],
            )
        )
        self.settled = True  # registering clears `waiting`
        self.wake_at(self.at)  # the reverted version's pass: at once

    # -- batch

    def batch(self) -> None:
        job, spec = self.job, self.spec
        tasks = _Tasks(self.state, self.job_id, _slot)
        fill = tasks.fill
        live = job.status == LIVE
        count = spec.count if live else 0
        self.drop_extra(tasks, "slot")
        for slot in sorted((s for s in fill if s < 0 or s >= count), reverse=True):
            why = f"scaled to {count}: slot {slot} is not needed" if live else "job stopped"
            self.stop(fill.pop(slot), why)
        if not live:
            return
        done = {
            slot
            for slot, ended in tasks.ended.items()
            if 0 <= slot < count
            and any(succeeded(t) and self.current(t.job_version) for t in ended)
        }
        for slot in sorted(fill):
            old = fill[slot]
            if self.current(old.job_version):
                continue
            if slot in done:
                self.stop(fill.pop(slot), f"slot {slot} is done (version {job.version})")
            else:
                fill[slot] = self.swap(old, f"version {job.version} changes the task")
        if len(done) == count:
            self.decide("complete", f"all {count} tasks completed successfully")
            self.settled = True
            return
        self.note_unplaced(tasks, lambda t: ("slot", str(t.slot)))
        limit = spec.parallelism or count
        budget = limit - len(fill)
        held = False
        for slot in range(count):
            if slot in done or slot in fill:
                continue
            how = self.refill(tasks, slot, "slot")
            if how is None:
                continue
            if budget <= 0:
                held = True
                continue
            fill[slot] = self.create(slot, *how)
            budget -= 1
        if held:
            self.wait(f"runs at most {limit} tasks at once (Parallelism)")

    # -- system

    def system(self) -> None:
        job, spec = self.job, self.spec
        tasks = _Tasks(self.state, self.job_id, pin_of)
        fill = tasks.fill
        live = job.status == LIVE and spec.count > 0
        constraints = constraints_of(spec) or ()
        driver = spec.task.driver
        nodes = (
            [n for n in self.state.up_nodes() if not unfit(n, driver, constraints)] if live else []
        )
        wanted = {n.name for n in nodes}
        self.drop_extra(tasks, "node")
        for name in [name for name in fill if name not in wanted]:
            self.stop(fill.pop(name), self.why_not(name) if live else "job stopped")
        if not live:
            return
        self.note_unplaced(tasks, lambda t: ("node", pin_of(t)))
        for node in nodes:
            old = fill.get(node.name)
            if old is not None:
                if not self.current(old.job_version):
                    self.swap(old, f"version {job.version} changes the task", node.name)
                continue
            how = self.refill(tasks, node.name, "node")
            if how is not None:
                self.create(-1, *how, node=node.name)

    def why_not(self, name: str) -> str:
        """Why a system job's task on node `name` is stopped."""
        node = self.state.nodes.get(name)
        if node is None:
            return f"node {name!r} is not in the cluster"
        if name in self.state.down:
            return f"node {name} is down"
        why = unfit(node, self.spec.task.driver, constraints_of(self.spec) or ())
        return why or f"node {name} no longer runs the job"

    # -- periodic

    def periodic(self) -> None:
        job, spec = self.job, self.spec
        tasks = _Tasks(self.state, self.job_id, _slot)
        for t in [*tasks.fill.values(), *(t for _, t in tasks.extra)]:
            self.stop(t, "a periodic job runs its tasks in its launches")
        periodic = spec.periodic
        if job.status != LIVE or periodic is None:
            return
        since = (_time(job.launched_at) or _time(job.submitted_at) or self.at).astimezone(UTC)
        now = self.at.astimezone(UTC)
        due: datetime = croniter(periodic.cron, since).get_next(datetime)
        if now >= due:
            # the latest tick due, when several were missed (a manager that was down): one
            # launch for them all, named after it
            latest: datetime = croniter(periodic.cron, now).get_prev(datetime)
            following: datetime = croniter(periodic.cron, latest).get_next(datetime)
            self.launch(following if following <= now else max(latest, due))
        self.wake_at(croniter(periodic.cron, max(now, since)).get_next(datetime))

    def launch(self, tick: datetime) -> None:
        job, spec = self.job, self.spec
        periodic = spec.periodic
        assert periodic is not None
        when = tick.isoformat()
        if periodic.prohibit_overlap:
            for other in self.state.jobs.values():
                if other.parent == self.job_id and other.status == LIVE:
                    self.wait(
                        f"the run {other.spec.id} is still running (ProhibitOverlap):"
                        f" the launch due at {when} waits for it to end"
                    )
                    return
        run_id = f"{self.job_id}.periodic-{int(tick.timestamp())}"
        if run_id in self.state.jobs:
            return  # launched already (it cannot be: `launched_at` moves past the tick)
        reason = f"cron '{periodic.cron}' at {when}"
        self.decide("launch", reason, version=job.version)
        self.events.append(
            JobRegistered(
                at=self.now,
                job=_replace(spec, id=run_id, periodic=None),
                version=0,
                reason=f"launched by {self.job_id}: {reason}",
                parent=self.job_id,
            )
        )
