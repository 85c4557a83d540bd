"""A key-value store driven as the log drives it, for the state machine's tests."""

from __future__ import annotations

from trioraft.kvstore import data_commands
from trioraft.kvstore.store import KVStore
from trioraft.redis.replies import ErrorReply, Reply

#: the entry time the tests start at (ms since the epoch)
T0 = 1_800_000_000_000

#: Redis's error texts, written out here apart from the code that answers them
SYNTAX = ErrorReply("ERR syntax error")
NOT_INT = ErrorReply("ERR value is not an integer or out of range")


def arity(name: str) -> ErrorReply:
    """Redis's error for the command `name` given the wrong number of arguments."""
    return ErrorReply(f"ERR wrong number of arguments for '{name}' command")


def cmd(line: str) -> list[bytes]:
    """The command a line of words spells, as a client would send it."""
    return [word.encode() for word in line.split()]


class Store:
    """A store fed commands as entries at consecutive indices, at a time the test moves."""

    def __init__(self) -> None:
        self.kv = KVStore()
        self.now = T0
        self.index = 0

    def __call__(self, line: str) -> Reply:
        args = cmd(line)
        if data_commands.is_data_command(args[0]) and not data_commands.is_write(args):
            return self.kv.read(args, self.now)
        self.index += 1
        return self.kv.apply(args, self.index, self.now)
