"""The data commands as the rest of the node meets them: whether a name is one, whether
a command writes, whether it may run; and a command's form in a log entry.

`validate` rejects, before anything is proposed to the log, what Redis would reject
whatever the data: unknown commands, wrong argument counts, and what each command's
argument check finds (arguments.py), all with Redis's error texts. Errors that depend on
the data (INCR of a non-integer, overflow) come from `KVStore.apply`, which replicas
compute identically. The table of commands these answer from lies beside the store's
methods that run them (store.py).
"""

from __future__ import annotations

import msgpack  # type: ignore[import-untyped]

from trioraft.kvstore.store import COMMANDS, resolve
from trioraft.redis.replies import ErrorReply


def is_data_command(name: bytes) -> bool:
    """Whether `name` (any case) is a data command."""
    return name.lower() in COMMANDS


def is_write(args: list[bytes]) -> bool:
    """Whether the data command `args` writes; KeyError when it is not a data command."""
    return COMMANDS[args[0].lower()].write


def check_known(args: list[bytes]) -> ErrorReply | None:
    """The error for an unknown command or a wrong number of arguments, or None: what
    Redis checks before queueing a command in a transaction (the other errors come when
    the transaction runs)."""
    spec = resolve(args)
    return spec if isinstance(spec, ErrorReply) else None


def validate(args: list[bytes]) -> ErrorReply | None:
    """The error Redis would answer whatever the data, or None when `args` may be run."""
    spec = resolve(args)
    if isinstance(spec, ErrorReply):
        return spec
    return None if spec.check is None else spec.check(args)


def encode_command(args: list[bytes]) -> bytes:
    """The log entry payload for a command."""
    payload: bytes = msgpack.packb(args, use_bin_type=True)
    return payload


def decode_command(data: bytes) -> list[bytes]:
    """The command in a log entry payload; ValueError when it holds anything else."""
    try:
        args = msgpack.unpackb(data, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ValueError(f"not an encoded command: {exc}") from exc
    if type(args) is not list or not all(type(arg) is bytes for arg in args):
        raise ValueError("not an encoded command: expected an array of binary strings")
    return args
