"""A linearizability checker for histories of trioraft key-value operations.

Model. Each key is an independent register holding `bytes`, or nothing (`None`). The
operations and their sequential meaning:

* ``get(key) -> bytes | None``: the current value.
* ``set(key, value)``: stores ``value``; its reply carries no information and is not checked.
* ``del(key) -> 0 | 1``: removes the key, returning how many keys it removed.
* ``incr(key, by) -> int | None``: a missing key counts as 0; the sum is stored as its decimal
  text and returned. A value that is not the canonical decimal text of a signed 64-bit integer,
  or a sum outside that range, makes the command fail without changing anything: record that
  reply as output ``None``.
* ``set_if_equal(key, expected, value) -> bool``: stores ``value`` only if the current value
  equals ``expected`` (``expected=None`` means "only if the key is absent"), returning whether
  it stored.
* ``expire(key, value)``: the deletion of ``value`` when its deadline passes: removes the key
  if it still holds ``value`` (not a later value), else changes nothing. A write that gives a
  key a deadline (with values unique to each write) is recorded together with an
  indeterminate ``expire`` of its value, called when the write is: the key may vanish at
  one instant after that, or never, and nowhere else; a read after that instant never sees
  the value again.
* ``transaction(keys, reads, commands) -> tuple``: one operation on several keys, at one
  instant: it fits only where each key of ``reads`` (``((key, value), ...)``) holds that value,
  then runs ``commands`` (``((key, kind, args), ...)``, each a single-key operation above) in
  order, and returns the tuple of their outputs. ``keys`` (the operation's key) is the tuple of
  every key it reads or writes. A WATCH/MULTI/EXEC transaction that ran is one: its reads are
  the values it saw after WATCH; one with no commands is an atomic read of several keys (MGET).

Histories. A history lists `Operation` records: who called what on which key, when it was
called, and how it ended. ``OK``: it returned ``output`` at ``ret``. ``FAIL``: it definitely
took no effect, so the checker drops it. ``INFO``: the caller never learned the outcome (a
timeout, a lost connection); it may have taken effect at any single instant after ``call``, or
never, so its return time is +infinity and its output unknown. `History` records operations
as they happen, from plain or Trio code, stamping them with a clock it is given.

Linearizability means there is a total order of the operations (leaving out any indeterminate
ones that never took effect) that respects real time -- an operation that returned before
another was called comes first -- and in which every output equals what the sequential model
produces. Operations on distinct keys commute, so a history is linearizable exactly when each
key's sub-history is (locality, Herlihy and Wing; the P-compositionality of Horn and Kroening).
`check` therefore checks key by key; keys that transactions tie together are checked together,
as one register whose value is the tuple of theirs.

Search. For one key the checker runs Wing and Gong's depth-first search: repeatedly pick an
operation that may take effect next, apply it to the model, and backtrack when no pick fits.
Calls and returns form a doubly linked list in time order (calls before returns at equal
times, so equal timestamps count as concurrent). A call that appears before the first
remaining return belongs to an operation that may take effect next; placing it unlinks its
call and return, and backtracking relinks them in reverse order. Lowe's memoisation keeps
every configuration reached -- the set of placed operations as a bit set, and the model
state -- and never explores one twice, which bounds the search by the number of distinct
configurations rather than orders. The bit set is kept short: operations are ranked by call
time, and a configuration records how many of the earliest are all placed plus a small bit
set of the rest.

Indeterminate operations sit in a second list ordered by call time, outside the real-time
list, because nothing ever forces them to take effect. The search succeeds once every
completed operation is placed; indeterminate operations still unplaced never took effect.
Having placed fewer indeterminate operations leaves strictly more freedom, so a configuration
is skipped when one with the same completed operations and value, and a subset of its
indeterminate operations, was already reached. In the same spirit the search never does what
another choice dominates:

* an indeterminate operation is tried only after every completed candidate failed to fit,
  only if its call precedes the first remaining return, and only if it changes the value;
* indeterminate operations alike in kind and arguments are placed in call order, since once
  called they are interchangeable;
* an indeterminate operation is not placed right after another if placing it alone gives the
  same value (the earlier one would have been wasted, e.g. two blind writes in a row);
* a completed operation that changes nothing wherever its output fits (a get, a del that
  returned 0, a refused incr, a set_if_equal that returned false) is placed as soon as it
  fits, with no alternative tried at that point: placing it leaves the value as it was with
  one obligation fewer.

Verdicts. A key is ``ok`` with a witness order, ``violation`` when the search is exhausted,
or ``unknown`` when its time budget runs out first: exhaustion of the budget is never read
as a pass. For a violation the checker reports the longest prefix it managed to place, the
value after it, and why each operation that could come next did not fit.
"""

