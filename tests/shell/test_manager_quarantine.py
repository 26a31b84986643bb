"""The Manager's start-up quarantine (issue 13): tasks an older orc accepted outside today's
bounds end Failed, by events it logs, before the scheduler sees them; one that runs is stopped
on its node and left out of what the node is told to run."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from actors import Actor, Supervisor
from eventlog import EventLog
from orc.core.events import (
    AnyEvent,
    NodeJoined,
    TaskFailed,
    TaskScheduled,
    TaskStarted,
    TaskSubmitted,
)
from orc.core.messages import Ping, Reconcile, Schedule, StopTask, TasksPlaced
from orc.core.model import NodeInfo, Task
from orc.shell.manager import Manager

T0 = "2026-01-01T00:00:00+00:00"
RUNS = "00000000-0000-4000-8000-000000000001"  # running, with a NUL in its Cmd
WAITS = "00000000-0000-4000-8000-000000000002"  # pending, with a CPU of 1e308
FINE = "00000000-0000-4000-8000-000000000003"  # running, within the bounds


class Recorder(Actor[object]):
    """Stands in for the scheduler or a node's proxy: keeps what the manager tells it."""

    def __init__(self, seen: list[object]) -> None:
        self.seen = seen

    async def handle(self, message: object) -> object:
        self.seen.append(message)
        return None


async def test_start_up_quarantines_what_an_older_orc_accepted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "orc.manager")
    node = NodeInfo(name="w1", address="127.0.0.1:1", drivers=("process",), cores=2)
    older: list[AnyEvent] = [NodeJoined(at=T0, node=node)]
    for task in (
        Task(id=RUNS, cmd=["a\x00b"], driver="process"),
        Task(id=FINE, cmd=["sleep", "9"], driver="process"),
    ):
        older += [
            TaskSubmitted(at=T0, task=task),
            TaskScheduled(at=T0, task_id=task.id, node="w1"),
            TaskStarted(at=T0, task_id=task.id, node="w1"),
        ]
    older.append(TaskSubmitted(at=T0, task=Task(id=WAITS, image="busybox", cpu=1e308)))
    async with await EventLog.open(tmp_path / "log", AnyEvent) as log:
        await log.append_batch(older)

    log = await EventLog.open(tmp_path / "log", AnyEvent)
    scheduled: list[object] = []
    told: list[object] = []
    sup = Supervisor("test")
    scheduler = sup.add("scheduler", lambda: Recorder(scheduled))
    proxy = sup.add("w1", lambda: Recorder(told))
    manager = sup.add("manager", lambda: Manager(log, scheduler, {"w1": proxy}))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.run)
        await manager.ask(Ping())
        await scheduler.ask(Ping())
        await proxy.ask(Ping())
        nursery.cancel_scope.cancel()
    appended = [e for _, e in log.read(len(older) + 1)]
    await log.aclose()

    assert sorted((e.task_id, type(e)) for e in appended) == [
        (RUNS, TaskFailed),
        (WAITS, TaskFailed),
    ]
    assert all(isinstance(e, TaskFailed) and e.error.startswith("quarantined: ") for e in appended)
    # the scheduler never hears of either; the node runs on what is within the bounds...
    assert not [m for m in scheduled if isinstance(m, Schedule)]
    placed = [t.id for m in scheduled if isinstance(m, TasksPlaced) for t in m.tasks]
    assert placed == [FINE]
    reconcile = next(m for m in told if isinstance(m, Reconcile))
    assert [t.id for t in reconcile.tasks] == [FINE]
    # ...and stops the one that ran
    assert StopTask(RUNS) in told and StopTask(FINE) not in told
    warned = [r.getMessage() for r in caplog.records if r.name == "orc.manager"]
    assert f"task {WAITS}: quarantined: Task.CPU: must be a finite number between 0 and 1024" in (
        warned
    )
    assert any(w.startswith(f"task {RUNS}: quarantined: Task.Cmd") for w in warned)
