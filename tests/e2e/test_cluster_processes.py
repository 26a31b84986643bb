"""`orc manager` and three `orc worker` processes on free ports, with a short node TTL:
spread, a SIGKILLed worker (down, tasks failed and placed again, rejoin, nothing twice), a
SIGKILLed manager during a burst, bad registrations and the token."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import ROOT, OrcProcess, free_port, orc_env

TTL = 1.0


class Cluster:
    def __init__(self, tmp: Path, workers: int = 3, **extra: str) -> None:
        self.tmp = tmp
        base = orc_env(tmp / "m", ORC_NODE_TTL=str(TTL), ORC_STOP_GRACE="1", **extra)
        self.env = {**os.environ, **base, "PYTHONPATH": str(ROOT)}
        self.url = f"http://127.0.0.1:{base['ORC_MANAGER_PORT']}"
        self.headers = (
            {"Authorization": f"Bearer {extra['ORC_TOKEN']}"} if "ORC_TOKEN" in extra else {}
        )
        self.manager = OrcProcess(
            ["manager", "--data-dir", str(tmp / "m")], self.env, "Starting Orc manager"
        )
        self.workers = [self._worker(i) for i in range(workers)]

    def _worker(self, i: int) -> OrcProcess:
        port = str(free_port())
        args = ["worker", "--manager", self.url, "--port", port, "--name", f"w{i + 1}"]
        args += ["--host", "127.0.0.1", "--data-dir", str(self.tmp / f"w{i + 1}")]
        return OrcProcess(args, self.env, "Starting Orc worker")

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, headers=self.headers, timeout=10)

    def post(self, cmd: list[str], policy: str = "") -> httpx.Response:
        task_id = str(uuid.uuid4())
        task = {"ID": task_id, "Name": "p", "Cmd": cmd, "RestartPolicy": policy}
        return httpx.post(
            self.url + "/tasks",
            json={"ID": task_id, "State": 2, "Task": task},
            headers=self.headers,
            timeout=10,
        )

    def tasks(self) -> dict[str, dict]:
        return {t["ID"]: t for t in self.get("/tasks").json()}

    def nodes(self) -> dict[str, dict]:
        return {n["Name"]: n for n in self.get("/nodes").json()}

    def wait(self, what, timeout: float = 15.0, message: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if what():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting: {message}")

    def next_event(self, kind: str, timeout: float = 15.0) -> dict:
        """The first event of type `kind` in the manager's log, once there is one."""
        deadline = time.monotonic() + timeout
        params = {"type": kind}
        with httpx.stream(
            "GET", f"{self.url}/events", params=params, headers=self.headers, timeout=timeout
        ) as stream:
            for line in stream.iter_lines():
                if line and "Event" in (found := json.loads(line)):
                    return found
                if time.monotonic() > deadline:  # only heartbeats came
                    break
        raise AssertionError(f"no {kind} in the manager's log within {timeout} s")

    def pids(self) -> dict[str, list[int]]:
        """Task ID -> pids of the live processes running it, over every worker's data dir."""
        found: dict[str, list[int]] = {}
        for journal in self.tmp.glob("w*/tasks/*/*/launch"):
            runs = [r for r in journal.read_bytes().splitlines() if r.startswith(b'{"run":')]
            if not runs:
                continue
            pid = json.loads(runs[-1])["run"]["pid"]
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    found.setdefault(journal.parent.name, []).append(pid)
            except psutil.Error:
                pass
        return found

    def stop(self) -> None:
        for p in [self.manager, *self.workers]:
            p.kill()
        for p in psutil.process_iter(["cwd"]):
            try:
                if str(self.tmp) in (p.info["cwd"] or ""):
                    p.kill()
            except psutil.Error:
                pass


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    c.manager.start()
    for w in c.workers:
        w.start()
    c.wait(lambda: len(c.nodes()) == 3, message="three nodes registered")
    yield c
    c.stop()


