"""Reading the write-ahead log back: segment files, record checks and replay.

Reading never modifies anything; `WriteAheadLog.open` cuts the torn tail that `replay`
reports, and `trioraft check` only reports it.

Segments are named by a sequence number, `wal/0000000000000001.wal`, `...2.wal`, and the
numbers present must be consecutive (compaction deletes a prefix). Every segment begins
with a HARD_STATE record, so deleting older segments never loses the term and vote.

Replay applies the records of every segment in order: the last HARD_STATE wins; an ENTRY
whose index is at most the last index so far replaces the log from that index on (a
follower truncating a conflict); an ENTRY more than one past the last index is a gap, and
a gap is damage. A LOG_START(index, term) forgets every entry before it: the log restarts
after a snapshot, and the next entry must be index + 1 (an entry at or before index
after it is damage). Every entry in the segments before the one holding the last
LOG_START is therefore dead, so those segments count as holding no entry (`max_index` 0)
and compaction may delete them whatever their indexes were.

Telling a torn tail (a crash cut the last write short: cut it off) from damage (stop):

- a header too short (fewer than 12 bytes left in the file) is torn;
- a header whose checksum fails is torn if at most its first 11 bytes are non-zero and
  only zero bytes follow to the end of the file (a file extended with zeros), or if it
  lies in a lost sector (below);
- an intact header whose payload runs past the end of the file is torn;
- an intact header with a payload that fails its checksum is torn if the record ends
  exactly at the end of the file, or only zero bytes follow it, or it lies in a lost
  sector;
- anything else, any record whose checksum matches but whose content makes no sense, and
  any damage in a segment that is not the last is damage (`CorruptionError`).

A record lies in a lost sector when, in some 512-byte sector of the file it overlaps,
every byte from the record's start (or the sector's start) to the sector's end (or the
end of the file) is zero; for a header that fails its checksum, only the header's 12
bytes count as the record. Such a sector never reached the disk: the kernel writes dirty
pages back in any order, and a power loss can keep later pages of the unsynced end of the
file while an earlier one reads as zeros. So the tail is cut at that record even though
intact records follow it, as etcd's WAL decoder does. The price: damage to a synced record
that ends a sector in zeros (a zero-filled value, say) is taken for a torn write, and the
records after it are dropped with a warning instead of stopping the node.
"""

from __future__ import annotations

import itertools
import zlib
from pathlib import Path

import attrs

from trioraft.core.messages import Entry, HardState
from trioraft.storage.errors import CorruptionError
from trioraft.storage.records import (
    HEADER,
    HEADER_SIZE,
    LogStart,
    decode_payload,
    length_checksum_ok,
)

SEGMENT_SUFFIX = ".wal"
#: the unit a disk writes atomically: a torn write leaves whole sectors unwritten
SECTOR_SIZE = 512
_SEQUENCE_DIGITS = 16


def segment_name(sequence: int) -> str:
    return f"{sequence:0{_SEQUENCE_DIGITS}d}{SEGMENT_SUFFIX}"


def list_segments(wal_dir: Path) -> list[tuple[int, Path]]:
    """The segment files in `wal_dir` as (sequence, path), oldest first; names that are
    not segment names are ignored. A missing directory holds no segments."""
    if not wal_dir.exists():
        return []
    found: list[tuple[int, Path]] = []
    for path in wal_dir.iterdir():
        stem = path.name.removesuffix(SEGMENT_SUFFIX)
        if (
            path.name.endswith(SEGMENT_SUFFIX)
            and len(stem) == _SEQUENCE_DIGITS
            and stem.isdigit()
            and path.is_file()
        ):
            found.append((int(stem), path))
    found.sort()
    for (before, _), (sequence, path) in itertools.pairwise(found):
        if sequence != before + 1:
            raise CorruptionError(
                path, 0, f"segment sequence jumps from {before} to {sequence}: a segment is missing"
            )
    return found


@attrs.frozen
class TornTail:
    """The end of the last segment that a crash cut short (a warning, not an error)."""

    #: the segment file
    path: Path
    #: where the first incomplete record starts: the file's size once the tail is cut
    offset: int
    #: how many bytes from `offset` to the end of the file are dropped
    dropped: int
    #: what was found at `offset`
    reason: str

    def __str__(self) -> str:
        return (
            f"{self.path}: torn tail cut at byte offset {self.offset} "
            f"({self.dropped} bytes dropped: {self.reason})"
        )


@attrs.frozen
class SegmentInfo:
    #: the number in the segment's name; consecutive across the segments present
    sequence: int
    path: Path
    #: bytes of intact records: the file's size, less a torn tail
    size: int
    #: the highest entry index written to the segment, even if a later record replaced
    #: it, or the index of a LOG_START in it if higher; counting only what follows the
    #: last LOG_START, and 0 for a segment before the one holding the last LOG_START
    max_index: int


