"""The store (trioraft.kvstore.store): what each data command does to the keyspace, SCAN
and KEYS, snapshots of the keyspace, replicas that apply the same log."""

from __future__ import annotations

import itertools

import msgpack  # type: ignore[import-untyped]
import pytest
from harness.kv_store import NOT_INT, SYNTAX, arity, cmd
from hypothesis import given, settings
from hypothesis import strategies as st

from trioraft.kvstore import data_commands, packed, snapshot_format
from trioraft.kvstore.keyspace import bucket_of
from trioraft.kvstore.store import SCAN_MAX_COUNT, KVStore
from trioraft.redis.replies import OK, ErrorReply, Reply, SimpleString

OVERFLOW = ErrorReply("ERR increment or decrement would overflow")


def run(store: KVStore, line: str) -> Reply:
    return store.apply(cmd(line))


def store_with(**values: str) -> KVStore:
    store = KVStore()
    for key, value in values.items():
        store.apply([b"SET", key.encode(), value.encode()])
    return store


# -- the commands


def test_get_set() -> None:
    store = KVStore()
    assert run(store, "GET k") is None
    assert run(store, "set k v") == OK
    assert run(store, "GET k") == b"v"
    assert store.apply([b"SET", b"bin\x00\xff", b"\r\n\x00"]) == OK
    assert store.read([b"GET", b"bin\x00\xff"]) == b"\r\n\x00"
    assert store.apply([b"SET", b"", b""]) == OK
    assert store.read([b"GET", b""]) == b""


@pytest.mark.parametrize(
    ("line", "before", "reply", "after"),
    [
        ("SET k new NX", None, None, "old"),
        ("SET k new NX", "absent", OK, "new"),
        ("SET k new XX", None, OK, "new"),
        ("SET k new XX", "absent", None, None),
        ("SET k new GET", None, b"old", "new"),
        ("SET k new GET", "absent", None, "new"),
        ("SET k new NX GET", None, b"old", "old"),
        ("SET k new NX GET", "absent", None, "new"),
        ("SET k new XX GET", None, b"old", "new"),
        ("SET k new XX GET", "absent", None, None),
        ("SET k new IFEQ old", None, OK, "new"),
        ("SET k new IFEQ other", None, None, "old"),
        ("SET k new IFEQ old", "absent", None, None),
        ("SET k new IFEQ old GET", None, b"old", "new"),
        ("SET k new GET IFEQ other", None, b"old", "old"),
        ("SET k new IFEQ old GET", "absent", None, None),
        ("SET k new KEEPTTL", None, OK, "new"),
    ],
)
def test_set_options(line: str, before: str | None, reply: Reply, after: str | None) -> None:
    store = KVStore() if before == "absent" else store_with(k="old")
    assert run(store, line) == reply
    assert run(store, "GET k") == (None if after is None else after.encode())


def test_set_ifeq_compares_bytes_exactly() -> None:
    store = KVStore()
    store.apply([b"SET", b"k", b"\x00v"])
    assert store.apply([b"SET", b"k", b"w", b"IFEQ", b"\x00V"]) is None
    assert store.apply([b"SET", b"k", b"w", b"IFEQ", b"\x00v"]) == OK
    assert run(store, "GET k") == b"w"


def test_set_option_that_looks_like_a_value() -> None:
    # options are read only after the value
    store = KVStore()
    assert run(store, "SET k NX") == OK
    assert run(store, "GET k") == b"NX"


def test_del_and_exists() -> None:
    store = store_with(a="1", b="2", c="3")
    assert run(store, "EXISTS a a b zz") == 3
    assert run(store, "DEL a a zz") == 1
    assert run(store, "DEL b c") == 2
    assert run(store, "EXISTS a b c") == 0
    assert run(store, "DBSIZE") == 0


