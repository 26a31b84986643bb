"""Two `orc manager --etcd` processes and one `orc worker`: the standby reads what the leader
wrote and sends writes to it (307); `GET /cluster` on either shows one leader and one standby;
when the leader is SIGKILLed, the standby leads within the lease's TTL and a second, the tasks
that ran run on (not restarted: the same run, the same StartsAt), and new tasks are placed;
`orc replay --etcd` and the history routes read the log in etcd.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, run_cli
from tests.ha.cluster import ETCD, HaCluster, Manager

LEASE_TTL = 2
NODE_TTL = 2.0


@pytest.fixture(autouse=True)
def _etcd_installed() -> None:
    """As the other etcd tests: skip without etcd, unless ORC_REQUIRE_ETCD=1 says fail."""
    if ETCD is None:
        if os.environ.get("ORC_REQUIRE_ETCD") == "1":
            pytest.fail("ORC_REQUIRE_ETCD=1 but no etcd is installed (Debian: etcd-server)")
        pytest.skip("no etcd installed (set ORC_REQUIRE_ETCD=1 to fail instead)")


def task_body() -> dict[str, object]:
    task_id = str(uuid.uuid4())
    return {"ID": task_id, "State": 2, "Task": {"ID": task_id, "Name": "s", "Cmd": ["sleep", "60"]}}


def tasks_of(m: Manager) -> dict[str, dict]:
    return {t["ID"]: t for t in httpx.get(f"{m.url}/tasks", timeout=5).json()}


def test_a_standby_follows_redirects_and_takes_over_without_restarting_tasks(
    tmp_path: Path,
) -> None:
    with HaCluster(
        tmp_path, etcd=1, managers=2, workers=1, lease_ttl=LEASE_TTL, node_ttl=NODE_TTL
    ) as c:
        leader = c.wait_leader()
        (standby,) = [m for m in c.managers if m is not leader]
        ids = c.submit(2)
        running = c.wait_states(ids, {2})

        # the standby answers reads from the state it follows
        c.wait(
            lambda: all(
                tasks_of(standby).get(i, {}).get("StartsAt") == running[i]["StartsAt"] for i in ids
            ),
            message="the standby lists the running tasks",
        )
        nodes = httpx.get(f"{standby.url}/nodes", timeout=5).json()
        assert [n["Name"] for n in nodes] == ["w1"]

        # ... and sends writes to the leader
        body = task_body()
        r = httpx.post(f"{standby.url}/tasks", json=body, timeout=5)
        assert r.status_code == 307, r.text
        assert r.headers["Location"] == f"{leader.url}/tasks"
        assert r.json()["Leader"] == leader.url
        followed = httpx.post(f"{standby.url}/tasks", json=body, timeout=5, follow_redirects=True)
        assert followed.status_code == 201 and str(followed.url) == f"{leader.url}/tasks"
        ids.append(body["ID"])  # type: ignore[arg-type]
        r = httpx.get(f"{standby.url}/tasks/{ids[0]}/logs", timeout=5)
        assert r.status_code == 307  # only the leader reaches the workers

        # every manager tells the same cluster
        for m in c.managers:
            view = httpx.get(f"{m.url}/cluster", timeout=5).json()
            assert view["Leader"]["Name"] == leader.name
            roles = {e["Name"]: e["Role"] for e in view["Managers"]}
            assert roles == {leader.name: "leader", standby.name: "standby"}
            assert view["Etcd"]["Endpoints"] == c.endpoints
            assert [e["IsLeader"] for e in view["Etcd"]["Members"]] == [True]
        status = subprocess.run(
            [sys.executable, "-m", "orc", "status", "--cluster", "--addr", standby.url],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert status.returncode == 0, status.stderr
        assert f"leader {leader.name}" in status.stdout and "standby" in status.stdout

        running = c.wait_states(ids, {2})
        c.kill(leader, signal.SIGKILL)
        killed = time.monotonic()
        took = c.wait(lambda: _leads(standby), timeout=LEASE_TTL + 10, message="a new leader")
        took -= killed
        print(f"failover: {standby.name} took writes {took:.2f} s after the leader was killed")
        assert took <= LEASE_TTL + 1, f"failover took {took:.2f} s"

        # the tasks run on, the same runs; past the nodes' grace period too
        time.sleep(NODE_TTL + 0.5)
        after = tasks_of(standby)
        for i in ids:
            assert after[i]["State"] == 2, after[i]
            assert after[i]["StartsAt"] == running[i]["StartsAt"]
            assert after[i]["RestartCount"] == running[i]["RestartCount"]
        worker = httpx.get(f"{c.workers[0].url}/tasks", timeout=5).json()
        assert {t["ID"] for t in worker if t["State"] == 2} >= set(ids)
        assert httpx.get(f"{standby.url}/nodes", timeout=5).json()[0]["State"] == "up"

        new = c.submit(1)  # placed by the new leader on the worker it adopted
        c.wait_states(new, {2})
        history = httpx.get(f"{standby.url}/tasks/{ids[0]}/history", timeout=10)
        assert history.status_code == 200, history.text
        assert history.json()["periods"][-1]["state"] == "Running"

        # the log in etcd tells the same story as a log directory does
        env = dict(os.environ)
        replayed = run_cli("replay", "--etcd", c.endpoints[0], "--check", env=env, timeout=30)
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        assert f"{len(c.tasks())} tasks" in replayed.stdout
        story = run_cli("replay", "--etcd", c.endpoints[0], "--json", env=env, timeout=30)
        assert json.loads(story.stdout)["log"].startswith("etcd ")


def _leads(m: Manager) -> float | None:
    """The time `m` took a submission (201) itself, without following a redirect; None before."""
    r = httpx.post(f"{m.url}/tasks", json=task_body(), timeout=2)
    return time.monotonic() if r.status_code == 201 else None
