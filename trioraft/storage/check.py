"""The offline integrity check behind `trioraft check DATA_DIR`.

Read-only: it opens files for reading only and never cuts a torn tail (it reports it as a
warning; a node started on the dir would cut it). It holds the data dir's lock shared, so
it refuses to run while a node uses the dir. It checks every segment of the log, every
snapshot file whole (header and data checksums) and that the newest snapshot meets the
log (state.py); temp and partial snapshot files, which a start removes, are ignored.
Damage raises CorruptionError naming the file and byte offset; a log that does not meet
the snapshot raises LogMismatchError; a dir that is not a trioraft data dir raises
DataDirError.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from trioraft.core.messages import HardState
from trioraft.storage.datadir import IDENTITY_FILE, SNAP_DIR, WAL_DIR, read_identity, shared_lock
from trioraft.storage.errors import DataDirError
from trioraft.storage.replay import TornTail, replay
from trioraft.storage.snapshots import list_snapshots, verify_snapshot
from trioraft.storage.state import meet


@attrs.frozen
class CheckReport:
    #: the node that owns the data dir
    node_id: str
    #: the first and last index of the log, None when it holds no entry
    first_index: int | None
    last_index: int | None
    #: how many entries the log holds (last - first + 1, or 0)
    entry_count: int
    #: the term and vote on disk
    hard_state: HardState
    #: how many segment files the log has
    segment_count: int
    #: the index the newest snapshot ends at, None when there is none
    snapshot_index: int | None
    #: torn tails a start would cut off (at most one)
    warnings: list[TornTail]


def check_data_dir(path: Path) -> CheckReport:
    """Check the data dir `path` without modifying it (blocking)."""
    if not path.is_dir():
        raise DataDirError(f"{path}: no such data dir")
    with shared_lock(path):
        identity = read_identity(path)
        if identity is None:
            raise DataDirError(f"{path / IDENTITY_FILE}: missing: not a trioraft data dir")
        replayed = replay(path / WAL_DIR)
        headers = [verify_snapshot(snapshot.path) for snapshot in list_snapshots(path / SNAP_DIR)]
    newest = headers[-1].meta if headers else None
    start = replayed.start
    meet(
        newest,
        path / SNAP_DIR,
        path / WAL_DIR,
        replayed.entries,
        None if start is None else (start.index, start.term),
    )
    entries = replayed.entries
    return CheckReport(
        node_id=identity.node_id,
        first_index=entries[0].index if entries else None,
        last_index=entries[-1].index if entries else None,
        entry_count=len(entries),
        hard_state=replayed.hard_state,
        segment_count=len(replayed.segments),
        snapshot_index=None if newest is None else newest.index,
        warnings=[] if replayed.torn_tail is None else [replayed.torn_tail],
    )
