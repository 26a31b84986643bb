"""Snapshots and compaction: a crash never leaves half a snapshot, and compaction never removes
what a start-up from the newest snapshot needs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from eventlog import LogWriteError
from eventlog.snapshots import snapshot_seqs
from tests.eventlog.test_log import rec, reopen, segments


async def test_snapshot_roundtrip_and_only_newest_kept(tmp_path: Path) -> None:
    log = await reopen(tmp_path)
    assert await log.load_snapshot() is None
    await log.append_batch([rec(i) for i in range(1, 11)])
    for seq in (3, 6, 9):
        await log.save_snapshot(seq, f"state@{seq}".encode())
    assert await log.load_snapshot() == (9, b"state@9")
    assert snapshot_seqs(str(tmp_path)) == [9, 6]
    with pytest.raises(ValueError, match="durable"):
        await log.save_snapshot(11, b"future")
    await log.aclose()


async def test_damaged_snapshot_falls_back_to_the_one_before(tmp_path: Path) -> None:
    log = await reopen(tmp_path)
    await log.append_batch([rec(i) for i in range(1, 11)])
    await log.save_snapshot(5, b"five")
    await log.save_snapshot(8, b"eight")
    newest = tmp_path / f"{8:020d}.snap"
    data = bytearray(newest.read_bytes())
    data[-1] ^= 0xFF
    newest.write_bytes(bytes(data))
    assert await log.load_snapshot() == (5, b"five")
    (tmp_path / f"{5:020d}.snap").write_bytes(b"garbage")
    assert await log.load_snapshot() is None
    await log.aclose()


async def test_leftover_temporary_file_is_ignored(tmp_path: Path) -> None:
    log = await reopen(tmp_path)
    await log.append_batch([rec(i) for i in range(1, 4)])
    await log.save_snapshot(2, b"two")
    (tmp_path / f"{3:020d}.snap.tmp").write_bytes(b"half a snapsh")  # a crash mid-write
    assert await log.load_snapshot() == (2, b"two")
    await log.aclose()


async def test_compaction_keeps_what_the_snapshot_does_not_cover(tmp_path: Path) -> None:
    log = await reopen(tmp_path, segment_bytes=200)
    for i in range(1, 61):
        await log.append(rec(i))
    before = segments(tmp_path)
    assert len(before) > 4
    # No snapshot yet: nothing may go.
    assert await log.compact(before_seq=60) == 0
    await log.save_snapshot(30, b"thirty")
    removed = await log.compact(before_seq=60)
    assert removed > 0
    assert len(segments(tmp_path)) == len(before) - removed
    assert 1 < log.first_seq <= 31
    assert [seq for seq, _ in log.read(log.first_seq)] == list(range(log.first_seq, 61))
    await log.aclose()
    log = await reopen(tmp_path, segment_bytes=200)
    assert log.first_seq <= 31 and log.last_seq == 60
    assert await log.append(rec(61)) == 61
    await log.aclose()


async def test_compaction_honours_retention(tmp_path: Path) -> None:
    log = await reopen(tmp_path, segment_bytes=200)
    for i in range(1, 61):
        await log.append(rec(i))
    await log.save_snapshot(60, b"all")
    await log.compact(before_seq=50)
    assert log.first_seq <= 50
    await log.aclose()


async def test_snapshot_write_failure_is_a_log_write_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = await reopen(tmp_path)
    await log.append(rec(1))

    def no_space(*args: object) -> None:
        raise OSError(28, os.strerror(28))

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(LogWriteError, match="No space left"):
        await log.save_snapshot(1, b"x")
    monkeypatch.undo()
    await log.aclose()


async def test_tiny_segments_roll_after_every_frame_and_compact_cleanly(tmp_path: Path) -> None:
    log = await reopen(tmp_path, segment_bytes=1)  # smaller than a segment's own header
    for i in range(1, 6):
        assert await log.append(rec(i)) == i
    assert len(segments(tmp_path)) == 5
    await log.save_snapshot(4, b"four")
    assert await log.compact(before_seq=5) == 4  # seq 1-4: the snapshot stands for them
    assert [seq for seq, _ in log.read(log.first_seq)] == [5]
    await log.aclose()
