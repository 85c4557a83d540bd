"""The keyspace's snapshot form: msgpack `[format, {key: [value, revision, deadline]}]`
(format 2; format 1, from before revisions, held values only, and is still read).

Both directions depend only on their input, so that a slice of the keyspace may be
serialized or read back anywhere, e.g. in a worker thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgpack  # type: ignore[import-untyped]

from trioraft.kvstore import packed
from trioraft.kvstore.packed import Record

#: 1: key -> value; 2: key -> [value, revision, deadline]
_SNAPSHOT_FORMAT: Final = 2


def serialize(part: Mapping[bytes, packed.Stored]) -> bytes:
    """Snapshot bytes for keys and their stored records (packed.py), e.g. a slice of a
    `KVStore.freeze` view."""
    records = {key: packed.unpack(record) for key, record in part.items()}
    payload: bytes = msgpack.packb([_SNAPSHOT_FORMAT, records], use_bin_type=True)
    return payload


def deserialize(data: bytes) -> dict[bytes, Record]:
    """The keys and records in `serialize` bytes; ValueError when they are not that."""
    try:
        saved = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ValueError(f"not a keyspace snapshot: {exc}") from exc
    return _records(saved)


#: the largest revision or deadline a record holds (packed.py)
_UINT64_MAX: Final = (1 << 64) - 1


def _is_record(saved: object) -> bool:
    return (
        type(saved) is list
        and len(saved) == 3
        and type(saved[0]) is bytes
        and type(saved[1]) is int
        and type(saved[2]) is int
        and 0 <= saved[1] <= _UINT64_MAX
        and 0 <= saved[2] <= _UINT64_MAX
    )


def _records(saved: object) -> dict[bytes, Record]:
    """The keyspace in a snapshot's `[format, keyspace]`; ValueError when it is not one."""
    if type(saved) is not list or len(saved) != 2 or saved[0] not in (1, _SNAPSHOT_FORMAT):
        raise ValueError("not a keyspace snapshot: unknown layout or format version")
    version, keyspace = saved
    if type(keyspace) is not dict or not all(type(key) is bytes for key in keyspace):
        raise ValueError("not a keyspace snapshot: expected a map of binary strings")
    if version == 1:  # values only, from before revisions: revision 0, no deadline
        if not all(type(value) is bytes for value in keyspace.values()):
            raise ValueError("not a keyspace snapshot: expected a map of binary strings")
        return {key: (value, 0, 0) for key, value in keyspace.items()}
    if not all(_is_record(saved) for saved in keyspace.values()):
        raise ValueError("not a keyspace snapshot: expected [value, revision, deadline]")
    return {
        key: (value, revision, deadline) for key, (value, revision, deadline) in keyspace.items()
    }
