"""Membership changes one server at a time in the core: configuration entries, learners,
self-removal, removed members and configurations in snapshots."""

from __future__ import annotations

import random

import pytest
from harness.core_cluster import (
    ELECTION_TICKS,
    CoreCluster,
    avoiding,
    involving,
    log_of,
    make_raft,
    members,
    run_out_timeout,
    tick,
)

from trioraft.core.config import RaftConfig
from trioraft.core.errors import (
    ChangeNotAllowedYet,
    InvalidChange,
    NotLeader,
    TransferInProgress,
)
from trioraft.core.membership import ChangeKind, MemberChange, encode_members
from trioraft.core.messages import (
    AppendEntries,
    Entry,
    EntryKind,
    HardState,
    InstallSnapshot,
    MemberAddress,
    Members,
    RequestVote,
    RequestVoteResponse,
    SnapshotMeta,
    TimeoutNow,
)
from trioraft.core.raft import Raft, Role

D_ADDRESS = MemberAddress("d:7000", "d:6379")
WITH_D = Members(frozenset("abc"), frozenset("d"), (("d", D_ADDRESS),))


def add(node: str, address: MemberAddress | None = None) -> MemberChange:
    address = address or MemberAddress(f"{node}:7000", f"{node}:6379")
    return MemberChange(ChangeKind.ADD, node, address)


def remove(node: str) -> MemberChange:
    return MemberChange(ChangeKind.REMOVE, node)


def promote(node: str) -> MemberChange:
    return MemberChange(ChangeKind.PROMOTE, node)


def config_entry(term: int, index: int, configuration: Members) -> Entry:
    return Entry(term, index, EntryKind.CONFIG, encode_members(configuration))


def cluster_with_learner(config: RaftConfig | None = None) -> CoreCluster:
    """`a` leads voters a, b, c; `d` was added as a learner and has caught up."""
    cluster = CoreCluster(config=config or RaftConfig(promote_learners=False))
    leader = cluster.elect("a")
    cluster.add_node("d")
    leader.change_members(add("d", D_ADDRESS))
    cluster.stabilize()
    return cluster


# --- configuration entries ---------------------------------------------------------


def test_configuration_entry_takes_effect_on_append_before_it_commits() -> None:
    cluster = CoreCluster()
    leader = cluster.elect("a")
    index, _ = leader.change_members(add("d", D_ADDRESS))
    assert leader.members == WITH_D and leader.commit < index
    cluster.ready("a")
    cluster.deliver(lambda m: isinstance(m, AppendEntries) and m.dst == "b")
    follower = cluster.nodes["b"]
    assert follower.members == WITH_D and follower.commit < index
    assert cluster.ready("b").members == WITH_D


def test_configuration_entry_is_undone_when_a_new_leader_cuts_it_off() -> None:
    follower = make_raft("b", entries=[*log_of(1), config_entry(1, 2, WITH_D)])
    assert follower.members == WITH_D
    follower.step(
        AppendEntries(
            src="c", dst="b", term=2, prev_index=1, prev_term=1, entries=(Entry(2, 2),), commit=0
        )
    )
    assert follower.members == members()
    assert follower.ready().members == members()


def test_second_change_is_refused_until_the_first_commits() -> None:
    cluster = CoreCluster()
    leader = cluster.elect("a")
    cluster.add_node("d")
    cluster.add_node("e")
    leader.change_members(add("d"))
    with pytest.raises(ChangeNotAllowedYet, match="one change at a time"):
        leader.change_members(add("e"))
    cluster.stabilize()
    leader.change_members(add("e"))
    assert leader.members.learners == {"d", "e"}


def test_change_is_refused_before_the_leader_commits_an_entry_of_its_term() -> None:
    cluster = CoreCluster()
    leader = cluster.campaign("a")
    with pytest.raises(ChangeNotAllowedYet, match="not committed an entry of its term"):
        leader.change_members(add("d"))
    cluster.stabilize()
    leader.change_members(add("d"))


def test_change_is_refused_by_a_follower() -> None:
    cluster = CoreCluster()
    cluster.elect("a")
    with pytest.raises(NotLeader):
        cluster.nodes["b"].change_members(add("d"))


