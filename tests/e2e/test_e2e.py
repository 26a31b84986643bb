"""`orc` as a real subprocess on free ports: tasks, SIGKILL, restart, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import ROOT, OrcProcess, orc_env


class Orc(OrcProcess):
    """`orc` with no arguments (a manager and one worker) on free ports."""

    def __init__(self, data_dir: Path, **settings: str) -> None:
        env = {**os.environ, **orc_env(data_dir, **settings), "PYTHONPATH": str(ROOT)}
        super().__init__([], env, "Starting Orc manager")
        self.data_dir = data_dir
        self.url = f"http://127.0.0.1:{self.env['ORC_MANAGER_PORT']}"

    def post(self, cmd: list[str]) -> str:
        task_id = str(uuid.uuid4())
        body = {"ID": task_id, "State": 2, "Task": {"ID": task_id, "Name": "e2e", "Cmd": cmd}}
        r = httpx.post(f"{self.url}/tasks", json=body, timeout=10)
        assert r.status_code == 201, r.text
        return task_id

    def task(self, task_id: str) -> dict:
        r = httpx.get(f"{self.url}/tasks/{task_id}", timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def wait_for(self, task_id: str, state: int, timeout: float = 15) -> dict:
        deadline = time.monotonic() + timeout
        task: dict = {}
        while time.monotonic() < deadline:
            task = self.task(task_id)
            if task["State"] == state:
                return task
            time.sleep(0.05)
        raise AssertionError(f"task {task_id} never reached {state}: {task}")


@pytest.fixture
def orc(tmp_path: Path) -> Iterator[Orc]:
    node = Orc(tmp_path / "data")
    node.start()
    yield node
    if node.proc is not None and node.proc.poll() is None:
        node.kill(signal.SIGKILL)
    kill_task_processes(node.data_dir)


def kill_task_processes(data_dir: Path) -> None:
    """No task process (nor its shim) may outlive the test: they run in working directories
    under the data dir, and get nothing of orc's environment."""
    for p in psutil.process_iter(["cwd"]):
        try:
            if (p.info["cwd"] or "").startswith(str(data_dir)):
                p.kill()
        except psutil.Error:
            continue


def test_start_lines_are_the_seeds(orc: Orc) -> None:
    assert f"Starting Orc worker at 127.0.0.1:{orc.env['ORC_WORKER_PORT']}\n" in orc.lines
    assert f"Starting Orc manager at 127.0.0.1:{orc.env['ORC_MANAGER_PORT']}\n" in orc.lines


def test_tasks_survive_sigkill_and_restart(orc: Orc) -> None:
    ok = orc.post(["true"])
    bad = orc.post([sys.executable, "-c", "raise SystemExit(3)"])
    stopped = orc.post(["sleep", "60"])
    survivor = orc.post(["sleep", "60"])
    assert orc.wait_for(ok, 3)["ExitCode"] == 0
    assert orc.wait_for(bad, -1)["ExitCode"] == 3
    orc.wait_for(stopped, 2)
    pid_survivor = int(orc.wait_for(survivor, 2) and _pid(orc, survivor))
    assert httpx.delete(f"{orc.url}/tasks/{stopped}", timeout=10).status_code == 204
    orc.wait_for(stopped, 3)

    orc.kill(signal.SIGKILL)
    assert psutil.pid_exists(pid_survivor), "a task process should outlive orc's SIGKILL"
    orc.start()

    assert orc.task(ok)["State"] == 3
    assert orc.task(bad)["State"] == -1
    assert orc.task(bad)["ExitCode"] == 3
    assert orc.task(stopped)["State"] == 3
    # The still-running process was adopted, not duplicated, and can still be stopped.
    assert orc.wait_for(survivor, 2)["State"] == 2
    assert _pid(orc, survivor) == pid_survivor
    assert httpx.delete(f"{orc.url}/tasks/{survivor}", timeout=10).status_code == 204
    orc.wait_for(survivor, 3)
    assert not psutil.pid_exists(pid_survivor) or psutil.Process(pid_survivor).status() == "zombie"
    listed = {t["ID"] for t in httpx.get(f"{orc.url}/tasks", timeout=10).json()}
    assert listed == {ok, bad, stopped, survivor}


def test_task_that_died_while_orc_was_down_is_failed_with_reason(orc: Orc) -> None:
    task_id = orc.post(["sleep", "60"])
    orc.wait_for(task_id, 2)
    pid = _pid(orc, task_id)
    orc.kill(signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)
    orc.start()
    task = orc.wait_for(task_id, -1)
    # its shim outlived orc and recorded how it ended: the real status, not "unknown"
    assert (task["ExitCode"], task["Error"]) == (137, "killed by SIGKILL")


def test_sigterm_stops_tasks_and_closes_the_log(orc: Orc) -> None:
    task_id = orc.post(["sleep", "60"])
    orc.wait_for(task_id, 2)
    pid = _pid(orc, task_id)
    assert orc.kill(signal.SIGTERM) == 0
    assert "event log closed" in orc.output()
    assert not psutil.pid_exists(pid)
    orc.start()
    task = orc.task(task_id)
    assert task["State"] == -1
    assert task["Error"] == "stopped because orc shut down"


def _pid(orc: Orc, task_id: str) -> int:
    """The pid its shim recorded in the task's journal."""
    journal = Path(orc.env["ORC_DATA_DIR"]) / "tasks" / "worker-1" / task_id / "launch"
    runs = [line for line in journal.read_bytes().splitlines() if line.startswith(b'{"run":')]
    return json.loads(runs[-1])["run"]["pid"]


def test_a_relative_data_dir_runs_process_tasks(tmp_path: Path) -> None:
    """`make run` keeps its data in `./data`, a relative path (ORC_DATA_DIR's default): process
    tasks run there as with an absolute one (every launch failed when a shim, working in
    another directory, took the path as its own)."""
    relative = Path(os.path.relpath(tmp_path / "data", ROOT))
    assert not relative.is_absolute()
    node = Orc(relative)
    node.start()
    try:
        task_id = node.post(["sh", "-c", "echo hello from a relative data dir"])
        assert node.wait_for(task_id, 3)["ExitCode"] == 0
        logs = httpx.get(f"{node.url}/tasks/{task_id}/logs", timeout=10)
        assert "hello from a relative data dir" in logs.text
    finally:
        node.kill(signal.SIGKILL)
        kill_task_processes(tmp_path / "data")


def test_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        node = Orc(tmp_path / "data")
        node.env["ORC_MANAGER_PORT"] = str(port)
        result = subprocess.run(
            [sys.executable, "-m", "orc"],
            env=node.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"orc: cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr
