"""Every route of the manager and the worker, and every error, against a real in-process cluster."""

from __future__ import annotations

import sys
import uuid

import pytest
import trio

from tests.conftest import RunningCluster, wait_for_state

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _event(cmd: list[str], task_id: str | None = None, **task: object) -> dict:
    task_id = task_id or str(uuid.uuid4())
    return {"ID": task_id, "State": 2, "Task": {"ID": task_id, "Name": "t", "Cmd": cmd, **task}}


PY = sys.executable


async def test_task_that_exits_zero_completes(cluster: RunningCluster) -> None:
    r = await cluster.manager.post("/tasks", json=_event([PY, "-c", "print('hi')"]))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["Task"]["State"] == 0
    assert body["Task"]["Driver"] == "process"
    task = await wait_for_state(cluster.manager, body["Task"]["ID"], 3)
    assert task["ExitCode"] == 0
    assert task["Node"] == "worker-1"
    assert task["FinishedAt"] and task["StartsAt"] and task["CreatedAt"]
    assert task["StateName"] == "Completed"


async def test_task_that_exits_three_fails_with_code(cluster: RunningCluster) -> None:
    r = await cluster.manager.post("/tasks", json=_event([PY, "-c", "raise SystemExit(3)"]))
    task = await wait_for_state(cluster.manager, r.json()["Task"]["ID"], -1)
    assert task["ExitCode"] == 3
    assert "status 3" in task["Error"]


async def test_missing_program_fails_with_reason(cluster: RunningCluster) -> None:
    r = await cluster.manager.post("/tasks", json=_event(["/no/such/program"]))
    task = await wait_for_state(cluster.manager, r.json()["Task"]["ID"], -1)
    assert "/no/such/program" in task["Error"]


async def test_env_and_working_directory(cluster: RunningCluster) -> None:
    script = "import os; open('out.txt','w').write(os.environ['GREETING'])"
    r = await cluster.manager.post("/tasks", json=_event([PY, "-c", script], Env=["GREETING=hej"]))
    task_id = r.json()["Task"]["ID"]
    await wait_for_state(cluster.manager, task_id, 3)
    out = cluster.settings.data_dir / "tasks" / "worker-1" / task_id / "out.txt"
    assert out.read_text() == "hej"


async def test_delete_stops_a_long_task_and_it_ends_completed(cluster: RunningCluster) -> None:
    r = await cluster.manager.post("/tasks", json=_event(["sleep", "60"]))
    task_id = r.json()["Task"]["ID"]
    await wait_for_state(cluster.manager, task_id, 2)
    r = await cluster.manager.delete(f"/tasks/{task_id}")
    assert r.status_code == 204
    assert r.content == b""
    task = await wait_for_state(cluster.manager, task_id, 3)
    assert task["FinishedAt"]
    # Deleting again is harmless.
    assert (await cluster.manager.delete(f"/tasks/{task_id}")).status_code == 204


async def test_task_ignoring_sigterm_is_killed_after_grace(cluster: RunningCluster) -> None:
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        " open('ready', 'w').close(); time.sleep(60)"
    )
    r = await cluster.manager.post("/tasks", json=_event([PY, "-c", script]))
    task_id = r.json()["Task"]["ID"]
    await wait_for_state(cluster.manager, task_id, 2)
    ready = cluster.settings.data_dir / "tasks" / "worker-1" / task_id / "ready"
    with trio.fail_after(10):
        while not ready.exists():
            await trio.sleep(0.01)
    await cluster.manager.delete(f"/tasks/{task_id}")
    grace = cluster.settings.stop_grace
    task = await wait_for_state(cluster.manager, task_id, 3, timeout=grace + 5)
    assert task["ExitCode"] == 137


async def test_list_get_and_stats(cluster: RunningCluster) -> None:
    r = await cluster.manager.get("/tasks")
    assert r.status_code == 200 and r.json() == []
    r = await cluster.manager.post("/tasks", json=_event(["true"]))
    task_id = r.json()["Task"]["ID"]
    await wait_for_state(cluster.manager, task_id, 3)
    assert [t["ID"] for t in (await cluster.manager.get("/tasks")).json()] == [task_id]
    stats = (await cluster.manager.get("/stats")).json()
    assert stats["TaskCount"] == 1
    assert stats["Tasks"]["Completed"] == 1
    assert stats["Nodes"] == ["worker-1"]
    assert stats["LogSeq"] >= 5


