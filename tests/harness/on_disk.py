"""Reading a node's files as they lie on disk: the space they take and the records of a
write-ahead log segment (for tests that damage one)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def dir_bytes(path: Path) -> int:
    """The total size of the files under `path`; a file deleted meanwhile counts 0."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(folder, name)).st_size
    return total


#: the size of a WAL record header: payload length, its crc32, the payload's crc32
WAL_HEADER_BYTES = 12


def wal_records(segment: Path) -> list[tuple[int, int]]:
    """(offset, payload length) of each whole record of a WAL segment, read by the
    documented format (docs/data-format.md) without checking checksums."""
    data = segment.read_bytes()
    records = []
    offset = 0
    while offset + WAL_HEADER_BYTES <= len(data):
        length = int.from_bytes(data[offset : offset + 4], "little")
        if offset + WAL_HEADER_BYTES + length > len(data):
            break
        records.append((offset, length))
        offset += WAL_HEADER_BYTES + length
    return records
