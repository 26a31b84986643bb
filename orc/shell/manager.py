"""The Manager actor: the one writer of the event log and the owner of cluster state.

It takes the messages waiting in its mailbox as one batch, decides the events for each,
appends them all with one durable write, applies them, and only then replies and acts. Two
commands for the same task never share a batch, so each decision sees the state the one
before it left. Nothing anybody can observe ever comes from an event that is not on disk.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from actors import Actor, ActorRef, Envelope, Mailbox
from eventlog import EventLog, LogWriteError
from orc.clock import now
from orc.core import decide
from orc.core.dryrun import dry_run
from orc.core.events import (
    AnyEvent,
    NodeDown,
    NodeJoined,
    StateDigest,
    TaskExited,
    TaskFailed,
    TaskLost,
    TaskRestarted,
    TaskRestarting,
    TaskScheduled,
    TaskStarted,
    TaskStopRequested,
    TaskSubmitted,
    TaskUnhealthy,
)
from orc.core.health import health_url
from orc.core.jobs import job_view, touched, version_views
from orc.core.messages import (
    Arm,
    AttachProxy,
    GetJob,
    GetStats,
    GetTask,
    Healthy,
    Hold,
    JobsDue,
    JobVersions,
    Join,
    ListJobs,
    ListNodes,
    ListTasks,
    LogBehind,
    NodesChanged,
    NodeSilent,
    Ping,
    Place,
    PlacedOn,
    PlanJob,
    Purge,
    Reconcile,
    Reply,
    ResendState,
    RestartDue,
    RevertJob,
    RunTask,
    ScaleJob,
    Schedule,
    Stop,
    StopJob,
    StopTask,
    Submit,
    SubmitJob,
    TasksEnded,
    TasksPlaced,
    Unhealthy,
    Unwatch,
    WakeJobs,
    Watch,
)
from orc.core.model import State, Task
from orc.core.nodeview import node_views
from orc.core.reconcile import reconcile
from orc.core.restarts import RestartSettings
from orc.core.retention import EndedIndex
from orc.core.snapshot import encode_state, state_digest
from orc.core.state import ClusterState, apply
from orc.core.transitions import ACTIVE, TERMINAL
from orc.shell.log import ManagerLog
from orc.shell.meter import ManagerMeter
from orc.shell.recovery import Recovered, catch_up, quarantine, recover_at

log = logging.getLogger("orc.manager")

BATCH = 512
RETRY_DELAY = 0.5
_LEVELS = {"info": logging.INFO, "warning": logging.WARNING}  # of a decision's notes

_DECIDERS: dict[type, Callable[[ClusterState, Any], decide.Decision]] = {
    Stop: decide.stop,
    Place: decide.place,
    TaskStarted: decide.started,
    TaskExited: decide.exited,
    TaskLost: decide.lost,
    Join: decide.join,
    NodeSilent: decide.node_down,
    LogBehind: decide.log_behind,
    StopJob: decide.stop_job,
    RevertJob: decide.revert,
    Healthy: decide.healthy,
}

# Reconcile passes after one change, at most: a pass's own events may call for another (a
# revert registers a version, which the next pass deploys); more would be a reconciler that
# never settles, and the next change or timer looks again.
MAX_PASSES = 4


@dataclass(frozen=True)
class Upkeep:
    """How often, in events, the manager records a digest and a snapshot (0: never), and how
    many events before the newest snapshot compaction keeps."""

    digest: int = 10_000
    snapshot: int = 100_000
    retain: int = 100_000


class Handoff:
    """A standby's state, current up to `seq`, for the Manager that leads after it: it goes on
    from there instead of reading the whole log again, so a failover costs the records the
    standby had not seen yet. Taken once: a Manager restarted after a crash recovers from the
    log, as at any start."""

    def __init__(self, found: Recovered) -> None:
        self._found: Recovered | None = found

    def take(self) -> Recovered | None:
        found, self._found = self._found, None
        return found


class Manager(Actor):
    def __init__(
        self,
        log: ManagerLog,
        scheduler: ActorRef,
        proxies: dict[str, ActorRef],
        upkeep: Upkeep | None = None,
        restarts: RestartSettings | None = None,
        restarter: ActorRef | None = None,
        health: ActorRef | None = None,
        limits: decide.Limits | None = None,
        meter: ManagerMeter | None = None,
        jobtimer: ActorRef | None = None,
        clock: Callable[[], str] = now,
        handoff: Handoff | None = None,
    ) -> None:
        self.log = log
        self.handoff = handoff
        # what /metrics reports: counted here as events are applied, never by walking the state
        self.meter = meter or ManagerMeter(log)
        self.state = ClusterState()
        self.scheduler = scheduler
        self.proxies = proxies
        self.upkeep = upkeep or Upkeep()
        # restart policies (`decide.review` and friends): timers in `restarter`, checks in
        # `health`
        self.restarts = restarts or RestartSettings()
        self.restarter = restarter
        self.health = health
        self._deciders: dict[type, Callable[[ClusterState, Any], decide.Decision]] = {
            **_DECIDERS,
            RestartDue: lambda s, m: decide.restart_due(s, m, self.restarts),
            Unhealthy: lambda s, m: decide.unhealthy(s, m, self.restarts),
            Purge: lambda s, m: decide.purge(s, m, self.ended),
            Submit: lambda s, m: decide.submit(s, m, self.limits, self._pending()),
            SubmitJob: lambda s, m: decide.register(s, m, self.limits),
            ScaleJob: lambda s, m: decide.scale(s, m, self.limits),
        }
        # jobs: the reconciler's timers (`orc.core.reconcile.Pass.wake`), and the clock its
        # passes read (a test's mock clock drives both)
        self.jobtimer = jobtimer
        self.clock = clock
        self.jobs_held = False
        self.limits = limits or decide.Limits()
        # ended tasks by end time, so a purge costs what it forgets (derived from the state)
        self.ended = EndedIndex()
        self._retry: list[Envelope] = []
        self._since_digest = 0
        self._since_snapshot = 0

    async def started(self) -> None:
        """Rebuild state from the log, then pick up where it left off: schedule what waits,
        and ask each worker what became of the tasks placed on it.

        A restart after a crash takes the same path, so it never works from half-applied state.
        A manager that takes over from its standby state (`handoff`) reads only the records the
        standby had not applied yet.
        """
        found = await self._recover()
        self.state, base = found.state, found.base
        self.meter.snapshot_found(base)
        quarantined = await quarantine(self.log, self.state, now())  # specs past the bounds
        self.meter.reset(self.state)
        self.ended = EndedIndex.of(self.state.tasks.values())
        self._since_snapshot = self.log.last_seq - base
        await self._resync_scheduler()
        for name, proxy in self.proxies.items():
            placed = self._placed_on(name)
            if placed:
                await proxy.tell(Reconcile(placed))
        await self._resume_restarts()
        await self._reconcile(None)  # every job: a crash mid-update resumes where it stopped
        for task in quarantined:  # ended now: one that runs is stopped where it runs
            if task.state in ACTIVE and task.node:
                await self._tell_node(task.node, StopTask(task.id))

    async def _recover(self) -> Recovered:
        """The state at the log's end: the standby's, caught up, or read from the log."""
        handed = self.handoff.take() if self.handoff is not None else None
        if handed is not None:
            seq = await catch_up(self.log, handed.state, handed.seq)
            if seq is not None:
                return Recovered(handed.state, handed.base, seq)
            log.warning("the standby's state fell behind the log's compaction: reading the log")
        return await recover_at(self.log)

    def _placed_on(self, node: str) -> tuple[Task, ...]:
        """What a reconcile tells the worker `node` it should run, whoever reaches it (a proxy
        in process or over HTTP): its Scheduled and Running tasks, less those waiting out a
        restart backoff (nothing may run them yet)."""
        return tuple(
            t
            for t in self.state.tasks_on(node)
            if t.state in ACTIVE and not self.state.waiting(t.id)
        )

    async def _resync_scheduler(self) -> None:
        """Tell the scheduler all it derives from the log: nodes, placements, what waits."""
        await self.scheduler.tell(NodesChanged(self.state.up_nodes()))
        placed = tuple(t for t in self.state.tasks.values() if t.node and t.state in ACTIVE)
        if placed:
            await self.scheduler.tell(TasksPlaced(placed))
        pending = tuple(t for t in self.state.tasks.values() if t.state == State.PENDING)
        if pending:
            await self.scheduler.tell(Schedule(pending))

    async def _resync(self, role: str) -> None:
        """A follower replaced after a crash asks again for what it derives from the log."""
        log.warning("%s restarted after a crash: sending it the state again", role)
        if role == "scheduler":
            await self._resync_scheduler()
        elif role in ("restarter", "health"):
            await self._resume_restarts(arm=role == "restarter", watch=role == "health")
        elif role == "jobtimer":
            await self._reconcile(None)

    async def run(self, mailbox: Mailbox) -> None:
        await self.started()
        while True:
            if self._retry:
                # Updates nobody waits for (a worker's report, a placement) are kept when the
                # log cannot be written, and tried again until it can: none is dropped.
                arrived: list[Envelope] = []
                with trio.move_on_after(RETRY_DELAY):
                    arrived.append(await mailbox.receive())
                batch, self._retry = [*self._retry, *arrived], []
            else:
                batch = [await mailbox.receive()]
            await self._process([*batch, *mailbox.receive_nowait_many(BATCH)])

    async def _process(self, batch: list[Envelope]) -> None:
        """Carry out a batch of messages in order, then one reconcile pass over every job its
        commits touched: a pass looks at the whole job, so one per batch, not one per commit
        (a burst of 500 reports from one job's tasks is then a few passes, not a hundred)."""
        group: list[Envelope] = []
        keys: set[str] = set()
        jobs: set[str] | None = set()  # None: every job
        for env in batch:
            if type(env.message) not in self._deciders:
                jobs = _either(jobs, await self._commit(group))
                group, keys = [], set()
                if isinstance(env.message, ResendState):
                    await self._resync(env.message.role)
                    env.reply(None)
                elif isinstance(env.message, JobsDue):  # from the JobTimer: a pass, no command
                    jobs = _either(jobs, set(env.message.job_ids))
                    env.reply(None)
                else:
                    env.reply(self._read(env.message))
                continue
            if isinstance(env.message, NodeSilent | Purge):
                # It touches many tasks: decided alone, on the latest state.
                jobs = _either(jobs, await self._commit(group))
                jobs = _either(jobs, await self._commit([env]))
                group, keys = [], set()
                continue
            key = decide.key_of(env.message)
            if key is not None and key in keys:
                jobs = _either(jobs, await self._commit(group))
                group, keys = [], set()
            if key is not None:
                keys.add(key)
            group.append(env)
        jobs = _either(jobs, await self._commit(group))
        await self._reconcile(jobs)

    async def _commit(self, group: list[Envelope]) -> set[str] | None:
        """Decide, log durably, apply, then reply and act, for commands on distinct tasks.
        Returns the jobs the commit touched (None: all), for the batch's reconcile pass."""
        if not group:
            return set()
        decisions = [self._decide(env.message) for env in group]
        events = [event for d in decisions for event in d.events]
        if events:
            try:
                await self.log.append_batch(events)
            except LogWriteError as exc:
                log.error("%s", exc)
                for env, d in zip(group, decisions, strict=True):
                    if d.events and env.is_ask:
                        message = f"{exc}; nothing was changed, retry later"
                        env.reply(Reply(503, message=message, retry_after=RETRY_DELAY))
                    elif d.events:
                        self._retry.append(env)
                    else:
                        env.reply(d.reply)
                return set()
            self._apply(events)
            self.meter.committed(group, decisions)
        for env, d in zip(group, decisions, strict=True):
            env.reply(d.reply)
        await self._act(events)
        await self._placements_refused(group, decisions)
        await self._keep_up(len(events))
        return touched(self.state.jobs, self.state.tasks, events)

    def _apply(self, events: list[AnyEvent]) -> None:
        for event in events:
            before = self.meter.before(self.state, event)
            apply(self.state, event)
            self.meter.applied(self.state, event, before)

    async def _reconcile(self, jobs: set[str] | None) -> None:
        """Run the reconciler (`orc.core.reconcile`) over `jobs` (None: all) and carry out
        its decisions: each pass's events go to the log as one batch, then act as any
        other events do (placements to the scheduler, stops to the workers). Another pass
        follows at once only for the jobs a pass asks it for (`Pass.due`: a revert)."""
        for _ in range(MAX_PASSES):
            if (jobs is not None and not jobs) or not self.state.jobs or self.jobs_held:
                return
            done = reconcile(self.state, self.clock(), jobs)
            if done.wake and self.jobtimer is not None:
                await self.jobtimer.tell(WakeJobs(done.wake))
            if not done.events:
                return
            try:
                await self.log.append_batch(done.events)
            except LogWriteError as exc:
                # nothing was decided: the next change, or this retry, looks again
                log.error("reconcile deferred: %s", exc)
                if self.jobtimer is not None:
                    soon = {j: self.clock() for j in (jobs or self.state.jobs)}
                    await self.jobtimer.tell(WakeJobs(soon))
                return
            self._apply(done.events)
            await self._act(done.events)
            jobs = done.due(self.clock())

    async def _keep_up(self, appended: int) -> None:
        """Now and then record a digest of the state, and snapshot it so start-up stays fast.

        Neither is needed for correctness, so a failure is logged and tried again later.
        """
        self._since_digest += appended
        self._since_snapshot += appended
        every = self.upkeep
        try:
            if every.digest and self._since_digest >= every.digest:
                self._since_digest = 0
                digest = StateDigest(
                    at=now(), seq=self.log.last_seq, digest=state_digest(self.state)
                )
                await self.log.append(digest)
            if every.snapshot and self._since_snapshot >= every.snapshot:
                self._since_snapshot = 0
                await self.log.save_snapshot(self.log.last_seq, encode_state(self.state))
                self.meter.snapshot_saved(self.log.last_seq)
                removed = await self.log.compact(self.log.last_seq - every.retain)
                if removed:
                    # a file log removes whole segments; a log in etcd, records
                    unit = "log segments" if isinstance(self.log, EventLog) else "log records"
                    log.info("compacted %d %s before seq %d", removed, unit, self.log.first_seq)
        except LogWriteError as exc:
            log.warning("upkeep deferred: %s", exc)

    async def _act(self, events: list[AnyEvent]) -> None:
        """Side effects of durable events: placement requests and orders to workers."""
        to_schedule = []
        placed, ended = [], []  # so the scheduler's allocations follow the log
        for event in events:
            match event:
                case TaskSubmitted(task=task):
                    to_schedule.append(self.state.tasks[task.id])
                case TaskScheduled(task_id=task_id, node=node):
                    placed.append(self.state.tasks[task_id])
                    await self._tell_node(node, RunTask(self.state.tasks[task_id]))
                case TaskStopRequested(task_id=task_id):
                    task = self.state.tasks[task_id]
                    if task.state in ACTIVE:
                        await self._tell_node(task.node, StopTask(task_id))
                    elif task.state in TERMINAL:
                        ended.append(task_id)
                case NodeJoined() | NodeDown():
                    await self.scheduler.tell(NodesChanged(self.state.up_nodes()))
                    pending = [t for t in self.state.tasks.values() if t.state == State.PENDING]
                    to_schedule.extend(pending)
                    if isinstance(event, NodeDown):
                        await self._tell_node(event.node, event)
                case TaskFailed(task_id=task_id) | TaskExited(task_id=task_id):
                    ended.append(task_id)
        # a run that ended in a restart is still placed: it waits for its backoff there
        ended = [i for i in ended if self.state.tasks[i].state in TERMINAL]
        for task_id in ended:
            self.ended.note(self.state.tasks[task_id])
        if placed:
            await self.scheduler.tell(TasksPlaced(tuple(placed)))
        if ended:
            await self.scheduler.tell(TasksEnded(tuple(ended)))
        if to_schedule:
            await self.scheduler.tell(Schedule(tuple(to_schedule)))
        await self._act_restarts(events)

    def _pending(self) -> int:
        """Tasks waiting to be placed (for ORC_MAX_PENDING): the meter's tally of the state,
        kept as each event applies, so neither this nor `GET /stats` walks every task."""
        return self.meter.tasks.by_state[State.PENDING]

    def _decide(self, message: object) -> decide.Decision:
        """The core's decision on `message`, restarts reviewed; its notes are logged here,
        since the core does no I/O."""
        decision = self._deciders[type(message)](self.state, message)
        decision = decide.review(self.state, decision, self.restarts)
        for note in decision.notes:
            log.log(_LEVELS[note.level], "%s", note.text)
        return decision

    # -- restarts and health checks (`decide.review`, `unhealthy`, `restart_due`) ---------------

    async def _resume_restarts(self, arm: bool = True, watch: bool = True) -> None:
        """After a start: arm the backoffs the log has pending, and check what runs."""
        for task_id, r in self.state.restarts.items():
            if arm and r.waiting and self.restarter is not None:
                await self.restarter.tell(Arm(task_id, r.not_before))
        for task in self.state.tasks.values():
            if watch and task.state == State.RUNNING:
                await self._watch(task.id)

    async def _watch(self, task_id: str) -> None:
        task = self.state.tasks[task_id]
        url = health_url(task, self.state.nodes.get(task.node))
        if url is not None and self.health is not None and task.starts_at:
            await self.health.tell(Watch(task.id, task.node, task.starts_at, url))

    async def _act_restarts(self, events: list[AnyEvent]) -> None:
        for event in events:
            match event:
                case TaskStarted(task_id=task_id):
                    await self._watch(task_id)
                case TaskRestarting(task_id=task_id, not_before=not_before):
                    if self.health is not None:
                        await self.health.tell(Unwatch(task_id))
                    if self.restarter is not None:
                        await self.restarter.tell(Arm(task_id, not_before))
                case TaskRestarted(task_id=task_id, node=node):
                    task = self.state.tasks[task_id]
                    await self.scheduler.tell(TasksPlaced((task,)))
                    await self._tell_node(node, RunTask(task))
                case TaskUnhealthy(task_id=task_id, node=node, stop=stop):
                    if self.health is not None:
                        await self.health.tell(Unwatch(task_id))
                    if stop:
                        await self._tell_node(node, StopTask(task_id))
                case TaskExited(task_id=task_id) | TaskFailed(task_id=task_id):
                    if self.health is not None:
                        await self.health.tell(Unwatch(task_id))
                case NodeJoined() | NodeDown():
                    # a restart that found no node may find one now
                    for task_id, r in self.state.restarts.items():
                        if r.waiting and self.restarter is not None:
                            await self.restarter.tell(Arm(task_id, r.not_before))

    async def _placements_refused(
        self, group: list[Envelope], decisions: list[decide.Decision]
    ) -> None:
        """A placement refused because its node went down: the scheduler counted it there, so
        free it and place the task again (on the nodes that are up)."""
        refused = [
            env.message.task_id
            for env, d in zip(group, decisions, strict=True)
            if isinstance(env.message, Place) and env.message.node and not d.events
        ]
        if not refused:
            return
        await self.scheduler.tell(TasksEnded(tuple(refused)))
        pending = tuple(
            t for i in refused if (t := self.state.tasks.get(i)) and t.state == State.PENDING
        )
        if pending:
            await self.scheduler.tell(Schedule(pending))

    async def _tell_node(self, node: str, message: object) -> None:
        proxy = self.proxies.get(node)
        if proxy is None:
            log.warning("no connection to node %s for %r", node, message)
            return
        await proxy.tell(message)

    def _read(self, message: object) -> object:
        match message:
            case GetTask(task_id):
                task = self.state.tasks.get(task_id)
                if task is None:
                    return Reply(404, message=f"no task with ID {task_id}")
                return Reply(200, task=task)
            case ListTasks(job=""):
                return list(self.state.tasks.values())
            case ListTasks(job=job_id):
                ids = self.state.job_tasks.get(job_id, {})
                return [self.state.tasks[i] for i in ids if i in self.state.tasks]
            case GetJob(job_id):
                return self._job(job_id)
            case ListJobs():
                return [self._job(j).body for j in sorted(self.state.jobs)]
            case JobVersions(job_id):
                job = self.state.jobs.get(job_id)
                if job is None:
                    return Reply(404, message=f"no job with ID {job_id}")
                return Reply(200, body=version_views(job))
            case PlanJob(spec, at):
                return Reply(200, body=dry_run(self.state, spec, at, self.restarts.placement))
            case GetStats():
                return self._stats()
            case ListNodes():
                return node_views(self.state)
            case PlacedOn(node):
                return self._placed_on(node), self.state.node_seqs.get(node, 0)
            case AttachProxy(node, proxy):
                self.proxies[node] = proxy  # type: ignore[assignment]
                return None
            case Ping():
                return None
            case Hold():
                self.jobs_held = True  # shutting down: see `drain_manager`
                return None
        raise TypeError(f"manager: unexpected message {message!r}")

    def _job(self, job_id: str) -> Reply:
        job = self.state.jobs.get(job_id)
        if job is None:
            return Reply(404, message=f"no job with ID {job_id}")
        tasks = (self.state.tasks[i] for i in self.state.job_tasks.get(job_id, ()))
        return Reply(200, body=job_view(job, tasks, self.state.stop_requested))

    def _stats(self) -> dict[str, object]:
        by_state = {state.label: n for state, n in self.meter.tasks.by_state.items()}
        return {
            "TaskCount": len(self.state.tasks),
            "Tasks": by_state,
            "NodeCount": len(self.state.nodes),
            "NodesDown": sorted(self.state.down),
            "Nodes": sorted(self.state.nodes),
            "LogSeq": self.log.last_seq,
        }


def _either(jobs: set[str] | None, more: set[str] | None) -> set[str] | None:
    """The jobs in either set, None standing for every job."""
    return None if jobs is None or more is None else jobs | more
