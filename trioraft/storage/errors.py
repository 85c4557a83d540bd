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


class CorruptionError(StorageError):
    """A record of the write-ahead log is damaged somewhere other than a torn tail.

    The node must not start: the damage may hide acknowledged entries or votes."""

    def __init__(self, path: Path, offset: int, reason: str) -> None:
        super().__init__(f"{path}: damaged record at byte offset {offset}: {reason}")
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
