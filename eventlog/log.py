"""An append-only, checksummed, group-committed log of msgspec records.

Appends made while a flush runs are written together by the next flush: one frame, one write,
one fdatasync. There is no background task: the first appender that finds no flush running
flushes (it "leads"), and hands the lead to a waiting appender when it is done, so every flush is
run by a task whose own records are in it. The write and the fdatasync run in the log's own
thread (`eventlog.writer`), into space reserved ahead with zeros (`EventLog._write`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import msgspec
import trio

from eventlog.errors import LogWriteError, Recovery
from eventlog.framing import HEADER_SIZE, MAGIC, RESERVE_BYTES, array_header, encode_frame
from eventlog.groupcommit import GroupCommit
from eventlog.reader import (
    FrameRecords,
    Older,
    RecordDecoder,
    decode_frames,
    number,
    numbered,
    unnumbered,
)
from eventlog.segments import (
    Segment,
    create_segment,
    fsync_dir,
    load_segments,
    lock_directory,
    pwrite_all,
    write_zeros,
)
from eventlog.snapshots import latest_snapshot, snapshot_seqs, write_snapshot
from eventlog.writer import WriterThread

_TAIL_FRAMES = 256  # recent frames kept in memory so that live followers need no disk reads
_TAIL_BYTES = 4 * 1024 * 1024
_FOLLOW_CHUNK = 4096  # records a follower reads from disk per thread call


class _Submission:
    """The records of one append call, waiting for their flush."""

    __slots__ = ("count", "data", "done", "error", "lead", "seq")

    def __init__(self, data: bytes | memoryview, count: int) -> None:
        self.data = data  # the encoded records, without the msgpack array header
        self.count = count
        self.done = trio.Event()
        self.lead = False  # set when this submission's task must run the next flush
        self.seq = 0  # seq of its last record, once durable
        self.error: tuple[str, BaseException] | None = None

    def result(self) -> int:
        if self.error is not None:
            message, cause = self.error
            raise LogWriteError(message) from cause
        return self.seq


class EventLog:
    """A directory of segment files holding records numbered 1, 2, 3, ... without gaps.

    Use `EventLog.open`; the constructor does no I/O (it starts the log's writer thread, which
    `aclose` ends).
    """

    def __init__(
        self,
        directory: str,
        record_type: Any,
        segment_bytes: int,
        segments: list[Segment],
        fd: int,
        file_size: int,
        lock_fd: int,
        recovery: Recovery | None,
        validate: bool | Literal["type"],
        older: Older | None = None,
    ) -> None:
        self.directory = directory
        self.recovery = recovery
        self.fsync_count = 0
        # Told the seconds of each fdatasync of an append, in the writer thread (one at a time):
        # how a program times its log's fsyncs (orc's /metrics) without the log knowing of it.
        self.on_fsync: Callable[[float], None] | None = None
        self._segment_bytes = segment_bytes
        self._segments = segments
        self._fd = fd
        self._reserved = file_size  # the end of the last segment's file: zeros after its frames
        self._lock_fd = lock_fd
        self._validate = validate
        self._encoder = msgspec.msgpack.Encoder()
        self._check_one = msgspec.msgpack.Decoder(record_type)
        self._check_all: msgspec.msgpack.Decoder[list[Any]] = msgspec.msgpack.Decoder(
            list[record_type]
        )
        self._types = _struct_types(record_type) if validate == "type" else frozenset()
        self._decoder = RecordDecoder(record_type, older)
        self._last_seq = segments[-1].next_seq - 1
        self._writer = WriterThread(f"eventlog writer {directory}")
        self._group: GroupCommit[_Submission] = GroupCommit(self._flush)
        self._durable = trio.Event()  # set and replaced after each durable flush
        self._tail: deque[tuple[int, int, memoryview]] = deque()  # (first_seq, count, payload)
        self._tail_bytes = 0
        self._closing = False  # no more appends
        self._closed = False  # appends drained, files closed

    @classmethod
    async def open(
        cls,
        directory: str | Path,
        record_type: Any,
        *,
        segment_bytes: int = 64 * 1024 * 1024,
        validate: bool | Literal["type"] = True,
        older: Older | None = None,
    ) -> EventLog:
        """Open (or create) the log in `directory`, checking every segment.

        Raises CorruptLogError on damage before the tail; cuts off a torn tail and reports it in
        `recovery`. Raises LogLockedError if the log is already open.

        Appends refuse (TypeError) records the log could not decode again: one such record
        would make the log impossible to replay. How they are checked, by `validate`:

        - True: each record is decoded back as `record_type`, so a field of the wrong type is
          caught too (msgspec does not check types when a struct is built). This second decode
          costs up to a quarter of the throughput of large batches.
        - "type": each record is an instance of one of the Struct types `record_type` names,
          the one thing msgspec's encoder does not guarantee (it encodes any struct, dict or
          list), for a few percent. Field types are then the caller's guarantee: a program
          whose records are built by statically type-checked code (mypy) from values msgspec
          validated on their way in.
        - False: nothing is checked.

        `older` decodes the frames `record_type` refuses: records an older version of the
        program wrote (see `eventlog.reader.RecordDecoder`).
        """
        if validate == "type":
            _struct_types(record_type)  # refuse a record type it cannot check before any I/O
        directory = os.fspath(directory)
        files = await trio.to_thread.run_sync(_open_files, directory)
        segments, fd, file_size, lock_fd, recovery = files
        return cls(
            directory,
            record_type,
            segment_bytes,
            segments,
            fd,
            file_size,
            lock_fd,
            recovery,
            validate,
            older,
        )

    @property
    def last_seq(self) -> int:
        """Seq of the last durable record; 0 when the log is empty."""
        return self._last_seq

    @property
    def first_seq(self) -> int:
        return self._segments[0].first_seq

    async def append(self, record: Any) -> int:
        """Append one record; return its seq once it is on disk."""
        if self._types:
            self._check_types((record,))
        data = self._encoder.encode(record)
        if self._validate is True:
            self._check(self._check_one, data)
        return await self._commit(_Submission(data, 1))

    async def append_batch(self, records: Sequence[Any]) -> int:
        """Append records in order, in one flush; return the seq of the last once on disk.

        An empty batch writes nothing and returns `last_seq`.
        """
        if not records:
            await trio.lowlevel.checkpoint()
            return self._last_seq
        if self._types:
            self._check_types(records)
        data = self._encoder.encode(records)
        if self._validate is True:
            self._check(self._check_all, data)
        body = memoryview(data)[len(array_header(len(records))) :]
        return await self._commit(_Submission(body, len(records)))

    def read(self, from_seq: int = 1) -> Iterator[tuple[int, Any]]:
        """(seq, record) for every record from `from_seq` on that was durable when reading began.

        Blocking file I/O: run it in a thread or before the event loop is busy. Records are
        decoded a frame at a time and iterated in C: replay speed is this loop's speed.
        """
        return numbered(self._read_frames(from_seq))

    def records(self, from_seq: int = 1) -> Iterator[Any]:
        """The records alone, as `read` finds them: the fastest way to fold a log (blocking)."""
        return unnumbered(self._read_frames(from_seq))

    def _read_frames(self, from_seq: int) -> FrameRecords:
        return decode_frames([s.snapshot() for s in self._segments], from_seq, self._decoder)

    async def follow(
        self, from_seq: int = 1, heartbeat: float | None = None
    ) -> AsyncIterator[tuple[int, Any] | None]:
        """(seq, record) from `from_seq` on, then each record as it becomes durable.

        With `heartbeat`, yields None after that many idle seconds: a consumer that streams to
        a client learns that the client is gone only when it next writes to it.
        Ends when the log is closed (after yielding every record appended before), or runs until
        the caller stops iterating.
        """
        seq = max(from_seq, self.first_seq)
        disk: FrameRecords | None = None
        try:
            while True:
                if seq > self._last_seq:
                    if self._closed:
                        return
                    if heartbeat is None:
                        await self._durable.wait()
                        continue
                    with trio.move_on_after(heartbeat) as idle:
                        await self._durable.wait()
                    if idle.cancelled_caught:
                        yield None
                    continue
                items = self._from_tail(seq)
                if items is None:
                    disk = disk or self._read_frames(seq)
                    items = await trio.to_thread.run_sync(_take, disk, _FOLLOW_CHUNK)
                    if not items:  # past what was durable when `disk` began reading
                        disk.close()
                        disk = None
                        continue
                elif disk is not None:
                    disk.close()
                    disk = None
                for item in items:
                    yield item
                seq = items[-1][0] + 1
        finally:
            if disk is not None:
                disk.close()

    async def save_snapshot(self, seq: int, blob: bytes) -> None:
        """Store `blob` as standing for every record up to `seq` (which must be durable)."""
        if not 0 < seq <= self._last_seq:
            raise ValueError(f"snapshot at {seq}: only 1..{self._last_seq} are durable")
        try:
            await trio.to_thread.run_sync(write_snapshot, self.directory, seq, blob)
        except OSError as exc:
            raise LogWriteError(
                f"cannot write a snapshot in {self.directory}: {exc.strerror or exc}"
            ) from exc

    async def load_snapshot(self) -> tuple[int, bytes] | None:
        """The newest intact snapshot: `(seq, blob)`; read the log from `seq + 1` after it."""
        return await trio.to_thread.run_sync(latest_snapshot, self.directory, self._last_seq)

    async def compact(self, before_seq: int) -> int:
        """Remove whole segments whose records all precede both `before_seq` and the newest
        snapshot, so nothing is lost that a start-up needs. Returns how many were removed.

        The segment being written is never removed.
        """
        snapshots = await trio.to_thread.run_sync(snapshot_seqs, self.directory)
        limit = min(before_seq, snapshots[0] + 1 if snapshots else 1)
        doomed = [s for s in self._segments[:-1] if s.next_seq <= limit]
        if not doomed:
            return 0
        del self._segments[: len(doomed)]  # in place: a flush may be adding a segment to it
        for segment in doomed:
            await trio.to_thread.run_sync(os.unlink, segment.path)
        await trio.to_thread.run_sync(fsync_dir, self.directory)
        return len(doomed)

    async def aclose(self) -> None:
        """Wait for the appends already made, then close. Later appends raise LogWriteError."""
        self._closing = True
        await self._group.idle()
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        with trio.CancelScope(shield=True):  # one ftruncate: the files are closed whatever comes
            await self._writer.run(self._trim)
        self._writer.close()
        os.close(self._fd)
        os.close(self._lock_fd)  # releases the lock
        self._durable.set()  # wakes followers so that they end
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> EventLog:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- appending ---------------------------------------------------------------------------

    @staticmethod
    def _check(decoder: msgspec.msgpack.Decoder[Any], data: bytes) -> None:
        """Refuse records the log could not decode again: such a log could never be replayed."""
        try:
            decoder.decode(data)
        except msgspec.ValidationError as exc:
            raise TypeError(f"record does not match the event log's record type: {exc}") from None

    def _check_types(self, records: Sequence[Any]) -> None:
        """Refuse a record that is not one of the record type's structs (`validate="type"`)."""
        if self._types.issuperset(map(type, records)):  # in C: a few ns a record
            return
        wrong = next(r for r in records if type(r) not in self._types)
        raise TypeError(
            f"record does not match the event log's record type: a {type(wrong).__name__},"
            f" not one of {', '.join(sorted(t.__name__ for t in self._types))}"
        )

    async def _commit(self, sub: _Submission) -> int:
        if self._closing:
            raise LogWriteError(f"cannot append to event log {self.directory}: the log is closed")
        await self._group.submit(sub)
        return sub.result()

    async def _flush(self, batch: list[_Submission]) -> None:
        first = self._last_seq + 1
        count = sum(sub.count for sub in batch)
        try:
            frame = encode_frame(first, count, [array_header(count), *(sub.data for sub in batch)])
            await self._writer.run(self._write, frame, first, count)
        except Exception as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            error = (f"cannot append to event log {self._segments[-1].path}: {reason}", exc)
            for sub in batch:
                sub.error = error
                sub.done.set()
            return
        self._last_seq = first + count - 1
        self._remember(first, count, memoryview(frame)[HEADER_SIZE:])
        seq = first - 1
        for sub in batch:
            seq += sub.count
            sub.seq = seq
            sub.done.set()
        self._durable.set()
        self._durable = trio.Event()

    def _write(self, frame: bytes, first: int, count: int) -> None:
        """Write and fdatasync one frame (in the writer thread); on failure leave no trace.

        The frame goes into space reserved with zeros by an earlier flush, when there is some:
        an fdatasync that overwrites allocated blocks writes the data alone, one that grows the
        file must also write its size and block map (on ext4 without a journal, 230-260 µs
        against 140-165 µs for 63 KB). When less than another such frame is left, this flush
        also reserves the next `RESERVE_BYTES` (one fdatasync for both).
        """
        segment = self._segments[-1]
        if segment.next_seq > segment.first_seq and (
            segment.size > self._segment_bytes or not segment.reserves
        ):
            # (a segment that holds no frame yet is never rolled: its successor would have
            # its very name; one of the old format is, so that the frames go on in a segment
            # that reserves space)
            segment = self._roll(first)
        end = segment.size + len(frame)
        try:
            if not segment.reserves:  # an old-format segment with no frame: made a new one
                pwrite_all(self._fd, MAGIC, 0)
            pwrite_all(self._fd, frame, segment.size)
            self._reserved = max(self._reserved, end)
            if self._reserved - end < len(frame):
                self._reserve(end, len(frame))
            self._fdatasync(self._fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, segment.size)
            self._reserved = segment.size
            raise
        segment.reserves = True
        segment.add_frame(first, count, len(frame))

    def _reserve(self, end: int, frame_bytes: int) -> None:
        """Fill the space after `end` with zeros (up to the segment's size, past which it
        would be given back at once)."""
        target = -(-(end + max(RESERVE_BYTES, 4 * frame_bytes)) // 4096) * 4096
        target = min(target, max(self._segment_bytes, end))
        if target <= self._reserved:
            return
        try:
            write_zeros(self._fd, self._reserved, target - self._reserved)
        except OSError:  # no room to reserve (the frame itself was written): grow as needed
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, end)
            self._reserved = end
            return
        self._reserved = target

    def _trim(self) -> None:
        """Give back the space reserved after the last frame: the segments of a closed log end
        with their last frame. Not synced: if a crash undoes it, the zeros are back, and read
        as the end all the same."""
        segment = self._segments[-1]
        if self._reserved > segment.size:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, segment.size)
            self._reserved = segment.size

    def _roll(self, first: int) -> Segment:
        self._trim()
        fd, segment = create_segment(self.directory, first)
        self.fsync_count += 1
        os.close(self._fd)
        self._fd = fd
        self._reserved = segment.size
        self._segments.append(segment)
        return segment

    def _fdatasync(self, fd: int) -> None:
        start = time.perf_counter()
        os.fdatasync(fd)
        self.fsync_count += 1
        if self.on_fsync is not None:
            self.on_fsync(time.perf_counter() - start)

    # -- reading -----------------------------------------------------------------------------

    def _remember(self, first: int, count: int, payload: memoryview) -> None:
        self._tail.append((first, count, payload))
        self._tail_bytes += len(payload)
        while len(self._tail) > 1 and (
            len(self._tail) > _TAIL_FRAMES or self._tail_bytes > _TAIL_BYTES
        ):
            self._tail_bytes -= len(self._tail.popleft()[2])

    def _from_tail(self, seq: int) -> list[tuple[int, Any]] | None:
        """The records from `seq` to the end of its frame, if that frame is still in memory."""
        for first, count, payload in reversed(self._tail):
            if first <= seq:
                if seq >= first + count:
                    return None
                records = self._decoder.decode(payload)
                return list(zip(range(first, first + count), records, strict=True))[seq - first :]
        return None


def _struct_types(record_type: Any) -> frozenset[type]:
    """The Struct classes a record type is made of (one, or a union of them)."""
    members = get_args(record_type) or (record_type,)
    if not all(isinstance(t, type) and issubclass(t, msgspec.Struct) for t in members):
        raise ValueError(f'validate="type" needs Struct record types, not {record_type!r}')
    return frozenset(members)


def _open_files(directory: str) -> tuple[list[Segment], int, int, int, Recovery | None]:
    lock_fd = lock_directory(directory)
    try:
        segments, recovery = load_segments(directory)
        if segments:
            fd = os.open(segments[-1].path, os.O_WRONLY)
        else:
            fd, segment = create_segment(directory, 1)
            segments = [segment]
        file_size = os.fstat(fd).st_size
    except BaseException:
        os.close(lock_fd)
        raise
    return segments, fd, file_size, lock_fd, recovery


def _take(frames: FrameRecords, n: int) -> list[tuple[int, Any]]:
    """The (seq, record) of the next frames, at least `n` unless the frames run out."""
    items: list[tuple[int, Any]] = []
    for first, records in frames:
        items.extend(number(first, records))
        if len(items) >= n:
            break
    return items
