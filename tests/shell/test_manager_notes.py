"""The core decides in silence and hands back notes; the Manager actor logs them on
`orc.manager`, at the level each note asks for."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from actors import Actor, Supervisor
from eventlog import EventLog
from orc.core.events import AnyEvent, TaskStarted
from orc.core.messages import Ping, Place, Reply, Submit
from orc.core.model import Task, TaskEvent
from orc.shell.manager import Manager

T0 = "2026-01-01T00:00:00+00:00"
GHOST = "00000000-0000-4000-8000-0000000000ff"
TASK = "00000000-0000-4000-8000-00000000000a"


class Sink(Actor[object]):
    """Stands in for the scheduler: takes what the manager tells it and does nothing."""

    async def handle(self, message: object) -> object:
        return None


async def test_manager_logs_the_notes_of_its_decisions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "orc.manager")
    log = await EventLog.open(tmp_path / "log", AnyEvent)
    sup = Supervisor("test")
    scheduler = sup.add("scheduler", Sink)
    manager = sup.add("manager", lambda: Manager(log, scheduler, {}))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.run)
        await manager.tell(TaskStarted(at=T0, task_id=GHOST, node="w1", worker_seq=0))
        await manager.tell(Place(GHOST, "w9", "", T0))  # unknown task: nothing, and no note
        reply = await manager.ask(Submit(TaskEvent(id=TASK, task=Task(id=TASK, cmd=["x"])), T0))
        assert isinstance(reply, Reply) and reply.status == 201
        await manager.tell(Place(TASK, "w9", "", T0))
        await manager.ask(Ping())  # the mailbox is in order: all were decided before it
        nursery.cancel_scope.cancel()
    await log.aclose()
    notes = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "orc.manager"]
    assert notes == [
        (logging.INFO, f"ignoring a start for unknown task {GHOST} from node w1"),
        (logging.WARNING, f"scheduler placed task {TASK} on unknown node w9"),
    ]
    assert log.last_seq == 1  # the submission alone
