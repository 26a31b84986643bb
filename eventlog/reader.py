"""Reading a log directory without owning it: no lock, no repair, never a write.

A person replaying a log (perhaps while a manager appends to it, perhaps a copy from another
machine) must not change it: a torn tail is reported and read around, not cut off.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator, Sequence
from itertools import chain
from pathlib import Path
from typing import Any

import msgspec

from eventlog.errors import CorruptLogError, Recovery
from eventlog.segments import Segment, load_segments, read_frames

FrameRecords = Generator[tuple[int, list[Any]], None, None]

Older = Callable[[bytes], list[Any]]
"""Decodes the records of a frame that the log's record type refuses, because an older version
of the program wrote them; raises `msgspec.DecodeError` when it cannot either."""


class RecordDecoder:
    """How a log's frames decode: as `list[record_type]`, at msgspec's full speed, and only a
    frame that refuses to (`msgspec.ValidationError`: a record of an older version) through
    `older`. Records of the current version never pay for the older ones."""

    __slots__ = ("_current", "_older")

    def __init__(self, record_type: Any, older: Older | None = None) -> None:
        self._current: msgspec.msgpack.Decoder[list[Any]] = msgspec.msgpack.Decoder(
            list[record_type]
        )
        self._older = older

    def decode(self, payload: bytes | memoryview) -> list[Any]:
        try:
            return self._current.decode(payload)
        except msgspec.ValidationError:
            if self._older is None:
                raise
        return self._older(bytes(payload))


def decode_payload(
    decoder: RecordDecoder, payload: bytes | memoryview, count: int, path: str, offset: int
) -> list[Any]:
    """The records of one frame; a payload that is not `count` records is corruption."""
    try:
        records = decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise CorruptLogError(path, offset, f"undecodable records ({exc})") from None
    if len(records) != count:
        raise CorruptLogError(path, offset, "record count does not match the frame header")
    return records


def decode_frames(
    segments: Sequence[Segment], from_seq: int, decoder: RecordDecoder
) -> FrameRecords:
    """Per frame, the seq of its first record and its records, from `from_seq` on.

    `segments` must be copies: each is read up to its `size`. Records are decoded a frame at a
    time and iterated in C, so replay runs at its consumer's speed.
    """
    for segment in segments:
        if segment.next_seq <= from_seq:
            continue
        for offset, first, count, payload in read_frames(segment, from_seq):
            records = decode_payload(decoder, payload, count, segment.path, offset)
            if first < from_seq:
                records = records[from_seq - first :]
                first = from_seq
            yield first, records


def number(first: int, records: list[Any]) -> Iterator[tuple[int, Any]]:
    """(seq, record) for the records of one frame."""
    return zip(range(first, first + len(records)), records, strict=True)


def numbered(frames: FrameRecords) -> Iterator[tuple[int, Any]]:
    """(seq, record) for each record of `frames`."""
    return chain.from_iterable(number(first, records) for first, records in frames)


def unnumbered(frames: FrameRecords) -> Iterator[Any]:
    """The records of `frames` alone: a fold that needs no seq skips a tuple per record."""
    return chain.from_iterable(records for _, records in frames)


class LogReader:
    """A log directory as it was when opened, read-only.

    `torn_tail` reports an incomplete record at the end (a crash, or a writer mid-append); the
    reader ends before it. `segments` is empty when the directory holds no log at all.
    """

    def __init__(
        self,
        directory: str,
        record_type: Any,
        segments: list[Segment],
        torn_tail: Recovery | None,
        older: Older | None = None,
    ) -> None:
        self.directory = directory
        self.segments = segments
        self.torn_tail = torn_tail
        self._decoder = RecordDecoder(record_type, older)

    @property
    def first_seq(self) -> int:
        return self.segments[0].first_seq if self.segments else 1

    @property
    def last_seq(self) -> int:
        """Seq of the last whole record; 0 when the log is empty."""
        return self.segments[-1].next_seq - 1 if self.segments else 0

    def read(self, from_seq: int = 1) -> Iterator[tuple[int, Any]]:
        """(seq, record) from `from_seq` to `last_seq`. Raises CorruptLogError on damage."""
        return numbered(decode_frames(self.segments, from_seq, self._decoder))

    def records(self, from_seq: int = 1) -> Iterator[Any]:
        """The records alone, as `read` finds them: the fastest way to fold a log."""
        return unnumbered(decode_frames(self.segments, from_seq, self._decoder))


def open_readonly(
    directory: str | Path, record_type: Any, *, older: Older | None = None
) -> LogReader:
    """Check the segments of `directory` without locking or repairing anything (blocking).

    `older` reads the frames `record_type` refuses (see `RecordDecoder`). Raises
    CorruptLogError for damage before the tail, OSError when the directory or a segment cannot
    be read.
    """
    directory = os.fspath(directory)
    segments, torn = load_segments(directory, repair=False)
    return LogReader(directory, record_type, segments, torn, older)


def read_log(
    directory: str | Path, record_type: Any, from_seq: int = 1, *, older: Older | None = None
) -> Iterator[tuple[int, Any]]:
    """(seq, record) of a log directory from `from_seq` on, read-only (see `open_readonly`)."""
    return open_readonly(directory, record_type, older=older).read(from_seq)
