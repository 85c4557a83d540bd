"""Tests for the linearizability checker in tests/sim/linearizability.py.

Hand-built histories pin down the model and the verdicts; property tests compare the checker
with histories generated from a real sequential execution, with deliberately corrupted ones,
and with a brute-force search over every order on small histories.
"""

from __future__ import annotations

import itertools
import math
import random
import re
import time
from collections.abc import Iterator

import attrs
import pytest
import trio
import trio.testing
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sim.linearizability import (
    Arg,
    History,
    Key,
    Kind,
    Operation,
    Status,
    Verdict,
    check,
)

K = b"k"
#: the operations on one key (the property tests' histories are made of them)
SINGLE_KEY_KINDS = [kind for kind in Kind if kind is not Kind.TRANSACTION]


def ok(
    client: int, kind: str, args: tuple[Arg, ...], output: object, call: float, ret: float
) -> Operation:
    return Operation(client, K, Kind(kind), args, output, call, ret)


def info(client: int, kind: str, args: tuple[Arg, ...], call: float) -> Operation:
    return Operation(client, K, Kind(kind), args, None, call, math.inf, Status.INFO)


def fail(client: int, kind: str, args: tuple[Arg, ...], call: float, ret: float) -> Operation:
    return Operation(client, K, Kind(kind), args, None, call, ret, Status.FAIL)


def verdict(*history: Operation) -> Verdict:
    return check(history).verdict


# --- linearizable histories -------------------------------------------------------------


def test_sequential_history_exercising_every_operation() -> None:
    history = [
        ok(1, "get", (), None, 0, 1),
        ok(1, "set", (b"a",), b"OK", 2, 3),
        ok(2, "get", (), b"a", 4, 5),
        ok(2, "incr", (1,), None, 6, 7),  # b"a" is not an integer: refused
        ok(1, "del", (), 1, 8, 9),
        ok(1, "del", (), 0, 10, 11),
        ok(2, "incr", (5,), 5, 12, 13),
        ok(1, "incr", (-7,), -2, 14, 15),
        ok(2, "get", (), b"-2", 16, 17),
        ok(1, "set_if_equal", (b"-2", b"b"), True, 18, 19),
        ok(2, "set_if_equal", (b"-2", b"c"), False, 20, 21),
        ok(1, "del", (), 1, 22, 23),
        ok(2, "set_if_equal", (None, b"d"), True, 24, 25),
        ok(1, "get", (), b"d", 26, 27),
    ]
    result = check(history)
    assert result.ok, result.explain()
    assert result.keys[K].verdict is Verdict.OK
    witness = result.keys[K].linearization
    assert [placement.operation for placement in witness] == history
    assert witness[-1].value == b"d"
    assert "linearizable" in result.explain()


@pytest.mark.parametrize("seen", [b"a", b"b"])
def test_overlapping_writes_may_take_effect_in_either_order(seen: bytes) -> None:
    writes = (ok(1, "set", (b"a",), b"OK", 0, 10), ok(2, "set", (b"b",), b"OK", 1, 9))
    assert verdict(*writes, ok(3, "get", (), seen, 20, 21)) is Verdict.OK


@pytest.mark.parametrize("seen", [b"a", b"b"])
def test_a_read_overlapping_a_write_sees_the_old_or_the_new_value(seen: bytes) -> None:
    history = (
        ok(1, "set", (b"a",), b"OK", 0, 1),
        ok(1, "set", (b"b",), b"OK", 2, 10),
        ok(2, "get", (), seen, 3, 4),
    )
    assert verdict(*history) is Verdict.OK


def test_equal_timestamps_count_as_concurrent() -> None:
    history = (ok(1, "set", (b"a",), b"OK", 0, 5), ok(2, "get", (), None, 5, 6))
    assert verdict(*history) is Verdict.OK


@pytest.mark.parametrize("seen", [b"a", b"b"])
def test_an_indeterminate_write_may_or_may_not_take_effect(seen: bytes) -> None:
    history = (
        ok(1, "set", (b"a",), b"OK", 0, 1),
        info(1, "set", (b"b",), 2),
        ok(2, "get", (), seen, 5, 6),
        ok(2, "get", (), seen, 7, 8),
    )
    assert verdict(*history) is Verdict.OK


