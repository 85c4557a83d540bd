"""The write-ahead log, the data dir's identity and lock, and the offline check."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from trioraft.core.messages import Entry, EntryKind, HardState, Members, SnapshotMeta
from trioraft.storage import (
    CorruptionError,
    DataDir,
    DataDirError,
    FsyncError,
    SnapshotStore,
    StorageError,
    WriteAheadLog,
    check_data_dir,
)
from trioraft.storage.records import LogStart, encode_entries, encode_hard_state, encode_log_start


def make_entries(first: int, last: int, term: int = 1, size: int = 8) -> list[Entry]:
    return [
        Entry(term, i, EntryKind.COMMAND, i.to_bytes(4, "big") * (size // 4))
        for i in range(first, last + 1)
    ]


def segments(wal_dir: Path) -> list[Path]:
    return sorted(wal_dir.glob("*.wal"))


def tree(path: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `path` with its contents and modification time."""
    return {
        str(p.relative_to(path)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


# --- round trips -----------------------------------------------------------------------


def test_round_trip_across_segments(tmp_path: Path) -> None:
    wal, recovery = WriteAheadLog.open(tmp_path, segment_bytes=1024)
    assert recovery.entries == [] and recovery.hard_state == HardState() and not recovery.warnings
    written: list[Entry] = []
    for batch in range(20):
        entries = make_entries(batch * 10 + 1, batch * 10 + 10, term=batch // 5 + 1, size=40)
        wal.set_hard_state(HardState(batch // 5 + 1, "n1"))
        wal.append(entries)
        written += entries
        wal.sync()
    wal.append([Entry(4, 201, EntryKind.NOOP), Entry(4, 202, EntryKind.CONFIG, b"cfg")])
    written += [Entry(4, 201, EntryKind.NOOP), Entry(4, 202, EntryKind.CONFIG, b"cfg")]
    wal.close()
    assert len(segments(tmp_path)) > 5

    wal, recovery = WriteAheadLog.open(tmp_path, segment_bytes=1024)
    assert recovery.entries == written
    assert recovery.hard_state == HardState(4, "n1")
    assert recovery.warnings == []
    assert wal.last_index == 202 and wal.hard_state == HardState(4, "n1")
    wal.close()


def test_reopen_continues_the_log(tmp_path: Path) -> None:
    with WriteAheadLog.open(tmp_path)[0] as wal:
        wal.append(make_entries(1, 5))
    with WriteAheadLog.open(tmp_path)[0] as wal:
        assert wal.last_index == 5
        wal.append(make_entries(6, 10))
        wal.set_hard_state(HardState(2, None))
    wal, recovery = WriteAheadLog.open(tmp_path)
    assert recovery.entries == make_entries(1, 10)
    assert recovery.hard_state == HardState(2, None)
    assert len(segments(tmp_path)) == 1
    wal.close()


def test_fsync_off_never_calls_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(os, "fsync", calls.append)
    with WriteAheadLog.open(tmp_path, fsync=False, segment_bytes=200)[0] as wal:
        for i in range(1, 30):
            wal.append(make_entries(i, i))
            wal.sync()
        wal.compact(20)
    assert calls == []
    assert WriteAheadLog.open(tmp_path)[1].entries[-1].index == 29


def test_empty_last_segment_gets_the_hard_state(tmp_path: Path) -> None:
    """A crash just after a new segment was created leaves it empty: the open writes the
    hard state into it, so compaction can still delete the older ones."""
    with WriteAheadLog.open(tmp_path)[0] as wal:
        wal.set_hard_state(HardState(7, "n3"))
        wal.append(make_entries(1, 3))
    (tmp_path / "0000000000000002.wal").touch()
    with WriteAheadLog.open(tmp_path)[0] as wal:
        wal.append(make_entries(4, 4))
        assert wal.compact(3) == 1
    wal, recovery = WriteAheadLog.open(tmp_path)
    assert recovery.hard_state == HardState(7, "n3")
    assert recovery.entries == make_entries(4, 4)
    wal.close()


# --- truncation rewrites ------------------------------------------------------------------


def test_truncation_rewrite_is_replayed(tmp_path: Path) -> None:
    wal, _ = WriteAheadLog.open(tmp_path, segment_bytes=300)
    wal.append(make_entries(1, 10, term=1))
    wal.append(make_entries(6, 8, term=2))
    assert wal.last_index == 8
    wal.append(make_entries(9, 9, term=2))
    wal.append(make_entries(3, 4, term=3))
    wal.append(make_entries(5, 5, term=3))
    wal.close()

    wal, recovery = WriteAheadLog.open(tmp_path, segment_bytes=300)
    assert recovery.entries == make_entries(1, 2, term=1) + make_entries(3, 5, term=3)
    assert wal.last_index == 5
    wal.close()


def test_rewrite_across_segments(tmp_path: Path) -> None:
    wal, _ = WriteAheadLog.open(tmp_path, segment_bytes=100)
    for i in range(1, 21):
        wal.append(make_entries(i, i, term=1))
    assert len(segments(tmp_path)) > 3
    wal.append(make_entries(2, 3, term=2))
    wal.close()
    assert WriteAheadLog.open(tmp_path)[1].entries == make_entries(1, 1) + make_entries(
        2, 3, term=2
    )


def test_append_rejects_gaps(tmp_path: Path) -> None:
    with WriteAheadLog.open(tmp_path)[0] as wal:
        wal.append(make_entries(1, 3))
        with pytest.raises(ValueError, match="does not continue"):
            wal.append(make_entries(5, 6))
        with pytest.raises(ValueError, match="should be 3"):
            wal.append([Entry(1, 2, data=b""), Entry(1, 4, data=b"")])
        with pytest.raises(ValueError):
            wal.append([Entry(1, 0)])
        assert wal.last_index == 3


# --- compaction ---------------------------------------------------------------------------


def test_hard_state_survives_compaction(tmp_path: Path) -> None:
    wal, _ = WriteAheadLog.open(tmp_path, segment_bytes=200)
    wal.set_hard_state(HardState(3, "n2"))
    for i in range(1, 41):
        wal.append(make_entries(i, i, term=3))
    wal.sync()
    before = len(segments(tmp_path))
    deleted = wal.compact(30)
    assert deleted > 0 and len(segments(tmp_path)) == before - deleted
    wal.close()

    wal, recovery = WriteAheadLog.open(tmp_path, segment_bytes=200)
    assert recovery.hard_state == HardState(3, "n2")
    first = recovery.entries[0].index
    assert 1 < first <= 31
    assert recovery.entries == make_entries(first, 40, term=3)
    wal.close()


def test_start_segment_lets_the_next_compaction_delete_the_old_active_one(
    tmp_path: Path,
) -> None:
    wal, _ = WriteAheadLog.open(tmp_path)  # one big segment
    wal.set_hard_state(HardState(2, "n1"))
    for i in range(1, 11):
        wal.append(make_entries(i, i))
    assert wal.compact(10) == 0, "the active segment is never deleted"
    wal.start_segment()
    wal.append(make_entries(11, 11))
    assert wal.compact(10) == 1
    wal.start_segment()
    wal.start_segment()  # the new active one holds no entry yet: nothing to do
    assert len(segments(tmp_path)) == 2
    wal.close()
    reopened, recovery = WriteAheadLog.open(tmp_path)
    with reopened:
        assert recovery.entries == make_entries(11, 11)
        assert recovery.hard_state == HardState(2, "n1")


def test_compaction_never_deletes_the_active_segment(tmp_path: Path) -> None:
    wal, _ = WriteAheadLog.open(tmp_path, segment_bytes=200)
    for i in range(1, 41):
        wal.append(make_entries(i, i))
    before = len(segments(tmp_path))
    assert wal.compact(1000) == before - 1
    assert wal.compact(1000) == 0
    assert len(segments(tmp_path)) == 1
    wal.append(make_entries(41, 41))
    wal.close()
    assert WriteAheadLog.open(tmp_path)[1].entries[-1].index == 41


# --- restarting the log after a snapshot ----------------------------------------------------


def test_reset_then_append_then_reopen(tmp_path: Path) -> None:
    with WriteAheadLog.open(tmp_path)[0] as wal:
        wal.set_hard_state(HardState(3, "n2"))
        wal.append(make_entries(1, 10))
        wal.reset(100, 3)
        assert wal.last_index == 100
        wal.append(make_entries(101, 105, term=3))
    wal, recovery = WriteAheadLog.open(tmp_path)
    with wal:
        assert recovery.start == (100, 3)
        assert recovery.entries == make_entries(101, 105, term=3)
        assert recovery.hard_state == HardState(3, "n2")
        assert wal.last_index == 105
        wal.append(make_entries(106, 106, term=3))
    assert WriteAheadLog.open(tmp_path)[1].entries[-1].index == 106


def test_after_a_reset_the_next_entry_is_the_one_after_it(tmp_path: Path) -> None:
    with WriteAheadLog.open(tmp_path)[0] as wal:
        wal.append(make_entries(1, 3))
        wal.reset(100, 3)
    wal, recovery = WriteAheadLog.open(tmp_path)
    with wal:
        assert (recovery.start, recovery.entries, wal.last_index) == ((100, 3), [], 100)
        with pytest.raises(ValueError, match="does not continue a log ending at 100"):
            wal.append(make_entries(102, 102))
        with pytest.raises(ValueError, match="at or before the log start at index 100"):
            wal.append(make_entries(100, 101))
        wal.append(make_entries(101, 103))
        # a truncation may go back to the entry after the log start, not before it
        wal.append(make_entries(101, 101, term=4))
        with pytest.raises(ValueError, match="at or before the log start"):
            wal.append(make_entries(50, 50))
        with pytest.raises(ValueError):
            wal.reset(0, 1)
    assert WriteAheadLog.open(tmp_path)[1].entries == make_entries(101, 101, term=4)


def test_reset_below_the_end_of_the_log_forgets_all_of_it(tmp_path: Path) -> None:
    """A snapshot whose last entry conflicts with the log replaces the whole log."""
    with WriteAheadLog.open(tmp_path, segment_bytes=200)[0] as wal:
        for i in range(1, 51):
            wal.append(make_entries(i, i, term=1))
        wal.reset(20, 2)
        wal.append(make_entries(21, 22, term=2))
    wal, recovery = WriteAheadLog.open(tmp_path, segment_bytes=200)
    with wal:
        assert recovery.start == (20, 2)
        assert recovery.entries == make_entries(21, 22, term=2)


@pytest.mark.parametrize("reopen", [False, True])
def test_compact_after_reset(tmp_path: Path, reopen: bool) -> None:
    """Segments before the LOG_START hold only forgotten entries: compaction deletes them
    whatever their indexes, and the hard state survives."""
    wal, _ = WriteAheadLog.open(tmp_path, segment_bytes=200)
    wal.set_hard_state(HardState(5, "n3"))
    for i in range(1, 41):
        wal.append(make_entries(i, i))
    old_segments = segments(tmp_path)
    assert len(old_segments) > 3
    wal.reset(30, 5)
    for i in range(31, 36):
        wal.append(make_entries(i, i, term=5))
    if reopen:
        wal.close()
        wal, _ = WriteAheadLog.open(tmp_path, segment_bytes=200)
    assert wal.compact(29) >= len(old_segments) - 1
    assert not set(old_segments[:-1]) & set(segments(tmp_path))
    wal.close()
    wal, recovery = WriteAheadLog.open(tmp_path, segment_bytes=200)
    with wal:
        assert recovery.hard_state == HardState(5, "n3")
        assert recovery.start == (30, 5)
        assert recovery.entries == make_entries(31, 35, term=5)
        # compacting past the log start may delete it: the entries still follow on
        for i in range(36, 61):
            wal.append(make_entries(i, i, term=5))
        assert wal.compact(50) > 0
    wal, recovery = WriteAheadLog.open(tmp_path, segment_bytes=200)
    with wal:
        assert recovery.start is None
        assert recovery.hard_state == HardState(5, "n3")
        first = recovery.entries[0].index
        assert 31 < first <= 51 and recovery.entries == make_entries(first, 60, term=5)


def test_an_unsynced_reset_can_be_torn_off(tmp_path: Path) -> None:
    with WriteAheadLog.open(tmp_path)[0] as wal:
        wal.append(make_entries(1, 3))
    [segment] = segments(tmp_path)
    size = segment.stat().st_size
    with WriteAheadLog.open(tmp_path)[0] as wal:
        wal.reset(10, 2)
    segment.write_bytes(segment.read_bytes()[: size + 7])
    wal, recovery = WriteAheadLog.open(tmp_path)
    with wal:
        assert recovery.start is None and recovery.entries == make_entries(1, 3)
        assert recovery.warnings[0].offset == size


@pytest.mark.parametrize(
    ("after", "message"),
    [(10, "at or before the log start at index 10"), (12, "gap after the log start")],
)
def test_entries_after_a_log_start_must_follow_it(tmp_path: Path, after: int, message: str) -> None:
    segment = tmp_path / "0000000000000001.wal"
    head = encode_hard_state(HardState()) + encode_entries(make_entries(1, 2))
    head += encode_log_start(LogStart(10, 1))
    segment.write_bytes(head + encode_entries(make_entries(after, after)))
    with pytest.raises(CorruptionError, match=message) as info:
        WriteAheadLog.open(tmp_path)
    assert info.value.offset == len(head)


# --- torn tails and damage ----------------------------------------------------------------


def write_three(wal_dir: Path) -> tuple[Path, list[int]]:
    """A one-segment log: hard state, entries 1..3 (entry 3 is small); returns the segment
    and the start offset of every record."""
    wal, _ = WriteAheadLog.open(wal_dir)
    [segment] = segments(wal_dir)
    starts = [0]
    wal.set_hard_state(HardState(1, "n1"))
    starts.append(segment.stat().st_size)
    for i in (1, 2):
        wal.append(make_entries(i, i))
        starts.append(segment.stat().st_size)
    wal.append([Entry(1, 3, EntryKind.COMMAND, b"xyz")])
    wal.close()
    return segment, starts


LAST_RECORD_SIZE = 12 + 18 + 3


@pytest.mark.parametrize(
    ("mode", "cut"),
    [("truncated", cut) for cut in range(1, LAST_RECORD_SIZE)]
    + [("zero-filled", cut) for cut in range(LAST_RECORD_SIZE)],
)
def test_torn_tail_is_cut_at_every_offset(tmp_path: Path, cut: int, mode: str) -> None:
    segment, starts = write_three(tmp_path)
    start = starts[-1]
    data = segment.read_bytes()
    assert len(data) == start + LAST_RECORD_SIZE
    if mode == "truncated":
        segment.write_bytes(data[: start + cut])
    else:
        segment.write_bytes(data[: start + cut] + bytes(LAST_RECORD_SIZE - cut))

    wal, recovery = WriteAheadLog.open(tmp_path)
    assert recovery.entries == make_entries(1, 2)
    assert recovery.hard_state == HardState(1, "n1")
    [torn] = recovery.warnings
    assert (torn.path, torn.offset) == (segment, start)
    assert torn.dropped == (cut if mode == "truncated" else LAST_RECORD_SIZE)
    assert f"torn tail cut at byte offset {start}" in str(torn)
    assert segment.stat().st_size == start
    wal.append([Entry(2, 3, data=b"again")])
    wal.close()
    wal, recovery = WriteAheadLog.open(tmp_path)
    assert recovery.warnings == []
    assert recovery.entries == [*make_entries(1, 2), Entry(2, 3, data=b"again")]
    wal.close()


def test_zeros_after_the_last_record_are_a_torn_tail(tmp_path: Path) -> None:
    segment, _ = write_three(tmp_path)
    size = segment.stat().st_size
    with segment.open("ab") as f:
        f.write(bytes(4096))
    wal, recovery = WriteAheadLog.open(tmp_path)
    [torn] = recovery.warnings
    assert (torn.offset, torn.dropped) == (size, 4096)
    assert len(recovery.entries) == 3
    wal.close()


def test_bad_payload_of_the_last_record_is_a_torn_tail(tmp_path: Path) -> None:
    segment, starts = write_three(tmp_path)
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0x01
    segment.write_bytes(bytes(data))
    wal, recovery = WriteAheadLog.open(tmp_path)
    assert recovery.warnings[0].offset == starts[-1]
    assert recovery.entries == make_entries(1, 2)
    wal.close()


def test_bad_header_of_the_last_record_is_damage(tmp_path: Path) -> None:
    segment, starts = write_three(tmp_path)
    data = bytearray(segment.read_bytes())
    data[starts[-1]] ^= 0x01
    segment.write_bytes(bytes(data))
    with pytest.raises(CorruptionError) as info:
        WriteAheadLog.open(tmp_path)
    assert (info.value.path, info.value.offset) == (segment, starts[-1])


def test_flipped_bit_in_a_middle_record_is_damage(tmp_path: Path) -> None:
    segment, starts = write_three(tmp_path)
    original = segment.read_bytes()
    middle, after = starts[2], starts[3]
    for position in range(middle, after):
        for bit in (0x01, 0x80):
            data = bytearray(original)
            data[position] ^= bit
            segment.write_bytes(bytes(data))
            with pytest.raises(CorruptionError) as info:
                WriteAheadLog.open(tmp_path)
            assert info.value.path == segment
            assert info.value.offset == middle
            assert str(info.value).startswith(
                f"{segment}: damaged record at byte offset {middle}: "
            )
            assert segment.read_bytes() == bytes(data), "damage must not be cut"


def test_damage_in_a_segment_that_is_not_the_last(tmp_path: Path) -> None:
    wal, _ = WriteAheadLog.open(tmp_path, segment_bytes=200)
    for i in range(1, 20):
        wal.append(make_entries(i, i))
    wal.close()
    first, *_ = segments(tmp_path)
    size = first.stat().st_size
    first.write_bytes(first.read_bytes()[:-5])
    with pytest.raises(CorruptionError, match="not the last") as info:
        WriteAheadLog.open(tmp_path, segment_bytes=200)
    assert info.value.path == first
    assert 0 < info.value.offset < size


def test_missing_segment_is_damage(tmp_path: Path) -> None:
    wal, _ = WriteAheadLog.open(tmp_path, segment_bytes=100)
    for i in range(1, 20):
        wal.append(make_entries(i, i))
    wal.close()
    listed = segments(tmp_path)
    listed[1].unlink()
    with pytest.raises(CorruptionError, match="a segment is missing") as info:
        WriteAheadLog.open(tmp_path)
    assert info.value.path == listed[2]


def test_gap_between_intact_records_is_damage(tmp_path: Path) -> None:
    segment = tmp_path / "0000000000000001.wal"
    head = encode_hard_state(HardState()) + encode_entries(make_entries(1, 2))
    segment.write_bytes(head + encode_entries(make_entries(4, 4)))
    with pytest.raises(CorruptionError, match="gap after index 2") as info:
        WriteAheadLog.open(tmp_path)
    assert info.value.offset == len(head)


def test_segment_must_begin_with_the_hard_state(tmp_path: Path) -> None:
    (tmp_path / "0000000000000001.wal").write_bytes(encode_entries(make_entries(1, 2)))
    with pytest.raises(CorruptionError, match="must begin with a hard state") as info:
        WriteAheadLog.open(tmp_path)
    assert info.value.offset == 0


#: the unit a disk writes atomically, and the size of a page of the page cache
SECTOR = 512
PAGE = 4096


def write_many(wal_dir: Path, count: int = 300) -> tuple[Path, list[int]]:
    """A one-segment log of `count` entries of 40 bytes with no zero byte in them;
    returns the segment and the start offset of every record, then its size."""
    entries = [
        Entry(1, i, EntryKind.COMMAND, bytes([i % 255 + 1]) * 40) for i in range(1, count + 1)
    ]
    with WriteAheadLog.open(wal_dir)[0] as wal:
        for entry in entries:
            wal.append([entry])
    [segment] = segments(wal_dir)
    size = len(encode_hard_state(HardState()))
    starts = [0]
    for entry in entries:
        starts.append(size)
        size += len(encode_entries([entry]))
    assert segment.stat().st_size == size
    return segment, [*starts, size]


def zero(path: Path, start: int, length: int) -> None:
    data = bytearray(path.read_bytes())
    data[start : start + length] = bytes(len(data[start : start + length]))
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("hole_start", "hole_size"),
    [(PAGE * k, PAGE) for k in (1, 2, 3, 4)]
    + [(SECTOR * k, SECTOR) for k in (1, 5, 13, 30)]
    + [(PAGE, 3 * PAGE)],
)
def test_a_zero_filled_hole_before_intact_records_is_a_torn_tail(
    tmp_path: Path, hole_start: int, hole_size: int
) -> None:
    """A power loss can keep pages written after a page that never reached the disk
    (reading as zeros): the records from the one the hole begins in are cut."""
    segment, starts = write_many(tmp_path)
    size = starts[-1]
    assert hole_start + hole_size < size, "intact records must follow the hole"
    zero(segment, hole_start, hole_size)
    first_torn = max(k for k, start in enumerate(starts) if start <= hole_start)

    wal, recovery = WriteAheadLog.open(tmp_path)
    [torn] = recovery.warnings
    assert (torn.offset, torn.dropped) == (starts[first_torn], size - starts[first_torn])
    assert [e.index for e in recovery.entries] == list(range(1, first_torn))
    assert segment.stat().st_size == starts[first_torn]
    wal.close()


def test_zeros_inside_a_damaged_record_that_fill_no_sector_are_damage(tmp_path: Path) -> None:
    segment, starts = write_many(tmp_path)
    record = next(start for start in starts if start > PAGE)
    zero(segment, record + 20, 20)  # within the payload, not a whole sector of it
    with pytest.raises(CorruptionError, match="payload checksum mismatch") as info:
        WriteAheadLog.open(tmp_path)
    assert info.value.offset == record


def test_an_all_zero_sector_in_a_record_that_is_intact_is_kept(tmp_path: Path) -> None:
    """Zeros are only a sign of a torn write in a record that fails its checksum: a
    record holding zeros of its own is read as written."""
    data = bytes(3 * SECTOR)
    with WriteAheadLog.open(tmp_path)[0] as wal:
        wal.append([Entry(1, 1, EntryKind.COMMAND, data), *make_entries(2, 3)])
    wal, recovery = WriteAheadLog.open(tmp_path)
    assert recovery.warnings == []
    assert recovery.entries[0].data == data
    wal.close()


# --- recovery is made durable -------------------------------------------------------------


def record_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The path of every file or directory fsynced from now on, in order."""
    synced: list[Path] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return synced


def test_open_makes_what_it_recovers_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a crash left may be in the page cache only: the node must not re-acknowledge
    entries or re-grant a vote that a power loss would then erase."""
    wal_dir = tmp_path.resolve() / "wal"
    with WriteAheadLog.open(wal_dir, fsync=False, segment_bytes=200)[0] as wal:
        wal.set_hard_state(HardState(3, "n2"))
        wal.append(make_entries(1, 20))
    synced = record_fsyncs(monkeypatch)
    wal, _ = WriteAheadLog.open(wal_dir, segment_bytes=200)
    assert set(segments(wal_dir)) | {wal_dir, tmp_path.resolve()} <= set(synced)
    wal.close()


def test_a_roll_right_after_open_leaves_no_segment_unsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with WriteAheadLog.open(tmp_path, fsync=False, segment_bytes=200)[0] as wal:
        wal.append(make_entries(1, 5))
    [first] = segments(tmp_path)
    assert first.stat().st_size >= 200, "the next write starts a segment"
    synced = record_fsyncs(monkeypatch)
    wal, _ = WriteAheadLog.open(tmp_path, segment_bytes=200)
    wal.append(make_entries(4, 4))
    second = segments(tmp_path)[1]
    assert first.resolve() in synced
    assert synced.index(first.resolve()) < synced.index(tmp_path.resolve()), (
        "the first segment is durable before the second one's directory entry"
    )
    wal.close()
    assert second.resolve() in synced


def test_opening_the_snapshot_store_syncs_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot renamed into place just before a crash may not have its directory
    entry on disk yet; the log must not be compacted on the strength of it."""
    snap_dir = tmp_path.resolve() / "snap"
    store = SnapshotStore(snap_dir, fsync=False)
    store.write(SnapshotMeta(5, 1, Members(voters=frozenset({"n1"}))), b"state")
    synced = record_fsyncs(monkeypatch)
    SnapshotStore(snap_dir)
    assert snap_dir in synced


# --- fsync failure ------------------------------------------------------------------------


def test_fsync_failure_is_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wal, _ = WriteAheadLog.open(tmp_path)
    wal.append(make_entries(1, 2))

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(FsyncError, match="fsync failed"):
        wal.sync()
    monkeypatch.undo()
    with pytest.raises(FsyncError, match="refuses further calls"):
        wal.append(make_entries(3, 3))
    with pytest.raises(FsyncError):
        wal.set_hard_state(HardState(5, "n1"))
    with pytest.raises(FsyncError):
        wal.sync()
    with pytest.raises(FsyncError):
        wal.compact(1)
    wal.close()
    with pytest.raises(StorageError, match="closed"):
        wal.sync()


def test_fsync_failure_while_rolling_is_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wal, _ = WriteAheadLog.open(tmp_path, segment_bytes=100)
    wal.append(make_entries(1, 5))

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(FsyncError):
        wal.append(make_entries(6, 6))
    monkeypatch.undo()
    with pytest.raises(FsyncError):
        wal.append(make_entries(6, 6))
    wal.close()


# --- the data dir -------------------------------------------------------------------------


def test_data_dir_identity(tmp_path: Path) -> None:
    path = tmp_path / "n1"
    with DataDir.open(path, node_id="n1", cluster_token="secret") as first:
        assert first.created
        incarnation = first.incarnation
        assert len(incarnation) == 32
    assert "secret" not in (path / "identity.json").read_text()
    with DataDir.open(path, node_id="n1", cluster_token="secret") as again:
        assert not again.created
        assert again.incarnation == incarnation
        assert again.wal_dir == path / "wal"

    with pytest.raises(DataDirError, match="belongs to node 'n1', not 'n2'") as info:
        DataDir.open(path, node_id="n2", cluster_token="secret")
    assert str(path / "identity.json") in str(info.value)
    with pytest.raises(DataDirError, match="another cluster") as info:
        DataDir.open(path, node_id="n1", cluster_token="other")
    assert str(path / "identity.json") in str(info.value)
    # the failed opens released the lock
    DataDir.open(path, node_id="n1", cluster_token="secret").close()


def test_wiped_data_dir_gets_a_new_incarnation(tmp_path: Path) -> None:
    with DataDir.open(tmp_path / "d", node_id="n1", cluster_token="t") as first:
        old = first.incarnation
    for p in (tmp_path / "d").iterdir():
        p.unlink()
    with DataDir.open(tmp_path / "d", node_id="n1", cluster_token="t") as second:
        assert second.created and second.incarnation != old


def test_data_dir_refuses_foreign_or_unknown_dirs(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DataDirError, match="not a trioraft data dir"):
        DataDir.open(tmp_path, node_id="n1", cluster_token="t")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lock", "notes.txt"]

    other = tmp_path / "other"
    DataDir.open(other, node_id="n1", cluster_token="t").close()
    identity = other / "identity.json"
    identity.write_text(identity.read_text().replace('"format": 1', '"format": 99'))
    with pytest.raises(DataDirError, match="format 99 is not supported"):
        DataDir.open(other, node_id="n1", cluster_token="t")
    identity.write_text("{not json")
    with pytest.raises(DataDirError, match="damaged identity file"):
        DataDir.open(other, node_id="n1", cluster_token="t")


def test_lock_prevents_a_second_open(tmp_path: Path) -> None:
    path = tmp_path / "n1"
    with DataDir.open(path, node_id="n1", cluster_token="t"):
        with pytest.raises(DataDirError, match="in use by another process") as info:
            DataDir.open(path, node_id="n1", cluster_token="t")
        assert str(path) in str(info.value) and f"pid {os.getpid()}" in str(info.value)
        with pytest.raises(DataDirError, match="in use by a running node"):
            check_data_dir(path)
    DataDir.open(path, node_id="n1", cluster_token="t").close()


# --- the offline check --------------------------------------------------------------------


def make_data_dir(path: Path) -> Path:
    """A data dir whose log was compacted after a snapshot at index 10."""
    with DataDir.open(path, node_id="n1", cluster_token="t") as data_dir:
        SnapshotStore(data_dir.snap_dir).write(
            SnapshotMeta(10, 2, Members(frozenset({"n1"}))), b"state"
        )
        wal, _ = WriteAheadLog.open(data_dir.wal_dir, segment_bytes=300)
        wal.set_hard_state(HardState(2, "n1"))
        for i in range(1, 31):
            wal.append(make_entries(i, i, term=2))
        wal.compact(10)
        wal.close()
    return path


def test_check_intact_data_dir(tmp_path: Path) -> None:
    path = make_data_dir(tmp_path / "n1")
    before = tree(path)
    report = check_data_dir(path)
    assert tree(path) == before
    assert report.node_id == "n1"
    assert report.last_index == 30
    assert report.first_index is not None and 1 < report.first_index <= 11
    assert report.entry_count == 30 - report.first_index + 1
    assert report.hard_state == HardState(2, "n1")
    assert report.segment_count == len(segments(path / "wal"))
    assert report.snapshot_index == 10
    assert report.warnings == []


def test_check_new_data_dir(tmp_path: Path) -> None:
    DataDir.open(tmp_path / "n1", node_id="n1", cluster_token="t").close()
    report = check_data_dir(tmp_path / "n1")
    assert (report.first_index, report.last_index, report.entry_count) == (None, None, 0)
    assert report.segment_count == 0
    assert report.snapshot_index is None


def test_check_reports_torn_tail_without_cutting_it(tmp_path: Path) -> None:
    path = make_data_dir(tmp_path / "n1")
    last = segments(path / "wal")[-1]
    last.write_bytes(last.read_bytes()[:-3])
    before = tree(path)
    report = check_data_dir(path)
    assert tree(path) == before
    [torn] = report.warnings
    assert torn.path == last and report.last_index == 29


def test_check_damaged_data_dir(tmp_path: Path) -> None:
    path = make_data_dir(tmp_path / "n1")
    first = segments(path / "wal")[0]
    data = bytearray(first.read_bytes())
    data[40] ^= 0x10
    first.write_bytes(bytes(data))
    before = tree(path)
    with pytest.raises(CorruptionError) as info:
        check_data_dir(path)
    offset = len(encode_hard_state(HardState(2, "n1")))
    assert (info.value.path, info.value.offset) == (first, offset)
    assert str(info.value).startswith(f"{first}: damaged record at byte offset {offset}: ")
    assert tree(path) == before


def test_check_refuses_what_is_not_a_data_dir(tmp_path: Path) -> None:
    with pytest.raises(DataDirError, match="no such data dir"):
        check_data_dir(tmp_path / "missing")
    with pytest.raises(DataDirError, match="not a trioraft data dir"):
        check_data_dir(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_record_format_is_fixed() -> None:
    """Fixed bytes, so a change of the on-disk format cannot pass unnoticed (a new
    version must read an old WAL; see docs/data-format.md): length, header crc, payload
    crc, then the payload."""
    entry = encode_entries([Entry(3, 8, EntryKind.COMMAND, b"set k v")])
    assert entry.hex() == (
        "1900000009c7550ce2c1f026010300000000000000080000000000000000736574206b2076"
    )
    assert encode_hard_state(HardState(4, "n1")).hex() == (
        "0d000000c1072ed32e46876c02040000000000000002006e31"
    )
    assert encode_log_start(LogStart(100, 3)).hex() == (
        "11000000e6efe1c9da6c8af90364000000000000000300000000000000"
    )
