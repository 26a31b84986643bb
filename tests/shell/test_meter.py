"""What the shell counts for /metrics (orc/shell/meter.py): the manager's meter folded over a
real log of every event type must agree with a recount of the state after every event; the
event log's meter counts appends and times fsyncs; the health checker counts failed checks."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import trio

from actors import Envelope, Supervisor
from eventlog import EventLog
from orc.core.decide import Decision
from orc.core.events import AnyEvent, TaskExited, TaskScheduled, TaskStarted
from orc.core.messages import Watch
from orc.core.placement import allocations_of
from orc.core.state import ClusterState, apply
from orc.core.tally import TaskTally, unplaced_kind
from orc.core.times import later
from orc.replay.read import read
from orc.shell.health import HealthChecker
from orc.shell.meter import Histogram, LogMeter, ManagerMeter, newest_snapshot

GOLDEN = Path(__file__).resolve().parents[1] / "replay" / "golden" / "events-v1-arrays" / "log"
T0 = "2026-01-01T00:00:00+00:00"


async def test_the_manager_meter_follows_a_log_of_every_event_type(tmp_path: Path) -> None:
    records = [event for _, event in read(GOLDEN).records]
    async with await EventLog.open(tmp_path / "log", AnyEvent) as log:
        meter = ManagerMeter(log)
        state = ClusterState()
        meter.reset(state)
        for event in records:
            before = meter.before(state, event)
            apply(state, event)
            meter.applied(state, event, before)
            fresh = TaskTally.of(state.tasks.values())
            assert meter.tasks.by_state == fresh.by_state, event
            for node, allocation in allocations_of(state).items():
                assert meter.tasks.allocated(node) == allocation, event
    kinds = Counter(type(event).__name__ for event in records)
    assert meter.placements == {"new": kinds["TaskScheduled"], "restart": kinds["TaskRestarted"]}
    assert meter.restarts == kinds["TaskRestarting"] > 0
    assert meter.unhealthy == kinds["TaskUnhealthy"] > 0
    assert sum(meter.unplaced.values()) == kinds["TaskUnplaced"] > 0
    unplaced = Counter(
        unplaced_kind(e.reason) for e in records if type(e).__name__ == "TaskUnplaced"
    )  # type: ignore[attr-defined]
    assert {k: v for k, v in meter.unplaced.items() if v} == dict(unplaced)
    assert set(meter.nodes) == set(state.nodes) and meter.down == set(state.down)
    assert sum(meter.tasks.by_state.values()) == len(state.tasks)


async def test_worker_updates_add_their_lag_once_applied(tmp_path: Path) -> None:
    async with await EventLog.open(tmp_path / "log", AnyEvent) as log:
        meter = ManagerMeter(log)
    started = TaskStarted(at=T0, task_id="t", node="w")
    exited = TaskExited(at=T0, task_id="t", node="w", exit_code=0)
    group = [Envelope(started, target="m"), Envelope(exited, target="m")]
    # the exit was a duplicate (no events): it is not counted
    meter.committed(group, [Decision([started]), Decision([])])
    assert meter.update_lag.counts[-1] == 1  # a T0 long ago: past every bucket
    assert sum(meter.update_lag.counts) == 1
    placed = Envelope(TaskScheduled(at=T0, task_id="t", node="w"), target="m")
    meter.committed([placed], [Decision([placed.message])])  # not a worker's update
    assert sum(meter.update_lag.counts) == 1


def test_a_histogram_counts_at_or_below_each_bound() -> None:
    h = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        h.observe(value)
    assert h.cumulative() == [(0.1, 2), (1.0, 4), (float("inf"), 5)]
    assert h.sum == 8.65


async def test_the_log_meter_counts_appends_and_times_fsyncs(tmp_path: Path) -> None:
    async with await EventLog.open(tmp_path / "log", AnyEvent) as log:
        await log.append(TaskScheduled(at=T0, task_id="a", node="w"))
        meter = LogMeter.watch(log)
        async with trio.open_nursery() as nursery:  # concurrent appends share a flush
            for i in range(5):
                nursery.start_soon(log.append, TaskScheduled(at=T0, task_id=str(i), node="w"))
        assert meter.appended == 5
        observed = sum(meter.fsync.counts)
        assert 1 <= observed <= 5 and meter.fsync.sum > 0
        await log.save_snapshot(log.last_seq, b"state")
    assert newest_snapshot(str(tmp_path / "log"))[0] == 6
    assert newest_snapshot(str(tmp_path / "nowhere")) == (0, None)


async def test_the_health_checker_counts_every_failed_check(
    autojump_clock: trio.abc.Clock, tmp_path: Path
) -> None:
    class Inbox:
        async def tell(self, message: object) -> None:
            pass

    async def probe(url: str) -> str | None:
        return "HTTP 500" if url.endswith("bad") else None

    async with await EventLog.open(tmp_path / "log", AnyEvent) as log:
        meter = ManagerMeter(log)
    inbox = Inbox()
    sup = Supervisor("t")
    ref = sup.add(
        "health",
        lambda: HealthChecker(
            lambda: inbox,  # type: ignore[arg-type, return-value]
            lambda: later(T0, trio.current_time()),
            10,
            2,
            3,
            probe,
            meter=meter,
        ),
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.run)
        await ref.tell(Watch("bad", "w1", T0, "http://h:1/bad"))
        await ref.tell(Watch("ok", "w1", T0, "http://h:1/ok"))
        await trio.sleep(95)
        nursery.cancel_scope.cancel()
    assert meter.health_check_failures == 3  # three in a row, then the verdict: no more checks