def test_incr_family() -> None:
    store = KVStore()
    assert run(store, "INCR n") == 1
    assert run(store, "INCR n") == 2
    assert run(store, "DECR n") == 1
    assert run(store, "INCRBY n 10") == 11
    assert run(store, "DECRBY n 20") == -9
    assert run(store, "GET n") == b"-9"
    assert run(store, "DECR fresh") == -1
    assert run(store, "INCRBY other -5") == -5
    assert run(store, "INCRBY n 0") == -9


@pytest.mark.parametrize("value", [b"abc", b"1.5", b" 1", b"1 ", b"+1", b"01", b"-0", b"", b"1e3"])
def test_incr_of_a_value_that_is_not_an_integer(value: bytes) -> None:
    store = KVStore()
    store.apply([b"SET", b"n", value])
    assert run(store, "INCR n") == NOT_INT
    assert run(store, "DECRBY n 1") == NOT_INT
    assert store.read([b"GET", b"n"]) == value


def test_incr_overflow() -> None:
    store = store_with(big="9223372036854775807", small="-9223372036854775808")
    assert run(store, "INCR big") == OVERFLOW
    assert run(store, "INCRBY big 1") == OVERFLOW
    assert run(store, "DECRBY big -1") == OVERFLOW
    assert run(store, "DECR small") == OVERFLOW
    assert run(store, "INCRBY small -1") == OVERFLOW
    assert run(store, "GET big") == b"9223372036854775807"
    assert run(store, "INCRBY big -9223372036854775807") == 0
    assert run(store, "DECRBY small 0") == -(2**63)
    assert run(store, "INCRBY small 9223372036854775807") == -1
    assert run(store, "DECRBY k 9223372036854775807") == -(2**63) + 1
    assert run(store, "DECR k") == -(2**63)
    assert run(store, "DECR k") == OVERFLOW


def test_append_and_strlen() -> None:
    store = KVStore()
    assert run(store, "STRLEN k") == 0
    assert run(store, "APPEND k abc") == 3
    assert run(store, "APPEND k de") == 5
    assert run(store, "GET k") == b"abcde"
    assert run(store, "STRLEN k") == 5
    assert run(store, "INCR k") == NOT_INT
    assert run(store, "SET n 9") == OK
    assert run(store, "APPEND n 9") == 2
    assert run(store, "INCR n") == 100


def test_append_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("trioraft.kvstore.store.MAX_STRING_LENGTH", 6)
    store = KVStore()
    assert run(store, "APPEND k abc") == 3
    assert run(store, "APPEND k def") == 6
    assert run(store, "APPEND k g") == ErrorReply(
        "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
    )
    assert run(store, "GET k") == b"abcdef"


def test_mget_mset() -> None:
    store = store_with(a="1")
    assert run(store, "MSET b 2 c 3 b 4") == OK
    assert run(store, "MGET a b c zz a") == [b"1", b"4", b"3", None, b"1"]
    assert run(store, "MSET a 1 b") == arity("mset")
    assert run(store, "DBSIZE") == 3


def test_type_and_dbsize() -> None:
    store = store_with(a="1")
    assert run(store, "TYPE a") == SimpleString("string")
    assert run(store, "TYPE zz") == SimpleString("none")
    assert run(store, "DBSIZE") == 1
    assert len(store) == 1
    assert store.stats() == {"keys": 1, "expires": 0, "avg_ttl": 0}


@pytest.mark.parametrize("line", ["FLUSHALL", "flushdb", "FLUSHALL ASYNC", "FLUSHDB sync"])
def test_flush(line: str) -> None:
    store = store_with(a="1", b="2")
    assert run(store, line) == OK
    assert run(store, "DBSIZE") == 0
    assert run(store, "GET a") is None
    assert run(store, "SET a 3") == OK
    assert run(store, "KEYS *") == [b"a"]


def key_list(reply: Reply) -> list[bytes]:
    """The keys of a KEYS reply, sorted."""
    assert isinstance(reply, list)
    keys = [key for key in reply if isinstance(key, bytes)]
    assert len(keys) == len(reply)
    return sorted(keys)


