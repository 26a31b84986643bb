"""Highly available managers through the leader's snapshots and compaction: a standby's state
stays the leader's while the records it read are deleted under it, a manager that starts later
reads the snapshot and what follows, the one that takes over at a clean stop (it resigns) goes
on from its own state at once, and the log in etcd replays from its snapshot.

Two and three `HaManager`s in this process (no workers: the tasks wait, Pending, and each
placement that fails is an event too), against a real etcd member.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import trio

from orc.cmd.ha import HaManager
from orc.ha.log import EtcdLog
from orc.ha.registry import LEADER, STANDBY
from orc.replay import story
from orc.replay.read import read_etcd
from tests.conftest import make_settings
from tests.ha.conftest import EtcdCluster


class Running:
    def __init__(self, ha: HaManager, api: httpx.AsyncClient, stop: trio.Event) -> None:
        self.ha, self.api, self.stop = ha, api, stop


@asynccontextmanager
async def managers(
    etcd: EtcdCluster, cluster: str, tmp_path: Path, nursery: trio.Nursery, name: str
) -> AsyncIterator[Running]:
    settings = make_settings(
        tmp_path / name,
        ORC_ETCD_ENDPOINTS=",".join(etcd.endpoints),
        ORC_CLUSTER=cluster,
        ORC_LEASE_TTL="1",
        ORC_MANAGER_NAME=name,
        ORC_SNAPSHOT_EVERY="25",
        ORC_RETAIN_EVENTS="5",
        ORC_DIGEST_EVERY="10",
    )
    stop = trio.Event()
    async with etcd.client() as client:
        ha = HaManager(settings, client, lambda line: None)
        done = trio.Event()

        async def run() -> None:
            try:
                await ha.run(stop)
            finally:
                done.set()

        nursery.start_soon(run)
        url = f"http://127.0.0.1:{settings.manager_port}"
        async with httpx.AsyncClient(base_url=url, timeout=10) as api:
            with trio.fail_after(10):
                while ha.front.role not in (LEADER, STANDBY):
                    await trio.sleep(0.02)
            yield Running(ha, api, stop)
        stop.set()
        with trio.fail_after(10):
            await done.wait()


async def tasks(api: httpx.AsyncClient) -> dict[str, int]:
    r = await api.get("/tasks")
    assert r.status_code == 200, r.text
    return {t["ID"]: t["State"] for t in r.json()}


async def same_tasks(a: httpx.AsyncClient, b: httpx.AsyncClient) -> dict[str, int]:
    with trio.fail_after(10):
        while True:
            seen = await tasks(a)
            if seen == await tasks(b):
                return seen
            await trio.sleep(0.05)


async def submit(api: httpx.AsyncClient, n: int) -> None:
    for _ in range(n):
        task_id = str(uuid.uuid4())
        body = {"ID": task_id, "State": 2, "Task": {"ID": task_id, "Cmd": ["true"]}}
        r = await api.post("/tasks", json=body)
        assert r.status_code == 201, r.text


async def test_standbys_follow_through_snapshots_and_compaction(
    etcd: EtcdCluster, cluster: str, tmp_path: Path
) -> None:
    async with (
        trio.open_nursery() as nursery,
        managers(etcd, cluster, tmp_path, nursery, "m1") as m1,
    ):
        with trio.fail_after(10):
            while m1.ha.front.role != LEADER:
                await trio.sleep(0.02)
        async with managers(etcd, cluster, tmp_path, nursery, "m2") as m2:
            assert m2.ha.front.role == STANDBY
            await submit(m1.api, 30)
            seen = await same_tasks(m1.api, m2.api)
            assert len(seen) == 30
            async with etcd.client() as client:
                log = await EtcdLog.open(client, cluster, fence=None)
                assert log.first_seq > 1  # compacted: the records m2 read are gone

            # a manager that starts now reads the snapshot and the records after it
            async with managers(etcd, cluster, tmp_path, nursery, "m3") as m3:
                assert await same_tasks(m1.api, m3.api) == seen

                # the leader stops (it resigns): a standby leads at once, on its own state
                m1.stop.set()
                with trio.fail_after(5):
                    while LEADER not in (m2.ha.front.role, m3.ha.front.role):
                        await trio.sleep(0.02)
                new = m2 if m2.ha.front.role == LEADER else m3
                assert await tasks(new.api) == seen
                await submit(new.api, 1)
                assert len(await same_tasks(m2.api, m3.api)) == 31

                # the log in etcd tells its story from the snapshot, and every rule holds
                found = await trio.to_thread.run_sync(read_etcd, etcd.endpoints, cluster)
                assert found.base_seq > 0 and found.base is not None
                result = story.check(found.records, found.base)
                assert result.ok, result.violations[:3]
                history = await new.api.get(f"/tasks/{next(iter(seen))}/history")
                assert history.status_code == 200, history.text
