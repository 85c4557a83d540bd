"""The trio runtime (trioraft.runtime.node): a cluster of Nodes over the memory network, with real
write-ahead logs in temporary directories, in virtual time (see harness/node_cluster.py)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from harness.node_cluster import (
    ELECTION_TIMEOUT_MAX,
    ELECTION_TIMEOUT_MIN,
    HEARTBEAT_TICKS,
    OK,
    TICK,
    NodeCluster,
    get,
    hang_disk,
    open_cluster,
    set_command,
    wait_until,
    write,
    write_while,
)
from harness.random_faults import under_random_faults
from trio.testing import MockClock, wait_all_tasks_blocked

from trioraft.core.messages import Entry, SnapshotMeta
from trioraft.kvstore import data_commands
from trioraft.redis import replies
from trioraft.runtime import wal_writer
from trioraft.runtime.node import Node
from trioraft.runtime.outcomes import Indeterminate, Unavailable
from trioraft.runtime.snapshotter import Backoff, SnapshotPolicy, SnapshotRefused
from trioraft.storage.records import HEADER_SIZE as WAL_HEADER_SIZE
from trioraft.storage.records import decode_payload
from trioraft.transport.base import MAX_HANDLERS

HEARTBEAT = HEARTBEAT_TICKS * TICK


def followers(cluster: NodeCluster, leader: Node) -> list[Node]:
    return [node for node in cluster.nodes if node is not leader]


def has_everywhere(cluster: NodeCluster, key: bytes, value: bytes) -> bool:
    return all(get(node, key) == value for node in cluster.nodes)


async def test_three_nodes_elect_exactly_one_leader(clock: MockClock, tmp_path: Path) -> None:
    async with open_cluster(tmp_path) as cluster:
        leader = await cluster.wait_for_leader()
        assert cluster.leaders() == [leader]
        assert {node.core.leader_id for node in cluster.nodes} == {leader.id}
        cluster.assert_election_safety()


async def test_writes_on_leader_and_follower_apply_everywhere(
    clock: MockClock, tmp_path: Path
) -> None:
    async with open_cluster(tmp_path) as cluster:
        leader = await cluster.wait_for_leader()
        follower = followers(cluster, leader)[0]

        assert await write(leader, b"on-leader", b"1") == OK
        assert await write(follower, b"forwarded", b"2") == OK

        await wait_until(lambda: has_everywhere(cluster, b"on-leader", b"1"), 1.0)
        await wait_until(lambda: has_everywhere(cluster, b"forwarded", b"2"), 1.0)


async def test_the_keys_flushall_removes_are_freed_by_the_node(
    clock: MockClock, tmp_path: Path
) -> None:
    async with open_cluster(tmp_path) as cluster:
        leader = await cluster.wait_for_leader()
        assert await write(leader, b"k", b"v") == OK
        assert await leader.write([data_commands.encode_command([b"FLUSHALL"])]) == [replies.OK]
        await cluster.wait_converged()
        for node in cluster.nodes:
            # each node took the emptied buckets, to free them a few per step
            assert len(node.state.store) == 0 and node.state.store.take_garbage() == []


async def test_a_batch_answers_each_command(clock: MockClock, tmp_path: Path) -> None:
    async with open_cluster(tmp_path) as cluster:
        leader = await cluster.wait_for_leader()
        follower = followers(cluster, leader)[0]
        batch = [
            set_command(b"n", b"1"),
            data_commands.encode_command([b"INCR", b"n"]),
            data_commands.encode_command([b"INCR", b"word"]),
            set_command(b"word", b"x"),
            data_commands.encode_command([b"INCR", b"word"]),
        ]

        outcomes = await follower.write(batch)

        assert outcomes == [
            replies.OK,
            2,
            1,
            replies.OK,
            replies.ErrorReply("ERR value is not an integer or out of range"),
        ]


async def test_read_barrier_makes_every_node_see_an_acknowledged_write(
    clock: MockClock, tmp_path: Path
) -> None:
    async with open_cluster(tmp_path) as cluster:
        await cluster.wait_for_leader()
        for round_number, writer in enumerate(cluster.nodes):
            value = b"v%d" % round_number
            assert await write(writer, b"k", value) == OK
            for reader in cluster.nodes:
                if reader is not writer:
                    await reader.read_barrier()
                    assert get(reader, b"k") == value


async def test_read_barrier_on_a_lagging_follower_waits_for_the_write(
    clock: MockClock, tmp_path: Path
) -> None:
    async with open_cluster(tmp_path) as cluster:
        leader = await cluster.wait_for_leader()
        slow, fast = followers(cluster, leader)
        # well under an election timeout, but far longer than a commit takes
        cluster.network.set_delay(leader.id, slow.id, 0.1)

        assert await write(fast, b"k", b"new") == OK

        assert get(slow, b"k") is None  # a local read is stale...
        await slow.read_barrier()
        assert get(slow, b"k") == b"new"  # ...a linearizable one is not


async def test_a_lone_write_and_a_lone_read_go_out_without_waiting_for_the_driver(
    clock: MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_cluster(tmp_path) as cluster:
        leader = await cluster.wait_for_leader()
        monkeypatch.setattr(leader, "poke", lambda: None)  # the driver is woken no more
        with trio.fail_after(ELECTION_TIMEOUT_MIN):
            assert await write(leader, b"k", b"v") == OK
            await leader.read_barrier()


async def test_a_follower_asks_about_a_read_while_an_earlier_question_is_out(
    clock: MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_cluster(tmp_path) as cluster:
        leader = await cluster.wait_for_leader()
        follower = followers(cluster, leader)[0]
        call_leader = follower._call_leader
        questions = 0
        first_answered = trio.Event()

        async def first_question_held(*args: Any) -> Any:
            nonlocal questions
            questions += 1
            if questions == 1:
                await first_answered.wait()
            return await call_leader(*args)

        monkeypatch.setattr(follower, "_call_leader", first_question_held)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follower.read_barrier)
            await wait_until(lambda: questions == 1, 1.0)
            with trio.fail_after(ELECTION_TIMEOUT_MIN):
                await follower.read_barrier()  # asked at once, not after the first
            assert questions == 2
            first_answered.set()


async def test_failover_elects_a_new_leader_within_the_election_timeout(
    clock: MockClock, tmp_path: Path
) -> None:
    async with open_cluster(tmp_path) as cluster:
        old = await cluster.wait_for_leader()
        assert await write(old, b"before", b"1") == OK

        crashed_at = trio.current_time()
        await cluster.crash(old.id)
        new = await cluster.wait_for_leader()
        elapsed = trio.current_time() - crashed_at

        assert new.id != old.id
        # the last heartbeat came at most a heartbeat interval before the crash; the
        # vote itself takes a few link delays
        assert ELECTION_TIMEOUT_MIN - HEARTBEAT <= elapsed <= ELECTION_TIMEOUT_MAX + 3 * TICK
        other = followers(cluster, new)[0]
        assert await write(new, b"after", b"2") == OK
        assert await write(other, b"forwarded", b"3") == OK
        await new.read_barrier()
        assert get(new, b"before") == b"1"
        cluster.assert_election_safety()


async def test_a_leader_whose_disk_hangs_hands_leadership_over(
    clock: MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_cluster(tmp_path) as cluster:
        old = await cluster.wait_for_leader()
        assert await write(old, b"before", b"1") == OK
        hang_disk(old, monkeypatch)
        hung_at = trio.current_time()

        async with trio.open_nursery() as nursery:
            # stuck on the old leader's disk: it may still commit, through the others
            nursery.start_soon(write, old, b"stuck", b"2")
            others = followers(cluster, old)
            new = await cluster.wait_for_leader(among=[n.id for n in others])
            assert new is not old
            assert await write(others[0], b"after", b"3") == OK
            elapsed = trio.current_time() - hung_at
            nursery.cancel_scope.cancel()

        assert elapsed <= 2 * ELECTION_TIMEOUT_MIN
        assert not old.core.is_leader
        await new.read_barrier()
        assert get(new, b"before") == b"1"
        cluster.assert_election_safety()


async def test_a_node_whose_disk_hangs_holds_a_bounded_queue_of_messages(
    clock: MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wal_writer, "MAX_MESSAGES_WAITING_FOR_DISK", 8)
    async with open_cluster(tmp_path) as cluster:
        leader = await cluster.wait_for_leader()
        hung = followers(cluster, leader)[0]
        hang_disk(hung, monkeypatch)
        for k in range(20):
            assert await write(leader, b"k%d" % k, b"v") == OK
        await trio.sleep(40 * HEARTBEAT)  # the leader keeps asking the hung follower
        waiting = sum(len(item.after_persist) for item in hung.wal_writer._queue)
        assert 0 < waiting <= 8


TRYAGAIN = b"-TRYAGAIN too many uncommitted writes, retry shortly\r\n"


def leader_holds_uncommitted(node: Node) -> bool:
    leadership = node.core.leadership
    return leadership is not None and leadership.uncommitted_bytes > 0


async def test_writes_past_the_uncommitted_bytes_cap_are_refused_with_tryagain(
    clock: MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_cluster(tmp_path, raft={"max_uncommitted_bytes": 1000}) as cluster:
        leader = await cluster.wait_for_leader()
        follower = followers(cluster, leader)[0]
        # the leader's own copy never becomes durable, so nothing it takes is applied
        hang_disk(leader, monkeypatch)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(write, leader, b"big", b"x" * 1000)
            await wait_until(lambda: leader_holds_uncommitted(leader), 5 * TICK)
            assert await write(leader, b"small", b"1") == TRYAGAIN
            assert await write(follower, b"forwarded", b"2") == TRYAGAIN
            nursery.cancel_scope.cancel()
        assert leader.core.log.last_index == leader.core.commit  # nothing refused was kept


async def test_a_follower_refusing_snapshots_is_asked_again_after_growing_pauses(
    clock: MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = SnapshotPolicy(entries=10, catchup_entries=2, retry_first=0.05, retry_most=0.8)
    async with open_cluster(tmp_path, snapshots=policy) as cluster:
        leader = await cluster.wait_for_leader()
        behind = followers(cluster, leader)[0]
        cluster.network.isolate(behind.id)
        for k in range(30):
            assert await write(leader, b"k%d" % k, b"v") == OK
        await wait_until(lambda: leader.core.log.snapshot_index > behind.core.log.last_index, 1)
        assert behind.snapshotter is not None
        asked: list[float] = []

        def refuse_at_once(meta: SnapshotMeta, size: int, crc: int) -> None:
            # in the worker thread that would create the partial file
            asked.append(trio.from_thread.run_sync(trio.current_time))
            raise SnapshotRefused("no room for it")

        with monkeypatch.context() as patch:
            patch.setattr(behind.snapshotter.store, "receiver", refuse_at_once)
            cluster.network.heal()
            await trio.sleep(4.0)
        pauses = [b - a for a, b in itertools.pairwise(asked)]
        assert 5 <= len(asked) <= 12, pauses
        assert max(pauses) <= policy.retry_most + 0.1
        await wait_until(lambda: behind.applied >= leader.applied, policy.retry_most + 0.5)
        assert get(behind, b"k29") == b"v"


def test_snapshot_backoff_doubles_up_to_its_bound_and_ends_with_a_success() -> None:
    backoff = Backoff(first=0.1, most=0.5)
    pauses = []
    for _ in range(5):
        backoff.failed()
        pauses.append(backoff.pause)
    assert pauses == [0.1, 0.2, 0.4, 0.5, 0.5]
    backoff.succeeded()
    assert backoff.pause == 0
    backoff.failed()
    assert backoff.pause == 0.1


async def test_a_restarted_leader_rejoins_without_disrupting_its_successor(
    clock: MockClock, tmp_path: Path
) -> None:
    async with open_cluster(tmp_path) as cluster:
        old = await cluster.wait_for_leader()
        await cluster.crash(old.id)
        new = await cluster.wait_for_leader()
        term = new.core.term
        assert await write(new, b"while-down", b"1") == OK

        rejoined = await cluster.start(old.id)

        await cluster.wait_converged()
        assert get(rejoined, b"while-down") == b"1"
        assert cluster.leaders() == [new]
        assert new.core.term == term
        assert rejoined.core.leader_id == new.id


async def test_acknowledged_writes_survive_a_crash_of_every_node(
    clock: MockClock, tmp_path: Path
) -> None:
    acknowledged: dict[bytes, bytes] = {}

    async with open_cluster(tmp_path) as cluster:
        await cluster.wait_for_leader()
        async with trio.open_nursery() as writers:
            writers.start_soon(write_while, cluster, acknowledged, 1_000_000)
            await wait_until(lambda: len(acknowledged) >= 20, 5.0)
            await cluster.crash_all()
            writers.cancel_scope.cancel()

        await cluster.start_all()
        leader = await cluster.wait_for_leader()
        await leader.read_barrier()
        for key, value in acknowledged.items():
            assert get(leader, key) == value
        await cluster.wait_converged()
        cluster.assert_election_safety()


async def test_a_restarted_follower_catches_up(clock: MockClock, tmp_path: Path) -> None:
    async with open_cluster(tmp_path) as cluster:
        leader = await cluster.wait_for_leader()
        lagging = followers(cluster, leader)[0].id
        assert await write(leader, b"early", b"1") == OK
        await wait_until(lambda: has_everywhere(cluster, b"early", b"1"), 1.0)

        await cluster.crash(lagging)
        for n in range(10):
            assert await write(leader, b"late%d" % n, b"2") == OK
        restarted = await cluster.start(lagging)

        await cluster.wait_converged()
        assert get(restarted, b"early") == b"1"
        assert all(get(restarted, b"late%d" % n) == b"2" for n in range(10))
        assert cluster.leaders() == [leader]


async def test_a_partitioned_leader_steps_down_and_never_acknowledges(
    clock: MockClock, tmp_path: Path
) -> None:
    minority_replies: list[bytes] = []

    async def write_on(node: Node, key: bytes) -> None:
        minority_replies.append(await write(node, key, b"lost"))

    async with open_cluster(tmp_path) as cluster:
        old = await cluster.wait_for_leader()
        majority = [node.id for node in followers(cluster, old)]
        async with trio.open_nursery() as clients:
            cluster.network.partition([old.id], majority)
            cut_at = trio.current_time()
            for n in range(3):
                clients.start_soon(write_on, old, b"minority%d" % n)

            # CheckQuorum: the leader notices within two election timeouts at most
            await wait_until(lambda: not old.core.is_leader, 2 * ELECTION_TIMEOUT_MIN + TICK)
            assert trio.current_time() - cut_at >= ELECTION_TIMEOUT_MIN
            new = await cluster.wait_for_leader(among=majority)
            assert await write(new, b"majority", b"won") == OK

            cluster.network.heal()
            await cluster.wait_for_leader()

        assert len(minority_replies) == 3
        for reply in minority_replies:
            assert reply.startswith((b"-TIMEOUT", b"-CLUSTERDOWN")), reply
        await cluster.wait_converged()
        assert cluster.leaders() == [new]
        assert get(old, b"majority") == b"won"
        assert all(get(node, b"minority%d" % n) is None for node in cluster.nodes for n in range(3))
        cluster.assert_election_safety()


async def test_shutdown_hands_leadership_over(clock: MockClock, tmp_path: Path) -> None:
    async with open_cluster(tmp_path) as cluster:
        old = await cluster.wait_for_leader()
        async with trio.open_nursery() as clients:
            in_flight: list[bytes] = []

            async def write_in_flight() -> None:
                in_flight.append(await write(old, b"in-flight", b"1"))

            clients.start_soon(write_in_flight)
            await wait_all_tasks_blocked()
            started = trio.current_time()
            await old.shutdown(timeout=ELECTION_TIMEOUT_MAX)
            new = await cluster.wait_for_leader(among=[n.id for n in followers(cluster, old)])
            handed_over_in = trio.current_time() - started

        assert in_flight == [OK]
        assert handed_over_in < ELECTION_TIMEOUT_MIN / 4
        assert not old.core.is_leader
        await cluster.crash(old.id)
        assert await write(new, b"after", b"2") == OK
        assert get(new, b"in-flight") == b"1"


async def test_a_write_without_a_reachable_leader_answers_clusterdown(
    clock: MockClock, tmp_path: Path
) -> None:
    async with open_cluster(tmp_path) as cluster:
        leader = await cluster.wait_for_leader()
        cut_off = followers(cluster, leader)[0]
        cluster.network.isolate(cut_off.id)
        await wait_until(lambda: cut_off.core.leader_id is None, 2 * ELECTION_TIMEOUT_MAX)

        asked_at = trio.current_time()
        reply = await write(cut_off, b"k", b"v")
        waited = trio.current_time() - asked_at

        assert reply == b"-CLUSTERDOWN no leader\r\n"
        assert waited == pytest.approx(cut_off.options.leader_wait, abs=TICK)
        assert get(leader, b"k") is None

        asked_at = trio.current_time()
        with pytest.raises(Unavailable):
            await cut_off.read_barrier()
        waited = trio.current_time() - asked_at
        assert waited == pytest.approx(cut_off.options.leader_wait, abs=TICK)


async def test_a_write_waiting_for_a_leader_answers_by_its_request_timeout(
    clock: MockClock, tmp_path: Path
) -> None:
    """However long the leader wait, a write answers by its request timeout, so a client
    that gave up can count on the node having given up too (the fault runs' final reads
    rely on it)."""
    async with open_cluster(tmp_path) as cluster:
        leader = await cluster.wait_for_leader()
        cut_off = followers(cluster, leader)[0]
        timeout = cut_off.options.request_timeout
        cut_off.options = attrs.evolve(cut_off.options, leader_wait=3 * timeout)
        cluster.network.isolate(cut_off.id)
        await wait_until(lambda: cut_off.core.leader_id is None, 2 * ELECTION_TIMEOUT_MAX)

        asked_at = trio.current_time()
        reply = await write(cut_off, b"k", b"v")
        waited = trio.current_time() - asked_at

        assert reply == b"-CLUSTERDOWN no leader\r\n"
        assert waited == pytest.approx(timeout, abs=TICK)
        assert get(leader, b"k") is None


async def test_shutdown_hands_leadership_to_a_live_follower(
    clock: MockClock, tmp_path: Path
) -> None:
    async with open_cluster(tmp_path) as cluster:
        leader = await cluster.wait_for_leader()
        dead, slow = followers(cluster, leader)
        # `dead` has the write, `slow` misses it for now: `dead` is the most up to date
        cluster.network.block(leader.id, slow.id)
        assert await write(leader, b"k", b"v") == OK
        await cluster.crash(dead.id)
        cluster.network.heal()

        started = trio.current_time()
        with trio.move_on_after(ELECTION_TIMEOUT_MAX):
            await leader.shutdown(timeout=ELECTION_TIMEOUT_MAX)
        await wait_until(lambda: slow.core.is_leader, ELECTION_TIMEOUT_MAX)

        # well before the election that the leader's departure would otherwise need
        assert trio.current_time() - started < ELECTION_TIMEOUT_MIN


@pytest.mark.parametrize("seed", [1, 2])
async def test_under_random_faults_no_acknowledged_write_is_lost_and_no_read_is_stale(
    clock: MockClock, tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clients write increasing numbers to a key each, and read them back after a read
    barrier, on random nodes, while nodes crash and restart, minorities are cut off and
    disks turn slow."""
    await under_random_faults(tmp_path, seed, monkeypatch)


