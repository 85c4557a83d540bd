"""No step of the event loop does work in proportion to the size of the keyspace: SCAN
and a snapshot's capture of a large keyspace, with writes going on, touch a bounded
number of keys per step.

The bound is a count of keys, not a time, so that the tests hold on a loaded machine.
The time each step took is measured too (wall clock and the event-loop thread's CPU
time) and printed (`pytest -s`), for the record; `slow` runs the same at 10 million keys.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import attrs
import pytest
import trio

from trioraft.keyspace import FrozenKeyspace, Keyspace, bucket_of
from trioraft.kv import KVStore
from trioraft.snapshotter import capture
from trioraft.state import SLICE_KEYS, ReplicatedState

SCAN_COUNT = 1000


@attrs.define(eq=False)
class StepMeter(trio.abc.Instrument):
    """Per task step: how many keys SCAN and snapshot captures touched, and how long the
    step took; the largest of each."""

    keys: int = 0
    most_keys: int = 0
    longest: float = 0.0
    longest_cpu: float = 0.0
    steps: int = 0
    #: when the step under way started (None: it started before the meter was added)
    _started: float | None = None
    _started_cpu: float = 0.0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.keys = 0
        self._started = time.perf_counter()
        self._started_cpu = time.thread_time()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if self._started is None:
            return
        self.steps += 1
        self.most_keys = max(self.most_keys, self.keys)
        self.longest = max(self.longest, time.perf_counter() - self._started)
        self.longest_cpu = max(self.longest_cpu, time.thread_time() - self._started_cpu)

    def count(self, keys: int) -> None:
        self.keys += keys


def counting_meter(monkeypatch: pytest.MonkeyPatch) -> StepMeter:
    """A StepMeter that counts the keys every SCAN page and every capture slice holds.
    (Not a fixture: pytest-trio would add it to the run from the start.)"""
    meter = StepMeter()
    take, scan = FrozenKeyspace.take, Keyspace.scan

    def counted_take(view: FrozenKeyspace, max_keys: int) -> dict[bytes, bytes]:
        part = take(view, max_keys)
        meter.count(len(part))
        return part

    def counted_scan(space: Keyspace, cursor: int, count: int) -> tuple[int, list[bytes]]:
        cursor, keys = scan(space, cursor, count)
        meter.count(len(keys))
        return cursor, keys

    monkeypatch.setattr(FrozenKeyspace, "take", counted_take)
    monkeypatch.setattr(Keyspace, "scan", counted_scan)
    return meter


def key(i: int) -> bytes:
    return b"key:%012d" % i


def digest(items: Iterable[tuple[bytes, bytes]]) -> tuple[int, int]:
    """The number of items and a checksum of them that ignores their order (a dict of
    millions of keys to compare with would cost as much memory as the keyspace)."""
    count = total = 0
    for item in items:
        count += 1
        total += hash(item)
    return count, total % (1 << 64)


def largest_bucket(keys: int) -> int:
    sizes: dict[int, int] = {}
    for i in range(keys):
        number = bucket_of(key(i))
        sizes[number] = sizes.get(number, 0) + 1
    return max(sizes.values())


async def scan_and_snapshot_while_writing(keys: int, monkeypatch: pytest.MonkeyPatch) -> None:
    meter = counting_meter(monkeypatch)
    state = ReplicatedState(KVStore({key(i): b"%d" % i for i in range(keys)}))
    expected = digest(state.store.items())
    done = trio.Event()

    async def writer() -> None:
        """One write per step, as committed entries would apply, until the capture ends."""
        i = 0
        while not done.is_set():
            state.apply([b"SET", key(i), b"changed"])
            state.apply([b"DEL", key(i + 1)])
            state.apply([b"SET", b"new:%d" % i, b"new"])
            i += 7919
            await trio.lowlevel.checkpoint()

    async def scanner() -> None:
        """SCAN ... COUNT 1000 until the capture ends, a call per step, as clients would."""
        cursor = b"0"
        while not done.is_set():
            reply = state.store.read([b"SCAN", cursor, b"COUNT", b"%d" % SCAN_COUNT])
            assert isinstance(reply, list) and isinstance(reply[0], bytes)
            cursor = reply[0]
            await trio.lowlevel.checkpoint()

    trio.lowlevel.add_instrument(meter)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            nursery.start_soon(scanner)
            captured = await capture(state)
            done.set()
    finally:
        trio.lowlevel.remove_instrument(meter)
    bound = max(SLICE_KEYS, SCAN_COUNT) + largest_bucket(keys)
    print(
        f"\n{keys} keys: {meter.steps} steps, at most {meter.most_keys} keys touched in one "
        f"(bound {bound}); longest step {meter.longest * 1e3:.1f} ms wall, "
        f"{meter.longest_cpu * 1e3:.1f} ms CPU"
    )
    assert meter.most_keys <= bound
    assert digest(item for part in captured.slices for item in part.items()) == expected


async def test_a_million_keys_are_scanned_and_captured_a_bounded_slice_per_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await scan_and_snapshot_while_writing(1_000_000, monkeypatch)


@pytest.mark.slow
async def test_ten_million_keys_are_scanned_and_captured_a_bounded_slice_per_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await scan_and_snapshot_while_writing(10_000_000, monkeypatch)
