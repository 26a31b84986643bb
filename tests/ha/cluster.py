"""A highly available orc on real processes, for the HA tests and the benchmarks: N etcd members,
M `orc manager --etcd ...` processes and W `orc worker --manager <every manager>` processes, on
free ports, each with its own data dir and its output in a file beside it (`<name>.log`: read
`HaCluster.logs()` when something went wrong).

    from tests.ha.cluster import HaCluster

    with HaCluster(tmp_path, etcd=3, managers=3, workers=2) as c:   # started, leader elected
        old = c.wait_leader()
        ids = c.submit(10)
        c.kill(old)                                   # SIGKILL; c.kill(old, signal.SIGSTOP) ...
        new = c.wait_leader(other_than=old)
        c.wait_states(ids, {2})
        c.restart(old)                                # same args, ports and data dir

From a benchmark: `sys.path.insert(0, ROOT)` first (as bench/jobs.py does for tests/core), and
give `env={"ORC_LOG_LEVEL": "WARNING"}` for quiet logs.

Every process is killed on `stop()` (and on leaving the `with`), and so are the tasks' processes
(whatever runs in a working directory under the cluster's directory). Nothing here needs
pytest: without etcd installed, `HaCluster.start` raises `NoEtcd`, and with managers that
serve no `GET /cluster`, `NotHa` (tests skip on either).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import psutil

from tests.conftest import ROOT, free_port, orc_env

ETCD = shutil.which("etcd")
REDIRECTS = 3
_NO_WAIT = {signal.SIGSTOP, signal.SIGCONT, signal.SIGTSTP}  # the process lives on


class NoEtcd(RuntimeError):
    """No `etcd` binary is installed (Debian: etcd-server)."""


class Proc:
    """One child process whose output goes to `<dir>/<name>.log`; `start` again (same argv,
    environment, ports and data dir) after a kill to restart it."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.argv, self.env, self.log = name, argv, env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {'alive' if self.alive else 'dead'}>"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def spawn(self) -> None:
        """Start it, without waiting until it is ready (`start` waits)."""
        if self.alive:
            raise RuntimeError(f"{self.name} runs already")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"---- start {self.starts + 1}: {' '.join(self.argv)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1

    def ready(self) -> bool:
        raise NotImplementedError

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if not self.alive:
                raise AssertionError(f"{self.name} exited early:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not start in {timeout:g}s:\n{self.tail()}")
            time.sleep(0.05)

    def start(self, timeout: float = 30.0) -> None:
        self.spawn()
        self.wait_ready(timeout)

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 30.0) -> int | None:
        """Send `sig` if it runs; unless it is SIGSTOP, SIGTSTP or SIGCONT, wait for it to
        exit (SIGKILL after `timeout`). Its exit status, None while it lives on."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            if sig not in _NO_WAIT and sig != signal.SIGKILL:
                self.proc.send_signal(signal.SIGCONT)  # a stopped process cannot handle TERM
            self.proc.send_signal(sig)
        if sig in _NO_WAIT:
            return self.proc.poll()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)

    def tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""


def _answers(url: str, timeout: float = 1.0) -> bool:
    """Whether an HTTP server answers at `url` (any status)."""
    try:
        httpx.get(url, timeout=timeout)
    except httpx.HTTPError:
        return False
    return True


class EtcdMember(Proc):
    """One etcd member: fast heartbeats and elections (50 ms, 500 ms), as tests/ha/conftest.py
    starts them; a restart keeps its data dir (etcd then ignores the --initial-* flags)."""

    def __init__(self, name: str, tmp: Path, initial: Callable[[], str]) -> None:
        self.client_url = f"http://127.0.0.1:{free_port()}"
        self.peer_url = f"http://127.0.0.1:{free_port()}"
        self.data_dir = tmp / f"etcd-{name}"
        self._initial = initial
        super().__init__(name, [], dict(os.environ), tmp / f"etcd-{name}.log")

    def spawn(self) -> None:
        if ETCD is None:
            raise NoEtcd("no etcd installed (Debian: etcd-server)")
        self.argv = [
            ETCD,
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.client_url}",
            f"--advertise-client-urls={self.client_url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={self._initial()}",
            "--initial-cluster-state=new",
            "--heartbeat-interval=50",
            "--election-timeout=500",
            "--log-level=warn",
        ]
        super().spawn()

    def status(self, timeout: float = 1.0) -> dict[str, Any] | None:
        """Its `/v3/maintenance/status` (None when it does not answer): `leader` and
        `header.member_id` are decimal strings."""
        try:
            r = httpx.post(f"{self.client_url}/v3/maintenance/status", json={}, timeout=timeout)
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None

    def ready(self) -> bool:
        """It answers, and knows a leader (a restarted member of a cluster with quorum)."""
        status = self.status()
        return bool(status and status.get("leader"))


class Served(Proc):
    """An orc process serving HTTP at `url` on its data dir; ready once `READY` answers."""

    READY = "/"

    def __init__(
        self, name: str, url: str, data_dir: Path, argv: list[str], env: dict[str, str]
    ) -> None:
        super().__init__(name, argv, env, data_dir.parent / f"{name}.log")
        self.url, self.data_dir = url, data_dir

    def ready(self) -> bool:
        return _answers(f"{self.url}{self.READY}")


class Manager(Served):
    READY = "/cluster"


class Worker(Served):
    READY = "/node"


class HaCluster:
    """etcd members `etcd[i]` (e1..), managers `managers[i]` (m1..), workers `workers[i]`
    (w1..) under `tmp`. `lease_ttl` is ORC_LEASE_TTL (how soon a dead leader is replaced),
    `node_ttl` ORC_NODE_TTL; `env` adds or overrides settings of every orc process."""

    def __init__(
        self,
        tmp: Path,
        *,
        etcd: int = 3,
        managers: int = 3,
        workers: int = 1,
        lease_ttl: int = 2,
        node_ttl: float = 1.0,
        token: str = "",
        env: dict[str, str] | None = None,
    ) -> None:
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.etcd = [EtcdMember(f"e{i + 1}", tmp, self._initial_cluster) for i in range(etcd)]
        settings = {
            "ORC_ETCD_ENDPOINTS": ",".join(m.client_url for m in self.etcd),
            "ORC_LEASE_TTL": str(lease_ttl),
            "ORC_NODE_TTL": f"{node_ttl:g}",
            "ORC_STOP_GRACE": "1",
            **({"ORC_TOKEN": token} if token else {}),
            **(env or {}),
        }
        base = {k: v for k, v in os.environ.items() if k != "ORC_TOKEN"}
        self.settings = settings
        self.managers = [self._manager(i, base, settings) for i in range(managers)]
        self.workers = [self._worker(i, base, settings) for i in range(workers)]
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(headers=headers, timeout=5)
        self.started = False

    def _initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.etcd)

    def _manager(self, i: int, base: dict[str, str], settings: dict[str, str]) -> Manager:
        name, data_dir = f"m{i + 1}", self.tmp / f"m{i + 1}"
        env = {**base, **orc_env(data_dir, **settings), "PYTHONPATH": str(ROOT)}
        port = env["ORC_MANAGER_PORT"]
        argv = [sys.executable, "-m", "orc", "manager", "--name", name]
        argv += ["--host", "127.0.0.1", "--port", port, "--data-dir", str(data_dir)]
        return Manager(name, f"http://127.0.0.1:{port}", data_dir, argv, env)

    def _worker(self, i: int, base: dict[str, str], settings: dict[str, str]) -> Worker:
        name, data_dir = f"w{i + 1}", self.tmp / f"w{i + 1}"
        env = {**base, **orc_env(data_dir, **settings), "PYTHONPATH": str(ROOT)}
        port = env["ORC_WORKER_PORT"]
        argv = [sys.executable, "-m", "orc", "worker", "--manager", ",".join(self.manager_urls)]
        argv += ["--name", name, "--host", "127.0.0.1", "--port", port]
        argv += ["--data-dir", str(data_dir)]
        return Worker(name, f"http://127.0.0.1:{port}", data_dir, argv, env)

    # -- the whole cluster ---------------------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        """etcd's client URLs (ORC_ETCD_ENDPOINTS)."""
        return [m.client_url for m in self.etcd]

    @property
    def manager_urls(self) -> list[str]:
        return [m.url for m in self.managers]

    @property
    def procs(self) -> list[Proc]:
        return [*self.workers, *self.managers, *self.etcd]

    def start(self, timeout: float = 30.0) -> HaCluster:
        """etcd (every member spawned, then each waited for), the managers (until a leader is
        elected), the workers (until each is up on the leader)."""
        self.started = True
        try:
            for member in self.etcd:
                member.spawn()
            for member in self.etcd:
                member.wait_ready(timeout)
            for manager in self.managers:
                manager.spawn()
            for manager in self.managers:
                manager.wait_ready(timeout)
            if self.managers:
                self.wait_leader(timeout)
            for worker in self.workers:
                worker.spawn()
            for worker in self.workers:
                worker.wait_ready(timeout)
            if self.workers and self.managers:
                self.wait_nodes(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Kill every process (SIGKILL), and every task process: whatever runs in a working
        directory under `tmp`."""
        for p in self.procs:
            p.kill()
        for task in psutil.process_iter(["cwd"]):
            try:
                if (task.info["cwd"] or "").startswith(str(self.tmp)):
                    task.kill()
            except psutil.Error:
                continue
        self.http.close()

    def __enter__(self) -> HaCluster:
        return self if self.started else self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def kill(self, proc: Proc, sig: int = signal.SIGKILL) -> int | None:
        """Signal one process (an etcd member, a manager or a worker); wait for it to exit
        unless `sig` is SIGSTOP, SIGTSTP or SIGCONT. Its exit status."""
        return proc.kill(sig)

    def restart(self, proc: Proc, timeout: float = 30.0) -> None:
        """Kill it if it runs, then start it again as it was; wait until it serves (an etcd
        member: until it knows a leader)."""
        proc.kill()
        proc.start(timeout)

    def logs(self, chars: int = 3000) -> str:
        """The end of every process's output, for an assertion's message."""
        return "\n".join(f"==== {p.name}\n{p.tail(chars)}" for p in self.procs)

    def wait(self, what: Callable[[], object], timeout: float = 15.0, message: str = "") -> Any:
        """Poll `what` until it is true (errors reaching a manager count as false); its value."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                got = what()
            except (httpx.HTTPError, NoAnswer):
                got = None
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g}s waiting: {message}")
            time.sleep(0.05)

    # -- etcd ----------------------------------------------------------------------------------

    def etcd_leader(self) -> EtcdMember | None:
        """The member that leads etcd: the one whose status's `leader` is its own member ID."""
        for member in self.etcd:
            if not member.alive:
                continue
            status = member.status()
            if status and status.get("leader") == status.get("header", {}).get("member_id"):
                return member
        return None

    # -- managers ------------------------------------------------------------------------------

    def live_managers(self) -> list[Manager]:
        return [m for m in self.managers if m.alive]

    def manager(self, name: str) -> Manager | None:
        return next((m for m in self.managers if m.name == name), None)

    def view(self, manager: Manager | None = None) -> dict[str, Any] | None:
        """`GET /cluster` of `manager`, or of the first live manager that answers it; None
        when none does. `NotHa` when one has no such route (an orc before issue 16)."""
        for m in [manager] if manager else self.live_managers():
            try:
                r = self.http.get(f"{m.url}/cluster")
            except httpx.HTTPError:
                continue
            if r.status_code == 404:
                raise NotHa(f"{m.name} answers GET /cluster with 404: {r.text.strip()}")
            if r.status_code == 200:
                body: dict[str, Any] = r.json()
                return body
        return None

    def leader(self) -> Manager | None:
        """The manager that leads, as any live manager's `GET /cluster` names it (None when
        none is known, or the one named is not one of these)."""
        view = self.view()
        named = (view or {}).get("Leader") or {}
        return self.manager(named.get("Name", "")) if named else None

    def wait_leader(self, timeout: float = 15.0, other_than: Manager | None = None) -> Manager:
        """Until a live manager (not `other_than`) says that it leads, itself, in its own
        `GET /cluster`; that manager."""

        def leading() -> Manager | None:
            for m in self.live_managers():
                if m is other_than:
                    continue
                named = ((self.view(m) or {}).get("Leader") or {}).get("Name")
                if named == m.name:
                    return m
            return None

        found: Manager = self.wait(
            leading, timeout, f"a leader{f' other than {other_than.name}' if other_than else ''}"
        )
        return found

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float = 10.0,
        leader_first: bool = False,
    ) -> httpx.Response:
        """`method path` on the managers as a client with the whole list does it: each live
        manager in turn (the leader first with `leader_first`, so that a read sees every write
        acknowledged before it), past connection errors and 503s, following 307s by hand
        (with the token), again and again until `timeout`; then the last 503, or `NoAnswer`.
        A request may reach a manager that dies before answering and be sent again: make
        writes idempotent (tasks with their IDs)."""
        deadline = time.monotonic() + timeout
        busy: httpx.Response | None = None
        while True:
            lead = self.leader() if leader_first else None
            for m in sorted(self.live_managers(), key=lambda m: m is not lead):
                url = m.url + path
                for _ in range(REDIRECTS):
                    try:
                        r = self.http.request(method, url, json=json, params=params)
                    except httpx.TransportError:
                        break
                    location = r.headers.get("location")
                    if r.status_code in (307, 308) and location:
                        url = str(r.url.join(location))
                        continue
                    if r.status_code == 503:
                        busy = r
                        break
                    return r
            if time.monotonic() > deadline:
                if busy is not None:
                    return busy
                raise NoAnswer(f"no manager answered {method} {path} in {timeout:g}s")
            time.sleep(0.05)

    def get(self, path: str, **kw: Any) -> Any:
        """The JSON of a `GET path` that answered 200 (AssertionError otherwise)."""
        r = self.request("GET", path, **kw)
        assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text}"
        return r.json()

    # -- tasks and nodes -----------------------------------------------------------------------

    def submit(
        self,
        n: int = 1,
        cmd: Sequence[str] = ("sleep", "60"),
        *,
        restart: str = "",
        name: str = "ha",
        timeout: float = 10.0,
    ) -> list[str]:
        """Submit `n` process tasks (each with its own ID, so that sending one again is
        harmless), one request each; their IDs, once each is acknowledged (201)."""
        ids = []
        for _ in range(n):
            task_id = str(uuid.uuid4())
            task = {"ID": task_id, "Name": name, "Cmd": list(cmd), "RestartPolicy": restart}
            body = {"ID": task_id, "State": 2, "Task": task}
            r = self.request("POST", "/tasks", json=body, timeout=timeout)
            assert r.status_code == 201, f"POST /tasks: {r.status_code} {r.text}"
            ids.append(task_id)
        return ids

    def tasks(self, leader_first: bool = True) -> dict[str, dict[str, Any]]:
        """Every task by ID (from the leader when one is known: a standby may lag)."""
        return {t["ID"]: t for t in self.get("/tasks", leader_first=leader_first)}

    def nodes(self, leader_first: bool = True) -> dict[str, dict[str, Any]]:
        """Every worker node by name, as `GET /nodes` shows it."""
        return {n["Name"]: n for n in self.get("/nodes", leader_first=leader_first)}

    def wait_nodes(
        self, timeout: float = 15.0, names: Iterable[str] | None = None
    ) -> dict[str, dict[str, Any]]:
        """Until the leader lists every worker (or `names`) up."""
        wanted = set(names) if names is not None else {w.name for w in self.workers}

        def up() -> dict[str, dict[str, Any]] | None:
            nodes = self.nodes()
            ok = all(nodes.get(n, {}).get("State") == "up" for n in wanted)
            return nodes if ok else None

        found: dict[str, dict[str, Any]] = self.wait(up, timeout, f"nodes {sorted(wanted)} up")
        return found

    def wait_states(
        self, ids: Iterable[str], states: set[int], timeout: float = 15.0
    ) -> dict[str, dict[str, Any]]:
        """Until every task of `ids` is in one of `states` (wire numbers: 2 Running, 3
        Completed, -1 Failed); the tasks."""
        wanted = list(ids)
        last: dict[str, dict[str, Any]] = {}

        def there() -> dict[str, dict[str, Any]] | None:
            nonlocal last
            last = self.tasks()
            ok = all(last.get(i, {}).get("State") in states for i in wanted)
            return last if ok else None

        try:
            found: dict[str, dict[str, Any]] = self.wait(there, timeout, f"states {states}")
        except AssertionError:
            seen = {i: last.get(i, {}).get("StateName", "unknown") for i in wanted}
            raise AssertionError(f"tasks not in {states} after {timeout:g}s: {seen}") from None
        return found


class NoAnswer(RuntimeError):
    """No manager answered in time."""


class NotHa(RuntimeError):
    """The managers serve no `GET /cluster`: they cannot run highly available."""