async def test_forwarded_requests_give_up_on_a_leader_that_was_replaced(
    clock: MockClock, tmp_path: Path
) -> None:
    async with open_cluster(tmp_path) as cluster:
        leader = await cluster.wait_for_leader()
        follower = followers(cluster, leader)[0]
        cluster.network.isolate(leader.id)  # the old leader stalls, as if paused
        asked_at = trio.current_time()

        # forwarded while the follower still follows the old leader: the outcome is
        # unknown, and said so once the follower gives that leader up, not after the whole
        # request timeout
        reply = await write(follower, b"k", b"v")
        assert reply.startswith(b"-TIMEOUT")
        assert trio.current_time() - asked_at < 2 * ELECTION_TIMEOUT_MAX
        assert follower.core.leader_id != leader.id

        # then writes and linearizable reads go through the new leader
        assert await write(follower, b"k", b"w") == OK
        await follower.read_barrier()
        assert get(follower, b"k") == b"w"


async def test_more_writes_through_each_follower_than_the_leader_has_handlers(
    clock: MockClock, tmp_path: Path
) -> None:
    # each forwarded write waits on the leader until it applies; with more writes in
    # flight than the leader runs handlers for one link, the acks on that link must
    # still get through: every write is answered, and the leader stays
    async with open_cluster(tmp_path) as cluster:
        leader = await cluster.wait_for_leader()
        term = leader.core.term
        replies: list[bytes] = []

        async def client(node: Node, key: bytes) -> None:
            replies.append(await write(node, key, b"v"))

        clients = 2 * MAX_HANDLERS
        async with trio.open_nursery() as nursery:
            for follower in followers(cluster, leader):
                for k in range(clients):
                    nursery.start_soon(client, follower, b"%s:%d" % (follower.id.encode(), k))
        assert replies == [OK] * (2 * clients)
        assert set(cluster.leaders_by_term) == {term}
        assert all(node.core.term == term for node in cluster.nodes)


