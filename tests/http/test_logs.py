"""GET /tasks/{id}/logs for the process driver, on the worker and through the manager."""

from __future__ import annotations

import uuid

from tests.conftest import RunningCluster, wait_for_state


async def test_process_task_logs_on_worker_and_manager(cluster: RunningCluster) -> None:
    task_id = str(uuid.uuid4())
    cmd = ["/bin/sh", "-c", "echo out-line; echo err-line >&2"]
    body = {"ID": task_id, "State": 2, "Task": {"ID": task_id, "Name": "logs", "Cmd": cmd}}
    assert (await cluster.manager.post("/tasks", json=body)).status_code == 201
    await wait_for_state(cluster.manager, task_id, 3)

    expected = {"Stdout": "out-line\n", "Stderr": "err-line\n"}
    r = await cluster.manager.get(f"/tasks/{task_id}/logs")
    assert r.status_code == 200 and r.json() == expected
    r = await cluster.worker.get(f"/tasks/{task_id}/logs")
    assert r.status_code == 200 and r.json() == expected


async def test_logs_of_unknown_or_malformed_ids(cluster: RunningCluster) -> None:
    unknown = str(uuid.uuid4())
    for client in (cluster.manager, cluster.worker):
        r = await client.get(f"/tasks/{unknown}/logs")
        assert r.status_code == 404 and unknown in r.json()["message"]
        r = await client.get("/tasks/not-a-uuid/logs")
        assert r.status_code == 400 and "Expected a UUID" in r.json()["message"]


async def test_logs_of_a_task_that_never_ran_are_empty(cluster: RunningCluster) -> None:
    body = {"State": 2, "Task": {"Name": "waits", "Image": "strm/helloworld-http"}}
    r = await cluster.manager.post("/tasks", json=body)
    task_id = r.json()["Task"]["ID"]
    r = await cluster.manager.get(f"/tasks/{task_id}/logs")
    assert r.status_code == 200 and r.json() == {"Stdout": "", "Stderr": ""}
