"""The failover test of issue 16: 3 etcd members, 3 managers, 2 worker processes, under a
steady stream of task submissions, while the leader is SIGKILLed, the leader is SIGSTOPped
for longer than its lease (then SIGCONTinued), and the etcd leader is SIGKILLed, each twice.

Afterwards: no acknowledged task is lost, none started twice, none running was restarted by a
failover, every failover completed within the lease TTL + 1 s, the manager that was paused
never had a write accepted after it lost leadership, and `orc replay --check` passes on the
etcd log. A longer soak (20 leader kills, timed) is `bench/ha.py`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import psutil
import pytest

from tests.ha.cluster import HaCluster, Manager, NoAnswer, NoEtcd

TTL = 2  # ORC_LEASE_TTL: short, so the test stays short; the default is 5 s
ROOT = Path(__file__).resolve().parents[2]


class Submitter:
    """Submits a task every `every` seconds through the whole list of managers, as a client
    would, and keeps the IDs orc acknowledged (201). A refused or unanswered submission is
    not acknowledged, so it may be lost without breaking any promise."""

    def __init__(self, cluster: HaCluster, every: float = 0.05) -> None:
        self.cluster = cluster
        self.every = every
        self.acked: list[str] = []
        self.refused = Counter[str]()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            task_id = str(uuid.uuid4())
            task = {"ID": task_id, "Name": "steady", "Cmd": ["sleep", "600"]}
            body = {"ID": task_id, "State": 2, "Task": task}
            try:
                r = self.cluster.request("POST", "/tasks", json=body, timeout=TTL + 5)
            except (NoAnswer, httpx.HTTPError) as exc:
                self.refused[type(exc).__name__] += 1
            else:
                if r.status_code in (200, 201):
                    self.acked.append(task_id)
                else:
                    self.refused[str(r.status_code)] += 1
            time.sleep(self.every)

    def __enter__(self) -> Submitter:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def _running(cluster: HaCluster) -> dict[str, str]:
    """Running tasks: ID -> StartsAt (a restart would change it)."""
    return {i: t["StartsAt"] for i, t in cluster.tasks().items() if t["State"] == 2}


def _failover(cluster: HaCluster, old: Manager) -> float:
    """Seconds from now until another manager leads (says so in its own GET /cluster)."""
    t0 = time.monotonic()
    cluster.wait_leader(timeout=TTL + 10, other_than=old)
    return time.monotonic() - t0


def _task_processes(under: Path) -> Counter[str]:
    """ORC_TASK_ID of every task process running under `under` (a task started twice would
    have two)."""
    found: Counter[str] = Counter()
    for p in psutil.process_iter(["cmdline", "cwd"]):
        try:
            if p.info["cmdline"] != ["sleep", "600"]:
                continue
            if not (p.info["cwd"] or "").startswith(str(under)):
                continue
            task_id = p.environ().get("ORC_TASK_ID")
        except psutil.Error:
            continue
        if task_id:
            found[task_id] += 1
    return found


def test_failovers_lose_nothing_and_restart_nothing(tmp_path: Path) -> None:
    try:
        cluster = HaCluster(
            tmp_path, etcd=3, managers=3, workers=2, lease_ttl=TTL, node_ttl=3.0
        ).start(timeout=60)
    except NoEtcd as exc:
        if os.environ.get("ORC_REQUIRE_ETCD") == "1":
            pytest.fail(f"ORC_REQUIRE_ETCD=1 but {exc}")
        pytest.skip(str(exc))
    failovers: list[float] = []
    with cluster:
        with Submitter(cluster) as submitter:
            time.sleep(1.0)
            for round_ in range(2):
                # the leader is killed
                before = _running(cluster)
                leader = cluster.wait_leader()
                cluster.kill(leader, signal.SIGKILL)
                failovers.append(_failover(cluster, leader))
                cluster.restart(leader)  # it comes back as a standby
                time.sleep(1.0)
                _still_running(cluster, before, f"after leader kill {round_ + 1}")

                # the leader is paused for longer than its lease, then goes on
                before = _running(cluster)
                paused = cluster.wait_leader()
                assert paused.pid is not None
                os.kill(paused.pid, signal.SIGSTOP)
                try:
                    failovers.append(_failover(cluster, paused))
                    time.sleep(1.0)
                finally:
                    os.kill(paused.pid, signal.SIGCONT)
                # once it runs again it is not the leader, and takes no write
                time.sleep(1.0)
                task_id = str(uuid.uuid4())
                late = {"ID": task_id, "State": 2, "Task": {"ID": task_id, "Cmd": ["true"]}}
                r = cluster.http.post(
                    f"{paused.url}/tasks", json=late, follow_redirects=False, timeout=10
                )
                assert r.status_code in (307, 503), (r.status_code, r.text)
                _still_running(cluster, before, f"after leader pause {round_ + 1}")

                # etcd's own leader is killed: etcd elects another, orc goes on
                before = _running(cluster)
                member = cluster.wait(cluster.etcd_leader, 10, "an etcd leader")
                cluster.kill(member, signal.SIGKILL)
                cluster.wait(cluster.etcd_leader, 10, "a new etcd leader")
                time.sleep(1.0)
                cluster.restart(member)
                _still_running(cluster, before, f"after etcd leader kill {round_ + 1}")

            time.sleep(1.0)
        # -- the promises -------------------------------------------------------------------------
        assert submitter.acked, submitter.refused
        tasks = cluster.tasks()
        lost = [i for i in submitter.acked if i not in tasks]
        assert not lost, f"{len(lost)} acknowledged tasks lost, e.g. {lost[:3]}"
        assert all(t["RestartCount"] == 0 for t in tasks.values())
        assert max(failovers) <= TTL + 1.0, failovers
        twice = {i: n for i, n in _task_processes(tmp_path).items() if n > 1}
        assert not twice, f"tasks running twice: {twice}"
        check = subprocess.run(
            [
                sys.executable,
                "-m",
                "orc",
                "replay",
                "--etcd",
                ",".join(cluster.endpoints),
                "--check",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        # --check refuses a log where a task starts while it runs (a second start)
        assert check.returncode == 0, check.stdout + check.stderr


def _still_running(cluster: HaCluster, before: dict[str, str], when: str) -> None:
    """Every task that ran before still runs, with the same StartsAt: not restarted."""
    now = _running(cluster)
    changed = {i: (s, now.get(i)) for i, s in before.items() if now.get(i) != s}
    assert not changed, f"{when}: running tasks restarted or stopped: {changed}"
