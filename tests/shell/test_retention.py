"""Forgetting ended tasks in the shell and in replay: the Reaper's timer, `orc replay --check` on
purges, and a running cluster that purges what ended ORC_TASK_RETENTION ago (the pure decision is
tested in tests/core/test_retention.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import trio

from actors import Supervisor
from eventlog.reader import read_log
from orc import config
from orc.core.events import (
    AnyEvent,
    NodeJoined,
    TaskExited,
    TaskPurged,
)
from orc.core.messages import Purge
from orc.core.model import NodeInfo, State
from orc.core.times import later
from orc.replay import story as replay
from orc.shell.reaper import Reaper, interval_for
from tests.conftest import make_settings, running_cluster, wait_for_state
from tests.core.test_retention import _life

T0 = "2026-11-28T10:00:00+00:00"
NODE = NodeInfo(name="w1", address="127.0.0.1:1", drivers=("process",))


def test_replay_check_flags_a_purge_of_a_running_task_and_events_after_a_purge() -> None:
    records = list(
        enumerate(
            [
                NodeJoined(at=T0, node=NODE),
                *_life("a", later(T0, 10)),
                *_life("b", None),
                TaskPurged(at=later(T0, 50), task_id="a", reason="ended"),
                TaskPurged(at=later(T0, 50), task_id="b", reason="ended"),
                TaskExited(at=later(T0, 60), task_id="a", node="w1", exit_code=0),
            ],
            1,
        )
    )
    result = replay.check(records)
    assert [(v.seq, v.kind) for v in result.violations] == [
        (10, "purge-active"),
        (11, "unknown-task"),
    ]
    assert "purged while Running" in result.violations[0].message
    assert "purged" in result.violations[1].message
    # the history of a purged task is still told, from the log
    story = replay.history(records, "a")
    assert story.task.id == "a" and story.task.state == State.COMPLETED
    assert [row.event for row in story.rows][-2:] == ["purged", "exited"]
    assert [p.state for p in story.periods][-1] == "Completed"


def test_retention_setting() -> None:
    assert make_settings(Path("/tmp/x")).task_retention == 86400
    assert make_settings(Path("/tmp/x"), ORC_TASK_RETENTION="0").task_retention == 0
    with pytest.raises(config.ConfigError, match="ORC_TASK_RETENTION=-1 must be at least 0"):
        make_settings(Path("/tmp/x"), ORC_TASK_RETENTION="-1")


class _Inbox:
    def __init__(self) -> None:
        self.got: list[tuple[float, object]] = []

    async def tell(self, message: object) -> None:
        self.got.append((trio.current_time(), message))


async def test_reaper_asks_for_a_purge_every_tenth_of_the_retention_at_most_a_minute(
    autojump_clock: trio.abc.Clock,
) -> None:
    assert (interval_for(30), interval_for(86400)) == (3, 60)
    inbox = _Inbox()
    sup = Supervisor("t")
    sup.add("reaper", lambda: Reaper(lambda: inbox, lambda: T0, 30))  # type: ignore[arg-type, return-value]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.run)
        start = trio.current_time()
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    assert [round(t - start) for t, _ in inbox.got] == [3, 6, 9]
    assert all(m == Purge(now=T0, retention=30) for _, m in inbox.got)


async def test_cluster_forgets_an_ended_task_after_the_retention(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", ORC_TASK_RETENTION="0.5")
    async with running_cluster(settings) as cluster:
        done, running = str(uuid.uuid4()), str(uuid.uuid4())
        for task_id, cmd in ((done, ["true"]), (running, ["sleep", "30"])):
            body = {"ID": task_id, "State": 2, "Task": {"ID": task_id, "Cmd": cmd}}
            assert (await cluster.manager.post("/tasks", json=body)).status_code == 201
        await wait_for_state(cluster.manager, done, 3)
        await wait_for_state(cluster.manager, running, 2)
        with trio.fail_after(10):
            while (await cluster.manager.get(f"/tasks/{done}")).status_code != 404:
                await trio.sleep(0.05)
        listed = {t["ID"] for t in (await cluster.manager.get("/tasks")).json()}
        assert listed == {running}  # what still runs is never forgotten
        # the ID is free again: the same spec submitted again is a new task
        body = {"ID": done, "State": 2, "Task": {"ID": done, "Cmd": ["true"]}}
        assert (await cluster.manager.post("/tasks", json=body)).status_code == 201
    records = list(read_log(settings.data_dir / "log", AnyEvent))
    purged = [e for _, e in records if isinstance(e, TaskPurged)]
    assert [e.task_id for e in purged][:1] == [done]
    assert replay.check(records).ok
