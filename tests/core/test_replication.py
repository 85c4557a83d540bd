"""Log replication: the consistency check, commitment, pacing, the Ready contract for
replication traffic, restarts and snapshots."""

from __future__ import annotations

import pytest
from harness.core_cluster import (
    CoreCluster,
    Where,
    avoiding,
    involving,
    log_of,
    make_raft,
    members,
    progress_of,
)

from trioraft.core.config import RaftConfig
from trioraft.core.errors import NotLeader, TooMuchUncommitted
from trioraft.core.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    SnapshotMeta,
)
from trioraft.core.progress import ReplicationState
from trioraft.core.raft import Raft
from trioraft.core.ready import FollowerLostEntries

ONE_ENTRY_PER_MESSAGE = RaftConfig(max_batch_entries=1)


def append(
    term: int,
    *,
    prev: tuple[int, int] = (0, 0),
    entries: list[Entry] | None = None,
    commit: int = 0,
) -> AppendEntries:
    """An AppendEntries from leader `a` to `b`."""
    return AppendEntries(
        src="a",
        dst="b",
        term=term,
        prev_index=prev[0],
        prev_term=prev[1],
        entries=tuple(entries or ()),
        commit=commit,
    )


def answers(node: Raft) -> list[AppendEntriesResponse]:
    rd = node.ready()
    return [m for m in rd.messages_after_persist if isinstance(m, AppendEntriesResponse)]


def appends_to(node_id: str, messages: list[Message]) -> list[AppendEntries]:
    return [m for m in messages if isinstance(m, AppendEntries) and m.dst == node_id]


def append_after(node_id: str, prev_index: int) -> Where:
    """The AppendEntries to `node_id` whose entries follow `prev_index`."""
    return lambda m: (
        isinstance(m, AppendEntries) and m.dst == node_id and m.prev_index == prev_index
    )


# --- a new leader ------------------------------------------------------------------


def test_new_leader_appends_a_noop_of_its_term() -> None:
    cluster = CoreCluster(logs={node_id: log_of(1, 1) for node_id in "abc"}, term=1)
    leader = cluster.campaign("a")
    assert leader.log.entries[-1] == Entry(2, 3, EntryKind.NOOP)


# --- the consistency check on the follower -----------------------------------------


def test_follower_with_a_shorter_log_rejects_with_a_hint_past_its_last_entry() -> None:
    node = make_raft("b", hard_state=HardState(1), entries=log_of(1, 1))
    node.step(append(1, prev=(5, 1)))
    [answer] = answers(node)
    assert (answer.success, answer.index, answer.hint_index, answer.hint_term) == (False, 5, 3, 0)


def test_follower_with_a_conflicting_term_hints_the_first_index_of_that_term() -> None:
    node = make_raft("b", hard_state=HardState(2), entries=log_of(1, 2, 2, 2))
    node.step(append(3, prev=(4, 3)))
    [answer] = answers(node)
    assert (answer.success, answer.index, answer.hint_index, answer.hint_term) == (False, 4, 2, 2)


def test_stale_append_entries_are_refused_with_the_current_term() -> None:
    node = make_raft("b", hard_state=HardState(3))
    node.step(append(2, entries=log_of(2)))
    assert [(m.success, m.term) for m in answers(node)] == [(False, 3)]
    assert node.log.last_index == 0


def test_conflicting_tail_is_cut_and_replaced() -> None:
    node = make_raft("b", hard_state=HardState(3), entries=log_of(1, 1, 2, 2))
    node.step(append(3, prev=(2, 1), entries=log_of(3, start=3)))
    rd = node.ready()
    assert rd.entries == log_of(3, start=3)
    assert [e.term for e in node.log.entries] == [1, 1, 3]


def test_entries_already_present_with_the_same_term_are_kept() -> None:
    node = make_raft("b", hard_state=HardState(1), entries=log_of(1, 1, 1))
    node.step(append(1, entries=log_of(1, 1)))
    rd = node.ready()
    assert rd.entries == []
    assert node.log.last_index == 3


