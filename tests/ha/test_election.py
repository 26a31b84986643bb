"""The election against a real etcd member: one leader at a time, take-over within the lease's
TTL when the leader stops renewing, stepping down, resigning, and fencing: a leader that lost
the lead without noticing can never write."""

from __future__ import annotations

import pytest
import trio

from orc.core.events import NodeDown
from orc.ha.election import Election, read_leader
from orc.ha.etcd import EtcdClient
from orc.ha.keys import Keys
from orc.ha.log import EtcdLog, NotLeader

AT = "2026-11-28T12:00:00+00:00"
TTL = 2  # seconds: etcd's shortest leases with these members' timings are 1 s


def down(node: str) -> NodeDown:
    return NodeDown(at=AT, node=node, reason="r")


async def test_one_of_two_candidates_leads_and_the_other_takes_over_when_it_stops(
    client: EtcdClient, cluster: str
) -> None:
    a = Election(client, cluster, "a", "127.0.0.1:5555", ttl=TTL)
    b = Election(client, cluster, "b", "127.0.0.1:5556", ttl=TTL)
    async with trio.open_nursery() as nursery:
        a_scope = trio.CancelScope()

        async def run_a() -> None:
            with a_scope:
                await a.run()

        nursery.start_soon(run_a)
        with trio.fail_after(5):
            fence = await a.wait_leader()
        await nursery.start(b.run)
        with trio.fail_after(5):
            while b.leader() is None:
                await trio.sleep(0.01)
        assert a.is_leader and not b.is_leader and b.fence is None
        assert fence.key == Keys(cluster).leader
        seen = b.leader()
        assert seen is not None and (seen.name, seen.address) == ("a", "127.0.0.1:5555")
        now = await read_leader(client, cluster)
        assert now is not None and now.name == "a" and now.since

        # a stops as a crash or a pause would stop it: no renewal, no resignation
        a_scope.cancel()
        stopped = trio.current_time()
        with trio.fail_after(TTL + 1):
            b_fence = await b.wait_leader()
        assert trio.current_time() - stopped <= TTL + 1
        assert b_fence.revision > fence.revision
        assert not a.is_leader and a.lost.is_set()
        b_seen = b.leader()
        assert b_seen is not None and b_seen.name == "b"
        await b.resign()
    assert await read_leader(client, cluster) is None


async def test_resigning_hands_the_lead_on_at_once(client: EtcdClient, cluster: str) -> None:
    a = Election(client, cluster, "a", "a:1", ttl=5)
    b = Election(client, cluster, "b", "b:1", ttl=5)
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        await a.wait_leader()
        await nursery.start(b.run)
        await trio.sleep(0.1)
        assert not b.is_leader
        await a.resign()
        with trio.fail_after(1):  # not the lease's 5 s
            await b.wait_leader()
        with pytest.raises(RuntimeError, match="over"):
            await a.wait_leader()
        await b.resign()


async def test_a_leader_whose_lease_ends_steps_down(client: EtcdClient, cluster: str) -> None:
    lost: list[str] = []
    a = Election(client, cluster, "a", "a:1", ttl=TTL, on_lost=lambda: lost.append("a"))
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        await a.wait_leader()
        assert await client.revoke(a.lease)  # etcd ends it (an operator, or an expiry)
        with trio.fail_after(TTL):
            await a.lost.wait()
        assert lost == ["a"] and a.fence is None and a.leader() is None
    # and a leader key deleted under a leader, lease alive: it steps down too
    b = Election(client, cluster, "b", "b:1", ttl=TTL)
    async with trio.open_nursery() as nursery:
        await nursery.start(b.run)
        await b.wait_leader()
        await client.delete(Keys(cluster).leader)
        with trio.fail_after(TTL):
            await b.lost.wait()
        await b.resign()


async def test_a_leader_that_lost_the_lead_unaware_never_writes(
    client: EtcdClient, cluster: str
) -> None:
    """a leads and writes; then it is paused (its election stops: no renewal, no watch) and
    its lease ends; b wins. a's log still holds a's fence and tries to write: etcd refuses,
    and nothing of it is in etcd. b's log goes on from where a's stopped."""
    a = Election(client, cluster, "a", "a:1", ttl=TTL)
    b = Election(client, cluster, "b", "b:1", ttl=TTL)
    async with trio.open_nursery() as nursery:
        a_scope = trio.CancelScope()

        async def run_a() -> None:
            with a_scope:
                await a.run()

        nursery.start_soon(run_a)
        a_log = await EtcdLog.open(client, cluster, fence=await a.wait_leader())
        assert await a_log.append_batch([down("1"), down("2")]) == 2
        lease = a.lease
        a_scope.cancel()  # paused: from here a notices nothing
        assert await client.revoke(lease)  # its lease ran out meanwhile
        await nursery.start(b.run)
        b_fence = await b.wait_leader()

        with pytest.raises(NotLeader, match="not the leader any more") as refused:
            await a_log.append_batch([down("a's"), down("a's too")])
        assert f"revision {b_fence.revision}" in str(refused.value)
        with pytest.raises(NotLeader):  # and it keeps refusing
            await a_log.append(down("a's again"))
        with pytest.raises(NotLeader):
            await a_log.save_snapshot(2, b"a's snapshot")

        b_log = await EtcdLog.open(client, cluster, fence=b_fence)
        assert b_log.last_seq == 2
        assert await b_log.append(down("3")) == 3
        assert [e.node for e in b_log.records()] == ["1", "2", "3"]
        assert await b_log.load_snapshot() is None
        await b.resign()
