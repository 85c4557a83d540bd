"""Elections: timeouts, PreVote, votes, terms, CheckQuorum and leadership transfer."""

from __future__ import annotations

import pytest
from harness.core_cluster import (
    ELECTION_TICKS,
    CoreCluster,
    avoiding,
    involving,
    log_of,
    make_raft,
    run_out_timeout,
    tick,
)

from trioraft.core.config import RaftConfig
from trioraft.core.errors import TransferInProgress
from trioraft.core.messages import (
    AppendEntriesResponse,
    Entry,
    EntryKind,
    HardState,
    Heartbeat,
    Message,
    NodeId,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from trioraft.core.raft import Raft, Role

NO_PRE_VOTE = RaftConfig(pre_vote=False)


def heartbeat(src: NodeId, dst: NodeId, term: int) -> Heartbeat:
    return Heartbeat(src=src, dst=dst, term=term, commit=0, seq=1)


def vote_request(
    src: NodeId,
    dst: NodeId,
    term: int,
    *,
    last_index: int = 0,
    last_term: int = 0,
    pre_vote: bool = False,
    transfer: bool = False,
) -> RequestVote:
    return RequestVote(
        src=src,
        dst=dst,
        term=term,
        last_log_index=last_index,
        last_log_term=last_term,
        pre_vote=pre_vote,
        transfer=transfer,
    )


def vote_answer(
    src: NodeId, dst: NodeId, term: int, *, granted: bool = True, pre_vote: bool = False
) -> RequestVoteResponse:
    return RequestVoteResponse(src=src, dst=dst, term=term, granted=granted, pre_vote=pre_vote)


def following(node_id: NodeId, leader: NodeId, term: int) -> Raft:
    """A node that has just heard from `leader` in `term`, its Ready taken."""
    node = make_raft(node_id)
    node.step(heartbeat(leader, node_id, term))
    node.ready()
    return node


def ticks_to_campaign(seed: int) -> int:
    node = make_raft(seed=seed)
    ticks = 0
    while node.role is Role.FOLLOWER:
        node.tick()
        ticks += 1
    return ticks


def requests(messages: list[Message]) -> list[RequestVote]:
    return [m for m in messages if isinstance(m, RequestVote)]


def answers(node: Raft) -> list[RequestVoteResponse]:
    rd = node.ready()
    assert rd.messages == []
    return [m for m in rd.messages_after_persist if isinstance(m, RequestVoteResponse)]


# --- election timeout --------------------------------------------------------------


def test_follower_campaigns_within_its_randomized_election_timeout() -> None:
    for seed in range(20):
        assert ELECTION_TICKS <= ticks_to_campaign(seed) < 2 * ELECTION_TICKS


def test_election_timeouts_are_randomized() -> None:
    assert len({ticks_to_campaign(seed) for seed in range(20)}) > 1


def test_follower_hearing_from_its_leader_does_not_campaign() -> None:
    node = following("b", leader="a", term=1)
    for _ in range(3 * ELECTION_TICKS):
        node.tick()
        node.step(heartbeat("a", "b", 1))
    assert node.role is Role.FOLLOWER


def test_granting_a_vote_restarts_the_election_timeout() -> None:
    node = make_raft("b", hard_state=HardState(1))
    timeout = node.randomized_timeout
    tick(node, timeout - 1)
    node.step(vote_request("a", "b", 1))
    tick(node, timeout - 1)
    assert node.role is Role.FOLLOWER


# --- PreVote -----------------------------------------------------------------------


def test_pre_candidate_keeps_its_term_and_vote() -> None:
    node = make_raft("a", hard_state=HardState(3, "c"))
    run_out_timeout(node)
    rd = node.ready()
    assert node.role is Role.PRE_CANDIDATE
    assert (node.term, node.vote, rd.hard_state) == (3, "c", None)


def test_pre_candidate_asks_for_pre_votes_in_the_next_term() -> None:
    node = make_raft("a", hard_state=HardState(3), entries=log_of(1, 3))
    run_out_timeout(node)
    rd = node.ready()
    assert sorted(rd.messages_after_persist, key=lambda m: m.dst) == [
        vote_request("a", peer, 4, last_index=2, last_term=3, pre_vote=True) for peer in ("b", "c")
    ]


def test_pre_candidate_becomes_candidate_only_after_a_majority_of_pre_votes() -> None:
    node = make_raft("a", ids=("a", "b", "c", "d", "e"), hard_state=HardState(3))
    run_out_timeout(node)
    node.step(vote_answer("b", "a", 4, pre_vote=True))
    assert (node.role, node.term) == (Role.PRE_CANDIDATE, 3)
    node.step(vote_answer("c", "a", 4, pre_vote=True))
    assert (node.role, node.term, node.vote) == (Role.CANDIDATE, 4, "a")


def test_new_candidate_asks_for_real_votes() -> None:
    node = make_raft("a", hard_state=HardState(3))
    run_out_timeout(node)
    node.ready()
    node.step(vote_answer("b", "a", 4, pre_vote=True))
    rd = node.ready()
    assert rd.hard_state == HardState(4, "a")
    assert {(m.dst, m.term, m.pre_vote) for m in requests(rd.messages_after_persist)} == {
        ("b", 4, False),
        ("c", 4, False),
    }


def test_pre_candidate_refused_by_a_majority_becomes_follower_in_its_term() -> None:
    node = make_raft("a", hard_state=HardState(3))
    run_out_timeout(node)
    node.step(vote_answer("b", "a", 3, granted=False, pre_vote=True))
    node.step(vote_answer("c", "a", 3, granted=False, pre_vote=True))
    assert (node.role, node.term) == (Role.FOLLOWER, 3)


def test_pre_vote_grant_changes_nothing_at_the_voter() -> None:
    node = make_raft("b", hard_state=HardState(3))
    node.step(vote_request("a", "b", 4, pre_vote=True))
    rd = node.ready()
    assert (node.term, node.vote, rd.hard_state) == (3, None, None)
    assert rd.messages_after_persist == [vote_answer("b", "a", 4, pre_vote=True)]


def test_cut_off_node_coming_back_does_not_disturb_the_leader() -> None:
    cluster = CoreCluster()
    leader = cluster.elect("a")
    comeback = cluster.nodes["c"]
    for _ in range(3):
        run_out_timeout(comeback)
        cluster.stabilize()
    assert (leader.role, leader.term) == (Role.LEADER, 1)
    assert (comeback.role, comeback.term) == (Role.PRE_CANDIDATE, 1)


# --- CheckQuorum lease on voters ---------------------------------------------------


def test_node_that_heard_from_a_leader_ignores_pre_votes() -> None:
    node = following("b", leader="a", term=1)
    node.step(vote_request("c", "b", 2, pre_vote=True))
    assert answers(node) == []


def test_node_that_heard_from_a_leader_ignores_vote_requests() -> None:
    node = following("b", leader="a", term=1)
    node.step(vote_request("c", "b", 2))
    assert answers(node) == []
    assert (node.term, node.vote) == (1, None)


def test_leader_lease_ends_after_an_election_timeout() -> None:
    node = following("b", leader="a", term=1)
    assert node.randomized_timeout > ELECTION_TICKS  # b does not campaign meanwhile
    tick(node, ELECTION_TICKS)
    node.step(vote_request("c", "b", 2, pre_vote=True))
    assert answers(node) == [vote_answer("b", "c", 2, pre_vote=True)]


# --- votes -------------------------------------------------------------------------


def test_vote_grant_is_sent_only_after_the_hard_state_is_persisted() -> None:
    node = make_raft("b")
    node.step(vote_request("a", "b", 1))
    rd = node.ready()
    assert rd.hard_state == HardState(1, "a")
    assert rd.messages == []
    assert rd.messages_after_persist == [vote_answer("b", "a", 1)]


def test_vote_is_granted_once_per_term() -> None:
    node = make_raft("b")
    node.step(vote_request("a", "b", 1))
    node.step(vote_request("c", "b", 1))
    assert [m.granted for m in answers(node)] == [True, False]


def test_vote_is_granted_again_to_the_same_candidate() -> None:
    node = make_raft("b")
    node.step(vote_request("a", "b", 1))
    node.step(vote_request("a", "b", 1))
    assert [m.granted for m in answers(node)] == [True, True]


def test_vote_refused_to_candidate_with_an_older_last_term() -> None:
    node = make_raft("b", hard_state=HardState(2), entries=log_of(1, 2))
    node.step(vote_request("a", "b", 3, last_index=5, last_term=1))
    assert answers(node) == [vote_answer("b", "a", 3, granted=False)]


def test_vote_refused_to_candidate_with_a_shorter_log_of_the_same_last_term() -> None:
    node = make_raft("b", hard_state=HardState(1), entries=log_of(1, 1, 1))
    node.step(vote_request("a", "b", 2, last_index=2, last_term=1))
    assert answers(node) == [vote_answer("b", "a", 2, granted=False)]


def test_vote_granted_to_candidate_with_a_newer_last_term_and_a_shorter_log() -> None:
    node = make_raft("b", hard_state=HardState(1), entries=log_of(1, 1, 1))
    node.step(vote_request("a", "b", 3, last_index=1, last_term=2))
    assert answers(node) == [vote_answer("b", "a", 3)]


def test_vote_survives_a_restart() -> None:
    cluster = CoreCluster()
    cluster.elect("a")
    voter = cluster.restart("b")
    voter.step(vote_request("c", "b", 1, last_index=1, last_term=1))
    assert answers(voter) == [vote_answer("b", "c", 1, granted=False)]


def test_vote_request_from_an_older_term_is_refused_with_the_current_term() -> None:
    node = make_raft("b", hard_state=HardState(3))
    node.step(vote_request("a", "b", 2))
    assert answers(node) == [vote_answer("b", "a", 3, granted=False)]


# --- terms -------------------------------------------------------------------------


def test_higher_term_vote_request_is_adopted_even_when_refused() -> None:
    node = make_raft("b", hard_state=HardState(1, "a"), entries=log_of(1, 1))
    node.step(vote_request("c", "b", 2, last_index=1, last_term=1))
    rd = node.ready()
    assert rd.hard_state == HardState(2, None)
    assert rd.messages_after_persist == [vote_answer("b", "c", 2, granted=False)]


def test_higher_term_answer_makes_the_leader_a_follower_and_clears_its_vote() -> None:
    cluster = CoreCluster()
    leader = cluster.elect("a")
    leader.step(AppendEntriesResponse(src="b", dst="a", term=2, success=False, index=0))
    rd = leader.ready()
    assert (leader.role, leader.leader_id) == (Role.FOLLOWER, None)
    assert rd.hard_state == HardState(2, None)


def test_higher_term_leader_message_makes_a_candidate_follow_it() -> None:
    node = make_raft("a", config=NO_PRE_VOTE)
    run_out_timeout(node)
    node.ready()
    node.step(heartbeat("b", "a", 2))
    rd = node.ready()
    assert (node.role, node.leader_id) == (Role.FOLLOWER, "b")
    assert rd.hard_state == HardState(2, None)


# --- candidates --------------------------------------------------------------------


def test_candidate_becomes_leader_with_a_majority_of_votes() -> None:
    node = make_raft("a", ids=("a", "b", "c", "d", "e"), config=NO_PRE_VOTE)
    run_out_timeout(node)
    node.step(vote_answer("b", "a", 1))
    assert node.role is Role.CANDIDATE
    node.step(vote_answer("c", "a", 1))
    assert node.is_leader


def test_candidate_follows_a_leader_of_its_own_term() -> None:
    node = make_raft("a", config=NO_PRE_VOTE)
    run_out_timeout(node)
    node.step(heartbeat("b", "a", 1))
    assert (node.role, node.term, node.leader_id) == (Role.FOLLOWER, 1, "b")


def test_split_vote_leads_to_a_new_election_at_a_higher_term() -> None:
    cluster = CoreCluster(config=NO_PRE_VOTE)
    for node in cluster.nodes.values():
        run_out_timeout(node)
    cluster.stabilize()
    assert not any(node.is_leader for node in cluster.nodes.values())
    assert cluster.campaign("a").term == 2


def test_single_node_cluster_elects_itself() -> None:
    node = make_raft("a", ids=("a",))
    run_out_timeout(node)
    rd = node.ready()
    assert node.role is Role.LEADER
    assert rd.hard_state == HardState(1, "a")
    assert rd.entries == [Entry(1, 1, EntryKind.NOOP)]


# --- CheckQuorum on the leader -----------------------------------------------------


def test_leader_hearing_from_no_majority_steps_down() -> None:
    cluster = CoreCluster()
    leader = cluster.elect("a")
    tick(leader, 2 * ELECTION_TICKS)
    assert (leader.role, leader.term) == (Role.FOLLOWER, 1)


def test_leader_hearing_from_a_majority_stays_leader() -> None:
    cluster = CoreCluster()
    leader = cluster.elect("a")
    cluster.drop(involving("c"))
    for _ in range(3 * ELECTION_TICKS):
        leader.tick()
        cluster.stabilize(avoiding("c"))
    assert leader.role is Role.LEADER


# --- leadership transfer -----------------------------------------------------------


def lagging_target_cluster() -> CoreCluster:
    """`a` leads; `b` missed the latest entry; a transfer to `b` has been asked for."""
    cluster = CoreCluster()
    leader = cluster.elect("a")
    leader.propose([b"x"])
    cluster.stabilize(avoiding("b"))
    cluster.drop(involving("b"))
    leader.transfer_leadership("b")
    return cluster


def test_timeout_now_makes_a_follower_campaign_at_once_without_pre_vote() -> None:
    node = following("b", leader="a", term=1)
    node.step(TimeoutNow(src="a", dst="b", term=1))
    rd = node.ready()
    assert (node.role, rd.hard_state) == (Role.CANDIDATE, HardState(2, "b"))
    assert {(m.dst, m.pre_vote, m.transfer) for m in requests(rd.messages_after_persist)} == {
        ("a", False, True),
        ("c", False, True),
    }


def test_transfer_vote_request_overrides_the_leader_lease() -> None:
    node = following("c", leader="a", term=1)
    node.step(vote_request("b", "c", 2, transfer=True))
    assert answers(node) == [vote_answer("c", "b", 2)]
    assert node.hard_state == HardState(2, "b")


def test_transfer_to_an_up_to_date_target_sends_timeout_now() -> None:
    cluster = CoreCluster()
    leader = cluster.elect("a")
    leader.transfer_leadership("b")
    assert TimeoutNow(src="a", dst="b", term=1) in cluster.ready("a").messages


def test_transfer_hands_leadership_to_the_target() -> None:
    cluster = CoreCluster()
    cluster.elect("a").transfer_leadership("b")
    cluster.stabilize()
    assert (cluster.nodes["b"].role, cluster.nodes["b"].term) == (Role.LEADER, 2)
    assert cluster.nodes["a"].role is Role.FOLLOWER


def test_transfer_waits_for_the_target_log_to_be_complete() -> None:
    cluster = lagging_target_cluster()
    assert not any(isinstance(m, TimeoutNow) for m in cluster.ready("a").messages)
    cluster.nodes["a"].tick()
    delivered = cluster.stabilize()
    timeout_now = next(m for m in delivered if isinstance(m, TimeoutNow))
    assert timeout_now.dst == "b"
    assert cluster.nodes["b"].is_leader


def test_proposals_are_refused_while_a_transfer_is_in_progress() -> None:
    cluster = lagging_target_cluster()
    with pytest.raises(TransferInProgress):
        cluster.nodes["a"].propose([b"y"])


def test_transfer_is_abandoned_after_an_election_timeout() -> None:
    cluster = lagging_target_cluster()
    leader = cluster.nodes["a"]
    for _ in range(ELECTION_TICKS):
        leader.tick()
        cluster.stabilize(avoiding("b"))
    assert leader.propose([b"y"]) == [(3, 1)]


def test_proposals_stay_refused_after_timeout_now_until_the_transfer_ends() -> None:
    cluster = CoreCluster()
    leader = cluster.elect("a")
    leader.transfer_leadership("b")
    cluster.ready("a")
    with pytest.raises(TransferInProgress):
        leader.propose([b"y"])


# --- a leader whose own disk hangs -------------------------------------------------


def test_leader_whose_write_hangs_for_an_election_timeout_hands_leadership_over() -> None:
    cluster = CoreCluster()
    leader = cluster.elect("a")
    cluster.hung_disks.add("a")
    leader.propose([b"x"])
    for _ in range(ELECTION_TICKS + 1):
        leader.tick()
        cluster.stabilize()
    assert leader.role is Role.FOLLOWER
    assert [n.id for n in cluster.nodes.values() if n.is_leader] in (["b"], ["c"])
    assert all(n.term == 2 for n in cluster.nodes.values())


def test_leader_whose_write_hangs_steps_down_when_no_follower_catches_up() -> None:
    cluster = CoreCluster()
    leader = cluster.elect("a")
    cluster.hung_disks.add("a")
    leader.propose([b"x"])
    # the followers answer heartbeats, but their acknowledgements never arrive
    for _ in range(2 * ELECTION_TICKS + 1):
        leader.tick()
        cluster.stabilize(lambda m: not isinstance(m, AppendEntriesResponse))
    assert (leader.role, leader.term) == (Role.FOLLOWER, 1)


def test_leader_with_a_slow_disk_that_keeps_up_stays_leader() -> None:
    cluster = CoreCluster()
    leader = cluster.elect("a")
    cluster.hung_disks.add("a")
    for k in range(3 * ELECTION_TICKS):
        leader.propose([b"%d" % k])
        leader.tick()
        cluster.stabilize()
        if k % 5 == 4:
            cluster.persist("a")  # each write takes five ticks
    assert leader.is_leader
