"""The etcd gateway client against real members: the shapes etcd 3.4 answers, endpoint
failover, errors, watches, and what a cluster that lost its quorum does."""

from __future__ import annotations

import time

import pytest
import trio

from eventlog.errors import LogWriteError
from orc.core.events import NodeDown
from orc.ha.etcd import (
    EtcdClient,
    EtcdCompacted,
    EtcdError,
    EtcdUnavailable,
    SyncEtcdClient,
    created,
    get,
    parse_endpoints,
    prefix_end,
    put,
)
from orc.ha.log import EtcdLog, Fence
from tests.conftest import free_port
from tests.ha.conftest import EtcdCluster

AT = "2026-11-28T12:00:00+00:00"


def test_endpoints_and_prefixes() -> None:
    assert parse_endpoints(" 10.0.0.1:2379, https://b:2379/ ,") == (
        "http://10.0.0.1:2379",
        "https://b:2379",
    )
    with pytest.raises(ValueError, match="no etcd endpoint"):
        parse_endpoints(" , ")
    assert prefix_end(b"/orc/a/log/") == b"/orc/a/log0"
    assert prefix_end(b"a\xff") == b"b"


async def test_keys_transactions_and_leases(client: EtcdClient, cluster: str) -> None:
    base = f"/{cluster}/".encode()
    revision = await client.put(base + b"a", b"1")
    assert revision > 0
    found = await client.get(base + b"a")
    assert found is not None
    assert (found.value, found.create_revision, found.version) == (b"1", revision, 1)
    assert await client.get(base + b"none") is None

    lease = await client.grant(3)
    assert lease.id and lease.ttl == 3
    won = await client.txn(
        [created(base + b"l", 0)], [put(base + b"l", b"me", lease.id)], [get(base + b"l")]
    )
    assert won.succeeded and won.responses[0].response_put is not None
    lost = await client.txn(
        [created(base + b"l", 0)], [put(base + b"l", b"you")], [get(base + b"l")]
    )
    assert not lost.succeeded
    [holder] = lost.responses[0].response_range.kvs  # type: ignore[union-attr]
    assert (holder.value, holder.lease, holder.create_revision) == (
        b"me",
        lease.id,
        won.header.revision,
    )
    assert await client.keepalive(lease.id) == 3
    assert await client.revoke(lease.id)
    assert await client.get(base + b"l") is None  # the lease's keys go with it
    assert await client.keepalive(lease.id) == 0
    assert not await client.revoke(lease.id)
    with pytest.raises(EtcdError, match="requested lease not found") as refused:
        await client.put(base + b"x", b"y", lease=lease.id)
    assert refused.value.code == 5 and not isinstance(refused.value, EtcdUnavailable)

    for i in range(5):
        await client.put(base + b"r/%d" % i, b"v%d" % i)
    page = await client.range(base + b"r/", prefix_end(base + b"r/"), limit=2)
    assert [kv.key for kv in page.kvs] == [base + b"r/0", base + b"r/1"]
    assert (page.more, page.count) == (True, 5)
    newest = await client.range(
        base + b"r/", prefix_end(base + b"r/"), limit=1, descending=True, keys_only=True
    )
    assert [(kv.key, kv.value) for kv in newest.kvs] == [(base + b"r/4", b"")]
    assert await client.delete(base + b"r/", prefix_end(base + b"r/")) == 5
    with SyncEtcdClient(client.endpoints) as sync:
        assert sync.range(base + b"a").kvs[0].value == b"1"


async def test_a_request_too_large_or_with_too_many_ops_is_refused(
    client: EtcdClient, cluster: str
) -> None:
    key = f"/{cluster}/big".encode()
    with pytest.raises(EtcdError, match="request is too large"):
        await client.put(key, b"x" * (1600 * 1024))
    ops = [put(key + b"/%d" % i, b"") for i in range(129)]
    with pytest.raises(EtcdError, match="too many operations"):
        await client.txn([], ops)
    await client.txn([], ops[:128])


