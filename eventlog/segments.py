"""Segment files: finding, checking, recovering, creating and reading them (blocking I/O)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import re
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field

from eventlog.errors import CorruptLogError, LogLockedError, Recovery
from eventlog.framing import (
    HEADER_SIZE,
    INDEX_STRIDE,
    MAGIC,
    MAGIC_V1,
    parse_header,
    payload_ok,
    scan_segment,
    valid_frame_after,
)

_SEGMENT_NAME = re.compile(r"^(\d{20})\.seg$")
LOCK_NAME = "LOCK"


@dataclass(eq=False)
class Segment:
    """One segment file as far as it is durable.

    The writer thread updates it after each fdatasync; readers in other threads copy it first.
    """

    path: str
    first_seq: int
    size: int
    next_seq: int
    index: list[tuple[int, int]] = field(default_factory=list)
    last_indexed: int = -INDEX_STRIDE
    reserves: bool = True  # of today's format (MAGIC): it may end in zeros its writer reserved

    def add_frame(self, first_seq: int, count: int, nbytes: int) -> None:
        if self.size - self.last_indexed >= INDEX_STRIDE:
            self.index.append((first_seq, self.size))
            self.last_indexed = self.size
        self.next_seq = first_seq + count
        self.size += nbytes

    def snapshot(self) -> Segment:
        return Segment(
            self.path,
            self.first_seq,
            self.size,
            self.next_seq,
            list(self.index),
            self.last_indexed,
            self.reserves,
        )

    def start_offset(self, from_seq: int) -> int:
        """Where to start reading to find `from_seq`, from the sparse index."""
        i = bisect_right(self.index, from_seq, key=lambda entry: entry[0])
        return self.index[i - 1][1] if i else len(MAGIC)


def segment_path(directory: str, first_seq: int) -> str:
    return os.path.join(directory, f"{first_seq:020d}.seg")


def fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


_ZEROS = bytes(1 << 20)  # calloc'd and never written: it takes no memory of its own


def write_zeros(fd: int, offset: int, length: int) -> None:
    """Fill `length` bytes from `offset` with zeros (growing the file if it is shorter)."""
    zeros = memoryview(_ZEROS)
    while length > 0:
        n = min(length, len(zeros))
        pwrite_all(fd, zeros[:n], offset)
        offset += n
        length -= n


def content_end(fd: int, start: int, size: int) -> int:
    """Just past the last byte from `start` on that is not zero; `start` if all are zero.

    A writer reserves the space ahead of its frames by filling it with zeros, so that its
    fdatasyncs need not grow the file: zeros after the last frame are the end of a segment of
    today's format, not damage. Read with pread, from the end of the file: the writer cuts them
    off when it closes the log, and a reader that touched a page of a mapping past the end of
    its file would be killed (SIGBUS).
    """
    end = size
    piece = 4096
    step = piece  # a closed log's segments end with a frame: one small read tells
    while end > start:  # bytes compare at memcmp speed, rstrip does not: it gets 4 KiB at most
        low = max(start, end - step)
        chunk = os.pread(fd, end - low, low)  # short if the file was cut meanwhile
        if chunk != (_ZEROS if len(chunk) == len(_ZEROS) else bytes(len(chunk))):
            for at in range(len(chunk), 0, -piece):
                part = chunk[max(0, at - piece) : at]
                if part != _ZEROS[: len(part)]:
                    return low + max(0, at - piece) + len(part.rstrip(b"\0"))
        end = low
        step = min(2 * step, len(_ZEROS))
    return start


def lock_directory(directory: str) -> int:
    """Take the directory's lock so that two writers never interleave frames."""
    try:
        os.makedirs(directory, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise CorruptLogError(directory, 0, "not an event log directory") from None
    fd = os.open(os.path.join(directory, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise LogLockedError(f"event log {directory} is already open elsewhere") from None
        raise
    return fd


def create_segment(directory: str, first_seq: int) -> tuple[int, Segment]:
    """A new, durable, empty segment; its fd is open for writing."""
    path = segment_path(directory, first_seq)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        pwrite_all(fd, MAGIC, 0)
        os.fdatasync(fd)
        fsync_dir(directory)
    except OSError:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return fd, Segment(path, first_seq, len(MAGIC), first_seq)


def list_segments(directory: str) -> list[tuple[int, str]]:
    found = []
    for name in os.listdir(directory):
        match = _SEGMENT_NAME.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(directory, name)))
    return sorted(found)


def load_segments(directory: str, repair: bool = True) -> tuple[list[Segment], Recovery | None]:
    """Check every segment; cut a torn tail off the last one.

    Damage anywhere but the tail of the last segment raises CorruptLogError. Without `repair`
    nothing is written: the torn tail is only reported, and the segments end before it (for
    readers of a log that a writer may hold open).
    """
    found = list_segments(directory)
    segments: list[Segment] = []
    recovery = None
    expected: int | None = None
    for i, (first_seq, path) in enumerate(found):
        if expected is not None and first_seq != expected:
            raise CorruptLogError(path, 0, f"segment starts at {first_seq}, {expected} expected")
        segment, recovery = _load_segment(path, first_seq, i == len(found) - 1, repair)
        segments.append(segment)
        expected = segment.next_seq
    return segments, recovery


def _load_segment(
    path: str, first_seq: int, is_last: bool, repair: bool = True
) -> tuple[Segment, Recovery | None]:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < len(MAGIC):
            return _load_short_segment(path, f.read(), first_seq, is_last, repair)
        magic = os.pread(f.fileno(), len(MAGIC), 0)
        if magic not in (MAGIC, MAGIC_V1):
            raise CorruptLogError(path, 0, "not an event log segment")
        reserves = magic == MAGIC
        # frames (or a torn tail) up to `end`, zeros after it: the writer's reserve
        end = content_end(f.fileno(), len(MAGIC), size) if reserves else size
        with mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) as data:  # no copy of it
            scan = scan_segment(data, first_seq, end)
            damage = scan.damage
            torn = (
                damage is not None
                and is_last
                and damage.maybe_torn
                and not valid_frame_after(data, damage.offset + 1, scan.next_seq, end)
            )
    recovery = None
    if damage is not None:
        if not torn:
            raise CorruptLogError(path, damage.offset, damage.reason)
        if repair:
            _truncate(path, damage.offset)
        recovery = _recovery(path, damage.offset, end - damage.offset)
    last_indexed = scan.index[-1][1] if scan.index else -INDEX_STRIDE
    segment = Segment(path, first_seq, scan.end, scan.next_seq, scan.index, last_indexed, reserves)
    return segment, recovery


