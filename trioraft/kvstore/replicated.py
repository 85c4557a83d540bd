"""The node's replicated state: the key-value store plus the cluster's own records.

Besides client commands, the log carries trioraft's own commands, whose names start with
`RAFT.` so they can never clash with a client's:

- `RAFT.INCARNATION <node id> <incarnation>`: records the incarnation (the random id a
  data dir is given when it is created) of a member the first time it joins. A member
  whose data dir was wiped comes back with a new incarnation; its registration is refused,
  because it has forgotten votes and acknowledged entries (see incarnation.py).
- `RAFT.APPEND <max length> <key> <tail>`: a client's APPEND as the log carries it, with
  the value size limit of the node that took it. The limit is checked as the entry
  applies, against the value every replica holds at that point of the log: the node that
  took the command could not check it, as writes before it may still be in flight.
- `RAFT.SETRANGE <max length> <key> <offset> <value>`: a client's SETRANGE, likewise with
  the value size limit of the node that took it.
- `RAFT.EXPIRE <key> ...`: the leader's deletion of keys whose deadline passed on its
  clock (expiry.py). Each key goes if its deadline has passed by the entry's time (at
  least the leader's clock when it proposed the deletion); a key given a later deadline
  meanwhile stays.
- `RAFT.EXEC <n> (<key> <revision>){n} <command>...`: a client's transaction (MULTI ...
  EXEC) as one entry, see `Transaction`. It applies whole, on every replica, at its
  index: nothing else runs between its commands.

A snapshot holds both parts and the time: msgpack `[format, incarnations, time, [keyspace
slice, ...]]` (format 3; format 2, from before entries carried a time, has no time), each
slice the `snapshot_format.serialize` bytes of about `SLICE_KEYS` keys. The state is
copied for it a slice at a time (`Capture`), in the event loop, while commands go on
applying: the copy is of the state when the capture began all the same (see
keyspace.py), and no step of it holds the loop up for more than a slice. Slicing also
bounds how long the worker thread that serializes or loads a snapshot holds the GIL at a
stretch (msgpack does a whole call without letting go): between two slices the event
loop gets its turn.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sized
from typing import Final, Self

import attrs
import msgpack  # type: ignore[import-untyped]

from trioraft.closing import ClosedOnExit
from trioraft.core.messages import NodeId
from trioraft.kvstore import arguments, data_commands, snapshot_format
from trioraft.kvstore.packed import Stored
from trioraft.kvstore.store import FrozenStore, KVStore
from trioraft.redis.replies import NULL_ARRAY, OK, ErrorReply, Reply
from trioraft.redis.resp import decode_reply, encode
from trioraft.runtime.incarnation import wiped_message

REGISTER: Final = b"RAFT.INCARNATION"
BOUNDED_APPEND: Final = b"RAFT.APPEND"
BOUNDED_SETRANGE: Final = b"RAFT.SETRANGE"
EXPIRE: Final = b"RAFT.EXPIRE"
TRANSACTION: Final = b"RAFT.EXEC"
_REVISION: Final = b"RAFT.REVISION"
_SNAPSHOT_FORMAT: Final = 3
#: keys per keyspace slice: copying one takes well under a millisecond, packing or
#: unpacking one about a millisecond
SLICE_KEYS: Final = 10_000


def log_command(args: list[bytes], max_value_bytes: int) -> list[bytes]:
    """The command to propose for a client's valid data command `args`: APPEND and SETRANGE
    carry the value size limit, the others go as they are."""
    name = args[0].upper()
    if name == b"APPEND":
        return [BOUNDED_APPEND, b"%d" % max_value_bytes, *args[1:]]
    if name == b"SETRANGE":
        return [BOUNDED_SETRANGE, b"%d" % max_value_bytes, *args[1:]]
    return args


@attrs.frozen
class Transaction:
    """A transaction as its entry carries it: the keys the client watched, each with the
    revision it saw (None: the key was missing), and the commands it queued (as
    `log_command` gives them). When the entry applies, a watched key whose revision is
    not the one seen (written since, deleted, created, or gone past its deadline by the
    entry's time) makes the whole transaction answer the null array and change nothing;
    else its commands run one after the other, and it answers the array of their
    replies (an error among them stops none of the others, as in Redis)."""

    watched: Mapping[bytes, int | None]
    commands: list[list[bytes]]

    def command(self) -> list[bytes]:
        """The entry's command: `RAFT.EXEC <n> (<key> <revision or empty>){n}` and each
        queued command encoded (`data_commands.encode_command`)."""
        args = [TRANSACTION, b"%d" % len(self.watched)]
        for key, revision in self.watched.items():
            args += [key, b"" if revision is None else b"%d" % revision]
        args += [data_commands.encode_command(command) for command in self.commands]
        return args

    @classmethod
    def parse(cls, args: list[bytes]) -> Transaction | None:
        """The transaction in a `command`, or None when `args` is not one."""
        count = arguments.parse_int(args[1]) if len(args) > 1 else None
        if count is None or count < 0 or len(args) < 2 + 2 * count:
            return None
        watched: dict[bytes, int | None] = {}
        for i in range(2, 2 + 2 * count, 2):
            revision = arguments.parse_int(args[i + 1])
            if args[i + 1] and revision is None:
                return None
            watched[args[i]] = revision
        try:
            commands = [data_commands.decode_command(command) for command in args[2 + 2 * count :]]
        except ValueError:
            return None
        return cls(watched, commands) if all(commands) else None


class Capture(ClosedOnExit):
    """A copy of the state as it was when `ReplicatedState.begin_capture` was called, taken
    a slice at a time by `step` while the state goes on changing. Close it once done or
    abandoned."""

    def __init__(self, incarnations: dict[str, str], time_ms: int, keyspace: FrozenStore) -> None:
        #: the member incarnations
        self.incarnations = incarnations
        #: the state machine's time
        self.time = time_ms
        #: the keyspace slices copied so far, in order, none empty: the keys and their
        #: stored records (the objects the keyspace holds, not copies)
        self.slices: list[dict[bytes, Stored]] = []
        #: the number of keys in `slices`
        self.keys = 0
        self._keyspace = keyspace

    @property
    def done(self) -> bool:
        return self._keyspace.done

    def step(self) -> None:
        """Copy the next slice of about `SLICE_KEYS` keys."""
        part = self._keyspace.take(SLICE_KEYS)
        if part:
            self.slices.append(part)
            self.keys += len(part)

    def close(self) -> None:
        self._keyspace.close()

    def serialize(self) -> Iterator[bytes]:
        """The snapshot bytes of the finished capture, in pieces: the head, then each
        slice packed as it is asked for and let go, so that the whole snapshot is never
        in memory at once (the snapshot store writes each piece as it comes). Meant for a
        worker thread; it can be read once."""
        packer = msgpack.Packer(use_bin_type=True)
        parts = self.slices
        parts.reverse()
        # the outer list is laid out by hand: msgpack would build it in one long call
        yield b"".join(
            [
                packer.pack_array_header(4),
                packer.pack(_SNAPSHOT_FORMAT),
                packer.pack(self.incarnations),
                packer.pack(self.time),
                packer.pack_array_header(len(parts)),
            ]
        )
        while parts:
            yield packer.pack(snapshot_format.serialize(parts.pop()))


class ReplicatedState:
    """The state machine the runtime replicates (runtime/statemachine.py): its results
    are replies, encoded as RESP between nodes."""

    def __init__(
        self,
        store: KVStore | None = None,
        incarnations: dict[str, str] | None = None,
        time_ms: int = 0,
    ) -> None:
        #: the client-visible keyspace
        self.store = store or KVStore()
        #: each member's data dir incarnation, as first registered
        self.incarnations: dict[str, str] = incarnations or {}
        #: the time (Unix ms) of the latest stamped entry applied: the state machine's
        #: only clock (see runtime/stamps.py)
        self.time = time_ms

    def apply(self, command: bytes, index: int, time_ms: int | None) -> Reply:
        return self.apply_args(data_commands.decode_command(command), index, time_ms)

    def apply_args(self, args: list[bytes], index: int, time_ms: int | None) -> Reply:
        """Apply the command of the log entry at `index`, stamped with `time_ms` (None:
        an entry from before stamps, which leaves the time as it was)."""
        if time_ms is not None:
            self.time = time_ms
        if args[0] == REGISTER:
            return self._register(args)
        if args[0] == TRANSACTION:
            return self._transaction(args, index)
        return self._apply_command(args, index)

    def _apply_command(self, args: list[bytes], index: int) -> Reply:
        """A client's command (one alone, or one of a transaction), or an expiry."""
        if args[0] == BOUNDED_APPEND:
            return self._bounded_append(args, index)
        if args[0] == BOUNDED_SETRANGE:
            return self._bounded_setrange(args, index)
        if args[0] == EXPIRE:
            return self.store.expire(args[1:], self.time)
        return self.store.apply(args, index, self.time)

    def _transaction(self, args: list[bytes], index: int) -> Reply:
        transaction = Transaction.parse(args)
        if transaction is None:
            return ErrorReply("ERR malformed 'raft.exec' command")
        store = self.store
        for key, seen in transaction.watched.items():
            if store.apply([_REVISION, key], index, self.time) != seen:
                return NULL_ARRAY
        return [self._apply_command(command, index) for command in transaction.commands]

    def keep_incarnations_of(self, members: frozenset[str]) -> None:
        """A configuration without some recorded node was applied: forget those nodes'
        incarnations, so that a replaced member may come back under its id on a fresh
        data dir once it is added again (it was removed first, so nothing counts on
        what its old data dir held)."""
        for node_id in [n for n in self.incarnations if n not in members]:
            del self.incarnations[node_id]

    def _register(self, args: list[bytes]) -> Reply:
        if len(args) != 3:
            return arguments.arity_error("raft.incarnation")
        node_id, incarnation = args[1].decode(), args[2].decode()
        known = self.incarnations.setdefault(node_id, incarnation)
        if known != incarnation:
            return ErrorReply(f"WIPED {wiped_message(node_id)}")
        return OK

    def _bounded_append(self, args: list[bytes], index: int) -> Reply:
        max_length = arguments.parse_int(args[1]) if len(args) == 4 else None
        if max_length is None:
            return ErrorReply("ERR malformed 'raft.append' command")
        return self.store.append(args[2], args[3], max_length, index, self.time)

    def _bounded_setrange(self, args: list[bytes], index: int) -> Reply:
        max_length = arguments.parse_int(args[1]) if len(args) == 5 else None
        offset = arguments.parse_int(args[3]) if len(args) == 5 else None
        if max_length is None or offset is None or offset < 0:
            return ErrorReply("ERR malformed 'raft.setrange' command")
        return self.store.setrange(args[2], offset, args[4], max_length, index, self.time)

    def begin_capture(self) -> Capture:
        """Start copying the state as it is now, for a snapshot."""
        return Capture(dict(self.incarnations), self.time, self.store.freeze())

    @classmethod
    def restore(cls, data: bytes) -> Self:
        """The state a snapshot holds; ValueError when the bytes are not one. Meant for a
        worker thread."""
        try:
            saved = msgpack.unpackb(data, raw=False)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise ValueError(f"not a trioraft snapshot: {exc}") from exc
        if not isinstance(saved, list) or not saved:
            raise ValueError("not a trioraft snapshot: not a list")
        if saved[0] == _SNAPSHOT_FORMAT and len(saved) == 4:
            _, incarnations, time_ms, slices = saved
        elif saved[0] == 2 and len(saved) == 3:  # from before entries carried a time
            _, incarnations, slices = saved
            time_ms = 0
        else:
            raise ValueError(f"unknown snapshot format {saved[0]!r}")
        if not isinstance(incarnations, dict) or type(time_ms) is not int:
            raise ValueError("not a trioraft snapshot: malformed incarnations or time")
        if not isinstance(slices, list) or not all(isinstance(s, bytes) for s in slices):
            raise ValueError("not a trioraft snapshot: the keyspace is not a list of slices")
        store = KVStore()
        for part in slices:
            store.load(part)
        return cls(store, incarnations, time_ms)

    def replace(self, restored: Self) -> list[Sized]:
        replaced = self.store
        self.store, self.incarnations, self.time = (
            restored.store,
            restored.incarnations,
            restored.time,
        )
        return replaced.discard()

    def discard(self) -> list[Sized]:
        return self.store.discard()

    def take_garbage(self) -> list[Sized]:
        return self.store.take_garbage()

    @staticmethod
    def encode_result(result: Reply) -> bytes:
        return encode(result)

    @staticmethod
    def decode_result(data: bytes) -> Reply:
        decoded = decode_reply(data)
        if decoded is None or decoded[1] != len(data):
            raise ValueError(f"not one whole reply: {data[:40]!r}")
        return decoded[0]

    # --- the members' incarnations -----------------------------------------------------

    def incarnation_of(self, node_id: NodeId) -> str | None:
        return self.incarnations.get(node_id)

    @staticmethod
    def registration(node_id: NodeId, incarnation: str) -> bytes:
        return data_commands.encode_command([REGISTER, node_id.encode(), incarnation.encode()])

    @staticmethod
    def registration_in(command: bytes) -> tuple[NodeId, str] | None:
        if REGISTER not in command:  # most commands: no need to decode them
            return None
        args = data_commands.decode_command(command)
        if args[0] != REGISTER or len(args) != 3:
            return None
        return args[1].decode(), args[2].decode()

    @staticmethod
    def registered(result: Reply) -> bool | None:
        if result == OK:
            return True
        if isinstance(result, ErrorReply) and result.text.startswith("WIPED"):
            return False
        return None
