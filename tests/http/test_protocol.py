"""HTTP done right: `Allow` on 405, no body type on 204, keep-alive connections kept."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, OrcProcess, RunningCluster, free_port, orc_env, wait_for_state


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/tasks", {"GET", "POST"}),
        ("PATCH", "/stats", {"GET"}),
        # a fixed ID: pytest-xdist needs every worker to collect the same test names
        ("POST", "/tasks/9f095d37-b709-4e32-95c3-fa018b43ae2f", {"GET", "DELETE"}),
    ],
)
async def test_405_says_which_methods_are_allowed(
    cluster: RunningCluster, method: str, path: str, allowed: set[str]
) -> None:
    r = await cluster.manager.request(method, path)
    assert r.status_code == 405
    assert {m.strip() for m in r.headers["allow"].split(",")} >= allowed
    assert "not allowed" in r.json()["message"]


async def test_204_has_no_body_type(cluster: RunningCluster) -> None:
    task_id = str(uuid.uuid4())
    body = {
        "ID": task_id,
        "State": 2,
        "Task": {"Cmd": [sys.executable, "-c", "import time; time.sleep(30)"]},
    }
    assert (await cluster.manager.post("/tasks", json=body)).status_code == 201
    await wait_for_state(cluster.manager, task_id, 2)
    r = await cluster.manager.delete(f"/tasks/{task_id}")
    assert r.status_code == 204
    assert r.content == b""
    assert "content-type" not in r.headers
    await wait_for_state(cluster.manager, task_id, 3)

    worker_task = str(uuid.uuid4())
    body = {"ID": worker_task, "State": 2, "Task": {"Cmd": ["sleep", "30"]}}
    assert (await cluster.worker.post("/tasks", json=body)).status_code == 201
    r = await cluster.worker.delete(f"/tasks/{worker_task}")
    assert r.status_code == 204
    assert "content-type" not in r.headers


async def test_keep_alive_connection_outlives_a_thousand_requests(cluster: RunningCluster) -> None:
    """Hypercorn's default closes a connection after 1,000 requests (`Connection: close` on the
    last answer); orc's servers keep it for as long as the client wants."""
    for i in range(1100):
        r = await cluster.manager.get("/stats")
        assert r.status_code == 200
        assert r.headers.get("connection", "").lower() != "close", f"closed after {i + 1}"


async def test_a_connection_survives_answers_given_before_the_body_was_read(
    tmp_path: Path,
) -> None:
    """A 405 or 404 from routing, or a 413, is answered before the body is read; the body's
    rest must not be left in the connection, or the next request on it hangs. (A separate
    process, so that the body arrives after the headers as it does from a real client.)"""
    port = free_port()
    env = {**os.environ, **orc_env(tmp_path / "w"), "PYTHONPATH": str(ROOT)}
    args = ["worker", "--port", str(port), "--host", "127.0.0.1", "--data-dir", str(tmp_path)]
    worker = OrcProcess(args, env, "Starting Orc worker")
    worker.start()
    big = b'{"State": 2, "Task": {"Cmd": [' + b'"x",' * 40_000 + b'"x"]}}'  # over ORC_MAX_BODY
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=3) as client:
            for _ in range(80):
                assert (await client.post("/tasks", content=big)).status_code == 413
                assert (await client.put("/orders", json={"Orders": []})).status_code == 405
                assert (await client.post("/nowhere", json={"x": "y" * 3000})).status_code == 404
                assert (await client.get("/stats")).status_code == 200
    finally:
        worker.kill()
