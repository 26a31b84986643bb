"""SIGKILL at random moments of a burst of submissions: no acknowledged task is ever lost, and
the log always replays with every transition legal."""

from __future__ import annotations

import os
import random
import signal
import uuid
from pathlib import Path

import httpx
import trio

from eventlog import EventLog
from orc.core.events import AnyEvent
from orc.core.transitions import TERMINAL
from orc.shell.recovery import load_state
from tests.e2e.test_e2e import Orc

TASKS = 1000
KILLS = 20


async def _submit_all(orc: Orc, ids: list[str], acked: set[str], done: trio.Event) -> None:
    """Submit every task, retrying each (same ID: idempotent) until orc acknowledges it."""
    limit = trio.Semaphore(16)

    async def one(client: httpx.AsyncClient, task_id: str) -> None:
        body = {"ID": task_id, "State": 2, "Task": {"ID": task_id, "Cmd": ["true"]}}
        async with limit:
            while True:
                try:
                    r = await client.post(f"{orc.url}/tasks", json=body)
                except httpx.HTTPError:
                    await trio.sleep(0.05)
                    continue
                if r.status_code in (200, 201):
                    acked.add(task_id)
                    return
                assert r.status_code == 503, r.text
                await trio.sleep(0.05)

    async with httpx.AsyncClient(timeout=5) as client, trio.open_nursery() as nursery:
        for task_id in ids:
            nursery.start_soon(one, client, task_id)
    done.set()


async def _kill_repeatedly(orc: Orc, rng: random.Random, done: trio.Event) -> int:
    kills = 0
    while kills < KILLS and not done.is_set():
        await trio.sleep(rng.uniform(0.05, 0.4))
        await trio.to_thread.run_sync(orc.kill, signal.SIGKILL)
        kills += 1
        await trio.to_thread.run_sync(orc.start)
    return kills


async def test_sigkill_loop_loses_nothing_acknowledged(tmp_path: Path) -> None:
    seed = int(os.environ.get("ORC_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    orc = Orc(tmp_path / "data")
    orc.start()
    ids = [str(uuid.uuid4()) for _ in range(TASKS)]
    acked: set[str] = set()
    done = trio.Event()
    kills = 0
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_submit_all, orc, ids, acked, done)
            kills = await _kill_repeatedly(orc, rng, done)
        assert kills >= 5, f"seed {seed}: the burst ended after only {kills} kills"
        async with httpx.AsyncClient(timeout=10) as client:
            with trio.fail_after(60):
                while True:
                    tasks = (await client.get(f"{orc.url}/tasks")).json()
                    if all(t["State"] in TERMINAL for t in tasks) and len(tasks) >= len(acked):
                        break
                    await trio.sleep(0.1)
        listed = {t["ID"] for t in tasks}
        assert acked <= listed, f"seed {seed}: lost {len(acked - listed)} acknowledged tasks"
        assert acked == set(ids)
    finally:
        if orc.proc is not None and orc.proc.poll() is None:
            orc.kill(signal.SIGTERM)
    # The log replays with every transition legal (apply refuses illegal ones).
    log = await EventLog.open(tmp_path / "data" / "log", AnyEvent)
    state = load_state(log)
    await log.aclose()
    assert set(state.tasks) == set(ids)