def test_keys() -> None:
    store = store_with(hello="1", hallo="2", hxllo="3", heeeello="4", other="5")
    store.apply([b"SET", b"", b"empty"])
    assert key_list(store.read(cmd("KEYS h?llo"))) == [b"hallo", b"hello", b"hxllo"]
    assert key_list(store.read(cmd("KEYS h*llo"))) == [b"hallo", b"heeeello", b"hello", b"hxllo"]
    assert key_list(store.read(cmd("KEYS h[ae]llo"))) == [b"hallo", b"hello"]
    assert key_list(store.read(cmd("KEYS h[^e]llo"))) == [b"hallo", b"hxllo"]
    assert store.read(cmd("KEYS other")) == [b"other"]
    assert store.read(cmd("KEYS nothing")) == []
    everything = key_list(store.read(cmd("KEYS *")))
    assert everything == [b"", b"hallo", b"heeeello", b"hello", b"hxllo", b"other"]
    # Redis's matcher never matches the empty key except with "*" and the empty pattern
    assert b"" not in key_list(store.read(cmd("KEYS **")))
    assert store.read([b"KEYS", b""]) == [b""]


def test_a_key_search_finds_the_keys_as_they_were_when_it_began() -> None:
    store = KVStore({b"k%d" % i: b"" for i in range(10_000)})
    with store.search_keys(b"k1*", 0) as search:
        steps = 0
        while not search.done:
            search.step()
            store.apply([b"DEL", b"k1%d" % steps])
            store.apply([b"SET", b"k1new%d" % steps, b""])
            steps += 1
    assert steps > 1
    assert key_list(search.found) == sorted(
        b"k%d" % i for i in range(10_000) if str(i).startswith("1")
    )
    # a literal pattern is one lookup
    with store.search_keys(b"k2", 0) as search:
        assert search.done and search.found == [b"k2"]


def test_read_refuses_writes_and_answers_errors() -> None:
    store = KVStore()
    with pytest.raises(ValueError, match="'set' writes"):
        store.read(cmd("SET k v"))
    assert store.read(cmd("GET")) == arity("get")
    assert store.read(cmd("nope")) == ErrorReply(
        "ERR unknown command 'nope', with args beginning with: "
    )
    assert store.read(cmd("SCAN 0 COUNT 0")) == SYNTAX


# -- SCAN


def scan_page(store: KVStore, args: list[bytes]) -> tuple[bytes, list[bytes]]:
    """The cursor and the keys of one SCAN reply."""
    reply = store.read(args)
    assert isinstance(reply, list) and len(reply) == 2
    cursor, keys = reply
    assert isinstance(cursor, bytes) and isinstance(keys, list)
    return cursor, key_list(keys)


def full_scan(store: KVStore, *options: str) -> list[bytes]:
    cursor = b"0"
    seen: list[bytes] = []
    while True:
        cursor, keys = scan_page(store, [b"SCAN", cursor, *cmd(" ".join(options))])
        seen.extend(keys)
        if cursor == b"0":
            return seen


def test_scan_visits_every_key_once() -> None:
    store = KVStore()
    keys = [b"key:%d" % i for i in range(1000)]
    for key in keys:
        store.apply([b"SET", key, b"v"])
    for options in ([], ["COUNT", "1"], ["COUNT", "7"], ["COUNT", "5000"]):
        seen = full_scan(store, *options)
        assert sorted(seen) == sorted(keys)


