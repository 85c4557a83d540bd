"""The keyspace: every key and its value, kept so that no operation on it takes long.

A node runs its state machine in its event loop, which also answers heartbeats: one
operation that takes longer than an election timeout costs the leadership. So nothing
here is proportional to the number of keys, except what a client asks for by name (KEYS)
or what runs in a worker thread (loading a snapshot).

Theory of operation:

- The keys are split into `BUCKETS` buckets by the top bits of their CRC-32, each a dict.
  A bucket at 10 million keys holds about 600 of them, so growing, shrinking or copying
  one dict takes microseconds, where one dict of every key would rehash all of them at
  once as it grows (seconds at 10 million keys).
- SCAN's cursor is a bucket number. A call returns whole buckets in order, from the
  cursor on, until it has COUNT keys; its cursor is the next bucket, 0 after the last.
  A key never moves between buckets, so every key present for a whole iteration is
  returned exactly once, however the keyspace changes between calls, and the cursor
  means the same on every replica.
- `freeze` gives a view of the keyspace as it is at that moment, which a snapshot reads a
  few buckets at a time while commands go on changing the keyspace (copy on write, per
  key): the first change of a key in a bucket the view has not read yet records the
  key's old value (or its absence) in the view, and reading a bucket applies those
  records to a copy of it. So the work of a write stays proportional to the keys it
  writes, and the view's reads to the keys they read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from itertools import islice
from random import Random
from typing import Final, Generic, TypeVar
from zlib import crc32

from trioraft.closing import ClosedOnExit

#: the keys are spread over 2 ** BUCKET_BITS buckets by the top bits of their CRC-32
BUCKET_BITS: Final = 14
BUCKETS: Final = 1 << BUCKET_BITS
_SHIFT: Final = 32 - BUCKET_BITS


#: what a key maps to
V = TypeVar("V")


def bucket_of(key: bytes) -> int:
    """The bucket `key` lives in, the same on every replica and in every version."""
    return crc32(key) >> _SHIFT


class Keyspace(Generic[V]):
    """Binary keys to values, in fixed buckets; see the module's notes."""

    __slots__ = ("_buckets", "_retired", "_size", "_views")

    def __init__(self) -> None:
        #: the buckets; a key is in bucket `bucket_of(key)`
        self._buckets: list[dict[bytes, V]] = [{} for _ in range(BUCKETS)]
        #: the number of keys
        self._size = 0
        #: the frozen views reading these buckets, told of every change before it is made
        self._views: list[FrozenKeyspace[V]] = []
        #: buckets emptied out by `clear`, not freed yet (see `take_retired`)
        self._retired: list[dict[bytes, V]] = []

    def __len__(self) -> int:
        return self._size

    def __contains__(self, key: bytes) -> bool:
        return key in self._buckets[crc32(key) >> _SHIFT]

    def __iter__(self) -> Iterator[bytes]:
        for bucket in self._buckets:
            yield from bucket

    def items(self) -> Iterator[tuple[bytes, V]]:
        for bucket in self._buckets:
            yield from bucket.items()

    def get(self, key: bytes) -> V | None:
        return self._buckets[crc32(key) >> _SHIFT].get(key)

    def put(self, key: bytes, value: V) -> None:
        number = crc32(key) >> _SHIFT
        bucket = self._buckets[number]
        if self._views:
            self._before_change(number, key, bucket.get(key))
        size = len(bucket)
        bucket[key] = value
        self._size += len(bucket) - size

    def swap(self, key: bytes, value: V) -> V | None:
        """Map `key` to `value`; what it mapped to before (None: it was absent)."""
        number = crc32(key) >> _SHIFT
        bucket = self._buckets[number]
        old = bucket.get(key)
        if self._views:
            self._before_change(number, key, old)
        bucket[key] = value
        if old is None:
            self._size += 1
        return old

    def pop(self, key: bytes) -> V | None:
        """Remove `key`; what it mapped to (None: it was absent)."""
        number = crc32(key) >> _SHIFT
        bucket = self._buckets[number]
        old = bucket.get(key)
        if old is None:
            return None
        if self._views:
            self._before_change(number, key, old)
        del bucket[key]
        self._size -= 1
        return old

    def update(self, items: Mapping[bytes, V]) -> None:
        for key, value in items.items():
            self.put(key, value)

    def clear(self) -> None:
        """Remove every key. The old buckets are not freed here (freeing ten million keys
        takes seconds): they wait in `take_retired` for the caller to free them a few at
        a time. The views keep reading them; nothing changes them any more."""
        self._retired.extend(self._buckets)
        self._buckets = [{} for _ in range(BUCKETS)]
        self._size = 0
        self._views = []

    def take_retired(self) -> list[dict[bytes, V]]:
        """The buckets `clear` set aside since the last call, to be freed."""
        retired, self._retired = self._retired, []
        return retired

    def _before_change(self, number: int, key: bytes, old: V | None) -> None:
        for view in self._views:
            view.record(number, key, old)

    def scan(self, cursor: int, count: int) -> tuple[int, list[bytes]]:
        """The keys of the buckets from bucket `cursor` on, whole buckets until there are
        at least `count`; and the next cursor, 0 after the last bucket."""
        found: list[bytes] = []
        buckets = self._buckets
        while cursor < BUCKETS and len(found) < count:
            found.extend(buckets[cursor])
            cursor += 1
        return (cursor if cursor < BUCKETS else 0), found

    def random_key(self, rng: Random) -> bytes | None:
        """A key picked with `rng` (None when there is none): the first of the buckets from
        a random one on that has keys, then a random key of it. Not uniform (a key in a
        small bucket after empty ones is likelier), but cheap at any size."""
        if not self._size:
            return None
        buckets = self._buckets
        number = rng.randrange(BUCKETS)
        while not buckets[number]:
            number = (number + 1) % BUCKETS
        bucket = buckets[number]
        return next(islice(bucket, rng.randrange(len(bucket)), None))

    def freeze(self) -> FrozenKeyspace[V]:
        """A view of the keyspace as it is now; close it once done with it (the keyspace
        records changes for it until then)."""
        view = FrozenKeyspace(self, self._buckets)
        self._views.append(view)
        return view

    @property
    def frozen_views(self) -> int:
        """How many frozen views the keyspace records its changes for."""
        return len(self._views)

    def release(self, view: FrozenKeyspace[V]) -> None:
        """Stop recording changes for `view` (its `close` does; once is enough)."""
        if view in self._views:
            self._views.remove(view)


