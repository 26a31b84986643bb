"""A log that cannot be written: 503 with a JSON message, nothing acknowledged is lost, and orc
carries on by itself once space returns. Faults are injected at the log's write call."""

from __future__ import annotations

import errno
import os
import uuid

import pytest
import trio

import eventlog.log
from eventlog import EventLog
from orc.core.events import AnyEvent
from tests.conftest import RunningCluster, wait_for_state


class Disk:
    full = False


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Disk:
    real = eventlog.log.pwrite_all
    state = Disk()

    def pwrite_all(fd: int, data: bytes, offset: int) -> None:
        if state.full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd, data, offset)

    monkeypatch.setattr(eventlog.log, "pwrite_all", pwrite_all)
    return state


def _body(cmd: list[str]) -> dict:
    task_id = str(uuid.uuid4())
    return {"ID": task_id, "State": 2, "Task": {"ID": task_id, "Cmd": cmd}}


async def test_full_disk_gives_503_and_recovers(cluster: RunningCluster, disk: Disk) -> None:
    before = _body(["true"])
    assert (await cluster.manager.post("/tasks", json=before)).status_code == 201
    await wait_for_state(cluster.manager, before["ID"], 3)

    disk.full = True
    refused = _body(["true"])
    r = await cluster.manager.post("/tasks", json=refused)
    assert r.status_code == 503
    assert "No space left on device" in r.json()["message"]
    assert (await cluster.manager.get(f"/tasks/{refused['ID']}")).status_code == 404
    assert (await cluster.manager.get(f"/tasks/{before['ID']}")).json()["State"] == 3

    disk.full = False
    r = await cluster.manager.post("/tasks", json=refused)
    assert r.status_code == 201
    await wait_for_state(cluster.manager, refused["ID"], 3)


async def test_worker_updates_wait_for_space_and_are_not_lost(
    cluster: RunningCluster, disk: Disk
) -> None:
    body = _body(["sleep", "0.3"])
    assert (await cluster.manager.post("/tasks", json=body)).status_code == 201
    await wait_for_state(cluster.manager, body["ID"], 2)
    disk.full = True
    await trio.sleep(1.0)  # the task exits while nothing can be logged
    task = (await cluster.manager.get(f"/tasks/{body['ID']}")).json()
    assert task["State"] == 2  # never shown as ended before its end is durable
    disk.full = False
    task = await wait_for_state(cluster.manager, body["ID"], 3)
    assert task["ExitCode"] == 0

    cluster.stop.set()
    await cluster.done.wait()
    log = await EventLog.open(cluster.settings.data_dir / "log", AnyEvent)
    events = [e for _, e in log.read(1) if getattr(e, "task_id", None) == body["ID"]]
    await log.aclose()
    assert [type(e).__name__ for e in events] == ["TaskScheduled", "TaskStarted", "TaskExited"]
