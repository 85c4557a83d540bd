"""The wiped-node guard on a memory cluster (see trioraft/runtime/incarnation.py): which answers
accept a node whose own storage does not record its data dir, and which do not."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
import trio
from harness.node_cluster import (
    ELECTION_TIMEOUT_MAX,
    OK,
    get,
    open_cluster,
    wait_until,
    write,
)
from trio.testing import MockClock

from trioraft.core.membership import ChangeKind, MemberChange
from trioraft.core.messages import MemberAddress, NodeId
from trioraft.runtime.node import Node

#: long enough for any election to have happened several times over
SETTLE = 10 * ELECTION_TIMEOUT_MAX


def records(node: Node, ids: Iterable[NodeId]) -> bool:
    """Whether `node` has applied the registration of every member in `ids`."""
    return all(i in node.state.incarnations for i in ids)


async def never(condition: Callable[[], bool], period: float, what: str) -> None:
    """Fail if `condition` holds at any tick within `period` seconds."""
    with trio.move_on_after(period):
        await wait_until(condition, math.inf)
        pytest.fail(what)


async def test_a_wiped_node_that_only_a_lagging_peer_answers_is_not_accepted(
    clock: MockClock, tmp_path: Path
) -> None:
    """n3's registration and writes are committed on {leader, n3} while the other follower
    lags; n3's data dir is wiped while the leader is down. The lagging follower records no
    incarnation for n3, which proves nothing: accepted on its word, n3 would vote it in,
    and its log, which lacks the writes, would erase them."""
    async with open_cluster(tmp_path, check_data_dirs=True, start=["n1", "n2"]) as cluster:
        leader = await cluster.wait_for_leader()
        [lagging] = [node for node in cluster.nodes if node is not leader]
        await wait_until(lambda: records(lagging, ["n1", "n2"]), SETTLE)
        cluster.network.block(leader.id, lagging.id)

        n3 = await cluster.start("n3")
        await wait_until(lambda: records(leader, ["n3"]), SETTLE)
        for n in range(5):
            assert await write(leader, b"k%d" % n, b"acknowledged") == OK
        assert not records(lagging, ["n3"]) and get(lagging, b"k0") is None

        await cluster.crash("n3")
        cluster.wipe("n3")
        await cluster.crash(leader.id)
        n3 = await cluster.start("n3")
        await never(
            lambda: n3.core.may_vote or bool(cluster.leaders()),
            SETTLE,
            "the wiped n3 was accepted on the word of a lagging peer",
        )

        cluster.network.heal()
        await cluster.start(leader.id)
        await wait_until(lambda: "n3" in cluster.refusals, SETTLE)
        new_leader = await cluster.wait_for_leader()
        await new_leader.read_barrier()
        assert all(get(new_leader, b"k%d" % n) == b"acknowledged" for n in range(5))


async def test_the_first_bootstrap_needs_only_a_quorum_and_accepts_a_late_joiner(
    clock: MockClock, tmp_path: Path
) -> None:
    async with open_cluster(tmp_path, check_data_dirs=True, start=["n1", "n2"]) as cluster:
        leader = await cluster.wait_for_leader()
        assert await write(leader, b"early", b"1") == OK
        late = await cluster.start("n3")
        await wait_until(lambda: all(records(node, cluster.ids) for node in cluster.nodes), SETTLE)
        assert late.core.may_vote
        assert await write(late, b"late", b"2") == OK
        assert cluster.refusals == {}


async def test_a_restarted_node_whose_log_records_it_votes_with_a_peer_down(
    clock: MockClock, tmp_path: Path
) -> None:
    """Its own log says the cluster knows its data dir: it need not ask the peers, so a
    cluster with a member down still elects a leader when a node restarts."""
    async with open_cluster(tmp_path, check_data_dirs=True) as cluster:
        await wait_until(lambda: all(records(node, cluster.ids) for node in cluster.nodes), SETTLE)
        await cluster.crash_all()
        await cluster.start("n1")
        await cluster.start("n2")
        leader = await cluster.wait_for_leader(["n1", "n2"])
        assert await write(leader, b"after", b"restart") == OK
        assert cluster.refusals == {}


async def test_a_member_added_again_is_accepted_by_the_voters_it_learns_of(
    clock: MockClock, tmp_path: Path
) -> None:
    """n_a comes back on an empty data dir after n_b and itself were removed: its bootstrap
    members still name n_b, which is gone for good, so the voters it must hear from are
    the ones of the configuration the leader sends it (the leader alone), not of its
    bootstrap. Accepted, it votes: once the leader removes itself, it takes over."""
    async with open_cluster(tmp_path, check_data_dirs=True) as cluster:
        for node in cluster.nodes:
            await node.accepted.wait()
        leader = await cluster.wait_for_leader()
        again, gone = (node.id for node in cluster.nodes if node is not leader)
        for member in (gone, again):
            await cluster.crash(member)
            assert await leader.change_members(MemberChange(ChangeKind.REMOVE, member)) is None
        cluster.wipe(again)
        address = MemberAddress(f"{again}:7000", f"{again}:6379")
        assert await leader.change_members(MemberChange(ChangeKind.ADD, again, address)) is None
        fresh = await cluster.start(again)
        await wait_until(lambda: again in leader.core.members.voters, SETTLE)
        await wait_until(fresh.accepted.is_set, SETTLE)
        await wait_until(lambda: leader.core.commit >= leader.core.configs.last_index, SETTLE)
        assert await leader.change_members(MemberChange(ChangeKind.REMOVE, leader.id)) is None
        assert (await cluster.wait_for_leader(among=[again])) is fresh
        assert await write(fresh, b"after", b"handover") == OK
