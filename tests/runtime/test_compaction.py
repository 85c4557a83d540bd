"""What a node keeps of its log after a snapshot: the entries a follower slightly behind
still needs, bounded in number and in bytes."""

from __future__ import annotations

from pathlib import Path

from harness.node_cluster import OK, open_cluster, write
from trio.testing import MockClock

from trioraft.runtime.node import Node
from trioraft.runtime.snapshotter import SnapshotPolicy

#: no automatic snapshots: the test takes them
POLICY = SnapshotPolicy(entries=10**9, bytes=1 << 40, catchup_entries=20, catchup_bytes=5_000)


def kept_before(node: Node, index: int) -> list[bytes]:
    """The commands of the entries `node` kept in its log up to `index`."""
    log = node.core.log
    return [entry.data for entry in log.slice(log.first_index, index + 1)]


async def test_the_log_kept_before_a_snapshot_is_bounded_in_entries_and_in_bytes(
    clock: MockClock, tmp_path: Path
) -> None:
    async with open_cluster(tmp_path, snapshots=POLICY) as cluster:
        leader = await cluster.wait_for_leader()
        assert leader.snapshotter is not None
        for k in range(30):
            assert await write(leader, b"small%d" % k, b"1") == OK
        index = await leader.snapshotter.take()
        small = kept_before(leader, index)
        # small entries: the number is the bound
        assert len(small) == POLICY.catchup_entries and sum(map(len, small)) < 5_000

        for k in range(30):
            assert await write(leader, b"large%d" % k, b"x" * 1_000) == OK
        index = await leader.snapshotter.take()
        large = kept_before(leader, index)
        # entries of about 1 KB: as many as fit in the bytes, and no more
        assert 0 < sum(map(len, large)) <= POLICY.catchup_bytes
        assert sum(map(len, large)) + len(large[0]) > POLICY.catchup_bytes
