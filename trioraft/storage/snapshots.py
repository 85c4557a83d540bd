"""Snapshots of the state machine, in `<data dir>/snap/` (see docs/data-format.md).

Files, where `<index>` and `<term>` are twenty decimal digits each, so that sorting the
names sorts the snapshots, oldest first:

- `<index>-<term>.snap`: a complete snapshot; the newest is the one in use.
- `<index>-<term>.snap.tmp`: a snapshot being written by `SnapshotStore.write`.
- `<index>-<term>.snap.part`: a snapshot being received from the leader by a
  `SnapshotReceiver`; it is laid out as the final file, header first, so finishing it is a
  rename. At most one exists: starting a receiver for another snapshot removes the others.

Other names in the directory are ignored.

File format: a header, then the data (the state machine's serialized state, opaque here).
Integers are little-endian; crc32 is zlib's (IEEE 802.3 polynomial):

    offset  size  field
    0       8     magic b"TRIOSNAP"
    8       4     format version (u32): 2
    12      4     header length h (u32), the header checksum included
    16      8     index (u64): the last log index the snapshot covers, at least 1
    24      8     term (u64): the term of the entry at index
    32      8     data length n (u64)
    40      4     crc32 of the data (u32)
    44      ...   the configuration as of index, as a configuration entry holds it
                  (core/membership.py: msgpack of the voters, the learners, and each
                  member's id, peer address and client address)
    h - 4   4     crc32 of header bytes 0 .. h - 4 (u32)
    h       n     data

Version 1 files (written before the configuration carried addresses) still load: from
offset 44 they have the number of voters v (u32) and of learners l (u32), then the v
voter ids and the l learner ids, each its length (u16) then its UTF-8 bytes; their
configuration has no addresses (the log's next configuration entry brings them).

The file is exactly h + n bytes long, and its header's (index, term) is its name's.

Rules:

- `write` writes the temp file, fsyncs it, renames it to its final name and fsyncs the
  directory; only then are the snapshots beyond the newest `keep` deleted (and the
  directory fsynced). A receiver's `finish` does the same with its partial file once the
  size and the checksum match what the leader announced.
- A crash at any step leaves either the old set of snapshots or the old set plus the new
  complete one: temp and partial files are never read as snapshots, and opening the store
  removes them (a partial transfer starts over after a restart: its bytes were never
  fsynced) and deletes snapshots beyond `keep` that a crash left behind.
- Damage raises `CorruptionError` naming the file and byte offset: the header's offset 0
  for a header checksum mismatch, the field's offset for a header that makes no sense, the
  data's offset h for a data checksum mismatch, and where the file ends early or where
  unexpected bytes begin for a file of the wrong size. An unknown format version with an
  intact header raises `DataDirError`.
- A snapshot older (by index, then term) than the newest on disk is refused with
  StaleSnapshotError, when it is written or received and again before a received one is
  installed: it would be pruned at once. Writing the newest one again replaces it.

Threads: this is blocking code for worker threads. A store and each reader or receiver
must not be used from two threads at once; readers are independent of the store (each
holds its file open, so pruning does not disturb a transfer in progress).
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType

import attrs
import msgpack  # type: ignore[import-untyped]

from trioraft.closing import ClosedOnExit
from trioraft.core.membership import decode_members, encode_members
from trioraft.core.messages import Members, SnapshotMeta
from trioraft.storage.errors import (
    ChunkOffsetError,
    CorruptionError,
    DataDirError,
    SnapshotTransferError,
    StaleSnapshotError,
    StorageError,
)
from trioraft.storage.fileio import DIR_MODE, FILE_MODE, fsync_dir, fsync_fd

MAGIC = b"TRIOSNAP"
FORMAT_VERSION = 2
SNAPSHOT_SUFFIX = ".snap"
TEMP_SUFFIX = ".snap.tmp"
PART_SUFFIX = ".snap.part"

_DIGITS = 20
#: magic, format version, header length, index, term, data length, data crc
_FIXED = struct.Struct("<8sIIQQQI")
_CRC = struct.Struct("<I")
#: version 1: the numbers of voters and learners, then each id after its length
_V1_COUNTS = struct.Struct("<II")
_ID_LENGTH = struct.Struct("<H")
_MIN_HEADER = _FIXED.size + _CRC.size
#: a header longer than this is damage (member ids are short)
_MAX_HEADER = 1 << 20
#: how much is read at a time when checksumming data on disk
_CHUNK = 1 << 20
#: offsets of header fields named in damage reports
_OFFSET_HEADER_LENGTH = 12
_OFFSET_INDEX = 16
_OFFSET_MEMBERS = 44


def snapshot_name(index: int, term: int) -> str:
    """The file name of the snapshot covering the log up to (index, term)."""
    return f"{index:0{_DIGITS}d}-{term:0{_DIGITS}d}{SNAPSHOT_SUFFIX}"


def _parse_name(name: str) -> tuple[int, int] | None:
    """(index, term) of a snapshot file name, None for any other name."""
    if not name.endswith(SNAPSHOT_SUFFIX):
        return None
    index, dash, term = name.removesuffix(SNAPSHOT_SUFFIX).partition("-")
    if not dash or len(index) != _DIGITS or len(term) != _DIGITS:
        return None
    if not (index.isdigit() and term.isdigit() and index.isascii() and term.isascii()):
        return None
    return int(index), int(term)


@attrs.frozen
class SnapshotFile:
    """A complete snapshot file, as listed by its name."""

    index: int
    term: int
    path: Path


def list_snapshots(path: Path) -> list[SnapshotFile]:
    """The snapshot files in the directory `path`, oldest first; a missing directory
    holds none. Reads names only."""
    if not path.exists():
        return []
    found: list[SnapshotFile] = []
    for file in path.iterdir():
        parsed = _parse_name(file.name)
        if parsed is not None and file.is_file():
            found.append(SnapshotFile(parsed[0], parsed[1], file))
    found.sort(key=lambda f: (f.index, f.term))
    return found


@attrs.frozen
class SnapshotHeader:
    """A snapshot file's header, checked."""

    meta: SnapshotMeta
    #: the data's length in bytes
    size: int
    #: crc32 of the data
    crc: int
    #: the header's length: where the data starts in the file
    data_offset: int


