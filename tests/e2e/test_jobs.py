"""Jobs end to end over HTTP, with real processes: scale up and down, a rolling update, a
failing update that reverts on its own, a batch job, a lost worker process whose tasks move,
and a manager SIGKILLed in the middle of a rolling update.

The pure rules are tested in tests/core/test_reconcile*.py; here the whole path runs: the
edge, the Manager actor, the reconciler's passes, the scheduler, workers, processes.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import trio

from tests.conftest import RunningCluster, make_settings, running_cluster
from tests.e2e.test_cluster_processes import Cluster
from tests.e2e.test_e2e import Orc, kill_task_processes

FAST = {"MinHealthyTime": 0.2, "HealthyDeadline": 20, "MaxParallel": 1}


@pytest.fixture
async def two_workers(tmp_path: Path) -> AsyncIterator[RunningCluster]:
    settings = make_settings(tmp_path / "data", ORC_WORKER_COUNT="2", ORC_STOP_GRACE="1")
    async with running_cluster(settings) as running:
        yield running
    kill_task_processes(tmp_path / "data")


def job(job_id: str = "web", count: int = 2, **extra: object) -> dict:
    spec: dict = {"ID": job_id, "Count": count, "Task": {"Cmd": ["sleep", "60"]}}
    spec["Update"] = FAST
    spec.update(extra)
    return spec


async def wait_until(
    client: httpx.AsyncClient, path: str, ok: Callable[[dict], bool], timeout: float = 20
) -> dict:
    body: dict = {}
    with trio.move_on_after(timeout):
        while True:
            body = (await client.get(path)).json()
            if ok(body):
                return body
            await trio.sleep(0.05)
    raise AssertionError(f"GET {path} never satisfied the test; last seen {body}")


def running(count: int) -> Callable[[dict], bool]:
    return lambda j: j["Tasks"]["Running"] == count


async def job_tasks(client: httpx.AsyncClient, job_id: str) -> list[dict]:
    r = await client.get("/tasks", params={"job": job_id})
    assert r.status_code == 200, r.text
    return r.json()


def active_slots(tasks: list[dict]) -> Counter[int]:
    return Counter(t["Slot"] for t in tasks if t["State"] in (0, 1, 2))


async def test_scale_up_and_down(two_workers: RunningCluster) -> None:
    m = two_workers.manager
    r = await m.post("/jobs", json=job(count=2))
    assert r.status_code == 201, r.text
    assert r.json()["Version"] == 0
    await wait_until(m, "/jobs/web", running(2))

    r = await m.put("/jobs/web/scale", json={"Count": 5})
    assert r.status_code == 200, r.text
    await wait_until(m, "/jobs/web", running(5))
    tasks = await job_tasks(m, "web")
    assert sorted(active_slots(tasks)) == [0, 1, 2, 3, 4]
    assert {t["Node"] for t in tasks} == {"worker-1", "worker-2"}  # both workers used

    await m.put("/jobs/web/scale", json={"Count": 1})
    view = await wait_until(m, "/jobs/web", lambda j: j["Tasks"]["Running"] == 1)
    assert view["Count"] == 1
    tasks = await job_tasks(m, "web")
    assert list(active_slots(tasks)) == [0]  # the highest slots went first
    assert all(t["State"] == 3 for t in tasks if t["Slot"] > 0)  # stopped, Completed

    r = await m.delete("/jobs/web")
    assert r.status_code == 200
    await wait_until(m, "/jobs/web", lambda j: j["Tasks"]["Running"] == 0)
    assert (await m.get("/jobs/web")).json()["Status"] == "stopped"


async def test_a_rolling_update_replaces_one_task_at_a_time(two_workers: RunningCluster) -> None:
    m = two_workers.manager
    await m.post("/jobs", json=job(count=3))
    await wait_until(m, "/jobs/web", lambda j: j["Deployment"]["State"] == "successful")
    first = {t["ID"] for t in await job_tasks(m, "web")}

    new = job(count=3)
    new["Task"] = {"Cmd": ["sleep", "61"], "Env": ["V=2"]}
    r = await m.post("/jobs", json=new)
    assert r.status_code == 200, r.text
    assert r.json()["Version"] == 1 and "rolling update" in r.json()["Message"]
    view = await wait_until(
        m,
        "/jobs/web",
        lambda j: j["Deployment"]["Version"] == 1 and j["Deployment"]["State"] == "successful",
    )
    assert view["StableVersion"] == 1
    tasks = await job_tasks(m, "web")
    live = [t for t in tasks if t["State"] == 2]
    assert len(live) == 3 and all(t["JobVersion"] == 1 and t["Env"] == ["V=2"] for t in live)
    assert not first & {t["ID"] for t in live}

    # One at a time (MaxParallel 1): each replacement waits for the one before to be healthy.
    story = (await m.get("/jobs/web/history")).json()
    actions = [e["action"] for e in story["events"] if e["action"] and e["version"] == 1]
    steps = [a for a in actions if a in ("replace", "healthy")]
    assert steps == ["replace", "healthy"] * 3, actions
    versions = (await m.get("/jobs/web/versions")).json()
    assert [v["Version"] for v in versions] == [1, 0]


async def test_a_failing_update_reverts_to_the_stable_version(
    two_workers: RunningCluster,
) -> None:
    m = two_workers.manager
    await m.post("/jobs", json=job(count=2))
    await wait_until(m, "/jobs/web", lambda j: j["Deployment"]["State"] == "successful")

    bad = job(count=2, Update={**FAST, "AutoRevert": True})
    bad["Task"] = {"Cmd": ["sh", "-c", "exit 3"]}
    r = await m.post("/jobs", json=bad)
    assert r.status_code == 200, r.text
    view = await wait_until(
        m,
        "/jobs/web",
        lambda j: j["Version"] == 2 and j["Deployment"]["State"] == "successful",
        timeout=30,
    )
    assert view["Spec"]["Task"]["Cmd"] == ["sleep", "60"]  # version 0's template again
    assert view["StableVersion"] == 2
    versions = (await m.get("/jobs/web/versions")).json()
    assert versions[0]["Reason"].startswith("auto-revert")
    live = [t for t in await job_tasks(m, "web") if t["State"] == 2]
    assert len(live) == 2 and all(t["Cmd"] == ["sleep", "60"] for t in live)


async def test_a_batch_job_runs_to_completion_with_bounded_parallelism(
    two_workers: RunningCluster,
) -> None:
    m = two_workers.manager
    spec = {
        "ID": "crunch",
        "Type": "batch",
        "Count": 5,
        "Parallelism": 2,
        "Task": {"Cmd": ["sh", "-c", "sleep 0.3"]},
    }
    r = await m.post("/jobs", json=spec)
    assert r.status_code == 201, r.text
    view = await wait_until(m, "/jobs/crunch", lambda j: j["Status"] == "complete", timeout=30)
    assert view["Tasks"]["Completed"] == 5
    tasks = await job_tasks(m, "crunch")
    assert sorted(t["Slot"] for t in tasks) == [0, 1, 2, 3, 4]
    # never more than 2 ran at once: at each start, count the runs that overlap it
    spans = sorted((t["StartsAt"], t["FinishedAt"]) for t in tasks)
    for start, _ in spans:
        overlapping = sum(1 for s, f in spans if s <= start < f)
        assert overlapping <= 2, spans


# -- separate processes ----------------------------------------------------------------------


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, workers=2)
    c.manager.start()
    for w in c.workers:
        w.start()
    yield c
    for p in [*c.workers, c.manager]:
        if p.proc is not None and p.proc.poll() is None:
            p.kill(signal.SIGKILL)
    kill_task_processes(tmp_path)


def _wait(get: Callable[[], dict], ok: Callable[[dict], bool], timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        body = get()
        if ok(body):
            return body
        time.sleep(0.1)
    raise AssertionError(f"never satisfied; last seen {body}")


def test_the_tasks_of_a_lost_worker_move(processes: Cluster) -> None:
    c = processes
    _wait(lambda: {"n": len(c.get("/nodes").json())}, lambda b: b["n"] == 2)
    spec = job(count=4, Spread={"Attribute": "node"})
    r = httpx.post(c.url + "/jobs", json=spec, timeout=10)
    assert r.status_code == 201, r.text
    _wait(lambda: c.get("/jobs/web").json(), running(4))
    tasks = c.get("/tasks?job=web").json()
    assert Counter(t["Node"] for t in tasks) == {"w1": 2, "w2": 2}  # spread over the nodes

    c.workers[0].kill(signal.SIGKILL)  # w1 and its shims go on; the manager stops hearing it
    view = _wait(
        lambda: c.get("/jobs/web").json(),
        lambda j: j["Tasks"]["Running"] == 4 and j["Tasks"]["Failed"] == 2,
        timeout=30,
    )
    assert view["Count"] == 4
    tasks = c.get("/tasks?job=web").json()
    live = [t for t in tasks if t["State"] == 2]
    assert {t["Node"] for t in live} == {"w2"}
    assert sorted(t["Slot"] for t in live) == [0, 1, 2, 3]  # every slot once

    c.workers[0].start()  # w1 comes back: its old tasks are not the job's any more
    up = lambda: {"up": [n for n in c.get("/nodes").json() if n["State"] == "up"]}  # noqa: E731
    _wait(up, lambda b: len(b["up"]) == 2)
    tasks = c.get("/tasks?job=web").json()
    assert sorted(t["Slot"] for t in tasks if t["State"] == 2) == [0, 1, 2, 3]
    # and on the machine: w1 stopped the two it ran before; one process per slot is left
    _wait(lambda: {"n": len(_sleepers(c.tmp))}, lambda b: b["n"] == 4, timeout=15)


def _sleepers(under: Path) -> list[psutil.Process]:
    """The job's task processes (`sleep 60`) running under `under`."""
    found = []
    for p in psutil.process_iter(["cmdline", "cwd"]):
        try:
            if p.info["cmdline"] == ["sleep", "60"] and (p.info["cwd"] or "").startswith(
                str(under)
            ):
                found.append(p)
        except psutil.Error:
            continue
    return found