def test_scan_count_and_match() -> None:
    store = KVStore()
    for i in range(100):
        store.apply([b"SET", b"k%d" % i, b"v"])
    reply = store.read(cmd("SCAN 0"))
    assert isinstance(reply, list) and reply[0] != b"0"
    assert isinstance(reply[1], list) and len(reply[1]) >= 10
    reply = store.read(cmd("SCAN 0 COUNT 1000"))
    assert isinstance(reply, list) and reply[0] == b"0" and len(key_list(reply[1])) == 100
    # MATCH filters what the call selected, so a page may come back empty
    assert sorted(full_scan(store, "MATCH", "k1?", "COUNT", "3")) == [
        b"k%d" % i for i in range(10, 20)
    ]
    assert len(full_scan(store, "MATCH", "*")) == 100


def test_scan_of_an_empty_store_and_from_any_cursor() -> None:
    store = KVStore()
    assert store.read(cmd("SCAN 0")) == [b"0", []]
    store.apply(cmd("SET a 1"))
    bucket = bucket_of(b"a")
    assert store.read([b"SCAN", b"%d" % bucket]) == [b"0", [b"a"]]
    assert store.read([b"SCAN", b"%d" % (bucket + 1)]) == [b"0", []]
    assert store.read(cmd("SCAN 18446744073709551615")) == [b"0", []]


def keys_in_one_bucket(count: int, prefix: bytes = b"c") -> list[bytes]:
    """`count` keys that share a bucket."""
    by_bucket: dict[int, list[bytes]] = {}
    for i in itertools.count():
        key = b"%s%d" % (prefix, i)
        group = by_bucket.setdefault(bucket_of(key), [])
        group.append(key)
        if len(group) == count:
            return group
    raise AssertionError("unreachable")


def test_scan_returns_whole_buckets_and_cursor_0_at_the_end() -> None:
    together = keys_in_one_bucket(25)
    store = KVStore()
    for key in [*together, b"other"]:
        store.apply([b"SET", key, b"v"])
    cursor = b"%d" % min(bucket_of(b"other"), bucket_of(together[0]))
    pages = []
    while True:
        reply = store.read([b"SCAN", cursor, b"COUNT", b"2"])
        assert isinstance(reply, list)
        cursor = reply[0]  # type: ignore[assignment]
        pages.append(key_list(reply[1]))
        if cursor == b"0":
            break
    assert sorted(pages) == sorted([[b"other"], sorted(together)])


def test_scan_count_is_capped() -> None:
    store = KVStore({b"k%d" % i: b"" for i in range(3 * SCAN_MAX_COUNT)})
    reply = store.read([b"SCAN", b"0", b"COUNT", b"%d" % (10 * SCAN_MAX_COUNT)])
    assert isinstance(reply, list) and reply[0] != b"0"
    # whole buckets: a little more than the cap
    assert SCAN_MAX_COUNT <= len(key_list(reply[1])) < SCAN_MAX_COUNT + 100


#: keys drawn from a small pool in which groups share a bucket, so that buckets with
#: several keys, changing between calls, are common
crowded_keys = st.sampled_from(
    [key for prefix in (b"x", b"y", b"z") for key in keys_in_one_bucket(6, prefix)]
    + [b"%d" % i for i in range(20)]
)


@settings(max_examples=150)
@given(
    initial=st.sets(crowded_keys, max_size=30),
    steps=st.lists(
        st.tuples(
            st.integers(1, 12),
            st.sets(crowded_keys, max_size=6),
            st.sets(crowded_keys, max_size=6),
        ),
        max_size=40,
    ),
)
def test_scan_is_stable_while_the_keyspace_changes(
    initial: set[bytes],
    steps: list[tuple[int, set[bytes], set[bytes]]],
) -> None:
    store = KVStore()
    for key in initial:
        store.apply([b"SET", key, b"v"])
    ever_present = set(initial)
    removed: set[bytes] = set()
    seen: list[bytes] = []
    cursor = b"0"
    for call in range(10_000):
        count, added, deleted = steps[call] if call < len(steps) else (4, set(), set())
        cursor, keys = scan_page(store, [b"SCAN", cursor, b"COUNT", b"%d" % count])
        seen.extend(keys)
        if cursor == b"0":
            break
        for key in added:
            store.apply([b"SET", key, b"w"])
        ever_present |= added
        if deleted:
            store.apply([b"DEL", *deleted])
        removed |= deleted & ever_present
    assert cursor == b"0"
    assert initial - removed <= set(seen)
    assert set(seen) <= ever_present
    assert len(seen) == len(set(seen))