def encode_header(meta: SnapshotMeta, size: int, crc: int) -> bytes:
    """The header of a snapshot file holding `size` bytes of data with checksum `crc`."""
    if meta.index < 1 or meta.term < 0:
        raise ValueError(f"no snapshot can end at index {meta.index}, term {meta.term}")
    members = encode_members(meta.members)
    length = _MIN_HEADER + len(members)
    fixed = _FIXED.pack(MAGIC, FORMAT_VERSION, length, meta.index, meta.term, size, crc)
    body = fixed + members
    return body + _CRC.pack(zlib.crc32(body))


def _damage(path: Path, offset: int, reason: str) -> CorruptionError:
    return CorruptionError(path, offset, reason, what="snapshot")


def _pread_exactly(fd: int, size: int, offset: int, path: Path) -> bytes:
    """`size` bytes at `offset`, or fewer only where the file ends."""
    parts: list[bytes] = []
    try:
        while size > 0:
            part = os.pread(fd, min(size, 1 << 30), offset)
            if not part:
                break
            parts.append(part)
            size -= len(part)
            offset += len(part)
    except OSError as e:
        raise StorageError(f"{path}: read failed: {e}") from e
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _write_all(fd: int, data: bytes, path: Path) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError as e:
        raise StorageError(f"{path}: write failed: {e}") from e


def _pwrite_all(fd: int, data: bytes, offset: int, path: Path) -> None:
    view = memoryview(data)
    try:
        while view:
            written = os.pwrite(fd, view, offset)
            view = view[written:]
            offset += written
    except OSError as e:
        raise StorageError(f"{path}: write failed: {e}") from e


def _open_read(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY)
    except OSError as e:
        raise StorageError(f"{path}: cannot open the snapshot: {e}") from e


