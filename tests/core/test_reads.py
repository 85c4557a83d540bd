"""ReadIndex: linearizable reads confirmed by a heartbeat round instead of the log."""

from __future__ import annotations

import pytest
from harness.core_cluster import CoreCluster, make_raft, progress_of, run_out_timeout

from trioraft.core.errors import NotLeader
from trioraft.core.leadership import ReadState
from trioraft.core.messages import AppendEntriesResponse, Heartbeat, HeartbeatResponse, Message
from trioraft.core.raft import Raft


def is_heartbeat_traffic(m: Message) -> bool:
    return isinstance(m, Heartbeat | HeartbeatResponse)


def depose(leader: Raft) -> None:
    """A follower answers with a higher term."""
    leader.step(
        AppendEntriesResponse(src="b", dst=leader.id, term=leader.term + 1, success=False, index=0)
    )


def test_read_index_on_a_follower_raises_not_leader() -> None:
    cluster = CoreCluster()
    cluster.elect("a")
    with pytest.raises(NotLeader) as raised:
        cluster.nodes["b"].read_index("r")
    assert raised.value.leader_id == "a"


def test_read_waits_until_the_leader_has_committed_an_entry_of_its_term() -> None:
    cluster = CoreCluster()
    leader = cluster.campaign("a")
    leader.read_index("r")
    leader.tick()
    cluster.stabilize(is_heartbeat_traffic)
    assert cluster.reads["a"] == []
    cluster.stabilize()
    assert cluster.reads["a"] == [ReadState("r", 1)]


def test_read_index_is_the_commit_index_when_the_read_is_registered() -> None:
    cluster = CoreCluster()
    leader = cluster.elect("a")
    leader.read_index("r")
    leader.propose([b"x"])
    cluster.stabilize()
    assert leader.commit == 2
    assert cluster.reads["a"] == [ReadState("r", 1)]


def test_heartbeat_now_sends_a_round_in_the_next_ready_which_followers_echo() -> None:
    cluster = CoreCluster()
    leader = cluster.elect("a")
    cluster.stabilize()
    round_ = leader.heartbeat_now()
    sent = [m for m in cluster.ready("a").messages if isinstance(m, Heartbeat)]
    assert sorted((m.dst, m.seq) for m in sent) == [("b", round_), ("c", round_)]
    cluster.stabilize()
    assert all(progress_of(leader, peer).acked_seq == round_ for peer in ("b", "c"))
    with pytest.raises(NotLeader):
        cluster.nodes["b"].heartbeat_now()


def test_read_is_released_once_a_majority_answered_a_heartbeat_round() -> None:
    cluster = CoreCluster()
    cluster.elect("a").read_index("r")
    assert cluster.ready("a").reads == []
    cluster.deliver(lambda m: m.dst == "b")
    cluster.ready("b")
    cluster.deliver(lambda m: m.src == "b")
    assert cluster.ready("a").reads == [ReadState("r", 1)]


def test_answers_to_a_round_sent_before_the_read_do_not_release_it() -> None:
    cluster = CoreCluster()
    leader = cluster.elect("a")
    leader.tick()
    cluster.ready("a")
    leader.read_index("r")
    cluster.deliver()
    cluster.ready("b")
    cluster.ready("c")
    cluster.deliver()
    assert leader.ready().reads == []


def test_many_reads_share_one_heartbeat_round() -> None:
    cluster = CoreCluster()
    leader = cluster.elect("a")
    for ctx in ("r1", "r2", "r3"):
        leader.read_index(ctx)
    rd = cluster.ready("a")
    assert sorted(m.dst for m in rd.messages if isinstance(m, Heartbeat)) == ["b", "c"]
    cluster.stabilize()
    assert [read.ctx for read in cluster.reads["a"]] == ["r1", "r2", "r3"]


def test_leader_stepping_down_drops_its_pending_reads() -> None:
    cluster = CoreCluster()
    leader = cluster.elect("a")
    leader.read_index("r")
    depose(leader)
    rd = leader.ready()
    assert (rd.reads, rd.dropped_reads) == ([], ["r"])


def test_leader_stepping_down_drops_reads_waiting_for_its_first_commit() -> None:
    cluster = CoreCluster()
    leader = cluster.campaign("a")
    leader.read_index("r")
    depose(leader)
    assert leader.ready().dropped_reads == ["r"]


def test_single_node_cluster_serves_reads_alone() -> None:
    cluster = CoreCluster(ids=("a",))
    cluster.elect("a").read_index("r")
    assert cluster.ready("a").reads == [ReadState("r", 1)]


def test_single_node_read_waits_for_its_first_commit() -> None:
    node = make_raft("a", ids=("a",))
    run_out_timeout(node)
    node.read_index("r")
    assert node.ready().reads == []
    node.persisted(1, 1)
    assert node.ready().reads == [ReadState("r", 1)]
