"""Durable storage of one node: the data dir's identity and lock, the write-ahead log,
snapshots, the startup check that they meet, and the offline check. All of it is blocking
code, for a worker thread."""

from trioraft.storage.check import CheckReport, check_data_dir
from trioraft.storage.datadir import DataDir
from trioraft.storage.errors import (
    ChunkOffsetError,
    CorruptionError,
    DataDirError,
    DataDirLocked,
    FsyncError,
    LogMismatchError,
    SnapshotTransferError,
    StaleSnapshotError,
    StorageError,
)
from trioraft.storage.replay import TornTail
from trioraft.storage.snapshots import SnapshotReader, SnapshotReceiver, SnapshotStore
from trioraft.storage.state import Restored, open_storage
from trioraft.storage.wal import DEFAULT_SEGMENT_BYTES, Recovery, WriteAheadLog

__all__ = [
    "DEFAULT_SEGMENT_BYTES",
    "CheckReport",
    "ChunkOffsetError",
    "CorruptionError",
    "DataDir",
    "DataDirError",
    "DataDirLocked",
    "FsyncError",
    "LogMismatchError",
    "Recovery",
    "Restored",
    "SnapshotReader",
    "SnapshotReceiver",
    "SnapshotStore",
    "SnapshotTransferError",
    "StaleSnapshotError",
    "StorageError",
    "TornTail",
    "WriteAheadLog",
    "check_data_dir",
    "open_storage",
]
