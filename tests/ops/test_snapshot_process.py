"""Snapshots against real `trioraft serve` processes: the disk
stays bounded, RAFT.SNAPSHOT, a follower far behind catches up through InstallSnapshot,
kill -9 while a snapshot is written, a wiped data dir is refused (also when started again),
a node joining the first bootstrap late is accepted, a restart from a snapshot plus the log
tail. The long run (1,000,000 overwrites) is marked slow: `nox -s slow`.

Two things of the snapshot policy are fixed, not configurable: the WAL segment size (64 MiB)
and the entries kept in the log before a snapshot for followers slightly behind (5,000).
The bounds below are written with them."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from harness.on_disk import dir_bytes
from harness.polling import wait_until
from harness.process_cluster import ProcessCluster, running_cluster
from harness.process_node import Node, run_cli
from harness.resp_client import Arg, Reply
from harness.writers import BackgroundWriter, write_all

from trioraft.runtime.snapshotter import SnapshotPolicy
from trioraft.storage.wal import DEFAULT_SEGMENT_BYTES

pytestmark = pytest.mark.processes

#: entries a node keeps in its log before its snapshot (SnapshotPolicy.catchup_entries)
CATCHUP = SnapshotPolicy().catchup_entries
#: the size at which the WAL starts a new segment
SEGMENT = DEFAULT_SEGMENT_BYTES
#: the first WAL segment's file name
FIRST_SEGMENT = "0000000000000001.wal"
#: no automatic snapshots: only RAFT.SNAPSHOT takes one
MANUAL = {"snapshot_entries": 1_000_000_000, "snapshot_bytes": 1 << 40}


def key(i: int) -> str:
    return f"key:{i:08d}"


def value(i: int) -> str:
    return f"value-{i}"


def mset_requests(keys: range, per_command: int) -> Iterator[tuple[Arg, ...]]:
    """MSETs of `per_command` keys each setting key(i) to value(i) for every i in `keys`."""
    for start in range(keys.start, keys.stop, per_command):
        args: list[Arg] = ["MSET"]
        for i in range(start, min(start + per_command, keys.stop)):
            args += [key(i), value(i)]
        yield tuple(args)


def snapshot_now(node: Node) -> int:
    """RAFT.SNAPSHOT on `node`: it answers +OK and the index; return the index."""
    reply = node.call("RAFT.SNAPSHOT", timeout=60.0)
    assert isinstance(reply, str) and reply.startswith("OK"), reply
    return int(reply.rsplit(" ", 1)[1])


def local_values(node: Node, keys: Sequence[str]) -> list[Reply]:
    """The values of `keys` in `node`'s own replica (READONLY reads)."""
    values: list[Reply] = []
    with node.client(timeout=30.0) as client:
        assert client.call("READONLY") == "OK"
        for start in range(0, len(keys), 1000):
            reply = client.call("MGET", *keys[start : start + 1000])
            assert isinstance(reply, list), reply
            values += reply
    return values


def local_keyspace(node: Node) -> tuple[int, set[bytes]]:
    """DBSIZE and every key of `node`'s own replica (READONLY reads)."""
    with node.client(timeout=30.0) as client:
        assert client.call("READONLY") == "OK"
        size = client.call("DBSIZE")
        keys = client.call("KEYS", "*")
    assert isinstance(size, int) and isinstance(keys, list), (size, keys)
    return size, {k for k in keys if isinstance(k, bytes)}


def assert_replicas_identical(cluster: ProcessCluster, sample: Sequence[str]) -> None:
    """Once every running node has applied the leader's commit index: the same DBSIZE, the
    same keys and the same values of `sample` everywhere."""
    cluster.wait_converged()
    nodes = [node for node in cluster.running if not node.paused]
    size, keys = local_keyspace(nodes[0])
    values = local_values(nodes[0], sample)
    for node in nodes[1:]:
        other_size, other_keys = local_keyspace(node)
        assert (other_size, len(other_keys ^ keys)) == (size, 0), f"{node.id} differs"
        assert local_values(node, sample) == values, f"{node.id} holds other values"


