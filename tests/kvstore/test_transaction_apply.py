"""Transactions in the state machine: one entry, its watched revisions checked as it
applies, its commands run whole; and the queue a connection builds after MULTI."""

from __future__ import annotations

import pytest

from trioraft.kvstore import data_commands
from trioraft.kvstore.replicated import ReplicatedState, Transaction, log_command
from trioraft.redis.replies import NULL_ARRAY, OK, ErrorReply, Reply
from trioraft.redis.transaction import NOT_ALLOWED, QUEUED, Queue

MALFORMED = ErrorReply("ERR malformed 'raft.exec' command")
NOT_AN_INTEGER = ErrorReply("ERR value is not an integer or out of range")


class Replica(ReplicatedState):
    """A replicated state fed entries at the indices and times the test gives."""

    def at(self, index: int, args: list[bytes], time_ms: int = 0) -> Reply:
        """Apply `args` as the entry at `index`, having gone through the log's encoding."""
        return self.apply(data_commands.encode_command(args), index, time_ms)

    def transaction(
        self, index: int, watched: dict[bytes, int | None], *commands: list[bytes]
    ) -> Reply:
        return self.at(index, Transaction(watched, list(commands)).command())

    def revision(self, key: bytes) -> Reply:
        return self.store.read([b"RAFT.REVISION", key], 0)


def test_a_transaction_runs_its_commands_in_order_and_answers_their_replies() -> None:
    state = Replica()
    replies = state.transaction(
        7, {}, [b"SET", b"a", b"1"], [b"INCR", b"a"], [b"GET", b"a"], [b"MGET", b"a", b"b"]
    )
    assert replies == [OK, 2, b"2", [b"2", None]]
    # every key it wrote has the transaction's index as its revision
    assert state.revision(b"a") == 7


def test_an_error_inside_stops_none_of_the_other_commands() -> None:
    # as Redis: no rollback; the error takes its place in the array
    state = Replica()
    state.at(1, [b"SET", b"s", b"text"])
    replies = state.transaction(
        2, {}, [b"INCR", b"s"], [b"SET", b"x", b"1", b"BAD"], [b"INCR", b"n"]
    )
    assert replies == [NOT_AN_INTEGER, ErrorReply("ERR syntax error"), 1]


def test_append_inside_carries_its_limit() -> None:
    state = Replica()
    command = log_command([b"APPEND", b"k", b"abcdef"], 4)
    assert state.transaction(1, {}, [b"SET", b"k", b"ab"], command) == [
        OK,
        ErrorReply("ERR string exceeds maximum allowed size (proto-max-bulk-len)"),
    ]


def test_unchanged_watched_keys_let_it_run() -> None:
    state = Replica()
    state.at(3, [b"SET", b"a", b"1"])
    assert state.transaction(9, {b"a": 3, b"missing": None}, [b"INCR", b"a"]) == [2]


@pytest.mark.parametrize(
    ("watched", "between"),
    [
        # written after WATCH, also with the same value
        ({b"a": 3}, [b"SET", b"a", b"1"]),
        # deleted after WATCH
        ({b"a": 3}, [b"DEL", b"a"]),
        # missing at WATCH, created after
        ({b"new": None}, [b"SET", b"new", b"x"]),
        # only its deadline changed
        ({b"a": 3}, [b"EXPIRE", b"a", b"100"]),
    ],
)
def test_a_watched_key_written_since_makes_it_answer_the_null_array(
    watched: dict[bytes, int | None], between: list[bytes]
) -> None:
    state = Replica()
    state.at(3, [b"SET", b"a", b"1"])
    state.at(4, between)
    before = list(state.store.records())
    assert state.transaction(5, watched, [b"SET", b"a", b"changed"], [b"SET", b"z", b"1"]) == (
        NULL_ARRAY
    )
    assert list(state.store.records()) == before


def test_a_watched_key_past_its_deadline_by_the_entrys_time_counts_as_written() -> None:
    # seen alive at WATCH (revision 3), gone by the time the entry applies: an expiry is
    # a write, even before the leader's deletion of it applies
    state = Replica()
    state.at(3, [b"SET", b"a", b"1", b"PX", b"100"], time_ms=1_000)
    assert state.at(4, Transaction({b"a": 3}, [[b"GET", b"a"]]).command(), 1_050) == [b"1"]
    assert state.at(5, Transaction({b"a": 3}, [[b"GET", b"a"]]).command(), 1_100) == NULL_ARRAY


