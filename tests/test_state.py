"""The replicated state: trioraft's own log commands beside the keyspace."""

from __future__ import annotations

from trioraft import kv
from trioraft.replies import ErrorReply
from trioraft.state import ReplicatedState, log_command

TOO_LONG = ErrorReply("ERR string exceeds maximum allowed size (proto-max-bulk-len)")


def test_append_is_proposed_with_the_value_limit_and_checked_as_it_applies() -> None:
    # two APPENDs taken while the value was 6 bytes long: the limit holds for the second
    # one against the value the first one left, on every replica alike
    first = log_command([b"append", b"k", b"abc"], 10)
    second = log_command([b"APPEND", b"k", b"defgh"], 10)
    assert first == [b"RAFT.APPEND", b"10", b"k", b"abc"]
    replicas = [ReplicatedState(), ReplicatedState()]
    for state in replicas:
        state.apply([b"SET", b"k", b"123456"])
        assert state.apply(kv.decode_command(kv.encode_command(first))) == 9
        assert state.apply(kv.decode_command(kv.encode_command(second))) == TOO_LONG
        assert state.apply([b"GET", b"k"]) == b"123456abc"
    assert replicas[0].store.snapshot() == replicas[1].store.snapshot()


def test_append_within_the_limit_and_on_a_missing_key() -> None:
    state = ReplicatedState()
    assert state.apply(log_command([b"APPEND", b"k", b"0123456789"], 10)) == 10
    assert state.apply(log_command([b"APPEND", b"new", b"01234567890"], 10)) == TOO_LONG
    assert state.apply([b"EXISTS", b"new"]) == 0


def test_other_commands_are_proposed_as_they_are() -> None:
    assert log_command([b"SET", b"k", b"v"], 10) == [b"SET", b"k", b"v"]


def test_a_malformed_bounded_append_is_an_error_reply() -> None:
    state = ReplicatedState()
    error = ErrorReply("ERR malformed 'raft.append' command")
    assert state.apply([b"RAFT.APPEND", b"x", b"k", b"v"]) == error
    assert state.apply([b"RAFT.APPEND", b"10", b"k"]) == error
    assert state.apply([b"EXISTS", b"k"]) == 0
