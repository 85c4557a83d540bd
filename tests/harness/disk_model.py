"""A model of a disk that keeps only what was fsynced, for power-loss tests of real storage.

Theory of operation. The model is installed as the storage package's `Durability`
(`trioraft.storage.fileio.durability`), so it sees every fsync storage makes; the files
themselves are real, in a temp dir, and reads see the page cache as usual. An fsync of a
file records the file's bytes at that moment as durable (keyed by inode, since a rename
moves the same file); an fsync of a directory records its entries (name -> inode) as
durable. Whatever was present when the model was attached counts as durable.

`power_loss(dir)` freezes what a power loss at this instant would leave of the files under
`dir`; `restore()` then rewrites the directory to exactly that once its owner has stopped:
- an entry not recorded by its directory's last fsync is gone (a file created or renamed
  into place without the directory fsync), and a recorded entry deleted since comes back;
- a file holds the bytes of its last fsync (none: empty), plus, with `torn`, a random
  prefix of what was written after it (a torn write of the tail).
After the restore the disk is wholly durable again.

`durable_files(dir)` gives the durable image of a directory's files, for checks of what a
process has promised.
"""

from __future__ import annotations

import os
import random
import shutil
import stat
from pathlib import Path

import attrs


@attrs.frozen
class _Frozen:
    """What survives a power loss of `root`: per directory, its durable entries with the
    bytes each file keeps."""

    root: Path
    #: directory -> name -> file bytes (None: a subdirectory)
    dirs: dict[Path, dict[str, bytes | None]]


class DiskModel:
    def __init__(self, root: Path, rng: random.Random) -> None:
        self.root = root
        self.rng = rng
        #: inode -> the bytes of the file at its last fsync
        self._content: dict[int, bytes] = {}
        #: directory -> name -> inode, as of the directory's last fsync
        self._entries: dict[Path, dict[str, int]] = {}
        #: bumped at every fsync, so callers can cache what they derive from durable state
        self.version = 0
        self._frozen: list[_Frozen] = []
        self._all_durable(root)

    # --- the Durability protocol -------------------------------------------------------

    def fsync(self, fd: int, path: Path) -> None:
        info = os.fstat(fd)
        self.version += 1
        if stat.S_ISDIR(info.st_mode):
            entries = {e.name: e.inode() for e in os.scandir(path)}
            before = self._entries.get(Path(path), {})
            for name, inode in entries.items():
                if before.get(name) != inode:
                    self._forget_reused_inode(Path(path) / name, inode)
            self._entries[Path(path)] = entries
        else:
            assert os.stat(path).st_ino == info.st_ino, f"{path} moved before its fsync"
            self._content[info.st_ino] = Path(path).read_bytes()

    def _forget_reused_inode(self, path: Path, inode: int) -> None:
        """`path` is new to its directory. Its inode may be one a deleted file had (a WAL
        segment removed by compaction, say): bytes recorded for that inode are the deleted
        file's, unless the new file still begins with them (written and fsynced, then
        renamed into place)."""
        recorded = self._content.get(inode)
        if recorded is not None and path.is_file() and not path.read_bytes().startswith(recorded):
            del self._content[inode]

    # --- power loss ----------------------------------------------------------------------

    def power_loss(self, root: Path, *, torn: bool = True) -> None:
        """Freeze what a power loss now would leave under `root` (restored by `restore`)."""
        dirs: dict[Path, dict[str, bytes | None]] = {}
        for directory in [root, *(p for p in root.rglob("*") if p.is_dir())]:
            dirs[directory] = self._surviving(directory, torn)
        self._frozen.append(_Frozen(root, dirs))

    def restore(self) -> None:
        """Rewrite every frozen directory to what survived (its owner must have stopped)."""
        for frozen in self._frozen:
            shutil.rmtree(frozen.root)
            self._rebuild(frozen.root, frozen.dirs)
            self._all_durable(frozen.root)
        self._frozen.clear()

    def durable_files(self, directory: Path) -> dict[str, bytes]:
        """The files of `directory` as a power loss now would leave them (not torn)."""
        return {
            name: data
            for name, data in self._surviving(directory, torn=False).items()
            if data is not None
        }

    def _surviving(self, directory: Path, torn: bool) -> dict[str, bytes | None]:
        entries = self._entries.get(directory, {})
        current = {e.name: e for e in os.scandir(directory)} if directory.exists() else {}
        kept: dict[str, bytes | None] = {}
        for name, inode in entries.items():
            entry = current.get(name)
            if entry is not None and entry.is_dir():
                kept[name] = None
                continue
            data = self._content.get(inode, b"")
            if torn and entry is not None and entry.inode() == inode:
                now = Path(entry.path).read_bytes()
                if len(now) > len(data) and now.startswith(data):
                    data = now[: self.rng.randint(len(data), len(now))]
            kept[name] = data
        return kept

    def _rebuild(self, directory: Path, dirs: dict[Path, dict[str, bytes | None]]) -> None:
        directory.mkdir()
        for name, data in dirs.get(directory, {}).items():
            if data is None:
                self._rebuild(directory / name, dirs)
            else:
                (directory / name).write_bytes(data)

    def _all_durable(self, root: Path) -> None:
        for directory in [root, *(p for p in root.rglob("*") if p.is_dir())]:
            self._entries[directory] = {}
            for entry in os.scandir(directory):
                self._entries[directory][entry.name] = entry.inode()
                if entry.is_file():
                    self._content[entry.inode()] = Path(entry.path).read_bytes()
