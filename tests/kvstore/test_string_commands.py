"""The string and keyspace commands beyond GET and SET (store.py): MSETNX, GETRANGE,
SETRANGE, SET's and DELEX's value conditions, DIGEST, RENAME, RENAMENX, COPY, UNLINK,
TOUCH and RANDOMKEY, with Redis's replies and error texts (checked against a Redis 7.0
server where it has the command; GETRANGE as Redis 8 answers, IFNE, IFDEQ, IFDNE, DELEX
and DIGEST as Redis 8.4 documents them)."""

from __future__ import annotations

import random

import pytest
from harness.kv_store import T0, Store, cmd

from trioraft.kvstore import arguments, data_commands
from trioraft.kvstore.replicated import ReplicatedState, Transaction, log_command
from trioraft.redis.replies import OK, ErrorReply, Reply

SYNTAX = ErrorReply("ERR syntax error")
NOT_INT = ErrorReply("ERR value is not an integer or out of range")
TOO_LONG = ErrorReply("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
BAD_DIGEST = ErrorReply("ERR must be exactly 16 hexadecimal characters")
#: DIGEST of b"Hello world", as Redis's documentation shows it
HELLO_WORLD_DIGEST = b"b6acb9d84a38ff74"


@pytest.fixture
def store() -> Store:
    return Store()


def arity(name: str) -> ErrorReply:
    return ErrorReply(f"ERR wrong number of arguments for '{name}' command")


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("MSETNX a", arity("msetnx")),
        ("MSETNX a 1 b", arity("msetnx")),
        ("GETRANGE k 0", arity("getrange")),
        ("GETRANGE k x 1", NOT_INT),
        ("GETRANGE k 0 1.5", NOT_INT),
        ("SETRANGE k 1", arity("setrange")),
        ("SETRANGE k x v", NOT_INT),
        ("SETRANGE k -1 v", ErrorReply("ERR offset is out of range")),
        ("SETRANGE k 536870911 vv", TOO_LONG),
        ("SETRANGE k 9223372036854775807 v", TOO_LONG),
        ("SET k v IFNE", SYNTAX),
        ("SET k v IFNE a IFEQ b", SYNTAX),
        ("SET k v NX IFDEQ 0123456789abcdef", SYNTAX),
        ("SET k v IFDNE 0123456789abcdef XX", SYNTAX),
        ("SET k v IFDEQ 0123456789abcde", BAD_DIGEST),
        ("SET k v IFDNE 0123456789abcdefa", BAD_DIGEST),
        ("SET k v IFDEQ 0123456789abcdeg", BAD_DIGEST),
        ("DELEX", arity("delex")),
        ("DELEX k IFEQ", SYNTAX),
        ("DELEX k IFEQ a b", SYNTAX),
        ("DELEX k NX a", SYNTAX),
        ("DELEX k IFDEQ 12", BAD_DIGEST),
        ("DIGEST", arity("digest")),
        ("DIGEST a b", arity("digest")),
        ("RENAME a", arity("rename")),
        ("RENAMENX a b c", arity("renamenx")),
        ("COPY a", arity("copy")),
        ("COPY a a", ErrorReply("ERR source and destination objects are the same")),
        ("COPY a b FOO", SYNTAX),
        ("COPY a b DB", SYNTAX),
        ("COPY a b DB x", NOT_INT),
        ("COPY a b DB 1", ErrorReply("ERR DB index is out of range")),
        ("COPY a b DB -1", ErrorReply("ERR DB index is out of range")),
        (
            "COPY a b DB 99999999999",
            ErrorReply("ERR value is out of range, value must between -2147483648 and 2147483647"),
        ),
        ("UNLINK", arity("unlink")),
        ("TOUCH", arity("touch")),
        ("RANDOMKEY x", arity("randomkey")),
    ],
)
def test_errors_as_redis_words_them(line: str, error: ErrorReply) -> None:
    """Each is found before anything is proposed, whatever the data."""
    assert data_commands.validate(cmd(line)) == error


