"""A worker's `POST /orders`, with real `orc manager` and `orc worker` processes: a burst of
tasks reaches the worker in fewer requests than tasks, each runs once; bad input is a 400 that
names the field, and none of a refused batch runs; the seed's worker routes still work; orders
for a worker that died are dropped once it is down, and it is followed to its new address; a
worker restarted since a task ended still finds its output."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from tests.conftest import ROOT, OrcProcess, free_port, orc_env
from tests.e2e.test_cluster_processes import TTL, Cluster


def _worker_url(c: Cluster, i: int = 0) -> str:
    args = c.workers[i].args
    return f"http://127.0.0.1:{args[args.index('--port') + 1]}"


@pytest.fixture
def one_worker(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, workers=1)
    c.manager.start()
    c.workers[0].start()
    c.wait(lambda: c.nodes().get("w1", {}).get("State") == "up", message="w1 up")
    yield c
    c.stop()


@pytest.fixture
def lone_worker(tmp_path: Path) -> Iterator[str]:
    """An `orc worker` with no manager: its routes, as a curl user meets them."""
    port = free_port()
    env = {
        **os.environ,
        **orc_env(tmp_path / "w", ORC_ORDERS_MAX_BODY="65536"),
        "PYTHONPATH": str(ROOT),
    }
    args = ["worker", "--port", str(port), "--host", "127.0.0.1", "--name", "solo"]
    worker = OrcProcess([*args, "--data-dir", str(tmp_path / "w")], env, "Starting Orc worker")
    worker.start()
    yield f"http://127.0.0.1:{port}"
    worker.kill()


def _run(task_id: str, cmd: list[str], **extra: object) -> dict[str, object]:
    return {"Type": "RunTask", "Task": {"ID": task_id, "Cmd": cmd, "Driver": "process", **extra}}


async def test_a_burst_reaches_the_worker_in_fewer_requests_than_tasks(one_worker: Cluster) -> None:
    c = one_worker
    burst = 150
    ids = [str(uuid.uuid4()) for _ in range(burst)]

    async def submit(client: httpx.AsyncClient, task_id: str) -> None:
        task = {"ID": task_id, "Name": "b", "Cmd": ["true"]}
        r = await client.post("/tasks", json={"ID": task_id, "State": 2, "Task": task})
        assert r.status_code == 201, r.text

    limits = httpx.Limits(max_connections=16)
    async with (
        httpx.AsyncClient(base_url=c.url, timeout=10, limits=limits) as client,
        trio.open_nursery() as nursery,
    ):
        for task_id in ids:
            nursery.start_soon(submit, client, task_id)
    c.wait(lambda: all(c.tasks()[i]["State"] == 3 for i in ids), 30, "every task of the burst ran")
    taken = httpx.get(f"{_worker_url(c)}/orders", timeout=10).json()
    # every RunTask, and a Reconcile per (re)connection of the proxy's update stream
    assert taken["Orders"] >= burst, taken
    assert taken["Batches"] < burst // 2, taken
    worker_tasks = httpx.get(f"{_worker_url(c)}/tasks", timeout=10).json()
    assert sorted(t["ID"] for t in worker_tasks) == sorted(ids)  # each once


async def test_bad_orders_get_400_naming_the_field_and_none_of_the_batch_runs(
    lone_worker: str,
) -> None:
    good = str(uuid.uuid4())
    cases: list[tuple[bytes | dict[str, object], str]] = [
        (b"", "request body is empty"),
        (b"{", "malformed JSON"),
        (b"[]", "Expected object, got array"),
        ({"Orders": [], "Extra": 1}, "unknown field Extra"),
        ({"Orders": {}}, "Expected array, got object - at $.Orders"),
        ({"Orders": [{"Type": "Launch"}]}, "Invalid value 'Launch' - at $.Orders[0].Type"),
        ({"Orders": [{"TaskID": good}]}, "missing required field Type - at $.Orders[0]"),
        (
            {"Orders": [{"Type": "StopTask", "TaskID": good, "Zap": 1}]},
            "unknown field Zap - at $.Orders[0]",
        ),
        (
            {"Orders": [{"Type": "StopTask", "TaskID": "abc"}]},
            "Expected a UUID, got 'abc' - at $.Orders[0].TaskID",
        ),
        (
            {"Orders": [_run(good, ["true"], Memory="x")]},
            "Expected int, got str - at $.Orders[0].Task.Memory",
        ),
        (
            {"Orders": [_run(good, ["true"]), _run(good, ["true"], Memory=-1)]},
            "Orders[1].Task.Memory: must be a whole number of bytes, 0 to 1125899906842624",
        ),
        (
            {"Orders": [_run(good, ["true"]), {"Type": "RunTask", "Task": {"Cmd": ["true"]}}]},
            "Expected a UUID, got '' - at $.Orders[1].Task.ID",
        ),
        (
            {"Orders": [{"Type": "Reconcile", "Tasks": [{"ID": good, "Cmd": ["true"]}, {}]}]},
            "Expected a UUID, got '' - at $.Orders[0].Tasks[1].ID",
        ),
        (
            {"Orders": [{"Type": "Reconcile", "Tasks": [{"ID": good, "Env": ["1=x"]}]}]},
            "Orders[0].Tasks[0].Env[0]: must be 'NAME=value' (NAME of letters, digits and _)",
        ),
    ]
    async with httpx.AsyncClient(base_url=lone_worker, timeout=10) as client:
        for body, message in cases:
            if isinstance(body, bytes):
                r = await client.post("/orders", content=body)
            else:
                r = await client.post("/orders", json=body)
            assert r.status_code == 400, (body, r.text)
            assert message in r.json()["message"], (body, r.text)
        r = await client.post("/orders", content=b'{"Orders": [' + b'{"Type": "StopTask"},' * 9000)
        assert r.status_code == 413 and "too large" in r.json()["message"]
        r = await client.put("/orders", json={"Orders": []})
        assert r.status_code == 405 and "not allowed" in r.json()["message"]
        # Nothing of a refused batch ran, not even its good orders.
        assert (await client.get("/tasks")).json() == []
        assert (await client.get("/orders")).json() == {"Batches": 0, "Orders": 0}


async def test_orders_answer_per_order_and_the_seed_routes_still_work(lone_worker: str) -> None:
    runs, unknown, seed = (str(uuid.uuid4()) for _ in range(3))
    async with httpx.AsyncClient(base_url=lone_worker, timeout=10) as client:
        body = {"Orders": [_run(runs, ["sleep", "30"]), {"Type": "StopTask", "TaskID": unknown}]}
        r = await client.post("/orders", json=body)
        assert r.status_code == 200, r.text
        assert r.json() == {
            "Results": [
                {"Status": 201, "Message": ""},
                {"Status": 404, "Message": f"no task with ID {unknown} on this worker"},
            ]
        }
        r = await client.post("/orders", json={"Orders": [{"Type": "StopTask", "TaskID": runs}]})
        assert r.json() == {"Results": [{"Status": 204, "Message": ""}]}
        assert (await client.get("/orders")).json() == {"Batches": 2, "Orders": 3}

        # The seed's worker routes, unchanged.
        event = {"ID": seed, "State": 2, "Task": {"ID": seed, "Name": "s", "Cmd": ["sleep", "30"]}}
        r = await client.post("/tasks", json=event)
        assert r.status_code == 201 and r.json()["Task"]["ID"] == seed
        with trio.fail_after(10):
            while True:
                tasks = {t["ID"]: t for t in (await client.get("/tasks")).json()}
                if tasks.get(seed, {}).get("State") == 2:
                    break
                await trio.sleep(0.05)
        assert (await client.get("/stats")).json()["TaskCount"] == 1
        assert (await client.delete(f"/tasks/{seed}")).status_code == 204
        r = await client.delete(f"/tasks/{uuid.uuid4()}")
        assert r.status_code == 404 and "no task with ID" in r.json()["message"]
        r = await client.get(f"/tasks/{seed}/logs", params={"driver": "vm"})
        assert r.status_code == 400 and "at the query driver" in r.json()["message"]


def test_orders_for_a_lost_worker_are_dropped_once_it_is_down_and_it_is_followed_after(
    one_worker: Cluster,
) -> None:
    c = one_worker
    c.workers[0].kill()
    # Placed on w1 before it is known to be down: its RunTask cannot be delivered.
    stranded = c.post(["sleep", "60"]).json()["ID"]
    c.wait(lambda: c.nodes()["w1"]["State"] == "down", 5 * TTL, "w1 down")
    c.wait(lambda: c.tasks()[stranded]["State"] == -1, message="its task failed with the node")

    moved = c._worker(0)  # same name and data dir, a new port
    c.workers[0] = moved
    moved.start()
    c.wait(lambda: c.nodes()["w1"]["State"] == "up", message="w1 up again")
    after = c.post(["true"]).json()["ID"]
    c.wait(lambda: c.tasks()[after]["State"] == 3, message="the proxy is not stuck retrying")
    assert stranded not in c.pids(), "the dropped order never ran"


def test_logs_of_a_task_the_restarted_worker_forgot(one_worker: Cluster) -> None:
    c = one_worker
    task_id = c.post(["sh", "-c", "echo out; echo err >&2"]).json()["ID"]
    c.wait(lambda: c.tasks()[task_id]["State"] == 3, message="it ran")
    c.workers[0].kill()
    c.workers[0].start()  # same port and data dir: it no longer lists the ended task
    c.wait(lambda: c.nodes()["w1"]["State"] == "up", message="w1 up")
    r = httpx.get(f"{_worker_url(c)}/tasks/{task_id}/logs", timeout=10)
    assert r.status_code == 404  # the worker alone does not know it any more
    r = httpx.get(f"{c.url}/tasks/{task_id}/logs", timeout=10)
    assert r.status_code == 200 and r.json() == {"Stdout": "out\n", "Stderr": "err\n"}, r.text
