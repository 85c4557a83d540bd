"""What a node starts from: the newest snapshot and the write-ahead log, checked to meet.

The rule (docs/data-format.md, "Snapshot and log"): with a snapshot ending at index s,
the log's first index after dropping the entries at or before s must be s + 1; the log
may also be empty, or end at or before s. The log's first index is the one after its
LOG_START if it has one, else its first entry's. Without a snapshot, the log must start
at index 1 (or be empty): a log starting later, or restarting after a LOG_START, relies
on a snapshot that is not there. Anything else is `LogMismatchError`, naming the log and
the snapshot: entries between them are missing and the node cannot rebuild its state.

A log that ends before the snapshot, or whose entry at s has another term than the
snapshot's, is what a crash leaves between installing a snapshot from the leader and
restarting the log after it: `open_storage` completes that step (`WriteAheadLog.reset`,
then `compact`), and `trioraft check` accepts it without change.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import attrs

from trioraft.core.messages import Entry, HardState, SnapshotMeta
from trioraft.storage.datadir import SNAP_DIR, WAL_DIR
from trioraft.storage.errors import LogMismatchError
from trioraft.storage.replay import TornTail
from trioraft.storage.snapshots import SnapshotStore, snapshot_name
from trioraft.storage.wal import DEFAULT_SEGMENT_BYTES, WriteAheadLog


@attrs.frozen
class Meeting:
    """How a log continues a snapshot."""

    #: the log's entries after the snapshot, oldest first
    entries: list[Entry]
    #: whether the log must restart after the snapshot: it ends before the snapshot, or
    #: its entry at the snapshot's index has another term
    restart: bool


def meet(
    snapshot: SnapshotMeta | None,
    snap_dir: Path,
    wal_dir: Path,
    entries: Sequence[Entry],
    start: tuple[int, int] | None,
) -> Meeting:
    """Check that the log (its `entries` and LOG_START `start`, as recovered from
    `wal_dir`) meets `snapshot`, the newest in `snap_dir`; raise LogMismatchError if not."""
    if not entries and start is None:
        return Meeting([], restart=False)
    first = entries[0].index if start is None else start[0] + 1
    if snapshot is None:
        if first != 1:
            raise LogMismatchError(
                f"{wal_dir}: the log starts at index {first} but {snap_dir} holds no "
                f"snapshot: entries 1..{first - 1} are missing"
            )
        return Meeting(list(entries), restart=False)
    s = snapshot.index
    if first > s + 1:
        raise LogMismatchError(
            f"{wal_dir}: the log starts at index {first} but the newest snapshot "
            f"{snap_dir / snapshot_name(s, snapshot.term)} ends at {s}: "
            f"entries {s + 1}..{first - 1} are missing"
        )
    last = entries[-1].index if entries else first - 1
    if last < s:
        return Meeting([], restart=True)
    if first <= s:
        term_at_s = entries[s - first].term
    elif start is not None:
        term_at_s = start[1]
    else:
        term_at_s = snapshot.term
    if term_at_s != snapshot.term:
        return Meeting([], restart=True)
    return Meeting([e for e in entries if e.index > s], restart=False)


@attrs.frozen
class Restored:
    """What `open_storage` found: everything a node starts from."""

    #: the last hard state written
    hard_state: HardState
    #: the newest snapshot and its data (checksum checked), None when there is none
    snapshot: tuple[SnapshotMeta, bytes] | None
    #: the log's entries after the snapshot, oldest first
    entries: list[Entry]
    #: torn tails cut off the log (at most one)
    warnings: list[TornTail]
    #: whether the log was restarted after the snapshot, completing an install that a
    #: crash interrupted
    restarted: bool


def open_storage(
    data_dir: Path,
    *,
    fsync: bool = True,
    segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    keep: int = 2,
) -> tuple[WriteAheadLog, SnapshotStore, Restored]:
    """Open the snapshot store and the write-ahead log of the (locked) data dir
    `data_dir`, load the newest snapshot and check that it meets the log (blocking).
    Raises CorruptionError on damage and LogMismatchError when they do not meet."""
    snap_dir = data_dir / SNAP_DIR
    store = SnapshotStore(snap_dir, fsync=fsync, keep=keep)
    loaded = store.load_latest()
    wal, recovery = WriteAheadLog.open(data_dir / WAL_DIR, fsync=fsync, segment_bytes=segment_bytes)
    try:
        meta = None if loaded is None else loaded[0]
        meeting = meet(meta, snap_dir, wal.path, recovery.entries, recovery.start)
        if meeting.restart and meta is not None:
            wal.reset(meta.index, meta.term)
            wal.compact(meta.index)
    except BaseException:
        wal.close()
        raise
    restored = Restored(
        hard_state=recovery.hard_state,
        snapshot=loaded,
        entries=meeting.entries,
        warnings=recovery.warnings,
        restarted=meeting.restart,
    )
    return wal, store, restored
