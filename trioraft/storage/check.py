"""The offline integrity check behind `trioraft check DATA_DIR`.

Read-only: it opens files for reading only and never cuts a torn tail (it reports it as a
warning; a node started on the dir would cut it). It holds the data dir's lock shared, so
it refuses to run while a node uses the dir. Damage raises CorruptionError naming the
file and byte offset; a dir that is not a trioraft data dir raises DataDirError.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from trioraft.core.messages import HardState
from trioraft.storage.datadir import IDENTITY_FILE, WAL_DIR, read_identity, shared_lock
from trioraft.storage.errors import DataDirError
from trioraft.storage.replay import TornTail, replay


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
    entries = replayed.entries
    return CheckReport(
        node_id=identity.node_id,
        first_index=entries[0].index if entries else None,
        last_index=entries[-1].index if entries else None,
        entry_count=len(entries),
        hard_state=replayed.hard_state,
        segment_count=len(replayed.segments),
        warnings=[] if replayed.torn_tail is None else [replayed.torn_tail],
    )
