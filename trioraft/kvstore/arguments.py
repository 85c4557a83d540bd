"""The arguments each data command takes, parsed and checked as Redis does, with Redis's
error texts.

- A parse takes the whole command (`args[0]` is its name) and returns what the command
  needs, or the `ErrorReply` Redis answers. The command table (at the foot of store.py)
  runs the parses as the command's check, before anything is proposed to the log; the
  command's method runs them again as it applies, so a bad entry yields its error reply.
- Integers are Redis's: signed 64-bit, written in canonical decimal (no sign other than a
  leading '-', no leading zeros, no blanks). Cursors are read as Redis reads them.
- SET accepts NX, XX, GET, Redis 8.4's value conditions IFEQ, IFNE, IFDEQ and IFDNE (one
  of NX, XX and those), EX, PX, EXAT, PXAT and KEEPTTL; an option given twice counts once
  (the last value), as in Redis. DELEX takes the same value conditions; a digest is
  DIGEST's, the XXH3 of the value in hex.
- Redis's range checks on a TTL that need no clock (positive, its milliseconds fit in 64
  bits) are made here; the one that does (the deadline itself must fit) as it applies.
"""

from __future__ import annotations

import re
from typing import Final

import attrs
import xxhash

from trioraft.kvstore import floats
from trioraft.redis.replies import ErrorReply

INT64_MIN: Final = -(1 << 63)
INT64_MAX: Final = (1 << 63) - 1
#: the largest string value an APPEND may produce (Redis's default proto-max-bulk-len)
MAX_STRING_LENGTH: Final = 512 * 1024 * 1024
#: SCAN's COUNT when none is given
DEFAULT_SCAN_COUNT: Final = 10

SYNTAX_ERROR: Final = ErrorReply("ERR syntax error")
NOT_AN_INTEGER: Final = ErrorReply("ERR value is not an integer or out of range")
INVALID_CURSOR: Final = ErrorReply("ERR invalid cursor")
DECREMENT_OVERFLOW: Final = ErrorReply("ERR decrement would overflow")
NOT_A_FLOAT: Final = ErrorReply("ERR value is not a valid float")
TOO_LONG: Final = ErrorReply("ERR string exceeds maximum allowed size (proto-max-bulk-len)")

#: what Redis's string2ll accepts: "0", or an optional '-' then digits without a leading 0
_CANONICAL_INT: Final = re.compile(rb"0|-?[1-9][0-9]*")
#: what strtoull accepts, Redis's fallback for cursors
_STRTOULL: Final = re.compile(rb"[ \t\n\v\f\r]*([+-]?)([0-9]+)")


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


def invalid_expire(name: str) -> ErrorReply:
    return ErrorReply(f"ERR invalid expire time in '{name}' command")


@attrs.frozen
class _Expiry:
    """A deadline as a command gives it: EX, PX (relative) or EXAT, PXAT (absolute)."""

    #: milliseconds, as given (a relative one is added to the entry's time as it applies)
    ms: int
    relative: bool

    def deadline(self, now: int) -> int | None:
        """The deadline in Unix ms at time `now`; None when it overflows."""
        deadline = self.ms + now if self.relative else self.ms
        return deadline if deadline <= INT64_MAX else None


_EXPIRY_OPTIONS: Final = {
    b"EX": (1000, True),
    b"PX": (1, True),
    b"EXAT": (1000, False),
    b"PXAT": (1, False),
}


def _parse_expiry(option: bytes, arg: bytes, name: str) -> _Expiry | ErrorReply:
    """EX/PX/EXAT/PXAT `arg` as SET, SETEX and GETEX check it: a positive integer whose
    milliseconds fit in 64 bits."""
    scale, relative = _EXPIRY_OPTIONS[option]
    value = parse_int(arg)
    if value is None:
        return NOT_AN_INTEGER
    if value <= 0 or value > INT64_MAX // scale:
        return invalid_expire(name)
    return _Expiry(value * scale, relative)


#: the conditions SET and DELEX take on the current value: equal or not to the given
#: value (IFEQ, IFNE), to the given digest (IFDEQ, IFDNE)
_CONDITIONS: Final = (b"IFEQ", b"IFNE", b"IFDEQ", b"IFDNE")
_HEX_DIGEST: Final = re.compile(rb"[0-9a-fA-F]{16}")
BAD_DIGEST: Final = ErrorReply("ERR must be exactly 16 hexadecimal characters")


