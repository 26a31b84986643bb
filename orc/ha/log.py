"""`EtcdLog`: the manager's event log kept in etcd, with the interface of `eventlog.EventLog`.

One key per record (`orc.ha.keys`), its value the record exactly as the file log stores it (the
msgpack of the event struct, an array), so the same decoder and the same upcasters
(`orc.core.upcast`) read both. What the Manager and the HTTP layer use of `EventLog` is here:
`last_seq`, `first_seq`, `append`, `append_batch`, `read`, `records`, `follow`, `save_snapshot`,
`load_snapshot`, `compact`, `aclose`.

**Group commit**, as in the file log: the first appender that finds no transaction in flight
writes everything queued as one etcd transaction and hands the lead to a waiting appender when
it is done, so appends made meanwhile share the next transaction. etcd caps a transaction at
`--max-txn-ops` operations (128) and a request at `--max-request-bytes` (1.5 MiB): a larger
flush is cut into several transactions, written one after the other.

**Fencing.** A writable log holds a `Fence`, the leader key and the revision at which this
manager created it (`orc.ha.election`). Every write is a transaction that first compares the
leader key's create revision with the fence's: once the lease behind the key is gone (expired
while this process was paused, revoked, or the key deleted), the key is gone or re-created by
another manager at a later revision, the comparison fails, and nothing is written, whether this
process has noticed or not. The write then raises `NotLeader`.

**Exactly once.** A transaction etcd did not answer (a timeout, a member that lost its leader)
may still be applied. Each one therefore also compares "the key of its first record does not
exist yet" and is retried unchanged until etcd answers or `write_timeout` passes: a retry after
a first attempt that was applied fails the comparison, and reading that key back shows our own
record, so it counts as written. When no answer comes in time, the outcome is unknown and the
log refuses every later append: its writer's state may lack records etcd holds, so only a
fresh start from etcd is safe. The same holds when a flush that took several transactions
stopped after writing part of one append: the records of a failed append are in the log only
in these two cases, and both leave the log refusing appends.

A read-only log (no fence: a standby's) refuses appends; `track` keeps it up to date through a
watch, and `promote` makes it the leader's once its manager won the election.
"""

from __future__ import annotations

import contextlib
import logging
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from itertools import chain
from typing import Any, NamedTuple

import msgspec
import trio

from eventlog.errors import CorruptLogError, LogWriteError
from eventlog.framing import array_header
from eventlog.groupcommit import GroupCommit
from eventlog.reader import RecordDecoder
from orc.core.events import AnyEvent
from orc.core.upcast import upcaster
from orc.ha.etcd import (
    Compare,
    EtcdClient,
    EtcdCompacted,
    EtcdError,
    EtcdUnavailable,
    KeyValue,
    RequestOp,
    ResponseOp,
    SyncEtcdClient,
    TxnResponse,
    WatchResponse,
    created,
    delete,
    get,
    prefix_end,
    put,
)
from orc.ha.keys import Keys

logger = logging.getLogger("orc.ha")

MAX_TXN_OPS = 128  # etcd's default --max-txn-ops
MAX_REQUEST_BYTES = 1536 * 1024  # etcd's default --max-request-bytes
_REQUEST_SLACK = 16 * 1024  # what a transaction carries besides its keys and values
_OP_BYTES = 16  # protobuf bytes around the key and value of one put
WRITE_TIMEOUT = 5.0  # seconds a write retries through etcd's unavailability
PAGE = 2000  # records per range when reading
_TAIL_RECORDS = 8192  # recent records kept so that live followers need not ask etcd
_RETRY_FIRST, _RETRY_MAX = 0.05, 0.5  # seconds between retries, doubling


class Fence(NamedTuple):
    """A leader's right to write: the leader key and the revision at which it created it."""

    key: bytes
    revision: int


