"""Membership changes and leadership transfer through the Trio runtime: asked of any node
(a follower passes them to the leader), answered once committed; a new member joins as a
learner and is promoted once caught up; a removed leader hands over; and the RESP
commands RAFT.MEMBER and RAFT.TRANSFER parse their arguments."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from harness.node_cluster import (
    ELECTION_TIMEOUT_MAX,
    TICK,
    NodeCluster,
    open_cluster,
    wait_until,
    write,
)
from trio.testing import MockClock

from trioraft.core.membership import ChangeKind, MemberChange
from trioraft.core.messages import MemberAddress
from trioraft.core.raft import Role
from trioraft.kvstore.replicated import wiped_message
from trioraft.redis.members import LIST, parse_member_command, parse_transfer
from trioraft.redis.replies import ErrorReply
from trioraft.runtime.node import Node
from trioraft.runtime.outcomes import Refused
from trioraft.runtime.snapshotter import SnapshotPolicy

OK = b"+OK\r\n"
N4 = MemberAddress("n4:7000", "n4:6379")


def a_follower(cluster: NodeCluster, leader: Node) -> Node:
    return next(n for n in cluster.nodes if n.id != leader.id and n.id in cluster.founders)


async def test_a_member_added_through_a_follower_catches_up_and_is_promoted(
    clock: MockClock, tmp_path: Path
) -> None:
    async with open_cluster(tmp_path, size=4, founders=3, start=["n1", "n2", "n3"]) as cluster:
        leader = await cluster.wait_for_leader()
        for k in range(20):
            assert await write(leader, b"k%d" % k, b"v") == OK
        new = await cluster.start("n4")
        follower = a_follower(cluster, leader)
        added = await follower.change_members(MemberChange(ChangeKind.ADD, "n4", N4))
        assert added is None
        assert leader.core.members.learners == {"n4"}
        again = await follower.change_members(MemberChange(ChangeKind.ADD, "n4", N4))
        assert again == Refused("n4 is a member already")
        await wait_until(lambda: "n4" in leader.core.members.voters, 3 * ELECTION_TIMEOUT_MAX)
        await wait_until(lambda: new.applied >= leader.core.commit, ELECTION_TIMEOUT_MAX)
        assert new.state.store.read([b"GET", b"k19"]) == b"v"
        rows = await follower.member_rows()
        assert [(r["id"], r["role"]) for r in rows] == [
            ("n1", "voter"),
            ("n2", "voter"),
            ("n3", "voter"),
            ("n4", "voter"),
        ]
        assert rows[3]["peer_addr"] == "n4:7000" and rows[3]["client_addr"] == "n4:6379"


async def test_a_member_that_installs_a_snapshot_knows_every_members_addresses(
    clock: MockClock, tmp_path: Path
) -> None:
    policy = SnapshotPolicy(entries=10, catchup_entries=2)
    async with open_cluster(
        tmp_path, size=4, founders=3, start=["n1", "n2", "n3"], snapshots=policy
    ) as cluster:
        leader = await cluster.wait_for_leader()
        assert await leader.change_members(MemberChange(ChangeKind.ADD, "n4", N4)) is None
        added_at = leader.core.configs.last_index
        for k in range(30):
            assert await write(leader, b"k%d" % k, b"v") == OK
        await wait_until(lambda: leader.core.log.snapshot_index > added_at, ELECTION_TIMEOUT_MAX)
        new = await cluster.start("n4")
        # the entry that added it is compacted away: it learns the members from the
        # snapshot alone (before its promotion appends a configuration entry)
        await wait_until(lambda: new.core.log.snapshot_index > added_at, ELECTION_TIMEOUT_MAX)
        assert new.core.members.address("n4") == N4
        assert new.core.members == leader.core.members_at(new.core.log.snapshot_index)
        assert new.snapshotter is not None
        on_disk = new.snapshotter.store.latest()
        assert on_disk is not None and on_disk.members.address("n4") == N4


async def test_a_removed_leader_hands_over_and_writes_go_on(
    clock: MockClock, tmp_path: Path
) -> None:
    async with open_cluster(tmp_path, size=3) as cluster:
        leader = await cluster.wait_for_leader()
        follower = a_follower(cluster, leader)
        removed = await follower.change_members(MemberChange(ChangeKind.REMOVE, leader.id))
        assert removed is None
        rest = [n.id for n in cluster.nodes if n.id != leader.id]
        successor = await cluster.wait_for_leader(among=rest)
        assert successor.core.members.voters == set(rest)
        assert not leader.core.is_leader
        assert await write(follower, b"after", b"1") == OK


async def test_transfer_to_a_named_voter_and_to_the_most_caught_up(
    clock: MockClock, tmp_path: Path
) -> None:
    async with open_cluster(tmp_path, size=3) as cluster:
        leader = await cluster.wait_for_leader()
        target = a_follower(cluster, leader)
        assert await target.transfer(target.id) is None
        assert (await cluster.wait_for_leader()).id == target.id
        assert await leader.transfer(None) is None
        assert (await cluster.wait_for_leader()).id != target.id
        assert await leader.transfer("nobody") == Refused("nobody is not a voter")


async def test_a_removed_member_comes_back_under_its_id_on_a_fresh_data_dir(
    clock: MockClock, tmp_path: Path
) -> None:
    async with open_cluster(tmp_path, size=3, check_data_dirs=True) as cluster:
        for node in cluster.nodes:
            await node.accepted.wait()
        leader = await cluster.wait_for_leader()
        gone = a_follower(cluster, leader)
        await cluster.crash(gone.id)
        cluster.wipe(gone.id)
        assert await leader.change_members(MemberChange(ChangeKind.REMOVE, gone.id)) is None
        address = MemberAddress(f"{gone.id}:7000", f"{gone.id}:6379")
        added = await leader.change_members(MemberChange(ChangeKind.ADD, gone.id, address))
        assert added is None
        fresh = await cluster.start(gone.id)
        await wait_until(lambda: gone.id in leader.core.members.voters, 3 * ELECTION_TIMEOUT_MAX)
        assert fresh.accepted.is_set() and gone.id not in cluster.refusals


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([b"RAFT.MEMBER", b"list"], LIST),
        ([b"RAFT.MEMBER", b"REMOVE", b"n2"], MemberChange(ChangeKind.REMOVE, "n2")),
        ([b"RAFT.MEMBER", b"PROMOTE", b"n4"], MemberChange(ChangeKind.PROMOTE, "n4")),
        (
            [b"RAFT.MEMBER", b"ADD", b"n4", b"h4:7000", b"h4:6379"],
            MemberChange(ChangeKind.ADD, "n4", MemberAddress("h4:7000", "h4:6379")),
        ),
        ([b"RAFT.MEMBER"], ErrorReply("ERR wrong number of arguments for 'raft.member' command")),
        (
            [b"RAFT.MEMBER", b"ADD", b"n4", b"h4:7000"],
            ErrorReply("ERR wrong number of arguments for 'raft.member|add' command"),
        ),
        (
            [b"RAFT.MEMBER", b"ADD", b"n4", b"h4", b"h4:6379"],
            ErrorReply('ERR peer_addr: expected "host:port", got "h4"'),
        ),
        (
            [b"RAFT.MEMBER", b"JOIN", b"n4"],
            ErrorReply("ERR unknown subcommand 'JOIN'. Try LIST, ADD, PROMOTE or REMOVE."),
        ),
    ],
)
def test_raft_member_arguments(args: list[bytes], expected: object) -> None:
    assert parse_member_command(args) == expected


def test_a_wiped_member_is_told_how_to_replace_it() -> None:
    message = wiped_message("n3")
    assert "`trioraft member remove ADDR n3`" in message
    assert "`trioraft member add ADDR ID PEER_ADDR CLIENT_ADDR`" in message


def test_raft_transfer_arguments() -> None:
    assert parse_transfer([b"RAFT.TRANSFER"]) is None
    assert parse_transfer([b"RAFT.TRANSFER", b"n2"]) == "n2"
    assert isinstance(parse_transfer([b"RAFT.TRANSFER", b"a", b"b"]), ErrorReply)


async def test_a_node_configured_to_join_asks_until_added_then_becomes_a_voter(
    clock: MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_cluster(tmp_path, size=4, founders=3, start=["n1", "n2", "n3"]) as cluster:
        leader = await cluster.wait_for_leader()
        assert await write(leader, b"before", b"1") == OK
        follower = a_follower(cluster, leader)
        await cluster.crash(follower.id)
        # the first node it asks is down: it asks the next one
        other = next(n for n in cluster.nodes if n.id not in (leader.id, "n4"))
        new = await cluster.start("n4", join_via=[follower.id, other.id])
        assert not new.core.members.all
        await wait_until(lambda: "n4" in leader.core.members.voters, 3 * ELECTION_TIMEOUT_MAX)
        assert leader.core.members.address("n4") == N4
        assert await write(new, b"through", b"n4") == OK
        await wait_until(lambda: new.applied >= leader.core.commit, ELECTION_TIMEOUT_MAX)
        assert new.state.store.read([b"GET", b"before"]) == b"1"
        assert not any("waiting to join" in r.getMessage() for r in caplog.records)
        # asking again once a member, at the same addresses, is done at once
        assert await other.admit("n4", N4) == leader.core.members


async def test_a_node_asking_to_join_is_told_why_not_and_asks_again(
    clock: MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_cluster(tmp_path, size=4, founders=3, start=["n1", "n2", "n3"]) as cluster:
        leader = await cluster.wait_for_leader()
        taken = MemberAddress("n4:7000", "elsewhere:1")
        assert await leader.change_members(MemberChange(ChangeKind.ADD, "n5", taken)) is None
        new = await cluster.start("n4", join_via=[leader.id])
        await wait_until(
            lambda: any("waiting to join" in r.getMessage() for r in caplog.records),
            ELECTION_TIMEOUT_MAX,
        )
        [fields] = [r.fields for r in caplog.records if "waiting to join" in r.getMessage()]
        assert "n5 uses the address n4:7000" in fields["reasons"] and fields["attempt"] == 1
        assert await leader.change_members(MemberChange(ChangeKind.REMOVE, "n5")) is None
        await wait_until(lambda: "n4" in leader.core.members.voters, 6 * ELECTION_TIMEOUT_MAX)
        assert new.core.members == leader.core.members


async def stays_follower(node: Node, seconds: float) -> None:
    """Check at every tick for `seconds` that `node` neither campaigns nor leads."""
    for _ in range(round(seconds / TICK)):
        await trio.sleep(TICK)
        assert node.core.role is Role.FOLLOWER


def removal_lines(caplog: pytest.LogCaptureFixture, node: Node) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if "was removed from the cluster" in r.getMessage() and r.node == node.id  # type: ignore[attr-defined]
    ]


async def test_a_removed_follower_learns_it_stops_and_answers_clients_so(
    clock: MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_cluster(tmp_path, size=3) as cluster:
        leader = await cluster.wait_for_leader()
        gone = a_follower(cluster, leader)
        assert await leader.change_members(MemberChange(ChangeKind.REMOVE, gone.id)) is None
        await wait_until(lambda: gone.removal() is not None, 3 * ELECTION_TIMEOUT_MAX)
        assert gone.removal() == leader.core.members and not gone.core.may_vote
        assert (await write(gone, b"k", b"v")).startswith(
            b"-CLUSTERDOWN this node was removed from the cluster; use a member"
        )
        assert await write(leader, b"k", b"v") == OK
        await stays_follower(gone, 5 * ELECTION_TIMEOUT_MAX)
        assert len(removal_lines(caplog, gone)) == 1


async def test_a_node_removed_while_down_is_told_when_it_comes_back_and_can_be_added_again(
    clock: MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_cluster(tmp_path, size=3) as cluster:
        leader = await cluster.wait_for_leader()
        gone = a_follower(cluster, leader)
        await cluster.crash(gone.id)
        assert await leader.change_members(MemberChange(ChangeKind.REMOVE, gone.id)) is None
        back = await cluster.start(gone.id)
        assert gone.id in back.core.members.voters  # its own log missed the removal
        await wait_until(lambda: back.removal() is not None, 4 * ELECTION_TIMEOUT_MAX)
        assert len(removal_lines(caplog, back)) == 1
        await stays_follower(back, 5 * ELECTION_TIMEOUT_MAX)  # no more campaigns
        assert leader.core.is_leader
        address = MemberAddress(f"{gone.id}:7000", f"{gone.id}:6379")
        added = await leader.change_members(MemberChange(ChangeKind.ADD, gone.id, address))
        assert added is None
        await wait_until(lambda: gone.id in leader.core.members.voters, 4 * ELECTION_TIMEOUT_MAX)
        assert back.removal() is None and back.core.may_vote
        assert await write(back, b"again", b"1") == OK


# --- a new node whose config file lists it as a voter --------------------------------


async def never_campaigns_until_promoted(leader: Node, new: Node) -> None:
    while new.id not in leader.core.members.voters:
        assert new.core.role is Role.FOLLOWER
        await trio.sleep(TICK)


async def test_a_node_added_then_started_listed_as_a_voter_starts_as_the_learner_it_is(
    clock: MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_cluster(
        tmp_path, size=4, founders=3, start=["n1", "n2", "n3"], check_data_dirs=True
    ) as cluster:
        leader = await cluster.wait_for_leader()
        assert await leader.change_members(MemberChange(ChangeKind.ADD, "n4", N4)) is None
        new = await cluster.start("n4", listed=cluster.ids)
        assert new.core.members.voters == {"n1", "n2", "n3", "n4"}  # as its file says
        await new.accepted.wait()
        assert new.core.members.learners == {"n4"} and "n4" not in new.core.members.voters
        assert any("has this node as a learner" in r.getMessage() for r in caplog.records)
        with trio.fail_after(4 * ELECTION_TIMEOUT_MAX):
            await never_campaigns_until_promoted(leader, new)
        assert await write(new, b"k", b"v") == OK


async def test_a_node_started_listed_as_a_voter_before_it_was_added_waits_to_be_added(
    clock: MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_cluster(
        tmp_path, size=4, founders=3, start=["n1", "n2", "n3"], check_data_dirs=True
    ) as cluster:
        leader = await cluster.wait_for_leader()
        assert await write(leader, b"k", b"v") == OK
        new = await cluster.start("n4", listed=cluster.ids)
        await wait_until(lambda: not new.core.members.all, ELECTION_TIMEOUT_MAX)
        assert any("does not have this node as a member" in r.getMessage() for r in caplog.records)
        for _ in range(round(3 * ELECTION_TIMEOUT_MAX / TICK)):
            await trio.sleep(TICK)
            assert new.core.role is Role.FOLLOWER and leader.core.is_leader
        assert await leader.change_members(MemberChange(ChangeKind.ADD, "n4", N4)) is None
        with trio.fail_after(4 * ELECTION_TIMEOUT_MAX):
            await never_campaigns_until_promoted(leader, new)


async def test_a_first_member_starting_late_on_an_empty_data_dir_is_a_voter(
    clock: MockClock, tmp_path: Path
) -> None:
    async with open_cluster(tmp_path, size=3, start=["n1", "n2"], check_data_dirs=True) as cluster:
        leader = await cluster.wait_for_leader()
        assert await write(leader, b"k", b"v") == OK
        late = await cluster.start("n3")
        await late.accepted.wait()
        assert late.core.members.voters == {"n1", "n2", "n3"} and late.core.may_vote
        await cluster.crash(leader.id)
        successor = await cluster.wait_for_leader()
        assert await write(successor, b"k2", b"v") == OK