# -- snapshots


def snapshot(store: KVStore) -> list[bytes]:
    """The store's keyspace as snapshot slices, read through a frozen view."""
    with store.freeze() as view:
        return [snapshot_format.serialize(view.take(100)) for _ in iter(lambda: view.done, True)]


def restore(slices: list[bytes]) -> KVStore:
    store = KVStore()
    for part in slices:
        store.load(part)
    return store


def test_snapshot_round_trip() -> None:
    store = KVStore()
    store.apply([b"MSET", b"a", b"1", b"", b"empty key", b"\x00\xff", b"\r\n", b"n", b"41"])
    store.apply(cmd("INCR n"))
    for i in range(1000):
        store.apply([b"SET", b"k%d" % i, b"%d" % i])
    data = snapshot(store)
    assert len(data) > 1
    restored = restore(data)
    assert len(restored) == 1004
    assert list(restored.items()) == list(store.items())
    assert restored.read(cmd("KEYS *")) == store.read(cmd("KEYS *"))
    assert full_scan(restored) == full_scan(store)
    assert snapshot(restored) == data
    assert len(restore(snapshot(KVStore()))) == 0


def test_a_frozen_view_is_the_keyspace_when_frozen() -> None:
    store = store_with(a="1", b="2")
    with store.freeze() as view:
        store.apply(cmd("SET a 2"))
        store.apply(cmd("SET c 3"))
        store.apply(cmd("DEL b"))
        taken = {key: packed.unpack(record) for key, record in view.take(10**6).items()}
        assert taken == {b"a": (b"1", 0, 0), b"b": (b"2", 0, 0)}
        assert view.done
    assert dict(store.items()) == {b"a": b"2", b"c": b"3"}


def test_restored_store_keeps_working() -> None:
    restored = restore(snapshot(store_with(a="1", b="2")))
    assert full_scan(restored) != []
    assert restored.apply(cmd("DEL a")) == 1
    assert restored.apply(cmd("SET c 3")) == OK
    assert sorted(full_scan(restored)) == [b"b", b"c"]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        b"garbage",
        msgpack.packb([3, {}], use_bin_type=True),
        msgpack.packb([2, {b"a": [b"1", 1]}], use_bin_type=True),
        msgpack.packb([1, {"a": b"1"}], use_bin_type=True),
        msgpack.packb([1, {b"a": 1}], use_bin_type=True),
        msgpack.packb([1, [b"a"]], use_bin_type=True),
        msgpack.packb({b"a": b"1"}, use_bin_type=True),
        msgpack.packb([1, {b"a": b"1"}], use_bin_type=True)[:-1],
    ],
)
def test_load_rejects_what_is_not_a_snapshot(data: bytes) -> None:
    store = store_with(k="v")
    with pytest.raises(ValueError, match="not a keyspace snapshot"):
        store.load(data)
    assert dict(store.items()) == {b"k": b"v"}


def test_replicas_agree() -> None:
    log = [
        cmd("SET a 1"),
        cmd("INCR a"),
        cmd("APPEND a x"),
        cmd("INCR a"),
        cmd("MSET b 1 c 2"),
        cmd("DEL b"),
        cmd("SET c 3 GET"),
    ]
    entries = [data_commands.encode_command(args) for args in log]
    first, second = KVStore(), KVStore()
    replies = [first.apply(data_commands.decode_command(entry)) for entry in entries]
    assert replies == [second.apply(data_commands.decode_command(entry)) for entry in entries]
    assert replies == [OK, 2, 2, NOT_INT, OK, 1, b"2"]
    assert list(first.items()) == list(second.items())