def test_msetnx_sets_all_or_none(store: Store) -> None:
    assert store("MSETNX a 1 b 2") == 1
    assert store("MSETNX a 9 c 3") == 0
    assert store("MGET a b c") == [b"1", b"2", None]
    store("SET gone v PX 10")
    store.now += 10
    assert store("MSETNX gone 1 d 4") == 1  # a key past its deadline is missing
    assert store("MGET gone d") == [b"1", b"4"]


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0, 4, b"Hello"),
        (-5, -1, b"World"),
        (5, 100, b"-World"),
        (100, 200, b""),
        (-1, -3, b""),
        (-100, 2, b"Hel"),
        # Redis 8: an end before the first byte selects nothing (Redis 7 gave "H")
        (0, -100, b""),
        (-100, -99, b""),
    ],
)
def test_getrange(store: Store, start: int, end: int, expected: bytes) -> None:
    store("SET s Hello-World")
    assert store(f"GETRANGE s {start} {end}") == expected


def test_getrange_of_a_missing_key_is_empty(store: Store) -> None:
    assert store("GETRANGE nothing 0 -1") == b""


def test_setrange_writes_over_pads_and_keeps_the_deadline(store: Store) -> None:
    store("SET s Hello-World EX 100")
    assert store("SETRANGE s 6 Redis") == 11
    assert store("GET s") == b"Hello-Redis"
    assert store("TTL s") == 100
    assert store("SETRANGE new 5 abc") == 8
    assert store("GET new") == b"\0\0\0\0\0abc"
    assert store("SETRANGE s 0 h") == 11
    assert store("GET s") == b"hello-Redis"


def test_setrange_of_nothing_changes_nothing(store: Store) -> None:
    store("SET s abc")
    revision = store("RAFT.REVISION s")
    assert store.kv.apply([b"SETRANGE", b"none", b"5", b""], 99, T0) == 0
    assert store("EXISTS none") == 0
    assert store.kv.apply([b"SETRANGE", b"s", b"99", b""], 99, T0) == 3
    assert store("RAFT.REVISION s") == revision


def test_setrange_in_the_log_carries_the_size_limit_of_the_node_that_took_it() -> None:
    state = ReplicatedState()
    assert state.apply_args(log_command([b"SETRANGE", b"k", b"6", b"abcd"], 10), 1, T0) == 10
    assert state.apply_args(log_command([b"setrange", b"k", b"7", b"abcd"], 10), 2, T0) == TOO_LONG
    assert state.store.read([b"GET", b"k"]) == b"\0" * 6 + b"abcd"
    malformed = ErrorReply("ERR malformed 'raft.setrange' command")
    assert state.apply_args([b"RAFT.SETRANGE", b"10", b"k", b"-1", b"x"], 3, T0) == malformed


@pytest.mark.parametrize(
    ("line", "before", "reply", "after"),
    [
        ("SET k new IFNE other", "old", OK, "new"),
        ("SET k new IFNE old", "old", None, "old"),
        ("SET k new IFNE old", None, OK, "new"),  # a missing key equals nothing
        ("SET k new IFNE old GET", None, None, "new"),
        ("SET k new IFNE old GET", "old", b"old", "old"),
        ("SET k new IFEQ old", None, None, None),
        ("SET k new ifdeq 0F3CA07A8CC8BF40", "old", OK, "new"),  # any case
        ("SET k new IFDEQ 0000000000000000", "old", None, "old"),
        ("SET k new IFDEQ 0f3ca07a8cc8bf40", None, None, None),
        ("SET k new IFDNE 0f3ca07a8cc8bf40", "old", None, "old"),
        ("SET k new IFDNE 0000000000000000", "old", OK, "new"),
        ("SET k new IFDNE 0000000000000000", None, OK, "new"),
    ],
)
def test_set_value_conditions(
    store: Store, line: str, before: str | None, reply: Reply, after: str | None
) -> None:
    assert arguments.digest(b"old") == b"0f3ca07a8cc8bf40"
    if before is not None:
        store(f"SET k {before}")
    assert store(line) == reply
    assert store("GET k") == (after.encode() if after is not None else None)


def test_set_with_a_condition_takes_the_new_deadline(store: Store) -> None:
    store("SET k old EX 10")
    assert store("SET k new IFEQ old PX 500") == OK
    assert store("PTTL k") == 500
    assert store("SET k newer IFEQ new KEEPTTL") == OK
    assert store("PTTL k") == 500


def test_digest(store: Store) -> None:
    store("SET k1 Hello world")  # the store splits words: set the value itself
    store.kv.apply([b"SET", b"k1", b"Hello world"], 50, T0)
    assert store("DIGEST k1") == HELLO_WORLD_DIGEST
    assert store("DIGEST nothing") is None
    # always 16 digits, leading zeros kept
    store.kv.apply([b"SET", b"z", b""], 51, T0)
    assert store("DIGEST z") == arguments.digest(b"") == b"2d06800538d394c2"


