"""The `orc` client commands, driven as a user drives them: a real orc, the CLI as a subprocess,
its output, exit statuses and error lines (one line on stderr, never a traceback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, OrcProcess, orc_env, run_cli


class Cli:
    def __init__(self, addr: str, env: dict[str, str]) -> None:
        self.addr, self.env = addr, env

    def __call__(
        self, *args: str, token: str | None = None, addr: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "ORC_ADDR": addr or self.addr}
        if token is not None:
            env["ORC_TOKEN"] = token
        return run_cli(*args, env=env, timeout=timeout)


def _start(tmp_path: Path, **settings: str) -> tuple[OrcProcess, Cli]:
    env = {**os.environ, **orc_env(tmp_path / "data", **settings), "PYTHONPATH": str(ROOT)}
    if "ORC_TOKEN" not in settings:
        env.pop("ORC_TOKEN", None)
    orc = OrcProcess([], env, "Starting Orc manager")
    orc.start()
    cli_env = {k: v for k, v in env.items() if k != "ORC_TOKEN"}
    return orc, Cli(f"http://127.0.0.1:{env['ORC_MANAGER_PORT']}", cli_env)


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    orc, client = _start(tmp_path)
    yield client
    orc.kill()


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("orc: "), stderr
    return lines[0]


def test_run_wait_ps_status_logs_history(cli: Cli) -> None:
    done = cli("run", "--name", "hello", "--wait", "--", "sh", "-c", "echo hi; echo oops >&2")
    assert done.returncode == 0, done.stderr
    task_id, state = done.stdout.split()[:2]
    assert state == "Completed"
    prefix = task_id[:6]

    ps = cli("ps")
    assert ps.returncode == 0
    header, *rows = ps.stdout.strip().splitlines()
    assert header.split() == ["ID", "NAME", "STATE", "NODE", "RESTARTS", "AGE"]
    assert any(r.split()[:4] == [task_id[:8], "hello", "Completed", "worker-1"] for r in rows)
    listed = json.loads(cli("ps", "--json").stdout)
    assert [t["ID"] for t in listed] == [task_id] and listed[0]["StateName"] == "Completed"
    assert json.loads(cli("ps", "--json", "--state", "Running").stdout) == []

    status = cli("status", prefix)
    assert status.returncode == 0 and task_id in status.stdout and "Completed" in status.stdout
    assert json.loads(cli("status", prefix, "--json").stdout)["ID"] == task_id

    logs = cli("logs", prefix)
    assert (logs.returncode, logs.stdout, logs.stderr) == (0, "hi\n", "oops\n")

    history = cli("history", prefix)
    assert history.returncode == 0
    for word in ("submitted", "scheduled", "started", "exited", "exit 0"):
        assert word in history.stdout
    story = json.loads(cli("history", prefix, "--json").stdout)
    assert [r["to"] for r in story["rows"]] == ["Pending", "Scheduled", "Running", "Completed"]


def test_a_failing_task_exits_1_and_says_why(cli: Cli) -> None:
    done = cli("run", "--wait", "--", "sh", "-c", "exit 3")
    assert done.returncode == 1
    assert "failed: exited with status 3" in _one_line(done.stderr)
    assert "Failed (exit 3)" in done.stdout


def test_stop_by_prefix_ends_the_task(cli: Cli) -> None:
    done = cli("run", "--wait", "--", "sleep", "60")
    assert done.returncode == 0 and "Running" in done.stdout
    task_id = done.stdout.split()[0]
    stopped = cli("stop", task_id[:7])
    assert stopped.returncode == 0 and task_id in stopped.stdout
    deadline = time.monotonic() + 20
    while json.loads(cli("status", task_id, "--json").stdout)["State"] != 3:
        assert time.monotonic() < deadline, "the task did not end"
        time.sleep(0.2)


def test_a_task_file_in_toml_and_nodes_and_events(cli: Cli, tmp_path: Path) -> None:
    task = tmp_path / "task.toml"
    task.write_text('Name = "from-toml"\nCmd = ["sh", "-c", "echo toml"]\nEnv = ["A=1"]\n')
    done = cli("run", "-f", str(task), "--wait", "--json")
    assert done.returncode == 0, done.stderr
    recorded = json.loads(done.stdout)
    assert recorded["Name"] == "from-toml" and recorded["Env"] == ["A=1"]

    nodes = cli("nodes")
    assert nodes.returncode == 0 and "worker-1" in nodes.stdout and "up" in nodes.stdout
    assert json.loads(cli("nodes", "--json").stdout)[0]["Name"] == "worker-1"

    events = cli("events")  # everything so far, then it returns
    assert events.returncode == 0
    assert "TaskSubmitted" in events.stdout and "TaskExited" in events.stdout
    lines = [json.loads(line) for line in cli("events", "--json").stdout.splitlines()]
    seqs = [line["Seq"] for line in lines]
    assert seqs == sorted(seqs) and seqs[0] == 1
    later = [
        json.loads(line) for line in cli("events", "--json", "--after", "3").stdout.splitlines()
    ]
    assert later[0]["Seq"] == 4


def test_events_follow_and_logs_follow_see_what_happens_next(cli: Cli) -> None:
    env = {**cli.env, "ORC_ADDR": cli.addr}
    follower = subprocess.Popen(
        [sys.executable, "-m", "orc", "events", "-f", "--json"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)  # the follower is connected
        done = cli("run", "--", "sh", "-c", "echo one; sleep 1; echo two")
        task_id = done.stdout.strip()
        logs = cli("logs", "-f", task_id)  # returns once the task has ended
        assert logs.returncode == 0 and logs.stdout == "one\ntwo\n"
        seen = []
        assert follower.stdout is not None
        for line in follower.stdout:
            event = json.loads(line)["Event"]
            seen.append(event["Type"])
            if event["Type"] == "TaskExited":
                break
        assert seen[-4:] == ["TaskSubmitted", "TaskScheduled", "TaskStarted", "TaskExited"]
    finally:
        follower.kill()
        follower.wait()


def test_errors_are_one_line_with_the_right_status(cli: Cli) -> None:
    refused = cli("run", "--cpu", "5000", "--", "true")
    assert refused.returncode == 1
    assert "400: Task.CPU: must be a finite number between 0 and 1024" in _one_line(refused.stderr)
    unknown = cli("status", "ffff")
    assert unknown.returncode == 1 and "no task with an ID starting 'ffff'" in unknown.stderr
    usage = cli("ps", "--state", "Sleeping")
    assert usage.returncode == 2 and "unknown state 'Sleeping'" in _one_line(usage.stderr)
    assert cli("frobnicate").returncode == 2
    assert cli("run").returncode == 2  # nothing to run
    gone = cli("ps", addr="http://127.0.0.1:9")
    assert gone.returncode == 3
    assert "cannot reach orc at http://127.0.0.1:9" in _one_line(gone.stderr)
    assert cli("--help").stdout.count("Example") >= 1
    for command in ("run", "ps", "status", "stop", "logs", "history", "nodes", "events"):
        assert "Example" in cli(command, "--help").stdout, command


def test_the_token_is_asked_for_and_taken_from_the_environment_or_a_flag(
    tmp_path: Path,
) -> None:
    orc, cli = _start(tmp_path, ORC_TOKEN="s3cret")
    try:
        denied = cli("ps")
        assert denied.returncode == 1
        assert "401" in denied.stderr and "ORC_TOKEN" in _one_line(denied.stderr)
        assert cli("ps", token="s3cret").returncode == 0
        assert cli("ps", "--token", "s3cret").returncode == 0
    finally:
        orc.kill()
