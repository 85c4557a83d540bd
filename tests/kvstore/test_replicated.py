"""The replicated state: trioraft's own log commands beside the keyspace."""

from __future__ import annotations

import itertools

from trioraft.kvstore import data_commands
from trioraft.kvstore.replicated import ReplicatedState, log_command
from trioraft.redis.replies import ErrorReply, Reply

TOO_LONG = ErrorReply("ERR string exceeds maximum allowed size (proto-max-bulk-len)")


class Replica(ReplicatedState):
    """A replicated state fed entries at consecutive indices, all stamped at time 0."""

    def __init__(self) -> None:
        super().__init__()
        self._indices = itertools.count(1)

    def run(self, args: list[bytes]) -> Reply:
        return self.apply_args(args, next(self._indices), 0)


def test_append_is_proposed_with_the_value_limit_and_checked_as_it_applies() -> None:
    # two APPENDs taken while the value was 6 bytes long: the limit holds for the second
    # one against the value the first one left, on every replica alike
    first = log_command([b"append", b"k", b"abc"], 10)
    second = log_command([b"APPEND", b"k", b"defgh"], 10)
    assert first == [b"RAFT.APPEND", b"10", b"k", b"abc"]
    replicas = [Replica(), Replica()]
    for state in replicas:
        state.run([b"SET", b"k", b"123456"])
        assert state.run(data_commands.decode_command(data_commands.encode_command(first))) == 9
        assert (
            state.run(data_commands.decode_command(data_commands.encode_command(second)))
            == TOO_LONG
        )
        assert state.run([b"GET", b"k"]) == b"123456abc"
    assert list(replicas[0].store.items()) == list(replicas[1].store.items())


def test_append_within_the_limit_and_on_a_missing_key() -> None:
    state = Replica()
    assert state.run(log_command([b"APPEND", b"k", b"0123456789"], 10)) == 10
    assert state.run(log_command([b"APPEND", b"new", b"01234567890"], 10)) == TOO_LONG
    assert state.run([b"EXISTS", b"new"]) == 0


def test_other_commands_are_proposed_as_they_are() -> None:
    assert log_command([b"SET", b"k", b"v"], 10) == [b"SET", b"k", b"v"]


def test_a_malformed_bounded_append_is_an_error_reply() -> None:
    state = Replica()
    error = ErrorReply("ERR malformed 'raft.append' command")
    assert state.run([b"RAFT.APPEND", b"x", b"k", b"v"]) == error
    assert state.run([b"RAFT.APPEND", b"10", b"k"]) == error
    assert state.run([b"EXISTS", b"k"]) == 0


def test_a_capture_is_the_state_when_it_began_whatever_applies_meanwhile() -> None:
    state = Replica()
    state.run([b"MSET", *(item for i in range(30_000) for item in (b"k%d" % i, b"%d" % i))])
    state.run([b"RAFT.INCARNATION", b"n1", b"first"])
    expected = dict(state.store.items())
    with state.begin_capture() as capture:
        steps = 0
        while not capture.done:
            capture.step()
            steps += 1
            state.run([b"SET", b"k%d" % steps, b"changed"])
            state.run([b"APPEND", b"k%d" % (steps + 1), b"+"])
            state.run([b"DEL", b"k%d" % (steps + 2)])
            state.run([b"SET", b"new%d" % steps, b"new"])
            state.run([b"RAFT.INCARNATION", b"n%d" % (steps + 1), b"later"])
            if steps == 2:
                state.run([b"FLUSHALL"])
    assert steps >= 3
    assert capture.keys == len(expected)
    restored = ReplicatedState.restore(b"".join(capture.serialize()))
    assert dict(restored.store.items()) == expected
    assert restored.incarnations == {"n1": "first"}
    assert capture.slices == [], "serializing frees the copy"
