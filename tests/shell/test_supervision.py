"""A crashed actor is restarted by its supervisor, and one whose state the manager derives
from the log (scheduler, restarter) gets that state back: nothing pending is forgotten."""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import trio

from actors import Supervisor
from orc.clock import now
from orc.cmd.cluster import Cluster, build, open_event_log
from orc.core.events import AnyEvent
from orc.core.messages import GetTask, Join, Reply, Submit
from orc.core.model import State, Task, TaskEvent
from tests.conftest import make_settings


async def _wait(
    cluster: Cluster, task_id: str, predicate: Callable[[Task], bool], timeout: float = 15
) -> Task:
    with trio.fail_after(timeout):
        while True:
            reply = await cluster.manager.ask(GetTask(task_id))
            assert isinstance(reply, Reply) and reply.task is not None
            if predicate(reply.task):
                return reply.task
            await trio.sleep(0.02)


def _submit(cmd: list[str], policy: str = "") -> Submit:
    task_id = str(uuid.uuid4())
    task = Task(id=task_id, cmd=cmd, driver="process", restart_policy=policy)
    return Submit(TaskEvent(id=task_id, state=2, task=task), now())


@pytest.fixture
async def cluster(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Cluster]:
    settings = make_settings(tmp_path / "data", ORC_RESTART_BACKOFF="0.5")
    settings.data_dir.mkdir(parents=True)
    log = await open_event_log(settings.data_dir / "log", AnyEvent, settings.segment_bytes)
    sup = Supervisor("test", max_restarts=5, within=10.0)
    built = build(settings, sup, log)
    nursery.start_soon(sup.run)
    for node in built.workers:
        await built.manager.ask(Join(node.info, now()), timeout=10)
    yield built
    nursery.cancel_scope.cancel()


async def test_scheduler_crash_keeps_nodes(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    await cluster.scheduler.tell("not a message")  # the scheduler raises: a crash
    submit = _submit(["true"])
    reply = await cluster.manager.ask(submit)
    assert isinstance(reply, Reply) and reply.status == 201
    task = await _wait(cluster, submit.event.id, lambda t: t.state == State.COMPLETED)
    assert task.node == "worker-1"
    assert "scheduler restarted after a crash" in caplog.text


async def test_restarter_crash_keeps_pending_restarts(cluster: Cluster) -> None:
    submit = _submit([sys.executable, "-c", "raise SystemExit(3)"], policy="on-failure")
    reply = await cluster.manager.ask(submit)
    assert isinstance(reply, Reply) and reply.status == 201
    task_id = submit.event.id
    await _wait(cluster, task_id, lambda t: t.restart_count == 1)
    await cluster.restarter.tell("not a message")  # crashes while the backoff runs
    task = await _wait(cluster, task_id, lambda t: t.restart_count >= 2)
    assert task.restart_count >= 2
