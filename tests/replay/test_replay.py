"""`orc replay`: golden output on a known log, the check, every bad input, a real run's log."""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from pathlib import Path

import msgspec
import pytest
import trio

from eventlog import EventLog
from orc.cmd.main import main
from orc.core.events import (
    AnyEvent,
    NodeJoined,
    TaskExited,
    TaskFailed,
    TaskScheduled,
    TaskStarted,
    TaskStopRequested,
    TaskSubmitted,
    TaskUnplaced,
    to_wire,
)
from orc.core.model import NodeInfo, State, Task
from orc.core.state import ClusterState
from orc.replay import story as replay
from tests.conftest import RunningCluster, wait_for_state

GOLDEN = Path(__file__).parent / "golden"
ROOT = Path(__file__).resolve().parents[2]
UPDATE = os.environ.get("ORC_UPDATE_GOLDEN") == "1"  # rewrite the golden files from this run

WEB = "aaaaaaaa-0000-4000-8000-000000000001"
JOB = "bbbbbbbb-0000-4000-8000-000000000002"
FLAKY = "cccccccc-0000-4000-8000-000000000003"
NEVER = "dddddddd-0000-4000-8000-000000000004"


def t(seconds: float) -> str:
    """A fixed time, `seconds` after 2026-11-28 12:00:00 UTC."""
    whole, frac = divmod(round(seconds * 1000), 1000)
    minutes, sec = divmod(whole, 60)
    return f"2026-11-28T12:{minutes:02d}:{sec:02d}.{frac:03d}000+00:00"


def task(task_id: str, name: str, cmd: list[str], at: str) -> Task:
    return Task(id=task_id, name=name, cmd=cmd, driver="process", created_at=at, updated_at=at)


def known_events() -> list[AnyEvent]:
    """A small cluster's afternoon: a service stopped on request, a job that exits 0, a task
    that fails and is restarted, and one that never finds a node and is cancelled."""
    node = NodeInfo(
        name="worker-1", address="127.0.0.1:8888", drivers=("process",), cores=2, memory=8 << 30
    )
    return [
        NodeJoined(at=t(0), node=node),
        TaskSubmitted(at=t(1), task=task(WEB, "web", ["httpd", "-f"], t(1))),
        TaskScheduled(at=t(1.004), task_id=WEB, node="worker-1"),
        TaskStarted(at=t(1.25), task_id=WEB, node="worker-1", container_id="pid-4242"),
        TaskSubmitted(at=t(2), task=task(JOB, "job", ["sleep", "3"], t(2))),
        TaskScheduled(at=t(2.003), task_id=JOB, node="worker-1"),
        TaskStarted(at=t(2.1), task_id=JOB, node="worker-1"),
        TaskSubmitted(at=t(3), task=task(FLAKY, "flaky", ["false"], t(3))),
        TaskScheduled(at=t(3.002), task_id=FLAKY, node="worker-1"),
        TaskStarted(at=t(3.05), task_id=FLAKY, node="worker-1"),
        TaskExited(at=t(3.5), task_id=FLAKY, node="worker-1", exit_code=1, error="exit status 1"),
        TaskSubmitted(at=t(4), task=Task(id=NEVER, name="big", image="busybox", cpu=64.0)),
        TaskUnplaced(at=t(4.001), task_id=NEVER, reason="no node has 64 CPUs free"),
        TaskExited(at=t(5.1), task_id=JOB, node="worker-1", exit_code=0),
        TaskScheduled(at=t(6), task_id=FLAKY, node="worker-1"),
        TaskStarted(at=t(6.2), task_id=FLAKY, node="worker-1"),
        TaskStopRequested(at=t(70), task_id=WEB),
        TaskExited(at=t(72.5), task_id=WEB, node="worker-1", exit_code=143, stopped=True),
        TaskStopRequested(at=t(80), task_id=NEVER),
    ]