def test_an_indeterminate_write_may_take_effect_long_after_its_call() -> None:
    history = (
        ok(1, "set", (b"a",), b"OK", 0, 1),
        info(1, "set", (b"b",), 2),
        ok(2, "get", (), b"a", 5, 6),
        ok(2, "get", (), b"b", 7, 8),
    )
    assert verdict(*history) is Verdict.OK


def test_indeterminate_increments_take_effect_at_most_once_each() -> None:
    base = (ok(1, "incr", (1,), 1, 0, 1), info(1, "incr", (1,), 2), info(3, "incr", (1,), 2))
    for total, expected in ((b"1", Verdict.OK), (b"2", Verdict.OK), (b"3", Verdict.OK)):
        assert verdict(*base, ok(2, "get", (), total, 5, 6)) is expected
    assert verdict(*base, ok(2, "get", (), b"4", 5, 6)) is Verdict.VIOLATION


def test_indeterminate_operations_may_take_effect_back_to_back() -> None:
    history = (info(1, "set", (b"5",), 0), info(2, "incr", (1,), 0), ok(3, "get", (), b"6", 1, 2))
    assert verdict(*history) is Verdict.OK


def test_the_search_revisits_a_state_reached_with_fewer_indeterminate_operations() -> None:
    # Only one assignment works: the incr(1) makes the del find a key, the incr(-2) then
    # takes the key from absent to -2 for the incr(-2) that returned -4. Trying the
    # incr(-2) first, the search reaches "del done, key absent" with both increments spent;
    # reaching that point again with only the incr(1) spent must not count as seen.
    history = (
        info(2, "incr", (-2,), 0),
        ok(0, "del", (), 1, 1, 7),
        info(1, "incr", (1,), 1),
        ok(1, "incr", (3,), -1, 6, 19),
        ok(0, "incr", (-2,), -4, 8, 18),
    )
    assert verdict(*history) is Verdict.OK


def test_failed_operations_are_dropped() -> None:
    history = (
        ok(1, "set", (b"a",), b"OK", 0, 1),
        fail(1, "set", (b"b",), 2, 3),
        fail(1, "incr", (1,), 2, 3),
        ok(2, "get", (), b"a", 5, 6),
    )
    result = check(history)
    assert result.ok
    assert result.keys[K].operations == 2


def test_indeterminate_reads_constrain_nothing() -> None:
    history = (ok(1, "set", (b"a",), b"OK", 0, 1), info(2, "get", (), 0))
    assert verdict(*history) is Verdict.OK


def test_keys_are_checked_independently() -> None:
    history = [
        Operation(1, b"x", Kind.SET, (b"1",), b"OK", 0, 10),
        Operation(2, b"y", Kind.SET, (b"2",), b"OK", 0, 10),
        Operation(1, b"x", Kind.GET, (), b"1", 11, 12),
        Operation(2, b"y", Kind.GET, (), None, 11, 12),  # stale
        Operation(3, "z", Kind.GET, (), None, 0, 1),
    ]
    result = check(history)
    assert result.verdict is Verdict.VIOLATION
    assert {key: r.verdict for key, r in result.keys.items()} == {
        b"x": Verdict.OK,
        b"y": Verdict.VIOLATION,
        "z": Verdict.OK,
    }
    assert "b'y'" in result.explain()
    assert "b'x'" not in result.explain()


# --- violations -------------------------------------------------------------------------


def test_stale_read_is_a_violation_and_is_explained() -> None:
    history = (
        ok(1, "set", (b"a",), b"OK", 0, 1),
        ok(1, "set", (b"b",), b"OK", 2, 3),
        ok(2, "get", (), b"a", 4, 5),
    )
    result = check(history)
    assert result.verdict is Verdict.VIOLATION
    key = result.keys[K]
    assert key.verdict is Verdict.VIOLATION
    assert [placement.operation for placement in key.linearization] == list(history[:2])
    assert key.unplaced == (history[2],)
    text = result.explain()
    assert "b'k'" in text and "NOT LINEARIZABLE" in text
    assert "client 2: get() -> b'a': would return b'b' here" in text