@pytest.mark.parametrize(
    ("condition", "deleted"),
    [
        ("", 1),
        ("IFEQ lock-token", 1),
        ("IFEQ other", 0),
        ("IFNE other", 1),
        ("IFNE lock-token", 0),
        (f"IFDEQ {arguments.digest(b'lock-token').decode().upper()}", 1),
        ("IFDEQ 0000000000000000", 0),
        ("IFDNE 0000000000000000", 1),
        (f"IFDNE {arguments.digest(b'lock-token').decode()}", 0),
    ],
)
def test_delex(store: Store, condition: str, deleted: int) -> None:
    store("SET k lock-token")
    assert store(f"DELEX k {condition}") == deleted
    assert store("EXISTS k") == 1 - deleted
    assert store(f"DELEX missing {condition}") == 0


def test_delex_of_a_key_past_its_deadline_deletes_nothing(store: Store) -> None:
    store("SET k token PX 10")
    store.now += 10
    assert store("DELEX k IFEQ token") == 0
    assert store("DELEX k") == 0


def test_rename_moves_the_value_and_the_deadline_with_a_new_revision(store: Store) -> None:
    store("SET a 1 EX 100")
    store("SET b 2")
    assert store("RENAME a b") == OK
    assert store("MGET a b") == [None, b"1"]
    assert store("TTL b") == 100
    assert store("RAFT.REVISION b") == store.index
    assert store("RENAME a c") == ErrorReply("ERR no such key")
    assert store("RENAMENX a c") == ErrorReply("ERR no such key")


def test_rename_to_itself_changes_nothing(store: Store) -> None:
    store("SET a 1 EX 100")
    revision = store("RAFT.REVISION a")
    assert store("RENAME a a") == OK
    assert store("RENAMENX a a") == 0
    assert store("RAFT.REVISION a") == revision
    assert store("TTL a") == 100


def test_renamenx_only_to_a_missing_key(store: Store) -> None:
    store("SET a 1")
    store("SET b 2")
    assert store("RENAMENX a b") == 0
    assert store("MGET a b") == [b"1", b"2"]
    store("SET c 3 PX 10")
    store.now += 10
    assert store("RENAMENX a c") == 1  # c is past its deadline: missing
    assert store("MGET a c") == [None, b"1"]
    assert store("TTL c") == -1


def test_a_key_past_its_deadline_cannot_be_renamed(store: Store) -> None:
    store("SET a 1 PX 10")
    store.now += 10
    assert store("RENAME a b") == ErrorReply("ERR no such key")


def test_copy(store: Store) -> None:
    store("SET a 1 EX 100")
    store("SET b 2")
    assert store("COPY a b") == 0
    assert store("COPY a b DB 0 REPLACE") == 1
    assert store("MGET a b") == [b"1", b"1"]
    assert store("TTL b") == 100
    assert store("RAFT.REVISION b") == store.index
    assert store("RAFT.REVISION a") < store.index
    assert store("COPY missing c") == 0
    store("SET a 3")  # the copy is its own value
    assert store("GET b") == b"1"
    assert store("TTL b") == 100


def test_unlink_and_touch_count_keys_as_del_and_exists(store: Store) -> None:
    store("MSET a 1 b 2")
    store("SET c 3 PX 10")
    store.now += 10
    assert store("TOUCH a b c missing a") == 3
    assert store("UNLINK a c missing") == 1
    assert store("TOUCH a b") == 1


def test_randomkey_never_answers_a_key_past_its_deadline(store: Store) -> None:
    assert store("RANDOMKEY") is None
    store("SET live v")
    for i in range(50):
        store(f"SET dead{i} v PX 10")
    store.now += 10
    store.kv.rng = random.Random(7)
    replies, hidden = set(), set()
    for _ in range(20):
        reply, hid = store.kv.read_hiding([b"RANDOMKEY"], store.now)
        replies.add(reply)
        hidden.update(hid)
    # a key met past its deadline is named for deletion; a live one, or none, answered
    assert replies <= {b"live", None}
    assert b"live" in replies
    assert hidden and all(key.startswith(b"dead") for key in hidden)


