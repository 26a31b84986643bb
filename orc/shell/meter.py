"""What orc's actors count for `GET /metrics`: plain numbers, kept as things happen.

Counting what happened is the shell's part; saying it in Prometheus' words is the HTTP app's
(orc/http/metrics.py), which reads these at each scrape. Nothing here takes a lock or formats
text: the Manager actor folds every event it applies into its `ManagerMeter` (about a
microsecond each, bench/metrics.py), and a scrape reads the numbers in the same trio thread,
so it never waits behind the manager's mailbox (a scrape during a burst of submissions answers
at once) and never walks the tasks.

`LogMeter` counts an event log's appends and times its writes: each fsync of a file log (the log
calls it from its writer thread, one flush at a time, so each number has a single writer), or
each transaction of a log in etcd (`orc.ha.log.EtcdLog.on_txn`).
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from actors import Envelope
from eventlog import EventLog
from orc.core.decide import Decision
from orc.core.events import (
    AnyEvent,
    NodeDown,
    NodeJoined,
    TaskExited,
    TaskLost,
    TaskRestarted,
    TaskRestarting,
    TaskScheduled,
    TaskStarted,
    TaskSubmitted,
    TaskUnhealthy,
    TaskUnplaced,
)
from orc.core.model import NodeInfo, Task
from orc.core.state import ClusterState
from orc.core.tally import UNPLACED_KINDS, TaskTally, unplaced_kind
from orc.core.times import parse
from orc.ha.log import EtcdLog
from orc.shell.log import ManagerLog

# Upper bounds of histogram buckets, in seconds (Prometheus adds +Inf). Few on purpose: each
# bucket is a line of every scrape.
FSYNC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5)

_WORKER_UPDATES = (TaskStarted, TaskExited, TaskLost)


class Histogram:
    """Observations counted per bucket (`bounds` are inclusive upper bounds, as Prometheus'
    `le`; the last count is past every bound), and their sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it) per bucket, ending with +Inf."""
        out, total = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append((bound, total))
        return out


class LogMeter:
    """An event log's appends since this process opened it (or, a manager's log in etcd, since
    this manager began to lead), and how long each of its writes took: an fsync of a file log,
    a transaction of a log in etcd.

    `watch` hooks it to the log before anything is appended (`EventLog.on_fsync` is called in
    the log's writer thread, one flush at a time; `EtcdLog.on_txn` in its flushing task)."""

    def __init__(self, log: ManagerLog) -> None:
        self.log = log
        self.start_seq = log.last_seq
        self.fsync = Histogram(FSYNC_BUCKETS)

    @classmethod
    def watch(cls, log: ManagerLog) -> LogMeter:
        meter = cls(log)
        if isinstance(log, EtcdLog):
            log.on_txn = meter.fsync.observe
        elif isinstance(log, EventLog):
            log.on_fsync = meter.fsync.observe
        return meter

    @property
    def appended(self) -> int:
        return self.log.last_seq - self.start_seq

    @property
    def writes(self) -> int:
        """fdatasync calls of a file log; transactions that wrote records of a log in etcd."""
        if isinstance(self.log, EtcdLog):
            return self.log.txn_count
        return getattr(self.log, "fsync_count", 0)


class ManagerMeter:
    """What the manager counts: tasks by state and what they hold of each node (the core's
    `TaskTally`), placements and placement failures, restarts, health check failures, the lag
    of workers' updates, and its snapshots. Made once per manager process, so counts survive
    a restart of the Manager actor (which recounts the tallies from its state: `reset`), and,
    for highly available managers, across their terms as standby and leader (`watch`)."""

    def __init__(self, log: ManagerLog) -> None:
        self.log = LogMeter.watch(log)
        self.tasks = TaskTally()
        self.nodes: dict[str, NodeInfo] = {}
        self.down: set[str] = set()
        self.placements = {"new": 0, "restart": 0}
        self.unplaced = dict.fromkeys(UNPLACED_KINDS, 0)
        self.restarts = 0
        self.unhealthy = 0
        self.health_check_failures = 0  # counted by the HealthChecker, one per failed probe
        # from a worker's update time (`At`) to the manager having applied it
        self.update_lag = Histogram(LAG_BUCKETS)
        # a file log's snapshots are files (their seq and time are known at once); a log in
        # etcd says its snapshot's seq when the manager loads it (`snapshot_found`)
        directory = getattr(log, "directory", None)
        self.snapshot_seq, self.snapshot_time = (
            newest_snapshot(directory) if isinstance(directory, str) else (0, None)
        )
        self._counts: dict[type, Callable[[Any], None]] = {
            TaskScheduled: self._placed,
            TaskRestarted: self._placed_again,
            TaskUnplaced: self._unplaced,
            TaskRestarting: self._restarting,
            TaskUnhealthy: self._unhealthy,
            NodeJoined: self._joined,
            NodeDown: self._down,
        }

    def watch(self, log: ManagerLog) -> None:
        """Count the appends and writes of `log` from now on (a manager in etcd opens a new log
        for each term, and counts what it appends from the moment it leads)."""
        self.log = LogMeter.watch(log)

    def snapshot_found(self, seq: int) -> None:
        """The manager started from the snapshot at `seq` (when it is the newest known)."""
        if seq > self.snapshot_seq:
            self.snapshot_seq = seq

    def reset(self, state: ClusterState) -> None:
        """Count the tallies again from `state` (at the Manager actor's start)."""
        self.tasks = TaskTally.of(state.tasks.values())
        self.nodes = dict(state.nodes)
        self.down = set(state.down)

    def before(self, state: ClusterState, event: AnyEvent) -> Task | None:
        """The task `event` is about, as it is before the event is applied (None for a new
        one, and for events about no task)."""
        if type(event) is TaskSubmitted:
            return state.tasks.get(event.task.id)
        task_id = getattr(event, "task_id", None)
        return state.tasks.get(task_id) if task_id is not None else None

    def applied(self, state: ClusterState, event: AnyEvent, before: Task | None) -> None:
        """`event` was applied to `state`; `before` is what `before` said of it. On the
        manager's write path for every event: a type lookup, not a chain of checks."""
        kind = type(event)
        if before is not None:
            self.tasks.moved(before, state.tasks.get(before.id))
        elif isinstance(event, TaskSubmitted):
            self.tasks.moved(None, state.tasks.get(event.task.id))
        count = self._counts.get(kind)
        if count is not None:
            count(event)

    def _placed(self, event: TaskScheduled) -> None:
        self.placements["new"] += 1

    def _placed_again(self, event: TaskRestarted) -> None:
        self.placements["restart"] += 1

    def _unplaced(self, event: TaskUnplaced) -> None:
        self.unplaced[unplaced_kind(event.reason)] += 1

    def _restarting(self, event: TaskRestarting) -> None:
        self.restarts += 1

    def _unhealthy(self, event: TaskUnhealthy) -> None:
        self.unhealthy += 1

    def _joined(self, event: NodeJoined) -> None:
        self.nodes[event.node.name] = event.node
        self.down.discard(event.node.name)

    def _down(self, event: NodeDown) -> None:
        self.down.add(event.node)

    def committed(self, group: Sequence[Envelope], decisions: Iterable[Decision]) -> None:
        """A group of commands was logged and applied: the updates from workers among them
        (those applied, not ignored as duplicates) add their lag. A worker's clock ahead of
        the manager's would make a lag negative: it counts as 0."""
        now = 0.0
        for env, decision in zip(group, decisions, strict=True):
            message = env.message
            if decision.events and isinstance(message, _WORKER_UPDATES):
                now = now or time.time()
                try:
                    lag = now - parse(message.at).timestamp()
                except (ValueError, OverflowError):  # a time orc cannot read: no lag to tell
                    continue
                self.update_lag.observe(max(lag, 0.0))

    def snapshot_saved(self, seq: int) -> None:
        self.snapshot_seq, self.snapshot_time = seq, time.time()


def newest_snapshot(directory: str) -> tuple[int, float | None]:
    """The seq of the newest snapshot in a log directory and when it was written (0 and None
    when there is none). Snapshots are `<seq>.snap` files (eventlog/snapshots.py)."""
    newest, when = 0, None
    try:
        names = os.listdir(directory)
    except OSError:
        return 0, None
    for name in names:
        stem, dot, ext = name.partition(".")
        if dot and ext == "snap" and stem.isdigit() and int(stem) > newest:
            try:
                when = os.stat(os.path.join(directory, name)).st_mtime
            except OSError:
                continue
            newest = int(stem)
    return newest, when
