"""Snapshots and digests written by a running manager: start-up from a snapshot equals a full
replay, and every recorded digest matches the state replay rebuilds."""

from __future__ import annotations

import uuid
from pathlib import Path

import trio

from eventlog import EventLog
from orc.core.events import AnyEvent, StateDigest
from orc.core.snapshot import state_digest
from orc.core.state import ClusterState, apply
from orc.shell.recovery import load_state, recover
from tests.conftest import make_settings, running_cluster


async def _run_tasks(tmp_path: Path, count: int, **env: str) -> Path:
    """A cluster that runs `count` short process tasks to completion, then stops."""
    settings = make_settings(tmp_path / "data", **env)
    async with running_cluster(settings) as cluster:
        for _ in range(count):
            task_id = str(uuid.uuid4())
            body = {"ID": task_id, "State": 2, "Task": {"ID": task_id, "Cmd": ["true"]}}
            assert (await cluster.manager.post("/tasks", json=body)).status_code == 201
        with trio.fail_after(20):
            while (await cluster.manager.get("/stats")).json()["Tasks"]["Completed"] < count:
                await trio.sleep(0.02)
    return settings.data_dir / "log"


async def test_startup_from_snapshot_equals_full_replay(tmp_path: Path) -> None:
    log_dir = await _run_tasks(tmp_path, 6, ORC_SNAPSHOT_EVERY="7", ORC_DIGEST_EVERY="0")
    log = await EventLog.open(log_dir, AnyEvent)
    snapshot = await log.load_snapshot()
    assert snapshot is not None and snapshot[0] > 1
    from_snapshot, base = await recover(log)
    assert base == snapshot[0]
    full = load_state(log)
    await log.aclose()
    assert from_snapshot == full
    assert len(full.tasks) == 6


async def test_recorded_digests_match_replay(tmp_path: Path) -> None:
    log_dir = await _run_tasks(tmp_path, 5, ORC_DIGEST_EVERY="4", ORC_SNAPSHOT_EVERY="0")
    log = await EventLog.open(log_dir, AnyEvent)
    state, checked = ClusterState(), 0
    for seq, event in log.read(1):
        if isinstance(event, StateDigest):
            assert event.seq == seq - 1
            assert event.digest == state_digest(state)
            checked += 1
        apply(state, event)
    await log.aclose()
    assert checked >= 3


async def test_upkeep_can_be_switched_off(tmp_path: Path) -> None:
    log_dir = await _run_tasks(tmp_path, 2, ORC_DIGEST_EVERY="0", ORC_SNAPSHOT_EVERY="0")
    log = await EventLog.open(log_dir, AnyEvent)
    assert await log.load_snapshot() is None
    assert not any(isinstance(e, StateDigest) for _, e in log.read(1))
    await log.aclose()