def single_leader(configuration: Members) -> Raft:
    """`a`, the only voter of `configuration`, leading with its no-op committed."""
    node = Raft("a", configuration, rng=random.Random(0))
    run_out_timeout(node)
    node.ready()
    node.persisted(node.log.last_index, node.term)
    assert node.committed_in_term()
    return node


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (add("b"), "b is a member already"),
        (add("d", MemberAddress("b:7000", "d:1")), "b uses the address"),
        (MemberChange(ChangeKind.ADD, "d"), "needs its peer and client addresses"),
        (remove("x"), "x is not a member"),
        (promote("a"), "a is a voter already"),
        (remove("a"), "a is the only voter"),
    ],
)
def test_change_that_does_not_fit_is_refused_and_changes_nothing(
    change: MemberChange, error: str
) -> None:
    known = Members(
        frozenset("a"),
        frozenset("bc"),
        tuple((n, MemberAddress(f"{n}:7000", f"{n}:6379")) for n in "abc"),
    )
    node = single_leader(known)
    last = node.log.last_index
    with pytest.raises(InvalidChange, match=error):
        node.change_members(change)
    assert (node.members, node.log.last_index) == (known, last)


# --- learners ----------------------------------------------------------------------


def test_learner_receives_the_log_and_applies_it() -> None:
    cluster = cluster_with_learner()
    cluster.nodes["a"].propose([b"x"])
    cluster.stabilize()
    cluster.nodes["a"].tick()  # the learner learns the commit index at the next tick
    cluster.stabilize()
    assert [e.data for e in cluster.applied["d"]][-1] == b"x"
    assert cluster.nodes["d"].members == WITH_D


def test_learner_never_campaigns() -> None:
    cluster = cluster_with_learner()
    learner = cluster.nodes["d"]
    tick(learner, 10 * ELECTION_TICKS)
    assert learner.role is Role.FOLLOWER and not learner.ready().messages_after_persist


def test_learner_does_not_count_for_commit() -> None:
    cluster = cluster_with_learner()
    leader = cluster.nodes["a"]
    index, _ = leader.propose([b"x"])[0]
    cluster.stabilize(lambda m: involving("d")(m) or m.src == m.dst)
    assert cluster.nodes["d"].log.last_index == index
    assert leader.commit < index


def test_learner_does_not_count_for_read_index() -> None:
    cluster = cluster_with_learner()
    leader = cluster.nodes["a"]
    leader.read_index("r")
    cluster.stabilize(avoiding("b"))  # a, c and the learner d answer: a quorum
    assert [r.ctx for r in cluster.reads["a"]] == ["r"]
    leader.read_index("s")
    cluster.stabilize(lambda m: "a" in (m.src, m.dst) and "d" in (m.src, m.dst))
    assert [r.ctx for r in cluster.reads["a"]] == ["r"]


def test_learner_does_not_count_for_check_quorum() -> None:
    cluster = cluster_with_learner()
    leader = cluster.nodes["a"]
    for _ in range(2 * ELECTION_TICKS):
        leader.tick()
        cluster.stabilize(lambda m: "a" in (m.src, m.dst) and "d" in (m.src, m.dst))
    assert leader.role is Role.FOLLOWER


def test_learner_is_not_asked_for_votes_and_its_vote_is_not_counted() -> None:
    cluster = cluster_with_learner()
    candidate = cluster.nodes["b"]
    tick(candidate, 2 * ELECTION_TICKS)
    assert candidate.role is Role.PRE_CANDIDATE
    rd = cluster.ready("b")
    assert {m.dst for m in rd.messages_after_persist} == {"a", "c"}
    candidate.step(
        RequestVoteResponse(src="d", dst="b", term=candidate.term + 1, granted=True, pre_vote=True)
    )
    assert candidate.role is Role.PRE_CANDIDATE