def _read_header(path: Path, fd: int) -> SnapshotHeader:
    """Read and check the header of the snapshot file open as `fd`, and that the file is
    as long as the header says; raise CorruptionError on damage."""
    file_size = os.fstat(fd).st_size
    if file_size < _MIN_HEADER:
        raise _damage(path, 0, f"file of {file_size} bytes is too short for a snapshot header")
    fixed = _pread_exactly(fd, _FIXED.size, 0, path)
    magic, version, length, index, term, size, crc = _FIXED.unpack(fixed)
    if magic != MAGIC:
        raise _damage(path, 0, "not a snapshot: wrong magic bytes")
    if not _MIN_HEADER <= length <= min(file_size, _MAX_HEADER):
        raise _damage(
            path,
            _OFFSET_HEADER_LENGTH,
            f"impossible header length {length} (the file has {file_size} bytes)",
        )
    header = _pread_exactly(fd, length, 0, path)
    (stored_crc,) = _CRC.unpack_from(header, length - _CRC.size)
    if zlib.crc32(memoryview(header)[: length - _CRC.size]) != stored_crc:
        raise _damage(path, 0, "header checksum mismatch")
    read_members = _MEMBERS_BY_VERSION.get(version)
    if read_members is None:
        raise DataDirError(
            f"{path}: snapshot format version {version} is not supported "
            f"(this trioraft reads versions 1 to {FORMAT_VERSION}): a newer trioraft wrote it"
        )
    if index < 1:
        raise _damage(path, _OFFSET_INDEX, "snapshot index 0")
    meta = SnapshotMeta(index, term, read_members(path, header, length - _CRC.size))
    named = _parse_name(path.name)
    if named is not None and named != (index, term):
        raise _damage(
            path,
            _OFFSET_INDEX,
            f"the header says index {index}, term {term} but the file name says "
            f"index {named[0]}, term {named[1]}",
        )
    if file_size < length + size:
        raise _damage(path, file_size, f"the data ends after {file_size - length} of {size} bytes")
    if file_size > length + size:
        raise _damage(
            path, length + size, f"{file_size - length - size} bytes follow the end of the data"
        )
    return SnapshotHeader(meta, size, crc, length)


def _members(path: Path, header: bytes, end: int) -> Members:
    try:
        return decode_members(header[_OFFSET_MEMBERS:end])
    except (ValueError, msgpack.UnpackException) as exc:
        raise _damage(path, _OFFSET_MEMBERS, f"unreadable configuration: {exc}") from None


def _members_v1(path: Path, header: bytes, end: int) -> Members:
    """The configuration of a version 1 header: ids only."""
    start = _OFFSET_MEMBERS + _V1_COUNTS.size
    if end < start:
        raise _damage(path, _OFFSET_MEMBERS, "the header ends before the member counts")
    voters, learners = _V1_COUNTS.unpack_from(header, _OFFSET_MEMBERS)
    ids: list[str] = []
    offset = start
    for _ in range(voters + learners):
        if offset + _ID_LENGTH.size > end:
            raise _damage(path, _OFFSET_MEMBERS, "the member ids run past the header's end")
        (n,) = _ID_LENGTH.unpack_from(header, offset)
        start = offset + _ID_LENGTH.size
        if start + n > end:
            raise _damage(path, _OFFSET_MEMBERS, "the member ids run past the header's end")
        try:
            ids.append(header[start : start + n].decode("utf-8"))
        except UnicodeDecodeError:
            raise _damage(path, offset, "a member id is not UTF-8") from None
        offset = start + n
    if offset != end:
        raise _damage(path, offset, f"{end - offset} unexpected bytes after the member ids")
    return Members(frozenset(ids[:voters]), frozenset(ids[voters:]))


#: how each format version stores the configuration
_MEMBERS_BY_VERSION: dict[int, Callable[[Path, bytes, int], Members]] = {
    1: _members_v1,
    FORMAT_VERSION: _members,
}


def _data_crc(path: Path, fd: int, start: int, size: int) -> int:
    """crc32 of `size` bytes of the file from `start`, read a chunk at a time."""
    crc = 0
    end = start + size
    while start < end:
        chunk = _pread_exactly(fd, min(_CHUNK, end - start), start, path)
        if not chunk:
            raise StorageError(f"{path}: the file shrank while it was read")
        crc = zlib.crc32(chunk, crc)
        start += len(chunk)
    return crc