from __future__ import annotations

import enum
import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TypeAlias

import attrs

Key: TypeAlias = bytes | str
ClientId: TypeAlias = int | str
#: one key's value, or the tuple of the values of keys checked together
State: TypeAlias = "bytes | tuple[bytes | None, ...] | None"
#: an argument; a transaction's are tuples of them
Arg: TypeAlias = "bytes | int | tuple[Arg, ...] | None"
Transition: TypeAlias = Callable[[State], tuple[object, State]]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_PREFIX_SHOWN = 12
_CLOCK_EVERY = 1024


class Kind(enum.Enum):
    GET = "get"
    SET = "set"
    DEL = "del"
    INCR = "incr"
    SET_IF_EQUAL = "set_if_equal"
    EXPIRE = "expire"
    TRANSACTION = "transaction"


class Status(enum.Enum):
    OK = "ok"
    FAIL = "fail"
    INFO = "info"


class Verdict(enum.Enum):
    OK = "ok"
    VIOLATION = "violation"
    UNKNOWN = "unknown"


def _decimal(value: bytes) -> int | None:
    """The integer whose canonical decimal text is ``value``, if it fits in 64 bits."""
    try:
        number = int(value)
    except ValueError:
        return None
    if b"%d" % number != value or not _INT64_MIN <= number <= _INT64_MAX:
        return None
    return number


def _bytes_arg(kind: Kind, arg: Arg, *, absent_ok: bool = False) -> bytes | None:
    if isinstance(arg, bytes) or (absent_ok and arg is None):
        return arg
    raise ValueError(f"{kind.value}: expected bytes{' or None' if absent_ok else ''}, got {arg!r}")


def _arguments(kind: Kind, args: tuple[Arg, ...], arity: int) -> tuple[Arg, ...]:
    if len(args) != arity:
        raise ValueError(f"{kind.value} takes {arity} argument(s), got {args!r}")
    return args


def _transition(kind: Kind, args: tuple[Arg, ...]) -> Transition:
    """Validate ``args`` and return the operation's sequential meaning: state -> (output, state);
    for a transaction, on the tuple of the values of its keys, in the order of ``keys``."""
    if kind is Kind.TRANSACTION:
        return _transaction(args)
    if kind is Kind.GET:
        _arguments(kind, args, 0)
        return lambda state: (state, state)
    if kind is Kind.DEL:
        _arguments(kind, args, 0)
        return lambda state: (0 if state is None else 1, None)
    if kind is Kind.SET:
        value = _bytes_arg(kind, *_arguments(kind, args, 1))
        return lambda state: (None, value)
    if kind is Kind.INCR:
        (by,) = _arguments(kind, args, 1)
        if not isinstance(by, int) or isinstance(by, bool):
            raise ValueError(f"incr: expected an int increment, got {by!r}")

        def incr(state: State) -> tuple[object, State]:
            current = 0 if state is None else _decimal(state)
            if current is None or not _INT64_MIN <= current + by <= _INT64_MAX:
                return None, state
            return current + by, b"%d" % (current + by)

        return incr
    if kind is Kind.EXPIRE:
        doomed = _bytes_arg(kind, *_arguments(kind, args, 1))
        return lambda state: (None, None if state == doomed else state)
    first, second = _arguments(kind, args, 2)
    expected = _bytes_arg(kind, first, absent_ok=True)
    replacement = _bytes_arg(kind, second)
    return lambda state: (True, replacement) if state == expected else (False, state)


def _transaction(args: tuple[Arg, ...]) -> Transition:
    keys, reads, commands = _arguments(Kind.TRANSACTION, args, 3)
    if not isinstance(keys, tuple) or not isinstance(reads, tuple):
        raise ValueError(f"transaction: expected tuples of keys and reads, got {args!r}")
    if not isinstance(commands, tuple):
        raise ValueError(f"transaction: expected a tuple of commands, got {commands!r}")
    slot = {key: position for position, key in enumerate(keys)}
    expected = [(slot[key], value) for key, value in _pairs(reads, slot)]
    steps = [
        (slot[_key_in(command, slot)], _transition(Kind(command[1]), command[2]))  # type: ignore[index, arg-type]
        for command in commands
    ]

    def run(state: State) -> tuple[object, State]:
        assert isinstance(state, tuple)
        if any(state[position] != value for position, value in expected):
            return _DOES_NOT_FIT, state
        values = list(state)
        outputs = []
        for position, step in steps:
            output, values[position] = step(values[position])  # type: ignore[assignment]
            outputs.append(output)
        return tuple(outputs), tuple(values)

    return run


