"""Durable storage of one node: the data dir's identity and lock, the write-ahead log,
and the offline check. All of it is blocking code, for a worker thread."""

from trioraft.storage.check import CheckReport, check_data_dir
from trioraft.storage.datadir import DataDir
from trioraft.storage.errors import CorruptionError, DataDirError, FsyncError, StorageError
from trioraft.storage.replay import TornTail
from trioraft.storage.wal import DEFAULT_SEGMENT_BYTES, Recovery, WriteAheadLog

__all__ = [
    "DEFAULT_SEGMENT_BYTES",
    "CheckReport",
    "CorruptionError",
    "DataDir",
    "DataDirError",
    "FsyncError",
    "Recovery",
    "StorageError",
    "TornTail",
    "WriteAheadLog",
    "check_data_dir",
]
