"""The key-value store: one flat keyspace of binary-safe strings, and what each Redis data
command does to it.

Rules of this module:

- Deterministic and sans-I/O. A command is the argument list a client sent (`list[bytes]`,
  the name in any case); its effect and its reply depend only on the arguments and the
  current state, so every replica that applies the same log ends in the same state and
  gives the same replies.
- `COMMANDS`, at the foot of this module, lists every data command with its Redis arity
  (positive: exact count with the name; negative: at least that many), whether it
  writes, the store's method that runs it and the argument check it needs beyond the
  arity. data_commands.py answers from it what the Redis server asks before a command
  runs. A new command takes a parse of its arguments in arguments.py (if it has any
  beyond keys and values), a method of `KVStore` and a row in `COMMANDS`.
- An unknown command is answered as Redis 7 and Valkey word it, the arguments always
  listed: `ERR unknown command '<name>', with args beginning with: '<a1>' '<a2>' ` (name
  up to 128 bytes, arguments quoted until 128 bytes of them are shown, each cut at a NUL
  as C prints it, CR and LF turned into spaces; bytes that are not UTF-8 travel as
  surrogate escapes, which the RESP encoder turns back into the same bytes).
- `KVStore.apply` runs any data command and `KVStore.read` only the commands that do not
  write; both check the command again first, so a bad entry yields its error reply rather
  than an exception.
- Only the string type exists: TYPE answers "string" or "none", and no command meets
  WRONGTYPE. The commands' arguments, and the checks on them, are Redis's
  (arguments.py). FLUSHDB is FLUSHALL (one database); both accept ASYNC or SYNC, and both
  empty the keyspace at once; the removed keys wait in `take_garbage` for the caller to
  free them a few at a time. COPY knows database 0 only. RANDOMKEY is the one command
  whose reply is random: it is a read, so replicas need not agree on it.
- Relative TTLs become deadlines at the time of the entry that carries them.
- Integers are Redis's signed 64-bit ones. `KVStore.append` and `KVStore.setrange` take
  the longest value they may leave as an argument, so that the limit travels in the log
  entry and every replica checks the same one; the APPEND and SETRANGE commands
  themselves stop at 512 MiB (Redis's default proto-max-bulk-len).
- SCAN's cursor is a bucket of the keyspace (keyspace.py). A call returns whole buckets
  until it has COUNT keys (default 10, at most `SCAN_MAX_COUNT`) or reaches the end;
  every key present for the whole iteration is returned exactly once, however the
  keyspace changes between calls. MATCH filters the selected keys afterwards, as in
  Redis. KEYS reads the whole keyspace in one go, as Redis does.
- Every key has a revision: the log index of the entry that last wrote it (`apply`'s
  `revision`), readable with RAFT.REVISION (nil for a missing key), as etcd's
  mod_revision. Log indices only grow, whoever leads, so a key's revision only grows
  too: it serves as a lock's fencing token. The keyspace maps each key to one bytes
  object, its value with the revision and deadline packed after it (packed.py): one
  object per key besides the key itself (a large value: a tuple of the three, so that
  reads need not copy it). `Record` is the three apart, as commands and snapshots see
  them.
- Deadlines are absolute (Unix ms). Time comes only from the caller: `apply` takes the
  time of the entry being applied, `read` the time to read at. A key whose deadline has
  passed by then counts as missing; a command being applied deletes it (the same on
  every replica: it is the entry's time), a read only hides it and says so
  (`read_hiding`), so that the leader can have it deleted through the log (expiry.py).
- Snapshots and log entries are msgpack. `freeze` gives a view of the keyspace that can
  be read a slice at a time while commands go on; `snapshot_format.serialize` turns a
  slice into snapshot bytes anywhere, e.g. in a worker thread, and `load` puts them back.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator, Mapping, Sized
from typing import Final, TypeVar

import attrs

from trioraft.closing import ClosedOnExit
from trioraft.kvstore import floats, glob, packed
from trioraft.kvstore.arguments import (
    INT64_MAX,
    INT64_MIN,
    MAX_STRING_LENGTH,
    NOT_A_FLOAT,
    NOT_AN_INTEGER,
    TOO_LONG,
    arity_error,
    check_flush,
    check_mset,
    check_msetnx,
    digest,
    invalid_expire,
    parse_copy,
    parse_decrby,
    parse_delex,
    parse_expire,
    parse_getex,
    parse_getrange,
    parse_incrby,
    parse_incrbyfloat,
    parse_int,
    parse_scan,
    parse_set,
    parse_setex,
    parse_setrange,
)
from trioraft.kvstore.keyspace import BUCKETS, FrozenKeyspace, Keyspace
from trioraft.kvstore.packed import Record
from trioraft.kvstore.snapshot_format import deserialize
from trioraft.redis.replies import OK, ErrorReply, Reply, SimpleString

__all__ = [
    "COMMANDS",
    "CommandSpec",
    "KVStore",
    "KeySearch",
]

#: keys a KEYS step reads: matching each against a pattern takes about a microsecond
KEYS_SLICE: Final = 2_000
#: keys RANDOMKEY picks before it gives up finding one not past its deadline
_RANDOMKEY_TRIES: Final = 100
#: keys RANDOMKEY then reads in a row, at most, looking for one
_RANDOMKEY_WALK: Final = 10_000
#: a larger SCAN COUNT counts as this: one call reads at most about this many keys, so that it
#: holds up the node for milliseconds at most
SCAN_MAX_COUNT: Final = 10_000

OVERFLOW: Final = ErrorReply("ERR increment or decrement would overflow")
NAN_OR_INFINITY: Final = ErrorReply("ERR increment would produce NaN or Infinity")

_STRING: Final = SimpleString("string")
_NONE: Final = SimpleString("none")


def _substring(value: bytes, start: int, end: int) -> bytes:
    """GETRANGE's bytes `start` to `end` (both included) of `value`, as Redis 8 counts
    them: negative positions from the end; an end before the first byte, or a start past
    the end, selects nothing."""
    length = len(value)
    if start < 0 and end < 0 and start > end:
        return b""
    start = max(start + length if start < 0 else start, 0)
    end = end + length if end < 0 else end
    if end < 0:
        return b""
    return value[start : min(end, length - 1) + 1]


class FrozenStore(ClosedOnExit):
    """A store's keys and records as they were when frozen, read a slice at a time while
    the store changes."""

    def __init__(self, records: FrozenKeyspace[packed.Stored]) -> None:
        self._records = records

    @property
    def done(self) -> bool:
        return self._records.done

    def take(self, max_keys: int) -> dict[bytes, packed.Stored]:
        """The keys and stored records (packed.py) of the next buckets (see
        `FrozenKeyspace.take`): the store's own objects, not copies."""
        return self._records.take(max_keys)

    def close(self) -> None:
        self._records.close()