def assert_acked_present(node: Node, writer: BackgroundWriter) -> None:
    """Every write `writer` had acknowledged reads back from `node` (linearizable)."""
    keys = [f"{writer.prefix}{n}" for n in writer.acked]
    with node.client(timeout=30.0) as client:
        for start in range(0, len(keys), 1000):
            got = client.call("MGET", *keys[start : start + 1000])
            want = [str(n).encode() for n in writer.acked[start : start + 1000]]
            assert got == want, f"acknowledged writes missing on {node.id}"


def snap_names(node: Node) -> list[str]:
    return sorted(os.listdir(node.data_dir / "snap"))


# ---- the disk stays bounded ---------------------------------------------------------


@dataclass
class DiskUse:
    """What `overwrite_watching_disk` saw."""

    #: how many writes were made
    writes: int = 0
    #: after how many writes every node had deleted its first WAL segment (0: never)
    compacted_after: int = 0
    #: the largest data dir and the largest snapshot file seen, in bytes
    largest_dir: int = 0
    largest_snapshot: int = 0


def overwrite_watching_disk(
    cluster: ProcessCluster,
    leader: Node,
    *,
    keys: int,
    value_bytes: int,
    limit: int,
    stop_when_compacted: bool,
) -> DiskUse:
    """Overwrite `keys` keys with values of `value_bytes` through `leader`, in rounds, up
    to `limit` writes or (`stop_when_compacted`) until every node deleted its first WAL
    segment. After every round check each data dir against the bound: the snapshots kept
    (2) plus one being renamed into place, two WAL segments (the one holding the oldest
    entry kept, the active one) and 1 MiB for the rest."""
    kept = 2
    payload = b"x" * value_bytes
    seen = DiskUse()
    # each round on several connections at once: more writes per log append
    clients, per_client = 4, 2_000

    def overwrite(first: int) -> int:
        requests = (("SET", f"k{i % keys}", payload) for i in range(first, first + per_client))
        return write_all(leader, requests, depth=128)

    with ThreadPoolExecutor(clients) as pool:
        while seen.writes < limit:
            starts = range(seen.writes, seen.writes + clients * per_client, per_client)
            seen.writes += sum(pool.map(overwrite, starts))
            for node in cluster.nodes:
                snaps = [path.stat().st_size for path in node.snapshot_files()]
                seen.largest_snapshot = max([seen.largest_snapshot, *snaps])
                size = dir_bytes(node.data_dir)
                seen.largest_dir = max(seen.largest_dir, size)
                bound = (kept + 1) * seen.largest_snapshot + 2 * SEGMENT + (1 << 20)
                assert size <= bound, f"{node.id}: data dir of {size} bytes, bound {bound}"
                assert len(snaps) <= kept + 1, f"{node.id} keeps {len(snaps)} snapshots"
            if not seen.compacted_after and all(
                not (node.data_dir / "wal" / FIRST_SEGMENT).exists() for node in cluster.nodes
            ):
                seen.compacted_after = seen.writes
                if stop_when_compacted:
                    break
    assert seen.compacted_after, f"the first WAL segment is still there after {seen.writes} writes"
    return seen