@attrs.frozen
class Replayed:
    #: the last hard state written, or the zero value for an empty log
    hard_state: HardState
    #: the log after replaying truncations: consecutive indexes, oldest first
    entries: list[Entry]
    #: the last LOG_START still on disk: `entries` start right after it
    start: LogStart | None
    #: the segments, oldest first
    segments: list[SegmentInfo]
    #: the torn tail at the end of the last segment, if any
    torn_tail: TornTail | None


def replay(wal_dir: Path) -> Replayed:
    """Read every segment in `wal_dir`; raise CorruptionError on damage."""
    state = _State()
    infos: list[SegmentInfo] = []
    torn: TornTail | None = None
    listed = list_segments(wal_dir)
    for position, (sequence, path) in enumerate(listed):
        state.segment = position
        size, max_index, torn = _scan(path, path.read_bytes(), position == len(listed) - 1, state)
        infos.append(SegmentInfo(sequence, path, size, max_index))
    infos[: state.start_segment] = [
        attrs.evolve(info, max_index=0) for info in infos[: state.start_segment]
    ]
    return Replayed(state.hard_state, state.entries, state.start, infos, torn)


class _State:
    """What replay has rebuilt so far."""

    def __init__(self) -> None:
        #: the last hard state seen
        self.hard_state = HardState()
        #: the log so far; indexes are consecutive
        self.entries: list[Entry] = []
        #: the last LOG_START seen
        self.start: LogStart | None = None
        #: the position of the segment being read, and of the one holding `start`
        self.segment = 0
        self.start_segment = 0

    def apply_start(self, start: LogStart) -> None:
        self.entries.clear()
        self.start = start
        self.start_segment = self.segment

    def apply_entry(self, entry: Entry) -> None:
        entries = self.entries
        start = self.start
        if start is not None and entry.index <= start.index:
            raise ValueError(
                f"entry index {entry.index} is at or before the log start at index {start.index}"
            )
        if start is not None and not entries and entry.index != start.index + 1:
            raise ValueError(
                f"entry index {entry.index} leaves a gap after the log start at index {start.index}"
            )
        if entries:
            last = entries[-1].index
            if entry.index > last + 1:
                raise ValueError(f"entry index {entry.index} leaves a gap after index {last}")
            if entry.index <= last:
                del entries[max(0, entry.index - entries[0].index) :]
        entries.append(entry)


def _scan(
    path: Path, data: bytes, is_last: bool, state: _State
) -> tuple[int, int, TornTail | None]:
    """Apply the records of one segment to `state`; return the size of its intact records,
    the highest entry index in it and its torn tail."""
    size = len(data)
    offset = 0
    max_index = 0

    def damaged(reason: str, torn: bool) -> TornTail:
        if torn and is_last:
            return TornTail(path, offset, size - offset, reason)
        if torn:
            reason += " (in a segment that is not the last)"
        raise CorruptionError(path, offset, reason)

    while offset < size:
        if size - offset < HEADER_SIZE:
            return offset, max_index, damaged("incomplete record header", torn=True)
        length, length_crc, payload_crc = HEADER.unpack_from(data, offset)
        if not length_checksum_ok(data, offset, length_crc):
            nonzero_end = len(data.rstrip(b"\0"))
            torn = nonzero_end - offset < HEADER_SIZE or _in_lost_sector(
                data, offset, offset + HEADER_SIZE
            )
            return offset, max_index, damaged("record header checksum mismatch", torn)
        end = offset + HEADER_SIZE + length
        if end > size:
            reason = f"record of {length} bytes runs past the end of the file"
            return offset, max_index, damaged(reason, torn=True)
        payload = data[offset + HEADER_SIZE : end]
        if zlib.crc32(payload) != payload_crc:
            torn = (
                end == size or len(data.rstrip(b"\0")) <= end or _in_lost_sector(data, offset, end)
            )
            return offset, max_index, damaged("payload checksum mismatch", torn)
        try:
            record = decode_payload(payload)
            if isinstance(record, HardState):
                state.hard_state = record
            elif offset == 0:
                raise ValueError("a segment must begin with a hard state record")
            elif isinstance(record, LogStart):
                state.apply_start(record)
                max_index = record.index
            else:
                state.apply_entry(record)
                max_index = max(max_index, record.index)
        except ValueError as e:
            raise CorruptionError(path, offset, str(e)) from None
        offset = end
    return offset, max_index, None


def _in_lost_sector(data: bytes, start: int, end: int) -> bool:
    """Whether the record at data[start:end] lies in a lost sector: one it overlaps whose
    bytes from max(start, the sector's start) to the sector's end are all zeros."""
    size = len(data)
    while start < end:
        sector_end = min(size, (start // SECTOR_SIZE + 1) * SECTOR_SIZE)
        if data.count(0, start, sector_end) == sector_end - start:
            return True
        start = sector_end
    return False