class KeySearch(ClosedOnExit):
    """KEYS, a slice of the keyspace per `step`: the keys that matched the pattern when
    the search began, whatever commands run between the steps, except those whose deadline
    had passed by `now`. Close it once done or abandoned."""

    def __init__(self, store: KVStore, pattern: bytes, now: int) -> None:
        #: the keys found so far
        self.found: list[Reply] = []
        #: what is left to read (None: nothing, the pattern names one key)
        self._view: FrozenStore | None = None
        self._matches: Callable[[bytes], bool] | None = None
        self._now = now
        if glob.is_literal(pattern):
            self.found = [pattern] if store.read([b"EXISTS", pattern], now) else []
        else:
            self._view = store.freeze()
            if pattern != b"*":
                self._matches = glob.compile_pattern(pattern)

    @property
    def done(self) -> bool:
        return self._view is None or self._view.done

    def step(self) -> None:
        """Read about `KEYS_SLICE` more keys."""
        assert self._view is not None, "step() only while not done"
        now = self._now
        part = self._view.take(KEYS_SLICE)
        live = [key for key, record in part.items() if packed.alive(record, now)]
        matches = self._matches
        self.found.extend(live if matches is None else [key for key in live if matches(key)])

    def close(self) -> None:
        if self._view is not None:
            self._view.close()