def digest(value: bytes) -> bytes:
    """Redis's DIGEST of a value: its XXH3 (64 bits) in 16 lowercase hex digits."""
    return xxhash.xxh3_64_hexdigest(value).encode()


@attrs.frozen
class _Condition:
    """IFEQ, IFNE, IFDEQ or IFDNE, and the value or digest (lowercase) it compares with."""

    name: bytes
    operand: bytes

    def holds(self, current: bytes | None) -> bool:
        """Whether a key holding `current` (None: missing) meets the condition: a missing
        key equals nothing, so IFEQ and IFDEQ refuse it, IFNE and IFDNE accept it."""
        if current is not None and self.name in (b"IFDEQ", b"IFDNE"):
            current = digest(current)
        equal = current == self.operand
        return equal if self.name in (b"IFEQ", b"IFDEQ") else not equal


def _parse_condition(name: bytes, operand: bytes) -> _Condition | ErrorReply:
    if name in (b"IFDEQ", b"IFDNE"):
        if _HEX_DIGEST.fullmatch(operand) is None:
            return BAD_DIGEST
        operand = operand.lower()
    return _Condition(name, operand)


@attrs.frozen
class _SetOptions:
    nx: bool
    xx: bool
    get: bool
    condition: _Condition | None
    keepttl: bool
    expiry: _Expiry | None

    def allow(self, old: bytes | None) -> bool:
        """Whether SET with these options writes over `old` (None: a missing key)."""
        if self.condition is not None:
            return self.condition.holds(old)
        return not ((self.nx and old is not None) or (self.xx and old is None))


def parse_set(args: list[bytes]) -> _SetOptions | ErrorReply:
    nx = xx = get = keepttl = False
    condition: tuple[bytes, bytes] | None = None
    expiry: tuple[bytes, bytes] | None = None
    i = 3
    while i < len(args):
        option = args[i].upper()
        has_next = i + 1 < len(args)
        if option == b"NX" and not xx and condition is None:
            nx = True
        elif option == b"XX" and not nx and condition is None:
            xx = True
        elif option == b"GET":
            get = True
        elif option == b"KEEPTTL" and expiry is None:
            keepttl = True
        elif option in _EXPIRY_OPTIONS and has_next and _may_follow(expiry, option) and not keepttl:
            i += 1
            expiry = (option, args[i])
        elif option in _CONDITIONS and has_next and not (nx or xx) and condition is None:
            i += 1
            condition = (option, args[i])
        else:
            return SYNTAX_ERROR
        i += 1
    parsed_condition = None if condition is None else _parse_condition(*condition)
    if isinstance(parsed_condition, ErrorReply):
        return parsed_condition
    parsed = None if expiry is None else _parse_expiry(*expiry, "set")
    if isinstance(parsed, ErrorReply):
        return parsed
    return _SetOptions(nx, xx, get, parsed_condition, keepttl, parsed)


def parse_delex(args: list[bytes]) -> _Condition | ErrorReply | None:
    """DELEX's condition (None: none, it deletes as DEL does)."""
    if len(args) == 2:
        return None
    if len(args) != 4 or args[2].upper() not in _CONDITIONS:
        return SYNTAX_ERROR
    return _parse_condition(args[2].upper(), args[3])


def _may_follow(expiry: tuple[bytes, bytes] | None, option: bytes) -> bool:
    """Whether the expiry `option` may come after `expiry`: Redis takes the same option
    again (the last one counts), never two different ones."""
    return expiry is None or expiry[0] == option


def parse_setex(args: list[bytes]) -> _Expiry | ErrorReply:
    name = args[0].lower().decode()
    return _parse_expiry(b"EX" if name == "setex" else b"PX", args[2], name)


def parse_getex(args: list[bytes]) -> _Expiry | bool | ErrorReply:
    """GETEX's option: the new deadline, True for PERSIST, False for none."""
    expiry: tuple[bytes, bytes] | None = None
    persist = False
    i = 2
    while i < len(args):
        option = args[i].upper()
        if option == b"PERSIST" and expiry is None:
            persist = True
        elif option in _EXPIRY_OPTIONS and i + 1 < len(args) and _may_follow(expiry, option):
            if persist:
                return SYNTAX_ERROR
            i += 1
            expiry = (option, args[i])
        else:
            return SYNTAX_ERROR
        i += 1
    if expiry is None:
        return persist
    return _parse_expiry(*expiry, "getex")