class NotLeader(LogWriteError):
    """This log may not write: its fence no longer holds (leadership was lost, whether its
    manager noticed or not), or it never had one (a standby's). Nothing of the failed write is
    in etcd."""


class CorruptEtcdLog(CorruptLogError):
    """A record in etcd that cannot be decoded, or a log whose keys are not contiguous."""

    def __str__(self) -> str:
        return f"corrupt event log in etcd: at {self.path} (seq {self.offset}): {self.reason}"


class SnapshotHead(msgspec.Struct, array_like=True, frozen=True):
    """The value of the snapshot key: the blob inline, or how many chunk keys hold it."""

    seq: int
    size: int
    crc: int
    chunks: int  # 0: the blob is inline
    blob: bytes = b""


_HEADS = msgspec.msgpack.Decoder(SnapshotHead)


class _Submission:
    """The records of one append call, waiting for their transaction."""

    __slots__ = ("count", "done", "error", "lead", "records", "seq", "values")

    def __init__(self, values: list[bytes], records: list[Any]) -> None:
        self.values = values  # each record encoded, as its key's value
        self.records = records
        self.count = len(values)
        self.done = trio.Event()
        self.lead = False  # set when this submission's task must run the next flush
        self.seq = 0  # seq of its last record, once written
        self.error: LogWriteError | None = None

    def result(self) -> int:
        if self.error is not None:
            raise type(self.error)(str(self.error)) from self.error.__cause__
        return self.seq