class KVStore:
    """The keyspace and the data commands on it."""

    __slots__ = (
        "_applying",
        "_deadlines",
        "_expiring",
        "_hidden",
        "_keyspace",
        "_now",
        "_revision",
        "rng",
    )

    def __init__(self, data: Mapping[bytes, bytes] | None = None) -> None:
        """A store holding `data` (revision 0, no deadlines), or empty."""
        #: each key's record, as packed.py stores it
        self._keyspace: Keyspace[packed.Stored] = Keyspace()
        if data:
            self._keyspace.update({key: packed.pack(value, 0, 0) for key, value in data.items()})
        #: (deadline, key) of the keys with a deadline, smallest first; an item whose key
        #: has another deadline by now (or is gone) is stale, and dropped when met
        self._deadlines: list[tuple[int, bytes]] = []
        #: how many keys have a deadline
        self._expiring = 0
        #: the revision and the time (Unix ms) of the command being run
        self._revision = 0
        self._now = 0
        #: whether that command is applied (it may delete keys past their deadline) or
        #: only read (it must change nothing, and only hides them)
        self._applying = False
        #: the keys the last read hid because their deadline had passed
        self._hidden: list[bytes] = []
        #: RANDOMKEY's choices: a read, so replicas need not agree on them (a test may
        #: seed its own)
        self.rng = random.Random()

    def __len__(self) -> int:
        return len(self._keyspace)

    def stats(self) -> dict[str, int]:
        """The fields of this keyspace's line under INFO's "# Keyspace" (db0)."""
        return {"keys": len(self._keyspace), "expires": self._expiring, "avg_ttl": 0}

    def apply(self, args: list[bytes], revision: int = 0, now: int = 0) -> Reply:
        """Run a data command (normally a committed write) and return its reply. The keys
        it writes get `revision`, the log index of its entry (0 outside a log); `now` is
        the entry's time (Unix ms), which turns relative TTLs into deadlines, and at
        which keys whose deadline has passed count as gone."""
        spec = resolve(args)
        if isinstance(spec, ErrorReply):
            return spec
        self._revision, self._now, self._applying = revision, now, True
        return spec.run(self, args)

    def read(self, args: list[bytes], now: int = 0) -> Reply:
        """Run a data command that does not write, at time `now` (Unix ms): keys whose
        deadline has passed by then count as gone. ValueError for one that writes."""
        return self.read_hiding(args, now)[0]

    def read_hiding(self, args: list[bytes], now: int) -> tuple[Reply, list[bytes]]:
        """`read`, and the keys named in `args` that it answered as gone because their
        deadline had passed (they are still here until their deletion applies)."""
        spec = resolve(args)
        if isinstance(spec, ErrorReply):
            return spec, []
        if spec.write:
            raise ValueError(f"'{spec.name}' writes: it must go through the log")
        self._now, self._applying, self._hidden = now, False, []
        return spec.run(self, args), self._hidden

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every key and its value, all at once (for tests and tools)."""
        for key, record in self._keyspace.items():
            yield key, packed.value_of(record)

    def records(self) -> Iterator[tuple[bytes, Record]]:
        """Every key and its record, all at once (for tests and tools)."""
        for key, record in self._keyspace.items():
            yield key, packed.unpack(record)

    def freeze(self) -> FrozenStore:
        """A view of the keyspace as it is now, for a snapshot: `take` its slices, whatever
        commands run in between, and close it."""
        return FrozenStore(self._keyspace.freeze())

    def search_keys(self, pattern: bytes, now: int) -> KeySearch:
        """KEYS `pattern` at time `now`, to be run a step at a time (see KeySearch)."""
        return KeySearch(self, pattern, now)

    def take_garbage(self) -> list[Sized]:
        """The keys FLUSHALL removed since the last call, in parts, for the caller to free
        a few parts at a time (freeing ten million keys at once takes seconds)."""
        return list(self._keyspace.take_retired())

    def discard(self) -> list[Sized]:
        """Remove every key; return them as `take_garbage` does, e.g. to free the state a
        snapshot from the leader replaced."""
        self._keyspace.clear()
        return self.take_garbage()

    def load(self, data: bytes) -> None:
        """Add the keys saved in `serialize` bytes; ValueError when they are not that."""
        for key, record in deserialize(data).items():
            self._keyspace.put(key, packed.pack(*record))
            if record[2]:
                self._expiring += 1
                heapq.heappush(self._deadlines, (record[2], key))

    # -- expiry

    def due(self, now: int, limit: int) -> list[bytes]:
        """Up to `limit` keys whose deadline has passed by `now`, taken out of the deadline
        index (`requeue` puts back the ones whose deletion did not happen)."""
        found: list[bytes] = []
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now and len(found) < limit:
            deadline, key = heapq.heappop(deadlines)
            if self._deadline(key) == deadline:
                found.append(key)
        return found

    def requeue(self, keys: list[bytes]) -> None:
        """Put back into the deadline index the keys of `keys` that still have a deadline."""
        for key in keys:
            deadline = self._deadline(key)
            if deadline:
                heapq.heappush(self._deadlines, (deadline, key))

    def expire(self, keys: list[bytes], now: int) -> int:
        """Delete the keys of `keys` whose deadline has passed by `now` (the time of the
        entry that carries the deletion); how many went."""
        gone = 0
        for key in keys:
            deadline = self._deadline(key)
            if deadline and deadline <= now:
                gone += self._remove(key)
        return gone

    def _deadline(self, key: bytes) -> int:
        record = self._keyspace.get(key)
        return 0 if record is None else packed.deadline_of(record)

    # -- changes: every write goes through these, which keep the SCAN and deadline indexes

    def _record(self, key: bytes) -> Record | None:
        """The record of `key` unless it is missing or past its deadline at `_now`: a
        command being applied deletes such a key (at the same index on every replica); a
        read only counts it as gone."""
        found = self._keyspace.get(key)
        if found is None:
            return None
        record = packed.unpack(found)
        if not record[2] or record[2] > self._now:
            return record
        if self._applying:
            self._remove(key)
        else:
            self._hidden.append(key)
        return None

    def _value(self, key: bytes) -> bytes | None:
        record = self._record(key)
        return None if record is None else record[0]

    def _put(self, key: bytes, value: bytes, deadline: int = 0) -> None:
        old = self._keyspace.swap(key, packed.pack(value, self._revision, deadline))
        old_deadline = 0 if old is None else packed.deadline_of(old)
        if old_deadline:
            self._expiring -= 1
        if deadline:
            self._expiring += 1
            if old_deadline != deadline:
                heapq.heappush(self._deadlines, (deadline, key))

    def _put_keeping_deadline(self, key: bytes, value: bytes) -> None:
        """Set the value of `key`, keeping its deadline (INCR, APPEND)."""
        self._put(key, value, self._deadline(key))

    def _set_deadline(self, key: bytes, record: Record, deadline: int) -> None:
        """Give the live `key` a new deadline (0: none); one that has passed deletes it."""
        if deadline and deadline <= self._now:
            self._remove(key)
        else:
            self._put(key, record[0], deadline)

    def _remove(self, key: bytes) -> bool:
        old = self._keyspace.pop(key)
        if old is None:
            return False
        if packed.deadline_of(old):
            self._expiring -= 1
        return True

    # -- the commands, args as validated by resolve

    def _get(self, args: list[bytes]) -> Reply:
        return self._value(args[1])

    def _set(self, args: list[bytes]) -> Reply:
        if len(args) == 3:
            self._put(args[1], args[2])
            return OK
        options = parse_set(args)
        if isinstance(options, ErrorReply):
            return options
        deadline = 0
        if options.expiry is not None:
            computed = options.expiry.deadline(self._now)
            if computed is None:
                return invalid_expire("set")
            deadline = computed
        record = self._record(args[1])
        old = None if record is None else record[0]
        refused = not options.allow(old)
        if not refused:
            if options.keepttl and record is not None:
                deadline = record[2]
            self._put(args[1], args[2], deadline)
            if deadline and deadline <= self._now:
                self._remove(args[1])
        if options.get:
            return old
        return None if refused else OK

    def _setex(self, args: list[bytes]) -> Reply:
        expiry = parse_setex(args)
        if isinstance(expiry, ErrorReply):
            return expiry
        deadline = expiry.deadline(self._now)
        if deadline is None:
            return invalid_expire(args[0].lower().decode())
        self._put(args[1], args[3], deadline)
        return OK

    def _setnx(self, args: list[bytes]) -> Reply:
        if self._record(args[1]) is not None:
            return 0
        self._put(args[1], args[2])
        return 1

    def _getset(self, args: list[bytes]) -> Reply:
        old = self._value(args[1])
        self._put(args[1], args[2])
        return old

    def _getdel(self, args: list[bytes]) -> Reply:
        old = self._value(args[1])
        if old is not None:
            self._remove(args[1])
        return old

    def _getex(self, args: list[bytes]) -> Reply:
        option = parse_getex(args)
        if isinstance(option, ErrorReply):
            return option
        record = self._record(args[1])
        if record is None or option is False:
            return None if record is None else record[0]
        if option is True:
            if record[2]:
                self._put(args[1], record[0])
            return record[0]
        deadline = option.deadline(self._now)
        if deadline is None:
            return invalid_expire("getex")
        self._set_deadline(args[1], record, deadline)
        return record[0]

    def _expire(self, args: list[bytes]) -> Reply:
        parsed = parse_expire(args)
        if isinstance(parsed, ErrorReply):
            return parsed
        if parsed.relative and parsed.ms > INT64_MAX - self._now:
            return invalid_expire(args[0].lower().decode())
        deadline = parsed.ms + self._now if parsed.relative else parsed.ms
        record = self._record(args[1])
        if record is None:
            return 0
        current = record[2]
        flags = parsed.flags
        refused = (
            (b"NX" in flags and current)
            or (b"XX" in flags and not current)
            or (b"GT" in flags and (not current or deadline <= current))
            or (b"LT" in flags and current and deadline >= current)
        )
        if refused:
            return 0
        # a deadline at or before the entry's time deletes the key (also a negative one)
        if deadline <= self._now:
            self._remove(args[1])
        else:
            self._put(args[1], record[0], deadline)
        return 1

    def _persist(self, args: list[bytes]) -> Reply:
        record = self._record(args[1])
        if record is None or not record[2]:
            return 0
        self._put(args[1], record[0])
        return 1

    def _ttl(self, args: list[bytes]) -> Reply:
        record = self._record(args[1])
        if record is None:
            return -2
        if not record[2]:
            return -1
        left = max(record[2] - self._now, 0)
        return left if args[0].lower() == b"pttl" else (left + 500) // 1000

    def _expiretime(self, args: list[bytes]) -> Reply:
        record = self._record(args[1])
        if record is None:
            return -2
        if not record[2]:
            return -1
        return record[2] if args[0].lower() == b"pexpiretime" else record[2] // 1000

    def _del(self, args: list[bytes]) -> Reply:
        return sum(1 for key in args[1:] if self._record(key) is not None and self._remove(key))

    def _delex(self, args: list[bytes]) -> Reply:
        condition = parse_delex(args)
        if isinstance(condition, ErrorReply):
            return condition
        value = self._value(args[1])
        if value is None or (condition is not None and not condition.holds(value)):
            return 0
        return int(self._remove(args[1]))

    def _digest(self, args: list[bytes]) -> Reply:
        value = self._value(args[1])
        return None if value is None else digest(value)

    def _exists(self, args: list[bytes]) -> Reply:
        return sum(1 for key in args[1:] if self._record(key) is not None)

    def _add(self, key: bytes, delta: int) -> Reply:
        old = self._value(key)
        current = 0 if old is None else parse_int(old)
        if current is None:
            return NOT_AN_INTEGER
        value = current + delta
        if not INT64_MIN <= value <= INT64_MAX:
            return OVERFLOW
        self._put_keeping_deadline(key, b"%d" % value)
        return value

    def _incr(self, args: list[bytes]) -> Reply:
        return self._add(args[1], 1)

    def _decr(self, args: list[bytes]) -> Reply:
        return self._add(args[1], -1)

    def _incrby(self, args: list[bytes]) -> Reply:
        delta = parse_incrby(args)
        return delta if isinstance(delta, ErrorReply) else self._add(args[1], delta)

    def _decrby(self, args: list[bytes]) -> Reply:
        delta = parse_decrby(args)
        return delta if isinstance(delta, ErrorReply) else self._add(args[1], delta)

    def _incrbyfloat(self, args: list[bytes]) -> Reply:
        """INCRBYFLOAT, with Redis's long double arithmetic and text (floats.py); the new
        value is kept as that text, with the key's deadline."""
        increment = parse_incrbyfloat(args)
        if isinstance(increment, ErrorReply):
            return increment
        old = self._value(args[1])
        current = floats.parse(old) if old is not None else floats.ZERO
        if current is None:
            return NOT_A_FLOAT
        total = floats.add(current, increment)
        if total is None or isinstance(total, floats.Infinite):
            return NAN_OR_INFINITY
        value = floats.format_value(total)
        self._put_keeping_deadline(args[1], value)
        return value

    def append(self, key: bytes, tail: bytes, max_length: int, revision: int, now: int) -> Reply:
        """APPEND at `revision` and time `now`, refused when the value would grow past
        `max_length` bytes."""
        self._revision, self._now, self._applying = revision, now, True
        old = self._value(key) or b""
        if len(old) + len(tail) > max_length:
            return TOO_LONG
        value = old + tail
        self._put_keeping_deadline(key, value)
        return len(value)

    def _append(self, args: list[bytes]) -> Reply:
        return self.append(args[1], args[2], MAX_STRING_LENGTH, self._revision, self._now)

    def _strlen(self, args: list[bytes]) -> Reply:
        return len(self._value(args[1]) or b"")

    def _mget(self, args: list[bytes]) -> Reply:
        return [self._value(key) for key in args[1:]]

    def _mset(self, args: list[bytes]) -> Reply:
        error = check_mset(args)
        if error is not None:
            return error
        swap, pack, revision = self._keyspace.swap, packed.pack, self._revision
        for i in range(1, len(args), 2):
            old = swap(args[i], pack(args[i + 1], revision, 0))
            if old is not None and packed.deadline_of(old):
                self._expiring -= 1
        return OK

    def _msetnx(self, args: list[bytes]) -> Reply:
        error = check_msetnx(args)
        if error is not None:
            return error
        if any(self._record(args[i]) is not None for i in range(1, len(args), 2)):
            return 0
        for i in range(1, len(args), 2):
            self._put(args[i], args[i + 1])
        return 1

    def _getrange(self, args: list[bytes]) -> Reply:
        bounds = parse_getrange(args)
        if isinstance(bounds, ErrorReply):
            return bounds
        return _substring(self._value(args[1]) or b"", *bounds)

    def setrange(
        self, key: bytes, offset: int, part: bytes, max_length: int, revision: int, now: int
    ) -> Reply:
        """SETRANGE at `revision` and time `now`: `part` written at `offset` (zero bytes
        filling any gap), refused when the value would grow past `max_length` bytes. An
        empty `part` changes nothing, not even a missing key."""
        self._revision, self._now, self._applying = revision, now, True
        old = self._value(key)
        if not part:
            return len(old or b"")
        if offset + len(part) > max_length:
            return TOO_LONG
        value = (old or b"").ljust(offset, b"\0")
        value = value[:offset] + part + value[offset + len(part) :]
        self._put_keeping_deadline(key, value)
        return len(value)

    def _setrange(self, args: list[bytes]) -> Reply:
        offset = parse_setrange(args)
        if isinstance(offset, ErrorReply):
            return offset
        return self.setrange(args[1], offset, args[3], MAX_STRING_LENGTH, self._revision, self._now)

    def _rename(self, args: list[bytes]) -> Reply:
        """RENAME and RENAMENX: the value and its deadline move to the new name, which gets
        this command's revision."""
        only_new = args[0].lower() == b"renamenx"
        source, target = args[1], args[2]
        record = self._record(source)
        if record is None:
            return ErrorReply("ERR no such key")
        if source == target:
            return 0 if only_new else OK
        if only_new and self._record(target) is not None:
            return 0
        self._remove(source)
        self._put(target, record[0], record[2])
        return 1 if only_new else OK

    def _copy(self, args: list[bytes]) -> Reply:
        replace = parse_copy(args)
        if isinstance(replace, ErrorReply):
            return replace
        record = self._record(args[1])
        if record is None or (not replace and self._record(args[2]) is not None):
            return 0
        self._put(args[2], record[0], record[2])
        return 1

    def _randomkey(self, args: list[bytes]) -> Reply:
        """A key picked at random, never one past its deadline: those met are named for
        deletion (`read_hiding`) and another is picked. After `_RANDOMKEY_TRIES` picks
        (most keys are past their deadline), the first live key of up to
        `_RANDOMKEY_WALK` keys from a random bucket on; None if there is none."""
        for _ in range(_RANDOMKEY_TRIES):
            key = self._keyspace.random_key(self.rng)
            if key is None or self._is_live(key):
                return key
        cursor, keys = self._keyspace.scan(self.rng.randrange(BUCKETS), _RANDOMKEY_WALK)
        if cursor == 0 and len(keys) < _RANDOMKEY_WALK:
            keys += self._keyspace.scan(0, _RANDOMKEY_WALK - len(keys))[1]
        return next((key for key in keys if self._is_live(key)), None)

    def _is_live(self, key: bytes) -> bool:
        """Whether `key` is before its deadline. One past it is never deleted here, even
        by a transaction being applied (RANDOMKEY's choice differs between replicas, and
        so would their states): a read names it for deletion (`read_hiding`)."""
        if self._before_deadline(key):
            return True
        if not self._applying:
            self._hidden.append(key)
        return False

    def _before_deadline(self, key: bytes) -> bool:
        """Whether `key` has no deadline or one after `_now` (a missing key counts as
        before: SCAN and RANDOMKEY ask only about keys they just found)."""
        record = self._keyspace.get(key)
        return record is None or packed.alive(record, self._now)

    def _keys(self, args: list[bytes]) -> Reply:
        with self.search_keys(args[1], self._now) as search:
            while not search.done:
                search.step()
        return search.found

    def _scan(self, args: list[bytes]) -> Reply:
        parsed = parse_scan(args)
        if isinstance(parsed, ErrorReply):
            return parsed
        cursor, keys = self._keyspace.scan(parsed.cursor, min(parsed.count, SCAN_MAX_COUNT))
        live = [key for key in keys if self._before_deadline(key)]
        found: list[Reply]
        if parsed.pattern is None:
            found = list(live)
        else:
            matches = glob.compile_pattern(parsed.pattern)
            found = [key for key in live if matches(key)]
        return [b"%d" % cursor, found]

    def _revision_of(self, args: list[bytes]) -> Reply:
        record = self._record(args[1])
        return None if record is None else record[1]

    def _dbsize(self, args: list[bytes]) -> Reply:
        # as Redis: keys past their deadline count until their deletion
        return len(self._keyspace)

    def _type(self, args: list[bytes]) -> Reply:
        return _STRING if self._record(args[1]) is not None else _NONE

    def _flushall(self, args: list[bytes]) -> Reply:
        error = check_flush(args)
        if error is not None:
            return error
        self._keyspace.clear()
        self._deadlines = []
        self._expiring = 0
        return OK