def test_raft_snapshot_answers_ok_and_the_disk_stays_bounded() -> None:
    with running_cluster(3, raft={"snapshot_entries": 2_000, "snapshots_kept": 2}) as cluster:
        leader = cluster.wait_for_leader()
        cluster.wait_converged()
        for node in cluster.nodes:
            index = snapshot_now(node)
            assert index > 0
            assert node.info()["snapshot_index"] == str(index)
            assert node.snapshot_files()[-1].name.startswith(f"{index:020d}-")
        # 4 KiB values: a segment holds about 16,000 of them, so the first segment goes
        # once a snapshot lies CATCHUP entries past that
        seen = overwrite_watching_disk(
            cluster,
            leader,
            keys=100,
            value_bytes=4096,
            limit=4 * SEGMENT // 4096,
            stop_when_compacted=True,
        )
        assert seen.largest_dir < seen.writes * 4096
        for node in cluster.nodes:
            # a new segment starts at each compaction, and the segments go once all they
            # hold is CATCHUP entries behind a snapshot: one per snapshot in that span
            assert len(node.wal_segments()) <= CATCHUP // 2_000 + 2
            assert len(node.snapshot_files()) <= 2
        print(f"\noverwrites of 100 keys of 4 KiB: {seen}")


@pytest.mark.slow
def test_a_million_overwrites_of_ten_thousand_keys_keep_the_disk_bounded() -> None:
    with running_cluster(3) as cluster:
        leader = cluster.wait_for_leader()
        seen = overwrite_watching_disk(
            cluster,
            leader,
            keys=10_000,
            value_bytes=100,
            limit=1_000_000,
            stop_when_compacted=False,
        )
        sizes = {node.id: dir_bytes(node.data_dir) for node in cluster.nodes}
        print(f"\noverwrites of 10,000 keys of 100 bytes: {seen}; data dirs at the end {sizes}")


# ---- a follower far behind ----------------------------------------------------------


def test_a_follower_far_behind_catches_up_through_install_snapshot() -> None:
    with running_cluster(3, raft={"snapshot_entries": 2_000}) as cluster:
        leader = cluster.wait_for_leader()
        follower = cluster.followers()[0]
        assert follower.terminate() == 0
        # 100,000 keys in 10,000 entries: the leader's log then starts far past the
        # follower's end, so only a snapshot can bring it up to date
        count = 100_000
        write_all(leader, mset_requests(range(count), per_command=10))
        assert int(leader.info()["snapshot_index"]) - CATCHUP > 100
        with BackgroundWriter(leader.client_port, "w:") as writer:
            writer.wait_acked(10)
            started = time.monotonic()
            target = int(leader.info()["commit_index"])
            follower.start()
            wait_until(
                lambda: int(follower.info()["last_applied"]) >= target,
                60.0,
                f"{follower.id} applied index {target}",
                describe=cluster.log_tails,
            )
            caught_up = time.monotonic() - started
            writer.wait_acked(len(writer.acked) + 10)
        assert writer.failure is None
        assert "installed a snapshot from the leader" in follower.log_text()
        assert "sending a snapshot" in leader.log_text()
        sample = [key(i) for i in range(0, count, 97)]
        assert_replicas_identical(cluster, sample + [f"w:{n}" for n in writer.acked])
        assert_acked_present(follower, writer)
        print(f"\n{follower.id} caught up from {count} keys in {caught_up:.2f} s")


# ---- kill -9 while a snapshot is written --------------------------------------------


def kill_during_snapshot(node: Node, moment: str) -> bool:
    """Ask `node` for a snapshot and kill -9 it the moment its temp file shows ("temp") or
    its new snapshot file does ("renamed"); False when the snapshot finished first."""
    snap_dir = node.data_dir / "snap"
    before = set(os.listdir(snap_dir))
    finished = threading.Event()

    def ask() -> None:
        try:
            node.call("RAFT.SNAPSHOT", timeout=60.0)
        except OSError:
            pass  # the kill closed the connection
        finally:
            finished.set()

    def moment_seen(names: list[str]) -> bool:
        if moment == "temp":
            return any(name.endswith(".snap.tmp") for name in names)
        return any(name.endswith(".snap") and name not in before for name in names)

    asker = threading.Thread(target=ask, name="raft-snapshot")
    asker.start()
    try:
        while not finished.is_set():
            if moment_seen(os.listdir(snap_dir)):
                node.kill()
                return True
        return False
    finally:
        asker.join(70.0)