def test_lost_worker_is_down_its_tasks_fail_and_move_and_rejoin_runs_nothing_twice(
    cluster: Cluster,
) -> None:
    ids = []
    for i in range(30):
        r = cluster.post(["sleep", "60"], policy="always" if i % 2 else "")
        assert r.status_code == 201, r.text
        ids.append(r.json()["ID"])
    cluster.wait(
        lambda: all(t["State"] == 2 for t in cluster.tasks().values()), message="30 running"
    )
    spread = Counter(t["Node"] for t in cluster.tasks().values())
    assert set(spread) == {"w1", "w2", "w3"} and min(spread.values()) >= 5, spread

    lost = {i for i, t in cluster.tasks().items() if t["Node"] == "w2"}
    cluster.workers[1].kill()
    killed = time.monotonic()
    cluster.wait(lambda: cluster.nodes()["w2"]["State"] == "down", 3 * TTL + 2, "w2 down")
    assert time.monotonic() - killed < TTL + 2.5
    tasks = cluster.tasks()
    for task_id in lost:
        task = tasks[task_id]
        if task["RestartPolicy"] == "always":
            continue  # placed again; checked below
        assert task["State"] == -1 and task["Error"].startswith("node w2 lost: no heartbeat"), task
    moved = {i for i in lost if tasks[i]["RestartPolicy"] == "always"}

    def replaced() -> bool:
        now = cluster.tasks()
        return all(now[i]["State"] == 2 and now[i]["Node"] in ("w1", "w3") for i in moved)

    cluster.wait(replaced, 10, "tasks with RestartPolicy always run again elsewhere")
    assert cluster.nodes()["w2"]["TaskCount"] == 0

    # w2 comes back on its data dir: it is up again, and what it still ran is stopped.
    cluster.workers[1].start()
    cluster.wait(lambda: cluster.nodes()["w2"]["State"] == "up", 10, "w2 up again")

    def once_each() -> bool:
        pids = cluster.pids()
        return all(
            len(pids.get(i, [])) == (1 if cluster.tasks()[i]["State"] == 2 else 0) for i in ids
        )

    cluster.wait(once_each, 10, f"every running task runs once: {cluster.pids()}")
    running = [t for t in cluster.tasks().values() if t["State"] == 2]
    assert len(running) == 30 - (len(lost) - len(moved))


def test_manager_killed_during_a_burst_loses_no_acknowledged_task(cluster: Cluster) -> None:
    acked: list[str] = []
    for i in range(200):
        if i == 100:
            cluster.manager.kill()
        try:
            r = cluster.post(["sleep", "0.5"])
        except httpx.HTTPError:
            continue
        if r.status_code == 201:
            acked.append(r.json()["ID"])
    assert len(acked) >= 100
    cluster.manager.start()
    tasks = cluster.tasks()
    assert set(acked) <= set(tasks)
    # The workers' later updates arrive: every task ends Completed.
    cluster.wait(
        lambda: all(cluster.tasks()[i]["State"] == 3 for i in acked),
        30,
        f"all completed: {Counter(t['StateName'] for t in cluster.tasks().values())}",
    )
    assert all(n["State"] == "up" for n in cluster.nodes().values())


def test_bad_registrations(cluster: Cluster) -> None:
    w1 = cluster.nodes()["w1"]
    info = {"Name": "w1", "Address": "127.0.0.1:1", "Drivers": ["process"]}
    r = httpx.post(cluster.url + "/nodes", json=info, timeout=10)
    assert r.status_code == 409 and "w1 is registered at" in r.json()["message"]
    for body, where in [
        (b"{", "malformed JSON"),
        (b'{"Name": "x", "Address": "nohost", "Drivers": []}', "$.Address"),
        (b'{"Name": "x", "Address": "h:1", "Drivers": ["vm"]}', "$.Drivers[0]"),
        (b'{"Name": "x", "Address": "h:1", "Drivers": [], "Extra": 1}', "Extra"),
        (b'{"Address": "h:1", "Drivers": []}', "Name"),
    ]:
        r = httpx.post(cluster.url + "/nodes", content=body, timeout=10)
        assert r.status_code == 400 and where in r.json()["message"], (body, r.text)
    assert cluster.nodes()["w1"]["Address"] == w1["Address"]
    assert set(cluster.nodes()) == {"w1", "w2", "w3"}


