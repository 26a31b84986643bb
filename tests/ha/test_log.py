"""EtcdLog against a real etcd member: the same records as the file log, group commit, large
batches, snapshots and compaction, following, and the manager's own recovery path on it."""

from __future__ import annotations

import json
import math
from contextlib import aclosing
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from eventlog import LogWriteError, open_readonly
from orc.core.events import NodeDown, TaskFailed
from orc.core.snapshot import encode_state, state_digest
from orc.core.state import replay
from orc.ha.etcd import EtcdClient, prefix_end, put
from orc.ha.keys import Keys
from orc.ha.log import MAX_TXN_OPS, EtcdLog, Fence, NotLeader
from orc.shell.recovery import load_state, open_log, recover
from tests.core.test_event_versions import EXAMPLES

AT = "2026-11-28T12:00:00+00:00"
GOLDEN = Path(__file__).resolve().parents[1] / "replay" / "golden" / "events-v1"


def down(i: int, reason: str = "no heartbeat") -> NodeDown:
    return NodeDown(at=AT, node=f"w{i}", reason=reason)


async def lead(client: EtcdClient, cluster: str) -> Fence:
    """Make a leader key by hand (the election's part is tested in test_election.py)."""
    key = Keys(cluster).leader
    await client.put(key, b"{}")
    found = await client.get(key)
    assert found is not None
    return Fence(key, found.create_revision)


async def open_leader(client: EtcdClient, cluster: str, **options: Any) -> EtcdLog:
    return await EtcdLog.open(client, cluster, fence=await lead(client, cluster), **options)


async def log_keys(client: EtcdClient, cluster: str) -> list[int]:
    keys = Keys(cluster)
    found = await client.range(keys.log_prefix, keys.log_end, keys_only=True)
    return [keys.seq(kv.key) for kv in found.kvs]


async def test_records_are_stored_as_the_file_log_stores_them(
    client: EtcdClient, cluster: str, tmp_path: Path
) -> None:
    async with await open_log(tmp_path / "log") as file_log:
        await file_log.append_batch(EXAMPLES)
        file_records = list(file_log.read())
    async with await open_leader(client, cluster) as log:
        assert (log.first_seq, log.last_seq) == (1, 0)
        assert await log.append_batch(EXAMPLES[:3]) == 3
        assert await log.append(EXAMPLES[3]) == 4
        assert await log.append_batch(EXAMPLES[4:]) == len(EXAMPLES)
        assert await log.append_batch([]) == len(EXAMPLES)
        assert list(log.read()) == file_records
        assert list(log.records(5)) == EXAMPLES[4:]
    keys = Keys(cluster)
    found = await client.range(keys.log_prefix, keys.log_end)
    assert [kv.key for kv in found.kvs][:2] == [
        f"/orc/{cluster}/log/00000000000000000001".encode(),
        f"/orc/{cluster}/log/00000000000000000002".encode(),
    ]
    assert [kv.value for kv in found.kvs] == [msgspec.msgpack.encode(e) for e in EXAMPLES]
    reopened = await EtcdLog.open(client, cluster, fence=None)
    assert (reopened.first_seq, reopened.last_seq) == (1, len(EXAMPLES))
    assert list(reopened.records()) == EXAMPLES


async def test_records_an_older_orc_wrote_are_upcast(client: EtcdClient, cluster: str) -> None:
    """The golden log's map records (orc before event versions), each put as its key's value:
    read through the upcasters, they replay to the recorded state, by the manager's own
    `recover`."""
    want = json.loads((GOLDEN / "expected.json").read_text())
    raw = [record for _, record in open_readonly(GOLDEN / "log", Any).read()]
    assert isinstance(raw[0], dict) and "Type" in raw[0]
    keys = Keys(cluster)
    for start in range(0, len(raw), 100):
        await client.txn(
            [],
            [
                put(keys.log(seq), msgspec.msgpack.encode(record))
                for seq, record in enumerate(raw[start : start + 100], start + 1)
            ],
        )
    log = await EtcdLog.open(client, cluster, fence=None)
    assert log.last_seq == want["last_seq"]
    state, base = await recover(log)  # type: ignore[arg-type]
    assert base == 0
    assert state_digest(state) == want["state_digest"]
    loaded = await trio.to_thread.run_sync(load_state, log)
    assert state_digest(loaded) == want["state_digest"]


