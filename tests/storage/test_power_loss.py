"""Power losses against real storage: the disk model (disk_model.py) keeps only what was
fsynced, so these tests see what kill -9 cannot (the page cache outlives a process, not a
power cut). The model itself first, then the snapshot store and the WAL with a power loss
at each of their fsyncs, then whole clusters on the production write path (group commit
in a worker thread) losing power while clients write."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from harness.disk_model import DiskModel
from harness.node_cluster import (
    NodeCluster,
    get,
    open_cluster,
    wait_until,
    write,
    write_while,
)
from trio.testing import MockClock

from trioraft.core.messages import Entry, EntryKind, HardState, Members, SnapshotMeta
from trioraft.storage.fileio import durability, fsync_dir, fsync_fd, write_atomically
from trioraft.storage.snapshots import SnapshotStore
from trioraft.storage.wal import WriteAheadLog

MEMBERS = Members(voters=frozenset({"n1", "n2", "n3"}))


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[DiskModel]:
    model = DiskModel(tmp_path, random.Random(7))
    with durability(model):
        yield model


def append_unsynced(path: Path, data: bytes) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, data)
    return fd


# --- the model ---------------------------------------------------------------------------


def test_the_model_keeps_only_fsynced_bytes_and_entries(disk: DiskModel, tmp_path: Path) -> None:
    node = tmp_path / "n"
    node.mkdir()
    fsync_dir(tmp_path)
    fd = append_unsynced(node / "synced", b"durable")
    fsync_fd(fd, node / "synced")
    os.write(fd, b" and more")
    os.close(fd)
    fsync_dir(node)
    os.close(append_unsynced(node / "unsynced-entry", b"x"))
    disk.power_loss(node, torn=False)
    disk.restore()
    assert sorted(p.name for p in node.iterdir()) == ["synced"]
    assert (node / "synced").read_bytes() == b"durable"


def test_a_rename_without_a_directory_fsync_is_undone(disk: DiskModel, tmp_path: Path) -> None:
    write_atomically(tmp_path / "f", b"old")
    tmp = tmp_path / "f.tmp"
    fd = append_unsynced(tmp, b"new")
    fsync_fd(fd, tmp)
    os.close(fd)
    os.replace(tmp, tmp_path / "f")
    disk.power_loss(tmp_path)
    disk.restore()
    assert (tmp_path / "f").read_bytes() == b"old"
    assert not tmp.exists(), "the temp file's entry was never durable"


def test_a_torn_tail_keeps_a_prefix_of_the_unsynced_bytes(disk: DiskModel, tmp_path: Path) -> None:
    fd = append_unsynced(tmp_path / "f", b"head")
    fsync_fd(fd, tmp_path / "f")
    fsync_dir(tmp_path)
    os.write(fd, b"0123456789" * 10)
    os.close(fd)
    lengths = set()
    for _ in range(20):
        disk.power_loss(tmp_path)
        disk.restore()
        data = (tmp_path / "f").read_bytes()
        assert data.startswith(b"head") and (b"head" + b"0123456789" * 10).startswith(data)
        lengths.add(len(data))
        (tmp_path / "f").write_bytes(b"head" + b"0123456789" * 10)
    assert len(lengths) > 1, "torn at different places"


# --- storage, a power loss at each fsync -------------------------------------------------


class LossAtFsync(DiskModel):
    """Loses power just before its `at`-th fsync (counting from 1) takes effect."""

    def __init__(self, root: Path, at: int) -> None:
        super().__init__(root, random.Random(at))
        self.at = at
        self.count = 0

    def fsync(self, fd: int, path: Path) -> None:
        self.count += 1
        if self.count == self.at:
            self.power_loss(self.root)
        super().fsync(fd, path)


def entries(first: int, count: int, term: int = 1) -> list[Entry]:
    return [Entry(term, i, EntryKind.COMMAND, b"e%d" % i) for i in range(first, first + count)]


def test_a_power_loss_at_any_fsync_of_the_wal_keeps_what_was_synced(tmp_path: Path) -> None:
    """Write and sync batches; cut the power at each fsync in turn: the log recovers to a
    prefix holding at least every batch whose sync had returned."""
    at = 1
    while True:
        root = tmp_path / f"at{at}"
        root.mkdir()
        model = LossAtFsync(root, at)
        synced = 0
        with durability(model):
            wal, _ = WriteAheadLog.open(root / "wal", segment_bytes=300)
            for batch in range(6):
                wal.set_hard_state(HardState(batch + 1, "n1"))
                wal.append(entries(batch * 4 + 1, 4))
                wal.sync()
                if model.count < at:
                    synced = batch * 4 + 4
            wal.close()
        if model.count < at:
            break  # every fsync point has been tried
        model.restore()
        _, recovery = WriteAheadLog.open(root / "wal", fsync=False)
        got = [e.index for e in recovery.entries]
        assert got == list(range(1, len(got) + 1)) and len(got) >= synced, (at, got, synced)
        at += 1
    assert at > 10, "the log rolled segments and fsynced its directory along the way"


def test_a_power_loss_at_any_fsync_of_a_snapshot_write_keeps_a_whole_snapshot(
    tmp_path: Path,
) -> None:
    """A snapshot not yet durable (its temp file, or its rename before the directory
    fsync) must never replace the one before it: after a power loss at each fsync of a
    second snapshot's write the store loads the first, whole; after one once the write
    returned, the second."""
    first = (SnapshotMeta(10, 1, MEMBERS), b"one" * 1000)
    second = (SnapshotMeta(20, 2, MEMBERS), b"two" * 2000)
    at, done = 1, False
    while not done:
        root = tmp_path / f"at{at}"
        root.mkdir()
        SnapshotStore(root / "snap").write(*first)
        model = LossAtFsync(root, at)
        with durability(model):
            SnapshotStore(root / "snap").write(*second)
        done = model.count < at
        if done:
            model.power_loss(root)  # after the write returned
        model.restore()
        assert SnapshotStore(root / "snap").load_latest() == (second if done else first), at
        at += 1
    assert at > 3, "the write fsyncs the file, then the directory"


# --- a cluster on the production write path ----------------------------------------------


async def check_acknowledged(cluster: NodeCluster, acknowledged: dict[bytes, bytes]) -> None:
    leader = await cluster.wait_for_leader()
    await leader.read_barrier()
    lost = {key: value for key, value in acknowledged.items() if get(leader, key) != value}
    assert lost == {}, "acknowledged writes lost"
    await cluster.wait_converged()
    cluster.assert_election_safety()


async def test_acknowledged_writes_survive_a_power_loss_of_every_node(
    clock: MockClock, tmp_path: Path, disk: DiskModel
) -> None:
    acknowledged: dict[bytes, bytes] = {}
    async with open_cluster(tmp_path, disk=disk) as cluster:
        await cluster.wait_for_leader()
        async with trio.open_nursery() as writers:
            writers.start_soon(write_while, cluster, acknowledged, 1_000_000)
            await wait_until(lambda: len(acknowledged) >= 30, 5.0)
            for node_id in cluster.ids:
                await cluster.power_loss(node_id)
            writers.cancel_scope.cancel()
        await cluster.start_all()
        await check_acknowledged(cluster, acknowledged)
        assert cluster.promises_checked > 30


async def test_power_losses_one_node_at_a_time_lose_nothing_acknowledged(
    clock: MockClock, tmp_path: Path, disk: DiskModel
) -> None:
    rng = random.Random(3)
    acknowledged: dict[bytes, bytes] = {}
    async with open_cluster(tmp_path, disk=disk) as cluster:
        await cluster.wait_for_leader()
        async with trio.open_nursery() as writers:
            writers.start_soon(write_while, cluster, acknowledged, 1_000_000)
            for round_ in range(6):
                await wait_until(lambda n=round_: len(acknowledged) >= 10 * (n + 1), 10.0)
                leader = await cluster.wait_for_leader()
                victim = leader.id if round_ % 2 else rng.choice(cluster.ids)
                await cluster.power_loss(victim)
                await cluster.start(victim)
            writers.cancel_scope.cancel()
        await check_acknowledged(cluster, acknowledged)


async def test_the_promise_check_catches_acknowledgements_before_fsync(
    clock: MockClock, tmp_path: Path, disk: DiskModel
) -> None:
    """With fsync off, a node acknowledges entries it never made durable: the check on
    every durable promise must stop the cluster."""
    with pytest.raises(BaseExceptionGroup) as caught:
        async with open_cluster(tmp_path, disk=disk, fsync=False) as cluster:
            leader = await cluster.wait_for_leader()
            await write(leader, b"k", b"v")
    assert caught.group_contains(AssertionError, match="durable")
