"""Deadlines and the commands on them (store.py): Redis's replies and error texts, with time
taken only from the entry being applied (or, for a read, the time it is served at)."""

from __future__ import annotations

import pytest
from harness.kv_store import T0, Store

from trioraft.kvstore.replicated import ReplicatedState
from trioraft.redis.replies import OK, ErrorReply

SYNTAX = ErrorReply("ERR syntax error")
NOT_INT = ErrorReply("ERR value is not an integer or out of range")


def invalid(name: str) -> ErrorReply:
    return ErrorReply(f"ERR invalid expire time in '{name}' command")


@pytest.fixture
def store() -> Store:
    return Store()


def test_set_with_a_relative_ttl_sets_a_deadline_from_the_entry_time(store: Store) -> None:
    assert store("SET k v EX 100") == OK
    assert store("PEXPIRETIME k") == T0 + 100_000
    assert store("EXPIRETIME k") == (T0 + 100_000) // 1000
    store.now += 40_400
    assert store("TTL k") == 60  # rounded as Redis does
    assert store("PTTL k") == 59_600
    assert store("SET k v PX 1500") == OK
    assert store("PTTL k") == 1500
    assert store(f"SET k v PXAT {T0 + 10**9}") == OK
    assert store("PEXPIRETIME k") == T0 + 10**9
    assert store(f"SET k v EXAT {(T0 + 10**9) // 1000}") == OK
    assert store("PEXPIRETIME k") == T0 + 10**9


def test_a_key_is_gone_once_its_deadline_passes(store: Store) -> None:
    store("SET k v PX 100")
    store.now += 99
    assert store("GET k") == b"v"
    store.now += 1
    assert store("GET k") is None
    assert store("EXISTS k") == 0
    assert store("TTL k") == -2
    assert store("KEYS *") == []
    assert store("DBSIZE") == 1  # as Redis: counted until its deletion
    # a write at that time deletes it on every replica, at its own index
    assert store("SET k w NX") == OK
    assert store("TTL k") == -1


def test_ttl_answers_for_missing_and_persistent_keys(store: Store) -> None:
    assert store("TTL nothing") == -2
    assert store("PTTL nothing") == -2
    assert store("EXPIRETIME nothing") == -2
    store("SET k v")
    assert store("TTL k") == -1
    assert store("PEXPIRETIME k") == -1


def test_set_without_keepttl_drops_the_deadline_and_keepttl_keeps_it(store: Store) -> None:
    store("SET k v EX 10")
    assert store("SET k w KEEPTTL") == OK
    assert store("TTL k") == 10
    assert store("SET k x") == OK
    assert store("TTL k") == -1
    store("SET k v EX 10 EX 20")  # the same option again: the last counts
    assert store("TTL k") == 20


def test_incr_and_append_keep_the_deadline_getset_drops_it(store: Store) -> None:
    store("SET n 1 EX 100")
    assert store("INCR n") == 2
    assert store("APPEND n 0") == 2
    assert store("TTL n") == 100
    assert store("GETSET n 5") == b"20"
    assert store("TTL n") == -1


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("SET k v EX 0", invalid("set")),
        ("SET k v EX -1", invalid("set")),
        ("SET k v PX 9223372036854775807", invalid("set")),  # overflows once added
        ("SET k v EX 9223372036854775807", invalid("set")),
        ("SET k v EXAT 0", invalid("set")),
        ("SET k v EX abc", NOT_INT),
        ("SET k v EX 10 PX 10", SYNTAX),
        ("SET k v EX 10 KEEPTTL", SYNTAX),
        ("SET k v EX abc NX XX", SYNTAX),
        ("SETEX k 0 v", invalid("setex")),
        ("SETEX k abc v", NOT_INT),
        ("PSETEX k -1 v", invalid("psetex")),
        ("GETEX k EX 0", invalid("getex")),
        ("GETEX k PERSIST EX 10", SYNTAX),
        ("GETEX k EX 10 PERSIST", SYNTAX),
        ("GETEX k FOO", SYNTAX),
        ("GETEX k EX", SYNTAX),
        (
            "EXPIRE k 100 NX XX",
            ErrorReply("ERR NX and XX, GT or LT options at the same time are not compatible"),
        ),
        (
            "EXPIRE k 100 NX GT",
            ErrorReply("ERR NX and XX, GT or LT options at the same time are not compatible"),
        ),
        (
            "EXPIRE k 100 GT LT",
            ErrorReply("ERR GT and LT options at the same time are not compatible"),
        ),
        ("EXPIRE k abc", NOT_INT),
        ("EXPIRE k abc FOO", ErrorReply("ERR Unsupported option FOO")),
        ("EXPIRE k 9223372036854775807", invalid("expire")),
        ("EXPIREAT k 9223372036854775807", invalid("expireat")),
        ("PEXPIRE k 9223372036854775807", invalid("pexpire")),
    ],
)
def test_errors_as_redis_words_them(store: Store, line: str, error: ErrorReply) -> None:
    store("SET k v")
    assert store(line) == error
    assert store("GET k") == b"v"
    assert store("TTL k") == -1


