"""Snapshot files: an opaque blob standing for every record up to a sequence number.

`<seq:020d>.snap` beside the segments: 8 bytes `ORCSNAP1`, a header `<QII` (seq, length,
crc32 of the blob), then the blob. Written to a temporary name, fsynced, renamed and the
directory fsynced, so a crash leaves either the old snapshot or the new one, never half of one.
A snapshot that fails its checksum is skipped for the one before it: a snapshot only saves time,
the log still holds the truth until compaction, and compaction keeps what the older one needs.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import zlib

from eventlog.segments import fsync_dir

MAGIC = b"ORCSNAP1"
_HEADER = struct.Struct("<QII")
_NAME = re.compile(r"^(\d{20})\.snap$")
KEEP = 2  # snapshots kept: the newest, and one to fall back on


def snapshot_seqs(directory: str) -> list[int]:
    """Sequence numbers of the snapshots present, newest first."""
    seqs = [int(m.group(1)) for name in os.listdir(directory) if (m := _NAME.match(name))]
    return sorted(seqs, reverse=True)


def _path(directory: str, seq: int) -> str:
    return os.path.join(directory, f"{seq:020d}.snap")


def write_snapshot(directory: str, seq: int, blob: bytes) -> None:
    """Write durably, then drop all but the newest `KEEP` snapshots."""
    final = _path(directory, seq)
    tmp = final + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with os.fdopen(fd, "wb", closefd=False) as f:
            f.write(MAGIC + _HEADER.pack(seq, len(blob), zlib.crc32(blob)))
            f.write(blob)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    fsync_dir(directory)
    for old in snapshot_seqs(directory)[KEEP:]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_path(directory, old))


def read_snapshot(directory: str, seq: int) -> bytes | None:
    """The blob of one snapshot, or None if it is damaged."""
    try:
        with open(_path(directory, seq), "rb") as f:
            data = f.read()
    except OSError:
        return None
    head = len(MAGIC) + _HEADER.size
    if len(data) < head or data[: len(MAGIC)] != MAGIC:
        return None
    stored_seq, length, crc = _HEADER.unpack_from(data, len(MAGIC))
    blob = data[head:]
    if stored_seq != seq or len(blob) != length or zlib.crc32(blob) != crc:
        return None
    return blob


def latest_snapshot(directory: str, at_most: int) -> tuple[int, bytes] | None:
    """The newest intact snapshot at or below `at_most` (the log's last seq)."""
    for seq in snapshot_seqs(directory):
        if seq <= at_most:
            blob = read_snapshot(directory, seq)
            if blob is not None:
                return seq, blob
    return None