def test_kill_9_during_a_snapshot_loses_no_acknowledged_write() -> None:
    """kill -9 of every node right after one of them opened the temp file of a snapshot,
    then again right after its new snapshot was renamed into place (before or while the
    older snapshot and the log before it are deleted): each time every node restarts with
    every acknowledged write, and `trioraft check` passes."""
    with running_cluster(3, raft=MANUAL) as cluster:
        leader = cluster.wait_for_leader()
        victim = cluster.followers()[0]
        other = next(node for node in cluster.nodes if node is not victim)
        # large enough that writing the snapshot takes a while
        count = 150_000
        write_all(leader, mset_requests(range(count), per_command=1000), depth=4)
        sample = [key(i) for i in range(0, count, 101)]
        acked: dict[str, bytes] = {}
        for moment in ("temp", "renamed"):
            with BackgroundWriter(other.client_port, f"{moment}:") as writer:
                for _ in range(10):
                    writer.wait_acked(len(writer.acked) + 5)
                    if kill_during_snapshot(victim, moment):
                        break
                else:
                    pytest.fail(f"the snapshot never was caught at the moment {moment!r}")
                cluster.kill_all()
            acked |= {f"{writer.prefix}{n}": str(n).encode() for n in writer.acked}
            if moment == "temp":
                assert any(name.endswith(".snap.tmp") for name in snap_names(victim))
            checked = run_cli("check", victim.data_dir)
            assert checked.returncode == 0, checked.stdout + checked.stderr

            cluster.start_all()
            cluster.wait_converged()
            assert not any(name.endswith(".snap.tmp") for name in snap_names(victim))
            lost = f"{victim.id} lost writes after kill -9 at {moment!r}\n{cluster.log_tails()}"
            expected = [value(i).encode() for i in range(0, count, 101)]
            assert local_values(victim, sample) == expected, lost
            assert local_values(victim, list(acked)) == list(acked.values()), lost
            assert local_keyspace(victim)[0] >= count + len(acked), lost

        indexes = {node.id: snapshot_now(node) for node in cluster.nodes}
        for node in cluster.nodes:
            assert node.terminate() == 0
        for node in cluster.nodes:
            checked = run_cli("check", node.data_dir)
            assert checked.returncode == 0, checked.stdout + checked.stderr
            assert f"snapshot index {indexes[node.id]}," in checked.stdout


# ---- a wiped data dir ---------------------------------------------------------------

SAFE_WAY_BACK = "Restore its original data dir, or rebuild the cluster from a backup"


def start_refused(node: Node) -> str:
    """Start `node`, expect it to exit 1 on its own; return what it printed."""
    before = len(node.log_text())
    node.start()
    assert node.process is not None
    assert node.process.wait(30.0) == 1
    return node.log_text()[before:]


def wait_registered(cluster: ProcessCluster) -> None:
    """Wait until every node's data dir incarnation was registered through the log."""

    def registered() -> bool:
        return all("incarnation registered" in node.log_text() for node in cluster.nodes)

    wait_until(
        registered, 20.0, "every node registered its incarnation", describe=cluster.log_tails
    )


def test_a_follower_whose_data_dir_was_deleted_is_refused() -> None:
    with running_cluster(3) as cluster:
        wait_registered(cluster)
        leader = cluster.wait_for_leader()
        victim = cluster.followers()[0]
        write_all(leader, mset_requests(range(1000), per_command=10))
        assert victim.terminate() == 0
        shutil.rmtree(victim.data_dir)

        printed = start_refused(victim)
        assert f"node {victim.id} was part of this cluster with another data dir" in printed
        assert SAFE_WAY_BACK in printed
        # its data dir exists now, but is no more the one the cluster knows
        assert SAFE_WAY_BACK in start_refused(victim)

        write_all(leader, mset_requests(range(1000, 2000), per_command=10))
        assert leader.call("DBSIZE") == 2000
        assert leader.call("MGET", key(0), key(1999)) == [b"value-0", b"value-1999"]