async def test_concurrent_appends_share_transactions(client: EtcdClient, cluster: str) -> None:
    log = await open_leader(client, cluster)
    seqs: list[int] = []

    async def append(i: int) -> None:
        seqs.append(await log.append(down(i)))

    async with trio.open_nursery() as nursery:
        for i in range(100):
            nursery.start_soon(append, i)
    assert sorted(seqs) == list(range(1, 101))
    assert log.txn_count <= 5, f"{log.txn_count} transactions for 100 concurrent appends"
    by_seq = dict(log.read())
    assert {by_seq[seq].node for seq in range(1, 101)} == {f"w{i}" for i in range(100)}
    await log.aclose()


async def test_a_batch_past_etcds_limits_takes_several_transactions_in_order(
    client: EtcdClient, cluster: str
) -> None:
    log = await open_leader(client, cluster)
    records = [down(i) for i in range(1000)]
    assert await log.append_batch(records) == 1000
    assert log.txn_count == math.ceil(1000 / MAX_TXN_OPS)
    assert list(log.records()) == records
    # by size: 400 KB records, at most 3 in a request of 1.5 MiB
    big = [down(i, "x" * 400_000) for i in range(10)]
    before = log.txn_count
    assert await log.append_batch(big) == 1010
    assert log.txn_count - before == 4
    assert list(log.records(1001)) == big
    # a record no etcd request can hold is refused before anything is written
    with pytest.raises(LogWriteError, match="does not fit in one etcd request"):
        await log.append_batch([down(0), down(1, "x" * 1_600_000)])
    assert log.last_seq == 1010 and (await log_keys(client, cluster))[-1] == 1010
    with pytest.raises(TypeError, match="record type"):
        await log.append(TaskFailed(at=AT, task_id=7, error="x"))  # type: ignore[arg-type]
    await log.aclose()
    with pytest.raises(LogWriteError, match="closed"):
        await log.append(down(0))


async def test_snapshots_and_compaction(client: EtcdClient, cluster: str) -> None:
    log = await open_leader(client, cluster)
    records = [down(i) for i in range(300)]
    await log.append_batch(records)
    assert await log.load_snapshot() is None
    with pytest.raises(ValueError, match=r"only 1\.\.300"):
        await log.save_snapshot(301, b"state")
    assert await log.compact(250) == 0  # no snapshot: nothing may go
    await log.save_snapshot(200, b"state at 200")
    assert await log.load_snapshot() == (200, b"state at 200")
    assert await log.compact(250) == 200  # everything before the snapshot's seq + 1
    assert log.first_seq == 201
    keys = await log_keys(client, cluster)
    assert (keys[0], keys[-1], len(keys)) == (201, 300, 100)
    assert list(log.records(log.first_seq)) == records[200:]
    assert next(log.read(1)) == (201, records[200])  # from the first record there is
    reopened = await EtcdLog.open(client, cluster, fence=None)
    assert (reopened.first_seq, reopened.last_seq) == (201, 300)

    # a snapshot too large for one request is stored in chunks; a later one replaces them
    blob = bytes(range(256)) * (12 * 1024)  # 3 MiB
    await log.save_snapshot(300, blob)
    chunks = Keys(cluster).chunks_prefix
    found = await client.range(chunks, prefix_end(chunks), keys_only=True)
    assert len(found.kvs) == 3
    assert await reopened.load_snapshot() == (300, blob)
    # compaction keeps the last record, so that the log's end is known from its keys
    assert await log.compact(10_000) == 99
    assert await log_keys(client, cluster) == [300]
    await log.append(down(300))
    state = replay([*records, down(300)])
    await log.save_snapshot(301, encode_state(state))
    assert (await client.range(chunks, prefix_end(chunks), count_only=True)).count == 0
    reopened = await EtcdLog.open(client, cluster, fence=None)
    assert (reopened.first_seq, reopened.last_seq) == (300, 301)
    # the manager's start-up: the snapshot, then the records after it (none here)
    recovered, base = await recover(reopened)  # type: ignore[arg-type]
    assert (base, state_digest(recovered)) == (301, state_digest(state))