async def test_idempotent_resubmit_and_conflict(cluster: RunningCluster) -> None:
    event = _event(["sleep", "30"])
    first = await cluster.manager.post("/tasks", json=event)
    again = await cluster.manager.post("/tasks", json=event)
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["Task"]["ID"] == event["Task"]["ID"]
    event["Task"]["Cmd"] = ["sleep", "31"]
    conflict = await cluster.manager.post("/tasks", json=event)
    assert conflict.status_code == 409
    assert "different spec" in conflict.json()["message"]
    await cluster.manager.delete(f"/tasks/{event['ID']}")


async def test_unplaceable_task_stays_pending_with_reason(cluster: RunningCluster) -> None:
    r = await cluster.manager.post(
        "/tasks", json={"State": 2, "Task": {"Name": "web", "Image": "strm/helloworld-http"}}
    )
    assert r.status_code == 201
    task_id = r.json()["Task"]["ID"]
    for _ in range(100):
        task = (await cluster.manager.get(f"/tasks/{task_id}")).json()
        if task["Error"]:
            break
    assert task["State"] == 0
    assert task["Error"] == "1 node: 1 lacks driver docker"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "needle"),
    [
        ("POST", "/tasks", b"{not json", 400, "malformed JSON"),
        ("POST", "/tasks", b"", 400, "body is empty"),
        (
            "POST",
            "/tasks",
            b'{"State": 2, "Task": {"Cmd": ["x"], "Memory": "1"}}',
            400,
            "Expected int, got str - at $.Task.Memory",
        ),
        (
            "POST",
            "/tasks",
            b'{"State": 2, "Task": {"Cmd": ["x"]}, "Extra": 1}',
            400,
            "unknown field Extra",
        ),
        (
            "POST",
            "/tasks",
            b'{"ID": "abc", "State": 2, "Task": {"Cmd": ["x"]}}',
            400,
            "Expected a UUID",
        ),
        ("POST", "/tasks", b"x" * 70000, 413, "too large"),
        ("GET", "/tasks/266592cd-960d-4091-981c-8c25c44b1018", None, 404, "no task"),
        ("GET", "/tasks/not-a-uuid", None, 400, "Expected a UUID"),
        ("DELETE", "/tasks/266592cd-960d-4091-981c-8c25c44b1018", None, 404, "no task"),
        ("PUT", "/tasks", b"{}", 405, "not allowed"),
        ("PATCH", "/stats", None, 405, "not allowed"),
        ("GET", "/nowhere", None, 404, "no route"),
    ],
)
async def test_manager_errors_are_json(
    cluster: RunningCluster, method: str, path: str, body: bytes | None, status: int, needle: str
) -> None:
    r = await cluster.manager.request(method, path, content=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert needle in r.json()["message"]


async def test_worker_routes(cluster: RunningCluster) -> None:
    r = await cluster.worker.get("/tasks")
    assert r.status_code == 200 and r.json() == []
    event = _event(["sleep", "30"])
    r = await cluster.worker.post("/tasks", json=event)
    assert r.status_code == 201
    tasks = (await cluster.worker.get("/tasks")).json()
    assert [t["ID"] for t in tasks] == [event["ID"]]
    r = await cluster.worker.delete(f"/tasks/{event['ID']}")
    assert r.status_code == 204
    r = await cluster.worker.delete(f"/tasks/{uuid.uuid4()}")
    assert r.status_code == 404
    assert (await cluster.worker.post("/tasks", content=b"[")).status_code == 400


async def test_worker_stats_have_the_seed_shape(cluster: RunningCluster) -> None:
    r = await cluster.worker.get("/stats")
    assert r.status_code == 200
    stats = r.json()
    assert set(stats) == {"MemStats", "DiskStats", "CPUStats", "LoadStats", "TaskCount"}
    assert stats["MemStats"]["mem_total"] > 0
    assert stats["MemStats"]["mem_available"] > 0
    assert stats["DiskStats"]["all"] >= stats["DiskStats"]["free"] > 0
    assert "freeInodes" in stats["DiskStats"]
    assert stats["CPUStats"]["idle"] > 0
    assert {"last1min", "last5min", "last15min"} <= set(stats["LoadStats"])
    assert stats["TaskCount"] == 0
