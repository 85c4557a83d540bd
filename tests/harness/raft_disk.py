"""What one Raft core has made durable, kept in memory: the model of a node's disk for the
core's step-by-step tests and for the simulation (what survives a crash; a restart builds a
new core from it).

The disk holds a hard state, the snapshot its log starts after, and the entries after that
snapshot, contiguous. (`disk_model.DiskModel` is another thing: a model of fsync for real
files, under the runtime's write-ahead log.)
"""

from __future__ import annotations

import attrs

from trioraft.core.messages import Entry, HardState, SnapshotMeta
from trioraft.core.ready import Ready


@attrs.define
class RaftDisk:
    hard_state: HardState = attrs.field(factory=HardState)
    #: the snapshot the log starts after
    snapshot: SnapshotMeta | None = None
    #: the log entries after the snapshot, contiguous
    entries: list[Entry] = attrs.field(factory=list)

    @property
    def base(self) -> int:
        """The index the log starts after: the snapshot's, or 0."""
        return self.snapshot.index if self.snapshot else 0

    @property
    def last_index(self) -> int:
        return self.base + len(self.entries)

    def term(self, index: int) -> int | None:
        """The term of the entry at `index` (the snapshot's at its index), None if the disk
        holds no such entry."""
        if index == self.base:
            return self.snapshot.term if self.snapshot else 0
        offset = index - self.base - 1
        return self.entries[offset].term if 0 <= offset < len(self.entries) else None

    def entries_from(self, index: int) -> list[Entry]:
        """The entries at `index` and after."""
        return self.entries[max(index - self.base - 1, 0) :]

    def install(self, snapshot: SnapshotMeta) -> None:
        """A snapshot received from a leader replaces the whole log."""
        self.snapshot = snapshot
        self.entries = []

    def compact(self, snapshot: SnapshotMeta) -> None:
        """The node's own snapshot at an index it holds: the entries up to it go."""
        del self.entries[: snapshot.index - self.base]
        self.snapshot = snapshot

    def append(self, entries: list[Entry]) -> None:
        """Write `entries` over the log from their first index on (a conflict's entries are
        cut); ValueError if they would leave a gap or reach under the snapshot."""
        first = entries[0].index
        if first <= self.base or first > self.last_index + 1:
            raise ValueError(
                f"entries from {first} onto a disk holding {self.base + 1}..{self.last_index}"
            )
        del self.entries[first - self.base - 1 :]
        self.entries.extend(entries)

    def write(self, rd: Ready) -> None:
        """Make a Ready's snapshot, hard state and entries durable, in that order."""
        if rd.snapshot is not None:
            self.install(rd.snapshot)
        if rd.hard_state is not None:
            self.hard_state = rd.hard_state
        if rd.entries:
            self.append(rd.entries)