async def test_follow_yields_records_as_they_are_written(client: EtcdClient, cluster: str) -> None:
    log = await open_leader(client, cluster)
    await log.append_batch([down(i) for i in range(3)])
    seen: list[tuple[int, Any] | None] = []

    async def follow() -> None:
        async for item in log.follow(2, heartbeat=0.2):
            seen.append(item)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow)
        await trio.sleep(0.05)
        await log.append(down(3))
        await trio.sleep(0.35)  # idle: a heartbeat
        await log.append_batch([down(4), down(5)])
        await trio.sleep(0.05)
        await log.aclose()  # the follower ends
    assert [item[0] if item else None for item in seen] == [2, 3, 4, None, 5, 6]
    assert seen[0] == (2, down(1))

    # a log just opened has no record in memory: follow reads them from etcd
    again = await EtcdLog.open(client, cluster, fence=None)
    items = []
    async with aclosing(again.follow(1)) as follow_again:
        async for item in follow_again:
            assert item is not None
            items.append(item)
            if item[0] == again.last_seq:
                break
    assert items == list(log.read())


async def test_a_standby_log_tracks_the_leaders_and_refuses_appends(
    client: EtcdClient, cluster: str
) -> None:
    leader = await open_leader(client, cluster)
    await leader.append(down(0))
    standby = await EtcdLog.open(client, cluster, fence=None)
    with pytest.raises(NotLeader, match="not the leader"):
        await standby.append(down(1))
    seen: list[int] = []

    async def follow() -> None:
        async for item in standby.follow(1):
            assert item is not None
            seen.append(item[0])

    async with trio.open_nursery() as nursery:
        await nursery.start(standby.track)
        nursery.start_soon(follow)
        await leader.append_batch([down(i) for i in range(1, 301)])
        with trio.fail_after(5):
            while standby.last_seq < 301:
                await trio.sleep(0.01)
        await leader.save_snapshot(301, b"s")
        await leader.compact(301)
        with trio.fail_after(5):
            while standby.first_seq < 301:
                await trio.sleep(0.01)
        # it takes the lead (as after winning an election): appends go on where it was
        fence = await lead_again(client, cluster)
        assert await standby.promote(fence) == 301
        assert await standby.append(down(302)) == 302
        with trio.fail_after(5):
            while len(seen) < 302:
                await trio.sleep(0.01)
        await standby.aclose()
    assert seen == list(range(1, 303))
    with pytest.raises(NotLeader):  # the old leader's fence is gone with its key
        await leader.append(down(0))
    assert (await log_keys(client, cluster)) == [301, 302]


async def lead_again(client: EtcdClient, cluster: str) -> Fence:
    await client.delete(Keys(cluster).leader)
    return await lead(client, cluster)


async def test_the_log_reads_from_a_thread_in_pages(client: EtcdClient, cluster: str) -> None:
    """`records` is a blocking iterator (the manager folds it in a thread), read in pages."""
    log = await open_leader(client, cluster)
    await log.append_batch([down(i) for i in range(4500)])
    nodes = await trio.to_thread.run_sync(lambda: [e.node for e in log.records(10)])
    assert nodes == [f"w{i}" for i in range(9, 4500)]
    numbered = await trio.to_thread.run_sync(lambda: list(log.read()))
    assert [seq for seq, _ in numbered] == list(range(1, 4501))