def test_token_is_required_by_manager_and_workers(tmp_path: Path) -> None:
    c = Cluster(tmp_path, workers=1, ORC_TOKEN="s3cret")
    try:
        c.manager.start()
        c.workers[0].start()
        c.wait(
            lambda: c.nodes().get("w1", {}).get("State") == "up", message="w1 joins with the token"
        )
        worker_port = c.workers[0].args[c.workers[0].args.index("--port") + 1]
        for url in (c.url + "/tasks", c.url + "/nodes", f"http://127.0.0.1:{worker_port}/tasks"):
            r = httpx.get(url, timeout=10)
            assert r.status_code == 401 and "no token" in r.json()["message"]
            r = httpx.get(url, headers={"Authorization": "Bearer nope"}, timeout=10)
            assert r.status_code == 401 and "wrong token" in r.json()["message"]
        r = c.post(["true"])
        assert r.status_code == 201
        task_id = r.json()["ID"]
        c.wait(lambda: c.tasks()[task_id]["State"] == 3, message="runs through the token")
    finally:
        c.stop()


def test_static_worker_list(tmp_path: Path) -> None:
    port = free_port()
    c = Cluster(tmp_path, workers=0, ORC_WORKERS=f"127.0.0.1:{port}")
    worker = OrcProcess(
        [
            "worker",
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--name",
            "s1",
            "--data-dir",
            str(tmp_path / "w1"),
        ],
        c.env,
        "Starting Orc worker",
    )
    try:
        worker.start()
        c.manager.start()
        c.wait(lambda: c.nodes().get("s1", {}).get("State") == "up", message="static worker up")
        task_id = c.post(["true"]).json()["ID"]
        c.wait(lambda: c.tasks()[task_id]["State"] == 3, message="runs on the static worker")
        # It stays up on its stream's heartbeats alone.
        time.sleep(3 * TTL)
        assert c.nodes()["s1"]["State"] == "up"
    finally:
        worker.kill()
        c.stop()


def test_worker_back_with_a_wiped_data_dir_is_followed_from_its_new_log(tmp_path: Path) -> None:
    c = Cluster(tmp_path, workers=1)
    try:
        c.manager.start()
        c.workers[0].start()
        c.wait(lambda: c.nodes().get("w1", {}).get("State") == "up", message="w1 up")
        done = [c.post(["true"]).json()["ID"] for _ in range(3)]
        c.wait(lambda: all(c.tasks()[i]["State"] == 3 for i in done), message="first tasks")
        running = c.post(["sleep", "60"]).json()["ID"]
        c.wait(lambda: c.tasks()[running]["State"] == 2, message="a running task")

        c.workers[0].kill()
        for pid in c.pids().get(running, []):
            psutil.Process(pid).kill()
        shutil.rmtree(tmp_path / "w1")  # the machine was rebuilt: its log starts again at 1
        c.workers[0].start()

        # The manager finds the new log empty and follows it from its start. (New work sent
        # there before the manager noticed would run first; the manager would follow from past
        # its updates, and learn of them only from the reconcile: wait for the reset.)
        reset = c.next_event("NodeLogReset")
        assert reset["Event"]["Node"] == "w1" and reset["Event"]["Seq"] == 0
        # The task it no longer knows is lost; new work runs and its updates arrive.
        c.wait(lambda: c.tasks()[running]["State"] == -1, message="the forgotten task fails")
        after = c.post(["true"]).json()["ID"]
        c.wait(lambda: c.tasks()[after]["State"] == 3, message="new updates arrive")
    finally:
        c.stop()


def test_worker_back_at_another_address_is_followed_there(tmp_path: Path) -> None:
    c = Cluster(tmp_path, workers=1)
    try:
        c.manager.start()
        c.workers[0].start()
        c.wait(lambda: c.nodes().get("w1", {}).get("State") == "up", message="w1 up")
        first = c.post(["true"]).json()["ID"]
        c.wait(lambda: c.tasks()[first]["State"] == 3, message="runs at the first address")
        c.workers[0].kill()
        c.wait(lambda: c.nodes()["w1"]["State"] == "down", 5 * TTL, "w1 down")

        moved = c._worker(0)  # same name and data dir, a new port
        c.workers[0] = moved
        moved.start()
        new_port = moved.args[moved.args.index("--port") + 1]
        c.wait(lambda: c.nodes()["w1"]["State"] == "up", message="w1 up again")
        assert c.nodes()["w1"]["Address"] == f"127.0.0.1:{new_port}"
        second = c.post(["true"]).json()["ID"]
        c.wait(lambda: c.tasks()[second]["State"] == 3, message="runs at the new address")
    finally:
        c.stop()