def _pairs(reads: tuple[Arg, ...], slot: Mapping[Arg, int]) -> list[tuple[Arg, Arg]]:
    if not all(isinstance(read, tuple) and len(read) == 2 and read[0] in slot for read in reads):
        raise ValueError(f"transaction: reads must be (key, value) of its keys, got {reads!r}")
    return [(read[0], read[1]) for read in reads]  # type: ignore[index]


def _key_in(command: Arg, slot: Mapping[Arg, int]) -> Arg:
    if not isinstance(command, tuple) or len(command) != 3 or command[0] not in slot:
        raise ValueError(f"transaction: a command is (key, kind, args), got {command!r}")
    return command[0]


#: what a transaction returns where its reads do not hold: no output ever equals it
_DOES_NOT_FIT = object()


def _expected(op: Operation) -> object:
    """The output the search expects of ``op``: a set's (and an expire's) reply is not
    checked."""
    if op.kind in (Kind.SET, Kind.EXPIRE):
        return None
    if op.kind is Kind.TRANSACTION and isinstance(op.output, tuple):
        commands = op.args[2]
        assert isinstance(commands, tuple)
        return tuple(
            None if command[1] == Kind.SET.value else output  # type: ignore[index]
            for command, output in zip(commands, op.output, strict=True)
        )
    return op.output


def _keys(op: Operation) -> tuple[Key, ...]:
    return op.key if isinstance(op.key, tuple) else (op.key,)


def _check_output(kind: Kind, output: object) -> None:
    if kind is Kind.TRANSACTION:
        valid = isinstance(output, tuple)
    elif kind is Kind.GET:
        valid = output is None or isinstance(output, bytes)
    elif kind in (Kind.SET, Kind.EXPIRE):
        valid = True
    elif kind is Kind.INCR:
        valid = output is None or isinstance(output, int)
    else:
        valid = isinstance(output, int) and output in (0, 1)
    if not valid:
        raise ValueError(f"{kind.value}: impossible output {output!r}")


def _observes(op: Operation) -> bool:
    """Whether a completed operation, given its output, changes nothing wherever it fits."""
    if op.status is not Status.OK:
        return False
    if op.kind is Kind.GET:
        return True
    if op.kind is Kind.DEL:
        return op.output == 0
    if op.kind is Kind.INCR:
        return op.output is None
    if op.kind is Kind.SET_IF_EQUAL:
        return op.output == 0 or op.args[0] == op.args[1]
    if op.kind is Kind.TRANSACTION:  # a read of several keys at once
        commands = op.args[2]
        assert isinstance(commands, tuple)
        return all(command[1] == Kind.GET.value for command in commands)  # type: ignore[index]
    return False


@attrs.frozen(slots=True)
class Operation:
    """One call in a history. ``args`` per kind: get (), set (value,), del (), incr (by,),
    set_if_equal (expected, value), transaction (keys, reads, commands), whose ``key`` is
    ``keys``. ``output`` matters only for OK; an INFO operation's ``ret`` must be ``math.inf``."""

    client: ClientId
    key: Key | tuple[Key, ...]
    kind: Kind
    args: tuple[Arg, ...]
    output: object
    call: float
    ret: float
    status: Status = Status.OK

    def __attrs_post_init__(self) -> None:
        _transition(self.kind, self.args)
        if self.kind is Kind.TRANSACTION and self.args[0] != self.key:
            raise ValueError(f"a transaction's key is its keys {self.args[0]!r}, not {self.key!r}")
        if self.status is Status.OK:
            _check_output(self.kind, self.output)
        if self.status is Status.INFO and self.ret != math.inf:
            raise ValueError(f"an indeterminate operation returns at +inf, not {self.ret}")
        if self.ret < self.call:
            raise ValueError(f"returned at {self.ret} before its call at {self.call}")

    def describe(self) -> str:
        args = ", ".join(repr(arg) for arg in self.args)
        if self.status is Status.INFO:
            return f"[{self.call:.6f}, ...) client {self.client}: {self.kind.value}({args}) -> ?"
        return (
            f"[{self.call:.6f}, {self.ret:.6f}] client {self.client}: "
            f"{self.kind.value}({args}) -> {self.output!r}"
        )