def test_an_empty_transaction_only_checks_its_watched_keys() -> None:
    state = Replica()
    assert state.transaction(1, {b"a": None}) == []
    state.at(2, [b"SET", b"a", b"1"])
    assert state.transaction(3, {b"a": None}) == NULL_ARRAY


@pytest.mark.parametrize(
    "args",
    [
        [b"RAFT.EXEC"],
        [b"RAFT.EXEC", b"x"],
        [b"RAFT.EXEC", b"-1"],
        [b"RAFT.EXEC", b"1", b"key"],
        [b"RAFT.EXEC", b"1", b"key", b"notanumber"],
        [b"RAFT.EXEC", b"0", b"not msgpack \xc1"],
        [b"RAFT.EXEC", b"0", data_commands.encode_command([])],
    ],
)
def test_a_malformed_transaction_is_an_error_reply_and_changes_nothing(args: list[bytes]) -> None:
    state = Replica()
    assert state.at(1, args) == MALFORMED
    assert len(state.store) == 0


def test_the_entry_round_trips() -> None:
    transaction = Transaction({b"a": 0, b"b": None, b"c": 2**62}, [[b"SET", b"k", b"\x00"]])
    command = transaction.command()
    assert command[:8] == [b"RAFT.EXEC", b"3", b"a", b"0", b"b", b"", b"c", b"%d" % 2**62]
    assert Transaction.parse(command) == transaction


def test_the_log_commands_of_a_transaction_cannot_run_inside_one() -> None:
    state = Replica()
    inner = Transaction({}, [[b"SET", b"k", b"v"]]).command()
    replies = state.transaction(1, {}, inner, [b"RAFT.INCARNATION", b"n1", b"x"])
    assert isinstance(replies, list)
    assert all(isinstance(reply, ErrorReply) for reply in replies)
    assert len(state.store) == 0
    assert state.incarnations == {}


# ---- the queue after MULTI ----------------------------------------------------------


def queue(max_commands: int = 10, max_bytes: int = 100) -> Queue:
    return Queue(max_commands, max_bytes)


def test_valid_commands_are_queued() -> None:
    q = queue()
    assert q.add([b"set", b"k", b"v"]) == QUEUED
    assert q.add([b"PING"]) == QUEUED
    # errors that depend on the arguments' meaning come from EXEC, as in Redis
    assert q.add([b"SET", b"k", b"v", b"BAD"]) == QUEUED
    assert q.commands == [[b"set", b"k", b"v"], [b"PING"], [b"SET", b"k", b"v", b"BAD"]]
    assert not q.failed


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ([b"FOO", b"x"], "ERR unknown command 'FOO', with args beginning with: 'x' "),
        ([b"GET"], "ERR wrong number of arguments for 'get' command"),
        ([b"ECHO"], "ERR wrong number of arguments for 'echo' command"),
        ([b"UNWATCH", b"x"], "ERR wrong number of arguments for 'unwatch' command"),
        ([b"KEYS", b"*"], NOT_ALLOWED.text),
        ([b"raft.status"], NOT_ALLOWED.text),
    ],
)
def test_a_command_refused_fails_the_transaction(args: list[bytes], error: str) -> None:
    q = queue()
    assert q.add(args) == ErrorReply(error)
    assert q.failed
    # later commands are still checked and answered, but no longer kept
    assert q.add([b"GET", b"k"]) == QUEUED
    assert q.commands == []


def test_the_limits_fail_the_transaction_with_an_error_naming_them() -> None:
    q = queue(max_commands=2)
    assert q.add([b"INCR", b"a"]) == QUEUED
    assert q.add([b"INCR", b"a"]) == QUEUED
    assert q.add([b"INCR", b"a"]) == ErrorReply(
        "ERR transaction too large: more than 2 commands queued (limits.max_transaction_commands)"
    )
    assert q.failed
    q = queue(max_bytes=10)
    assert q.add([b"SET", b"k", b"123456"]) == QUEUED  # 10 bytes
    assert q.add([b"GET", b"k"]) == ErrorReply(
        "ERR transaction too large: more than 10 bytes queued (limits.max_transaction_bytes)"
    )
    assert q.failed