def test_caught_up_learner_is_promoted_after_an_election_timeout() -> None:
    cluster = cluster_with_learner(RaftConfig())
    leader = cluster.nodes["a"]
    for _ in range(ELECTION_TICKS - 1):
        leader.tick()
        cluster.stabilize()
    assert leader.members.learners == {"d"}
    leader.tick()
    cluster.stabilize()
    assert leader.members.voters == {"a", "b", "c", "d"} and not leader.members.learners
    assert cluster.nodes["d"].members == leader.members


def test_lagging_learner_is_not_promoted() -> None:
    cluster = cluster_with_learner(RaftConfig(learner_catchup_entries=2))
    leader = cluster.nodes["a"]
    for _ in range(3 * ELECTION_TICKS):
        leader.propose([b"x", b"y", b"z"])
        leader.tick()
        cluster.stabilize(avoiding("d"))
    assert leader.members.learners == {"d"}


# --- removal -----------------------------------------------------------------------


def test_leader_removing_itself_leads_until_the_change_commits_then_hands_over() -> None:
    cluster = CoreCluster()
    leader = cluster.elect("a")
    index, _ = leader.change_members(remove("a"))
    assert leader.members.voters == {"b", "c"}
    with pytest.raises(TransferInProgress):
        leader.propose([b"x"])  # new writes go to the next leader
    leader.read_index("r")  # still leading: reads are served meanwhile
    cluster.ready("a")
    assert leader.role is Role.LEADER
    delivered = cluster.stabilize()
    assert leader.role is Role.FOLLOWER and leader.commit >= index
    assert any(isinstance(m, TimeoutNow) and m.src == "a" for m in delivered)
    new_leader = next(n for n in cluster.nodes.values() if n.role is Role.LEADER)
    assert new_leader.id in {"b", "c"} and new_leader.members.voters == {"b", "c"}


def test_leader_commits_its_own_removal_without_counting_itself() -> None:
    cluster = CoreCluster()
    leader = cluster.elect("a")
    index, _ = leader.change_members(remove("a"))
    cluster.hung_disks.add("a")  # its own copy never becomes durable
    cluster.stabilize(lambda m: m.src != "a" or m.dst == "b")
    assert leader.commit < index  # only b holds it: one of the two voters b, c
    cluster.deliver()
    cluster.stabilize()
    assert cluster.nodes["b"].commit >= index


def test_removed_member_that_knows_it_never_campaigns() -> None:
    cluster = CoreCluster()
    leader = cluster.elect("a")
    leader.change_members(remove("c"))
    cluster.stabilize()
    removed = cluster.nodes["c"]
    assert "c" not in removed.members.all
    tick(removed, 10 * ELECTION_TICKS)
    rd = removed.ready()
    assert not rd.messages and not rd.messages_after_persist


def test_removed_member_that_missed_its_removal_cannot_disturb_the_cluster() -> None:
    cluster = CoreCluster()
    leader = cluster.elect("a")
    cluster.drop(involving("c"))
    leader.change_members(remove("c"))
    cluster.stabilize(avoiding("c"))
    cluster.drop(involving("c"))
    term = leader.term
    removed = cluster.nodes["c"]
    delivered = []
    for _ in range(5 * ELECTION_TICKS):
        removed.tick()
        leader.tick()
        delivered += cluster.stabilize()
    assert any(isinstance(m, RequestVote) and m.src == "c" for m in delivered)
    assert removed.members.voters == {"a", "b", "c"}  # it never learned
    assert leader.role is Role.LEADER and leader.term == term
    assert cluster.nodes["b"].term == term


def test_a_voter_votes_for_a_candidate_its_own_configuration_leaves_out() -> None:
    """Votes are granted without consulting the voter's configuration (thesis 4.1), or
    uncommitted changes that disagree can leave no node able to win. Here d, whose log is
    the most up to date, removed itself and so never campaigns; b holds an older change
    removing a. a, next most up to date and a voter in its own configuration of four,
    needs the votes of b and c: were b to refuse a as no member, nobody could ever win."""
    logs = {
        "a": log_of(1, 3, 3),
        "b": [*log_of(1), config_entry(2, 2, Members(frozenset("bcd")))],
        "c": log_of(1, 3),
        "d": [*log_of(1, 3, 3), config_entry(3, 4, Members(frozenset("abc")))],
    }
    cluster = CoreCluster(ids="abcd", logs=logs, term=3)
    assert "d" not in cluster.nodes["d"].members.voters
    assert "a" not in cluster.nodes["b"].members.voters
    for _ in range(10 * ELECTION_TICKS):
        for node in cluster.nodes.values():
            node.tick()
        cluster.stabilize()
        if cluster.nodes["a"].is_leader:
            break
    assert cluster.nodes["a"].is_leader
    # the leader's log wins: d's self-removal is cut off, and d is a voter again
    assert cluster.nodes["d"].members.voters == frozenset("abcd")


