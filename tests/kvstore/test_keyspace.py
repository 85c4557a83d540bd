"""The bucketed keyspace (trioraft.kvstore.keyspace): counting, and frozen views that read the
keyspace as it was while it keeps changing."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from trioraft.kvstore.keyspace import BUCKETS, FrozenKeyspace, Keyspace, bucket_of


def keys_sharing_buckets() -> list[bytes]:
    """Keys in a few crowded buckets, and some spread out."""
    by_bucket: dict[int, list[bytes]] = {}
    crowded: list[list[bytes]] = []
    for i in itertools.count():
        key = b"k%d" % i
        group = by_bucket.setdefault(bucket_of(key), [])
        group.append(key)
        if len(group) == 5:
            crowded.append(group)
            if len(crowded) == 3:
                break
    return [key for group in crowded for key in group] + [b"s%d" % i for i in range(15)]


POOL = keys_sharing_buckets()
keys = st.sampled_from(POOL)
values = st.binary(max_size=3)

#: one change to the keyspace: ("put", key, value), ("remove", key, b"") or, rarely,
#: ("clear", b"", b"")
changes = st.one_of(
    st.tuples(st.just("put"), keys, values),
    st.tuples(st.just("remove"), keys, st.just(b"")),
    st.tuples(st.sampled_from(["put"] * 9 + ["clear"]), keys, values),
)


def change(space: Keyspace, model: dict[bytes, bytes], step: tuple[str, bytes, bytes]) -> None:
    kind, key, value = step
    if kind == "put":
        space.put(key, value)
        model[key] = value
    elif kind == "remove":
        assert space.pop(key) == model.pop(key, None)
    else:
        space.clear()
        model.clear()


def read_all(view: FrozenKeyspace, max_keys: int) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = {}
    while not view.done:
        part = view.take(max_keys)
        assert not part.keys() & found.keys(), "a key is read twice"
        found.update(part)
    return found


@settings(max_examples=100, deadline=None)
@given(
    initial=st.dictionaries(keys, values),
    plan=st.lists(
        st.tuples(st.integers(0, 2), st.integers(1, 8), st.lists(changes, max_size=5)),
        max_size=30,
    ),
)
def test_frozen_views_read_the_keyspace_as_it_was_while_it_changes(
    initial: dict[bytes, bytes], plan: list[tuple[int, int, list[tuple[str, bytes, bytes]]]]
) -> None:
    """Views are frozen at different moments; between their reads, the keyspace changes."""
    space, model = Keyspace(), dict(initial)
    space.update(initial)
    views: list[tuple[FrozenKeyspace, dict[bytes, bytes], dict[bytes, bytes]]] = []
    for action, size, steps in plan:
        if action == 0 or not views:
            views.append((space.freeze(), dict(model), {}))
        else:
            view, _, found = views[len(steps) % len(views)]
            if not view.done:
                part = view.take(size)
                assert not part.keys() & found.keys(), "a key is read twice"
                found.update(part)
        for step in steps:
            change(space, model, step)
        assert len(space) == len(model)
    assert dict(space.items()) == model
    for view, expected, found in views:
        found.update(read_all(view, 3))
        assert found == expected
    assert space.frozen_views == 0


def test_a_view_copies_only_what_it_reads() -> None:
    space = Keyspace()
    space.update({b"k%d" % i: b"v" for i in range(100_000)})
    with space.freeze() as view:
        part = view.take(1000)
        # whole buckets: at least what was asked, at most one bucket more
        assert 1000 <= len(part) < 1000 + 100
        space.put(b"k1", b"changed")
        assert not view.done
    # closed early: the keyspace no longer records changes for it
    assert space.frozen_views == 0


def test_counting_and_membership() -> None:
    space = Keyspace()
    space.put(b"a", b"1")
    space.put(b"a", b"2")
    space.put(b"", b"")
    assert len(space) == 2 and b"" in space and b"b" not in space
    assert space.get(b"a") == b"2" and space.get(b"b") is None
    assert space.pop(b"a") == b"2" and space.pop(b"a") is None
    assert sorted(space) == [b""]
    space.clear()
    assert len(space) == 0 and list(space.items()) == []


def test_scan_pages_are_whole_buckets_in_order() -> None:
    space = Keyspace()
    space.update({key: b"" for key in POOL})
    cursor, seen = 0, []
    while True:
        cursor, page = space.scan(cursor, 1)
        assert len({bucket_of(key) for key in page}) <= 1
        seen.extend(page)
        if cursor == 0:
            break
    assert sorted(seen) == sorted(POOL)
    assert [bucket_of(key) for key in seen] == sorted(bucket_of(key) for key in seen)
    assert space.scan(BUCKETS, 10) == (0, [])


def test_clear_sets_the_old_buckets_aside_to_be_freed() -> None:
    space = Keyspace()
    space.update({key: b"" for key in POOL})
    with space.freeze() as view:
        space.clear()
        retired = space.take_retired()
        assert sorted(key for bucket in retired for key in bucket) == sorted(POOL)
        assert space.take_retired() == []
        retired.clear()  # freeing them does not disturb the view
        assert sorted(read_all(view, 10)) == sorted(POOL)


def test_swap_answers_the_old_value_and_frozen_views_keep_it() -> None:
    keys: Keyspace[bytes] = Keyspace()
    assert keys.swap(b"a", b"1") is None
    with keys.freeze() as view:
        assert keys.swap(b"a", b"2") == b"1"
        assert keys.swap(b"b", b"3") is None
        assert len(keys) == 2
        assert view.take(10**6) == {b"a": b"1"}
    assert dict(keys.items()) == {b"a": b"2", b"b": b"3"}
