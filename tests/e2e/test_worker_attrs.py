"""`orc worker --attr`: the flags, over ORC_WORKER_ATTRS, reach the manager's `GET /nodes` and
the `orc nodes` table; a bad one is a usage error naming the flag (or the setting)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from orc.cmd import client
from orc.cmd.main import main
from tests.conftest import ROOT, OrcProcess, free_port, orc_env


def test_attr_flags_over_the_setting_reach_get_nodes_and_orc_nodes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = orc_env(tmp_path / "m", ORC_NODE_TTL="3", ORC_WORKER_ATTRS="rack=b,os=linux")
    env = {**os.environ, **base, "PYTHONPATH": str(ROOT)}
    url = f"http://127.0.0.1:{base['ORC_MANAGER_PORT']}"
    manager = OrcProcess(["manager"], env, "Starting Orc manager")
    args = ["worker", "--manager", url, "--host", "127.0.0.1", "--port", str(free_port())]
    args += ["--name", "w1", "--data-dir", str(tmp_path / "w")]
    args += ["--attr", "rack=a", "--attr", "zone=z1"]
    worker = OrcProcess(args, env, "Starting Orc worker")
    try:
        manager.start()
        worker.start()
        assert "Orc worker w1 attributes: rack=a,os=linux,zone=z1\n" in worker.lines
        deadline = time.monotonic() + 10
        while not (nodes := httpx.get(f"{url}/nodes", timeout=5).json()):
            assert time.monotonic() < deadline, "w1 never registered"
            time.sleep(0.05)
        assert nodes[0]["Name"] == "w1"
        assert nodes[0]["Attrs"] == {"rack": "a", "os": "linux", "zone": "z1"}
        capsys.readouterr()
        monkeypatch.setattr(client, "out", Console(width=200, highlight=False, soft_wrap=True))
        assert main(["nodes", "--addr", url]) == 0
        table = capsys.readouterr().out
        assert "ATTRS" in table and "rack=a,os=linux,zone=z1" in table
    finally:
        worker.kill()
        manager.kill()


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--attr", "rack"], "Invalid value for '--attr': expected KEY=VALUE, got 'rack'"),
        (["--attr", "rack=a", "--attr", "node=x"], "attribute 'node' is built in"),
        (["--attr", "1x=a"], "Invalid value for '--attr': attribute name '1x'"),
    ],
)
def test_a_bad_attr_flag_is_a_usage_error_naming_it(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["worker", *argv]) == 2
    err = capsys.readouterr().err
    assert said in err and "--attr" in err, err


def test_a_bad_ORC_WORKER_ATTRS_is_a_usage_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ORC_WORKER_ATTRS", "rack=a,zone")
    assert main(["worker"]) == 2
    err = capsys.readouterr().err
    assert "orc: setting ORC_WORKER_ATTRS='rack=a,zone': expected KEY=VALUE, got 'zone'" in err
