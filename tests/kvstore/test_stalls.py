"""No step of the event loop does work in proportion to the size of the keyspace: SCAN,
KEYS and a snapshot's capture of a large keyspace, with writes going on, touch a bounded
number of keys per step.

The bound is a count of keys, not a time, so that the tests hold on a loaded machine.
The time each step took is measured too (wall clock and the event-loop thread's CPU
time) and printed (`pytest -s`), for the record; `slow` runs the same at 10 million keys,
and the same commands against the leader of a real cluster holding a million keys,
whose term must not change.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable

import attrs
import pytest
import trio
from harness.big_keyspace import Pinger, key, msets, terms
from harness.process_cluster import running_cluster
from harness.writers import write_all

from trioraft.kvstore import packed
from trioraft.kvstore.keyspace import Keyspace, bucket_of
from trioraft.kvstore.replicated import SLICE_KEYS, ReplicatedState
from trioraft.kvstore.store import KEYS_SLICE, FrozenStore, KVStore
from trioraft.redis.replies import Reply
from trioraft.runtime.snapshotter import capture
from trioraft.runtime.steps import RELEASE_KEYS, Release, run_stepwise

SCAN_COUNT = 1000


@attrs.define(eq=False)
class StepMeter(trio.abc.Instrument):
    """Per task step: how many keys SCAN, KEYS and snapshot captures touched, and how long
    the step took; the largest of each."""

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
    """A StepMeter that counts the keys of every SCAN page and of every slice a frozen
    view gives (snapshot captures and KEYS read through one).
    (Not a fixture: pytest-trio would add it to the run from the start.)"""
    meter = StepMeter()
    take, scan = FrozenStore.take, Keyspace.scan

    def counted_take(view: FrozenStore, max_keys: int) -> dict[bytes, packed.Stored]:
        part = take(view, max_keys)
        meter.count(len(part))
        return part

    def counted_scan(space: Keyspace, cursor: int, count: int) -> tuple[int, list[bytes]]:
        cursor, keys = scan(space, cursor, count)
        meter.count(len(keys))
        return cursor, keys

    monkeypatch.setattr(FrozenStore, "take", counted_take)
    monkeypatch.setattr(Keyspace, "scan", counted_scan)
    return meter


def digest(items: Iterable[tuple[bytes, bytes]]) -> tuple[int, int]:
    """The number of items and a checksum of them that ignores their order (a dict of
    millions of keys to compare with would cost as much memory as the keyspace)."""
    count = total = 0
    for item in items:
        count += 1
        total += hash(item)
    return count, total % (1 << 64)


def digest_keys(reply: Reply) -> tuple[int, int]:
    """The digest of the keys of a KEYS reply."""
    assert isinstance(reply, list)
    keys = [(key, b"") for key in reply if isinstance(key, bytes)]
    assert len(keys) == len(reply)
    return digest(keys)


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
    ending_in_7 = digest_keys(state.store.read([b"KEYS", b"*7"]))
    done = trio.Event()

    async def writer() -> None:
        """One write per step, as committed entries would apply, until the capture ends."""
        i = 0
        indices = itertools.count(1)
        while not done.is_set():
            state.apply_args([b"SET", key(i), b"changed"], next(indices), None)
            state.apply_args([b"DEL", key(i + 1)], next(indices), None)
            state.apply_args([b"SET", b"new:%d" % i, b"new"], next(indices), None)
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
        with state.store.search_keys(b"*7", 0) as search:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer)
                nursery.start_soon(scanner)
                nursery.start_soon(run_stepwise, search)
                captured = await capture(state)
                done.set()
            assert search.done
    finally:
        trio.lowlevel.remove_instrument(meter)
    bound = max(SLICE_KEYS, SCAN_COUNT, KEYS_SLICE) + largest_bucket(keys)
    print(
        f"\n{keys} keys: {meter.steps} steps, at most {meter.most_keys} keys touched in one "
        f"(bound {bound}); longest step {meter.longest * 1e3:.1f} ms wall, "
        f"{meter.longest_cpu * 1e3:.1f} ms CPU"
    )
    assert meter.most_keys <= bound
    values = (
        (key, packed.value_of(record)) for part in captured.slices for key, record in part.items()
    )
    assert digest(values) == expected
    assert digest_keys(search.found) == ending_in_7


async def test_a_million_keys_are_scanned_and_captured_a_bounded_slice_per_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await scan_and_snapshot_while_writing(1_000_000, monkeypatch)


def test_the_keys_flushall_removes_are_freed_a_bounded_number_per_step() -> None:
    keys = 1_000_000
    store = KVStore({key(i): b"%d" % i for i in range(keys)})
    store.apply([b"FLUSHALL"])
    parts = store.take_garbage()
    assert store.take_garbage() == [] and len(store) == 0
    sizes = [len(part) for part in parts]
    assert sum(sizes) == keys
    release, most = Release(parts), 0
    while not release.done:
        before = len(parts)
        release.step()
        most = max(most, sum(sizes[len(parts) : before]))
    assert most <= RELEASE_KEYS + max(sizes)


@pytest.mark.slow
async def test_ten_million_keys_are_scanned_and_captured_a_bounded_slice_per_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await scan_and_snapshot_while_writing(10_000_000, monkeypatch)


@pytest.mark.slow
@pytest.mark.processes
def test_scans_keys_and_a_snapshot_on_the_leader_of_a_million_keys_keep_its_term() -> None:
    keys = 1_000_000
    with running_cluster(3) as cluster:
        leader = cluster.wait_for_leader()
        write_all(leader, msets(keys), depth=4, timeout=120.0)
        cluster.wait_converged()
        before = terms(cluster)
        assert len(before) == 1
        pinger = Pinger(leader)
        pinger.start()
        started = time.monotonic()
        with leader.client(timeout=120.0) as client:
            cursor = b"0"
            for _ in range(20):
                reply = client.call("SCAN", cursor, "COUNT", "1000")
                assert isinstance(reply, list) and isinstance(reply[0], bytes)
                cursor = reply[0]
            found = client.call("KEYS", "*7")
            assert isinstance(found, list) and len(found) == keys // 10
            snapshot = client.call("RAFT.SNAPSHOT")
            assert isinstance(snapshot, str) and snapshot.startswith("OK"), snapshot
        took = time.monotonic() - started
        pinger.stopping.set()
        pinger.join()
        print(
            f"\n20 SCANs, KEYS *7 and RAFT.SNAPSHOT of {keys} keys on the leader: {took:.1f} s; "
            f"longest PING wait meanwhile {pinger.longest * 1e3:.0f} ms"
        )
        assert terms(cluster) == before
        assert cluster.wait_for_leader() is leader
