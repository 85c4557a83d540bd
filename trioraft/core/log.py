"""The in-memory Raft log of one node.

The log holds the entries after the last snapshot. It always has a first index and the
term before it (`snapshot_index`, `snapshot_term`), from the very start (both 0 for an
empty log), so compaction and snapshot installation need no special cases.

Rules:
- entries are contiguous: entries[k].index == snapshot_index + 1 + k;
- an entry is only ever removed from the tail (a conflict) or the head (compaction);
- `unstable_from` is the first index not yet handed to the runtime for persisting:
  appending or truncating at i moves it down to i.
"""

from __future__ import annotations

from collections.abc import Sequence

from trioraft.core.messages import Entry


class RaftLog:
    def __init__(self, snapshot_index: int = 0, snapshot_term: int = 0) -> None:
        #: the index of the last entry folded into a snapshot (0: none)
        self.snapshot_index = snapshot_index
        #: the term of the entry at snapshot_index
        self.snapshot_term = snapshot_term
        #: entries snapshot_index+1 .. last_index, in order
        self.entries: list[Entry] = []
        #: the first index the runtime has not been given to persist yet
        self.unstable_from = snapshot_index + 1

    @property
    def first_index(self) -> int:
        return self.snapshot_index + 1

    @property
    def last_index(self) -> int:
        return self.snapshot_index + len(self.entries)

    @property
    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snapshot_term

    def term(self, index: int) -> int | None:
        """The term at `index`, or None when the log does not know it (compacted or
        beyond the end)."""
        if index == self.snapshot_index:
            return self.snapshot_term
        offset = index - self.snapshot_index - 1
        if 0 <= offset < len(self.entries):
            return self.entries[offset].term
        return None

    def entry(self, index: int) -> Entry:
        return self.entries[index - self.snapshot_index - 1]

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries lo .. hi-1 (clamped to what the log holds)."""
        base = self.snapshot_index + 1
        return self.entries[max(lo - base, 0) : max(hi - base, 0)]

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Whether a log ending at (last_index, last_term) is at least as up to date as
        this one (Raft section 5.4.1)."""
        return (last_term, last_index) >= (self.last_term, self.last_index)

    def append(self, entries: Sequence[Entry]) -> None:
        """Append entries that follow the last one directly (the leader's path)."""
        if entries:
            assert entries[0].index == self.last_index + 1, "log append out of order"
            self.entries.extend(entries)

    def merge(self, prev_index: int, entries: Sequence[Entry]) -> int | None:
        """Merge entries from a leader that follow prev_index, which is known to match.

        Entries already present with the same term are kept; at the first conflict the
        tail is cut and the rest appended. Returns the index of the first entry cut
        (None when nothing was cut)."""
        truncated_at: int | None = None
        last = self.last_index
        for k, entry in enumerate(entries):
            index = prev_index + 1 + k
            if index <= self.snapshot_index:
                continue  # already folded into the snapshot, so committed and equal
            if index > last:
                self.append(entries[k:])
                break
            if self.term(index) != entry.term:
                del self.entries[index - self.snapshot_index - 1 :]
                truncated_at = index
                self.unstable_from = min(self.unstable_from, index)
                self.append(entries[k:])
                break
        return truncated_at

    def take_unstable(self) -> list[Entry]:
        """The entries the runtime has not yet been given to persist; marks them given."""
        out = self.slice(self.unstable_from, self.last_index + 1)
        self.unstable_from = self.last_index + 1
        return out

    def compact(self, index: int) -> None:
        """Drop the entries up to and including `index` (they are in a snapshot)."""
        if index <= self.snapshot_index:
            return
        term = self.term(index)
        assert term is not None, "compaction beyond the end of the log"
        del self.entries[: index - self.snapshot_index]
        self.snapshot_index, self.snapshot_term = index, term

    def reset(self, snapshot_index: int, snapshot_term: int) -> None:
        """Replace the whole log by a snapshot ending at (snapshot_index, snapshot_term)."""
        self.entries = []
        self.snapshot_index, self.snapshot_term = snapshot_index, snapshot_term
        self.unstable_from = snapshot_index + 1