async def write_log(directory: Path, events: list[AnyEvent], batch: int = 5) -> None:
    async with await EventLog.open(directory, AnyEvent) as log:
        for i in range(0, len(events), batch):
            await log.append_batch(events[i : i + batch])


@pytest.fixture
async def known_log(tmp_path: Path) -> Path:
    """A data dir whose log holds `known_events()`."""
    await write_log(tmp_path / "data" / "log", known_events())
    return tmp_path / "data"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["replay", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"output differs from {path} (ORC_UPDATE_GOLDEN=1 rewrites)"


# -- golden output ------------------------------------------------------------------------------


async def test_timeline_golden(known_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, str(known_log))
    assert (status, err) == (0, "")
    golden("replay_timeline.txt", out)


async def test_log_dir_itself_works_the_same(
    known_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, str(known_log)) == run(capsys, str(known_log / "log"))


async def test_task_history_golden(known_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, str(known_log), "--task", FLAKY)
    assert (status, err) == (0, "")
    golden("replay_task_flaky.txt", out)
    status, out, _ = run(capsys, str(known_log), "--task", "aaaa")  # a prefix names it
    assert status == 0
    golden("replay_task_web.txt", out)


async def test_state_at_seq_and_time_golden(
    known_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, str(known_log), "--at", "13")
    assert (status, err) == (0, "")
    golden("replay_at_13.txt", out)
    by_time = run(capsys, str(known_log), "--at", "2026-11-28T12:00:04.500Z")
    assert by_time == (0, out, "")  # seq 13 is the last event at or before 12:00:04.5


async def test_json_documents(known_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, str(known_log), "--json")
    doc = json.loads(out)
    assert (status, doc["first_seq"], doc["last_seq"], doc["torn_tail"]) == (0, 1, 19, None)
    assert doc["events"][2] == {
        "seq": 3,
        "at": t(1.004),
        "event": "scheduled",
        "task": WEB,
        "from": "Pending",
        "to": "Scheduled",
        "node": "worker-1",
        "reason": "",
        "violation": None,
    }
    doc = json.loads(run(capsys, str(known_log), "--json", "--task", FLAKY)[1])
    assert doc["task"]["StateName"] == "Running"
    assert [p["state"] for p in doc["periods"]] == [
        "Pending", "Scheduled", "Running", "Failed", "Scheduled", "Running"
    ]  # fmt: skip
    assert doc["periods"][-1]["open"] is True
    assert doc["totals"]["Failed"] == pytest.approx(2.5)
    doc = json.loads(run(capsys, str(known_log), "--json", "--at", "13")[1])
    assert (doc["seq"], len(doc["tasks"]), doc["nodes"][0]["Name"]) == (13, 4, "worker-1")
    doc = json.loads(run(capsys, str(known_log), "--json", "--check")[1])
    assert doc["ok"] is True and doc["violations"] == [] and doc["events"] == 19


def test_durations() -> None:
    from orc.replay.render import duration

    cases = {0.0123: "12ms", 1.25: "1.2s", 59.94: "59.9s", 125: "2m05s", 3720: "1h02m"}
    for seconds, text in cases.items():
        assert duration(seconds) == text


# -- --check ------------------------------------------------------------------------------------


async def test_check_ok(known_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, str(known_log), "--check")
    assert (status, err) == (0, "")
    assert out == (
        "OK: 19 events, 4 tasks, 1 nodes: every transition legal, every invariant holds\n"
    )


async def test_check_lists_planted_violations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Records the manager would never write, appended straight to the log."""
    planted = [
        # 20: WEB is Completed; starting it again is illegal (and after a terminal state)
        TaskStarted(at=t(90), task_id=WEB, node="worker-1"),
        # 21: JOB is Completed: a restart from Completed is illegal
        TaskScheduled(at=t(91), task_id=JOB, node="worker-1"),
        # 22: FLAKY runs on worker-1; an exit reported by another node
        TaskExited(at=t(92), task_id=FLAKY, node="worker-9", exit_code=0),
        # 23: a task nobody submitted
        TaskFailed(at=t(93), task_id="no-such-task", error="lost"),
        # 24: the legal exit, so the check goes on after the bad records
        TaskExited(at=t(94), task_id=FLAKY, node="worker-1", exit_code=0),
        # 25: FLAKY is Completed now: a stop request after the end
        TaskStopRequested(at=t(95), task_id=FLAKY),
    ]
    await write_log(tmp_path / "log", known_events() + planted)
    status, out, err = run(capsys, str(tmp_path), "--check")
    assert (status, err) == (1, "")
    lines = out.splitlines()
    listed = [line.split()[1] for line in lines if line.startswith("seq ")]
    assert listed == ["20", "21", "22", "23", "25"]
    assert "after-terminal: started after the task ended Completed" in out
    assert "illegal-transition: illegal transition Completed -> Scheduled" in out
    assert "wrong-node: exited on node 'worker-9' but placed on 'worker-1'" in out
    assert "unknown-task: event for task no-such-task" in out
    # each offending record is printed in full, as JSON, under its line, as the wire shows it
    printed = json.loads(lines[lines.index(next(x for x in lines if x.startswith("seq 23"))) + 1])
    assert printed == msgspec.to_builtins(to_wire(planted[3]))
    assert printed == {"Type": "TaskFailed", "TaskID": "no-such-task", "Error": "lost", "At": t(93)}
    assert lines[-1] == "5 records broke the rules, in 25 events"

    status, out, _ = run(capsys, str(tmp_path), "--check", "--json")
    doc = json.loads(out)
    assert status == 1 and doc["ok"] is False
    assert [(v["seq"], v["kind"]) for v in doc["violations"]] == [
        (20, "after-terminal"),
        (21, "illegal-transition"),
        (22, "wrong-node"),
        (23, "unknown-task"),
        (25, "after-terminal"),
    ]
    # the timeline shows them too, marked and skipped
    status, out, _ = run(capsys, str(tmp_path))
    assert status == 0
    assert "Completed -> Scheduled" in out and "!! illegal transition" in out
    # --task narrows the check to one task's records
    status, out, _ = run(capsys, str(tmp_path), "--check", "--task", JOB)
    assert status == 1 and [x.split()[1] for x in out.splitlines() if x[:4] == "seq "] == ["21"]


def test_check_catches_illegal_transition_from_apply_and_restart_counts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pure: an illegal transition that only `apply` knows about, and a count going back."""
    node = NodeInfo(name="n", address="a", drivers=("process",))
    records: list[replay.Record] = [
        (1, NodeJoined(at=t(0), node=node)),
        (2, TaskSubmitted(at=t(1), task=Task(id="x", restart_count=2))),
        (3, TaskStarted(at=t(2), task_id="x", node="")),  # Pending -> Running
        (4, TaskSubmitted(at=t(3), task=Task(id="x", restart_count=2))),  # submitted twice
        (5, TaskUnplaced(at=t(4), task_id="x", reason="r")),  # fine: the check went on
    ]
    result = replay.check(records)
    assert [(v.seq, v.kind) for v in result.violations] == [
        (3, "illegal-transition"),
        (4, "duplicate-task"),
    ]
    assert result.violations[0].message == "illegal transition Pending -> Running"

    # a restart count going back: only a wrong `apply` could do it, so plant one
    real_apply = replay.apply

    def lossy_apply(state: ClusterState, event: AnyEvent) -> ClusterState:
        real_apply(state, event)
        if isinstance(event, TaskUnplaced):
            state.tasks["x"] = msgspec.structs.replace(state.tasks["x"], restart_count=0)
        return state

    monkeypatch.setattr(replay, "apply", lossy_apply)
    result = replay.check(records)
    assert [(v.seq, v.kind) for v in result.violations] == [
        (3, "illegal-transition"),
        (4, "duplicate-task"),
        (5, "restart-count"),
    ]
    assert result.violations[-1].message == "restart count went back from 2 to 0"


# -- bad input: one line on stderr, status 2 ----------------------------------------------------


def bad(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    status, out, err = run(capsys, *argv)
    assert status == 2, (out, err)
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("orc replay: "), err
    assert "Traceback" not in err
    return err


async def test_bad_inputs(known_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert "no such directory" in bad(capsys, str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    assert "no event log in" in bad(capsys, str(tmp_path / "empty"))
    (tmp_path / "afile").write_text("hello\n")
    assert "is not a directory" in bad(capsys, str(tmp_path / "afile"))
    assert "beyond the end of the log (last seq 19)" in bad(capsys, str(known_log), "--at", "20")
    err = bad(capsys, str(known_log), "--at", "2026-11-28T13:00:00Z")
    assert "beyond the end of the log" in err
    assert "before the first event" in bad(capsys, str(known_log), "--at", "2020-01-01T00:00:00Z")
    assert "neither a sequence number nor" in bad(capsys, str(known_log), "--at", "yesterday")
    assert "no task 'nope' in the log (4 tasks)" in bad(capsys, str(known_log), "--task", "nope")


async def test_a_file_that_is_not_an_orc_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "00000000000000000001.seg").write_bytes(b"PK\x03\x04 a zip file" * 10)
    err = bad(capsys, str(tmp_path))
    assert "00000000000000000001.seg at offset 0: not an event log segment" in err


async def test_a_log_of_other_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    class Other(msgspec.Struct, tag=True):
        n: int

    async with await EventLog.open(tmp_path / "log", Other) as log:
        await log.append(Other(1))
    assert "not orc events" in bad(capsys, str(tmp_path))


async def test_corruption_before_the_tail(
    known_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    segment = next((known_log / "log").glob("*.seg"))
    data = bytearray(segment.read_bytes())
    data[40] ^= 0xFF
    segment.write_bytes(bytes(data))
    err = bad(capsys, str(known_log))
    assert f"{segment} at offset 8: checksum mismatch" in err


async def test_an_unreadable_segment(known_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    segment = next((known_log / "log").glob("*.seg"))
    if os.geteuid() != 0:
        segment.chmod(0)
        assert "cannot read" in bad(capsys, str(known_log))
        segment.chmod(0o644)
    segment.unlink()
    segment.mkdir()  # unreadable as a file, whoever runs the test
    err = bad(capsys, str(known_log))
    assert f"cannot read {segment}: Is a directory" in err


async def test_torn_tail_is_noted_and_left_alone(
    known_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    segment = next((known_log / "log").glob("*.seg"))
    with segment.open("ab") as f:
        f.write(b"\xc1LOG\x00\x01")  # a crash in the middle of a frame header
    before = segment.read_bytes()
    status, out, err = run(capsys, str(known_log), "--check")
    assert status == 0 and out.startswith("OK: 19 events")
    assert "incomplete record at offset" in err and err.count("\n") == 1
    assert segment.read_bytes() == before


async def test_replay_while_orc_holds_the_log(
    known_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with await EventLog.open(known_log / "log", AnyEvent):  # holds the lock
        status, out, _ = run(capsys, str(known_log), "--check")
    assert status == 0 and out.startswith("OK: 19 events")


async def test_default_data_dir_and_subprocess(known_log: Path, tmp_path: Path) -> None:
    """As a user runs it: `python -m orc replay`, the data dir from ORC_DATA_DIR."""
    env = {**os.environ, "ORC_DATA_DIR": str(known_log), "PYTHONPATH": str(ROOT)}
    proc = await trio.run_process(
        [sys.executable, "-m", "orc", "replay", "--task", JOB],
        env=env,
        cwd=tmp_path,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert b"now Completed on worker-1, 0 restarts, exit 0" in proc.stdout
    shutil.rmtree(known_log / "log")
    proc = await trio.run_process(
        [sys.executable, "-m", "orc", "replay"],
        env=env,
        cwd=tmp_path,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.decode() == f"orc replay: no event log in {known_log} (neither"
        f" {known_log / 'log'} nor {known_log} holds .seg files)\n"
    )


# -- a real run's log ---------------------------------------------------------------------------


async def test_log_of_a_real_run_passes_check(
    cluster: RunningCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = []
    for cmd in (["true"], ["false"], ["sleep", "30"]):
        task_id = str(uuid.uuid4())
        body = {"ID": task_id, "State": 2, "Task": {"ID": task_id, "Name": cmd[0], "Cmd": cmd}}
        r = await cluster.manager.post("/tasks", json=body)
        assert r.status_code == 201, r.text
        ids.append(task_id)
    await wait_for_state(cluster.manager, ids[0], State.COMPLETED)
    await wait_for_state(cluster.manager, ids[1], State.FAILED)
    await wait_for_state(cluster.manager, ids[2], State.RUNNING)
    assert (await cluster.manager.delete(f"/tasks/{ids[2]}")).status_code == 204
    await wait_for_state(cluster.manager, ids[2], State.COMPLETED)

    data_dir = str(cluster.settings.data_dir)
    # while the cluster runs and holds the log
    status, out, err = await trio.to_thread.run_sync(run, capsys, data_dir, "--check")
    assert status == 0, out + err
    assert out.startswith("OK: ") and " 3 tasks, 1 nodes" in out
    status, out, _ = await trio.to_thread.run_sync(run, capsys, data_dir, "--task", ids[1])
    assert status == 0 and "Running -> Failed" in out and "exit 1" in out
    status, out, _ = await trio.to_thread.run_sync(run, capsys, data_dir)
    assert status == 0 and out.count("Pending -> Scheduled") == 3


def test_events_about_no_task_are_not_task_violations(monkeypatch: pytest.MonkeyPatch) -> None:
    """A node-level event type added later is applied, named and never taken for a task's."""

    class NodeNoted(NodeJoined, frozen=True):
        why: str = ""

    real_apply = replay.apply

    def apply(state: ClusterState, event: AnyEvent) -> ClusterState:
        return state if isinstance(event, NodeNoted) else real_apply(state, event)

    monkeypatch.setattr(replay, "apply", apply)
    node = NodeInfo(name="n", address="a", drivers=())
    records: list[replay.Record] = [(1, NodeNoted(at=t(0), node=node, why="x"))]
    row = replay.timeline(records)[0]
    assert (row.event, row.task, row.node, row.violation) == ("node-noted", None, "n", None)
    assert replay.check(records).ok


async def test_compacted_log_starts_from_the_snapshot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Compaction removed events 1-10; a snapshot at seq 10 stands for them."""
    from orc.core.snapshot import encode_state

    events = known_events()
    directory = tmp_path / "log"
    async with await EventLog.open(directory, AnyEvent, segment_bytes=100) as log:
        for i in range(0, len(events), 5):  # one segment per batch
            await log.append_batch(events[i : i + 5])
        state = replay.state_of(list(enumerate(events[:10], 1)))
        await log.save_snapshot(10, encode_state(state))
        assert await log.compact(11) == 2
        assert log.first_seq == 11
    status, out, err = run(capsys, str(tmp_path), "--check")
    assert status == 0 and out.startswith("OK: 9 events, 4 tasks, 1 nodes"), out
    assert "events 1-10 were compacted away" in err
    status, out, _ = run(capsys, str(tmp_path), "--task", FLAKY)
    assert status == 0
    assert "Running -> Failed" in out and "Failed -> Scheduled" in out  # from the snapshot
    doc = json.loads(run(capsys, str(tmp_path), "--json", "--at", "13")[1])
    assert (doc["first_seq"], doc["snapshot_seq"], len(doc["tasks"])) == (11, 10, 4)
    assert "before the start of the log" in bad(capsys, str(tmp_path), "--at", "5")

    for snap in directory.glob("*.snap"):
        snap.unlink()
    assert "compacted away) and no intact snapshot covers them" in bad(capsys, str(tmp_path))