def test_late_older_append_entries_do_not_cut_newer_entries() -> None:
    node = make_raft("b")
    node.step(append(1, entries=log_of(1, 1, 1)))
    node.step(append(1, entries=log_of(1)))
    assert [(m.success, m.index) for m in answers(node)] == [(True, 3), (True, 1)]
    assert node.log.last_index == 3


def test_follower_commits_up_to_the_leader_commit() -> None:
    node = make_raft("b")
    node.step(append(1, entries=log_of(1, 1, 1), commit=2))
    assert node.commit == 2


def test_follower_commits_no_further_than_the_last_new_entry() -> None:
    node = make_raft("b", hard_state=HardState(3), entries=log_of(1, 1, 2, 2))
    node.step(append(3, entries=log_of(1, 1), commit=4))
    assert node.commit == 2


def test_committed_entries_are_never_handed_out_before_they_are_persisted() -> None:
    node = make_raft("b")
    node.step(append(1, entries=log_of(1, 1), commit=2))
    assert node.ready().committed == []
    node.persisted(2, 1)
    assert node.ready().committed == log_of(1, 1)


# --- back-off on the leader --------------------------------------------------------


def second_probe_to_b(cluster: CoreCluster) -> AppendEntries:
    """Elect `a`, let `b` reject its first probe, and return the probe that follows."""
    cluster.campaign("a")
    cluster.deliver(lambda m: m.dst == "b")
    cluster.ready("b")
    cluster.deliver(lambda m: m.src == "b")
    [probe] = appends_to("b", cluster.ready("a").messages)
    return probe


def test_leader_skips_a_follower_term_it_does_not_have() -> None:
    logs = {"a": log_of(1, 1, 3, 3), "b": log_of(1, 1, 2, 2, 2, 2), "c": log_of(1, 1)}
    probe = second_probe_to_b(CoreCluster(logs=logs, term=3))
    assert (probe.prev_index, probe.prev_term) == (2, 1)


def test_leader_resumes_after_its_own_last_entry_of_the_follower_term() -> None:
    logs = {"a": log_of(1, 2, 2, 2, 4), "b": log_of(1, 2, 2, 2, 2, 2, 2), "c": log_of(1)}
    probe = second_probe_to_b(CoreCluster(logs=logs, term=4))
    assert (probe.prev_index, probe.prev_term) == (4, 2)


# --- commitment on the leader ------------------------------------------------------


def old_term_entry_on_a_majority() -> CoreCluster:
    """`a` leads in term 3 and has replicated its term-2 entry at index 2 to `b`; after
    `b` rejected the first probe, the AppendEntries carrying the no-op (3) is held back."""
    logs = {"a": log_of(1, 2), "b": log_of(1), "c": log_of(1)}
    cluster = CoreCluster(config=ONE_ENTRY_PER_MESSAGE, logs=logs, term=2)
    cluster.campaign("a")
    cluster.drop(involving("c"))
    cluster.deliver()
    cluster.stabilize(lambda m: not any(e.term == 3 for e in getattr(m, "entries", ())))
    assert cluster.nodes["b"].log.last_index == 2
    return cluster


def test_leader_does_not_commit_an_old_term_entry_by_counting_replicas() -> None:
    cluster = old_term_entry_on_a_majority()
    assert cluster.nodes["a"].commit == 0


def test_leader_commits_old_term_entries_with_an_entry_of_its_term() -> None:
    cluster = old_term_entry_on_a_majority()
    cluster.stabilize(avoiding("c"))
    assert cluster.nodes["a"].commit == 3
    assert [e.index for e in cluster.applied["a"]] == [1, 2, 3]


