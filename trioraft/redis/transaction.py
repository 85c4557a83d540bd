"""A connection's transaction as the client builds it: MULTI, then the commands it queues.

The rules are Redis's. After MULTI a command is not run but checked and queued: an unknown
command or a wrong number of arguments is answered with its error at once and marks the
transaction failed (EXEC then discards it with EXECABORT); anything else answers +QUEUED.
The commands that manage the transaction (`RUN_AT_ONCE`) run at once instead. Errors that
depend on the arguments' meaning or on the data come from EXEC, in its array, as in Redis.

trioraft refuses a few commands inside a transaction (`REFUSED`): its own admin commands,
which wait on other nodes, and KEYS, which would read the whole keyspace in one step of
every replica's state machine (SCAN reads it in bounded pages).

EXEC turns the queue into one log entry (`state.Transaction`): the data commands run
there, on every replica at the same index; the connection commands (PING, ECHO, CLIENT,
...) are answered by the node that runs EXEC, in their place in the array.
"""

from __future__ import annotations

from typing import Final

import attrs

from trioraft.kvstore import arguments, data_commands
from trioraft.redis.replies import ErrorReply, Reply, SimpleString

QUEUED: Final = SimpleString("QUEUED")
EXECABORT: Final = ErrorReply("EXECABORT Transaction discarded because of previous errors.")
NOT_ALLOWED: Final = ErrorReply("ERR Command not allowed inside a transaction")

#: commands that run at once inside a transaction, as in Redis
RUN_AT_ONCE: Final = frozenset((b"MULTI", b"EXEC", b"DISCARD", b"WATCH", b"QUIT"))
#: commands refused inside a transaction (see the module's docstring)
REFUSED: Final = frozenset(
    (b"RAFT.STATUS", b"RAFT.SNAPSHOT", b"RAFT.BACKUP", b"RAFT.MEMBER", b"RAFT.TRANSFER", b"KEYS")
)

#: the arity of the connection commands, as Redis counts it (positive: exactly; negative:
#: at least), checked when a transaction queues them or runs them at once
CONNECTION_ARITY: Final = {
    b"PING": -1,
    b"ECHO": 2,
    b"QUIT": -1,
    b"AUTH": -2,
    b"SELECT": 2,
    b"READONLY": 1,
    b"READWRITE": 1,
    b"INFO": -1,
    b"CLIENT": -2,
    b"COMMAND": -1,
    b"CONFIG": -2,
    b"HELLO": -1,
    b"MULTI": 1,
    b"EXEC": 1,
    b"DISCARD": 1,
    b"WATCH": -2,
    b"UNWATCH": 1,
}


def check_arity(args: list[bytes]) -> ErrorReply | None:
    """The wrong-number-of-arguments error for the connection command `args`, or None."""
    arity = CONNECTION_ARITY.get(args[0].upper())
    if arity is None or (len(args) == arity if arity > 0 else len(args) >= -arity):
        return None
    return arguments.arity_error(args[0].lower().decode())


def exec_abort(problem: ErrorReply) -> ErrorReply:
    """EXEC's reply when EXEC itself is malformed inside a transaction (which ends it)."""
    return ErrorReply(f"EXECABORT Transaction discarded because of: {problem.text[4:]}")


@attrs.define
class Queue:
    """The commands a connection queued since MULTI, within its limits."""

    #: the most commands, and bytes of arguments, one transaction may queue
    max_commands: int
    max_bytes: int
    #: the commands, in order
    commands: list[list[bytes]] = attrs.Factory(list)
    #: the bytes of their arguments, and of the keys watched before MULTI
    size: int = 0
    #: set by the first error met while queueing: EXEC discards the transaction
    failed: bool = False

    def add(self, args: list[bytes]) -> Reply:
        """Queue `args` (neither a `RUN_AT_ONCE` command nor one from before AUTH); its
        reply: +QUEUED, or the error that fails the transaction."""
        problem = self._problem(args)
        if problem is not None:
            self.failed = True
            return problem
        if not self.failed:  # a failed transaction never runs: keep nothing more
            self.commands.append(args)
            self.size += _size(args)
        return QUEUED

    def _problem(self, args: list[bytes]) -> ErrorReply | None:
        name = args[0].upper()
        if name in REFUSED:
            return NOT_ALLOWED
        problem = check_arity(args) if name in CONNECTION_ARITY else data_commands.check_known(args)
        if problem is not None:
            return problem
        if len(self.commands) >= self.max_commands:
            return ErrorReply(
                f"ERR transaction too large: more than {self.max_commands} commands "
                "queued (limits.max_transaction_commands)"
            )
        if self.size + _size(args) > self.max_bytes:
            return ErrorReply(
                f"ERR transaction too large: more than {self.max_bytes} bytes queued "
                "(limits.max_transaction_bytes)"
            )
        return None


def _size(args: list[bytes]) -> int:
    return sum(len(arg) for arg in args)
