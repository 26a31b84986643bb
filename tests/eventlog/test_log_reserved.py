"""Space reserved ahead of the frames (segments of format ORCLOG02) and the log's own writer
thread: the writer fills the space after its frames with zeros so that its fdatasyncs need not
grow the file; readers take zeros after the last frame for the end of a segment, and still cut
a torn tail and refuse damage before it, naming file and offset."""

from __future__ import annotations

import errno
import gc
import os
import threading
from pathlib import Path

import pytest
import trio
import trio.testing

from eventlog import CorruptLogError, LogWriteError, Recovery, open_readonly, read_log
from eventlog.framing import HEADER_SIZE, MAGIC, MAGIC_V1, RESERVE_BYTES
from eventlog.writer import WriterThread
from tests.eventlog.test_log import (
    FIRST_SEGMENT,
    Record,
    frame_ends,
    make_v1,
    rec,
    reopen,
    segments,
    write_log,
)


def zeros_after(path: Path, offset: int) -> bool:
    data = path.read_bytes()
    return len(data) > offset and not data[offset:].strip(b"\0")


async def test_the_writer_reserves_zeros_ahead_and_writes_into_them(tmp_path: Path) -> None:
    log = await reopen(tmp_path)
    path = tmp_path / FIRST_SEGMENT
    assert path.read_bytes()[: len(MAGIC)] == MAGIC == b"ORCLOG02"
    syncs = log.fsync_count
    await log.append_batch([rec(i) for i in range(1, 11)])
    assert log.fsync_count == syncs + 1  # the reserve shares the frame's fdatasync
    (end,) = frame_ends(path)
    reserved = path.stat().st_size
    assert reserved >= end + RESERVE_BYTES and reserved % 4096 == 0
    assert zeros_after(path, end)
    for i in range(11, 31):  # later frames overwrite the reserved zeros: the file stays put
        await log.append(rec(i))
    assert path.stat().st_size == reserved
    assert zeros_after(path, frame_ends(path)[-1])
    assert list(log.read()) == [(i, rec(i)) for i in range(1, 31)]
    reader = open_readonly(tmp_path, Record)  # beside the writer, as `orc replay` reads
    assert (reader.last_seq, reader.torn_tail) == (30, None)
    await log.aclose()
    assert path.stat().st_size == frame_ends(path)[-1]  # closed: the reserve given back
    log = await reopen(tmp_path)
    assert (log.last_seq, log.recovery) == (30, None)
    assert await log.append(rec(31)) == 31
    assert path.stat().st_size >= frame_ends(path)[-1] + RESERVE_BYTES  # reserved again
    await log.aclose()


async def test_a_new_reserve_once_the_last_is_used_up(tmp_path: Path) -> None:
    log = await reopen(tmp_path)
    path = tmp_path / FIRST_SEGMENT
    big = [rec(i) for i in range(1, 5_001)]  # a frame of about 160 KB
    await log.append_batch(big)
    first = path.stat().st_size
    while path.stat().st_size == first:
        await log.append_batch(big)
    ends = frame_ends(path)
    frame = ends[-1] - ends[-2]
    # renewed by the flush after which less than another frame was left, not before
    assert first - ends[-1] < frame <= first - ends[-2]
    assert path.stat().st_size >= ends[-1] + RESERVE_BYTES and zeros_after(path, ends[-1])
    assert log.last_seq == 5_000 * len(ends)
    await log.aclose()
    assert sum(1 for _ in read_log(tmp_path, Record)) == 5_000 * len(ends)


async def test_no_reserve_past_the_segment_size(tmp_path: Path) -> None:
    log = await reopen(tmp_path, segment_bytes=300)
    for i in range(1, 41):
        await log.append(rec(i))
    *finished, last = segments(tmp_path)
    assert last.stat().st_size <= max(300, frame_ends(last)[-1])
    for path in finished:  # given back when the log went on in the next segment
        assert path.stat().st_size == frame_ends(path)[-1]
    await log.aclose()
    assert [seq for seq, _ in read_log(tmp_path, Record)] == list(range(1, 41))


@pytest.mark.parametrize("tail", [1, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 1, 5000])
async def test_any_zero_tail_is_the_end_not_damage(tmp_path: Path, tail: int) -> None:
    """However much space was reserved (the file cut anywhere in it: a crash while reserving),
    and in any segment, not only the last."""
    log = await reopen(tmp_path, segment_bytes=400)
    for i in range(1, 21):
        await log.append(rec(i))
    await log.aclose()
    files = segments(tmp_path)
    assert len(files) > 2
    for path in files:
        path.write_bytes(path.read_bytes()[: frame_ends(path)[-1]] + bytes(tail))
    before = {path: path.read_bytes() for path in files}
    reader = open_readonly(tmp_path, Record)
    assert (reader.last_seq, reader.torn_tail) == (20, None)
    log = await reopen(tmp_path, segment_bytes=400)
    assert (log.last_seq, log.recovery) == (20, None)
    assert {path: path.read_bytes() for path in files} == before  # nothing to repair
    assert list(log.read()) == [(i, rec(i)) for i in range(1, 21)]
    assert await log.append(rec(21)) == 21
    await log.aclose()