def test_leader_counts_its_own_copy_only_once_persisted() -> None:
    cluster = CoreCluster()
    leader = cluster.elect("a")
    leader.propose([b"x"])
    cluster.ready("a", persist=False)
    cluster.deliver(lambda m: m.dst == "b")
    cluster.ready("b")
    cluster.deliver(lambda m: m.src == "b")
    assert leader.commit == 1
    cluster.persist("a")
    assert leader.commit == 2


def test_committed_entries_are_applied_on_every_node_in_order() -> None:
    cluster = CoreCluster()
    leader = cluster.elect("a")
    leader.propose([b"x", b"y"])
    cluster.stabilize()
    leader.tick()  # the followers learn the commit index at the next tick
    cluster.stabilize()
    datas = {node_id: [e.data for e in applied] for node_id, applied in cluster.applied.items()}
    assert datas == {node_id: [b"", b"x", b"y"] for node_id in "abc"}


def test_a_commit_index_alone_waits_for_the_next_append_or_tick() -> None:
    cluster = CoreCluster(config=RaftConfig(heartbeat_ticks=10))
    leader = cluster.elect("a")
    leader.tick()
    cluster.stabilize()
    [(x, _)] = leader.propose([b"x"])
    cluster.stabilize()
    assert leader.commit == x
    # no message for the commit alone: the followers still hold the one before
    assert {cluster.nodes[f].commit for f in "bc"} == {x - 1}
    [(y, _)] = leader.propose([b"y"])
    rd = cluster.ready("a")
    assert [(m.entries[0].index, m.commit) for m in appends_to("b", rd.messages)] == [(y, x)]
    cluster.stabilize()
    leader.tick()  # the tick sends the commit index that no append carried
    rd = cluster.ready("a")
    assert [(m.entries, m.commit) for m in appends_to("b", rd.messages)] == [((), y)]
    cluster.stabilize()
    assert {cluster.nodes[f].commit for f in "bc"} == {y}


# --- proposals ---------------------------------------------------------------------


def test_proposals_in_a_batch_get_consecutive_indexes_in_the_leader_term() -> None:
    leader = CoreCluster().elect("a")
    assert leader.propose([b"x", b"y", b"z"]) == [(2, 1), (3, 1), (4, 1)]


def test_proposal_on_a_follower_raises_not_leader_naming_the_leader() -> None:
    cluster = CoreCluster()
    cluster.elect("a")
    follower = cluster.nodes["b"]
    with pytest.raises(NotLeader) as raised:
        follower.propose([b"x"])
    assert raised.value.leader_id == "a"
    assert follower.log.last_index == 1


SMALL_UNCOMMITTED = RaftConfig(max_uncommitted_bytes=10)


def test_proposals_past_the_uncommitted_bytes_cap_are_refused() -> None:
    cluster = CoreCluster(config=SMALL_UNCOMMITTED)
    leader = cluster.elect("a")
    leader.propose([b"12345", b"67890"])
    with pytest.raises(TooMuchUncommitted):
        leader.propose([b"x"])
    assert leader.log.last_index == 3


def test_committed_and_applied_entries_make_room_for_proposals() -> None:
    cluster = CoreCluster(config=SMALL_UNCOMMITTED)
    leader = cluster.elect("a")
    leader.propose([b"1234567890"])
    cluster.stabilize()
    assert leader.propose([b"1234567890"]) == [(3, 1)]


def test_entries_committed_but_not_durable_on_the_leader_still_count() -> None:
    cluster = CoreCluster(config=SMALL_UNCOMMITTED)
    leader = cluster.elect("a")
    cluster.hung_disks.add("a")
    leader.propose([b"1234567890"])
    cluster.stabilize()
    assert leader.commit == 2
    with pytest.raises(TooMuchUncommitted):
        leader.propose([b"x"])


def test_a_proposal_larger_than_the_cap_is_taken_when_nothing_is_uncommitted() -> None:
    leader = CoreCluster(config=SMALL_UNCOMMITTED).elect("a")
    assert leader.propose([b"x" * 100]) == [(2, 1)]