@pytest.mark.parametrize("from_snapshot", [True, False], ids=["snapshot", "log"])
def test_a_refused_node_started_again_casts_no_vote(from_snapshot: bool) -> None:
    """The wiped node's second start (its new data dir is no longer new) must be refused
    before it votes: here its vote would elect a follower that lacks an acknowledged
    write, whose log would then erase that write on the old leader. The follower that
    restarted knows the members' incarnations from its snapshot, or only from its log,
    not yet applied after its restart: it must answer from its log too (answering from
    its applied state alone, it would vouch for the victim)."""
    with running_cluster(3) as cluster:
        wait_registered(cluster)
        leader = cluster.wait_for_leader()
        victim, lagging = cluster.followers()
        cluster.wait_converged()
        if from_snapshot:
            snapshot_now(lagging)
        assert lagging.terminate() == 0
        assert leader.call("SET", "acknowledged", "by the leader and the victim") == "OK"
        assert victim.terminate() == 0
        shutil.rmtree(victim.data_dir)
        leader.kill()
        lagging.start()
        lagging.wait_serving()

        assert SAFE_WAY_BACK in start_refused(victim)
        assert SAFE_WAY_BACK in start_refused(victim)

        leader.start()
        leader.wait_serving()
        cluster.wait_for_leader()
        assert lagging.call("GET", "acknowledged") == b"by the leader and the victim"


# ---- a node joining the first bootstrap late -------------------------------------------


def test_a_node_joining_the_first_bootstrap_late_is_accepted_and_catches_up() -> None:
    with ProcessCluster.create(3, raft={"snapshot_entries": 2_000}) as cluster:
        late = cluster.nodes[2]
        early = cluster.nodes[:2]
        for node in early:
            node.start()
        for node in early:
            node.wait_serving()
        leader = cluster.wait_for_leader()
        # enough entries that the leader compacted its log: the newcomer gets a snapshot
        count = 50_000
        write_all(leader, mset_requests(range(count), per_command=5))
        assert int(leader.info()["snapshot_index"]) > CATCHUP

        late.start()
        late.wait_serving()
        wait_registered(cluster)
        assert late.running
        assert "data dir accepted by the peers" in late.log_text()
        assert late.call("SET", "from-the-late-node", "1") == "OK"
        sample = [key(i) for i in range(0, count, 53)]
        assert_replicas_identical(cluster, sample)
        assert "installed a snapshot from the leader" in late.log_text()
        assert local_keyspace(late)[0] == count + 1


# ---- restart from a snapshot plus the log tail ----------------------------------------


def test_every_key_is_back_after_all_nodes_restart_from_snapshot_and_log_tail() -> None:
    with running_cluster(3, raft={"snapshot_entries": 2_000}) as cluster:
        leader = cluster.wait_for_leader()
        count = 30_000
        write_all(leader, mset_requests(range(count), per_command=3))
        # some entries after the newest snapshot on every node: the log tail
        cluster.wait_converged()
        for node in cluster.nodes:
            snapshot_now(node)
        write_all(leader, mset_requests(range(count, count + 900), per_command=3))
        tail = [key(i) for i in range(count, count + 900)]
        cluster.wait_converged()
        cluster.kill_all()

        cluster.start_all()
        leader = cluster.wait_for_leader()
        for node in cluster.nodes:
            recovered = node.log_text().split("storage recovered")[-1].split("\n")[0]
            fields = dict(word.split("=", 1) for word in recovered.split() if "=" in word)
            assert int(fields["snapshot_index"]) > 0, recovered
            assert int(fields["entries"]) >= 300, recovered
        everything = [key(i) for i in range(count + 900)]
        with leader.client(timeout=30.0) as client:
            assert client.call("DBSIZE") == count + 900
        assert_replicas_identical(cluster, everything)
        assert local_values(leader, tail) == [value(i).encode() for i in range(count, count + 900)]