def cut_wal_after(wal_dir: Path, last_kept: int) -> None:
    """Drop every record after the entry `last_kept` from the node's only WAL segment,
    as a disk that lost writes it had acknowledged would."""
    [segment] = sorted(wal_dir.glob("*.wal"))
    data = segment.read_bytes()
    offset = 0
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "little")
        end = offset + WAL_HEADER_SIZE + length
        record = decode_payload(data[offset + WAL_HEADER_SIZE : end])
        offset = end
        if isinstance(record, Entry) and record.index == last_kept:
            segment.write_bytes(data[:offset])
            return
    raise AssertionError(f"no entry {last_kept} in {segment}")


async def test_a_follower_that_lost_acknowledged_entries_is_reported_and_caught_up(
    clock: MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_cluster(tmp_path) as cluster:
        leader = await cluster.wait_for_leader()
        lossy = followers(cluster, leader)[0]
        for n in range(5):
            assert await write(leader, b"k%d" % n, b"1") == OK
        await cluster.wait_converged()
        last = lossy.core.log.last_index
        await cluster.crash(lossy.id)
        cut_wal_after(tmp_path / lossy.id, last - 3)

        restarted = await cluster.start(lossy.id)
        assert await write(leader, b"after", b"1") == OK
        await cluster.wait_converged(timeout=2.0)  # a few heartbeat rounds
        assert get(restarted, b"k4") == b"1" and get(restarted, b"after") == b"1"
        [report] = [r for r in caplog.records if "lost entries it had acknowledged" in r.message]
        assert report.levelname == "ERROR"
        assert report.fields["follower"] == lossy.id  # type: ignore[attr-defined]


async def test_a_write_no_majority_takes_times_out_and_leaves_nothing_waiting(
    clock: MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_cluster(tmp_path) as cluster:
        leader = await cluster.wait_for_leader()
        for follower in followers(cluster, leader):
            hang_disk(follower, monkeypatch)  # they hear the leader, and never acknowledge
        asked_at = trio.current_time()
        reply = await write(leader, b"k", b"v")
        waited = trio.current_time() - asked_at

        assert reply.startswith(b"-TIMEOUT"), reply
        # the tick after the request timeout ends the wait
        assert waited == pytest.approx(leader.options.request_timeout, abs=TICK)
        assert leader.core.is_leader
        assert leader.metrics.proposals_timeout.value == 1
        assert leader._waiters == {}
        assert len(leader._deadlines) == 0


async def test_a_read_that_is_never_confirmed_times_out_on_leader_and_follower(
    clock: MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_cluster(tmp_path) as cluster:
        leader = await cluster.wait_for_leader()
        follower = followers(cluster, leader)[0]
        monkeypatch.setattr(leader.core, "read_index", lambda ctx: None)  # never confirmed
        for node in (leader, follower):
            asked_at = trio.current_time()
            with pytest.raises(Indeterminate, match="read could not be confirmed in time"):
                await node.read_barrier()
            waited = trio.current_time() - asked_at
            assert waited == pytest.approx(node.options.request_timeout, abs=2 * TICK)
            assert node._reads == {}
        await trio.sleep(TICK)
        assert len(leader._deadlines) == len(follower._deadlines) == 0


async def test_a_node_that_stops_answers_the_requests_it_holds(
    clock: MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No tick of a stopped node ends its waiting requests: stopping ends them, and a
    request made to it later answers at once."""
    async with open_cluster(tmp_path) as cluster:
        leader = await cluster.wait_for_leader()
        for follower in followers(cluster, leader):
            hang_disk(follower, monkeypatch)
        replies: list[bytes] = []

        async def write_in_flight() -> None:
            replies.append(await write(leader, b"k", b"v"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(write_in_flight)
            await wait_until(lambda: bool(leader._waiters), 5 * TICK)
            await cluster.crash(leader.id)
            crashed_at = trio.current_time()
        assert replies and replies[0].startswith(b"-TIMEOUT"), replies
        assert trio.current_time() == crashed_at
        assert await write(leader, b"later", b"v") != OK
        assert trio.current_time() == crashed_at