@attrs.frozen(slots=True)
class Placement:
    """An operation in a linearization, and the key's value just after it."""

    operation: Operation
    value: State


@attrs.frozen(slots=True)
class KeyResult:
    """The verdict for one key. ``linearization`` is a witness order when the verdict is OK and
    the longest linearizable prefix found for a violation; ``unplaced`` lists the operations
    that could have come next after that prefix, none of which fit."""

    key: Key | tuple[Key, ...]
    verdict: Verdict
    operations: int
    linearization: tuple[Placement, ...]
    unplaced: tuple[Operation, ...]
    explanation: str


@attrs.frozen(slots=True)
class CheckResult:
    """The overall verdict: a violation on any key decides it, then any unknown key."""

    verdict: Verdict
    #: by key, or by the tuple of keys checked together
    keys: Mapping[Key | tuple[Key, ...], KeyResult]

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK

    def explain(self) -> str:
        noteworthy = [result for result in self.keys.values() if result.verdict is not Verdict.OK]
        if not noteworthy:
            total = sum(result.operations for result in self.keys.values())
            return f"linearizable: {len(self.keys)} key(s), {total} operation(s) checked"
        return "\n\n".join(result.explanation for result in noteworthy)


@attrs.frozen(slots=True)
class Handle:
    """Names an operation recorded by `History.invoke`."""

    index: int