def test_randomkey_finds_every_key(store: Store) -> None:
    store("MSET a 1 b 2 c 3")
    store.kv.rng = random.Random(1)
    assert {store("RANDOMKEY") for _ in range(100)} == {b"a", b"b", b"c"}


NOT_A_FLOAT = ErrorReply("ERR value is not a valid float")
NAN_OR_INFINITY = ErrorReply("ERR increment would produce NaN or Infinity")


@pytest.mark.parametrize(
    ("start", "increment", "reply"),
    [
        # each reply is what Redis on x86-64 (80-bit long double) answers
        ("10.50", "0.1", b"10.6"),
        ("10.6", "-5", b"5.6"),
        ("5.0e3", "2.0e2", b"5200"),
        ("0.3", "1e-20", b"0.3"),
        ("0.3", "-0.30000000000000000001", b"0"),
        (None, "-0", b"0"),
        (None, "-1e-30", b"0"),
        (None, "0x1p3", b"8"),
        ("8", "0X.8P-1", b"8.25"),
        ("8.25", "+1.", b"9.25"),
        ("9.25", ".5", b"9.75"),
        (None, "3.0000000000000000000000001", b"3"),
        # a tie at the 18th decimal goes to even, as glibc's printf does
        (None, "0.000003814697265625", b"0.00000381469726562"),
        (None, "1.5e-17", b"0.00000000000000002"),
        (None, "2.5e-17", b"0.00000000000000002"),
        (None, "123456789012345678901234567890", b"123456789012345678899921813504"),
        (None, "18446744073709551617", b"18446744073709551616"),
        (None, "1e00000000000000000000000000001", b"10"),
        (None, "1.83e-4951", b"0"),  # rounds up to the smallest subnormal
        (None, "1.82e-4951", NOT_A_FLOAT),  # rounds down to 0: out of range
        (None, "1e-5000", NOT_A_FLOAT),
        (None, "1e5000", NOT_A_FLOAT),
        (None, "1.5e4932", NOT_A_FLOAT),
        (None, "nan", NOT_A_FLOAT),
        (None, "1e", NOT_A_FLOAT),
        (None, "0x", NOT_A_FLOAT),
        (None, "1,5", NOT_A_FLOAT),
        ("abc", "1", NOT_A_FLOAT),
        ("1e5000", "1", NOT_A_FLOAT),
        (None, "inf", NAN_OR_INFINITY),
        (None, "-INFINITY", NAN_OR_INFINITY),
    ],
)
def test_incrbyfloat(store: Store, start: str | None, increment: str, reply: Reply) -> None:
    if start is not None:
        store(f"SET k {start}")
    assert store(f"INCRBYFLOAT k {increment}") == reply
    assert store("GET k") == (reply if isinstance(reply, bytes) else start and start.encode())


def test_incrbyfloat_past_the_largest_value_is_refused(store: Store) -> None:
    store("INCRBYFLOAT k 1e4932")
    assert store("INCRBYFLOAT k 1e4932") == NAN_OR_INFINITY
    large = store("GET k")
    assert isinstance(large, bytes) and len(large) == 4933
    assert store("INCRBYFLOAT k 1") == large  # 1 is far below its last place


def test_incrbyfloat_keeps_the_deadline_and_rejects_a_blank_or_a_nul(store: Store) -> None:
    store("SET k 1 EX 100")
    assert store("INCRBYFLOAT k 1.5") == b"2.5"
    assert store("TTL k") == 100
    for increment in (b" 1", b"1 ", b"", b"1\0", b"\0"):
        assert data_commands.validate([b"INCRBYFLOAT", b"k", increment]) == NOT_A_FLOAT


def test_randomkey_applied_in_a_transaction_leaves_replicas_alike() -> None:
    """Inside MULTI it is applied on every replica, each choosing its own key: it must
    delete nothing, or the replicas would part."""
    replicas = [ReplicatedState(), ReplicatedState()]
    for seed, state in enumerate(replicas):
        state.store.rng = random.Random(seed)
        state.apply_args([b"SET", b"live", b"v"], 1, T0)
        for i in range(20):
            state.apply_args([b"SET", b"dead%d" % i, b"v", b"PX", b"10"], 2 + i, T0)
        transaction = Transaction({}, [[b"RANDOMKEY"]] * 10).command()
        assert state.apply_args(transaction, 30, T0 + 10) == [b"live"] * 10
    assert dict(replicas[0].store.records()) == dict(replicas[1].store.records())
    assert len(replicas[0].store) == 21
