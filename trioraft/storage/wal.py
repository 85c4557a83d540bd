"""The write-ahead log of one node: entries and hard state, in segment files.

Files (see docs/data-format.md): `wal/<sequence>.wal`, sixteen decimal digits, sequence
from 1; the record format is in records.py and the replay rules in replay.py.

Rules of operation:

- Writes go to the last segment (the active one). `append` and `set_hard_state` write
  their records with one write call each and do not fsync; `sync` fsyncs. Nothing may be
  acknowledged to anyone before `sync` returns.
- A segment that has reached `segment_bytes` is closed at the next write: it is fsynced
  before the next segment is created (so only the last segment can have a torn tail),
  the new file's directory entry is fsynced, and its first record is the current hard
  state (so deleting older segments never loses the term and vote).
- `compact(index)` deletes the oldest segments while every entry they hold is at most
  `index` or was forgotten by a later LOG_START, never the active one, after syncing the
  active one.
- `reset(index, term)` restarts the log after a snapshot covering (index, term), for a
  follower that installed a snapshot its log does not continue: it writes a LOG_START
  record (made durable by the next `sync`), after which replay forgets every earlier
  entry and the next append must be at index + 1.
- Any fsync or write failure is fatal: the log refuses every later call but `close`.
- Appends continue the log: the first index of a batch is at most one past the last
  index; a lower index replaces the log from there on, as replay does, but never at or
  before the index the log was last restarted after.

Threads: this is blocking code. `append`, `set_hard_state`, `reset`, `sync`, `compact`,
`close` and `open` are the write side: they make system calls and may block, so the
runtime calls them from a thread of their own (runtime/worker_thread.py). `hard_state`,
`last_index` and `path` are cheap attribute reads. An object must never be used from two
threads at once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import attrs

from trioraft.closing import ClosedOnExit
from trioraft.core.messages import Entry, HardState
from trioraft.storage.errors import FsyncError, StorageError
from trioraft.storage.fileio import DIR_MODE, FILE_MODE, fsync_dir, fsync_fd, fsync_file
from trioraft.storage.records import LogStart, encode_entries, encode_hard_state, encode_log_start
from trioraft.storage.replay import TornTail, replay, segment_name

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024


@attrs.frozen
class Recovery:
    """What `WriteAheadLog.open` found on disk."""

    #: the last hard state written (the zero value for a new log)
    hard_state: HardState
    #: the log after replaying truncations: consecutive indexes, oldest first; after
    #: compaction it may start anywhere at or below the compaction index plus one
    entries: list[Entry]
    #: (index, term) of the last LOG_START still on disk: the log restarts after it and
    #: `entries` begin at index + 1; None when there is none (never reset, or compacted)
    start: tuple[int, int] | None
    #: torn tails that were cut off (at most one, in the last segment)
    warnings: list[TornTail]


@attrs.define
class _Segment:
    #: the number in the file name
    sequence: int
    path: Path
    #: the highest entry index ever written to this segment, 0 if none; rewrites by later
    #: records do not lower it, so it is an upper bound of the live entries it holds
    max_index: int


class WriteAheadLog(ClosedOnExit):
    """An open write-ahead log; create one with `WriteAheadLog.open`."""

    def __init__(
        self,
        path: Path,
        *,
        fsync: bool,
        segment_bytes: int,
        segments: list[_Segment],
        fd: int,
        size: int,
        hard_state: HardState,
        last_index: int,
        start_index: int,
    ) -> None:
        #: the wal directory
        self.path = path
        #: whether sync() really fsyncs (false only for tests and throwaway clusters)
        self._fsync = fsync
        #: a segment that has reached this size gets no more records
        self._segment_bytes = segment_bytes
        #: every segment on disk, oldest first; the last is the active one
        self._segments = segments
        #: the active segment, open for appending
        self._fd = fd
        #: the active segment's size in bytes
        self._size = size
        #: whether bytes were written since the last fsync of the active segment
        self._dirty = False
        #: the last hard state written
        self._hard_state = hard_state
        #: the index of the last entry in the log, or the index the log restarts after
        #: while it holds no entry after that, 0 while the log is empty
        self._last_index = last_index
        #: the index the log was last restarted after (0: never); no append may reach it
        self._start_index = start_index
        #: the failure that made the log unusable, if any
        self._failed: StorageError | None = None
        self._closed = False

    @classmethod
    def open(
        cls, path: Path, *, fsync: bool = True, segment_bytes: int = DEFAULT_SEGMENT_BYTES
    ) -> tuple[WriteAheadLog, Recovery]:
        """Open (or create) the log in the directory `path`, replaying it; cut a torn
        tail; raise CorruptionError on damage before the tail."""
        if segment_bytes < 1:
            raise ValueError(f"segment_bytes must be positive, got {segment_bytes}")
        if not path.exists():
            path.mkdir(DIR_MODE, parents=True)
            if fsync:
                fsync_dir(path.parent)
        replayed = replay(path)
        torn = replayed.torn_tail
        if torn is not None:
            _cut(torn)
        segments = [_Segment(s.sequence, s.path, s.max_index) for s in replayed.segments]
        new_segment = not segments
        if new_segment:
            segments.append(_Segment(1, path / segment_name(1), 0))
        active = segments[-1]
        try:
            fd = os.open(active.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        except OSError as e:
            raise StorageError(f"{active.path}: cannot open for writing: {e}") from e
        size = os.fstat(fd).st_size
        entries = replayed.entries
        start = replayed.start
        start_index = 0 if start is None else start.index
        log = cls(
            path,
            fsync=fsync,
            segment_bytes=segment_bytes,
            segments=segments,
            fd=fd,
            size=size,
            hard_state=replayed.hard_state,
            last_index=entries[-1].index if entries else start_index,
            start_index=start_index,
        )
        try:
            if fsync:
                log._sync_recovered()
            if size == 0:
                log._write_raw(encode_hard_state(replayed.hard_state))
                log.sync()
        except BaseException:
            log.close()
            raise
        warnings = [] if torn is None else [torn]
        start_pair = None if start is None else (start.index, start.term)
        return log, Recovery(replayed.hard_state, entries, start_pair, warnings)

    @property
    def hard_state(self) -> HardState:
        """The last hard state written (cheap)."""
        return self._hard_state

    @property
    def last_index(self) -> int:
        """The index of the last entry written (after a `reset` with no append since, the
        index the log restarts after), 0 while the log is empty (cheap)."""
        return self._last_index

    def append(self, entries: Sequence[Entry]) -> None:
        """Write entries with consecutive indexes, starting at most one past the last
        index; a lower start replaces the log from there on, down to one past the index
        of the last `reset`. No fsync (write side)."""
        self._ensure_usable()
        if not entries:
            return
        first = entries[0].index
        if first < 1 or (self._last_index and first > self._last_index + 1):
            raise ValueError(
                f"entry index {first} does not continue a log ending at {self._last_index}"
            )
        if first <= self._start_index:
            raise ValueError(
                f"entry index {first} is at or before the log start at index {self._start_index}"
            )
        for offset, entry in enumerate(entries):
            if entry.index != first + offset:
                raise ValueError(f"entry index {entry.index} should be {first + offset}")
        self._write(encode_entries(entries))
        last = entries[-1].index
        active = self._segments[-1]
        active.max_index = max(active.max_index, last)
        self._last_index = last

    def set_hard_state(self, hard_state: HardState) -> None:
        """Write the hard state if it changed. No fsync (write side)."""
        self._ensure_usable()
        if hard_state == self._hard_state:
            return
        self._write(encode_hard_state(hard_state))
        self._hard_state = hard_state

    def reset(self, index: int, term: int) -> None:
        """Restart the log after (index, term), which a snapshot covers: every entry is
        forgotten and the next append must be at index + 1. Writes a LOG_START record; no
        fsync (write side). The segments before it hold only forgotten entries, so
        `compact` deletes them."""
        self._ensure_usable()
        record = encode_log_start(LogStart(index, term))
        self._write(record)
        for segment in self._segments[:-1]:
            segment.max_index = 0
        self._segments[-1].max_index = index
        self._last_index = index
        self._start_index = index

    def sync(self) -> None:
        """Make everything written so far durable; FsyncError on failure (write side)."""
        self._ensure_usable()
        if self._dirty and self._fsync:
            self._fsync_active()
        self._dirty = False

    def compact(self, index: int) -> int:
        """Delete the oldest segments while all their entries are at most `index` (or
        forgotten by a later `reset`), never the active one; return how many were deleted
        (write side). The active segment is synced first: its opening hard state record
        (and a LOG_START in it) must be durable before older copies of the hard state and
        the entries it forgets go."""
        self.sync()
        deleted = 0
        try:
            while len(self._segments) > 1 and self._segments[0].max_index <= index:
                segment = self._segments[0]
                try:
                    segment.path.unlink()
                except OSError as e:
                    raise StorageError(f"{segment.path}: cannot delete segment: {e}") from e
                del self._segments[0]
                deleted += 1
        finally:
            if deleted and self._fsync:
                self._fsync_dir()
        return deleted

    def start_segment(self) -> None:
        """Start a new segment now if the active one holds entries (write side), so that
        a later `compact` can delete what was written so far. Called after each
        compaction, it bounds what a restart replays to the log since about the
        compaction before last, rather than up to a whole segment."""
        self._ensure_usable()
        if self._segments[-1].max_index > 0:
            self._roll()

    def close(self) -> None:
        """Sync (unless the log failed) and close. Calling it again does nothing."""
        if self._closed:
            return
        try:
            if self._failed is None:
                self.sync()
        finally:
            self._closed = True
            os.close(self._fd)

    def _ensure_usable(self) -> None:
        if self._closed:
            raise StorageError(f"{self.path}: the write-ahead log is closed")
        if self._failed is not None:
            raise type(self._failed)(
                f"{self.path}: the write-ahead log refuses further calls after a failure: "
                f"{self._failed}"
            )

    def _write(self, blob: bytes) -> None:
        if self._size >= self._segment_bytes:
            self._roll()
        self._write_raw(blob)

    def _write_raw(self, blob: bytes) -> None:
        view = memoryview(blob)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as e:
            raise self._fail(StorageError(f"{self._segments[-1].path}: write failed: {e}")) from e
        self._size += len(blob)
        self._dirty = True

    def _roll(self) -> None:
        """Close the active segment durably and start the next one."""
        if self._dirty and self._fsync:
            self._fsync_active()
        sequence = self._segments[-1].sequence + 1
        path = self.path / segment_name(sequence)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except OSError as e:
            raise self._fail(StorageError(f"{path}: cannot create segment: {e}")) from e
        os.close(self._fd)
        self._fd = fd
        self._segments.append(_Segment(sequence, path, 0))
        self._size = 0
        self._dirty = False
        if self._fsync:
            self._fsync_dir()
        self._write_raw(encode_hard_state(self._hard_state))

    def _sync_recovered(self) -> None:
        """Make everything found on disk durable before the node acts on it: what a crash
        left may be in the page cache only, and a node must not acknowledge entries
        again, or grant a vote again, that a power loss would then erase. Syncs every
        segment (one written with fsync off, or before a crash, may not be), a torn tail's
        cut, the wal directory and the entry of the wal directory in its parent."""
        for segment in self._segments[:-1]:
            fsync_file(segment.path)
        self._fsync_active()
        self._fsync_dir()
        fsync_dir(self.path.parent)

    def _fsync_active(self) -> None:
        try:
            fsync_fd(self._fd, self._segments[-1].path)
        except FsyncError as e:
            self._fail(e)
            raise

    def _fsync_dir(self) -> None:
        try:
            fsync_dir(self.path)
        except FsyncError as e:
            self._fail(e)
            raise

    def _fail(self, error: StorageError) -> StorageError:
        """Make the log refuse all further calls but close; return `error` to raise."""
        self._failed = error
        return error


def _cut(torn: TornTail) -> None:
    """Truncate a segment at the start of its torn tail (`open` then syncs it)."""
    try:
        fd = os.open(torn.path, os.O_WRONLY)
    except OSError as e:
        raise StorageError(f"{torn.path}: cannot open to cut the torn tail: {e}") from e
    try:
        os.ftruncate(fd, torn.offset)
    except OSError as e:
        raise StorageError(f"{torn.path}: cannot cut the torn tail: {e}") from e
    finally:
        os.close(fd)
