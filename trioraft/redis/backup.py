"""The node's side of `RAFT.BACKUP`: a consistent copy of its state, streamed to the client.

The node waits for a linearizable read barrier, so that it has applied everything
committed when the request arrived, captures its state at its applied index (a slice per
event-loop step, while commands go on applying), serializes it in a worker thread and
streams it: one RESP array `[index, term, size, header, chunk, chunk, ...]`, chunks of
`CHUNK_BYTES`. The header is a snapshot file's (storage/snapshots.py), its crc32 computed
over the bytes serialized, so the file the client writes is checked end to end
(`trioraft backup`, ops/backup.py).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio

from trioraft.core.messages import SnapshotMeta
from trioraft.runtime.snapshotter import capture
from trioraft.runtime.statemachine import Capture
from trioraft.storage.snapshots import encode_header

if TYPE_CHECKING:
    from trioraft.runtime.node import Node

#: the bytes of state in one bulk string of the backup stream
CHUNK_BYTES: Final = 1024 * 1024
#: the command a node answers with a backup
BACKUP_COMMAND: Final = b"RAFT.BACKUP"


@attrs.frozen
class Backup:
    """A consistent copy of a node's state, ready to stream."""

    meta: SnapshotMeta
    #: the snapshot file header of `data`
    header: bytes
    #: the serialized state
    data: bytes


async def take_backup(node: Node[Any]) -> Backup:
    """The node's state at an index at least the commit index when called (a read
    barrier first: Unavailable or Indeterminate when it cannot be had)."""
    await node.read_barrier()
    index = node.applied
    term = node.core.log.term(index)
    assert term is not None, "the applied index is always in the log or the snapshot"
    meta = SnapshotMeta(index, term, node.core.members)
    # the capture begins before the first checkpoint: at the state of `index`
    held = [await capture(node.state)]
    data, crc = await trio.to_thread.run_sync(serialize_capture, held)
    return Backup(meta, encode_header(meta, len(data), crc), data)


def serialize_capture(held: list[Capture]) -> tuple[bytes, int]:
    """In a worker thread: the serialized capture (taken out of `held`, so it is freed
    here) and its crc32."""
    data = b"".join(held.pop().serialize())
    return data, zlib.crc32(data)


def backup_stream(backup: Backup) -> Iterator[bytes]:
    """The RESP array a node answers RAFT.BACKUP with, in pieces to send in turn."""
    size = len(backup.data)
    chunks = range(0, size, CHUNK_BYTES)
    meta = backup.meta
    yield b"*%d\r\n:%d\r\n:%d\r\n:%d\r\n" % (4 + len(chunks), meta.index, meta.term, size)
    yield _bulk(backup.header)
    view = memoryview(backup.data)
    for start in chunks:
        yield _bulk(view[start : start + CHUNK_BYTES])


def _bulk(data: bytes | memoryview) -> bytes:
    return b"$%d\r\n" % len(data) + bytes(data) + b"\r\n"