class History:
    """Records operations as clients run them, stamping calls and returns with ``clock``
    (``time.monotonic`` by default; ``trio.current_time`` under a Trio test's clock).
    Operations still pending when `operations` is called count as indeterminate."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._calls: list[tuple[ClientId, Key | tuple[Key, ...], Kind, tuple[Arg, ...], float]] = []
        self._ends: list[Operation | None] = []

    def invoke(
        self,
        client: ClientId,
        key: Key | tuple[Key, ...],
        kind: Kind | str,
        args: Sequence[Arg] = (),
        at: float | None = None,
    ) -> Handle:
        """Record a call, made now (or, for an operation that cannot take effect before
        some time, e.g. an expire, at time `at`)."""
        kind = Kind(kind)
        arguments = tuple(args)
        _transition(kind, arguments)
        self._calls.append((client, key, kind, arguments, self._clock() if at is None else at))
        self._ends.append(None)
        return Handle(len(self._calls) - 1)

    def complete(self, handle: Handle, output: object) -> None:
        self._end(handle, output, self._clock(), Status.OK)

    def fail(self, handle: Handle) -> None:
        self._end(handle, None, self._clock(), Status.FAIL)

    def unknown(self, handle: Handle) -> None:
        self._end(handle, None, math.inf, Status.INFO)

    def _end(self, handle: Handle, output: object, ret: float, status: Status) -> None:
        if self._ends[handle.index] is not None:
            raise ValueError(f"operation {handle.index} has already ended")
        client, key, kind, args, call = self._calls[handle.index]
        self._ends[handle.index] = Operation(client, key, kind, args, output, call, ret, status)

    def operations(self) -> list[Operation]:
        return [
            end if end is not None else Operation(*call[:4], None, call[4], math.inf, Status.INFO)
            for call, end in zip(self._calls, self._ends, strict=True)
        ]

    def __iter__(self) -> Iterator[Operation]:
        return iter(self.operations())

    def __len__(self) -> int:
        return len(self._calls)


def check(
    history: Iterable[Operation],
    *,
    key_budget: float | None = 10.0,
    total_budget: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> CheckResult:
    """Check ``history`` for linearizability, key by key, each within ``key_budget`` seconds
    and all within ``total_budget`` seconds of ``clock`` (``None``: unlimited)."""
    start = clock()
    overall = math.inf if total_budget is None else start + total_budget
    results: dict[Key | tuple[Key, ...], KeyResult] = {}
    for keys, operations in _groups(history).items():
        now = clock()
        deadline = min(overall, math.inf if key_budget is None else now + key_budget)
        alone = len(keys) == 1 and all(op.kind is not Kind.TRANSACTION for op in operations)
        search = _KeySearch(keys[0] if alone else keys, operations)
        results[search.key] = search.run(deadline, clock)
    verdicts = {result.verdict for result in results.values()}
    for verdict in (Verdict.VIOLATION, Verdict.UNKNOWN):
        if verdict in verdicts:
            return CheckResult(verdict, results)
    return CheckResult(Verdict.OK, results)


def _groups(history: Iterable[Operation]) -> dict[tuple[Key, ...], list[Operation]]:
    """The operations by the keys that must be checked together: those transactions tie."""
    operations = list(history)
    group: dict[Key, Key] = {}  # union-find: a key's parent, a root its own

    def root(key: Key) -> Key:
        while group.setdefault(key, key) != key:
            group[key] = group[group[key]]
            key = group[key]
        return key

    for op in operations:
        first, *others = _keys(op)
        for other in [first, *others]:
            group[root(other)] = root(first)
    members: dict[Key, list[Key]] = {}
    for key in list(group):
        members.setdefault(root(key), []).append(key)
    by_group: dict[tuple[Key, ...], list[Operation]] = {}
    for op in operations:
        keys = tuple(members[root(_keys(op)[0])])
        by_group.setdefault(keys, []).append(op)
    return by_group


def _lifted(op: Operation, keys: tuple[Key, ...]) -> Transition:
    """The meaning of ``op`` on the tuple of the values of ``keys``."""
    if op.kind is Kind.TRANSACTION:
        own = _transition(op.kind, op.args)
        positions = [keys.index(key) for key in _keys(op)]

        def on_group(state: State) -> tuple[object, State]:
            assert isinstance(state, tuple)
            output, after = own(tuple(state[position] for position in positions))
            values = list(state)
            for position, value in zip(positions, after, strict=True):  # type: ignore[arg-type]
                values[position] = value
            return output, tuple(values)

        return on_group
    single = _transition(op.kind, op.args)
    position = keys.index(op.key)  # type: ignore[arg-type]

    def on_one(state: State) -> tuple[object, State]:
        assert isinstance(state, tuple)
        output, value = single(state[position])
        return output, (*state[:position], value, *state[position + 1 :])  # type: ignore[misc]

    return on_one


# Entry kinds in the search lists.
_CALL, _RETURN, _INFO, _DONE, _END = range(5)


class _KeySearch:
    """The search over one key's operations; see the module docstring."""

    def __init__(self, key: Key | tuple[Key, ...], operations: list[Operation]) -> None:
        """The search over one key's operations, or (``key`` a tuple) over those of keys
        checked together, each missing at first."""
        self.key = key
        # FAIL operations took no effect; an indeterminate get constrains nothing.
        ops = [
            op
            for op in operations
            if op.status is Status.OK or (op.status is Status.INFO and op.kind is not Kind.GET)
        ]
        ops.sort(key=lambda op: op.call)
        self.ops = ops
        if isinstance(key, tuple):
            self.initial: State = (None,) * len(key)
            self.transitions = [_lifted(op, key) for op in ops]
        else:
            self.initial = None
            self.transitions = [_transition(op.kind, op.args) for op in ops]
        self.expected = [_expected(op) for op in ops]
        self.observer = [_observes(op) for op in ops]
        events = sorted(
            (time_, is_return, index)
            for index, op in enumerate(ops)
            if op.status is Status.OK
            for time_, is_return in ((op.call, 0), (op.ret, 1))
        )
        infos = [index for index, op in enumerate(ops) if op.status is Status.INFO]
        # Bit positions: completed and indeterminate operations count separately, in call order.
        completed = [index for index, op in enumerate(ops) if op.status is Status.OK]
        self.rank = [0] * len(ops)
        for group in (completed, infos):
            for position, index in enumerate(group):
                self.rank[index] = position
        # Indeterminate operations alike in kind and arguments are interchangeable once called:
        # `twin` is the bit of the previous one alike, which must be placed first.
        self.twin = [0] * len(ops)
        latest: dict[tuple[Kind, tuple[Arg, ...]], int] = {}
        for index in infos:
            alike = (ops[index].kind, ops[index].args)
            if alike in latest:
                self.twin[index] = 1 << self.rank[latest[alike]]
            latest[alike] = index
        n = len(events) + len(infos)
        self.main_head, self.main_tail, self.info_head, self.info_tail = n, n + 1, n + 2, n + 3
        self.kind = [_RETURN if is_return else _CALL for _, is_return, _ in events]
        self.kind += [_INFO] * len(infos) + [_END, _DONE, _END, _END]
        self.time = [time_ for time_, _, _ in events] + [ops[i].call for i in infos]
        self.time += [math.inf] * 4
        self.op = [index for _, _, index in events] + infos + [-1] * 4
        self.match = [-1] * (n + 4)
        call_entry: dict[int, int] = {}
        for entry, (_, is_return, index) in enumerate(events):
            if is_return:
                self.match[call_entry[index]] = entry
            else:
                call_entry[index] = entry
        self.next = [-1] * (n + 4)
        self.prev = [-1] * (n + 4)
        main = [self.main_head, *range(len(events)), self.main_tail]
        info = [self.info_head, *range(len(events), n), self.info_tail]
        for chain in (main, info):
            for before, after in itertools.pairwise(chain):
                self.next[before] = after
                self.prev[after] = before

    def _lift(self, entry: int) -> None:
        nxt, prv = self.next, self.prev
        nxt[prv[entry]] = nxt[entry]
        prv[nxt[entry]] = prv[entry]
        partner = self.match[entry]
        if partner >= 0:
            nxt[prv[partner]] = nxt[partner]
            prv[nxt[partner]] = prv[partner]

    def _unlift(self, entry: int) -> None:
        nxt, prv = self.next, self.prev
        partner = self.match[entry]
        if partner >= 0:
            nxt[prv[partner]] = partner
            prv[nxt[partner]] = partner
        nxt[prv[entry]] = entry
        prv[nxt[entry]] = entry

    def _frontier(self) -> tuple[list[int], int]:
        """The entries that may take effect next -- the calls before the first remaining
        return, then the indeterminate calls no later than it -- and that return's entry."""
        found: list[int] = []
        entry = self.next[self.main_head]
        while self.kind[entry] == _CALL:
            found.append(entry)
            entry = self.next[entry]
        blocking = entry
        entry = self.next[self.info_head]
        while self.kind[entry] == _INFO and self.time[entry] <= self.time[blocking]:
            found.append(entry)
            entry = self.next[entry]
        return found, blocking

    def run(self, deadline: float, clock: Callable[[], float]) -> KeyResult:
        # Hot loop: everything it touches is a local.
        kinds, times, op_of, rank, twin = self.kind, self.time, self.op, self.rank, self.twin
        observer, transitions, expected = self.observer, self.transitions, self.expected
        nxt, lift, unlift = self.next, self._lift, self._unlift
        main_head, info_head, info_tail = self.main_head, self.info_head, self.info_tail
        # The completed operations placed are those ranked below `base`, and those whose bit
        # `rank - base` is set in `rest`; `taken` holds the indeterminate operations placed.
        # seen: (base, rest, value) -> the `taken` sets that configuration was reached with.
        seen: dict[tuple[int, int, State], list[int]] = {}
        stack: list[tuple[int, State, int, int, int, float, bool]] = []
        state: State = self.initial
        base = rest = taken = 0
        limit = -math.inf  # return time of the first completed operation not yet placed
        deepest = 0
        stale = True  # the deepest prefix reached has not been recorded yet
        prefix: list[tuple[int, State]] = []
        unchanged = 0  # the stack still begins with prefix[:unchanged]
        prefix_state: State = self.initial
        frontier: tuple[list[int], int] = ([], -1)
        steps = 0
        entry = nxt[main_head]
        while True:
            steps += 1
            if not steps % _CLOCK_EVERY and clock() > deadline:
                return self._unknown(steps, len(seen))
            kind = kinds[entry]
            if kind == _CALL:
                index = op_of[entry]
                output, after = transitions[index](state)
                if output != expected[index]:
                    entry = nxt[entry]
                    continue
                rest_after = rest | 1 << (rank[index] - base)
                ones = ((rest_after ^ (rest_after + 1)) >> 1).bit_length()
                configuration = (base + ones, rest_after >> ones, after)
                taken_after = taken
                forced = observer[index]
            elif kind == _RETURN:
                limit = times[entry]
                entry = nxt[info_head]
                continue
            elif kind == _INFO and times[entry] <= limit:
                index = op_of[entry]
                if taken & twin[index] != twin[index]:
                    entry = nxt[entry]
                    continue
                output, after = transitions[index](state)
                if after == state or (
                    stack
                    and kinds[stack[-1][0]] == _INFO
                    and transitions[index](stack[-1][1])[1] == after
                ):
                    entry = nxt[entry]
                    continue
                configuration = (base, rest, after)
                taken_after = taken | 1 << rank[index]
                forced = False
            elif kind == _DONE:
                return self._ok([(placed, before) for placed, before, *_ in stack], state)
            else:
                if stale and len(stack) == deepest:
                    del prefix[unchanged:]
                    prefix += [(placed, before) for placed, before, *_ in stack[unchanged:]]
                    unchanged = len(stack)
                    prefix_state, frontier = state, self._frontier()
                    stale = False
                if not stack:
                    return self._violation(prefix, prefix_state, *frontier)
                entry, state, base, rest, taken, limit, forced = stack.pop()
                unchanged = min(unchanged, len(stack))
                unlift(entry)
                entry = info_tail if forced else nxt[entry]
                continue
            reached = seen.setdefault(configuration, [])
            if any(mask | taken_after == taken_after for mask in reached):
                entry = info_tail if forced else nxt[entry]
                continue
            if reached:
                reached[:] = [mask for mask in reached if mask & taken_after != taken_after]
            reached.append(taken_after)
            stack.append((entry, state, base, rest, taken, limit, forced))
            (base, rest, state), taken = configuration, taken_after
            lift(entry)
            if len(stack) > deepest:
                deepest, stale = len(stack), True
            entry = nxt[main_head]

    def _placements(self, stack: Sequence[tuple[int, State]], final: State) -> list[Placement]:
        if not stack:
            return []
        afters = [before for _, before in stack[1:]] + [final]
        return [
            Placement(self.ops[self.op[entry]], after)
            for (entry, _), after in zip(stack, afters, strict=True)
        ]

    def _ok(self, stack: list[tuple[int, State]], final: State) -> KeyResult:
        placements = self._placements(stack, final)
        explanation = f"key {self.key!r}: linearizable ({len(self.ops)} operations)"
        return KeyResult(self.key, Verdict.OK, len(self.ops), tuple(placements), (), explanation)

    def _unknown(self, steps: int, configurations: int) -> KeyResult:
        explanation = (
            f"key {self.key!r}: UNKNOWN, the time budget ran out after {steps} search steps "
            f"over {configurations} configurations ({len(self.ops)} operations)"
        )
        return KeyResult(self.key, Verdict.UNKNOWN, len(self.ops), (), (), explanation)

    def _violation(
        self,
        prefix: list[tuple[int, State]],
        final: State,
        candidates: list[int],
        blocking: int,
    ) -> KeyResult:
        placements = self._placements(prefix, final)
        unplaced = [self.ops[self.op[entry]] for entry in candidates]
        lines = [
            f"key {self.key!r}: NOT LINEARIZABLE ({len(self.ops)} operations).",
            f"Longest linearizable prefix found: {len(placements)} operation(s)"
            + (":" if placements else "."),
        ]
        hidden = len(placements) - _PREFIX_SHOWN
        if hidden > 0:
            lines.append(f"  ... {hidden} earlier operation(s)")
        for number, placement in enumerate(placements[-_PREFIX_SHOWN:], max(hidden, 0) + 1):
            lines.append(
                f"  {number}. {placement.operation.describe()}   => value {placement.value!r}"
            )
        lines.append(
            f"Then the value is {final!r} and no operation fits next. This one returned first"
            f" of those left, so it or one called before it must come next:"
        )
        lines.append(f"  {self.ops[self.op[blocking]].describe()}")
        lines.append("Every candidate, and why it does not fit:")
        for entry, operation in zip(candidates, unplaced, strict=True):
            output, after = self.transitions[self.op[entry]](final)
            if self.kind[entry] == _INFO:
                reason = (
                    "indeterminate, and would not change the value"
                    if after == final
                    else "indeterminate; taking effect here leads to no linearization either"
                )
            elif output != self.expected[self.op[entry]]:
                reason = f"would return {output!r} here"
            else:
                reason = "fits here, but no linearization of the remaining operations follows"
            lines.append(f"  {operation.describe()}: {reason}")
        return KeyResult(
            self.key,
            Verdict.VIOLATION,
            len(self.ops),
            tuple(placements),
            tuple(unplaced),
            "\n".join(lines),
        )
