"""The records the keyspace stores: packed bytes, or a tuple for a large value."""

from __future__ import annotations

import itertools

from trioraft.kvstore import packed
from trioraft.kvstore.packed import LARGE_VALUE
from trioraft.kvstore.store import KVStore

#: lengths around every boundary: the tails (9 and 17 bytes) and the large values
LENGTHS = [0, 1, 2, 8, 9, 16, 17, 100, LARGE_VALUE - 18, LARGE_VALUE - 17, LARGE_VALUE - 9]
LENGTHS += [LARGE_VALUE - 1, LARGE_VALUE, LARGE_VALUE + 1, 70_000]
UINT64_MAX = (1 << 64) - 1


def test_every_record_reads_back_as_it_was_stored() -> None:
    for length, revision, deadline in itertools.product(
        LENGTHS, [0, 1, 1 << 40, UINT64_MAX], [0, 1, 1_700_000_000_000, UINT64_MAX]
    ):
        # every byte value, so that no content can pass for a tail
        value = bytes(i % 256 for i in range(length))
        stored = packed.pack(value, revision, deadline)
        assert packed.unpack(stored) == (value, revision, deadline)
        assert packed.value_of(stored) == value
        assert packed.deadline_of(stored) == deadline
        assert packed.alive(stored, 5) == (deadline == 0 or deadline > 5)


def test_a_value_of_ordinary_size_is_one_bytes_object_and_a_large_one_is_kept_as_it_is() -> None:
    assert packed.pack(b"v" * 100, 7, 0) == b"v" * 100 + (7).to_bytes(8, "little") + b"\0"
    large = b"x" * LARGE_VALUE
    assert packed.pack(large, 7, 9)[0] is large


def test_reads_of_a_large_value_hand_out_the_value_itself() -> None:
    store = KVStore()
    large = b"x" * LARGE_VALUE
    store.apply([b"SET", b"k", large], 3, 0)
    # an MGET naming it many times holds one value, not one copy per name
    reply = store.read([b"MGET", b"k", b"k"])
    assert isinstance(reply, list) and reply[0] is large and reply[1] is large
    assert store.read([b"GET", b"k"]) is large
