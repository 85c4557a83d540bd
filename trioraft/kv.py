"""The replicated state machine: one flat keyspace of binary-safe strings, Redis data commands.

Rules of this module:

- Deterministic and sans-I/O. A command is the argument list a client sent (`list[bytes]`,
  the name in any case); its effect and its reply depend only on the arguments and the
  current state, so every replica that applies the same log ends in the same state and
  gives the same replies.
- `COMMANDS` lists every data command with its Redis arity (positive: exact count with the
  name; negative: at least that many) and whether it writes. `validate` rejects, before
  anything is proposed to the log, what Redis would reject whatever the data: unknown
  commands, wrong argument counts, bad options, malformed integers and cursors, all with
  Redis's error texts. Errors that depend on the data (INCR of a non-integer, overflow)
  come from `KVStore.apply`, which replicas compute identically.
- An unknown command is answered as Redis 7 and Valkey word it, the arguments always
  listed: `ERR unknown command '<name>', with args beginning with: '<a1>' '<a2>' ` (name
  up to 128 bytes, arguments quoted until 128 bytes of them are shown, each cut at a NUL
  as C prints it, CR and LF turned into spaces; bytes that are not UTF-8 travel as
  surrogate escapes, which the RESP encoder turns back into the same bytes).
- `KVStore.apply` runs any data command and `KVStore.read` only the commands that do not
  write; both check the command again first, so a bad entry yields its error reply rather
  than an exception.
- Only the string type exists: TYPE answers "string" or "none", and no command meets
  WRONGTYPE. There is no expiry: SET accepts NX, XX, GET, IFEQ (as in Valkey 8.1, not
  together with NX or XX) and KEEPTTL (a no-op, no key has a TTL); EX, PX, EXAT and PXAT
  answer "ERR syntax error". FLUSHDB is FLUSHALL (one database); both accept ASYNC or
  SYNC, and both empty the keyspace at once; the removed keys wait in `take_garbage` for
  the caller to free them a few at a time.
- Integers are Redis's: signed 64-bit, written in canonical decimal (no sign other than a
  leading '-', no leading zeros, no blanks). `KVStore.append` takes the longest value it
  may leave as an argument, so that the limit travels in the log entry and every replica
  checks the same one; the APPEND command itself stops at 512 MiB (Redis's default
  proto-max-bulk-len).
- SCAN's cursor is a bucket of the keyspace (keyspace.py). A call returns whole buckets
  until it has COUNT keys (default 10, at most `SCAN_MAX_COUNT`) or reaches the end;
  every key present for the whole iteration is returned exactly once, however the
  keyspace changes between calls. MATCH filters the selected keys afterwards, as in
  Redis. KEYS reads the whole keyspace in one go, as Redis does.
- Snapshots and log entries are msgpack. `freeze` gives a view of the keyspace that can
  be read a slice at a time while commands go on; `serialize` turns a slice into
  snapshot bytes anywhere, e.g. in a worker thread, and `load` puts them back.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Final, TypeVar

import attrs
import msgpack  # type: ignore[import-untyped]

from trioraft import glob
from trioraft.closing import ClosedOnExit
from trioraft.keyspace import FrozenKeyspace, Keyspace
from trioraft.replies import OK, ErrorReply, Reply, SimpleString

__all__ = [
    "COMMANDS",
    "MAX_STRING_LENGTH",
    "CommandSpec",
    "KVStore",
    "KeySearch",
    "decode_command",
    "deserialize",
    "encode_command",
    "is_data_command",
    "is_write",
    "lookup",
    "parse_int",
    "serialize",
    "validate",
]

INT64_MIN: Final = -(1 << 63)
INT64_MAX: Final = (1 << 63) - 1
#: the largest string value an APPEND may produce (Redis's default proto-max-bulk-len)
MAX_STRING_LENGTH: Final = 512 * 1024 * 1024
#: keys a KEYS step reads: matching each against a pattern takes about a microsecond
KEYS_SLICE: Final = 2_000
#: SCAN's COUNT when none is given
DEFAULT_SCAN_COUNT: Final = 10
#: a larger COUNT counts as this: one call reads at most about this many keys, so that it
#: holds up the node for milliseconds at most
SCAN_MAX_COUNT: Final = 10_000

SYNTAX_ERROR: Final = ErrorReply("ERR syntax error")
NOT_AN_INTEGER: Final = ErrorReply("ERR value is not an integer or out of range")
INVALID_CURSOR: Final = ErrorReply("ERR invalid cursor")
OVERFLOW: Final = ErrorReply("ERR increment or decrement would overflow")
DECREMENT_OVERFLOW: Final = ErrorReply("ERR decrement would overflow")
TOO_LONG: Final = ErrorReply("ERR string exceeds maximum allowed size (proto-max-bulk-len)")

_STRING: Final = SimpleString("string")
_NONE: Final = SimpleString("none")

#: what Redis's string2ll accepts: "0", or an optional '-' then digits without a leading 0
_CANONICAL_INT: Final = re.compile(rb"0|-?[1-9][0-9]*")
#: what strtoull accepts, Redis's fallback for cursors
_STRTOULL: Final = re.compile(rb"[ \t\n\v\f\r]*([+-]?)([0-9]+)")

_SNAPSHOT_FORMAT: Final = 1


def parse_int(arg: bytes) -> int | None:
    """The signed 64-bit integer `arg` spells canonically, or None (Redis's string2ll)."""
    if len(arg) > 20 or _CANONICAL_INT.fullmatch(arg) is None:
        return None
    value = int(arg)
    return value if INT64_MIN <= value <= INT64_MAX else None


def _parse_cursor(arg: bytes) -> int | None:
    """An unsigned 64-bit cursor as Redis reads one (string2ull), or None."""
    value = parse_int(arg)
    if value is not None:
        return value if value >= 0 else None
    spelled = _STRTOULL.fullmatch(arg)
    if spelled is None:
        return None
    sign, digits = spelled.groups()
    digits = digits.lstrip(b"0")
    if len(digits) > 20:  # also keeps int() away from its limit on digits
        return None
    value = int(digits or b"0")
    if value >= 1 << 64:
        return None
    # strtoull negates in unsigned arithmetic
    return (-value) % (1 << 64) if sign == b"-" else value


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


@attrs.frozen
class _SetOptions:
    nx: bool
    xx: bool
    get: bool
    ifeq: bytes | None


def _parse_set(args: list[bytes]) -> _SetOptions | ErrorReply:
    nx = xx = get = False
    ifeq: bytes | None = None
    i = 3
    while i < len(args):
        option = args[i].upper()
        if option == b"NX" and not xx and ifeq is None:
            nx = True
        elif option == b"XX" and not nx and ifeq is None:
            xx = True
        elif option == b"GET":
            get = True
        elif option == b"KEEPTTL":
            pass
        elif option == b"IFEQ" and i + 1 < len(args) and not (nx or xx) and ifeq is None:
            i += 1
            ifeq = args[i]
        else:
            return SYNTAX_ERROR
        i += 1
    return _SetOptions(nx, xx, get, ifeq)


def _parse_incrby(args: list[bytes]) -> int | ErrorReply:
    delta = parse_int(args[2])
    return NOT_AN_INTEGER if delta is None else delta


def _parse_decrby(args: list[bytes]) -> int | ErrorReply:
    delta = parse_int(args[2])
    if delta is None:
        return NOT_AN_INTEGER
    if delta == INT64_MIN:
        return DECREMENT_OVERFLOW
    return -delta


def _check_mset(args: list[bytes]) -> ErrorReply | None:
    return None if len(args) % 2 == 1 else _arity_error("mset")


def _check_flush(args: list[bytes]) -> ErrorReply | None:
    if len(args) == 1 or (len(args) == 2 and args[1].lower() in (b"sync", b"async")):
        return None
    return SYNTAX_ERROR


@attrs.frozen
class _ScanArgs:
    cursor: int
    count: int
    #: None when every key is wanted (no MATCH, or MATCH *)
    pattern: bytes | None


def _parse_scan(args: list[bytes]) -> _ScanArgs | ErrorReply:
    cursor = _parse_cursor(args[1])
    if cursor is None:
        return INVALID_CURSOR
    count = DEFAULT_SCAN_COUNT
    pattern: bytes | None = None
    i = 2
    while i < len(args):
        option = args[i].lower()
        if option == b"count" and i + 1 < len(args):
            parsed = parse_int(args[i + 1])
            if parsed is None:
                return NOT_AN_INTEGER
            if parsed < 1:
                return SYNTAX_ERROR
            count = parsed
        elif option == b"match" and i + 1 < len(args):
            pattern = args[i + 1]
        else:
            return SYNTAX_ERROR
        i += 2
    return _ScanArgs(cursor, count, None if pattern == b"*" else pattern)


def _arity_error(name: str) -> ErrorReply:
    return ErrorReply(f"ERR wrong number of arguments for '{name}' command")


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


def lookup(name: bytes) -> CommandSpec | None:
    """The data command called `name` (any case), or None."""
    return COMMANDS.get(name.lower())


def is_data_command(name: bytes) -> bool:
    """Whether `name` (any case) is a data command."""
    return name.lower() in COMMANDS


def is_write(args: list[bytes]) -> bool:
    """Whether the data command `args` writes; KeyError when it is not a data command."""
    return COMMANDS[args[0].lower()].write


def _resolve(args: list[bytes]) -> CommandSpec | ErrorReply:
    spec = COMMANDS.get(args[0].lower()) if args else None
    if spec is None:
        return _unknown_command(args)
    if (spec.arity > 0 and len(args) != spec.arity) or len(args) < -spec.arity:
        return _arity_error(spec.name)
    return spec


def validate(args: list[bytes]) -> ErrorReply | None:
    """The error Redis would answer whatever the data, or None when `args` may be run."""
    spec = _resolve(args)
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


def serialize(part: Mapping[bytes, bytes]) -> bytes:
    """Snapshot bytes for keys and values, e.g. a slice of a `KVStore.freeze` view."""
    payload: bytes = msgpack.packb([_SNAPSHOT_FORMAT, part], use_bin_type=True)
    return payload


def deserialize(data: bytes) -> dict[bytes, bytes]:
    """The keys and values in `serialize` bytes; ValueError when they are not that."""
    try:
        saved = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ValueError(f"not a keyspace snapshot: {exc}") from exc
    if type(saved) is not list or len(saved) != 2 or saved[0] != _SNAPSHOT_FORMAT:
        raise ValueError("not a keyspace snapshot: unknown layout or format version")
    part = saved[1]
    if (
        type(part) is not dict
        or not all(type(key) is bytes for key in part)
        or not all(type(value) is bytes for value in part.values())
    ):
        raise ValueError("not a keyspace snapshot: expected a map of binary strings")
    return part


class KeySearch(ClosedOnExit):
    """KEYS, a slice of the keyspace per `step`: the keys that matched the pattern when
    the search began, whatever commands run between the steps. Close it once done or
    abandoned."""

    def __init__(self, keyspace: Keyspace, pattern: bytes) -> None:
        #: the keys found so far
        self.found: list[Reply] = []
        #: what is left to read (None: nothing, the pattern names one key)
        self._view: FrozenKeyspace | None = None
        self._matches: Callable[[bytes], bool] | None = None
        if glob.is_literal(pattern):
            self.found = [pattern] if pattern in keyspace else []
        else:
            self._view = keyspace.freeze()
            if pattern != b"*":
                self._matches = glob.compile_pattern(pattern)

    @property
    def done(self) -> bool:
        return self._view is None or self._view.done

    def step(self) -> None:
        """Read about `KEYS_SLICE` more keys."""
        assert self._view is not None, "step() only while not done"
        part = self._view.take(KEYS_SLICE)
        matches = self._matches
        self.found.extend(part if matches is None else [key for key in part if matches(key)])

    def close(self) -> None:
        if self._view is not None:
            self._view.close()


class KVStore:
    """The keyspace and the data commands on it."""

    __slots__ = ("_keyspace",)

    def __init__(self, data: Mapping[bytes, bytes] | None = None) -> None:
        self._keyspace = Keyspace()
        if data:
            self._keyspace.update(data)

    def __len__(self) -> int:
        return len(self._keyspace)

    def stats(self) -> dict[str, int]:
        """The fields of this keyspace's line under INFO's "# Keyspace" (db0)."""
        return {"keys": len(self._keyspace), "expires": 0, "avg_ttl": 0}

    def apply(self, args: list[bytes]) -> Reply:
        """Run a data command (normally a committed write) and return its reply."""
        spec = _resolve(args)
        if isinstance(spec, ErrorReply):
            return spec
        return spec.run(self, args)

    def read(self, args: list[bytes]) -> Reply:
        """Run a data command that does not write; ValueError for one that writes."""
        spec = _resolve(args)
        if isinstance(spec, ErrorReply):
            return spec
        if spec.write:
            raise ValueError(f"'{spec.name}' writes: it must go through the log")
        return spec.run(self, args)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every key and its value, all at once (for tests and tools)."""
        return self._keyspace.items()

    def freeze(self) -> FrozenKeyspace:
        """A view of the keyspace as it is now, for a snapshot: `take` its slices, whatever
        commands run in between, and close it."""
        return self._keyspace.freeze()

    def search_keys(self, pattern: bytes) -> KeySearch:
        """KEYS `pattern`, to be run a step at a time (see KeySearch)."""
        return KeySearch(self._keyspace, pattern)

    def take_garbage(self) -> list[dict[bytes, bytes]]:
        """The keys FLUSHALL removed since the last call, in parts, for the caller to free
        a few parts at a time (freeing ten million keys at once takes seconds)."""
        return self._keyspace.take_retired()

    def discard(self) -> list[dict[bytes, bytes]]:
        """Remove every key; return them as `take_garbage` does, e.g. to free the state a
        snapshot from the leader replaced."""
        self._keyspace.clear()
        return self._keyspace.take_retired()

    def load(self, data: bytes) -> None:
        """Add the keys saved in `serialize` bytes; ValueError when they are not that."""
        self._keyspace.update(deserialize(data))

    # -- the commands, args as validated by _resolve

    def _get(self, args: list[bytes]) -> Reply:
        return self._keyspace.get(args[1])

    def _set(self, args: list[bytes]) -> Reply:
        if len(args) == 3:
            self._keyspace.put(args[1], args[2])
            return OK
        options = _parse_set(args)
        if isinstance(options, ErrorReply):
            return options
        old = self._keyspace.get(args[1])
        refused = (
            (options.ifeq is not None and old != options.ifeq)
            or (options.nx and old is not None)
            or (options.xx and old is None)
        )
        if not refused:
            self._keyspace.put(args[1], args[2])
        if options.get:
            return old
        return None if refused else OK

    def _del(self, args: list[bytes]) -> Reply:
        keys = self._keyspace
        return sum(1 for key in args[1:] if keys.remove(key))

    def _exists(self, args: list[bytes]) -> Reply:
        keys = self._keyspace
        return sum(1 for key in args[1:] if key in keys)

    def _add(self, key: bytes, delta: int) -> Reply:
        old = self._keyspace.get(key)
        current = 0 if old is None else parse_int(old)
        if current is None:
            return NOT_AN_INTEGER
        value = current + delta
        if not INT64_MIN <= value <= INT64_MAX:
            return OVERFLOW
        self._keyspace.put(key, b"%d" % value)
        return value

    def _incr(self, args: list[bytes]) -> Reply:
        return self._add(args[1], 1)

    def _decr(self, args: list[bytes]) -> Reply:
        return self._add(args[1], -1)

    def _incrby(self, args: list[bytes]) -> Reply:
        delta = _parse_incrby(args)
        return delta if isinstance(delta, ErrorReply) else self._add(args[1], delta)

    def _decrby(self, args: list[bytes]) -> Reply:
        delta = _parse_decrby(args)
        return delta if isinstance(delta, ErrorReply) else self._add(args[1], delta)

    def append(self, key: bytes, tail: bytes, max_length: int) -> Reply:
        """APPEND, refused when the value would grow past `max_length` bytes."""
        old = self._keyspace.get(key) or b""
        if len(old) + len(tail) > max_length:
            return TOO_LONG
        value = old + tail
        self._keyspace.put(key, value)
        return len(value)

    def _append(self, args: list[bytes]) -> Reply:
        return self.append(args[1], args[2], MAX_STRING_LENGTH)

    def _strlen(self, args: list[bytes]) -> Reply:
        return len(self._keyspace.get(args[1]) or b"")

    def _mget(self, args: list[bytes]) -> Reply:
        keys = self._keyspace
        return [keys.get(key) for key in args[1:]]

    def _mset(self, args: list[bytes]) -> Reply:
        error = _check_mset(args)
        if error is not None:
            return error
        keys = self._keyspace
        for i in range(1, len(args), 2):
            keys.put(args[i], args[i + 1])
        return OK

    def _keys(self, args: list[bytes]) -> Reply:
        with self.search_keys(args[1]) as search:
            while not search.done:
                search.step()
        return search.found

    def _scan(self, args: list[bytes]) -> Reply:
        parsed = _parse_scan(args)
        if isinstance(parsed, ErrorReply):
            return parsed
        cursor, keys = self._keyspace.scan(parsed.cursor, min(parsed.count, SCAN_MAX_COUNT))
        found: list[Reply]
        if parsed.pattern is None:
            found = list(keys)
        else:
            matches = glob.compile_pattern(parsed.pattern)
            found = [key for key in keys if matches(key)]
        return [b"%d" % cursor, found]

    def _dbsize(self, args: list[bytes]) -> Reply:
        return len(self._keyspace)

    def _type(self, args: list[bytes]) -> Reply:
        return _STRING if args[1] in self._keyspace else _NONE

    def _flushall(self, args: list[bytes]) -> Reply:
        error = _check_flush(args)
        if error is not None:
            return error
        self._keyspace.clear()
        return OK


#: every data command by lowercase name
COMMANDS: Final[Mapping[bytes, CommandSpec]] = {
    spec.name.encode(): spec
    for spec in (
        CommandSpec("get", 2, False, KVStore._get),
        CommandSpec("set", -3, True, KVStore._set, _errors_of(_parse_set)),
        CommandSpec("del", -2, True, KVStore._del),
        CommandSpec("exists", -2, False, KVStore._exists),
        CommandSpec("incr", 2, True, KVStore._incr),
        CommandSpec("decr", 2, True, KVStore._decr),
        CommandSpec("incrby", 3, True, KVStore._incrby, _errors_of(_parse_incrby)),
        CommandSpec("decrby", 3, True, KVStore._decrby, _errors_of(_parse_decrby)),
        CommandSpec("append", 3, True, KVStore._append),
        CommandSpec("strlen", 2, False, KVStore._strlen),
        CommandSpec("mget", -2, False, KVStore._mget),
        CommandSpec("mset", -3, True, KVStore._mset, _check_mset),
        CommandSpec("keys", 2, False, KVStore._keys),
        CommandSpec("scan", -2, False, KVStore._scan, _errors_of(_parse_scan)),
        CommandSpec("dbsize", 1, False, KVStore._dbsize),
        CommandSpec("type", 2, False, KVStore._type),
        CommandSpec("flushall", -1, True, KVStore._flushall, _check_flush),
        CommandSpec("flushdb", -1, True, KVStore._flushall, _check_flush),
    )
}
