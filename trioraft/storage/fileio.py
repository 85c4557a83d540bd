"""Small blocking file helpers shared by the storage modules.

Rules: a file made visible under its final name has been fsynced first (write to a temp
file, fsync, rename); after creating, renaming or deleting a directory entry, the
directory itself is fsynced so the change survives a power loss. Everything a data dir
holds is its owner's only: files FILE_MODE, directories DIR_MODE.

Every fsync of the storage package goes through `fsync_fd`, and so through the one
`Durability` in use: the operating system's, or (in tests) a model of a disk that records
what was made durable and forgets the rest at a simulated power loss.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from trioraft.storage.errors import FsyncError

#: the mode of every file in a data dir: the data is its owner's only
FILE_MODE = 0o600
#: the mode of a data dir and of the folders in it
DIR_MODE = 0o700


class Durability(Protocol):
    def fsync(self, fd: int, path: Path) -> None:
        """Make durable what was written to the open file or directory `fd` at `path`;
        raises OSError on failure."""


class SystemDurability:
    def fsync(self, fd: int, path: Path) -> None:
        os.fsync(fd)


_durability: Durability = SystemDurability()


@contextmanager
def durability(model: Durability) -> Iterator[None]:
    """Route every fsync of the storage package through `model` within the block."""
    global _durability
    previous, _durability = _durability, model
    try:
        yield
    finally:
        _durability = previous


def fsync_fd(fd: int, path: Path) -> None:
    """fsync an open file or directory; `path` names it (in the error, and to the model)."""
    try:
        _durability.fsync(fd, path)
    except OSError as e:
        raise FsyncError(f"{path}: fsync failed: {e}") from e


def fsync_dir(path: Path) -> None:
    """fsync a directory so that entries created or removed in it are durable."""
    _fsync_path(path, os.O_RDONLY | os.O_DIRECTORY, "directory")


def fsync_file(path: Path) -> None:
    """fsync a file that is not open (whoever wrote it may have crashed before fsync)."""
    _fsync_path(path, os.O_RDONLY, "file")


def _fsync_path(path: Path, flags: int, what: str) -> None:
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise FsyncError(f"{path}: cannot open the {what} to fsync it: {e}") from e
    try:
        fsync_fd(fd, path)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash leaves either the old or the new file."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        fsync_fd(fd, tmp)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)
