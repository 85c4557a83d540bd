"""Revisions: every key carries the log index of its last write (RAFT.REVISION)."""

from __future__ import annotations

from pathlib import Path

import msgpack  # type: ignore[import-untyped]
from harness.node_cluster import OK, open_cluster, write
from trio.testing import MockClock

from trioraft.kvstore import arguments, data_commands
from trioraft.kvstore.replicated import ReplicatedState
from trioraft.kvstore.store import KVStore
from trioraft.redis.replies import ErrorReply


def revision(store: KVStore, key: bytes) -> object:
    return store.read([b"RAFT.REVISION", key])


def test_a_write_gives_its_keys_the_index_of_its_entry() -> None:
    store = KVStore()
    assert revision(store, b"k") is None
    store.apply([b"SET", b"k", b"v"], 7)
    assert revision(store, b"k") == 7
    store.apply([b"MSET", b"a", b"1", b"k", b"2"], 8)
    store.apply([b"INCR", b"a"], 9)
    store.apply([b"APPEND", b"k", b"x"], 10)
    assert [revision(store, key) for key in (b"a", b"k")] == [9, 10]
    # a write that writes nothing leaves the revision as it was
    assert store.apply([b"SET", b"k", b"w", b"NX"], 11) is None
    assert store.apply([b"SET", b"k", b"w", b"IFEQ", b"nope"], 12) is None
    assert store.apply([b"INCR", b"k"], 13) == arguments.NOT_AN_INTEGER
    assert revision(store, b"k") == 10
    store.apply([b"DEL", b"k"], 14)
    assert revision(store, b"k") is None


def test_revision_checks_its_arguments() -> None:
    error = data_commands.validate([b"raft.revision"])
    assert error == ErrorReply("ERR wrong number of arguments for 'raft.revision' command")
    assert data_commands.validate([b"RAFT.REVISION", b"a", b"b"]) == error


def test_a_snapshot_keeps_revisions_and_the_time() -> None:
    state = ReplicatedState()
    state.apply_args([b"SET", b"k", b"v"], 3, 1_800_000_000_000)
    state.apply_args([b"RAFT.APPEND", b"100", b"k", b"w"], 4, 1_800_000_000_005)
    with state.begin_capture() as capture:
        while not capture.done:
            capture.step()
    state.apply_args([b"SET", b"k", b"after"], 5, 1_800_000_000_009)  # not in the capture
    restored = ReplicatedState.restore(b"".join(capture.serialize()))
    assert restored.time == 1_800_000_000_005
    assert revision(restored.store, b"k") == 4
    assert restored.store.read([b"GET", b"k"]) == b"vw"


def test_a_snapshot_from_before_revisions_restores_with_revision_zero() -> None:
    old = msgpack.packb([1, {b"k": b"v"}], use_bin_type=True)
    packer = msgpack.Packer(use_bin_type=True)
    state = ReplicatedState.restore(packer.pack([2, {"n1": "x"}, [old]]))
    assert state.time == 0
    assert state.incarnations == {"n1": "x"}
    assert state.store.read([b"GET", b"k"]) == b"v"
    assert revision(state.store, b"k") == 0


async def test_revisions_are_the_same_everywhere_and_grow_across_leaders(
    clock: MockClock, tmp_path: Path
) -> None:
    async with open_cluster(tmp_path) as cluster:
        first = await cluster.wait_for_leader()
        assert await write(first, b"lock", b"a") == OK
        taken = revision(first.state.store, b"lock")
        assert taken == first.applied  # the index of the entry that wrote it
        await cluster.crash(first.id)
        second = await cluster.wait_for_leader()
        assert await write(second, b"lock", b"b") == OK
        retaken = revision(second.state.store, b"lock")
        assert isinstance(taken, int) and isinstance(retaken, int) and retaken > taken
        await cluster.start(first.id)
        await cluster.wait_converged()
        assert {revision(node.state.store, b"lock") for node in cluster.nodes} == {retaken}