def test_a_leader_elected_again_starts_counting_afresh() -> None:
    cluster = CoreCluster(config=RaftConfig(max_uncommitted_bytes=10, check_quorum=False))
    cluster.elect("a").propose([b"1234567890"])
    cluster.drop()  # the proposal is lost with the leadership
    cluster.elect("b", avoiding("a"))
    cluster.stabilize()
    leader = cluster.elect("a")
    assert leader.propose([b"1234567890"]) == [(4, 3)]


# --- pacing ------------------------------------------------------------------------


def test_probing_follower_gets_one_append_entries_at_a_time() -> None:
    cluster = CoreCluster(config=ONE_ENTRY_PER_MESSAGE)
    cluster.campaign("a").propose([b"x", b"y"])
    assert appends_to("b", cluster.network) != []
    assert appends_to("b", cluster.ready("a").messages) == []


def test_replicating_follower_gets_at_most_max_inflight_append_entries() -> None:
    cluster = CoreCluster(config=RaftConfig(max_batch_entries=1, max_inflight=3))
    cluster.elect("a").propose([b"1", b"2", b"3", b"4", b"5"])
    sent = appends_to("b", cluster.ready("a").messages)
    assert [m.prev_index for m in sent] == [1, 2, 3]


def test_acknowledgement_makes_room_for_the_next_append_entries() -> None:
    cluster = CoreCluster(config=RaftConfig(max_batch_entries=1, max_inflight=3))
    cluster.elect("a").propose([b"1", b"2", b"3", b"4", b"5"])
    cluster.ready("a")
    cluster.deliver(append_after("b", 1))
    cluster.ready("b")
    cluster.deliver(lambda m: m.src == "b")
    assert [m.prev_index for m in appends_to("b", cluster.ready("a").messages)] == [4]


def test_rejection_while_replicating_falls_back_to_probing() -> None:
    cluster = CoreCluster(config=ONE_ENTRY_PER_MESSAGE)
    leader = cluster.elect("a")
    leader.propose([b"x", b"y"])
    cluster.ready("a")
    cluster.drop(append_after("b", 1))
    cluster.deliver(lambda m: m.dst == "b")
    cluster.ready("b")
    cluster.deliver(lambda m: m.src == "b")
    assert progress_of(leader, "b").state is ReplicationState.PROBE
    assert [m.prev_index for m in appends_to("b", cluster.ready("a").messages)] == [1]


def test_lost_append_entries_are_sent_again_after_a_heartbeat_round() -> None:
    cluster = CoreCluster()
    leader = cluster.elect("a")
    leader.propose([b"x"])
    cluster.stabilize(avoiding("b"))
    cluster.drop(involving("b"))
    leader.tick()
    cluster.stabilize()
    assert cluster.nodes["b"].log.last_index == 2


def test_heartbeat_round_during_a_follower_write_resends_nothing() -> None:
    # the heartbeat answer overtakes the acknowledgement, which waits for b's disk
    cluster = CoreCluster()
    leader = cluster.elect("a")
    leader.propose([b"x"])
    cluster.ready("a")
    cluster.deliver(lambda m: m.dst == "b")
    cluster.ready("b", persist=False)
    leader.tick()
    cluster.ready("a")
    cluster.deliver(lambda m: m.dst == "b")
    cluster.ready("b", persist=False)
    cluster.deliver(lambda m: isinstance(m, HeartbeatResponse) and m.src == "b")
    sent = appends_to("b", cluster.ready("a").messages)
    cluster.persist("b")
    cluster.deliver(lambda m: m.src == "b")
    sent += appends_to("b", cluster.ready("a").messages)
    assert [m.entries for m in sent if m.entries] == []
    assert progress_of(leader, "b").state is ReplicationState.REPLICATE
    assert progress_of(leader, "b").match == 2