def test_a_read_cannot_go_back_in_time() -> None:
    history = (
        ok(1, "set", (b"a",), b"OK", 0, 1),
        ok(1, "set", (b"b",), b"OK", 2, 10),
        ok(2, "get", (), b"b", 3, 4),
        ok(2, "get", (), b"a", 5, 6),
    )
    assert verdict(*history) is Verdict.VIOLATION


def test_lost_acknowledged_write() -> None:
    history = (
        ok(1, "incr", (1,), 1, 0, 1),
        ok(1, "incr", (1,), 2, 2, 3),
        ok(2, "get", (), b"1", 4, 5),
    )
    assert verdict(*history) is Verdict.VIOLATION
    assert verdict(ok(1, "set", (b"a",), b"OK", 0, 1), ok(2, "get", (), None, 2, 3)) is (
        Verdict.VIOLATION
    )


def test_read_of_a_value_never_written() -> None:
    writes = (ok(1, "set", (b"a",), b"OK", 0, 10), ok(2, "set", (b"b",), b"OK", 1, 9))
    assert verdict(*writes, ok(3, "get", (), b"c", 2, 21)) is Verdict.VIOLATION


def test_an_indeterminate_write_cannot_take_effect_before_its_call() -> None:
    history = (
        ok(1, "set", (b"a",), b"OK", 0, 1),
        ok(2, "get", (), b"b", 2, 3),
        info(1, "set", (b"b",), 4),
    )
    assert verdict(*history) is Verdict.VIOLATION


def test_doubled_increment() -> None:
    both_one = (ok(1, "incr", (1,), 1, 0, 10), ok(2, "incr", (1,), 1, 0, 10))
    assert verdict(*both_one) is Verdict.VIOLATION
    one_two = (ok(1, "incr", (1,), 2, 0, 10), ok(2, "incr", (1,), 1, 0, 10))
    assert verdict(*one_two) is Verdict.OK
    three = (*one_two, ok(3, "get", (), b"3", 11, 12))
    assert verdict(*three) is Verdict.VIOLATION


def test_set_if_equal_misbehaving() -> None:
    start = ok(1, "set", (b"a",), b"OK", 0, 1)
    refused_wrongly = ok(2, "set_if_equal", (b"a", b"b"), False, 2, 3)
    assert verdict(start, refused_wrongly) is Verdict.VIOLATION
    stored_wrongly = ok(2, "set_if_equal", (b"x", b"b"), True, 2, 3)
    assert verdict(start, stored_wrongly) is Verdict.VIOLATION
    absent_wrongly = ok(2, "set_if_equal", (None, b"b"), True, 2, 3)
    assert verdict(start, absent_wrongly) is Verdict.VIOLATION
    refused_but_applied = (
        start,
        ok(2, "set_if_equal", (b"x", b"b"), False, 2, 3),
        ok(2, "get", (), b"b", 4, 5),
    )
    assert verdict(*refused_but_applied) is Verdict.VIOLATION
    # Two concurrent "create if absent" calls cannot both win, but either one may.
    racers = (
        ok(1, "set_if_equal", (None, b"x"), True, 0, 10),
        ok(2, "set_if_equal", (None, b"y"), True, 0, 10),
    )
    assert verdict(*racers) is Verdict.VIOLATION
    assert verdict(racers[0], attrs.evolve(racers[1], output=False)) is Verdict.OK


def test_delete_counts() -> None:
    assert verdict(ok(1, "del", (), 1, 0, 1)) is Verdict.VIOLATION
    present = ok(1, "set", (b"a",), b"OK", 0, 1)
    assert verdict(present, ok(1, "del", (), 0, 2, 3)) is Verdict.VIOLATION
    assert verdict(present, ok(1, "del", (), 1, 2, 3), ok(1, "del", (), 1, 4, 5)) is (
        Verdict.VIOLATION
    )


def test_increment_of_a_non_integer() -> None:
    for text in (b"a", b"01", b" 1", b"+1", b"-0", b"9223372036854775808"):
        start = ok(1, "set", (text,), b"OK", 0, 1)
        assert verdict(start, ok(1, "incr", (1,), None, 2, 3)) is Verdict.OK
        assert verdict(start, ok(1, "incr", (1,), 2, 2, 3)) is Verdict.VIOLATION
    integer = ok(1, "set", (b"-5",), b"OK", 0, 1)
    assert verdict(integer, ok(1, "incr", (1,), None, 2, 3)) is Verdict.VIOLATION
    at_limit = ok(1, "set", (b"9223372036854775807",), b"OK", 0, 1)
    assert verdict(at_limit, ok(1, "incr", (1,), None, 2, 3)) is Verdict.OK


