"""A leading manager that loses the lead steps down: its actors stop, its log writes nothing
more, and it stands by again, sending writes to the new leader. Two ways to lose it: its
election sees the leader key change hands, or (its watch of the key blind, as a paused or
cut-off manager's is) etcd refuses its next write, fenced on the key it no longer holds.

`HaManager` in this process against a real etcd member; the "other manager" that takes the
lead is this test, writing the leader key on a lease of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import msgspec
import pytest
import trio

from orc.clock import now
from orc.cmd.ha import HaManager
from orc.core.events import NodeDown
from orc.ha.election import Election, Leader
from orc.ha.etcd import EtcdClient, created, put
from orc.ha.keys import Keys
from orc.ha.log import EtcdLog, NotLeader
from orc.ha.registry import LEADER, STANDBY
from tests.conftest import make_settings
from tests.ha.conftest import EtcdCluster

OTHER = Leader("other", "http://127.0.0.1:9", "2026-01-01T00:00:00+00:00")


@asynccontextmanager
async def leading(
    etcd: EtcdCluster, cluster: str, tmp_path: Path
) -> AsyncIterator[tuple[HaManager, httpx.AsyncClient]]:
    """An `HaManager` that leads `cluster`, and a client of its API; stopped on the way out."""
    settings = make_settings(
        tmp_path / "data",
        ORC_ETCD_ENDPOINTS=",".join(etcd.endpoints),
        ORC_CLUSTER=cluster,
        ORC_LEASE_TTL="1",
        ORC_MANAGER_NAME="m1",
    )
    stop = trio.Event()
    async with etcd.client() as client, trio.open_nursery() as nursery:
        ha = HaManager(settings, client, lambda line: None)
        nursery.start_soon(ha.run, stop)
        url = f"http://127.0.0.1:{settings.manager_port}"
        async with httpx.AsyncClient(base_url=url, timeout=5) as api:
            with trio.fail_after(10):
                while ha.front.role != LEADER:
                    await trio.sleep(0.02)
            yield ha, api
        stop.set()


async def take_the_lead(client: EtcdClient, cluster: str) -> None:
    """Another manager leads now: the key deleted and made again on our lease (again, should
    the manager campaign in between and win: etcd takes no delete and put of one key in one
    transaction)."""
    key = Keys(cluster).leader
    lease = (await client.grant(10)).id
    while True:
        await client.delete(key)
        made = await client.txn([created(key, 0)], [put(key, msgspec.json.encode(OTHER), lease)])
        if made.succeeded:
            return


async def submit(api: httpx.AsyncClient) -> httpx.Response:
    task_id = str(uuid.uuid4())
    body = {"ID": task_id, "State": 2, "Task": {"ID": task_id, "Cmd": ["true"]}}
    return await api.post("/tasks", json=body)


async def until_redirected(api: httpx.AsyncClient) -> httpx.Response:
    """POST /tasks until the manager sends it to the other leader (a 307)."""
    with trio.fail_after(10):
        while True:
            r = await submit(api)
            assert r.status_code != 201, "a manager that lost the lead wrote"
            if r.status_code == 307:
                return r
            await trio.sleep(0.05)


async def test_a_leader_whose_election_is_lost_steps_down_and_redirects(
    etcd: EtcdCluster, cluster: str, tmp_path: Path
) -> None:
    async with leading(etcd, cluster, tmp_path) as (ha, api), etcd.client() as client:
        assert (await submit(api)).status_code == 201
        log = ha.front.log.log
        assert log is not None and log.fence is not None

        await take_the_lead(client, cluster)
        written = (await EtcdLog.open(client, cluster, fence=None)).last_seq
        assert written > 0
        r = await until_redirected(api)
        assert r.headers["Location"] == f"{OTHER.address}/tasks"
        assert r.json()["Leader"] == OTHER.address
        assert ha.front.role == STANDBY and ha.actors is None

        # the old term's log writes nothing more, and etcd holds nothing past what it wrote
        assert log.refused.is_set()
        with pytest.raises(NotLeader):
            await log.append(NodeDown(at=now(), node="w1", reason="late"))
        await trio.sleep(0.1)
        reader = await EtcdLog.open(client, cluster, fence=None)
        assert reader.last_seq == written
        # a standby still answers reads, from the state it follows
        assert (await api.get("/tasks")).status_code == 200


async def test_a_leader_blind_to_its_election_steps_down_at_its_first_refused_write(
    etcd: EtcdCluster, cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its watch of the leader key sees nothing (as a paused or cut-off manager's would): the
    write after the key changed hands is refused by etcd (NotLeader), answered 503, and the
    manager steps down on it."""

    async def blind(self: Election, fence: object) -> None:
        await trio.sleep_forever()

    monkeypatch.setattr(Election, "_hold", blind)
    async with leading(etcd, cluster, tmp_path) as (ha, api), etcd.client() as client:
        log = ha.front.log.log
        assert log is not None

        await take_the_lead(client, cluster)
        written = (await EtcdLog.open(client, cluster, fence=None)).last_seq
        await trio.sleep(0.2)
        assert ha.front.role == LEADER  # it did not notice
        refused = await submit(api)
        assert refused.status_code == 503, refused.text
        assert "not the leader" in refused.json()["message"]

        await until_redirected(api)
        assert log.refused.is_set() and ha.actors is None
        reader = await EtcdLog.open(client, cluster, fence=None)
        assert reader.last_seq == written


async def test_a_leader_holds_the_lead_only_while_its_lease_surely_runs(
    client: EtcdClient, cluster: str
) -> None:
    """`Election.holds`, which a leader's worker proxies ask before each order: true once it
    leads, false once its lease may have run out by its own clock, or once it resigned."""
    election = Election(client, cluster, "m1", "http://m1", ttl=1)
    async with trio.open_nursery() as nursery:
        assert not election.holds()
        await nursery.start(election.run)
        await election.wait_leader()
        assert election.holds()
        election._lease_until = trio.current_time()  # as after a pause past the lease
        assert not election.holds() and election.is_leader  # it has not noticed yet
        election._lease_until = trio.current_time() + 1
        await election.resign()
        assert not election.holds()