def test_setex_psetex_setnx_getdel(store: Store) -> None:
    assert store("SETEX k 10 v") == OK
    assert store("TTL k") == 10
    assert store("PSETEX k 1500 v") == OK
    assert store("PTTL k") == 1500
    assert store("SETNX k w") == 0
    assert store("SETNX other w") == 1
    assert store("GETDEL other") == b"w"
    assert store("GETDEL other") is None
    assert store("EXISTS other") == 0


def test_getex(store: Store) -> None:
    assert store("GETEX nothing EX 10") is None
    store("SET k v")
    assert store("GETEX k") == b"v"
    assert store("GETEX k EX 10") == b"v"
    assert store("TTL k") == 10
    assert store("GETEX k PERSIST PERSIST") == b"v"
    assert store("TTL k") == -1
    assert store(f"GETEX k PXAT {T0}") == b"v"  # a deadline passed: the key goes
    assert store("EXISTS k") == 0


def test_expire_conditions(store: Store) -> None:
    assert store("EXPIRE nothing 10") == 0
    store("SET k v")
    assert store("EXPIRE k 100 XX") == 0
    assert store("EXPIRE k 100 GT") == 0  # no deadline counts as infinite
    assert store("EXPIRE k 100 LT") == 1
    assert store("EXPIRE k 50 NX") == 0
    assert store("EXPIRE k 200 GT") == 1
    assert store("EXPIRE k 10 XX GT") == 0
    assert store("PEXPIRE k 100 LT") == 1
    assert store("PTTL k") == 100
    assert store("PERSIST k") == 1
    assert store("PERSIST k") == 0
    assert store(f"PEXPIREAT k {T0 + 5}") == 1
    assert store("PTTL k") == 5
    assert store("EXPIRE k -5") == 1  # a deadline in the past deletes the key
    assert store("EXISTS k") == 0


def test_set_with_a_deadline_already_passed_leaves_no_key(store: Store) -> None:
    assert store("SET k v PXAT 1") == OK
    assert store("EXISTS k") == 0
    assert store("SET k v PXAT 1 GET") is None


def test_a_key_past_its_deadline_counts_as_missing_for_conditions(store: Store) -> None:
    # a lock whose holder vanished: the next SET NX takes it once the deadline passed
    assert store("SET lock a NX PX 30000") == OK
    store.now += 29_999
    assert store("SET lock b NX PX 30000") is None
    store.now += 1
    assert store("SET lock b NX PX 30000") == OK
    assert store("GET lock") == b"b"


def test_replicas_agree_whatever_their_own_clocks() -> None:
    """Two replicas apply the same entries (commands with their stamps); nothing else
    tells them the time, so they end in the same state with the same replies."""
    entries = [
        (T0, [b"SET", b"a", b"1", b"PX", b"100"]),
        (T0 + 50, [b"SET", b"b", b"2", b"EX", b"1"]),
        (T0 + 150, [b"SET", b"a", b"3", b"NX"]),
        (T0 + 160, [b"RAFT.EXPIRE", b"b"]),
        (T0 + 2000, [b"RAFT.EXPIRE", b"b"]),
        (T0 + 2001, [b"EXPIRE", b"a", b"1"]),
    ]
    replicas = [ReplicatedState(), ReplicatedState()]
    replies = [
        [state.apply_args(args, index, time_ms) for index, (time_ms, args) in enumerate(entries, 1)]
        for state in replicas
    ]
    assert replies[0] == replies[1] == [OK, OK, OK, 0, 1, 1]
    assert dict(replicas[0].store.records()) == dict(replicas[1].store.records())
    assert replicas[0].store.read([b"PEXPIRETIME", b"a"], 0) == T0 + 3001


def test_the_deadline_index_yields_due_keys_a_bounded_number_at_a_time(store: Store) -> None:
    for i in range(10):
        store(f"SET k{i} v PX {100 + i}")
    store("SET later v PX 1000")
    store("PERSIST k9")
    first = store.kv.due(T0 + 200, limit=4)
    assert len(first) == 4
    rest = store.kv.due(T0 + 200, limit=100)
    assert sorted(first + rest) == sorted(b"k%d" % i for i in range(9))
    assert store.kv.due(T0 + 200, limit=100) == []
    store.kv.requeue(first)  # their deletion was lost: they come again
    assert sorted(store.kv.due(T0 + 200, limit=100)) == sorted(first)
    assert store.kv.expire([*first, b"later"], T0 + 200) == 4
    assert store.kv.stats()["expires"] == 6  # k4..k8 and later
    assert store.kv.due(T0 + 1000, limit=100) == [b"later"]