class FrozenKeyspace(ClosedOnExit, Generic[V]):
    """The keyspace as it was when frozen, read bucket by bucket (see the module's notes)."""

    __slots__ = ("_buckets", "_keyspace", "_next", "_undo")

    def __init__(self, keyspace: Keyspace[V], buckets: list[dict[bytes, V]]) -> None:
        self._keyspace = keyspace
        #: the buckets read: the keyspace's, or the ones a FLUSHALL set aside
        self._buckets = buckets
        #: the next bucket to read; the ones before it are read
        self._next = 0
        #: for each bucket not read yet, the keys changed since the freeze and their value
        #: at the freeze (None: absent)
        self._undo: dict[int, dict[bytes, V | None]] = {}

    @property
    def done(self) -> bool:
        """Whether every bucket was read."""
        return self._next >= BUCKETS

    def record(self, number: int, key: bytes, old: V | None) -> None:
        """`key`, in bucket `number`, is about to change; `old` is its value (None: absent)."""
        if number >= self._next:
            self._undo.setdefault(number, {}).setdefault(key, old)

    def take(self, max_keys: int) -> dict[bytes, V]:
        """The keys and values of the next buckets as they were at the freeze: whole
        buckets, until there are at least `max_keys` or every bucket was read."""
        part: dict[bytes, V] = {}
        while self._next < BUCKETS and len(part) < max_keys:
            part.update(self._buckets[self._next])
            undo = self._undo.pop(self._next, None)
            if undo is not None:
                for key, old in undo.items():
                    if old is None:
                        part.pop(key, None)
                    else:
                        part[key] = old
            self._next += 1
        if self.done:
            self.close()
        return part

    def close(self) -> None:
        """Stop recording changes (also once every bucket is read)."""
        self._keyspace.release(self)
