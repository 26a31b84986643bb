"""The log's hook for records of older versions (`older`) and its cheaper check (`validate="type"`).

Generic records here, not orc's events: the log knows msgspec types, not versions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from eventlog import CorruptLogError, EventLog, open_readonly
from eventlog.reader import RecordDecoder


class OldEv(msgspec.Struct, tag="Created", frozen=True):
    """How an older version of a program wrote its record: a map."""

    id: str


class Ev(msgspec.Struct, tag=True, frozen=True, array_like=True):
    pass


class Created(Ev, frozen=True):
    """Today's record: an array, with a field the old one did not have."""

    id: str
    size: int = 0


class Deleted(Ev, frozen=True):
    id: str


Record = Created | Deleted


class Older:
    """Reads the old maps as today's records, and counts the frames it was given."""

    def __init__(self) -> None:
        self.frames = 0
        self._maps = msgspec.msgpack.Decoder(list[OldEv])

    def __call__(self, payload: bytes) -> list[Any]:
        self.frames += 1
        return [Created(old.id, size=-1) for old in self._maps.decode(payload)]


async def test_older_reads_what_the_record_type_refuses(tmp_path: Path) -> None:
    async with await EventLog.open(tmp_path, OldEv) as log:
        await log.append_batch([OldEv("a"), OldEv("b")])
        await log.append(OldEv("c"))
    older = Older()
    async with await EventLog.open(tmp_path, Record, older=older) as log:
        await log.append_batch([Created("d", 4), Deleted("a")])
        assert [r for _, r in log.read()] == [
            Created("a", -1),
            Created("b", -1),
            Created("c", -1),
            Created("d", 4),
            Deleted("a"),
        ]
        assert older.frames == 2  # the two old frames, not today's
        followed = []
        async for item in log.follow(3):
            assert item is not None
            followed.append(item)
            if item[0] == 5:
                break
        assert followed == [(3, Created("c", -1)), (4, Created("d", 4)), (5, Deleted("a"))]
    reader = open_readonly(tmp_path, Record, older=Older())
    assert [r for _, r in reader.read(2)][:2] == [Created("b", -1), Created("c", -1)]


async def test_without_older_an_old_log_is_undecodable(tmp_path: Path) -> None:
    async with await EventLog.open(tmp_path, OldEv) as log:
        await log.append(OldEv("a"))
    with pytest.raises(CorruptLogError, match="undecodable records"):
        list(open_readonly(tmp_path, Record).read())


def test_current_frames_never_reach_older() -> None:
    older = Older()
    decoder = RecordDecoder(Record, older)
    frame = msgspec.msgpack.encode([Created("a", 1), Deleted("b")])
    assert decoder.decode(frame) == [Created("a", 1), Deleted("b")]
    assert decoder.decode(memoryview(frame)) == [Created("a", 1), Deleted("b")]
    assert older.frames == 0
    assert decoder.decode(msgspec.msgpack.encode([OldEv("a")])) == [Created("a", -1)]
    assert older.frames == 1


def test_damaged_bytes_are_not_handed_to_older() -> None:
    """Only a frame of well-formed records of another type goes to `older`; bytes that are not
    msgpack at all are corruption."""
    older = Older()
    with pytest.raises(msgspec.DecodeError):
        RecordDecoder(Record, older).decode(b"\x92\xc1\xc1")
    assert older.frames == 0


async def test_older_that_cannot_read_either_is_corruption(tmp_path: Path) -> None:
    class Foreign(msgspec.Struct, tag=True):
        n: int

    def refuse(payload: bytes) -> list[Any]:
        raise msgspec.ValidationError("unknown event type 'Foreign'")

    async with await EventLog.open(tmp_path, Foreign) as log:
        await log.append(Foreign(1))
    with pytest.raises(CorruptLogError, match=r"undecodable records \(unknown event type"):
        list(open_readonly(tmp_path, Record, older=refuse).read())


# -- validate="type" -----------------------------------------------------------------------------


async def test_type_check_refuses_records_of_other_types(tmp_path: Path) -> None:
    async with await EventLog.open(tmp_path, Record, validate="type") as log:
        with pytest.raises(TypeError, match="a dict, not one of Created, Deleted"):
            await log.append_batch([Created("a"), {"id": "x"}])
        with pytest.raises(TypeError, match="a OldEv, not one of Created, Deleted"):
            await log.append(OldEv("a"))
        assert log.last_seq == 0
        assert await log.append_batch([Created("a", 1), Deleted("b")]) == 2
        assert await log.append(Deleted("c")) == 3
        assert [r for _, r in log.read()] == [Created("a", 1), Deleted("b"), Deleted("c")]


async def test_type_check_leaves_field_types_to_the_caller(tmp_path: Path) -> None:
    """What the cheaper check gives up, and the full check (the default) still catches."""
    async with await EventLog.open(tmp_path / "type", Record, validate="type") as log:
        assert await log.append(Created(id=5)) == 1  # type: ignore[arg-type]
    async with await EventLog.open(tmp_path / "full", Record) as log:
        with pytest.raises(TypeError, match="Expected `str`, got `int`"):
            await log.append(Created(id=5))  # type: ignore[arg-type]


async def test_type_check_needs_struct_record_types(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs Struct record types"):
        await EventLog.open(tmp_path / "log", dict[str, int], validate="type")
    assert not (tmp_path / "log").exists()