async def test_a_dead_endpoint_is_skipped_and_none_alive_is_unavailable(
    etcd: EtcdCluster, cluster: str
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    async with EtcdClient([dead, *etcd.endpoints], timeout=1) as client:
        await client.put(f"/{cluster}/k".encode(), b"v")
        assert (await client.status()).leader
        assert [m.name for m in await client.members()] == ["m0"]
    async with EtcdClient([dead, f"127.0.0.1:{free_port()}"], timeout=1) as client:
        with pytest.raises(EtcdUnavailable, match="no etcd endpoint could serve /v3/kv/put"):
            await client.put(b"k", b"v")


async def test_a_watch_sees_puts_and_deletes_from_a_revision(
    client: EtcdClient, cluster: str
) -> None:
    prefix = f"/{cluster}/w/".encode()
    first = await client.put(prefix + b"1", b"a")
    await client.delete(prefix + b"1")
    seen: list[tuple[str, bytes, bytes]] = []
    async with client.watch(prefix, prefix_end(prefix), start_revision=first) as watch:
        await client.put(prefix + b"2", b"b")
        async for response in watch:
            seen.extend((e.type, e.kv.key, e.kv.value) for e in response.events)
            if len(seen) == 3:
                break
    assert seen == [
        ("PUT", prefix + b"1", b"a"),
        ("DELETE", prefix + b"1", b""),
        ("PUT", prefix + b"2", b"b"),
    ]
    await client.compact(await client.put(prefix + b"3", b"c"))
    with pytest.raises(EtcdCompacted) as compacted:
        async with client.watch(prefix, prefix_end(prefix), start_revision=first) as watch:
            await anext(watch)
    assert compacted.value.compact_revision > first


async def test_writes_survive_one_lost_member_and_fail_clearly_without_quorum(
    etcd3: EtcdCluster,
) -> None:
    """Three members: with etcd's leader dead, the other two elect another and the log's
    append goes through them (retried meanwhile); with two dead, the append fails with
    LogWriteError in bounded time, and the log refuses later appends (whether the write took
    is unknown)."""
    async with etcd3.client(timeout=0.5) as client:
        key = b"/orc/q/leader"
        await client.put(key, b"{}")
        fence = Fence(key, (await client.get(key)).create_revision)  # type: ignore[union-attr]
        log = await EtcdLog.open(client, "q", fence=fence, write_timeout=5.0)
        assert await log.append(NodeDown(at=AT, node="w1", reason="r")) == 1
        leader = (await client.status()).leader
        [first] = [m for m in await client.members() if m.id == leader]
        etcd3.members[int(first.name[1:])].kill()  # etcd's own leader: it elects another
        assert await log.append(NodeDown(at=AT, node="w2", reason="r")) == 2
        for member in etcd3.members:
            member.kill()
            if sum(m.proc is not None and m.proc.poll() is None for m in etcd3.members) == 1:
                break
        log.write_timeout = 1.0
        began = time.monotonic()
        with pytest.raises(LogWriteError, match="gave no answer"):
            await log.append(NodeDown(at=AT, node="w3", reason="r"))
        assert time.monotonic() - began < 4
        with pytest.raises(LogWriteError, match="unknown"):
            await log.append(NodeDown(at=AT, node="w4", reason="r"))
        with pytest.raises(EtcdUnavailable):
            await client.put(b"k", b"v")
        status = await client.status()  # a member without quorum still answers its status
        assert status.leader == 0 or status.errors
        await trio.lowlevel.checkpoint()


async def test_the_client_can_send_its_calls_to_etcds_leader_first(etcd3: EtcdCluster) -> None:
    """A write that reaches a follower is forwarded to etcd's leader: the log's writer asks
    for the leader first (`prefer_leader`, when it is promoted). Whichever member the client
    tried first, the next call is answered by the leader itself."""
    for first in range(3):
        endpoints = etcd3.endpoints[first:] + etcd3.endpoints[:first]
        async with EtcdClient(endpoints, timeout=2) as client:
            assert await client.prefer_leader()
            status = await client.status()
            assert status.leader and status.header.member_id == status.leader
    async with EtcdClient(["http://127.0.0.1:9", *etcd3.endpoints], timeout=2) as client:
        assert await client.prefer_leader()  # a dead endpoint first: still found