def test_a_follower_that_never_acknowledges_gets_no_more_than_its_window() -> None:
    cluster = CoreCluster(config=RaftConfig(max_batch_entries=1, max_inflight=2))
    leader = cluster.elect("a")
    cluster.hung_disks.add("b")  # b answers heartbeats, never AppendEntries
    delivered: list[Message] = []
    for k in range(10):
        leader.propose([b"%d" % k])
        leader.tick()
        delivered += cluster.stabilize()
    sent_to_b = [e.index for m in appends_to("b", delivered) for e in m.entries]
    assert max(sent_to_b) == 3  # the no-op was acknowledged before; then a window of two
    assert leader.commit == 11


def exchange(cluster: CoreCluster, follower: str) -> None:
    """Deliver what is in flight to `follower`, its answers back to `a`, and take the
    Readies on the way."""
    cluster.deliver(lambda m: m.dst == follower)
    cluster.ready(follower)
    cluster.deliver(lambda m: m.src == follower)
    cluster.ready("a")


def test_lost_acknowledgement_does_not_stall_commitment() -> None:
    cluster = CoreCluster()
    leader = cluster.elect("a")
    leader.propose([b"x"])
    cluster.stabilize(lambda m: avoiding("c")(m) and m.src != "b")
    assert cluster.drop(lambda m: m.src == "b")
    for _ in range(3):
        leader.tick()
        cluster.stabilize(avoiding("c"))
    assert leader.commit == 2


def test_lost_acknowledgement_does_not_block_a_full_window() -> None:
    cluster = CoreCluster(config=RaftConfig(max_inflight=1))
    leader = cluster.elect("a")
    leader.propose([b"x"])
    cluster.stabilize(avoiding("b"))
    exchange(cluster, "b")  # b acknowledges x
    leader.tick()
    cluster.ready("a")  # and is sent the new commit index at the tick
    cluster.deliver(lambda m: m.dst == "b")
    cluster.ready("b")
    assert cluster.drop(lambda m: m.src == "b")
    leader.propose([b"y"])
    leader.tick()
    cluster.stabilize()
    assert cluster.nodes["b"].log.last_index == 3


# --- who waits for the disk --------------------------------------------------------


def test_leader_append_entries_go_out_before_its_own_write() -> None:
    cluster = CoreCluster()
    cluster.elect("a").propose([b"x"])
    rd = cluster.nodes["a"].ready()
    assert [e.index for e in rd.entries] == [2]
    assert {m.dst for m in appends_to("b", rd.messages) + appends_to("c", rd.messages)} == {
        "b",
        "c",
    }
    assert rd.messages_after_persist == []


def test_leader_heartbeats_go_out_at_once() -> None:
    cluster = CoreCluster()
    leader = cluster.elect("a")
    leader.tick()
    rd = leader.ready()
    assert {m.dst for m in rd.messages if isinstance(m, Heartbeat)} == {"b", "c"}
    assert rd.messages_after_persist == []


def test_follower_acknowledgement_waits_for_its_write() -> None:
    node = make_raft("b")
    node.step(append(1, entries=log_of(1)))
    rd = node.ready()
    assert rd.messages == []
    assert [type(m) for m in rd.messages_after_persist] == [AppendEntriesResponse]


def test_follower_heartbeat_answer_goes_out_at_once() -> None:
    node = make_raft("b")
    node.step(Heartbeat(src="a", dst="b", term=1, commit=0, seq=1))
    rd = node.ready()
    assert rd.hard_state is not None, "the new term is still to be written"
    assert [type(m) for m in rd.messages] == [HeartbeatResponse]
    assert rd.messages_after_persist == []


# --- restart -----------------------------------------------------------------------


def test_restart_keeps_term_vote_and_log() -> None:
    cluster = CoreCluster()
    cluster.elect("a").propose([b"x"])
    cluster.stabilize()
    before = cluster.nodes["b"]
    after = cluster.restart("b")
    assert (after.term, after.vote, after.log.entries) == (1, "a", before.log.entries)
    rd = after.ready()
    assert (rd.hard_state, rd.entries) == (None, [])


