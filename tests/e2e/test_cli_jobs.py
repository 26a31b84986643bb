"""`orc job ...` driven as a user drives it: one real orc for the module, the CLI as a
subprocess, its output, exit statuses and error lines (one line on stderr, no traceback)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orc.cmd.main import main
from tests.conftest import ROOT, OrcProcess, orc_env, run_cli

JOB = """\
ID = "sleepers"
Name = "two sleepers"
Count = 2

[Task]
Cmd = ["sleep", "30"]
"""


class Cli:
    def __init__(self, addr: str, env: dict[str, str]) -> None:
        self.addr, self.env = addr, env

    def __call__(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env={**self.env, "ORC_ADDR": self.addr}, timeout=timeout)


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    tmp = tmp_path_factory.mktemp("cli-jobs")
    env = {**os.environ, **orc_env(tmp / "data"), "PYTHONPATH": str(ROOT)}
    env.pop("ORC_TOKEN", None)
    orc = OrcProcess([], env, "Starting Orc manager")
    orc.start()
    try:
        yield Cli(f"http://127.0.0.1:{env['ORC_MANAGER_PORT']}", env)
    finally:
        orc.kill()


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("orc: "), stderr
    return lines[0]


def _running(cli: Cli, job_id: str, count: int) -> dict:
    """Polls the API itself: a CLI call costs half a second, and the suite's budget is tight."""
    deadline = time.monotonic() + 10
    while True:
        view = httpx.get(f"{cli.addr}/jobs/{job_id}", timeout=10).json()
        if view["Tasks"]["Running"] == count and view["Tasks"]["Pending"] == 0:
            return view
        assert time.monotonic() < deadline, view
        time.sleep(0.1)


def test_run_status_plan_scale_versions_stop(cli: Cli, tmp_path: Path) -> None:
    spec = tmp_path / "sleepers.toml"
    spec.write_text(JOB)
    done = cli("job", "run", "--detach", str(spec))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:3] == ["sleepers", "version", "0"], done.stdout

    _running(cli, "sleepers", 2)
    table = cli("job", "status")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.strip().splitlines()
    assert header.split() == ["ID", "TYPE", "STATUS", "VERSION", "RUNNING", "DEPLOYMENT", "WAITING"]
    assert rows[0].split()[:5] == ["sleepers", "service", "running", "0", "2/2"], rows

    details = cli("job", "status", "sleepers")
    assert details.returncode == 0, details.stderr
    assert "two sleepers" in details.stdout and "deployment of version 0" in details.stdout
    tasks = details.stdout.split("tasks:\n")[1].strip().splitlines()
    assert tasks[0].split() == ["ID", "SLOT", "VERSION", "STATE", "NODE", "RESTARTS", "AGE"]
    assert [r.split()[1:5] for r in tasks[1:]] == [
        ["0", "0", "Running", "worker-1"],
        ["1", "0", "Running", "worker-1"],
    ]

    spec.write_text(JOB.replace("Count = 2", "Count = 3"))
    plan = cli("job", "plan", str(spec))
    assert plan.returncode == 0, plan.stderr
    assert "job sleepers: version 1" in plan.stdout and "  Count: 2 -> 3" in plan.stdout
    placements = plan.stdout.split("placements:\n")[1].strip().splitlines()
    assert placements[0].split() == ["TASK", "SLOT", "NODE"]
    assert placements[1].split()[1:] == ["2", "worker-1"], plan.stdout

    scaled = cli("job", "scale", "sleepers", "3")
    assert scaled.returncode == 0 and "count 2 -> 3" in scaled.stdout, scaled.stderr
    _running(cli, "sleepers", 3)

    versions = cli("job", "versions", "sleepers")
    assert versions.returncode == 0, versions.stderr
    assert versions.stdout.splitlines()[1].split()[0] == "0"
    assert "current" in versions.stdout and "submitted" in versions.stdout

    stopped = cli("job", "stop", "sleepers")
    assert stopped.returncode == 0 and "stopping its tasks" in stopped.stdout, stopped.stderr
    assert json.loads(cli("job", "status", "sleepers", "--json").stdout)["Status"] == "stopped"
    assert [t["JobID"] for t in httpx.get(f"{cli.addr}/tasks").json()] == ["sleepers"] * 3

    story = cli("job", "history", "sleepers")
    assert story.returncode == 0, story.stderr
    assert "job sleepers 'two sleepers' (service)" in story.stdout
    assert "VERSIONS (1)" in story.stdout
    assert "scaled from 2 to 3 by request" in story.stdout
    never = cli("job", "revert", "sleepers", "7")
    assert never.returncode == 1 and "404: job sleepers has no version 7" in _one_line(never.stderr)