class EtcdLog:
    """An orc event log in etcd: records numbered 1, 2, 3, ... without gaps.

    Use `EtcdLog.open`. The client is the caller's: `aclose` leaves it open.
    """

    def __init__(
        self,
        client: EtcdClient,
        keys: Keys,
        record_type: Any,
        fence: Fence | None,
        first_seq: int,
        last_seq: int,
        *,
        validate: bool,
        max_txn_ops: int,
        max_request_bytes: int,
        write_timeout: float,
    ) -> None:
        self.client = client
        self.keys = keys
        self.write_timeout = write_timeout
        self.txn_count = 0  # transactions that wrote records
        # told the seconds of each transaction that wrote records (the file log's `on_fsync`)
        self.on_txn: Callable[[float], None] | None = None
        self._fence = fence
        self._first_seq = first_seq
        self._last_seq = last_seq
        self._validate = validate
        self._max_ops = max_txn_ops
        self._budget = max_request_bytes - _REQUEST_SLACK
        self._encoder = msgspec.msgpack.Encoder()
        self._check_one = msgspec.msgpack.Decoder(record_type)
        self._decoder = RecordDecoder(record_type, upcaster(record_type))
        self._group: GroupCommit[_Submission] = GroupCommit(self._flush)
        self._advanced = trio.Event()  # set and replaced each time `last_seq` grows
        self._tail: deque[tuple[int, list[Any]]] = deque()  # (first seq, records)
        self._tail_count = 0
        self._failed: LogWriteError | None = None  # once set, every append raises it
        self.refused = trio.Event()  # set with `_failed`: its manager must step down
        self._snapshot_seq = 0  # the newest snapshot's seq and its head's etcd revision
        self._snapshot_revision = 0
        self._tracking: trio.CancelScope | None = None
        self._closing = False
        self._closed = False

    @classmethod
    async def open(
        cls,
        client: EtcdClient,
        cluster: str,
        *,
        fence: Fence | None,
        record_type: Any = AnyEvent,
        validate: bool = True,
        max_txn_ops: int = MAX_TXN_OPS,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        write_timeout: float = WRITE_TIMEOUT,
    ) -> EtcdLog:
        """The log of `cluster` as etcd holds it now.

        `fence` is the election's (`Election.fence`) for the leader, None for a read-only log.
        Appends decode each record back, as `orc.shell.recovery.open_log` has the file log do
        (`validate`): a record that could not be read again would stop every later start.
        `max_txn_ops` and `max_request_bytes` must not exceed the etcd members' settings.
        Raises EtcdUnavailable when etcd cannot answer, CorruptEtcdLog when its log keys are
        not contiguous.
        """
        keys = Keys(cluster)
        first, last = await _bounds(client, keys)
        return cls(
            client,
            keys,
            record_type,
            fence,
            first,
            last,
            validate=validate,
            max_txn_ops=max_txn_ops,
            max_request_bytes=max_request_bytes,
            write_timeout=write_timeout,
        )

    @property
    def last_seq(self) -> int:
        """Seq of the last record written (a read-only log: seen); 0 when the log is empty."""
        return self._last_seq

    @property
    def first_seq(self) -> int:
        """Seq of the first record still in etcd (`last_seq + 1` when none is)."""
        return self._first_seq

    @property
    def fence(self) -> Fence | None:
        return self._fence

    @property
    def closed(self) -> bool:
        return self._closed

    def step_down(self, why: str) -> None:
        """Write nothing more, from now on: the election says its manager may have lost the
        lead (`Election.on_lost`). The fence would have etcd refuse a write of a manager that
        lost the lead; this refuses it before it is sent (a write already in flight is fenced
        all the same), and sets `refused`."""
        if self._failed is None:  # (the election said why, in its own log line)
            self._failed = NotLeader(f"not the leader any more: {why}; nothing more is written")
            self.refused.set()

    async def append(self, record: Any) -> int:
        """Append one record; return its seq once etcd holds it."""
        return await self._commit(self._submission([record]))

    async def append_batch(self, records: Sequence[Any]) -> int:
        """Append records in order; return the seq of the last once etcd holds them all.

        An empty batch writes nothing and returns `last_seq`.
        """
        if not records:
            await trio.lowlevel.checkpoint()
            return self._last_seq
        return await self._commit(self._submission(records))

    def read(self, from_seq: int = 1) -> Iterator[tuple[int, Any]]:
        """(seq, record) from `from_seq` (or `first_seq`, if later) up to the `last_seq` of now.

        Blocking (a sync HTTP client): iterate it in a thread. The records come from one
        revision of etcd, read a page at a time.
        """
        return chain.from_iterable(
            zip(range(first, first + len(records)), records, strict=True)
            for first, records in self._pages(from_seq, self._last_seq)
        )

    def records(self, from_seq: int = 1) -> Iterator[Any]:
        """The records alone, as `read` finds them: what `recover` folds (blocking)."""
        return chain.from_iterable(records for _, records in self._pages(from_seq, self._last_seq))

    async def follow(
        self, from_seq: int = 1, heartbeat: float | None = None
    ) -> AsyncIterator[tuple[int, Any] | None]:
        """(seq, record) from `from_seq` on, then each record as it is written (a read-only
        log: as `track` sees it arrive).

        With `heartbeat`, yields None after that many idle seconds. Ends when the log is closed
        (after yielding every record it had), or when the next record was compacted away
        before it could be read: its consumer finds `first_seq` past where it was.
        """
        seq = max(from_seq, self._first_seq)
        while True:
            if seq > self._last_seq:
                if self._closed:
                    return
                if heartbeat is None:
                    await self._advanced.wait()
                    continue
                with trio.move_on_after(heartbeat) as idle:
                    await self._advanced.wait()
                if idle.cancelled_caught:
                    yield None
                continue
            items = self._from_tail(seq)
            if items is None:
                items = await self._fetch(seq)
                if not items:
                    return
            for item in items:
                yield item
            seq = items[-1][0] + 1

    async def save_snapshot(self, seq: int, blob: bytes) -> None:
        """Store `blob` as standing for every record up to `seq` (which must be written).

        Small blobs go in the snapshot key itself; larger ones in chunk keys under the
        snapshot's seq, written first, then the head switches to them in one transaction that
        also deletes the older snapshot's chunks: a failure leaves the old snapshot whole.
        """
        if not 0 < seq <= self._last_seq:
            raise ValueError(f"snapshot at {seq}: only 1..{self._last_seq} are written")
        chunk = self._budget - len(self.keys.chunk(seq, 0)) - _OP_BYTES
        crc = zlib.crc32(blob)
        if len(blob) + 64 <= chunk:
            head = SnapshotHead(seq, len(blob), crc, 0, blob)
        else:
            pieces = [blob[i : i + chunk] for i in range(0, len(blob), chunk)]
            for n, piece in enumerate(pieces):
                await self._fenced([put(self.keys.chunk(seq, n), piece)], "write a snapshot")
            head = SnapshotHead(seq, len(blob), crc, len(pieces))
        ours = self.keys.chunks(seq)
        reply = await self._fenced(
            [
                put(self.keys.snapshot, self._encoder.encode(head)),
                delete(self.keys.chunks_prefix, ours),  # older snapshots' chunks
                delete(prefix_end(ours), self.keys.chunks_end),  # abandoned newer ones
            ],
            "write a snapshot",
        )
        self._snapshot_seq, self._snapshot_revision = seq, reply.header.revision

    async def load_snapshot(self) -> tuple[int, bytes] | None:
        """The newest snapshot: `(seq, blob)`; read the log from `seq + 1` after it.

        Raises CorruptEtcdLog when its chunks are missing or its checksum fails (the log
        before it may already be compacted away: there is no older one to fall back on).
        """
        found = await self.client.range(self.keys.snapshot)
        if not found.kvs:
            return None
        kv = found.kvs[0]
        head = self._head(kv)
        self._snapshot_seq, self._snapshot_revision = head.seq, kv.mod_revision
        blob = head.blob
        if head.chunks:
            blob = await self._read_chunks(head, found.header.revision)
        if len(blob) != head.size or zlib.crc32(blob) != head.crc:
            raise CorruptEtcdLog(
                self.keys.snapshot.decode(), head.seq, "the snapshot fails its checksum"
            )
        return head.seq, blob

    async def compact(self, before_seq: int) -> int:
        """Delete the records before both `before_seq` and the newest snapshot's seq + 1,
        keeping the last record; return how many were deleted.

        Then etcd's history is compacted up to the newest snapshot's revision, so that the
        deleted records leave etcd's database too (a watcher from an older revision must
        start again from a range).
        """
        self._writable("compact the log")
        snapshot, revision = await self._newest_snapshot()
        limit = min(before_seq, snapshot + 1, self._last_seq)
        if limit <= self._first_seq:
            await trio.lowlevel.checkpoint()
            return 0
        reply = await self._fenced(
            [delete(self.keys.log_prefix, self.keys.log(limit))], "compact the log"
        )
        deleted = reply.responses[0].response_delete_range
        self._first_seq = limit
        self._drop_tail_before(limit)
        if revision:
            try:
                await self.client.compact(revision)
            except EtcdError as exc:
                logger.warning("cannot compact etcd's history: %s", exc)
        return deleted.deleted if deleted is not None else 0

    async def track(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep a read-only log up to date: read what was written since `last_seq`, then watch
        the log's keys, so that `last_seq`, `first_seq` and `follow` move as the leader
        writes. Started once the watch runs; returns when the log is promoted or closed.
        Retries while etcd is unavailable.
        """
        if self._fence is not None:
            raise RuntimeError("a leader's log is its own writer: there is nothing to track")
        started = False
        retry = _RETRY_FIRST
        with trio.CancelScope() as scope:
            self._tracking = scope
            try:
                while not self._closed:
                    try:
                        revision = await self._catch_up()
                        async with self.client.watch(
                            self.keys.log_prefix, self.keys.log_end, start_revision=revision + 1
                        ) as watch:
                            if not started:
                                task_status.started()
                                started = True
                            retry = _RETRY_FIRST
                            async for response in watch:
                                if not self._watched(response):
                                    break  # a record is missing: read the range again
                    except EtcdCompacted:
                        continue
                    except EtcdUnavailable as exc:
                        logger.warning("following the log in etcd: %s", exc)
                        await trio.sleep(retry)
                        retry = min(retry * 2, _RETRY_MAX)
            finally:
                self._tracking = None

    async def promote(self, fence: Fence) -> int:
        """Make this read-only log the leader's, with `fence` (the election just won); return
        `last_seq`, read again from etcd: once the fence holds, no one else can write."""
        if self._fence is not None:
            raise RuntimeError("this log already has a fence")
        if self._failed is not None or self._closing:
            raise LogWriteError("this log is closed or failed: open a new one")
        if self._tracking is not None:
            self._tracking.cancel()
        self._fence = fence
        with contextlib.suppress(EtcdError):  # the writes go there first (a hop less)
            await self.client.prefer_leader()
        first, last = await _bounds(self.client, self.keys)
        self._first_seq = max(self._first_seq, first)
        if last > self._last_seq:
            await self._catch_up()
        return self._last_seq

    async def aclose(self) -> None:
        """Wait for the appends already made, then close. Later appends raise LogWriteError."""
        self._closing = True
        await self._group.idle()
        self._closed = True
        if self._tracking is not None:
            self._tracking.cancel()
        self._advanced.set()  # wakes followers so that they end
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> EtcdLog:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- appending ---------------------------------------------------------------------------

    def _submission(self, records: Sequence[Any]) -> _Submission:
        values = [self._encoder.encode(record) for record in records]
        for value in values:
            if self._validate:
                try:
                    self._check_one.decode(value)
                except msgspec.ValidationError as exc:
                    raise TypeError(
                        f"record does not match the event log's record type: {exc}"
                    ) from None
            if self._put_bytes(value) > self._budget:
                raise LogWriteError(
                    f"a record of {len(value)} bytes does not fit in one etcd request"
                    f" ({self._budget + _REQUEST_SLACK} bytes at most: etcd's"
                    " --max-request-bytes)"
                )
        return _Submission(values, list(records))

    def _put_bytes(self, value: bytes) -> int:
        return len(self.keys.log_prefix) + 20 + len(value) + _OP_BYTES

    def _writable(self, what: str) -> Fence:
        if self._failed is not None:
            raise type(self._failed)(str(self._failed))
        if self._closing:
            raise LogWriteError(f"cannot {what}: the etcd log is closed")
        if self._fence is None:
            raise NotLeader(f"cannot {what}: this manager is not the leader (a read-only log)")
        return self._fence

    async def _commit(self, sub: _Submission) -> int:
        self._writable("append to the event log")
        # A log that failed meanwhile fails what is still queued: each later flush raises its
        # error at once (`_flush`), so nothing after a failure is written.
        await self._group.submit(sub)
        return sub.result()

    async def _flush(self, batch: list[_Submission]) -> None:
        """Write the records of `batch` in as few transactions as etcd takes, in order."""
        first = self._last_seq + 1
        values = [value for sub in batch for value in sub.values]
        records = [record for sub in batch for record in sub.records]
        written = first - 1  # seq of the last record etcd holds
        error: LogWriteError | None = None
        try:
            if self._failed is not None:
                raise self._failed
            for start, stop in self._split(values):
                began = time.perf_counter()
                await self._write(first + start, values[start:stop])
                self.txn_count += 1
                if self.on_txn is not None:
                    self.on_txn(time.perf_counter() - began)
                written = first + stop - 1
                self._extend(first + start, records[start:stop])
        except LogWriteError as exc:
            error = exc
        seq = first - 1
        for sub in batch:
            seq += sub.count
            if seq <= written:
                sub.seq = seq
            else:
                assert error is not None
                sub.error = error
                if seq - sub.count < written:  # part of this append is in etcd
                    self._fail(
                        LogWriteError(
                            f"records {seq - sub.count + 1}..{written} of an append are in etcd"
                            f" and the rest not ({error}): the log refuses appends; start again"
                            " from etcd"
                        )
                    )
            sub.done.set()

    def _split(self, values: list[bytes]) -> Iterator[tuple[int, int]]:
        """[start, stop) of each transaction's share of `values`."""
        start, size = 0, 0
        for i, value in enumerate(values):
            cost = self._put_bytes(value)
            if i > start and (i - start >= self._max_ops or size + cost > self._budget):
                yield start, i
                start, size = i, 0
            size += cost
        if start < len(values):
            yield start, len(values)

    async def _write(self, first: int, values: list[bytes]) -> None:
        """One transaction: the records from `first` on, if the fence holds and `first` is not
        written yet; a repeat of an attempt that was applied counts as written."""
        fence = self._fence
        assert fence is not None
        key = self.keys.log(first)
        reply = await self._txn(
            [created(fence.key, fence.revision), created(key, 0)],
            [put(self.keys.log(first + i), value) for i, value in enumerate(values)],
            [get(fence.key, keys_only=True), get(key)],
            f"append records {first}..{first + len(values) - 1}",
            sticky=True,
        )
        if reply.succeeded:
            return
        leader, record = (_kv(op) for op in reply.responses)
        if record is not None and record.value == values[0]:
            return  # an attempt whose answer was lost was applied
        if leader is None or leader.create_revision != fence.revision:
            raise self._fail(self._not_leader(leader, fence))
        raise self._fail(
            LogWriteError(
                f"cannot append record {first}: etcd already holds another record there"
                " (another writer?): the log refuses appends; start again from etcd"
            )
        )

    async def _fenced(self, ops: list[RequestOp], what: str) -> TxnResponse:
        """`ops` in one transaction if the fence holds; each op must be harmless to repeat."""
        fence = self._writable(what)
        reply = await self._txn(
            [created(fence.key, fence.revision)],
            ops,
            [get(fence.key, keys_only=True)],
            what,
            sticky=False,
        )
        if not reply.succeeded:
            raise self._fail(self._not_leader(_kv(reply.responses[0]), fence))
        return reply

    async def _txn(
        self,
        compare: list[Compare],
        success: list[RequestOp],
        failure: list[RequestOp],
        what: str,
        *,
        sticky: bool,
    ) -> TxnResponse:
        """The transaction, retried until etcd answers it or `write_timeout` passes. With
        `sticky`, an attempt whose outcome stays unknown leaves the log refusing appends."""
        deadline = trio.current_time() + self.write_timeout
        retry = _RETRY_FIRST
        unanswered: EtcdError | None = None  # an attempt etcd may have applied
        while True:
            with trio.move_on_at(deadline):
                try:
                    return await self.client.txn(compare, success, failure)
                except EtcdUnavailable as exc:
                    unanswered = exc
                    logger.warning("cannot %s yet: %s", what, exc.message)
                except EtcdError as exc:
                    if unanswered is None or not sticky:
                        raise LogWriteError(f"cannot {what}: etcd refused: {exc.message}") from exc
                    unanswered = exc
                if trio.current_time() + retry < deadline:
                    await trio.sleep(retry)
                    retry = min(retry * 2, _RETRY_MAX)
                    continue
            reason = f" ({unanswered.message})" if unanswered is not None else ""
            error = LogWriteError(
                f"cannot {what}: etcd gave no answer in {self.write_timeout:g} s{reason}"
                + ("; whether it was written is unknown: the log refuses appends" * sticky)
            )
            if sticky:
                self._fail(error)
            raise error from unanswered

    def _not_leader(self, leader: KeyValue | None, fence: Fence) -> NotLeader:
        now = "is gone" if leader is None else f"was created at revision {leader.create_revision}"
        return NotLeader(
            f"not the leader any more: the leader key {fence.key.decode()} {now}, and this"
            f" manager led from its revision {fence.revision}; nothing was written"
        )

    def _fail(self, error: LogWriteError) -> LogWriteError:
        """From now on every append raises `error` (the first such error stays)."""
        if self._failed is None:
            self._failed = error
            logger.error("the event log in etcd refuses appends from now on: %s", error)
            self.refused.set()
        return error

    # -- the records it holds ----------------------------------------------------------------

    def _extend(self, first: int, records: list[Any]) -> None:
        """Records `first`.. are in etcd: move `last_seq` and wake followers. Records already
        known are skipped; a gap (records compacted away before a reader saw them) moves
        `first_seq` past it."""
        skip = self._last_seq + 1 - first
        if skip > 0:
            records, first = records[skip:], first + skip
        if not records:
            return
        if first != self._last_seq + 1:
            self._tail.clear()
            self._tail_count = 0
            self._first_seq = max(self._first_seq, first)
        self._tail.append((first, records))
        self._tail_count += len(records)
        while len(self._tail) > 1 and self._tail_count > _TAIL_RECORDS:
            self._tail_count -= len(self._tail.popleft()[1])
        self._last_seq = first + len(records) - 1
        self._advanced.set()
        self._advanced = trio.Event()

    def _drop_tail_before(self, seq: int) -> None:
        while self._tail and self._tail[0][0] + len(self._tail[0][1]) <= seq:
            self._tail_count -= len(self._tail.popleft()[1])

    def _from_tail(self, seq: int) -> list[tuple[int, Any]] | None:
        """The records from `seq` to the end of its chunk, if that chunk is still in memory."""
        for first, records in reversed(self._tail):
            if first <= seq:
                if seq >= first + len(records):
                    return None
                return list(
                    zip(range(seq, first + len(records)), records[seq - first :], strict=True)
                )
        return None

    async def _fetch(self, seq: int) -> list[tuple[int, Any]]:
        """Up to a page of records from `seq` on, from etcd; [] if `seq` was compacted away."""
        page = await self.client.range(
            self.keys.log(seq), self.keys.log(self._last_seq + 1), limit=PAGE
        )
        if not page.kvs or self.keys.seq(page.kvs[0].key) != seq:
            return []
        records = self._decode(page.kvs, seq)
        return list(zip(range(seq, seq + len(records)), records, strict=True))

    def _pages(self, from_seq: int, last_seq: int) -> Iterator[tuple[int, list[Any]]]:
        """(first seq, records) a page at a time, all read at one etcd revision (blocking)."""
        seq, revision = max(from_seq, 1), 0
        end = self.keys.log(last_seq + 1)
        with SyncEtcdClient(self.client.endpoints, timeout=self.client.timeout) as client:
            while seq <= last_seq:
                page = client.range(self.keys.log(seq), end, limit=PAGE, revision=revision)
                if not page.kvs:
                    return
                first = self.keys.seq(page.kvs[0].key)
                if revision and first != seq:  # (the first page may start after a compaction)
                    raise CorruptEtcdLog(self.keys.log(seq).decode(), seq, "the record is missing")
                revision = revision or page.header.revision
                yield first, self._decode(page.kvs, first)
                if not page.more:
                    return
                seq = first + len(page.kvs)

    def _decode(self, kvs: list[KeyValue], first: int) -> list[Any]:
        """The records of consecutive keys from `first` on, through the upcasters if needed."""
        last = self.keys.seq(kvs[-1].key)
        if last != first + len(kvs) - 1:
            raise CorruptEtcdLog(
                kvs[0].key.decode(), first, f"keys up to seq {last} are not contiguous"
            )
        payload = b"".join([array_header(len(kvs)), *(kv.value for kv in kvs)])
        try:
            return self._decoder.decode(payload)
        except msgspec.DecodeError:
            for kv in kvs:  # which one: each alone
                try:
                    self._decoder.decode(array_header(1) + kv.value)
                except msgspec.DecodeError as exc:
                    raise CorruptEtcdLog(
                        kv.key.decode(), self.keys.seq(kv.key), f"undecodable record ({exc})"
                    ) from None
            raise

    async def _catch_up(self) -> int:
        """Read what etcd holds after `last_seq` (at one revision); return that revision."""
        revision = 0
        while True:
            page = await self.client.range(
                self.keys.log(self._last_seq + 1), self.keys.log_end, limit=PAGE, revision=revision
            )
            revision = revision or page.header.revision
            if page.kvs:
                first = self.keys.seq(page.kvs[0].key)
                self._extend(first, self._decode(page.kvs, first))
            if not page.more:
                return revision

    def _watched(self, response: WatchResponse) -> bool:
        """Take in what a watch of the log's keys saw; False when a record is missing."""
        run: list[KeyValue] = []
        complete = True
        for event in response.events:
            seq = self.keys.seq(event.kv.key)
            if event.type == "DELETE":  # compaction
                self._first_seq = max(self._first_seq, seq + 1)
                self._drop_tail_before(seq + 1)
            elif seq == self._last_seq + len(run) + 1:
                run.append(event.kv)
            elif seq > self._last_seq + len(run) + 1:
                complete = False
                break
        if run:
            first = self._last_seq + 1
            self._extend(first, self._decode(run, first))
        return complete

    # -- snapshots ---------------------------------------------------------------------------

    def _head(self, kv: KeyValue) -> SnapshotHead:
        try:
            return _HEADS.decode(kv.value)
        except msgspec.DecodeError as exc:
            raise CorruptEtcdLog(
                self.keys.snapshot.decode(), 0, f"undecodable snapshot head ({exc})"
            ) from None

    async def _read_chunks(self, head: SnapshotHead, revision: int) -> bytes:
        """The snapshot's chunks, read at `revision` (the head's), a few at a time."""
        parts: list[bytes] = []
        start = self.keys.chunks(head.seq)
        end = prefix_end(start)
        while True:
            page = await self.client.range(start, end, limit=4, revision=revision)
            parts.extend(kv.value for kv in page.kvs)
            if not page.more or not page.kvs:
                break
            start = page.kvs[-1].key + b"\0"
        if len(parts) != head.chunks:
            raise CorruptEtcdLog(
                self.keys.chunks(head.seq).decode(),
                head.seq,
                f"the snapshot has {len(parts)} of its {head.chunks} chunks",
            )
        return b"".join(parts)

    async def _newest_snapshot(self) -> tuple[int, int]:
        """(seq, etcd revision) of the newest snapshot; (0, 0) for none. Known once this log
        saved or loaded one: only the leader writes it."""
        if not self._snapshot_revision:
            found = await self.client.get(self.keys.snapshot)
            if found is not None:
                self._snapshot_seq = self._head(found).seq
                self._snapshot_revision = found.mod_revision
        return self._snapshot_seq, self._snapshot_revision


def _kv(op: ResponseOp) -> KeyValue | None:
    found = op.response_range
    return found.kvs[0] if found is not None and found.kvs else None


async def _bounds(client: EtcdClient, keys: Keys) -> tuple[int, int]:
    """(first_seq, last_seq) as etcd holds them now: the first log key and how many follow,
    checked to be contiguous; without keys, just after the snapshot (or 1, 0)."""
    found = await client.range(keys.log_prefix, keys.log_end, limit=1, keys_only=True)
    if not found.kvs:
        head = await client.get(keys.snapshot)
        seq = _HEADS.decode(head.value).seq if head is not None else 0
        return seq + 1, seq
    first = keys.seq(found.kvs[0].key)
    last = first + found.count - 1
    end = await client.range(keys.log(last), revision=found.header.revision, keys_only=True)
    if not end.kvs:
        raise CorruptEtcdLog(
            keys.log_prefix.decode(),
            first,
            f"{found.count} log keys from seq {first} on, but not contiguous",
        )
    return first, last
