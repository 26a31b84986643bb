"""A log cut or damaged at any byte (issue 13, a property test): opening it either recovers a
prefix of what was written (a torn tail is cut off, or only noted when read-only, and reported
with its file and offset) or refuses, with the file and the offset of the damage named. Never
a record that was not written, never another error, and a repaired log takes appends again.

tests/eventlog/test_log.py pins each case by hand; this tries them all, across segments.
"""

from __future__ import annotations

import functools
import random
import tempfile
from pathlib import Path
from typing import NamedTuple

import msgspec
import trio
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from eventlog import CorruptLogError, EventLog, Recovery, open_readonly


class Ev(msgspec.Struct, tag=True, frozen=True):
    id: str


class Created(Ev, frozen=True):
    size: int = 0


class Deleted(Ev, frozen=True):
    reason: str = ""


Record = Created | Deleted


def rec(i: int) -> Record:
    return Created(f"t{i}", size=i * 1000) if i % 3 else Deleted(f"t{i}", reason="r" * (i % 11))


class Written(NamedTuple):
    files: dict[str, bytes]  # segment name -> bytes, in order
    records: list[tuple[int, Record]]


@functools.cache
def written() -> Written:
    """Batches of 1-5 records in small segments, so a log spans several files."""

    async def write(directory: Path) -> None:
        async with await EventLog.open(directory, Record, segment_bytes=400) as log:
            rng, i = random.Random(13), 1
            while i <= 60:
                n = rng.randint(1, 5)
                await log.append_batch([rec(j) for j in range(i, i + n)])
                i += n

    with tempfile.TemporaryDirectory() as tmp:
        trio.run(write, Path(tmp))
        files = {p.name: p.read_bytes() for p in sorted(Path(tmp).glob("*.seg"))}
        records = list(open_readonly(tmp, Record).read())
    assert len(files) >= 3
    return Written(files, records)


class Damage(NamedTuple):
    file: str
    offset: int
    kind: str  # "cut": the file ends at `offset`; else the bytes from `offset` are changed
    data: bytes = b""


@st.composite
def damages(draw: st.DrawFn) -> Damage:
    log = written()
    names = list(log.files)
    name = draw(st.one_of(st.just(names[-1]), st.sampled_from(names)))  # the tail is subtler
    whole = log.files[name]
    # mostly where the frames are; sometimes in the zeros a writer reserves after them
    used = len(whole.rstrip(b"\0")) + 32
    offset = draw(
        st.one_of(st.integers(0, min(used, len(whole))), st.integers(0, max(len(whole) - 1, 0)))
    )
    kind = draw(st.sampled_from(["cut", "flip", "garbage", "zeros"]))
    if kind == "flip":
        data = bytes([whole[offset] ^ draw(st.integers(1, 255))]) if offset < len(whole) else b"\1"
    elif kind == "garbage":
        data = draw(st.binary(min_size=1, max_size=40))
    elif kind == "zeros":
        data = bytes(draw(st.integers(1, 40)))
    else:
        data = b""
    return Damage(name, offset, kind, data)


def lay_out(directory: Path, damage: Damage) -> Path:
    """The written log in `directory`, with `damage` done to one file."""
    for name, data in written().files.items():
        if name == damage.file:
            if damage.kind == "cut":
                data = data[: damage.offset]
            else:
                data = (
                    data[: damage.offset] + damage.data + data[damage.offset + len(damage.data) :]
                )
        (directory / name).write_bytes(data)
    return directory / damage.file


def check_refusal(exc: CorruptLogError, damaged: Path, damage: Damage) -> None:
    """A refusal names the damaged file at or before the damage, or (when a segment was cut
    short and the next one no longer follows it) the next file, at its start."""
    names = list(written().files)
    path = Path(exc.path)
    assert path.parent == damaged.parent
    if path == damaged:
        assert exc.offset <= damage.offset + len(damage.data)
    else:
        assert damage.kind == "cut" and names.index(path.name) > names.index(damage.file)
    assert f"{exc.path} at offset {exc.offset}: " in str(exc)


def check_prefix(records: list[tuple[int, Record]], torn: Recovery | None, damage: Damage) -> None:
    """What opened is a prefix of what was written; anything less than all of it was lost from
    the tail of the last file, cut and reported there (or ends at a whole frame)."""
    everything = written().records
    assert records == everything[: len(records)]
    if len(records) < len(everything):
        assert damage.file == list(written().files)[-1]
        if torn is None:
            assert damage.kind == "cut"  # at the end of a whole frame: a shorter log
        else:
            assert torn.path.endswith(damage.file)
            assert torn.offset <= damage.offset


PROPERTY = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPERTY
@given(damage=damages())
def test_read_only_opens_a_prefix_or_names_the_damage(damage: Damage) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        damaged = lay_out(Path(tmp), damage)
        before = {p.name: p.read_bytes() for p in Path(tmp).iterdir()}
        try:
            reader = open_readonly(tmp, Record)
            records = list(reader.read())
        except CorruptLogError as exc:
            check_refusal(exc, damaged, damage)
            event("refused")
        else:
            check_prefix(records, reader.torn_tail, damage)
            event("all" if len(records) == len(written().records) else "a prefix")
        assert {p.name: p.read_bytes() for p in Path(tmp).iterdir()} == before  # untouched


@PROPERTY
@given(damage=damages())
def test_opening_to_write_repairs_a_torn_tail_or_refuses(damage: Damage) -> None:
    """The writer's open cuts a torn tail off (and says so), then appends after the prefix;
    a log it refuses is left as it was."""

    async def attempt(directory: Path) -> None:
        damaged = lay_out(directory, damage)
        before = {p.name: p.read_bytes() for p in directory.glob("*.seg")}
        try:
            log = await EventLog.open(directory, Record, segment_bytes=400)
        except CorruptLogError as exc:
            check_refusal(exc, damaged, damage)
            assert {p.name: p.read_bytes() for p in directory.glob("*.seg")} == before
            return
        async with log:
            records = list(log.read())
            check_prefix(records, log.recovery, damage)
            assert await log.append(rec(99)) == len(records) + 1
        async with await EventLog.open(directory, Record, segment_bytes=400) as again:
            assert again.recovery is None
            assert list(again.read()) == [*records, (len(records) + 1, rec(99))]

    with tempfile.TemporaryDirectory() as tmp:
        trio.run(attempt, Path(tmp))
