"""The state machine (trioraft.kvstore.store) and Redis glob matching (trioraft.kvstore.glob)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import msgpack  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trioraft.kvstore import arguments, data_commands, glob, packed, snapshot_format
from trioraft.kvstore.keyspace import bucket_of
from trioraft.kvstore.store import COMMANDS, SCAN_MAX_COUNT, KVStore
from trioraft.redis.replies import OK, ErrorReply, Reply, SimpleString

SYNTAX = ErrorReply("ERR syntax error")
NOT_INT = ErrorReply("ERR value is not an integer or out of range")
OVERFLOW = ErrorReply("ERR increment or decrement would overflow")


def cmd(line: str) -> list[bytes]:
    return [word.encode() for word in line.split()]


def run(store: KVStore, line: str) -> Reply:
    return store.apply(cmd(line))


def store_with(**values: str) -> KVStore:
    store = KVStore()
    for key, value in values.items():
        store.apply([b"SET", key.encode(), value.encode()])
    return store


def arity(name: str) -> ErrorReply:
    return ErrorReply(f"ERR wrong number of arguments for '{name}' command")


# -- the command table


def test_table_names_arity_and_write_flags() -> None:
    expected = {
        "get": (2, False),
        "set": (-3, True),
        "del": (-2, True),
        "delex": (-2, True),
        "digest": (2, False),
        "exists": (-2, False),
        "incr": (2, True),
        "decr": (2, True),
        "incrby": (3, True),
        "decrby": (3, True),
        "incrbyfloat": (3, True),
        "append": (3, True),
        "strlen": (2, False),
        "mget": (-2, False),
        "mset": (-3, True),
        "keys": (2, False),
        "scan": (-2, False),
        "dbsize": (1, False),
        "type": (2, False),
        "raft.revision": (2, False),
        "setex": (4, True),
        "psetex": (4, True),
        "setnx": (3, True),
        "getset": (3, True),
        "getdel": (2, True),
        "getex": (-2, True),
        "expire": (-3, True),
        "pexpire": (-3, True),
        "expireat": (-3, True),
        "pexpireat": (-3, True),
        "persist": (2, True),
        "ttl": (2, False),
        "pttl": (2, False),
        "expiretime": (2, False),
        "pexpiretime": (2, False),
        "msetnx": (-3, True),
        "getrange": (4, False),
        "setrange": (4, True),
        "rename": (3, True),
        "renamenx": (3, True),
        "copy": (-3, True),
        "unlink": (-2, True),
        "touch": (-2, False),
        "randomkey": (1, False),
        "flushall": (-1, True),
        "flushdb": (-1, True),
    }
    actual = {spec.name: (spec.arity, spec.write) for spec in COMMANDS.values()}
    assert actual == expected
    assert all(name == spec.name.encode() for name, spec in COMMANDS.items())


def test_command_names_are_case_insensitive() -> None:
    assert data_commands.is_data_command(b"gEt")
    assert data_commands.is_data_command(b"MSet")
    assert not data_commands.is_data_command(b"PING")
    assert not data_commands.is_data_command(b"info")
    assert data_commands.is_write(cmd("SeT k v"))
    assert not data_commands.is_write(cmd("mget a b"))
    with pytest.raises(KeyError):
        data_commands.is_write(cmd("ping"))


# -- validate


def test_unknown_command_text() -> None:
    assert data_commands.validate(cmd("FOO a b")) == ErrorReply(
        "ERR unknown command 'FOO', with args beginning with: 'a' 'b' "
    )
    assert data_commands.validate([b"foo"]) == ErrorReply(
        "ERR unknown command 'foo', with args beginning with: "
    )
    assert data_commands.validate([]) == ErrorReply(
        "ERR unknown command '', with args beginning with: "
    )


def test_unknown_command_truncates_like_redis() -> None:
    # each argument gets what is left of a 128-byte budget; none starts past it
    error = data_commands.validate([b"x", b"a" * 100, b"b" * 100, b"c"])
    shown = "'" + "a" * 100 + "' '" + "b" * 25 + "' "
    assert error == ErrorReply("ERR unknown command 'x', with args beginning with: " + shown)
    error = data_commands.validate([b"n" * 200, b"a" * 300])
    assert error == ErrorReply(
        "ERR unknown command '" + "n" * 128 + "', with args beginning with: '" + "a" * 128 + "' "
    )


def test_unknown_command_sanitizes_bytes() -> None:
    # CR and LF become spaces; C strings stop at NUL; other bytes survive as escapes
    error = data_commands.validate([b"fo\r\no", b"a\x00b", b"\xff"])
    assert isinstance(error, ErrorReply)
    assert error.text == "ERR unknown command 'fo  o', with args beginning with: 'a' '\udcff' "
    assert error.text.encode("utf-8", "surrogateescape").endswith(b"'\xff' ")


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("GET", "get"),
        ("get a b", "get"),
        ("SET k", "set"),
        ("del", "del"),
        ("exists", "exists"),
        ("incr", "incr"),
        ("incr a b", "incr"),
        ("Decr", "decr"),
        ("incrby k", "incrby"),
        ("decrby k 1 2", "decrby"),
        ("append k", "append"),
        ("strlen", "strlen"),
        ("mget", "mget"),
        ("mset k", "mset"),
        ("MSET a 1 b", "mset"),
        ("keys", "keys"),
        ("keys a b", "keys"),
        ("scan", "scan"),
        ("dbsize x", "dbsize"),
        ("type", "type"),
    ],
)
def test_wrong_number_of_arguments(line: str, name: str) -> None:
    assert data_commands.validate(cmd(line)) == arity(name)
    assert KVStore().apply(cmd(line)) == arity(name)


@pytest.mark.parametrize(
    "line",
    [
        "SET k v NX XX",
        "SET k v XX NX",
        "SET k v EX 10 PX 10",
        "SET k v EX 10 KEEPTTL",
        "SET k v KEEPTTL PXAT 10",
        "SET k v EX",
        "SET k v BOGUS",
        "SET k v IFEQ",
        "SET k v NX IFEQ x",
        "SET k v IFEQ x XX",
        "SET k v IFEQ x IFEQ y",
        "SCAN 0 COUNT",
        "SCAN 0 MATCH",
        "SCAN 0 COUNT 0",
        "SCAN 0 COUNT -3",
        "SCAN 0 TYPE string",
        "FLUSHALL NOW",
        "FLUSHDB ASYNC SYNC",
    ],
)
def test_syntax_errors(line: str) -> None:
    assert data_commands.validate(cmd(line)) == SYNTAX
    assert KVStore().apply(cmd(line)) == SYNTAX


@pytest.mark.parametrize(
    "line",
    [
        "SET k v NX NX GET GET",
        "SET k v get nx",
        "SET k v xx GET keepttl",
        "SET k v IFEQ old GET",
        "SET k v GET ifeq NX",
        "FLUSHALL async",
        "FLUSHDB SYNC",
        "SCAN 0 MATCH a* COUNT 5 MATCH b*",
        "SCAN 18446744073709551615",
        "SCAN +5",
        "SCAN -007",
        "INCRBY k -9223372036854775808",
        "DECRBY k 9223372036854775807",
    ],
)
def test_accepted_commands(line: str) -> None:
    assert data_commands.validate(cmd(line)) is None


@pytest.mark.parametrize(
    "line",
    [
        "INCRBY k x",
        "INCRBY k 1.5",
        "INCRBY k 01",
        "INCRBY k +1",
        "INCRBY k -0",
        "INCRBY k 9223372036854775808",
        "DECRBY k -9223372036854775809",
        "SCAN 0 COUNT ten",
    ],
)
def test_integer_errors(line: str) -> None:
    assert data_commands.validate(cmd(line)) == NOT_INT


def test_integer_argument_with_blank() -> None:
    assert data_commands.validate([b"INCRBY", b"k", b" 1"]) == NOT_INT
    assert data_commands.validate([b"INCRBY", b"k", b""]) == NOT_INT


def test_decrby_of_the_smallest_integer() -> None:
    line = "DECRBY k -9223372036854775808"
    assert data_commands.validate(cmd(line)) == ErrorReply("ERR decrement would overflow")


def test_cursor_spellings() -> None:
    assert data_commands.validate([b"SCAN", b"0" * 5000 + b"7"]) is None
    assert data_commands.validate([b"SCAN", b" \t+7"]) is None
    assert data_commands.validate([b"SCAN", b"1" * 5000]) == ErrorReply("ERR invalid cursor")


@pytest.mark.parametrize(
    "cursor", [b"x", b"-1", b"18446744073709551616", b"1.0", b"", b"0x10", b"7 ", b"+"]
)
def test_invalid_cursor(cursor: bytes) -> None:
    assert data_commands.validate([b"SCAN", cursor]) == ErrorReply("ERR invalid cursor")


def test_cursor_error_comes_before_option_errors() -> None:
    assert data_commands.validate(cmd("SCAN x BOGUS")) == ErrorReply("ERR invalid cursor")


def test_parse_int_bounds() -> None:
    assert arguments.parse_int(b"-9223372036854775808") == -(2**63)
    assert arguments.parse_int(b"9223372036854775807") == 2**63 - 1
    assert arguments.parse_int(b"0") == 0
    assert arguments.parse_int(b"-0") is None
    assert arguments.parse_int(b"00") is None
    assert arguments.parse_int(b"1\n") is None


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


# -- snapshots and log entries


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


@given(st.lists(st.binary(), min_size=1, max_size=20))
def test_command_encoding_round_trip(args: list[bytes]) -> None:
    assert data_commands.decode_command(data_commands.encode_command(args)) == args


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        msgpack.packb("SET", use_bin_type=True),
        msgpack.packb(["SET", "k"], use_bin_type=True),
        msgpack.packb([b"SET", 1], use_bin_type=True),
        msgpack.packb([b"GET", b"k"], use_bin_type=True) + b"\x00",
        msgpack.packb([b"GET", b"k"], use_bin_type=True)[:-1],
    ],
)
def test_decode_rejects_what_is_not_a_command(data: bytes) -> None:
    with pytest.raises(ValueError, match="not an encoded command"):
        data_commands.decode_command(data)


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


# -- glob


@pytest.mark.parametrize(
    ("pattern", "string", "expected"),
    [
        (b"*", b"abc", True),
        (b"*", b"", False),
        (b"**", b"", False),
        (b"", b"", True),
        (b"", b"a", False),
        (b"a*", b"a", True),
        (b"*a", b"ba", True),
        (b"ab*", b"ab", True),
        (b"a*b*c", b"aXbYc", True),
        (b"a*b*c", b"acb", False),
        (b"*a*ba", b"aba", True),
        (b"*ab*b?", b"ababa", True),
        (b"*ab*b?", b"abab", False),
        (b"a*b", b"ab", True),
        (b"a*b", b"abc", False),
        (b"?", b"\n", True),
        (b"?", b"", False),
        (b"??", b"a", False),
        (b"h?llo", b"hello", True),
        (b"h[ae]llo", b"hallo", True),
        (b"h[ae]llo", b"hillo", False),
        (b"h[^e]llo", b"hello", False),
        (b"h[^e]llo", b"hallo", True),
        (b"h[a-b]llo", b"hbllo", True),
        (b"[z-a]", b"m", True),
        (b"[a-c-e]", b"-", True),
        (b"[a-c-e]", b"d", False),
        (b"[-a]", b"-", True),
        (b"[a\\-z]", b"-", True),
        (b"[a\\-z]", b"b", False),
        (b"[\\]]", b"]", True),
        (b"[\\", b"\\", True),
        # the closing bracket right after '[' ends an empty set
        (b"[]a]", b"]a]", False),
        (b"[]a]", b"xa]", False),
        (b"[^]a]", b"xa]", True),
        (b"[^]", b"]", True),
        # "a-]" is the range from ']' to 'a'; the set then runs to the end of the pattern
        (b"[a-]", b"_", True),
        (b"[a-]", b"]", True),
        (b"[a-]", b"-", False),
        (b"[a-]x", b"x", True),
        (b"[a-]x", b"_x", False),
        # an unclosed '[' takes the rest of the pattern
        (b"[abc", b"b", True),
        (b"[abc", b"d", False),
        (b"[abc", b"ab", False),
        (b"[", b"[", False),
        (b"h[", b"h[", False),
        (b"[^", b"x", True),
        (b"[^", b"xy", False),
        # escapes
        (b"\\*", b"*", True),
        (b"\\*", b"a", False),
        (b"a\\*b", b"a*b", True),
        (b"a\\*b", b"axb", False),
        (b"\\a", b"a", True),
        (b"a\\", b"a\\", True),
        (b"\\?", b"?", True),
        (b"\\[a]", b"[a]", True),
        # bytes, not text
        (b"\x00*\xff", b"\x00abc\xff", True),
        (b"[\x00-\x10]", b"\x05", True),
        (b"[^\x00-\x7f]", b"\xe9", True),
        (b"?", b"\xe9", True),
        (b"A*", b"abc", False),
    ],
)
def test_glob_cases(pattern: bytes, string: bytes, expected: bool) -> None:
    assert glob.match(pattern, string) is expected


def test_glob_parse() -> None:
    assert glob.parse(b"a*?") == [frozenset(b"a"), None, frozenset(range(256))]
    assert glob.parse(b"[^b-y]") == [frozenset((*range(0x62), *range(0x7A, 256)))]
    assert glob.parse(b"[a-") == [frozenset(b"a-")]


def test_glob_has_no_exponential_blowup() -> None:
    subject = b"a" * 50_000
    started = time.perf_counter()
    assert not glob.match(b"a*a*a*a*a*a*a*a*a*a*b", subject)
    assert not glob.match(b"*a*a*a*a*a*a*a*a*a*a*b*", subject)
    assert not glob.match(b"*?*?*?*?*?*?*?*?*[b]", subject)
    assert glob.match(b"*a*a*a*a*a*a*a*a*a*a", subject)
    assert time.perf_counter() - started < 1.0


def reference_match(atoms: list[glob.Atom], string: bytes) -> bool:
    """Dynamic programming over prefixes; Redis never matches the empty string otherwise."""
    if not string:
        return not atoms
    matched = [True] + [False] * len(string)
    for atom in atoms:
        if atom is None:
            reached = False
            for j, ok in enumerate(matched):
                reached = reached or ok
                matched[j] = reached
        else:
            matched = [False] + [matched[j] and byte in atom for j, byte in enumerate(string)]
    return matched[-1]


glob_bytes = st.sampled_from(b"ab*?[]^-\\")
subject_bytes = st.lists(st.sampled_from(b"ab]-^\\*["), max_size=3).map(bytes)


@st.composite
def pattern_and_string(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A pattern, and a string drawn to match it (stars take a few bytes each), then
    perhaps damaged; or an unrelated string."""
    pattern = draw(st.binary(max_size=10) | st.lists(glob_bytes, max_size=10).map(bytes))
    if draw(st.booleans()):
        return pattern, draw(st.lists(subject_bytes, max_size=3).map(b"".join))
    string = bytearray()
    for atom in glob.parse(pattern):
        if atom is None:
            string += draw(subject_bytes)
        elif atom:
            string.append(draw(st.sampled_from(sorted(atom))))
    if string and draw(st.booleans()):
        string[draw(st.integers(0, len(string) - 1))] = draw(st.integers(0, 255))
    return pattern, bytes(string)