def test_a_rolling_update_resumes_after_sigkill(tmp_path: Path) -> None:
    orc = Orc(tmp_path / "data")
    orc.start()
    try:
        spec = job(count=4, Update={"MinHealthyTime": 0.5, "MaxParallel": 1})
        r = httpx.post(orc.url + "/jobs", json=spec, timeout=10)
        assert r.status_code == 201, r.text
        _wait(
            lambda: httpx.get(orc.url + "/jobs/web").json(),
            lambda j: j["Deployment"]["State"] == "successful",
        )
        spec["Task"] = {"Cmd": ["sleep", "62"]}
        r = httpx.post(orc.url + "/jobs", json=spec, timeout=10)
        assert r.status_code == 200, r.text
        _wait(
            lambda: httpx.get(orc.url + "/jobs/web").json(),
            lambda j: j["Deployment"]["Version"] == 1 and j["Deployment"]["Healthy"] >= 1,
        )
        orc.kill(signal.SIGKILL)  # in the middle of the update
        orc.start()
        view = _wait(
            lambda: httpx.get(orc.url + "/jobs/web").json(),
            lambda j: j["Deployment"]["Version"] == 1 and j["Deployment"]["State"] == "successful",
            timeout=30,
        )
        assert view["Tasks"]["Running"] == 4
        tasks = httpx.get(orc.url + "/tasks?job=web").json()
        live = [t for t in tasks if t["State"] == 2]
        assert sorted(t["Slot"] for t in live) == [0, 1, 2, 3]
        assert all(t["JobVersion"] == 1 for t in live)
    finally:
        if orc.proc is not None and orc.proc.poll() is None:
            orc.kill(signal.SIGKILL)
        kill_task_processes(orc.data_dir)