# -- the command table: a row for each data command, naming the method that runs it

_T = TypeVar("_T")
_Run = Callable[["KVStore", list[bytes]], Reply]
_Check = Callable[[list[bytes]], ErrorReply | None]


@attrs.frozen
class CommandSpec:
    """One data command: its lowercase name (as error texts spell it), arity, write flag."""

    name: str
    arity: int
    write: bool
    run: _Run = attrs.field(repr=False)
    #: the argument checks that need no data, beyond the arity
    check: _Check | None = attrs.field(default=None, repr=False)


def _errors_of(parse: Callable[[list[bytes]], _T | ErrorReply]) -> _Check:
    def check(args: list[bytes]) -> ErrorReply | None:
        parsed = parse(args)
        return parsed if isinstance(parsed, ErrorReply) else None

    return check


def _as_c_string(arg: bytes) -> bytes:
    """What C's printf shows of `arg`: the bytes before the first NUL."""
    return arg.partition(b"\0")[0]


def _unknown_command(args: list[bytes]) -> ErrorReply:
    shown = b""
    for arg in args[1:]:
        if len(shown) >= 128:
            break
        shown += b"'" + _as_c_string(arg)[: 128 - len(shown)] + b"' "
    name = _as_c_string(args[0] if args else b"")[:128]
    raw = b"ERR unknown command '" + name + b"', with args beginning with: " + shown
    text = raw.decode("utf-8", "surrogateescape")
    return ErrorReply(text.replace("\r", " ").replace("\n", " "))


