"""A key's record (value, revision, deadline) as the keyspace stores it: packed into one
bytes object, or, for a large value, a tuple that holds the value itself.

The keyspace holds a million keys and more, and what each key costs in memory is mostly
objects: the key, the value, and anything kept beside them. So the revision and deadline
of a value of ordinary size travel in the bytes of the value: one dict entry and one
bytes object per key, no int or tuple the garbage collector would have to visit (a tuple
per key makes the dicts holding them tracked, and a full collection then walks every
key: hundreds of milliseconds at a million keys, enough to lose the leadership).

Layout: the value, then the revision (8 bytes, little-endian, unsigned), then, only when
the key has a deadline, the deadline (8 bytes likewise, Unix ms), then one byte saying
which: 0 without a deadline, 1 with one. A 100-byte value takes 133 bytes as a bytes
object and 142 with its revision: the allocator rounds both to 144.

Reading a packed value copies it out. A value of `LARGE_VALUE` bytes or more is stored as
the tuple `(value, revision, deadline)` instead, so that a read hands out the value
itself: a GET of a large value, or an MGET naming it many times, never copies it. Such
values are few for the memory they take, and their tuples hold only bytes and ints, which
the garbage collector stops following after its first pass.
"""

from __future__ import annotations

import struct
from typing import Final, TypeAlias

#: a key's value, its revision (the log index of its last write) and its deadline (Unix
#: ms; 0 when it has none)
Record: TypeAlias = tuple[bytes, int, int]
#: a record as the keyspace stores it
Stored: TypeAlias = bytes | Record

#: values this long or longer are stored in a tuple, not packed
LARGE_VALUE: Final = 1024

_WITHOUT_DEADLINE: Final = struct.Struct("<QB")
_WITH_DEADLINE: Final = struct.Struct("<QQB")
#: the length of the part after the value, by the last byte
_TAIL: Final = (_WITHOUT_DEADLINE.size, _WITH_DEADLINE.size)


def pack(value: bytes, revision: int, deadline: int) -> Stored:
    """The stored record; struct.error when the revision or deadline of a value shorter
    than `LARGE_VALUE` is not in 0 .. 2**64-1."""
    if len(value) >= LARGE_VALUE:
        return value, revision, deadline
    if deadline:
        return value + _WITH_DEADLINE.pack(revision, deadline, 1)
    return value + _WITHOUT_DEADLINE.pack(revision, 0)


def unpack(stored: Stored) -> Record:
    if isinstance(stored, tuple):
        return stored
    if stored[-1]:
        revision, deadline, _ = _WITH_DEADLINE.unpack_from(stored, len(stored) - _TAIL[1])
        return stored[: -_TAIL[1]], revision, deadline
    revision, _ = _WITHOUT_DEADLINE.unpack_from(stored, len(stored) - _TAIL[0])
    return stored[: -_TAIL[0]], revision, 0


def value_of(stored: Stored) -> bytes:
    if isinstance(stored, tuple):
        return stored[0]
    return stored[: -_TAIL[stored[-1]]]


def deadline_of(stored: Stored) -> int:
    """The deadline of a stored record, 0 when it has none."""
    if isinstance(stored, tuple):
        return stored[2]
    if not stored[-1]:
        return 0
    deadline: int = _WITH_DEADLINE.unpack_from(stored, len(stored) - _TAIL[1])[1]
    return deadline


def alive(stored: Stored, now: int) -> bool:
    """Whether a key with this record is there at time `now`: no deadline, or a later one."""
    deadline = deadline_of(stored)
    return not deadline or deadline > now
