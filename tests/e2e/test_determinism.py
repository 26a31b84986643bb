"""`orc replay --check` recomputes the manager's recorded state digests: a changed `apply`
shows up as the first divergence, with the events that lie before it."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

import orc.core.state
from orc.cmd.main import main
from orc.core.events import TaskExited
from tests.shell.test_snapshots import _run_tasks


def _exit_forgetting_the_code(state: orc.core.state.ClusterState, e: TaskExited) -> None:
    """Like the real handler, but drops the exit code: the bug a refactor might bring."""
    orc.core.state._exited(state, msgspec.structs.replace(e, exit_code=None))


async def test_digests_hold_then_a_changed_apply_diverges(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    log_dir = await _run_tasks(tmp_path, 4, ORC_DIGEST_EVERY="3", ORC_SNAPSHOT_EVERY="0")
    assert main(["replay", str(log_dir), "--check"]) == 0
    capsys.readouterr()

    monkeypatch.setitem(orc.core.state._HANDLERS, TaskExited, _exit_forgetting_the_code)
    assert main(["replay", str(log_dir), "--check"]) == 1
    out = capsys.readouterr().out
    assert "digest" in out and "first divergence: between seq" in out
    assert " exited" in out.split("first divergence")[1].splitlines()[0], out
