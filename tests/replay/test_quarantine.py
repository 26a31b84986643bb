"""An older orc's log that poisoned every start (issue 13): orc starts on it, quarantines what
it cannot trust, and `orc replay --check` names each quarantined task, its digests matching.

The log is crafted with the real EventLog, as an older orc wrote it: it accepted a task with a
CPU of 1e308 (the scheduler raised OverflowError on it, at every start) and one with a NUL in its
`Cmd`, and it logged a start of a task that had completed (`apply` raised IllegalTransition on
it, so the manager could never rebuild its state). Before this change, orc could not start on
this log.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from eventlog import EventLog, open_readonly
from orc.cmd.main import main
from orc.core.events import (
    AnyEvent,
    NodeJoined,
    StateDigest,
    TaskExited,
    TaskFailed,
    TaskScheduled,
    TaskStarted,
    TaskSubmitted,
)
from orc.core.model import NodeInfo, State, Task
from orc.core.snapshot import state_digest
from orc.core.state import replay
from tests.conftest import make_settings, running_cluster, wait_for_state

HUGE = "11111111-0000-4000-8000-000000000001"
NUL = "22222222-0000-4000-8000-000000000002"
DONE = "33333333-0000-4000-8000-000000000003"
T = "2026-11-28T12:00:0{}+00:00"


def older_log() -> list[AnyEvent]:
    node = NodeInfo(name="old-1", address="10.0.0.1:8888", drivers=("process",), cores=2)
    events: list[AnyEvent] = [
        NodeJoined(at=T.format(0), node=node),
        TaskSubmitted(at=T.format(1), task=Task(id=HUGE, name="huge", image="busybox", cpu=1e308)),
        TaskSubmitted(
            at=T.format(1), task=Task(id=NUL, name="nul", cmd=["a\x00b"], driver="process")
        ),
        TaskSubmitted(
            at=T.format(2), task=Task(id=DONE, name="done", cmd=["true"], driver="process")
        ),
        TaskScheduled(at=T.format(2), task_id=DONE, node="old-1"),
        TaskStarted(at=T.format(3), task_id=DONE, node="old-1"),
        TaskExited(at=T.format(4), task_id=DONE, node="old-1", exit_code=0),
    ]
    # the older manager recorded a digest, as every manager does now and then
    events.append(StateDigest(at=T.format(4), seq=len(events), digest=state_digest(replay(events))))
    # a start of a task that had completed: the record that stopped the older orc for good
    events.append(TaskStarted(at=T.format(5), task_id=DONE, node="old-1"))
    return events


async def write(log_dir: Path, events: list[AnyEvent]) -> None:
    async with await EventLog.open(log_dir, AnyEvent) as log:
        await log.append_batch(events)


async def test_orc_starts_on_an_older_log_and_replay_check_names_what_it_quarantined(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    await write(data / "log", older_log())
    settings = make_settings(data, ORC_DIGEST_EVERY="2")
    async with running_cluster(settings) as cluster:
        huge = await wait_for_state(cluster.manager, HUGE, State.FAILED)
        assert huge["Error"] == "quarantined: Task.CPU: must be a finite number between 0 and 1024"
        nul = await wait_for_state(cluster.manager, NUL, State.FAILED)
        assert nul["Error"].startswith("quarantined: Task.Cmd")
        done = await wait_for_state(cluster.manager, DONE, State.FAILED)
        assert done["Error"] == (
            "quarantined: TaskStarted refused: illegal transition Completed -> Running"
        )
        # and it works: a task runs to its end (and the manager records digests meanwhile)
        task_id = str(uuid.uuid4())
        body = {"ID": task_id, "State": 2, "Task": {"ID": task_id, "Cmd": ["true"]}}
        assert (await cluster.manager.post("/tasks", json=body)).status_code == 201
        await wait_for_state(cluster.manager, task_id, State.COMPLETED)

    # the quarantines are in the log, once: a second start finds nothing more to do
    async with running_cluster(settings) as cluster:
        assert (await cluster.manager.get(f"/tasks/{HUGE}")).json()["State"] == State.FAILED
    records = [e for _, e in open_readonly(data / "log", AnyEvent).read()]
    quarantines = [e for e in records if isinstance(e, TaskFailed)]
    assert {e.task_id for e in quarantines} == {HUGE, NUL}
    assert len(quarantines) == 2
    assert sum(isinstance(e, StateDigest) for e in records) >= 2

    status = main(["replay", str(data), "--check"])
    out, err = capsys.readouterr()
    assert (status, err) == (1, ""), out  # the start after the end broke the rules
    assert "digest" not in out  # every digest, the older orc's and today's, matches
    lines = out.splitlines()
    assert [x.split()[1] for x in lines if x.startswith("seq ")] == ["9"]
    assert "after-terminal: started after the task ended Completed" in out
    assert "3 tasks quarantined (ended Failed, see the task's Error):" in lines
    named = [x for x in lines if x.startswith("  seq ")]
    assert len(named) == 3
    assert named[0].startswith("  seq 9  ") and named[0].endswith(
        "task 33333333: quarantined: TaskStarted refused: illegal transition Completed -> Running"
    )
    assert any("task 11111111: quarantined: Task.CPU: must be" in x for x in named[1:])
    assert any("task 22222222: quarantined: Task.Cmd" in x for x in named[1:])
    assert lines[-1].startswith("1 record broke the rules, in ")

    assert main(["replay", str(data), "--check", "--json"]) == 1
    doc = json.loads(capsys.readouterr()[0])
    assert {q["task"] for q in doc["quarantined"]} == {HUGE, NUL, DONE}
    assert [v["kind"] for v in doc["violations"]] == ["after-terminal"]
    # a quarantine at start-up breaks no rule: the log is as the manager wrote it
    assert main(["replay", str(data), "--check", "--task", HUGE]) == 0
    out = capsys.readouterr()[0]
    assert out.startswith("OK: ") and "1 task quarantined" in out and "task 11111111" in out
    # the timeline marks the record and what became of the task
    assert main(["replay", str(data), "--task", DONE]) == 0
    out = capsys.readouterr()[0]
    assert "Completed -> Failed" in out and "!! started after the task ended" in out


async def test_orc_starts_on_a_log_whose_only_fault_is_a_cpu_of_1e308(tmp_path: Path) -> None:
    """The fault as reported: `POST /tasks` with `"CPU": 1e308` was accepted, the scheduler
    raised OverflowError on it at every start, and orc stopped after repeated crashes."""
    data = tmp_path / "data"
    task = Task(id=HUGE, name="huge", image="busybox", cpu=1e308, driver="docker")
    await write(data / "log", [TaskSubmitted(at=T.format(1), task=task)])
    async with running_cluster(make_settings(data)) as cluster:
        huge = await wait_for_state(cluster.manager, HUGE, State.FAILED)
        assert huge["Error"] == "quarantined: Task.CPU: must be a finite number between 0 and 1024"
        task_id = str(uuid.uuid4())
        body = {"ID": task_id, "State": 2, "Task": {"ID": task_id, "Cmd": ["true"]}}
        assert (await cluster.manager.post("/tasks", json=body)).status_code == 201
        await wait_for_state(cluster.manager, task_id, State.COMPLETED)