def resolve(args: list[bytes]) -> CommandSpec | ErrorReply:
    """The table row of the data command `args`, or the error for an unknown command or a
    wrong number of arguments."""
    spec = COMMANDS.get(args[0].lower()) if args else None
    if spec is None:
        return _unknown_command(args)
    if (spec.arity > 0 and len(args) != spec.arity) or len(args) < -spec.arity:
        return arity_error(spec.name)
    return spec


#: every data command by lowercase name
COMMANDS: Final[Mapping[bytes, CommandSpec]] = {
    spec.name.encode(): spec
    for spec in (
        CommandSpec("get", 2, False, KVStore._get),
        CommandSpec("set", -3, True, KVStore._set, _errors_of(parse_set)),
        CommandSpec("del", -2, True, KVStore._del),
        CommandSpec("delex", -2, True, KVStore._delex, _errors_of(parse_delex)),
        CommandSpec("digest", 2, False, KVStore._digest),
        CommandSpec("exists", -2, False, KVStore._exists),
        CommandSpec("incr", 2, True, KVStore._incr),
        CommandSpec("decr", 2, True, KVStore._decr),
        CommandSpec("incrby", 3, True, KVStore._incrby, _errors_of(parse_incrby)),
        CommandSpec("decrby", 3, True, KVStore._decrby, _errors_of(parse_decrby)),
        CommandSpec("incrbyfloat", 3, True, KVStore._incrbyfloat, _errors_of(parse_incrbyfloat)),
        CommandSpec("append", 3, True, KVStore._append),
        CommandSpec("strlen", 2, False, KVStore._strlen),
        CommandSpec("mget", -2, False, KVStore._mget),
        CommandSpec("mset", -3, True, KVStore._mset, check_mset),
        CommandSpec("keys", 2, False, KVStore._keys),
        CommandSpec("scan", -2, False, KVStore._scan, _errors_of(parse_scan)),
        CommandSpec("dbsize", 1, False, KVStore._dbsize),
        CommandSpec("type", 2, False, KVStore._type),
        CommandSpec("raft.revision", 2, False, KVStore._revision_of),
        CommandSpec("setex", 4, True, KVStore._setex, _errors_of(parse_setex)),
        CommandSpec("psetex", 4, True, KVStore._setex, _errors_of(parse_setex)),
        CommandSpec("setnx", 3, True, KVStore._setnx),
        CommandSpec("getset", 3, True, KVStore._getset),
        CommandSpec("getdel", 2, True, KVStore._getdel),
        CommandSpec("getex", -2, True, KVStore._getex, _errors_of(parse_getex)),
        CommandSpec("expire", -3, True, KVStore._expire, _errors_of(parse_expire)),
        CommandSpec("pexpire", -3, True, KVStore._expire, _errors_of(parse_expire)),
        CommandSpec("expireat", -3, True, KVStore._expire, _errors_of(parse_expire)),
        CommandSpec("pexpireat", -3, True, KVStore._expire, _errors_of(parse_expire)),
        CommandSpec("persist", 2, True, KVStore._persist),
        CommandSpec("ttl", 2, False, KVStore._ttl),
        CommandSpec("pttl", 2, False, KVStore._ttl),
        CommandSpec("expiretime", 2, False, KVStore._expiretime),
        CommandSpec("pexpiretime", 2, False, KVStore._expiretime),
        CommandSpec("msetnx", -3, True, KVStore._msetnx, check_msetnx),
        CommandSpec("getrange", 4, False, KVStore._getrange, _errors_of(parse_getrange)),
        CommandSpec("setrange", 4, True, KVStore._setrange, _errors_of(parse_setrange)),
        CommandSpec("rename", 3, True, KVStore._rename),
        CommandSpec("renamenx", 3, True, KVStore._rename),
        CommandSpec("copy", -3, True, KVStore._copy, _errors_of(parse_copy)),
        CommandSpec("unlink", -2, True, KVStore._del),
        CommandSpec("touch", -2, False, KVStore._exists),
        CommandSpec("randomkey", 1, False, KVStore._randomkey),
        CommandSpec("flushall", -1, True, KVStore._flushall, check_flush),
        CommandSpec("flushdb", -1, True, KVStore._flushall, check_flush),
    )
}
