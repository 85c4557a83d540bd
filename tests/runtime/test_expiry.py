"""Expiry through the log, in a runtime cluster (harness/node_cluster.py): the leader's sweep
deletes keys by its clock, every replica at the same index, whatever the replicas' own clocks."""

from __future__ import annotations

from pathlib import Path

import trio
from harness.node_cluster import NodeCluster, open_cluster, wait_until
from trio.testing import MockClock

from trioraft.core.messages import EntryKind
from trioraft.kvstore import data_commands, expiry
from trioraft.kvstore.replicated import EXPIRE, ReplicatedState
from trioraft.redis.limits import ClientLimits
from trioraft.redis.replies import OK
from trioraft.redis.server import ClientServer
from trioraft.runtime.node import Node
from trioraft.runtime.stamps import unstamp


def start_sweeps(cluster: NodeCluster, nursery: trio.Nursery) -> None:
    for node in cluster.nodes:
        nursery.start_soon(expiry.sweep, node, node.state)


def has(node: Node, key: bytes) -> bool:
    return key in dict(node.state.store.records())


def vanished_at(node: Node, key: bytes) -> int | None:
    """The index of the entry in `node`'s log whose applying deletes `key`, replaying the
    whole log into a fresh state (the log holds every entry in these tests)."""
    state = ReplicatedState()
    log = node.core.log
    for entry in log.slice(log.first_index, log.last_index + 1):
        if entry.kind is not EntryKind.COMMAND:
            continue
        held = key in dict(state.store.records())
        time_ms, command = unstamp(entry.data)
        state.apply(command, entry.index, time_ms)
        if held and key not in dict(state.store.records()):
            return entry.index
    return None


async def test_a_key_expires_by_the_leaders_clock_at_one_index_everywhere(
    clock: MockClock, tmp_path: Path
) -> None:
    async with open_cluster(tmp_path) as cluster, trio.open_nursery() as nursery:
        leader = await cluster.wait_for_leader()
        fast = next(node for node in cluster.nodes if node is not leader)
        # a follower whose clock is an hour ahead: by its own clock the key is long gone
        cluster.clock_offsets_ms[fast.id] = 3_600_000
        start_sweeps(cluster, nursery)
        [reply] = await leader.write(
            [data_commands.encode_command([b"SET", b"k", b"v", b"PX", b"2000"])]
        )
        assert reply == OK
        await cluster.wait_converged()
        assert all(has(node, b"k") for node in cluster.nodes)
        await trio.sleep(1.5)
        assert has(fast, b"k")  # replicas never delete by their own clock
        await wait_until(lambda: not any(has(node, b"k") for node in cluster.nodes), 5.0)
        await cluster.wait_converged()
        indices = {vanished_at(node, b"k") for node in cluster.nodes}
        assert len(indices) == 1 and None not in indices, indices
        [index] = indices
        deletion = data_commands.decode_command(unstamp(leader.core.log.entry(index).data)[1])
        assert deletion[0] == EXPIRE and b"k" in deletion[1:]
        nursery.cancel_scope.cancel()


async def test_many_keys_expiring_at_once_go_in_bounded_entries_under_one_leader(
    clock: MockClock, tmp_path: Path
) -> None:
    # 5 entries' worth: the harness checks every acknowledgement against a replay of the
    # WAL, which makes long logs slow here (kv-level measurements cover a million keys)
    count = 5 * expiry.KEYS_PER_ENTRY
    async with open_cluster(tmp_path) as cluster, trio.open_nursery() as nursery:
        leader = await cluster.wait_for_leader()
        term = leader.core.term
        start_sweeps(cluster, nursery)
        deadline = leader.time_ms() + 5_000
        for first in range(0, count, 1000):
            batch = [
                data_commands.encode_command([b"SET", b"k%d" % i, b"v", b"PXAT", b"%d" % deadline])
                for i in range(first, first + 1000)
            ]
            assert await leader.write(batch) == [OK] * len(batch)
        assert leader.state.store.stats()["expires"] == count
        await wait_until(lambda: all(len(node.state.store) == 0 for node in cluster.nodes), 30.0)
        assert leader.core.is_leader and leader.core.term == term
        cluster.assert_election_safety()
        log = leader.core.log
        sizes = [
            len(data_commands.decode_command(unstamp(entry.data)[1])) - 1
            for entry in log.slice(log.first_index, log.last_index + 1)
            if entry.kind is EntryKind.COMMAND and EXPIRE in entry.data
        ]
        assert sum(sizes) == count and max(sizes) <= expiry.KEYS_PER_ENTRY
        nursery.cancel_scope.cancel()


async def test_a_read_of_an_expired_key_waits_for_its_deletion(
    clock: MockClock, tmp_path: Path
) -> None:
    async with open_cluster(tmp_path) as cluster:
        leader = await cluster.wait_for_leader()
        follower = next(node for node in cluster.nodes if node is not leader)
        commands = [[b"SET", b"k", b"v", b"PX", b"100"], [b"SET", b"other", b"w"]]
        assert await leader.write([data_commands.encode_command(c) for c in commands]) == [OK, OK]
        await cluster.wait_converged()
        await trio.sleep(0.2)  # no sweep runs: the key is past its deadline, still here
        assert has(follower, b"k")
        server = ClientServer(follower, follower.state, ClientLimits())
        reads = [[b"GET", b"k"], [b"GET", b"other"], [b"PTTL", b"k"]]
        _, answered = await server._read_at_barrier(reads, [None] * len(reads))
        assert [answered[k] for k in range(len(reads))] == [None, b"w", -2]
        # answered only once the deletion applied here, and it is in every log
        assert not has(follower, b"k")
        await cluster.wait_converged()
        assert {vanished_at(node, b"k") for node in cluster.nodes} != {None}
