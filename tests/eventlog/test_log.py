"""The event log against real files: numbering, recovery, corruption, group commit, follow."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import msgspec
import pytest
import trio
import trio.testing

from eventlog import (
    CorruptLogError,
    EventLog,
    LogLockedError,
    LogWriteError,
    Recovery,
    open_readonly,
    read_log,
)
from eventlog.framing import HEADER, HEADER_SIZE, MAGIC, MAGIC_V1, array_header

FIRST_SEGMENT = "00000000000000000001.seg"


class Ev(msgspec.Struct, tag=True, frozen=True):
    id: str


class Created(Ev, frozen=True):
    size: int = 0


class Deleted(Ev, frozen=True):
    reason: str = ""


Record = Created | Deleted


def rec(i: int) -> Record:
    return Created(f"t{i}", size=i) if i % 2 else Deleted(f"t{i}", reason="r" * (i % 7))


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


async def reopen(directory: Path, **kwargs: int) -> EventLog:
    return await EventLog.open(directory, Record, **kwargs)


def frame_ends(path: Path) -> list[int]:
    """Where each frame of a segment ends (the file goes on with the zeros its writer reserved,
    so its size is not the end of its last frame)."""
    data = path.read_bytes()
    ends, pos = [], len(MAGIC)
    while len(data) - pos >= HEADER_SIZE and data[pos : pos + 4] == b"\xc1LOG":
        pos += HEADER_SIZE + HEADER.unpack_from(data, pos)[2]
        ends.append(pos)
    return ends


def make_v1(path: Path) -> None:
    """Make a segment one of the old format: its frames alone, after the old MAGIC (what orc
    wrote before segments reserved space)."""
    ends = frame_ends(path)
    path.write_bytes(MAGIC_V1 + path.read_bytes()[len(MAGIC) : ends[-1] if ends else len(MAGIC)])


async def write_log(
    directory: Path, batches: list[list[Record]], crashed: bool = False
) -> list[int]:
    """Append each batch as one frame; return where each frame ends in the file.

    `crashed`: leave the files as a crash would, with the space reserved after the last frame
    (a log closed gives it back).
    """
    log = await reopen(directory)
    for batch in batches:
        await log.append_batch(batch)
    left = {path: path.read_bytes() for path in segments(directory)}
    await log.aclose()
    if crashed:
        for path, data in left.items():
            path.write_bytes(data)
    ends = frame_ends(directory / FIRST_SEGMENT)
    assert len(ends) == len(batches)
    return ends


def test_array_header_matches_msgspec() -> None:
    encoder = msgspec.msgpack.Encoder()
    for n in (0, 1, 15, 16, 65535, 65536):
        assert encoder.encode([0] * n).startswith(array_header(n))


async def test_append_read_roundtrip(tmp_path: Path) -> None:
    log = await reopen(tmp_path)
    assert (log.first_seq, log.last_seq, log.recovery) == (1, 0, None)
    assert [await log.append(rec(i)) for i in range(1, 6)] == [1, 2, 3, 4, 5]
    assert log.last_seq == 5
    assert list(log.read()) == [(i, rec(i)) for i in range(1, 6)]
    assert list(log.read(4)) == [(4, rec(4)), (5, rec(5))]
    assert list(log.read(6)) == []
    await log.aclose()


async def test_reopen_continues_numbering(tmp_path: Path) -> None:
    log = await reopen(tmp_path)
    await log.append_batch([rec(i) for i in range(1, 4)])
    await log.aclose()
    log = await reopen(tmp_path)
    assert (log.last_seq, log.recovery) == (3, None)
    assert await log.append(rec(4)) == 4
    assert [seq for seq, _ in log.read()] == [1, 2, 3, 4]
    await log.aclose()


async def test_batch_append(tmp_path: Path) -> None:
    async with await reopen(tmp_path) as log:
        assert await log.append_batch([rec(i) for i in range(1, 21)]) == 20
        assert await log.append_batch([]) == 20
        assert await log.append(rec(21)) == 21
        assert await log.append_batch((rec(22), rec(23))) == 23
        assert list(log.read(19)) == [(i, rec(i)) for i in range(19, 24)]


async def test_record_of_wrong_type_is_refused(tmp_path: Path) -> None:
    async with await reopen(tmp_path) as log:
        with pytest.raises(TypeError, match="record type"):
            await log.append(Created(id=5))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="record type"):
            await log.append_batch([rec(1), {"id": "x"}])
        assert log.last_seq == 0


async def test_unvalidated_log_takes_what_encodes(tmp_path: Path) -> None:
    async with await EventLog.open(tmp_path, Record, validate=False) as log:
        assert await log.append(Created(id=5)) == 1  # type: ignore[arg-type]


@pytest.mark.parametrize("zeros_after", [False, True], ids=["file-ends", "zeros-after"])
async def test_torn_tail_at_every_offset(tmp_path: Path, zeros_after: bool) -> None:
    """A frame cut anywhere, where the file ends (a write that grew the file) or before the
    zeros a writer had reserved (a write into them): the torn bytes are cut and reported."""
    batches = [[rec(1), rec(2)], [rec(3), rec(4), rec(5)]]
    start, end = await write_log(tmp_path, batches, crashed=True)
    path = tmp_path / FIRST_SEGMENT
    whole = path.read_bytes()
    assert len(whole) > end and not whole[end:].strip(b"\0")  # space reserved, zero-filled
    for length in range(start, end + 1):
        path.write_bytes(whole[:length] + bytes(5000 if zeros_after else 0))
        log = await reopen(tmp_path, segment_bytes=4096)  # (reserves no more than that)
        if length in (start, end):
            assert log.recovery is None
        else:
            # the torn bytes: up to the last that is not zero (zeros after it are reserved
            # space, as far as anyone can tell)
            torn = len(whole[start:length].rstrip(b"\0"))
            assert log.recovery == Recovery(str(path), start, torn)
            assert path.stat().st_size == start
        kept = 5 if length == end else 2
        assert log.last_seq == kept
        assert list(log.read()) == [(i, rec(i)) for i in range(1, kept + 1)]
        assert await log.append(rec(9)) == kept + 1
        await log.aclose()


async def test_torn_segment_header_is_recreated(tmp_path: Path) -> None:
    await write_log(tmp_path, [[rec(1)]])
    (tmp_path / "00000000000000000002.seg").write_bytes(MAGIC[:3])
    log = await reopen(tmp_path)
    assert log.recovery == Recovery(str(tmp_path / "00000000000000000002.seg"), 0, 3)
    assert await log.append(rec(2)) == 2
    assert [seq for seq, _ in log.read()] == [1, 2]
    await log.aclose()


@pytest.mark.parametrize("garbage", [b"\x00" * 100, b"garbage!" * 10, b"\xc1LOG" + b"\xff" * 40])
async def test_garbage_at_tail_is_cut_off(tmp_path: Path, garbage: bytes) -> None:
    """In a segment of the old format, anything after the last frame is a torn tail, zeros too
    (as it always was)."""
    (end,) = await write_log(tmp_path, [[rec(1), rec(2)]])
    path = tmp_path / FIRST_SEGMENT
    make_v1(path)
    with path.open("ab") as f:
        f.write(garbage)
    log = await reopen(tmp_path)
    assert log.recovery == Recovery(str(path), end, len(garbage))
    assert path.stat().st_size == end
    assert list(log.read()) == [(1, rec(1)), (2, rec(2))]
    assert await log.append(rec(3)) == 3
    await log.aclose()


@pytest.mark.parametrize("garbage", [b"\x00" * 100, b"garbage!" * 10, b"\xc1LOG" + b"\xff" * 40])
async def test_garbage_after_the_reserved_zeros_is_cut_off(tmp_path: Path, garbage: bytes) -> None:
    """In today's segments, zeros after the last frame are its end; anything else after it is
    a torn tail (a write into reserved space can reach the disk in any order), cut and
    reported from the end of the last frame."""
    (end,) = await write_log(tmp_path, [[rec(1), rec(2)]], crashed=True)
    path = tmp_path / FIRST_SEGMENT
    reserved = path.stat().st_size
    assert reserved > end
    with path.open("ab") as f:
        f.write(garbage)
    log = await reopen(tmp_path)
    if garbage.strip(b"\0"):
        assert log.recovery == Recovery(str(path), end, reserved - end + len(garbage))
        assert path.stat().st_size == end
    else:
        assert log.recovery is None
        assert path.stat().st_size == reserved + len(garbage)  # left as it is
    assert list(log.read()) == [(1, rec(1)), (2, rec(2))]
    assert await log.append(rec(3)) == 3
    await log.aclose()
    assert list(read_log(tmp_path, Record)) == [(1, rec(1)), (2, rec(2)), (3, rec(3))]


async def test_flipped_byte_before_the_tail_is_corruption(tmp_path: Path) -> None:
    first_end, *_ = await write_log(tmp_path, [[rec(1)], [rec(2)], [rec(3)]])
    path = tmp_path / FIRST_SEGMENT
    whole = path.read_bytes()
    for offset in range(len(MAGIC), first_end):
        damaged = bytearray(whole)
        damaged[offset] ^= 0x40
        path.write_bytes(damaged)
        with pytest.raises(CorruptLogError) as info:
            await reopen(tmp_path)
        assert (info.value.path, info.value.offset) == (str(path), len(MAGIC))
        assert f"corrupt event log: {path} at offset {len(MAGIC)}: " in str(info.value)
        assert "cannot be opened safely" in str(info.value)
    path.write_bytes(whole)
    log = await reopen(tmp_path)  # the failed opens changed nothing
    assert log.last_seq == 3
    await log.aclose()


async def test_flipped_payload_byte_is_a_checksum_mismatch(tmp_path: Path) -> None:
    await write_log(tmp_path, [[rec(1)], [rec(2)]])
    path = tmp_path / FIRST_SEGMENT
    damaged = bytearray(path.read_bytes())
    damaged[len(MAGIC) + HEADER_SIZE + 2] ^= 1
    path.write_bytes(damaged)
    with pytest.raises(CorruptLogError, match="checksum mismatch") as info:
        await reopen(tmp_path)
    assert info.value.reason == "checksum mismatch"


async def test_corrupt_tail_of_a_non_last_segment(tmp_path: Path) -> None:
    log = await reopen(tmp_path, segment_bytes=100)
    for i in range(1, 11):
        await log.append(rec(i))
    await log.aclose()
    first, *rest = segments(tmp_path)
    assert rest
    damaged = bytearray(first.read_bytes())
    damaged[-1] ^= 1  # the last byte of the last frame of the first segment
    first.write_bytes(damaged)
    with pytest.raises(CorruptLogError, match="checksum mismatch") as info:
        await reopen(tmp_path)
    assert info.value.path == str(first)


async def test_missing_segment_is_corruption(tmp_path: Path) -> None:
    log = await reopen(tmp_path, segment_bytes=100)
    for i in range(1, 11):
        await log.append(rec(i))
    await log.aclose()
    files = segments(tmp_path)
    files[1].unlink()
    with pytest.raises(CorruptLogError, match="expected") as info:
        await reopen(tmp_path)
    assert info.value.path == str(files[2])


async def test_foreign_files(tmp_path: Path) -> None:
    (tmp_path / FIRST_SEGMENT).write_bytes(b"SQLite format 3\x00" + bytes(100))
    with pytest.raises(CorruptLogError, match="not an event log segment") as info:
        await reopen(tmp_path)
    assert (info.value.path, info.value.offset) == (str(tmp_path / FIRST_SEGMENT), 0)
    not_a_dir = tmp_path / "state.db"
    not_a_dir.write_bytes(b"SQLite format 3\x00")
    with pytest.raises(CorruptLogError, match="not an event log directory"):
        await EventLog.open(not_a_dir, Record)


async def test_rollover_spans_segments(tmp_path: Path) -> None:
    log = await reopen(tmp_path, segment_bytes=300)
    for i in range(1, 41, 4):
        await log.append_batch([rec(j) for j in range(i, i + 4)])
    for i in range(41, 61):
        await log.append(rec(i))
    files = segments(tmp_path)
    assert len(files) >= 4
    firsts = [int(f.name[:20]) for f in files]
    assert firsts[0] == 1
    assert list(log.read()) == [(i, rec(i)) for i in range(1, 61)]
    assert list(log.read(firsts[2] + 1)) == [(i, rec(i)) for i in range(firsts[2] + 1, 61)]
    # `records` reads the same, without the seqs, from mid-frame and mid-segment too
    for start in (1, 2, firsts[2], firsts[2] + 1, 60, 61):
        assert list(log.records(start)) == [rec(i) for i in range(start, 61)]
    await log.aclose()
    for name, first in zip(files[1:], firsts[1:], strict=True):  # each named by its first seq
        assert name.read_bytes()[len(MAGIC) + 12 : len(MAGIC) + 20] == first.to_bytes(8, "little")
    log = await reopen(tmp_path, segment_bytes=300)
    assert (log.last_seq, log.first_seq, log.recovery) == (60, 1, None)
    assert await log.append(rec(61)) == 61
    assert list(log.read(55)) == [(i, rec(i)) for i in range(55, 62)]
    await log.aclose()


async def test_concurrent_appends_share_fsyncs(tmp_path: Path) -> None:
    log = await reopen(tmp_path)
    before = log.fsync_count
    seqs: dict[int, int] = {}

    async def append(i: int) -> None:
        seqs[i] = await log.append(rec(i))

    async with trio.open_nursery() as nursery:
        for i in range(100):
            nursery.start_soon(append, i)
    assert sorted(seqs.values()) == list(range(1, 101))
    assert log.fsync_count - before <= 10
    assert {seq: r for seq, r in log.read()} == {seqs[i]: rec(i) for i in range(100)}
    await log.aclose()


async def test_cancelled_waiting_append_is_not_written(tmp_path: Path) -> None:
    log = await reopen(tmp_path)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(log.append, rec(1))
        await trio.testing.wait_all_tasks_blocked()  # it leads a flush, in a thread
        with trio.CancelScope() as scope:
            scope.cancel()  # cancelled while the flush runs
            await log.append(rec(2))
    assert list(log.read()) == [(1, rec(1))]
    assert await log.append(rec(3)) == 2
    await log.aclose()


async def _collect(log: EventLog, from_seq: int, send: trio.MemorySendChannel) -> None:
    async with send:
        async for item in log.follow(from_seq):
            await send.send(item)


async def test_follow_old_then_live_then_ends_on_close(tmp_path: Path) -> None:
    log = await reopen(tmp_path)
    await log.append_batch([rec(i) for i in range(1, 6)])
    send, receive = trio.open_memory_channel[tuple[int, Record]](1000)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_collect, log, 3, send)
        assert [await receive.receive() for _ in range(3)] == [(i, rec(i)) for i in range(3, 6)]
        await log.append(rec(6))
        await log.append_batch([rec(7), rec(8)])
        assert [await receive.receive() for _ in range(3)] == [(i, rec(i)) for i in range(6, 9)]
        async with trio.open_nursery() as appenders:
            for i in range(9, 30):
                appenders.start_soon(log.append, rec(i))
        await log.aclose()
    got = [item async for item in receive]
    assert sorted(seq for seq, _ in got) == [seq for seq, _ in got] == list(range(9, 30))


async def test_follow_reads_from_disk_after_reopen(tmp_path: Path) -> None:
    log = await reopen(tmp_path, segment_bytes=200)
    await log.append_batch([rec(i) for i in range(1, 11)])
    for i in range(11, 31):
        await log.append(rec(i))
    await log.aclose()
    log = await reopen(tmp_path, segment_bytes=200)
    got = []
    async with trio.open_nursery() as nursery:
        send, receive = trio.open_memory_channel[tuple[int, Record]](1000)
        nursery.start_soon(_collect, log, 5, send)
        async for item in receive:
            got.append(item)
            if item[0] == 30:
                await log.append(rec(31))
            if item[0] == 31:
                await log.aclose()
    assert got == [(i, rec(i)) for i in range(5, 32)]


async def test_follow_after_close_yields_what_exists(tmp_path: Path) -> None:
    log = await reopen(tmp_path)
    await log.append_batch([rec(1), rec(2)])
    await log.aclose()
    assert [item async for item in log.follow()] == [(1, rec(1)), (2, rec(2))]


def _fail_once(monkeypatch: pytest.MonkeyPatch, name: str, partial: bool = False) -> None:
    real = getattr(os, name)

    def failing(fd: int, *args: object) -> int:
        monkeypatch.setattr(os, name, real)
        if partial:  # write half, as a disk filling up mid-write does
            data = args[0]
            real(fd, data[: len(data) // 2], *args[1:])  # type: ignore[index]
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, name, failing)


@pytest.mark.parametrize(
    ("name", "partial"), [("pwrite", False), ("pwrite", True), ("fdatasync", False)]
)
async def test_write_failure_leaves_no_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, partial: bool
) -> None:
    log = await reopen(tmp_path)
    await log.append_batch([rec(1), rec(2)])
    (size,) = frame_ends(tmp_path / FIRST_SEGMENT)
    _fail_once(monkeypatch, name, partial)
    with pytest.raises(LogWriteError, match="No space left on device") as info:
        await log.append_batch([rec(3), rec(4)])
    assert f"cannot append to event log {tmp_path / FIRST_SEGMENT}: " in str(info.value)
    assert log.last_seq == 2
    assert os.path.getsize(tmp_path / FIRST_SEGMENT) == size  # the frames alone
    assert await log.append(rec(5)) == 3
    await log.aclose()
    log = await reopen(tmp_path)
    assert log.recovery is None
    assert list(log.read()) == [(1, rec(1)), (2, rec(2)), (3, rec(5))]
    await log.aclose()


async def test_failed_flush_fails_every_waiter_of_its_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = await reopen(tmp_path)
    real = os.fdatasync
    calls = 0

    def second_fails(fd: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fdatasync", second_fails)
    outcomes: dict[int, int | str] = {}

    async def append(i: int) -> None:
        try:
            outcomes[i] = await log.append(rec(i))
        except LogWriteError:
            outcomes[i] = "failed"

    async with trio.open_nursery() as nursery:
        for i in range(10):
            nursery.start_soon(append, i)
    seqs = sorted(v for v in outcomes.values() if isinstance(v, int))
    assert 1 < list(outcomes.values()).count("failed") < 10
    assert seqs == list(range(1, log.last_seq + 1))
    assert [seq for seq, _ in log.read()] == seqs
    await log.aclose()


async def test_append_after_close_fails(tmp_path: Path) -> None:
    log = await reopen(tmp_path)
    await log.append(rec(1))
    await log.aclose()
    await log.aclose()
    with pytest.raises(LogWriteError, match="closed"):
        await log.append(rec(2))
    with pytest.raises(LogWriteError, match="closed"):
        await log.append_batch([rec(2)])


async def test_close_waits_for_inflight_appends(tmp_path: Path) -> None:
    log = await reopen(tmp_path)
    seqs: list[int] = []

    async def append(i: int) -> None:
        seqs.append(await log.append(rec(i)))

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(append, i)
        await trio.testing.wait_all_tasks_blocked()  # all queued or flushing
        await log.aclose()
        assert log.last_seq == len(seqs) == 20


async def test_second_open_is_refused(tmp_path: Path) -> None:
    log = await reopen(tmp_path)
    with pytest.raises(LogLockedError, match="already open"):
        await reopen(tmp_path)
    await log.aclose()
    log = await reopen(tmp_path)
    await log.aclose()


async def test_follow_yields_heartbeats_while_idle(tmp_path: Path, autojump_clock: object) -> None:
    log = await reopen(tmp_path)
    await log.append(rec(1))
    seen: list[object] = []
    with trio.move_on_after(10.5):
        async for item in log.follow(1, heartbeat=5):
            seen.append(item)
    assert seen == [(1, rec(1)), None, None]
    await log.aclose()


# -- read-only reading (open_readonly / read_log) ---------------------------------------------


def files_of(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


async def test_read_log_reads_while_a_writer_holds_the_log(tmp_path: Path) -> None:
    log = await reopen(tmp_path, segment_bytes=200)
    for i in range(1, 41, 4):
        await log.append_batch([rec(j) for j in range(i, i + 4)])
    before = files_of(tmp_path)
    assert len(segments(tmp_path)) > 1
    assert list(read_log(tmp_path, Record)) == [(i, rec(i)) for i in range(1, 41)]
    assert list(read_log(tmp_path, Record, from_seq=38)) == [(i, rec(i)) for i in (38, 39, 40)]
    reader = open_readonly(tmp_path, Record)
    assert (reader.first_seq, reader.last_seq, reader.torn_tail) == (1, 40, None)
    assert files_of(tmp_path) == before  # nothing written, not even a lock file
    await log.append(rec(41))  # appended after opening: not seen, the view is fixed
    assert [seq for seq, _ in reader.read()][-1] == 40
    assert list(reader.records(39)) == [rec(39), rec(40)]
    await log.aclose()


async def test_read_only_torn_tail_is_reported_not_cut(tmp_path: Path) -> None:
    start, _ = await write_log(tmp_path, [[rec(1), rec(2)], [rec(3), rec(4), rec(5)]])
    path = tmp_path / FIRST_SEGMENT
    torn = path.read_bytes()[: start + 7]
    path.write_bytes(torn)
    reader = open_readonly(tmp_path, Record)
    assert reader.torn_tail == Recovery(str(path), start, 7)
    assert list(reader.read()) == [(1, rec(1)), (2, rec(2))]
    assert path.read_bytes() == torn  # untouched


async def test_read_only_short_last_segment_is_not_rewritten(tmp_path: Path) -> None:
    await write_log(tmp_path, [[rec(1)]])
    short = tmp_path / "00000000000000000002.seg"
    short.write_bytes(MAGIC[:3])
    reader = open_readonly(tmp_path, Record)
    assert reader.torn_tail == Recovery(str(short), 0, 3)
    assert list(reader.read()) == [(1, rec(1))]
    assert short.read_bytes() == MAGIC[:3]


async def test_read_only_damage_before_the_tail_is_corruption(tmp_path: Path) -> None:
    await write_log(tmp_path, [[rec(1)], [rec(2)], [rec(3)]])
    path = tmp_path / FIRST_SEGMENT
    data = bytearray(path.read_bytes())
    data[len(MAGIC) + HEADER_SIZE + 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptLogError) as info:
        open_readonly(tmp_path, Record)
    assert (info.value.path, info.value.offset) == (str(path), len(MAGIC))
    assert path.read_bytes() == bytes(data)


async def test_read_only_refuses_foreign_records_and_files(tmp_path: Path) -> None:
    class Other(msgspec.Struct, tag=True):
        x: int

    await write_log(tmp_path / "a", [[rec(1)]])
    with pytest.raises(CorruptLogError, match="undecodable records"):
        list(read_log(tmp_path / "a", Other))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / FIRST_SEGMENT).write_bytes(b"hello, this is not a log")
    with pytest.raises(CorruptLogError, match="not an event log segment"):
        open_readonly(tmp_path / "b", Record)


def test_read_only_missing_or_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_readonly(tmp_path / "nope", Record)
    reader = open_readonly(tmp_path, Record)
    assert (reader.segments, reader.last_seq, list(reader.read())) == ([], 0, [])
    assert list(tmp_path.iterdir()) == []