def test_run_watches_the_rollout_until_it_succeeds(cli: Cli, tmp_path: Path) -> None:
    spec = tmp_path / "quick.json"
    quick = {
        "ID": "quick",
        "Task": {"Cmd": ["sleep", "30"]},
        "Update": {"MinHealthyTime": 0.5},
    }
    spec.write_text(json.dumps(quick))
    done = cli("job", "run", str(spec))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("quick version 0")
    assert done.stdout.strip().endswith("quick version 0: deployment successful"), done.stdout
    assert cli("job", "stop", "quick").returncode == 0


def test_a_bad_file_or_id_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In process (`main`, as `python -m orc` calls it): these never reach a server."""
    bad = tmp_path / "bad.toml"
    bad.write_text('ID = "x"\nCount = \n')
    assert main(["job", "run", str(bad)]) == 2
    said = _one_line(capsys.readouterr().err)
    assert "bad.toml is not valid TOML" in said and "line 2" in said
    broken = tmp_path / "bad.json"
    broken.write_text('{"ID": "x",\n "Count": }')
    assert main(["job", "plan", str(broken)]) == 2
    assert "is not valid JSON" in (said := _one_line(capsys.readouterr().err)) and "line 2" in said
    assert main(["job", "run", str(tmp_path / "none.toml")]) == 2
    assert "cannot read" in _one_line(capsys.readouterr().err)
    no_id = tmp_path / "no-id.toml"
    no_id.write_text('[Task]\nCmd = ["true"]\n')
    assert main(["job", "plan", str(no_id)]) == 2
    assert "the job has no ID" in _one_line(capsys.readouterr().err)
    assert main(["job", "versions", "not/an/id"]) == 2
    assert "is not a job ID" in _one_line(capsys.readouterr().err)
    assert main(["job", "revert", "web", "-1"]) == 2  # an option, to the parser
    assert "No such option: -1" in _one_line(capsys.readouterr().err)
    assert main(["job", "revert", "web", "--", "-1"]) == 2
    assert "VERSION must be 0 or more, got -1" in _one_line(capsys.readouterr().err)
    assert main(["job", "status", "--addr", "http://127.0.0.1:9"]) == 3  # nothing listens
    assert "cannot reach orc at http://127.0.0.1:9" in _one_line(capsys.readouterr().err)
    assert main(["job", "--help"]) == 0
    assert "Examples: `orc job run web.toml`" in capsys.readouterr().out


def test_errors_from_orc_are_one_line_with_status_1(cli: Cli, tmp_path: Path) -> None:

    refused = tmp_path / "refused.toml"
    refused.write_text('ID = "x"\nCount = -1\n[Task]\nCmd = ["true"]\n')
    done = cli("job", "run", str(refused))
    assert done.returncode == 1
    assert "400: Job.Count: must be a whole number from 0 to 10000" in _one_line(done.stderr)
    unknown = cli("job", "scale", "nope", "2")
    assert unknown.returncode == 1 and "404: no job with ID nope" in _one_line(unknown.stderr)
    untold = cli("job", "history", "nope")
    assert untold.returncode == 1 and "404: no job with ID nope" in _one_line(untold.stderr)