def test_violation_overrides_unknown_and_unknown_overrides_ok() -> None:
    stale = [
        Operation(1, b"bad", Kind.SET, (b"a",), b"OK", 0, 1),
        Operation(1, b"bad", Kind.GET, (), None, 2, 3),
    ]
    fine = [Operation(1, b"fine", Kind.GET, (), None, 0, 1)]
    hard = _hard_history(b"hard")
    assert check(fine + hard, key_budget=0.05).verdict is Verdict.UNKNOWN
    assert check(fine + hard + stale, key_budget=0.05).verdict is Verdict.VIOLATION


# --- time budgets -----------------------------------------------------------------------


def _hard_history(key: Key, writers: int = 22) -> list[Operation]:
    """Many overlapping writes, then a read of a value none wrote: refuting it means trying
    every subset of the writes in every order the memo cannot merge."""
    writes = [
        Operation(client, key, Kind.SET, (b"%d" % client,), b"OK", 0, 100)
        for client in range(writers)
    ]
    return [*writes, Operation(writers, key, Kind.GET, (), b"never", 200, 201)]


def test_running_out_of_time_reports_unknown_never_a_pass() -> None:
    started = time.monotonic()
    result = check(_hard_history(K), key_budget=0.2)
    assert time.monotonic() - started < 5
    assert result.verdict is Verdict.UNKNOWN
    assert not result.ok
    assert result.keys[K].verdict is Verdict.UNKNOWN
    assert "time budget ran out" in result.explain()


def test_budgets_follow_the_clock_given() -> None:
    ticks = itertools.count()

    def clock() -> float:
        return float(next(ticks))

    result = check(
        _hard_history(b"a") + _hard_history(b"b"), key_budget=None, total_budget=3.0, clock=clock
    )
    assert [r.verdict for r in result.keys.values()] == [Verdict.UNKNOWN, Verdict.UNKNOWN]
    easy = [Operation(1, b"c", Kind.GET, (), None, 0, 1)]
    assert check(easy, key_budget=0.0, clock=clock).verdict is Verdict.OK


# --- the recorder -----------------------------------------------------------------------


def test_history_records_with_the_clock_it_is_given() -> None:
    now = [0.0]
    history = History(lambda: now[0])
    first = history.invoke(1, b"k", "set", (b"a",))
    now[0] = 1.0
    second = history.invoke(2, b"k", Kind.GET)
    history.complete(first, b"OK")
    now[0] = 2.0
    third = history.invoke(3, b"k", "incr", [1])
    history.fail(third)
    fourth = history.invoke(4, b"k", "del")
    history.unknown(fourth)
    history.invoke(5, b"k", "set", (b"z",))  # never ended
    now[0] = 3.0
    history.complete(second, b"a")
    assert len(history) == 5
    assert history.operations() == [
        Operation(1, b"k", Kind.SET, (b"a",), b"OK", 0.0, 1.0),
        Operation(2, b"k", Kind.GET, (), b"a", 1.0, 3.0),
        Operation(3, b"k", Kind.INCR, (1,), None, 2.0, 2.0, Status.FAIL),
        Operation(4, b"k", Kind.DEL, (), None, 2.0, math.inf, Status.INFO),
        Operation(5, b"k", Kind.SET, (b"z",), None, 2.0, math.inf, Status.INFO),
    ]
    assert check(history).ok
    with pytest.raises(ValueError, match="already ended"):
        history.complete(first, b"OK")


