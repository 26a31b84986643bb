"""`orc replay --job ID`: a job's story from a log written by hand (every event as the manager
and the reconciler would log them): its versions, every decision with its reason, each task's
fate, a periodic job's runs; the same story as JSON; and the check's rules for job events."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from orc.cmd.main import main
from orc.core.events import (
    AnyEvent,
    JobDecided,
    JobRegistered,
    JobScaled,
    JobStopped,
    NodeJoined,
    TaskExited,
    TaskScheduled,
    TaskStarted,
    TaskStopRequested,
    TaskSubmitted,
    TaskUnplaced,
)
from orc.core.jobs import task_id_for
from orc.core.jobspec import JobSpec, PeriodicSpec, TemplateSpec
from orc.core.model import NodeInfo, Task
from orc.replay import render
from orc.replay import story as replay
from tests.replay.test_replay import golden, t, write_log

V0 = TemplateSpec(cmd=["sleep", "30"])
V1 = TemplateSpec(cmd=["sleep", "31"], env=["V=1"])
WEB0 = JobSpec(id="web", count=2, task=V0)
WEB1 = JobSpec(id="web", count=2, task=V1)
A, B, C, D, E, F = (task_id_for("web", n) for n in range(6))
NIGHTLY = JobSpec(
    id="nightly",
    type="batch",
    task=TemplateSpec(cmd=["true"]),
    periodic=PeriodicSpec(cron="0 3 * * *"),
)
RUN = "nightly-20261128T0300"
RUN_TASK = task_id_for(RUN, 0)
ALONE = "eeeeeeee-0000-4000-8000-000000000005"


def job_task(task_id: str, job: str, version: int, slot: int, spec: TemplateSpec, at: str) -> Task:
    return Task(
        id=task_id,
        name=job,
        cmd=spec.cmd,
        env=spec.env,
        driver="process",
        job_id=job,
        job_version=version,
        slot=slot,
        created_at=at,
        updated_at=at,
    )


def place(at: float, task_id: str, slot: int, version: int, spec: TemplateSpec, why: str) -> list:
    action = "place" if version == 0 else "replace"
    return [
        JobDecided(
            at=t(at), job_id="web", action=action, reason=why, task_id=task_id, slot=slot,
            version=version,
        ),
        TaskSubmitted(at=t(at), task=job_task(task_id, "web", version, slot, spec, t(at))),
    ]  # fmt: skip


def run(at: float, task_id: str) -> list:
    return [
        TaskScheduled(at=t(at), task_id=task_id, node="worker-1"),
        TaskStarted(at=t(at + 0.1), task_id=task_id, node="worker-1"),
    ]


def job_events() -> list[AnyEvent]:
    """A service's afternoon: submitted with 2 tasks, both healthy; a rolling update whose
    second replacement fails, so the deployment fails and reverts; scaled to 3, the third
    cannot be placed and waits; stopped. Beside it, a task of no job, and a periodic job that
    launches one run."""
    node = NodeInfo(name="worker-1", address="127.0.0.1:8888", drivers=("process",), cores=2)
    healthy = "ran 10s (MinHealthyTime)"
    return [
        NodeJoined(at=t(0), node=node),
        JobRegistered(at=t(1), job=WEB0, version=0, reason="submitted"),
        *place(1, A, 0, 0, V0, "slot 0 has no task"),
        *place(1, B, 1, 0, V0, "slot 1 has no task"),
        *run(1.01, A),
        *run(1.02, B),
        TaskSubmitted(at=t(2), task=Task(id=ALONE, name="alone", cmd=["true"], driver="process")),
        JobDecided(at=t(11.2), job_id="web", action="healthy", reason=healthy, task_id=A),
        JobDecided(at=t(11.2), job_id="web", action="healthy", reason=healthy, task_id=B),
        JobDecided(
            at=t(11.2), job_id="web", action="deployed", reason="2 of 2 healthy", version=0
        ),
        JobRegistered(
            at=t(20), job=WEB1, version=1, reason='updated: Task.Cmd: ["sleep","30"] -> ...'
        ),
        *place(20, C, 0, 1, V1, "slot 0 runs version 0; the job is at version 1"),
        TaskStopRequested(at=t(20), task_id=A),
        TaskExited(at=t(20.5), task_id=A, node="worker-1", exit_code=143, stopped=True),
        *run(20.6, C),
        JobDecided(
            at=t(30.7), job_id="web", action="healthy", reason=healthy, task_id=C, version=1
        ),
        *place(30.7, D, 1, 1, V1, "slot 1 runs version 0; the job is at version 1"),
        TaskStopRequested(at=t(30.7), task_id=B),
        TaskExited(at=t(31), task_id=B, node="worker-1", exit_code=143, stopped=True),
        *run(31.1, D),
        TaskExited(at=t(32), task_id=D, node="worker-1", exit_code=1, error="exit status 1"),
        JobDecided(
            at=t(32), job_id="web", action="unhealthy", reason="failed before it was healthy",
            task_id=D, version=1,
        ),
        JobDecided(
            at=t(32), job_id="web", action="deployment-failed", reason="task of slot 1 failed",
            version=1,
        ),
        JobDecided(
            at=t(32), job_id="web", action="revert", reason="auto-revert to version 0", version=0
        ),
        JobRegistered(
            at=t(32), job=WEB0, version=2, reason="auto-revert: to version 0 (deployment failed)"
        ),
        *place(32, E, 1, 2, V0, "slot 1 has no running task"),
        *run(32.1, E),
        JobScaled(at=t(40), job_id="web", count=3, reason="scaled from 2 to 3 by request"),
        JobDecided(
            at=t(40), job_id="web", action="place", reason="slot 2 has no task", task_id=F,
            slot=2, version=2,
        ),
        TaskSubmitted(at=t(40), task=job_task(F, "web", 2, 2, V0, t(40))),
        TaskUnplaced(at=t(40), task_id=F, reason="no node has 1 CPU free"),
        JobDecided(at=t(40), job_id="web", action="wait", reason="1 task waits for a node"),
        JobRegistered(at=t(50), job=NIGHTLY, version=0, reason="submitted"),
        JobDecided(at=t(60), job_id="nightly", action="launch", reason="due at 03:00"),
        JobRegistered(
            at=t(60), job=JobSpec(id=RUN, type="batch", task=TemplateSpec(cmd=["true"])),
            version=0, reason="launched by nightly", parent="nightly",
        ),
        JobDecided(
            at=t(60), job_id=RUN, action="place", reason="slot 0 has no task", task_id=RUN_TASK,
            slot=0,
        ),
        TaskSubmitted(
            at=t(60), task=job_task(RUN_TASK, RUN, 0, 0, TemplateSpec(cmd=["true"]), t(60))
        ),
        *run(60.01, RUN_TASK),
        TaskExited(at=t(60.5), task_id=RUN_TASK, node="worker-1", exit_code=0),
        JobDecided(at=t(60.5), job_id=RUN, action="complete", reason="1 of 1 completed"),
        JobStopped(at=t(70), job_id="web", reason="stopped by request"),
    ]  # fmt: skip


@pytest.fixture
async def job_log(tmp_path: Path) -> Path:
    await write_log(tmp_path / "data" / "log", job_events())
    return tmp_path / "data"


def records() -> list[replay.Record]:
    return list(enumerate(job_events(), start=1))


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["replay", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_the_story_of_a_job_in_text() -> None:
    text = render.job_text(replay.job_story(records(), "web"))
    golden("replay_job_web.txt", text)
    head = text.splitlines()[:3]
    assert head == [
        "job web (service)",
        "now stopped at version 2 (stable: 0): 2 of 3 running;"
        " tasks: 1 Pending, 2 Running, 2 Completed, 1 Failed",
        "deployment of version 2: cancelled (stopped by request); 3 desired, 2 placed, 0 healthy",
    ]
    # each version, and which ones rolled the tasks over
    assert "0        2026-11-28 12:00:01.000  submitted\n" in text
    assert "; rolling update to version 1\n" in text
    assert "auto-revert: to version 0 (deployment failed); rolling update to version 2" in text
    # every decision, with its reason
    for decision in [
        "decided:place              93fefe53  0 v0",
        "decided:deployed                     v0",
        "decided:unhealthy          804146ef  1 v1",
        "decided:deployment-failed            v1",
        "decided:wait",
    ]:
        assert decision in text, decision
    assert "slot 1 runs version 0; the job is at version 1" in text
    assert "1 task waits for a node" in text
    # each task's fate
    fates = {line[:8]: line for line in text.split("TASKS (6")[1].splitlines()[2:]}
    assert "replaced by 811bdbfd (version 1)" in fates[A[:8]]
    assert "ended Completed: stopped (exit 143)" in fates[A[:8]]
    assert "ended Failed: exit 1: exit status 1" in fates[D[:8]]
    assert "unhealthy: failed before it was healthy" in fates[D[:8]]
    assert fates[D[:8]].endswith(f"replaced by {E[:8]} (version 2)")
    assert fates[F[:8]].endswith("unplaced: no node has 1 CPU free")
    # neither the task of no job nor the periodic job's events are in it
    assert ALONE[:8] not in text and "nightly" not in text


async def test_orc_replay_job_tells_it_and_json_gives_it_as_data(
    job_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = cli(capsys, str(job_log), "--job", "web")
    assert (status, err) == (0, "")
    assert out == render.job_text(replay.job_story(records(), "web"))

    status, out, err = cli(capsys, str(job_log), "--job", "web", "--json")
    assert (status, err) == (0, "")
    doc = json.loads(out)
    assert (doc["first_seq"], doc["last_seq"]) == (1, len(job_events()))
    job = doc["job"]  # as GET /jobs/web shows it
    assert (job["ID"], job["Type"], job["Status"], job["Version"], job["Count"]) == (
        "web", "service", "stopped", 2, 3
    )  # fmt: skip
    assert job["Deployment"]["State"] == "cancelled" and job["StableVersion"] == 0
    assert [(v["version"], v["rolling_update"]) for v in doc["versions"]] == [
        (0, False), (1, True), (2, True)
    ]  # fmt: skip
    decisions = [(e["action"], e["task"], e["slot"], e["version"]) for e in doc["events"]]
    assert ("place", A, 0, 0) in decisions
    assert ("deployed", None, None, 0) in decisions
    assert ("wait", None, None, None) in decisions
    first = doc["events"][0]
    assert first == {
        "seq": 2,
        "at": t(1),
        "event": "job-registered",
        "action": "",
        "task": None,
        "slot": None,
        "version": 0,
        "from": None,
        "to": None,
        "node": "",
        "reason": "submitted",
        "violation": None,
    }
    started = next(e for e in doc["events"] if e["event"] == "started")
    assert (started["task"], started["from"], started["to"], started["node"]) == (
        A, "Scheduled", "Running", "worker-1"
    )  # fmt: skip
    tasks = {task["id"]: task for task in doc["tasks"]}
    assert list(tasks) == [A, B, C, D, E, F]  # in the order they were made
    assert [tasks[x]["replaced_by"] for x in (A, B, C, D, E, F)] == [C, D, None, E, None, None]
    assert [(tasks[x]["slot"], tasks[x]["version"]) for x in (A, D, F)] == [(0, 0), (1, 1), (2, 2)]
    fate = [f["what"] for f in tasks[A]["fate"]]
    assert fate == [
        "place: slot 0 has no task",
        "created for slot 0 of version 0",
        "scheduled on worker-1",
        "started on worker-1",
        "healthy: ran 10s (MinHealthyTime)",
        f"replaced by {C[:8]} (version 1)",
        "stop requested",
        "ended Completed: stopped (exit 143)",
    ]
    assert [f["seq"] for f in tasks[A]["fate"]] == sorted(f["seq"] for f in tasks[A]["fate"])
    assert doc["runs"] == []


async def test_a_periodic_job_tells_its_runs_and_each_run_its_own_story(
    job_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = cli(capsys, str(job_log), "--job", "nightly")
    assert status == 0
    assert "periodic: '0 3 * * *', 1 runs launched" in out
    assert "decided:launch" in out and "due at 03:00" in out
    runs = out.split("RUNS (1")[1]
    assert RUN in runs and "complete  1 Completed" in runs
    doc = json.loads(cli(capsys, str(job_log), "--job", "nightly", "--json")[1])
    assert doc["runs"] == [
        {
            "id": RUN,
            "seq": 45,
            "launched_at": t(60),
            "version": 0,
            "status": "complete",
            "waiting": "",
            "tasks": {"Completed": 1},
        }
    ]
    status, out, _ = cli(capsys, str(job_log), "--job", RUN)
    assert status == 0
    assert out.startswith(f"job {RUN} (batch), a run of periodic job nightly\n")
    assert "decided:complete" in out and "1 of 1 completed" in out
    assert "ended Completed: exit 0" in out


async def test_which_job_and_what_is_asked(
    job_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, str(job_log), "--job", "we")[0] == 0  # a unique prefix
    status, out, err = cli(capsys, str(job_log), "--job", "nigh")
    assert (status, out) == (2, "")
    assert "job 'nigh' is ambiguous: 2 job IDs start with it" in err
    status, out, err = cli(capsys, str(job_log), "--job", "nope")
    assert (status, err) == (2, "orc replay: no job 'nope' in the log (3 jobs)\n")
    status, _, err = cli(capsys, str(job_log), "--job", "web", "--task", A)
    assert status == 2 and "give one of them" in err
    # up to a point: the job as it was then
    status, out, _ = cli(capsys, str(job_log), "--job", "web", "--at", "14")
    assert status == 0
    assert "deployment of version 0: successful (2 of 2 healthy)" in out
    assert "VERSIONS (1)" in out


async def test_job_events_break_no_rule_and_show_in_the_timeline_and_task_history(
    job_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = cli(capsys, str(job_log), "--check")
    assert (status, out) == (0, f"OK: {len(job_events())} events, 8 tasks, 1 nodes: every"
                              " transition legal, every invariant holds\n")  # fmt: skip
    status, out, _ = cli(capsys, str(job_log))
    assert status == 0
    assert "job-registered                                            job web version 0:" in out
    assert f"job-decided     {A[:8]}" in out
    assert "job web deployed: 2 of 2 healthy" in out
    assert "slot 0 of job web version 0" in out  # a job's task says so when submitted
    status, out, _ = cli(capsys, str(job_log), "--task", A)
    assert status == 0
    lines = out.splitlines()
    assert lines[2] == "slot 0 of job web version 0"
    assert "job-decided" in lines[5] and "job web place: slot 0 has no task" in lines[5]
    assert "job web healthy: ran 10s" in out
    assert "Running -> Completed" in out


async def test_the_check_names_job_events_that_break_the_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = [
        *job_events()[:6],
        JobScaled(at=t(3), job_id="ghost", count=2, reason="scaled from 1 to 2 by request"),
        JobDecided(at=t(3), job_id="web", action="dance", reason="why not"),
        JobRegistered(at=t(4), job=WEB1, version=0, reason="an older version again"),
        JobDecided(at=t(5), job_id="ghost", action="wait", reason="", task_id=A),
    ]
    await write_log(tmp_path / "log", events)
    status, out, _ = cli(capsys, str(tmp_path), "--check", "--json")
    assert status == 1
    found = [(v["seq"], v["kind"]) for v in json.loads(out)["violations"]]
    assert found == [
        (7, "unknown-job"),
        (8, "unknown-action"),
        (9, "job-version"),
        (10, "unknown-job"),
    ]
    status, out, _ = cli(capsys, str(tmp_path), "--check", "--job", "web")
    assert status == 1
    assert "seq 8" in out and "seq 9" in out and "seq 7" not in out
    assert "decision 'dance' is none of orc's" in out
    assert "version 0 registered after version 0" in out
    status, out, _ = cli(capsys, str(tmp_path), "--job", "web")
    assert "!! decision 'dance'" in out and "skipped; job web dance: why not" in out


def test_a_story_from_a_snapshot_knows_the_tasks_made_before_it() -> None:
    """After compaction the story starts from a snapshot's state: the tasks the job made
    before it are still its tasks, their later events still theirs."""
    everything = records()
    split = 20  # after the rolling update began: A, B and C were made before
    base = replay.state_of(everything[:split])
    whole = replay.job_story(everything, "web")
    later = replay.job_story(everything[split:], "web", copy.deepcopy(base))
    assert later.job == whole.job
    assert [t.id for t in later.tasks] == [A, B, C, D, E, F]
    assert [e.seq for e in later.events] == [e.seq for e in whole.events if e.seq > split]
    [b] = [t for t in later.tasks if t.id == B]
    assert b.replaced_by == D and b.state == "Completed"