# --- snapshots and restarts --------------------------------------------------------


def test_snapshot_records_the_configuration_at_its_index() -> None:
    cluster = CoreCluster(config=RaftConfig(promote_learners=False))
    leader = cluster.elect("a")
    cluster.add_node("d")
    leader.propose([b"x"])
    cluster.stabilize()
    leader.change_members(add("d", D_ADDRESS))
    cluster.stabilize()
    assert leader.members_at(2) == members() and leader.members_at(3) == WITH_D
    leader.compact(2)
    assert leader.members_at(2) == members() and leader.members == WITH_D
    leader.compact(3)
    assert leader.members_at(3) == WITH_D == leader.members


def test_new_learner_behind_the_snapshot_gets_it_with_the_configuration() -> None:
    cluster = CoreCluster(config=RaftConfig(promote_learners=False))
    leader = cluster.elect("a")
    cluster.add_node("d")
    leader.propose([b"x"])
    cluster.stabilize()
    leader.change_members(add("d", D_ADDRESS))
    cluster.stabilize(avoiding("d"))
    cluster.drop(involving("d"))
    leader.compact(leader.commit)
    leader.tick()
    delivered = cluster.stabilize()
    sent = [m for m in delivered if isinstance(m, InstallSnapshot)]
    assert [m.meta.members for m in sent] == [WITH_D]
    assert cluster.nodes["d"].members == WITH_D and cluster.disks["d"].snapshot is not None


def test_restart_takes_the_configuration_from_the_log_over_the_bootstrap_one() -> None:
    snapshot = SnapshotMeta(2, 1, WITH_D)
    promoted = Members(frozenset("abcd"), addresses=WITH_D.addresses)
    node = make_raft(
        "b",
        hard_state=HardState(1),
        snapshot=snapshot,
        entries=[config_entry(1, 3, promoted)],
    )
    assert node.members == promoted and node.members_at(2) == WITH_D
    assert make_raft("b", snapshot=snapshot).members == WITH_D


# --- joining -----------------------------------------------------------------------


def test_a_node_that_asked_to_join_adopts_the_answer_until_the_log_comes() -> None:
    node = Raft("d", Members(frozenset()), rng=random.Random(0))
    for _ in range(10 * node.config.election_ticks):
        node.tick()
    assert node.role is Role.FOLLOWER and not node.ready().messages  # never campaigns
    answered = Members(frozenset("abc"), frozenset("d"))
    node.adopt_members(answered)
    assert node.members == answered
    assert node.ready().members == answered


def test_adopting_members_is_refused_once_the_log_holds_entries() -> None:
    node = single_leader(Members(frozenset("a")))
    with pytest.raises(ValueError, match="the log already holds a configuration"):
        node.adopt_members(Members(frozenset("ab")))
    assert node.members == Members(frozenset("a"))


def test_a_withdrawn_node_ends_its_campaign_and_neither_campaigns_nor_votes() -> None:
    node = Raft("a", Members(frozenset("abc")), rng=random.Random(0))
    run_out_timeout(node)
    assert node.role is Role.PRE_CANDIDATE
    node.withdraw()
    assert node.role is Role.FOLLOWER
    for _ in range(10 * node.config.election_ticks):
        node.tick()
    node.step(RequestVote(src="b", dst="a", term=5, last_log_index=9, last_log_term=4))
    assert node.role is Role.FOLLOWER and not node.ready().messages
    node.allow_voting()
    run_out_timeout(node)
    assert node.role is Role.PRE_CANDIDATE
