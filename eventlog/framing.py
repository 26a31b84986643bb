"""The on-disk format: segment files of checksummed frames.

A segment starts with the 8-byte ``MAGIC`` and holds frames back to back. A frame is one flushed
batch: a 24-byte header, then a msgpack array of the batch's records::

    mark    4s  FRAME_MARK, so a scan can find frame starts again after damage
    crc     I   zlib.crc32 of the rest of the header and the payload
    length  I   payload bytes
    first   Q   sequence number of the first record
    count   I   records in the payload

All integers are little-endian. The CRC covers ``length``, so a damaged length is caught too.

Two versions of segment, the same frames in both:

- ``ORCLOG02`` (``MAGIC``, what this version writes): the writer reserves space ahead of its
  frames by writing zeros there (``RESERVE_BYTES`` at a time), so that the fdatasync of a frame
  overwrites allocated blocks and need not also write the file's size and block map. Zeros
  from the end of the last frame to the end of the file are the end of the segment; a torn
  frame followed by zeros is a torn tail, of the bytes up to its last non-zero one. (So a
  last frame that the disk lost whole, zeros where it was, reads as the end unreported, where
  the old format reported a torn tail; any damage with a good frame after it is refused.)
- ``ORCLOG01`` (``MAGIC_V1``): each frame grows the file; the file ends with its last frame,
  and anything after it (zeros too) is a torn tail. Still read, never created.
"""

from __future__ import annotations

import mmap
import struct
import zlib
from typing import NamedTuple

MAGIC = b"ORCLOG02"
MAGIC_V1 = b"ORCLOG01"
RESERVE_BYTES = 1 << 20  # zeros a writer keeps ahead of its frames (more for larger frames)
FRAME_MARK = b"\xc1LOG"  # 0xc1 is never used by msgpack, so it rarely shows up inside payloads
HEADER = struct.Struct("<4sIIQI")
HEADER_SIZE = HEADER.size
_CHECKED = struct.Struct("<IQI")  # length, first, count: the part of the header the CRC covers
MAX_PAYLOAD = 0xFFFF_FFFF
INDEX_STRIDE = 256 * 1024  # bytes between entries of a segment's sparse seq -> offset index


def array_header(count: int) -> bytes:
    """The msgpack array header msgspec writes for `count` items (the smallest form)."""
    if count < 16:
        return bytes((0x90 | count,))
    if count < 0x10000:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


def encode_frame(first_seq: int, count: int, parts: list[bytes | memoryview]) -> bytes:
    """One frame: a header, then `parts`, which together make a msgpack array of `count` items.

    Joined once: batches can be megabytes, and each copy costs.
    """
    length = sum(len(part) for part in parts)
    if length > MAX_PAYLOAD:
        raise ValueError(f"batch too large for one frame: {length} bytes")
    checked = _CHECKED.pack(length, first_seq, count)
    crc = zlib.crc32(checked)
    for part in parts:
        crc = zlib.crc32(part, crc)
    return b"".join([FRAME_MARK, crc.to_bytes(4, "little"), checked, *parts])


class FrameHeader(NamedTuple):
    length: int
    first_seq: int
    count: int  # type: ignore[assignment]  # a field named like tuple.count, which it hides
    crc: int


def parse_header(header: bytes | memoryview) -> FrameHeader | None:
    """The header's fields, or None when it does not start with FRAME_MARK."""
    mark, crc, length, first, count = HEADER.unpack(header)
    if mark != FRAME_MARK:
        return None
    return FrameHeader(length, first, count, crc)


def payload_ok(header: bytes | memoryview, payload: bytes | memoryview, crc: int) -> bool:
    return zlib.crc32(payload, zlib.crc32(header[8:HEADER_SIZE])) == crc


class Damage(NamedTuple):
    offset: int
    reason: str
    maybe_torn: bool  # the kind of damage an interrupted write leaves (not a sequence error)


class Scan(NamedTuple):
    """What a segment holds up to its first damage (or its end)."""

    end: int  # offset just past the last good frame
    next_seq: int  # sequence number the next record would get
    # sparse (first_seq, offset) of good frames; it hides tuple.index, which nobody calls
    index: list[tuple[int, int]]  # type: ignore[assignment]
    damage: Damage | None


def scan_segment(data: bytes | mmap.mmap, first_seq: int, limit: int | None = None) -> Scan:
    """Walk the frames of a whole segment (MAGIC already checked), stopping at the first damage.

    No frame starts at `limit` or after (the end of the segment's non-zero bytes, when the rest
    is zeros: it is never read, a frame that began before it aside).
    """
    view = memoryview(data)
    pos = len(MAGIC)
    seq = first_seq
    index: list[tuple[int, int]] = []
    last_indexed = -INDEX_STRIDE
    limit = len(data) if limit is None else limit
    while pos < limit:
        damage = check_frame(view, pos, seq)
        if damage is not None:
            return Scan(pos, seq, index, damage)
        length, _, count = _CHECKED.unpack_from(view, pos + 8)
        if pos - last_indexed >= INDEX_STRIDE:
            index.append((seq, pos))
            last_indexed = pos
        seq += count
        pos += HEADER_SIZE + length
    return Scan(pos, seq, index, None)


def check_frame(view: memoryview, pos: int, expected_seq: int) -> Damage | None:
    """Why the frame at `pos` is not the valid frame holding `expected_seq` onwards, or None."""
    if len(view) - pos < HEADER_SIZE:
        return Damage(pos, "truncated frame header", True)
    header = parse_header(view[pos : pos + HEADER_SIZE])
    if header is None:
        return Damage(pos, "bad frame marker", True)
    end = pos + HEADER_SIZE + header.length
    if end > len(view):
        return Damage(pos, "truncated frame", True)
    if not payload_ok(view[pos : pos + HEADER_SIZE], view[pos + HEADER_SIZE : end], header.crc):
        return Damage(pos, "checksum mismatch", True)
    if header.first_seq != expected_seq:
        return Damage(pos, f"sequence {header.first_seq} where {expected_seq} was expected", False)
    if header.count == 0:
        return Damage(pos, "empty frame", False)
    return None


def valid_frame_after(
    data: bytes | mmap.mmap, start: int, min_seq: int, limit: int | None = None
) -> bool:
    """Whether a whole, checksummed frame starts anywhere from `start` on (before `limit`).

    A torn write damages only the tail; a good frame after the damage means the damage is not a
    torn tail but corruption of acknowledged data.
    """
    view = memoryview(data)
    limit = len(data) if limit is None else limit
    pos = data.find(FRAME_MARK, start, limit)
    while pos != -1 and len(data) - pos >= HEADER_SIZE:
        header = parse_header(view[pos : pos + HEADER_SIZE])
        end = pos + HEADER_SIZE + header.length if header else len(data) + 1
        if (
            header is not None
            and end <= len(data)
            and header.count > 0
            and header.first_seq >= min_seq
            and payload_ok(view[pos : pos + HEADER_SIZE], view[pos + HEADER_SIZE : end], header.crc)
        ):
            return True
        pos = data.find(FRAME_MARK, pos + 1, limit)
    return False
