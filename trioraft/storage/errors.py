"""The errors of the storage layer, all in one place.

Every error is a `StorageError`. Messages name the file (and, for damage, the byte offset)
so an operator can act on one line of log or `trioraft check` output.
"""

from __future__ import annotations

from pathlib import Path


class StorageError(Exception):
    """Something went wrong reading or writing a data dir."""


class DataDirError(StorageError):
    """The data dir cannot be used: it belongs to another node or cluster, has an unknown
    format, is not a trioraft data dir, or another process holds its lock."""


class DataDirLocked(DataDirError):
    """Another process holds the data dir's lock: it may be a node still stopping, so
    trying again later can succeed."""


class CorruptionError(StorageError):
    """A record of the write-ahead log is damaged somewhere other than a torn tail, or a
    snapshot file is damaged (`what` is then "snapshot").

    The node must not start: the damage may hide acknowledged entries, votes or state."""

    def __init__(self, path: Path, offset: int, reason: str, *, what: str = "record") -> None:
        super().__init__(f"{path}: damaged {what} at byte offset {offset}: {reason}")
        #: the damaged file
        self.path = path
        #: where the damaged record starts in `path`
        self.offset = offset
        #: what is wrong with it
        self.reason = reason


class FsyncError(StorageError):
    """An fsync failed. This is fatal: the kernel may have dropped the dirty pages, so what
    was written can no longer be trusted to be on disk; the log refuses further calls and
    the node must stop (a restart replays what did reach the disk)."""


class LogMismatchError(StorageError):
    """The newest snapshot and the write-ahead log do not meet: entries between the end
    of the snapshot and the start of the log are missing, or the log starts after index 1
    with no snapshot before it. The node must not start: it cannot rebuild its state."""


class StaleSnapshotError(StorageError):
    """A snapshot to write or receive is older than the newest one on disk: it would be
    deleted at once, and a node never goes back to an older snapshot."""


class SnapshotTransferError(StorageError):
    """A snapshot received from the leader cannot be accepted: more data than announced,
    fewer bytes than announced at the end, or a checksum that does not match."""


class ChunkOffsetError(SnapshotTransferError):
    """A chunk of a snapshot transfer does not start where the received data ends; the
    sender should resume from `expected`."""

    def __init__(self, path: Path, expected: int, offset: int) -> None:
        super().__init__(
            f"{path}: snapshot chunk at offset {offset}, but {expected} bytes were received: "
            f"the next chunk must start at offset {expected}"
        )
        #: the partial file
        self.path = path
        #: the bytes already received: where the next chunk must start
        self.expected = expected
        #: where the refused chunk started
        self.offset = offset