@settings(max_examples=500)
@given(pattern_and_string())
def test_glob_agrees_with_reference(case: tuple[bytes, bytes]) -> None:
    pattern, string = case
    atoms = glob.parse(pattern)
    expected = reference_match(atoms, string)
    assert glob.match(pattern, string) is expected
    assert glob.Walker(atoms)(string) is expected


def test_long_patterns_are_walked() -> None:
    pattern = b"*" + b"a?[bc]*" * 200 + b"\\"
    assert len(pattern) > glob.REGEX_MAX_PATTERN
    matcher = glob.compile_pattern(pattern)
    assert isinstance(matcher, glob.Walker)
    assert matcher(b"x" + b"axb" * 200 + b"\\")
    assert matcher(b"axc" * 100 + b"--" + b"aac" * 100 + b"yy\\")
    assert not matcher(b"axb" * 200)
    assert not matcher(b"axb" * 199 + b"\\")
    assert not matcher(b"")
    literal = b"k" * 2000
    assert glob.match(literal, literal) and not glob.match(literal, literal + b"k")


def test_long_patterns_have_no_blowup() -> None:
    subject = b"a" * 3000
    started = time.perf_counter()
    assert not glob.match(b"a*" * 600 + b"b", subject)
    assert glob.match(b"*a" * 600, subject)
    assert time.perf_counter() - started < 2.0


def test_compiled_pattern_is_cached() -> None:
    matcher: Callable[[bytes], bool] = glob.compile_pattern(b"x*y")
    assert glob.compile_pattern(b"x*y") is matcher
    assert matcher(b"xzzy") and not matcher(b"xz")
