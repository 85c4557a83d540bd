"""Backups of a running cluster (`trioraft backup`) and new clusters from them
(`trioraft restore`).

A backup file is a snapshot file (storage/snapshots.py, docs/data-format.md): a header
naming the index and term it ends at, the members of the cluster it came from, the
data's length and crc32, with a header checksum; then the replicated state serialized as
a snapshot serializes it. So `verify_snapshot` checks a backup whole, and names the byte
offset of any damage or of where a truncated one ends.

Taking one: any node answers `RAFT.BACKUP` on the client port with its state at an index
at least the commit index, as one RESP array `[index, term, size, header, chunk, ...]`
(redis/backup.py). The client writes header and chunks to `FILE.tmp`, fsyncs it, checks
it with `verify_snapshot` (the crc32 was computed by the node over the bytes it
serialized: checked end to end), and renames it to `FILE`.

Restoring one writes the data dir of every node of a new cluster: its identity (the new
cluster's token, a new incarnation), the backup's state as its only snapshot with the
new members and the new incarnations registered, and a log that starts after it. The new
cluster has a new random token, so a node of the old cluster is refused on every link.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from trioraft.core.messages import HardState, SnapshotMeta
from trioraft.kvstore.replicated import ReplicatedState
from trioraft.ops.config import Config, listed_members
from trioraft.redis.backup import BACKUP_COMMAND, serialize_capture
from trioraft.runtime.statemachine import Capture
from trioraft.storage import DataDir, StorageError, WriteAheadLog
from trioraft.storage.fileio import FILE_MODE, fsync_dir, fsync_fd
from trioraft.storage.snapshots import SnapshotHeader, SnapshotStore, verify_snapshot


class BackupError(Exception):
    """A backup could not be taken or used; the message says what and where."""


# ---- the client's side ----------------------------------------------------------------


def fetch_backup(
    host: str,
    port: int,
    out: Path,
    *,
    timeout: float,
    tls: ssl.SSLContext | None = None,
    password: str | None = None,
    progress: Callable[[int, int], None] = lambda received, total: None,
) -> SnapshotHeader:
    """Ask the node at host:port for a backup and write it to `out` (through `out`.tmp,
    checked whole before the rename), after AUTH with `password` when given;
    `progress(received, total)` after every chunk.
    Raises BackupError (the node refused, or the stream broke), OSError (no connection),
    or CorruptionError (the bytes do not match their checksum)."""
    temp = out.with_name(out.name + ".tmp")
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(socket.create_connection((host, port), timeout=timeout))
        if tls is not None:
            sock = stack.enter_context(tls.wrap_socket(sock, server_hostname=host))
        commands = [[b"AUTH", password.encode()]] if password is not None else []
        commands.append([BACKUP_COMMAND])
        sock.sendall(b"".join(_request(args) for args in commands))
        reader = stack.enter_context(sock.makefile("rb"))
        if password is not None and (answer := _line(reader)) != b"+OK":
            raise BackupError(f"AUTH refused: {answer[1:].decode(errors='replace')}")
        try:
            index, term = _receive(reader, temp, progress)
            header = verify_snapshot(temp)
            if (header.meta.index, header.meta.term) != (index, term):
                raise BackupError(
                    f"the node announced index {index}, term {term}, but the backup's "
                    f"header says index {header.meta.index}, term {header.meta.term}"
                )
            os.replace(temp, out)
            fsync_dir(out.parent)
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
    return header


def _request(args: list[bytes]) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def _receive(reader: BinaryIO, temp: Path, progress: Callable[[int, int], None]) -> tuple[int, int]:
    """Read the RAFT.BACKUP reply from `reader` into the file `temp`, fsynced; return
    the index and term the node announced."""
    count = _array_length(reader)
    index, term, size = (_integer(reader) for _ in range(3))
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "wb") as file:
        file.write(_bulk_string(reader))
        received = 0
        for _ in range(count - 4):
            chunk = _bulk_string(reader)
            file.write(chunk)
            received += len(chunk)
            progress(received, size)
        file.flush()
        fsync_fd(file.fileno(), temp)
    if received != size:
        raise BackupError(f"the node announced {size} bytes of state but sent {received}")
    return index, term


def _line(reader: BinaryIO) -> bytes:
    line = reader.readline(1024)
    if not line.endswith(b"\r\n"):
        raise BackupError("the node closed the connection in the middle of the backup")
    return line[:-2]


def _array_length(reader: BinaryIO) -> int:
    line = _line(reader)
    if line.startswith(b"-"):
        raise BackupError(f"the node refused: {line[1:].decode(errors='replace')}")
    if not line.startswith(b"*") or not line[1:].isdigit() or int(line[1:]) < 4:
        raise BackupError(f"unexpected reply from the node: {line[:80]!r}")
    return int(line[1:])


def _integer(reader: BinaryIO) -> int:
    line = _line(reader)
    if not line.startswith(b":") or not line[1:].isdigit():
        raise BackupError(f"unexpected reply from the node: {line[:80]!r}")
    return int(line[1:])


def _bulk_string(reader: BinaryIO) -> bytes:
    line = _line(reader)
    if not line.startswith(b"$") or not line[1:].isdigit():
        raise BackupError(f"unexpected reply from the node: {line[:80]!r}")
    size = int(line[1:])
    data = reader.read(size + 2)
    if len(data) != size + 2 or not data.endswith(b"\r\n"):
        raise BackupError("the node closed the connection in the middle of the backup")
    return data[:-2]


# ---- restoring ------------------------------------------------------------------------


def read_backup(path: Path) -> tuple[SnapshotMeta, ReplicatedState]:
    """The state a backup file holds, checked whole (CorruptionError names the offset
    of the damage, or where a truncated file ends)."""
    header = verify_snapshot(path)
    with path.open("rb") as file:
        file.seek(header.data_offset)
        data = file.read(header.size)
    if zlib.crc32(data) != header.crc:
        raise StorageError(f"{path}: the file changed while it was read")
    try:
        return header.meta, ReplicatedState.restore(data)
    except ValueError as exc:
        raise BackupError(f"{path}: not a trioraft backup: {exc}") from None


def refuse_used_data_dirs(configs: Sequence[Config]) -> None:
    """Raise BackupError when a data dir the configs name already holds anything."""
    for config in configs:
        path = config.data_dir
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise BackupError(f"{path}: not empty: a restore writes new data dirs only")


def write_data_dirs(meta: SnapshotMeta, state: ReplicatedState, configs: Sequence[Config]) -> None:
    """Write the data dir of every config (all of one new cluster, data dirs empty or
    missing) so that the cluster starts from `state` at `meta`'s index."""
    # the members as a node started with these configs takes them, so that it agrees
    restored = SnapshotMeta(meta.index, meta.term, listed_members(configs[0]))
    incarnations = {}
    for config in configs:  # first every identity: the state records their incarnations
        with _open_data_dir(config) as data_dir:
            incarnations[config.node_id] = data_dir.incarnation
    state.incarnations = incarnations
    data = serialize_capture([_copy_whole(state)])[0]
    for config in configs:
        _write_data_dir(config, restored, data)


def _copy_whole(state: ReplicatedState) -> Capture:
    with contextlib.closing(state.begin_capture()) as taken:
        while not taken.done:
            taken.step()
    return taken


def _open_data_dir(config: Config) -> DataDir:
    return DataDir.open(config.data_dir, node_id=config.node_id, cluster_token=config.cluster_token)


def _write_data_dir(config: Config, meta: SnapshotMeta, data: bytes) -> None:
    """Put the snapshot in the node's data dir and start its log after it, in the
    snapshot's term (a term is never below that of an entry in the log)."""
    with _open_data_dir(config) as data_dir:
        SnapshotStore(data_dir.snap_dir).write(meta, data)
        wal, _ = WriteAheadLog.open(data_dir.wal_dir)
        with wal:
            wal.reset(meta.index, meta.term)
            wal.set_hard_state(HardState(term=meta.term))
            wal.sync()
