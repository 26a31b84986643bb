"""Workers and the CLI given several managers follow the leader: past a dead address, past a
manager with no leader (503), along a standby's 307 to the leader (with the token), and on to
the next manager when theirs dies.

Real `orc manager` and `orc worker` processes and the CLI as a subprocess. The first tests use
plain managers (no etcd: quick to start) and `StandIn`, a real HTTP server in this process that
answers every request as a standby does, 307 to the leader's URL with the same path, or as a
manager with no leader does, 503: it counts what it hears, and whether the token came along.
`test_real_standbys_and_a_failover` does it against real standbys on etcd (`tests/ha/cluster.py`),
and a failover; skipped without etcd (a failure with ORC_REQUIRE_ETCD=1), or with managers that
serve no `GET /cluster`.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import ROOT, free_port, orc_env, run_cli
from tests.ha.cluster import ETCD, HaCluster, Manager, Proc, Worker

TOKEN = "s3cret"
TTL = 1.0
DEAD = "http://127.0.0.1:9"  # nothing listens on the discard port


class StandIn:
    """A standby manager as the CLI and workers meet it: every request answered 307 to
    `leader` + the same path and query, with the message and `Leader` a standby sends, or 503
    with Retry-After when `leader` is None. Counts the requests, and those with the token."""

    def __init__(self, leader: str | None) -> None:
        self.leader = leader
        self.hits = 0
        self.with_token = 0
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                stand_in.hits += 1
                stand_in.with_token += self.headers.get("Authorization") == f"Bearer {TOKEN}"
                if stand_in.leader is None:
                    status, body = 503, {"message": "no leader; try again soon", "Leader": None}
                    headers = {"Retry-After": "1"}
                else:
                    status = 307
                    body = {"message": "not the leader", "Leader": stand_in.leader}
                    headers = {"Location": stand_in.leader + self.path}
                data = json.dumps(body).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _env(data_dir: Path, **settings: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ORC_")}
    extra = {"ORC_NODE_TTL": f"{TTL:g}", "ORC_STOP_GRACE": "1", "ORC_TOKEN": TOKEN, **settings}
    return {**base, **orc_env(data_dir, **extra), "PYTHONPATH": str(ROOT)}


def plain_manager(tmp: Path, name: str) -> Manager:
    """`orc manager` alone: no etcd, its own file log."""
    env = _env(tmp / name)
    port = env["ORC_MANAGER_PORT"]
    argv = [sys.executable, "-m", "orc", "manager", "--host", "127.0.0.1", "--port", port]
    return Manager(name, f"http://127.0.0.1:{port}", tmp / name, argv, env)


def worker(tmp: Path, name: str, managers: list[str]) -> Worker:
    env = _env(tmp / name)
    port = env["ORC_WORKER_PORT"]
    argv = [sys.executable, "-m", "orc", "worker", "--manager", ",".join(managers)]
    argv += ["--name", name, "--host", "127.0.0.1", "--port", port]
    return Worker(name, f"http://127.0.0.1:{port}", tmp / name, argv, env)


def nodes(manager: str) -> dict[str, dict]:
    r = httpx.get(f"{manager}/nodes", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    return {n["Name"]: n for n in r.json()}


def wait(
    what: Callable[[], object], timeout: float = 10.0, message: str = "", log: Proc | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting: {message}\n{log.tail() if log else ''}")
        time.sleep(0.05)


def said(proc: Proc, text: str) -> Callable[[], bool]:
    """Whether `proc` has logged `text`."""
    return lambda: text in proc.tail()


def cli(addr: str, *args: str, token: str = TOKEN) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORC_")}
    env.update(ORC_ADDR=addr, ORC_TOKEN=token, PYTHONPATH=str(ROOT))
    return run_cli(*args, env=env)


@dataclass
class Setup:
    tmp: Path
    leader: Manager  # a plain manager: the leader the stand-ins name
    no_leader: StandIn  # answers 503
    standby: StandIn  # answers 307 to the leader
    other: Manager  # another plain manager
    direct: Worker  # --manager DEAD,other,leader
    redirected: Worker  # --manager DEAD,no_leader,standby


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("follow")
    leader, other = plain_manager(tmp, "m1"), plain_manager(tmp, "m2")
    no_leader, standby = StandIn(None), StandIn(leader.url)
    direct = worker(tmp, "w1", [DEAD, other.url, leader.url])
    redirected = worker(tmp, "w2", [DEAD, no_leader.url, standby.url])
    procs = [leader, other, direct, redirected]
    try:
        for group in (procs[:2], procs[2:]):  # the managers first: w1 must find m2 up
            for p in group:
                p.spawn()
            for p in group:
                p.wait_ready()
        yield Setup(tmp, leader, no_leader, standby, other, direct, redirected)
    finally:
        for p in reversed(procs):
            p.kill()
        no_leader.close()
        standby.close()
        for task in psutil.process_iter(["cwd"]):  # the tasks' processes, if any lives on
            try:
                if (task.info["cwd"] or "").startswith(str(tmp)):
                    task.kill()
            except psutil.Error:
                continue


def test_workers_register_past_a_dead_url_a_503_and_along_a_307(setup: Setup) -> None:
    url = setup.leader.url
    wait(lambda: nodes(setup.other.url).get("w1", {}).get("State") == "up", message="w1 on m2")
    wait(lambda: nodes(url).get("w2", {}).get("State") == "up", message="w2 on m1")
    for w, m in ((setup.direct, setup.other), (setup.redirected, setup.leader)):
        line = f"registered with manager {m.url} as {w.name}"
        wait(said(w, line), 2, line, log=w)
    # w2 went past the 503, and along the 307 with its token; its heartbeats now go to the
    # leader itself: the stand-ins hear no more of it.
    assert setup.no_leader.hits >= 1
    assert setup.standby.hits >= 1 and setup.standby.with_token == setup.standby.hits
    seen = (setup.no_leader.hits, setup.standby.hits)
    time.sleep(2 * TTL / 3 + 0.1)  # two heartbeats
    assert (setup.no_leader.hits, setup.standby.hits) == seen
    assert nodes(url)["w2"]["State"] == "up"
    assert setup.redirected.tail().count("registered with manager") == 1


def test_the_cli_tries_each_address_and_follows_a_307(setup: Setup) -> None:
    leader, standby = setup.leader.url, setup.standby.url
    # A write and the reads after it (--wait): past a dead address and a 503, then along a
    # standby's 307 to the leader, token and all.
    before = setup.standby.hits
    done = cli(f"{DEAD},{setup.no_leader.url},{standby}", "run", "--wait", "--", "true")
    assert done.returncode == 0, done.stderr
    task_id, state = done.stdout.split()[:2]
    assert state == "Completed"
    assert setup.standby.with_token == setup.standby.hits == before + 1  # then the leader
    listed = cli(f"{DEAD},{leader}", "ps", "--json")
    assert listed.returncode == 0, listed.stderr
    assert task_id in {t["ID"] for t in json.loads(listed.stdout)}
    events = cli(standby, "events", "--json", "--task", task_id[:8])  # a stream, with a query
    assert events.returncode == 0, events.stderr
    types = [json.loads(line)["Event"]["Type"] for line in events.stdout.splitlines()]
    assert types[0] == "TaskSubmitted" and types[-1] == "TaskExited", types


def test_the_cli_fails_3_only_when_no_address_answers(setup: Setup) -> None:
    other = f"http://127.0.0.1:{free_port()}"
    gone = cli(f"{DEAD},{other}", "ps")
    assert gone.returncode == 3
    lines = gone.stderr.strip().splitlines()
    assert len(lines) == 1, gone.stderr
    assert lines[0].startswith(
        f"orc: cannot reach orc at {DEAD} (ConnectError), {other} (ConnectError); is it running?"
    ), lines
    no_leader = cli(f"{DEAD},{setup.no_leader.url}", "ps")
    assert no_leader.returncode == 1
    assert no_leader.stderr.strip() == "orc: 503: no leader; try again soon"
    bad = cli(f"{setup.leader.url},localhost:8000", "ps")
    assert bad.returncode == 2 and "got 'localhost:8000'" in bad.stderr


def test_a_worker_moves_on_when_its_manager_dies(setup: Setup) -> None:
    first, second, w1 = setup.other, setup.leader, setup.direct
    wait(said(w1, f"registered with manager {first.url} as w1"), message="w1 on m2", log=w1)
    first.kill()
    # ConnectError, or ReadError when a heartbeat was on its way as the manager died
    moved = f"registered with manager {second.url} as w1 (after {first.url}: "
    wait(said(w1, moved), message="w1 moves to m1", log=w1)
    wait(lambda: nodes(second.url).get("w1", {}).get("State") == "up", message="w1 up on m1")


def test_real_standbys_and_a_failover(tmp_path: Path) -> None:
    if ETCD is None:
        if os.environ.get("ORC_REQUIRE_ETCD") == "1":
            pytest.fail("ORC_REQUIRE_ETCD=1 but no etcd is installed (Debian: etcd-server)")
        pytest.skip("no etcd installed (set ORC_REQUIRE_ETCD=1 to fail instead)")
    c = HaCluster(tmp_path, etcd=1, managers=2, workers=1, lease_ttl=2, token=TOKEN)
    with c:
        lead = c.wait_leader()
        standby = next(m for m in c.managers if m is not lead)
        w1 = c.workers[0]
        wait(said(w1, f"registered with manager {lead.url} as w1"), 5, "w1 on the leader", w1)
        done = cli(standby.url, "run", "--wait", "--", "true")  # along the standby's 307
        assert done.returncode == 0, done.stderr

        c.kill(lead)
        new = c.wait_leader(10, other_than=lead)
        assert new is standby
        c.wait_nodes(10)
        wait(said(w1, f"registered with manager {new.url} as w1"), 5, "w1 on the new", w1)
        done = cli(",".join(c.manager_urls), "run", "--wait", "--", "true")  # past the dead
        assert done.returncode == 0, done.stderr