async def test_damage_before_the_zeros_is_refused_with_its_offset(tmp_path: Path) -> None:
    """A frame that fails its checksum with a good frame after it: acknowledged records are
    damaged, whatever zeros follow; the last frame damaged is a torn tail, as ever."""
    batches = [[rec(1)], [rec(2)], [rec(3)]]
    first, second, third = await write_log(tmp_path, batches, crashed=True)
    path = tmp_path / FIRST_SEGMENT
    whole = path.read_bytes()
    assert zeros_after(path, third)
    for offset, frame_start in ((first + 3, first), (second - 1, first), (len(MAGIC), 8)):
        damaged = bytearray(whole)
        damaged[offset] ^= 0x40
        path.write_bytes(damaged)
        with pytest.raises(CorruptLogError) as info:
            await reopen(tmp_path)
        assert (info.value.path, info.value.offset) == (str(path), frame_start)
        assert f"{path} at offset {frame_start}" in str(info.value)
        with pytest.raises(CorruptLogError):
            open_readonly(tmp_path, Record)
        assert path.read_bytes() == damaged  # refused, not repaired
    damaged = bytearray(whole)
    damaged[third - 1] ^= 0x40  # the last frame, before the zeros: a torn write
    path.write_bytes(damaged)
    log = await reopen(tmp_path)
    assert log.recovery == Recovery(str(path), second, third - second)
    assert log.last_seq == 2
    await log.aclose()


async def test_a_zeroed_frame_before_the_tail_is_corruption(tmp_path: Path) -> None:
    """Zeros are the end only when nothing but zeros follows: a frame zeroed out (a lost
    write) with good frames after it is refused, not taken for the end of the log."""
    first, _, _ = await write_log(tmp_path, [[rec(1)], [rec(2)], [rec(3)]], crashed=True)
    path = tmp_path / FIRST_SEGMENT
    data = bytearray(path.read_bytes())
    data[len(MAGIC) : first] = bytes(first - len(MAGIC))
    path.write_bytes(data)
    with pytest.raises(CorruptLogError, match="bad frame marker") as info:
        await reopen(tmp_path)
    assert (info.value.path, info.value.offset) == (str(path), len(MAGIC))


async def test_zeros_then_a_torn_frame_is_a_torn_tail(tmp_path: Path) -> None:
    """The pages of a write into reserved space reach the disk in any order: a crash can leave
    zeros where its frame began and some of its bytes after them."""
    (end,) = await write_log(tmp_path, [[rec(1), rec(2)]], crashed=True)
    path = tmp_path / FIRST_SEGMENT
    data = bytearray(path.read_bytes())
    data[end + 5000 : end + 5010] = b"\x01" * 10
    path.write_bytes(data)
    log = await reopen(tmp_path)
    assert log.recovery == Recovery(str(path), end, 5010)
    assert log.last_seq == 2
    await log.aclose()


# -- segments of the old format (ORCLOG01) ------------------------------------------------------


async def test_an_old_segment_is_read_and_the_log_goes_on_in_a_new_one(tmp_path: Path) -> None:
    await write_log(tmp_path, [[rec(1), rec(2)], [rec(3)]])
    old = tmp_path / FIRST_SEGMENT
    make_v1(old)
    before = old.read_bytes()
    assert before[: len(MAGIC)] == MAGIC_V1 and old.stat().st_size == frame_ends(old)[-1]
    assert [seq for seq, _ in read_log(tmp_path, Record)] == [1, 2, 3]
    log = await reopen(tmp_path)
    assert (log.last_seq, log.recovery) == (3, None)
    assert old.read_bytes() == before  # opening changes nothing
    assert await log.append_batch([rec(4), rec(5)]) == 5
    assert old.read_bytes() == before  # nor does appending: it goes into a new segment
    new = tmp_path / "00000000000000000004.seg"
    assert segments(tmp_path) == [old, new]
    assert new.read_bytes()[: len(MAGIC)] == MAGIC and zeros_after(new, frame_ends(new)[-1])
    await log.aclose()
    log = await reopen(tmp_path)
    assert (log.last_seq, log.recovery) == (5, None)
    assert list(log.read()) == [(i, rec(i)) for i in range(1, 6)]
    await log.aclose()