def test_malformed_operations_are_refused() -> None:
    history = History()
    with pytest.raises(ValueError, match="takes 1 argument"):
        history.invoke(1, b"k", "set")
    with pytest.raises(ValueError, match="expected bytes"):
        history.invoke(1, b"k", "set", ("text",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="int increment"):
        history.invoke(1, b"k", "incr", (True,))
    with pytest.raises(ValueError):
        history.invoke(1, b"k", "append", (b"x",))
    handle = history.invoke(1, b"k", "del")
    with pytest.raises(ValueError, match="impossible output"):
        history.complete(handle, 2)
    with pytest.raises(ValueError, match=r"\+inf"):
        Operation(1, b"k", Kind.SET, (b"a",), None, 0, 5, Status.INFO)
    with pytest.raises(ValueError, match="before its call"):
        Operation(1, b"k", Kind.GET, (), None, 5, 4)


class _Store:
    """An in-memory store for the Trio tests; `atomic=False` makes incr a read-sleep-write."""

    def __init__(self, *, atomic: bool) -> None:
        self.values: dict[bytes, bytes] = {}
        self.atomic = atomic

    async def incr(self, key: bytes, by: int) -> int:
        await trio.sleep(0.01)
        current = int(self.values.get(key, b"0"))
        if not self.atomic:
            await trio.sleep(0.01)
        self.values[key] = b"%d" % (current + by)
        await trio.sleep(0.01)
        return current + by

    async def get(self, key: bytes) -> bytes | None:
        await trio.sleep(0.01)
        value = self.values.get(key)
        await trio.sleep(0.01)
        return value


async def _hammer(store: _Store, history: History, client: int) -> None:
    for round_ in range(5):
        key = b"counter%d" % (round_ % 2)
        handle = history.invoke(client, key, "incr", (1,))
        history.complete(handle, await store.incr(key, 1))
        handle = history.invoke(client, key, "get")
        history.complete(handle, await store.get(key))


@pytest.mark.parametrize("atomic", [True, False])
async def test_recording_trio_clients(autojump_clock: trio.testing.MockClock, atomic: bool) -> None:
    store = _Store(atomic=atomic)
    history = History(trio.current_time)
    async with trio.open_nursery() as nursery:
        for client in range(4):
            nursery.start_soon(_hammer, store, history, client)
    result = check(history)
    assert result.verdict is (Verdict.OK if atomic else Verdict.VIOLATION), result.explain()


# --- generated histories ----------------------------------------------------------------

VALUES = (b"a", b"b", b"1", b"7")
KEYS = (b"x", b"y", b"z")


def reference(store: dict[Key, bytes], key: Key, kind: Kind, args: tuple[Arg, ...]) -> object:
    """The sequential specification, written independently of the checker's model."""
    current = store.get(key)
    if kind is Kind.GET:
        return current
    if kind is Kind.SET:
        assert isinstance(args[0], bytes)
        store[key] = args[0]
        return b"OK"
    if kind is Kind.DEL:
        return 1 if store.pop(key, None) is not None else 0
    if kind is Kind.INCR:
        text = b"0" if current is None else current
        if not re.fullmatch(rb"0|-?[1-9][0-9]*", text):
            return None
        assert isinstance(args[0], int)
        total = int(text) + args[0]
        if not -(2**63) <= total < 2**63:
            return None
        store[key] = str(total).encode()
        return total
    if kind is Kind.EXPIRE:
        if current is not None and current == args[0]:
            del store[key]
        return None
    if current != args[0]:
        return False
    assert isinstance(args[1], bytes)
    store[key] = args[1]
    return True


def arguments(kind: Kind) -> st.SearchStrategy[tuple[Arg, ...]]:
    value = st.sampled_from(VALUES)
    if kind in (Kind.SET, Kind.EXPIRE):
        return st.tuples(value)
    if kind is Kind.INCR:
        return st.tuples(st.integers(-3, 3))
    if kind is Kind.SET_IF_EQUAL:
        return st.tuples(st.none() | value, value)
    return st.just(())


@st.composite
def calls(draw: st.DrawFn, keys: tuple[Key, ...] = KEYS) -> tuple[Key, Kind, tuple[Arg, ...]]:
    kind = draw(st.sampled_from(SINGLE_KEY_KINDS))
    return draw(st.sampled_from(keys)), kind, draw(arguments(kind))


@st.composite
def executions(
    draw: st.DrawFn, *, sequential: bool = False, size: int = 40, keys: tuple[Key, ...] = KEYS
) -> list[Operation]:
    """Run random calls one at a time against `reference`, then stretch each call's interval
    around the instant it ran. Some calls fail (no effect) or end indeterminate (effect or
    not), unless ``sequential``, which also keeps the intervals disjoint."""
    store: dict[Key, bytes] = {}
    history = []
    drawn = draw(st.lists(calls(keys), min_size=1, max_size=size))
    for instant, (key, kind, args) in enumerate(drawn):
        moment = 10 * instant
        spread = st.integers(0, 0 if sequential else 40)
        call, ret = moment - draw(spread), moment + draw(spread)
        client = draw(st.integers(0, 9))
        fate = "ok" if sequential else draw(st.sampled_from(["ok"] * 6 + ["fail", "on", "off"]))
        output = reference(store, key, kind, args) if fate in ("ok", "on") else None
        if fate == "ok":
            history.append(Operation(client, key, kind, args, output, call, ret))
        elif fate == "fail":
            history.append(Operation(client, key, kind, args, None, call, ret, Status.FAIL))
        else:
            history.append(Operation(client, key, kind, args, None, call, math.inf, Status.INFO))
    return draw(st.permutations(history))


@given(executions())
def test_histories_of_real_executions_are_linearizable(history: list[Operation]) -> None:
    result = check(history)
    assert result.ok, result.explain()


def _corrupted(op: Operation) -> object:
    """An output of the same shape as ``op``'s, but different."""
    if op.kind is Kind.GET:
        return b"a" if op.output is None else None
    if op.kind is Kind.INCR:
        assert op.output is None or isinstance(op.output, int)
        return 0 if op.output is None else op.output + 1
    if op.kind is Kind.DEL:
        return 1 - (op.output == 1)
    return not op.output


@given(executions(sequential=True), st.data())
def test_any_wrong_output_in_a_sequential_history_is_caught(
    history: list[Operation], data: st.DataObject
) -> None:
    checked = [i for i, op in enumerate(history) if op.kind not in (Kind.SET, Kind.EXPIRE)]
    assume(checked)
    victim = data.draw(st.sampled_from(checked))
    history[victim] = attrs.evolve(history[victim], output=_corrupted(history[victim]))
    result = check(history)
    assert result.verdict is Verdict.VIOLATION
    assert history[victim].key in result.keys
    assert result.keys[history[victim].key].verdict is Verdict.VIOLATION


@given(executions(), st.data())
def test_a_read_of_a_value_never_written_is_caught(
    history: list[Operation], data: st.DataObject
) -> None:
    reads = [i for i, op in enumerate(history) if op.kind is Kind.GET and op.status is Status.OK]
    assume(reads)
    victim = data.draw(st.sampled_from(reads))
    history[victim] = attrs.evolve(history[victim], output=b"never written")
    assert check(history).verdict is Verdict.VIOLATION


def _brute_force(history: list[Operation]) -> bool:
    """Linearizability by trying every order: slow, obvious, and independent of the checker."""
    pending = [op for op in history if op.status is not Status.FAIL]

    def extend(left: frozenset[int], store: dict[Key, bytes]) -> bool:
        if all(pending[i].status is Status.INFO for i in left):
            return True
        for i in left:
            op = pending[i]
            if any(pending[j].ret < op.call for j in left):
                continue  # something still unplaced returned before this was called
            after = dict(store)
            output = reference(after, op.key, op.kind, op.args)
            unchecked = op.kind in (Kind.SET, Kind.EXPIRE)
            if op.status is Status.OK and not unchecked and output != op.output:
                continue
            if extend(left - {i}, after):
                return True
        return False

    return extend(frozenset(range(len(pending))), {})


OUTPUTS = {
    Kind.GET: st.sampled_from([None, *VALUES]),
    Kind.SET: st.just(b"OK"),
    Kind.DEL: st.integers(0, 1),
    Kind.INCR: st.none() | st.integers(-3, 8),
    Kind.SET_IF_EQUAL: st.booleans(),
    Kind.EXPIRE: st.none(),
}


@st.composite
def arbitrary_operations(draw: st.DrawFn) -> Operation:
    key, kind, args = draw(calls(KEYS[:2]))
    call = draw(st.integers(0, 20))
    status = draw(st.sampled_from([Status.OK] * 5 + [Status.INFO, Status.FAIL]))
    if status is Status.INFO:
        return Operation(0, key, kind, args, None, call, math.inf, status)
    output = draw(OUTPUTS[kind])
    return Operation(0, key, kind, args, output, call, call + draw(st.integers(0, 8)), status)


@settings(max_examples=200)
@given(st.lists(arbitrary_operations(), max_size=6))
def test_agrees_with_brute_force_on_arbitrary_small_histories(history: list[Operation]) -> None:
    assert check(history).ok == _brute_force(history)


@settings(max_examples=300)
@given(executions(size=7, keys=KEYS[:1]), st.data())
def test_agrees_with_brute_force_on_small_executions_perhaps_corrupted(
    history: list[Operation], data: st.DataObject
) -> None:
    victim = history[0]  # executions() shuffles its output
    if victim.status is Status.OK and victim.kind is not Kind.SET and data.draw(st.booleans()):
        history[0] = attrs.evolve(victim, output=_corrupted(victim))
    assert check(history).ok == _brute_force(history)


# --- scale ------------------------------------------------------------------------------


def _workload(seed: int, operations: int, keys: int, clients: int) -> Iterator[Operation]:
    """Clients issuing calls back to back; each takes effect at a random instant within its
    interval. 1% end indeterminate, half of those having taken effect."""
    rng = random.Random(seed)
    free = [0.0] * clients
    planned = []
    for _ in range(operations):
        client = min(range(clients), key=free.__getitem__)
        call = free[client] + rng.random() * 0.001
        instant = call + rng.random() * 0.01
        free[client] = ret = instant + rng.random() * 0.01
        kind = rng.choice(SINGLE_KEY_KINDS)
        value = rng.choice(VALUES)
        choices: dict[Kind, tuple[Arg, ...]] = {
            Kind.SET: (value,),
            Kind.EXPIRE: (value,),
            Kind.INCR: (rng.randint(-2, 3),),
            Kind.SET_IF_EQUAL: (rng.choice([None, b"1", value]), value),
        }
        args = choices.get(kind, ())
        indeterminate = rng.random() < 0.01
        happened = not indeterminate or rng.random() < 0.5
        key = b"key%d" % rng.randrange(keys)
        planned.append((instant, client, key, kind, args, call, ret, indeterminate, happened))
    planned.sort(key=lambda plan: plan[0])
    store: dict[Key, bytes] = {}
    for _, client, key, kind, args, call, ret, indeterminate, happened in planned:
        output = reference(store, key, kind, args) if happened else None
        if indeterminate:
            yield Operation(client, key, kind, args, None, call, math.inf, Status.INFO)
        else:
            yield Operation(client, key, kind, args, output, call, ret)


def test_twenty_thousand_operations_check_quickly() -> None:
    history = list(_workload(seed=7, operations=20_000, keys=50, clients=10))
    started = time.monotonic()
    result = check(history, key_budget=None, total_budget=20.0)
    elapsed = time.monotonic() - started
    assert result.ok, result.explain()
    assert len(result.keys) == 50
    assert elapsed < 20.0
    reads = [i for i, op in enumerate(history) if op.kind is Kind.GET and op.status is Status.OK]
    victim = reads[len(reads) // 2]
    history[victim] = attrs.evolve(history[victim], output=b"never written")
    result = check(history, key_budget=None, total_budget=20.0)
    assert result.verdict is Verdict.VIOLATION
    assert history[victim] in result.keys[history[victim].key].unplaced


def test_a_value_with_a_deadline_vanishes_at_one_instant_or_never() -> None:
    """A set with a deadline comes with an indeterminate expire of its value: reads may
    see the value go, once, but never come back, and a later value is not touched."""
    expire = info(9, "expire", (b"a",), 0)
    fine = [
        ok(1, "set", (b"a",), None, 0, 1),
        expire,
        ok(2, "get", (), b"a", 2, 3),
        ok(2, "get", (), None, 4, 5),
        ok(1, "set", (b"b",), None, 6, 7),
        ok(2, "get", (), b"b", 8, 9),
    ]
    assert check(fine).ok
    back = [*fine[:4], ok(2, "get", (), b"a", 6, 7)]
    assert not check(back).ok
    without_deadline = [fine[0], *fine[2:4]]
    assert not check(without_deadline).ok


# --- transactions: one operation on several keys ------------------------------------------

A, B, C = b"a", b"b", b"c"


def tx(
    client: int,
    reads: tuple[tuple[bytes, bytes | None], ...],
    commands: tuple[tuple[bytes, str, tuple[Arg, ...]], ...],
    output: tuple[object, ...] | None,
    call: float,
    ret: float,
    status: Status = Status.OK,
) -> Operation:
    keys = tuple(dict.fromkeys([key for key, _ in reads] + [key for key, *_ in commands]))
    return Operation(
        client, keys, Kind.TRANSACTION, (keys, reads, commands), output, call, ret, status
    )


def transfer(client: int, seen: tuple[int, int], amount: int, call: float, ret: float) -> Operation:
    """WATCH a b; MGET a b -> seen; MULTI; INCRBY a -amount; INCRBY b amount; EXEC."""
    reads = ((A, b"%d" % seen[0]), (B, b"%d" % seen[1]))
    commands = ((A, "incr", (-amount,)), (B, "incr", (amount,)))
    return tx(client, reads, commands, (seen[0] - amount, seen[1] + amount), call, ret)


def mget(client: int, values: tuple[bytes | None, ...], call: float, ret: float) -> Operation:
    return tx(client, (), ((A, "get", ()), (B, "get", ())), values, call, ret)


def opening(call: float = 0, ret: float = 1) -> Operation:
    return tx(0, (), ((A, "set", (b"10",)), (B, "set", (b"0",))), (b"OK", b"OK"), call, ret)


def test_transfers_and_atomic_reads_that_fit() -> None:
    history = [
        opening(),
        transfer(1, (10, 0), 3, 2, 6),
        transfer(2, (7, 3), 2, 4, 8),  # concurrent with the first: ordered after it
        mget(3, (b"5", b"5"), 9, 10),
        Operation(4, A, Kind.GET, (), b"10", 1.5, 2.5),  # a single-key read beside them
    ]
    result = check(history)
    assert result.ok, result.explain()
    assert list(result.keys) == [(A, B)]  # checked together: one register of two values


def test_a_half_applied_transfer_is_caught() -> None:
    history = [opening(), transfer(1, (10, 0), 3, 2, 3), mget(2, (b"7", b"0"), 4, 5)]
    assert verdict(*history) is Verdict.VIOLATION


def test_a_lost_transfer_is_caught() -> None:
    history = [opening(), transfer(1, (10, 0), 3, 2, 3), mget(2, (b"10", b"0"), 4, 5)]
    assert verdict(*history) is Verdict.VIOLATION


def test_a_transfer_that_ran_on_values_changed_since_is_caught() -> None:
    # both saw (10, 0) and both ran: the WATCH check failed to stop the second
    history = [opening(), transfer(1, (10, 0), 3, 2, 3), transfer(2, (10, 0), 1, 4, 5)]
    assert verdict(*history) is Verdict.VIOLATION


def test_an_indeterminate_transfer_applies_whole_or_not_at_all() -> None:
    unknown = attrs.evolve(
        transfer(1, (10, 0), 3, 2, 3), output=None, ret=math.inf, status=Status.INFO
    )
    assert verdict(opening(), unknown, mget(2, (b"7", b"3"), 4, 5)) is Verdict.OK
    assert verdict(opening(), unknown, mget(2, (b"10", b"0"), 4, 5)) is Verdict.OK
    assert verdict(opening(), unknown, mget(2, (b"7", b"0"), 4, 5)) is Verdict.VIOLATION


def test_keys_tied_by_transactions_are_checked_together_and_the_others_alone() -> None:
    history = [
        tx(1, (), ((A, "set", (b"1",)), (B, "set", (b"1",))), (b"OK", b"OK"), 0, 1),
        tx(2, (), ((B, "incr", (1,)), (C, "incr", (1,))), (2, 1), 2, 3),
        ok(3, "set", (b"x",), b"OK", 0, 1),  # on K, alone
    ]
    result = check(history)
    assert result.ok, result.explain()
    assert {tuple(sorted(keys)) if isinstance(keys, tuple) else keys for keys in result.keys} == {
        (A, B, C),
        K,
    }


def test_a_transaction_must_name_its_keys() -> None:
    with pytest.raises(ValueError, match="its keys"):
        Operation(1, A, Kind.TRANSACTION, ((A,), (), ((A, "get", ()),)), (None,), 0, 1)