def _check_data(path: Path, header: SnapshotHeader, crc: int) -> None:
    if crc != header.crc:
        raise _damage(
            path,
            header.data_offset,
            f"data checksum mismatch (the {header.size} bytes of data from this offset)",
        )


def read_header(path: Path) -> SnapshotHeader:
    """Check and return the header of the snapshot file `path` (cheap: the data is not
    read, only its length checked)."""
    fd = _open_read(path)
    try:
        return _read_header(path, fd)
    finally:
        os.close(fd)


def verify_snapshot(path: Path) -> SnapshotHeader:
    """Check the snapshot file `path` whole, header and data, reading the data a chunk at
    a time; raise CorruptionError on damage."""
    fd = _open_read(path)
    try:
        header = _read_header(path, fd)
        _check_data(path, header, _data_crc(path, fd, header.data_offset, header.size))
    finally:
        os.close(fd)
    return header


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        raise StorageError(f"{path}: cannot delete: {e}") from e


class SnapshotStore:
    """The snapshots of one node in the directory `path` (created if missing). Opening it
    removes the temp and partial files a crash left and snapshots beyond `keep`."""

    def __init__(self, path: Path, *, fsync: bool = True, keep: int = 2) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        #: the snap directory
        self.path = path
        #: how many snapshots stay on disk, the newest included
        self.keep = keep
        #: whether files and the directory are fsynced (false only for tests and
        #: throwaway clusters)
        self._fsync = fsync
        if not path.exists():
            try:
                path.mkdir(DIR_MODE, parents=True)
            except OSError as e:
                raise StorageError(f"{path}: cannot create the snapshot directory: {e}") from e
            if fsync:
                fsync_dir(path.parent)
        leftovers = [p for p in path.iterdir() if p.name.endswith((TEMP_SUFFIX, PART_SUFFIX))]
        for leftover in leftovers:
            _remove(leftover)
        if fsync:
            # a snapshot renamed into place just before a crash may have its directory
            # entry in the page cache only: make it durable before the log is cut for it
            fsync_dir(path)
        self._prune()

    def latest(self) -> SnapshotMeta | None:
        """The newest snapshot's metadata, None when there is none. Cheap: reads only the
        header (its checksum is checked, and the file's length)."""
        listed = list_snapshots(self.path)
        return read_header(listed[-1].path).meta if listed else None

    def load_latest(self) -> tuple[SnapshotMeta, bytes] | None:
        """The newest snapshot and its data, None when there is none; the data's
        checksum is checked (CorruptionError names the file and offset)."""
        listed = list_snapshots(self.path)
        return self.load(listed[-1].path) if listed else None

    def load(self, path: Path) -> tuple[SnapshotMeta, bytes]:
        """The snapshot in the file `path` (as returned by `write` or `finish`) and its
        data, checksum checked."""
        try:
            with path.open("rb") as f:
                header = _read_header(path, f.fileno())
                f.seek(header.data_offset)
                data = f.read(header.size)
        except OSError as e:
            raise StorageError(f"{path}: cannot read the snapshot: {e}") from e
        if len(data) != header.size:
            raise StorageError(f"{path}: the file shrank while it was read")
        _check_data(path, header, zlib.crc32(data))
        return header.meta, data

    def write(self, meta: SnapshotMeta, data: bytes | Iterable[bytes]) -> Path:
        """Store a snapshot whose data is `data` or the concatenation of its chunks
        (checksummed while it is written); return the file. Durable when it returns;
        then the snapshots beyond `keep` are deleted."""
        self.refuse_stale(meta)
        final = self.path / snapshot_name(meta.index, meta.term)
        temp = final.with_name(final.name.removesuffix(SNAPSHOT_SUFFIX) + TEMP_SUFFIX)
        placeholder = encode_header(meta, 0, 0)
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        except OSError as e:
            raise StorageError(f"{temp}: cannot create: {e}") from e
        try:
            _write_all(fd, placeholder, temp)
            size = 0
            crc = 0
            for chunk in (data,) if isinstance(data, bytes) else data:
                _write_all(fd, chunk, temp)
                crc = zlib.crc32(chunk, crc)
                size += len(chunk)
            _pwrite_all(fd, encode_header(meta, size, crc), 0, temp)
            self.sync_file(fd, temp)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        os.close(fd)
        self.install(temp, final)
        return final

    def open_reader(self, meta: SnapshotMeta) -> SnapshotReader:
        """A reader of the data of the snapshot `meta` (which must be on disk), to stream
        it to a follower; its header is checked."""
        path = self.path / snapshot_name(meta.index, meta.term)
        fd = _open_read(path)
        try:
            header = _read_header(path, fd)
            if header.meta != meta:
                raise StorageError(
                    f"{path}: holds the members {header.meta.members}, not {meta.members}"
                )
        except BaseException:
            os.close(fd)
            raise
        return SnapshotReader(path, fd, header)

    def receiver(self, meta: SnapshotMeta, total_size: int, crc: int) -> SnapshotReceiver:
        """Receive the snapshot `meta`, of `total_size` bytes with crc32 `crc`, from the
        leader in chunks. A partial file of the same snapshot, size and checksum left by
        an aborted receiver is continued (`received` says from where); partial files of
        other snapshots are removed."""
        self.refuse_stale(meta)
        if total_size < 0 or not 0 <= crc <= 0xFFFFFFFF:
            raise ValueError(f"impossible snapshot size {total_size} or checksum {crc}")
        name = snapshot_name(meta.index, meta.term).removesuffix(SNAPSHOT_SUFFIX)
        part = self.path / (name + PART_SUFFIX)
        for other in self.path.iterdir():
            if other.name.endswith(PART_SUFFIX) and other != part:
                _remove(other)
        header = encode_header(meta, total_size, crc)
        try:
            fd = os.open(part, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except OSError as e:
            raise StorageError(f"{part}: cannot open: {e}") from e
        try:
            existing = os.fstat(fd).st_size
            resumable = (
                len(header) <= existing <= len(header) + total_size
                and _pread_exactly(fd, len(header), 0, part) == header
            )
            if resumable:
                received = existing - len(header)
                running = _data_crc(part, fd, len(header), received)
            else:
                os.ftruncate(fd, 0)
                _pwrite_all(fd, header, 0, part)
                received = running = 0
        except OSError as e:
            os.close(fd)
            raise StorageError(f"{part}: cannot prepare the partial snapshot: {e}") from e
        except BaseException:
            os.close(fd)
            raise
        return SnapshotReceiver(
            self, part, fd, meta, total_size, crc, len(header), received, running
        )

    def refuse_stale(self, meta: SnapshotMeta) -> None:
        """Raise StaleSnapshotError when `meta` is older than the newest snapshot here."""
        listed = list_snapshots(self.path)
        if listed and (meta.index, meta.term) < (listed[-1].index, listed[-1].term):
            raise StaleSnapshotError(
                f"{self.path}: the snapshot at index {meta.index}, term {meta.term} is older "
                f"than the newest on disk, {listed[-1].path.name}"
            )

    def sync_file(self, fd: int, path: Path) -> None:
        """fsync the snapshot file `path`, open as `fd` (unless the store does not fsync)."""
        if self._fsync:
            fsync_fd(fd, path)

    def install(self, temp: Path, final: Path) -> None:
        """Rename a complete, fsynced temp or partial file to its final name, durably,
        then delete the snapshots beyond `keep`."""
        try:
            os.replace(temp, final)
        except OSError as e:
            raise StorageError(f"{temp}: cannot rename to {final.name}: {e}") from e
        if self._fsync:
            fsync_dir(self.path)
        self._prune()

    def _prune(self) -> None:
        listed = list_snapshots(self.path)
        doomed = listed[: max(0, len(listed) - self.keep)]
        for snapshot in doomed:
            _remove(snapshot.path)
        if doomed and self._fsync:
            fsync_dir(self.path)


class SnapshotReader(ClosedOnExit):
    """Reads the data of one snapshot by offset; create one with
    `SnapshotStore.open_reader`, and close it. Reading the data in order from offset 0 to
    the end checks its checksum on the way (CorruptionError at the last chunk)."""

    def __init__(self, path: Path, fd: int, header: SnapshotHeader) -> None:
        #: the snapshot file
        self.path = path
        #: the snapshot
        self.meta = header.meta
        #: the data's length in bytes
        self.size = header.size
        #: crc32 of the data, for the receiver to check
        self.crc = header.crc
        self._header = header
        self._fd = fd
        #: how far the data was read in order from 0, and its checksum so far
        self._checked = 0
        self._running = 0

    def read(self, offset: int, size: int) -> bytes:
        """Up to `size` bytes of data from `offset` (fewer only at the end; empty at the
        end)."""
        if self._fd < 0:
            raise StorageError(f"{self.path}: the snapshot reader is closed")
        if not 0 <= offset <= self.size or size < 0:
            raise ValueError(f"cannot read {size} bytes at offset {offset} of {self.size}")
        want = min(size, self.size - offset)
        chunk = _pread_exactly(self._fd, want, self._header.data_offset + offset, self.path)
        if len(chunk) != want:
            raise StorageError(f"{self.path}: the file shrank while it was read")
        if offset == self._checked and chunk:
            self._running = zlib.crc32(chunk, self._running)
            self._checked += len(chunk)
            if self._checked == self.size:
                _check_data(self.path, self._header, self._running)
        return chunk

    def close(self) -> None:
        """Close the file. Calling it again does nothing."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class SnapshotReceiver:
    """A snapshot arriving from the leader in chunks; create one with
    `SnapshotStore.receiver`. Used as a context manager, it aborts unless finished."""

    def __init__(
        self,
        store: SnapshotStore,
        path: Path,
        fd: int,
        meta: SnapshotMeta,
        total_size: int,
        crc: int,
        data_offset: int,
        received: int,
        running: int,
    ) -> None:
        self._store = store
        #: the partial file
        self.path = path
        #: the snapshot being received
        self.meta = meta
        #: the data's announced length and crc32
        self.total_size = total_size
        self.crc = crc
        self._fd = fd
        self._data_offset = data_offset
        self._received = received
        #: crc32 of the data received so far
        self._running = running

    @property
    def received(self) -> int:
        """How many bytes of data are already there: the offset of the next chunk."""
        return self._received

    def write(self, offset: int, chunk: bytes) -> None:
        """Add a chunk; `offset` must equal `received` (else ChunkOffsetError), and the
        data may not grow past the announced size (else SnapshotTransferError)."""
        self._ensure_open()
        if offset != self._received:
            raise ChunkOffsetError(self.path, self._received, offset)
        if offset + len(chunk) > self.total_size:
            raise SnapshotTransferError(
                f"{self.path}: a chunk of {len(chunk)} bytes at offset {offset} runs past "
                f"the announced size of {self.total_size} bytes"
            )
        _pwrite_all(self._fd, chunk, self._data_offset + offset, self.path)
        self._running = zlib.crc32(chunk, self._running)
        self._received += len(chunk)

    def finish(self) -> Path:
        """Check the size and checksum, make the snapshot durable under its final name,
        delete the snapshots beyond `keep`, and return the file. A checksum mismatch
        removes the partial file (a retry starts over); a missing tail keeps it."""
        self._ensure_open()
        if self._received != self.total_size:
            raise SnapshotTransferError(
                f"{self.path}: only {self._received} of {self.total_size} bytes received"
            )
        if self._running != self.crc:
            self.abort()
            _remove(self.path)
            raise SnapshotTransferError(
                f"{self.path}: data checksum {self._running:08x} does not match the "
                f"announced {self.crc:08x}; the partial snapshot was removed"
            )
        self._store.refuse_stale(self.meta)
        self._store.sync_file(self._fd, self.path)
        self.abort()
        final = self.path.with_name(self.path.name.removesuffix(PART_SUFFIX) + SNAPSHOT_SUFFIX)
        self._store.install(self.path, final)
        return final

    def abort(self) -> None:
        """Stop receiving and close the file, keeping what arrived so that a receiver for
        the same snapshot continues from there. Calling it again does nothing."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _ensure_open(self) -> None:
        if self._fd < 0:
            raise StorageError(f"{self.path}: the snapshot receiver is closed")

    def __enter__(self) -> SnapshotReceiver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort()