def _load_short_segment(
    path: str, data: bytes, first_seq: int, is_last: bool, repair: bool = True
) -> tuple[Segment, Recovery | None]:
    """A segment too short for its MAGIC: the writer crashed while creating it, or foreign."""
    if not (is_last and MAGIC.startswith(data)):
        raise CorruptLogError(path, 0, "not an event log segment")
    if repair:
        _rewrite_magic(path)
    recovery = _recovery(path, 0, len(data)) if data else None
    return Segment(path, first_seq, len(MAGIC), first_seq), recovery


def _recovery(path: str, offset: int, dropped: int) -> Recovery:
    return Recovery(path=path, offset=offset, dropped_bytes=dropped)


def _truncate(path: str, size: int) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _rewrite_magic(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        pwrite_all(fd, MAGIC, 0)
        os.fdatasync(fd)
    finally:
        os.close(fd)


def read_frames(segment: Segment, from_seq: int) -> Iterator[tuple[int, int, int, bytes]]:
    """(offset, first_seq, count, payload) of the frames of a segment holding `from_seq` or later.

    `segment` must be a copy: reading stops at its `size`, the durable end when it was taken.
    """
    pos = segment.start_offset(from_seq)
    with open(segment.path, "rb", buffering=1 << 20) as f:
        f.seek(pos)
        while pos < segment.size:
            header = f.read(HEADER_SIZE)
            parsed = parse_header(header) if len(header) == HEADER_SIZE else None
            if parsed is None:
                raise CorruptLogError(segment.path, pos, "bad frame header")
            end = pos + HEADER_SIZE + parsed.length
            if parsed.first_seq + parsed.count > from_seq:
                payload = f.read(parsed.length)
                if len(payload) != parsed.length or not payload_ok(header, payload, parsed.crc):
                    raise CorruptLogError(segment.path, pos, "checksum mismatch")
                yield pos, parsed.first_seq, parsed.count, payload
            else:
                f.seek(end)
            pos = end