@attrs.frozen
class _ExpireArgs:
    #: the deadline as given, in ms: relative for EXPIRE and PEXPIRE
    ms: int
    relative: bool
    #: NX, XX, GT, LT
    flags: frozenset[bytes]


_EXPIRE_SCALES: Final = {
    "expire": (1000, True),
    "pexpire": (1, True),
    "expireat": (1000, False),
    "pexpireat": (1, False),
}
_EXPIRE_FLAGS: Final = (b"NX", b"XX", b"GT", b"LT")


def parse_expire(args: list[bytes]) -> _ExpireArgs | ErrorReply:
    flags: set[bytes] = set()
    for arg in args[3:]:
        flag = arg.upper()
        if flag not in _EXPIRE_FLAGS:
            return ErrorReply(f"ERR Unsupported option {arg.decode('utf-8', 'surrogateescape')}")
        flags.add(flag)
    if b"NX" in flags and len(flags) > 1:
        return ErrorReply("ERR NX and XX, GT or LT options at the same time are not compatible")
    if b"GT" in flags and b"LT" in flags:
        return ErrorReply("ERR GT and LT options at the same time are not compatible")
    name = args[0].lower().decode()
    scale, relative = _EXPIRE_SCALES[name]
    value = parse_int(args[2])
    if value is None:
        return NOT_AN_INTEGER
    if not INT64_MIN // scale <= value <= INT64_MAX // scale:
        return invalid_expire(name)
    return _ExpireArgs(value * scale, relative, frozenset(flags))


def parse_incrby(args: list[bytes]) -> int | ErrorReply:
    delta = parse_int(args[2])
    return NOT_AN_INTEGER if delta is None else delta


def parse_decrby(args: list[bytes]) -> int | ErrorReply:
    delta = parse_int(args[2])
    if delta is None:
        return NOT_AN_INTEGER
    if delta == INT64_MIN:
        return DECREMENT_OVERFLOW
    return -delta


def parse_incrbyfloat(args: list[bytes]) -> floats.Value | ErrorReply:
    increment = floats.parse(args[2])
    return NOT_A_FLOAT if increment is None else increment


def check_mset(args: list[bytes]) -> ErrorReply | None:
    return None if len(args) % 2 == 1 else arity_error("mset")


def check_msetnx(args: list[bytes]) -> ErrorReply | None:
    return None if len(args) % 2 == 1 else arity_error("msetnx")


def parse_getrange(args: list[bytes]) -> tuple[int, int] | ErrorReply:
    start, end = parse_int(args[2]), parse_int(args[3])
    if start is None or end is None:
        return NOT_AN_INTEGER
    return start, end


def parse_setrange(args: list[bytes]) -> int | ErrorReply:
    offset = parse_int(args[2])
    if offset is None:
        return NOT_AN_INTEGER
    if offset < 0:
        return ErrorReply("ERR offset is out of range")
    if args[3] and offset + len(args[3]) > MAX_STRING_LENGTH:
        return TOO_LONG
    return offset


def parse_copy(args: list[bytes]) -> bool | ErrorReply:
    """Whether COPY may REPLACE the destination; DB is accepted for database 0 only."""
    replace = False
    i = 3
    while i < len(args):
        option = args[i].upper()
        if option == b"REPLACE":
            replace = True
        elif option == b"DB" and i + 1 < len(args):
            i += 1
            number = parse_int(args[i])
            if number is None:
                return NOT_AN_INTEGER
            if not -(1 << 31) <= number < 1 << 31:
                return ErrorReply(
                    "ERR value is out of range, value must between -2147483648 and 2147483647"
                )
            if number != 0:
                return ErrorReply("ERR DB index is out of range")
        else:
            return SYNTAX_ERROR
        i += 1
    if args[1] == args[2]:
        return ErrorReply("ERR source and destination objects are the same")
    return replace


def check_flush(args: list[bytes]) -> ErrorReply | None:
    if len(args) == 1 or (len(args) == 2 and args[1].lower() in (b"sync", b"async")):
        return None
    return SYNTAX_ERROR


@attrs.frozen
class _ScanArgs:
    cursor: int
    count: int
    #: None when every key is wanted (no MATCH, or MATCH *)
    pattern: bytes | None


def parse_scan(args: list[bytes]) -> _ScanArgs | ErrorReply:
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


def arity_error(name: str) -> ErrorReply:
    """Redis's error for a command given the wrong number of arguments."""
    return ErrorReply(f"ERR wrong number of arguments for '{name}' command")