def test_a_follower_that_lost_acknowledged_entries_is_reported_and_repaired() -> None:
    """Only a disk that lost fsynced writes makes a follower's log shorter than the
    leader's `match` for it: the leader must say so and replicate to it again, rather
    than probe the same index forever."""
    cluster = CoreCluster()
    leader = cluster.elect("a")
    leader.propose([b"x", b"y", b"z"])
    cluster.stabilize()
    assert progress_of(leader, "b").match == 4
    del cluster.disks["b"].entries[2:]  # the disk kept entries 1 and 2 only
    cluster.restart("b")
    leader.propose([b"w"])
    for _ in range(3):
        leader.tick()
        cluster.stabilize()
    assert cluster.nodes["b"].log.entries == leader.log.entries
    assert progress_of(leader, "b").match == 5
    assert cluster.lost_entries["a"] == [FollowerLostEntries("b", match=4, rejected=4)]


# --- snapshots ---------------------------------------------------------------------

SNAPSHOT = SnapshotMeta(3, 1, members())


def compacted_cluster() -> CoreCluster:
    """`a` leads; `c` missed entries 2 and 3, which `a` then compacted away."""
    cluster = CoreCluster()
    leader = cluster.elect("a")
    leader.propose([b"x", b"y"])
    cluster.stabilize(avoiding("c"))
    cluster.drop(involving("c"))
    leader.compact(3)
    return cluster


def test_compact_drops_the_entries_up_to_the_index() -> None:
    leader = compacted_cluster().nodes["a"]
    assert (leader.log.snapshot_index, leader.log.snapshot_term) == (3, 1)
    assert leader.log.entries == []


def test_follower_behind_the_snapshot_gets_install_snapshot() -> None:
    cluster = compacted_cluster()
    cluster.nodes["a"].tick()
    delivered = cluster.stabilize()
    assert InstallSnapshot(src="a", dst="c", term=1, meta=SNAPSHOT) in delivered


def test_follower_installs_the_snapshot_and_answers() -> None:
    cluster = compacted_cluster()
    cluster.nodes["a"].tick()
    delivered = cluster.stabilize()
    follower = cluster.nodes["c"]
    assert cluster.disks["c"].snapshot == SNAPSHOT
    assert (follower.log.snapshot_index, follower.commit) == (3, 3)
    assert AppendEntriesResponse(src="c", dst="a", term=1, success=True, index=3) in delivered


def test_replication_resumes_after_the_snapshot() -> None:
    cluster = compacted_cluster()
    leader = cluster.nodes["a"]
    leader.tick()
    cluster.stabilize()
    leader.propose([b"z"])
    cluster.stabilize()
    leader.tick()
    cluster.stabilize()
    assert [e.data for e in cluster.applied["c"]] == [b"", b"z"]


def test_failed_snapshot_is_sent_again() -> None:
    cluster = compacted_cluster()
    leader = cluster.nodes["a"]
    leader.tick()
    cluster.stabilize(lambda m: not isinstance(m, InstallSnapshot))
    assert cluster.drop(lambda m: isinstance(m, InstallSnapshot))
    leader.report_snapshot("c", delivered=False)
    cluster.stabilize()
    assert cluster.disks["c"].snapshot == SNAPSHOT


def test_replication_resumes_when_the_answer_to_a_snapshot_is_lost() -> None:
    cluster = compacted_cluster()
    leader = cluster.nodes["a"]
    leader.tick()
    cluster.stabilize(lambda m: not (isinstance(m, AppendEntriesResponse) and m.src == "c"))
    assert cluster.drop(involving("c"))
    leader.report_snapshot("c", delivered=True)
    leader.propose([b"z"])
    leader.tick()
    cluster.stabilize()
    assert [e.data for e in cluster.applied["c"]] == [b"", b"z"]