async def test_an_empty_old_segment_becomes_a_new_one(tmp_path: Path) -> None:
    (tmp_path / FIRST_SEGMENT).write_bytes(MAGIC_V1)
    log = await reopen(tmp_path)
    assert await log.append(rec(1)) == 1
    path = tmp_path / FIRST_SEGMENT
    assert segments(tmp_path) == [path]
    assert path.read_bytes()[: len(MAGIC)] == MAGIC and zeros_after(path, frame_ends(path)[-1])
    await log.aclose()
    assert list(read_log(tmp_path, Record)) == [(1, rec(1))]


# -- failures ---------------------------------------------------------------------------------


async def test_no_room_to_reserve_still_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reserving is an optimisation: when the zeros cannot be written, the frame still is."""
    log = await reopen(tmp_path)
    real = os.pwrite
    calls = 0

    def zeros_fail(fd: int, data: bytes, offset: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:  # the flush's second write: its reserve
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", zeros_fail)
    assert await log.append_batch([rec(1), rec(2)]) == 2
    path = tmp_path / FIRST_SEGMENT
    assert path.stat().st_size == frame_ends(path)[-1]  # the frame alone
    monkeypatch.undo()
    assert await log.append(rec(3)) == 3
    assert zeros_after(path, frame_ends(path)[-1])  # reserved again by the next flush
    await log.aclose()
    assert [seq for seq, _ in read_log(tmp_path, Record)] == [1, 2, 3]


async def test_a_failed_write_into_the_reserve_leaves_no_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = await reopen(tmp_path)
    await log.append_batch([rec(1), rec(2)])
    await log.append(rec(3))  # written into the reserve
    path = tmp_path / FIRST_SEGMENT
    end = frame_ends(path)[-1]
    real = os.fdatasync

    def fails(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fdatasync", fails)
    with pytest.raises(LogWriteError, match="Input/output error"):
        await log.append(rec(4))
    monkeypatch.setattr(os, "fdatasync", real)
    assert path.stat().st_size == end  # the frames that are durable, nothing else
    assert await log.append(rec(5)) == 4
    await log.aclose()
    assert [r for _, r in read_log(tmp_path, Record)] == [rec(1), rec(2), rec(3), rec(5)]


# -- the writer thread ------------------------------------------------------------------------


def writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("eventlog writer")]


async def test_one_writer_thread_per_open_log(tmp_path: Path) -> None:
    before = set(writer_threads())
    a = await reopen(tmp_path / "a")
    b = await reopen(tmp_path / "b")
    started = set(writer_threads()) - before
    assert len(started) == 2
    await a.append(rec(1))
    await b.append(rec(1))
    await a.aclose()
    await b.aclose()
    for thread in started:
        thread.join(5)
        assert not thread.is_alive()


def test_a_log_never_closed_does_not_keep_its_thread(tmp_path: Path) -> None:
    async def forget() -> None:
        log = await reopen(tmp_path)
        await log.append(rec(1))
        os.close(log._fd)  # what aclose would close, but for the writer thread
        os.close(log._lock_fd)

    before = set(writer_threads())
    trio.run(forget)
    gc.collect()
    for thread in set(writer_threads()) - before:
        thread.join(5)
        assert not thread.is_alive()


async def test_writer_thread_runs_calls_in_order_and_raises_their_errors() -> None:
    writer = WriterThread("eventlog writer test")
    main = threading.get_ident()
    assert await writer.run(lambda a, b: (a + b, threading.get_ident() != main), 2, 3) == (5, True)

    def fail() -> None:
        raise OSError(errno.EIO, "broken")

    with pytest.raises(OSError, match="broken"):
        await writer.run(fail)
    assert await writer.run(sorted, [3, 1, 2]) == [1, 2, 3]
    writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        await writer.run(sorted, [])


async def test_a_cancelled_caller_waits_for_its_call() -> None:
    """As with trio.to_thread.run_sync: the call runs to its end, the caller then sees the
    cancellation, and the thread can take the next call."""
    writer = WriterThread("eventlog writer test")
    started, release, finished = threading.Event(), threading.Event(), []
    scope = trio.CancelScope()

    def slow() -> None:
        started.set()
        release.wait(5)
        finished.append("call")

    async def call() -> None:
        with scope:
            await writer.run(slow)
        finished.append("caller")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call)
        await trio.to_thread.run_sync(started.wait)
        scope.cancel()
        await trio.sleep(0.05)
        assert finished == []  # the caller still waits
        release.set()
    assert scope.cancelled_caught and finished == ["call", "caller"]
    assert await writer.run(len, "abc") == 3
    writer.close()


async def test_a_second_concurrent_call_is_refused() -> None:
    writer = WriterThread("eventlog writer test")
    release = threading.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run, release.wait)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(RuntimeError, match="busy"):
            await writer.run(len, "")
        with pytest.raises(RuntimeError, match="busy"):
            writer.close()
        release.set()
    writer.close()
