"""The simulated clusters' replicated state machine: a dict of keys to values, changed by
client commands that the log carries as msgpack (`encode_command`), with deadlines and time
taken from the stamps of expiry runs."""

from __future__ import annotations

from typing import TypeAlias

import msgpack  # type: ignore[import-untyped]

from sim.linearizability import Arg, Kind
from trioraft.core.messages import (
    Entry,
    EntryKind,
)
from trioraft.runtime.stamps import time_of, unstamp

KV: TypeAlias = dict[bytes, bytes]


def encode_command(op_id: int, kind: Kind, key: bytes, args: tuple[Arg, ...]) -> bytes:
    data: bytes = msgpack.packb([op_id, kind.value, key, *args])
    return data


def decode_command(data: bytes) -> tuple[int, Kind, bytes, list[object]]:
    op_id, kind, key, *args = msgpack.unpackb(data)
    return op_id, Kind(kind), key, args


def _decimal(value: bytes) -> int | None:
    try:
        number = int(value)
    except ValueError:
        return None
    if b"%d" % number != value or not -(2**63) <= number < 2**63:
        return None
    return number


#: where the state keeps a key's deadline (Unix ms, decimal) and its time (the latest
#: entry's stamp): in the same map, so that snapshots and state comparisons include them
DEADLINE = b"\0deadline:"
TIME = b"\0time"


def deadline_of(kv: KV, key: bytes) -> int:
    """The key's deadline (Unix ms), 0 for none."""
    return int(kv.get(DEADLINE + key, b"0"))


def time_of_state(kv: KV) -> int:
    return int(kv.get(TIME, b"0"))


def apply_entry(kv: KV, data: bytes) -> tuple[int, object, list[bytes]]:
    """Apply a command entry, as trioraft's state machine treats time: the entry's stamp
    (if any) is the state's time; a key whose deadline has passed by then is deleted before
    the command sees it. Returns the op id (0 for none), the reply, and the keys that went
    past their deadline here."""
    time_ms, command = unstamp(data)
    if time_ms is not None:
        kv[TIME] = b"%d" % time_ms
    op_id, kind, key, args = decode_command(command)
    now = time_of_state(kv)
    # EXPIRE: the leader's deletion of keys past their deadline, named in its arguments
    keys = [arg for arg in args if isinstance(arg, bytes)] if kind is Kind.EXPIRE else [key]
    expired = [k for k in keys if k in kv and 0 < deadline_of(kv, k) <= now]
    for gone in expired:
        del kv[gone], kv[DEADLINE + gone]
    if kind is Kind.EXPIRE:
        return op_id, None, expired
    return op_id, apply_command(kv, kind, key, args, now), expired


def apply_command(kv: KV, kind: Kind, key: bytes, args: list[object], now: int = 0) -> object:
    """Apply one command to the key-value state; returns its reply. The meaning of each
    kind is the model of `linearizability`. A set with a second argument, a TTL in ms,
    gives the key the deadline `now` + TTL; any other set drops the deadline."""
    current = kv.get(key)
    if kind is Kind.GET:
        return current
    if kind is Kind.SET:
        value = args[0]
        assert isinstance(value, bytes)
        kv[key] = value
        kv.pop(DEADLINE + key, None)
        if len(args) == 2:
            ttl = args[1]
            assert isinstance(ttl, int)
            kv[DEADLINE + key] = b"%d" % (now + ttl)
        return None
    if kind is Kind.DEL:
        kv.pop(DEADLINE + key, None)
        return 0 if kv.pop(key, None) is None else 1
    if kind is Kind.INCR:
        by = args[0]
        assert isinstance(by, int)
        number = 0 if current is None else _decimal(current)
        if number is None or not -(2**63) <= number + by < 2**63:
            return None
        kv[key] = b"%d" % (number + by)
        return number + by
    expected, value = args
    assert isinstance(value, bytes)
    if current != expected:
        return False
    kv[key] = value
    kv.pop(DEADLINE + key, None)
    return True


def pack_kv(kv: KV) -> bytes:
    data: bytes = msgpack.packb(kv)
    return data


def unpack_kv(data: bytes) -> KV:
    kv: KV = msgpack.unpackb(data)
    return kv


EMPTY_KV = pack_kv({})
FILLER = encode_command(0, Kind.GET, b"", ())


def stamp_of(entry: Entry) -> int | None:
    return time_of(entry.data) if entry.kind is EntryKind.COMMAND else None
