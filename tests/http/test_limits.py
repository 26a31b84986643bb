"""Load limits say no instead of falling over: too many tasks waiting (429), too many held
(503), too many event streams (503), each with Retry-After; and orc serves on."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import httpx
import trio

from tests.conftest import make_settings, running_cluster, wait_for_state


def _docker(task_id: str) -> dict[str, object]:
    """A docker task: no engine answers in these tests, so it waits, Pending."""
    return {"ID": task_id, "State": 2, "Task": {"ID": task_id, "Image": "busybox"}}


def _quick(task_id: str) -> dict[str, object]:
    return {"ID": task_id, "State": 2, "Task": {"ID": task_id, "Cmd": [sys.executable, "-c", ""]}}


async def test_too_many_waiting_tasks_get_429_with_retry_after(tmp_path: Path) -> None:
    async with running_cluster(make_settings(tmp_path / "d", ORC_MAX_PENDING="3")) as c:
        waiting = [str(uuid.uuid4()) for _ in range(3)]
        for task_id in waiting:
            assert (await c.manager.post("/tasks", json=_docker(task_id))).status_code == 201
        r = await c.manager.post("/tasks", json=_docker(str(uuid.uuid4())))
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1"
        assert "ORC_MAX_PENDING" in r.json()["message"]
        # the same submission again is still answered as it is (idempotent), not refused
        assert (await c.manager.post("/tasks", json=_docker(waiting[0]))).status_code == 200
        # a task that does not wait is not held back by the queue... once there is room
        assert (await c.manager.delete(f"/tasks/{waiting[0]}")).status_code == 204
        await wait_for_state(c.manager, waiting[0], -1)
        r = await c.manager.post("/tasks", json=_quick(str(uuid.uuid4())))
        assert r.status_code == 201, r.text


async def test_too_many_held_tasks_get_503_with_retry_after(tmp_path: Path) -> None:
    async with running_cluster(make_settings(tmp_path / "d", ORC_MAX_TASKS="4")) as c:
        for _ in range(4):
            task_id = str(uuid.uuid4())
            assert (await c.manager.post("/tasks", json=_quick(task_id))).status_code == 201
            await wait_for_state(c.manager, task_id, 3)
        r = await c.manager.post("/tasks", json=_quick(str(uuid.uuid4())))
        assert r.status_code == 503
        assert r.headers["retry-after"] == "60"
        assert "ORC_MAX_TASKS" in r.json()["message"]
        assert (await c.manager.get("/stats")).json()["TaskCount"] == 4


async def test_jobs_are_held_to_the_task_limit_too(tmp_path: Path) -> None:
    """A job, or a scale, that would take orc past ORC_MAX_TASKS is refused as a task is
    (503, Retry-After), naming how many it holds and how many the job would add; a job that
    fits is made, and scaling down always is."""
    sleep = [sys.executable, "-c", "import time; time.sleep(30)"]
    async with running_cluster(make_settings(tmp_path / "d", ORC_MAX_TASKS="5")) as c:
        m = c.manager
        r = await m.post("/jobs", json={"ID": "a", "Count": 3, "Task": {"Cmd": sleep}})
        assert r.status_code == 201, r.text
        with trio.fail_after(10):
            while (await m.get("/stats")).json()["TaskCount"] < 3:
                await trio.sleep(0.05)
        r = await m.post("/jobs", json={"ID": "b", "Count": 3, "Task": {"Cmd": sleep}})
        assert r.status_code == 503 and r.headers["retry-after"] == "60"
        message = r.json()["message"]
        assert "orc holds 3 tasks and job b would add 3, past its limit of 5" in message
        assert "ORC_MAX_TASKS" in message
        assert (await m.get("/jobs/b")).status_code == 404  # nothing was made
        r = await m.put("/jobs/a/scale", json={"Count": 6})
        assert r.status_code == 503 and "job a would add 3" in r.json()["message"]
        assert (await m.put("/jobs/a/scale", json={"Count": 5})).status_code == 200
        assert (await m.put("/jobs/a/scale", json={"Count": 1})).status_code == 200
        assert (await m.delete("/jobs/a")).status_code in (200, 202, 204)


async def test_too_many_event_streams_get_503_and_a_closed_one_frees_its_place(
    tmp_path: Path,
) -> None:
    async with running_cluster(make_settings(tmp_path / "d", ORC_MAX_STREAMS="2")) as c:
        url = str(c.manager.base_url)
        async with (
            httpx.AsyncClient(base_url=url, timeout=10) as first,
            first.stream("GET", "/events") as a,
            first.stream("GET", "/events") as b,
        ):
            assert a.status_code == b.status_code == 200
            r = await c.manager.get("/events")
            assert r.status_code == 503
            assert r.headers["retry-after"] == "5"
            assert "ORC_MAX_STREAMS" in r.json()["message"]
        # the two streams are closed; the server finds out at its next write (a heartbeat)
        with trio.fail_after(15):
            while True:
                async with c.manager.stream("GET", "/events") as again:
                    if again.status_code == 200:
                        break
                await trio.sleep(0.5)
