"""Membership changes on real processes, with the command line: a fourth node is added
(`trioraft member add`, then started with an empty data dir), caught up and promoted,
then the leader is removed while a client writes through a follower; no acknowledged
write is lost. Prints the time from `member add` to promotion and the longest write gap
while the leader removes itself. And a member whose data dir was wiped is replaced under a
new id while a client writes through the leader. And a node configured with `join` asks
(a client address, then a peer address) to be added, becomes a voter and restarts. And
the time from `member add` to promotion with a million keys in the leader's snapshot."""

from __future__ import annotations

import os
import shutil
import time

import attrs
import pytest
from harness.big_keyspace import msets
from harness.membership import CHANGE_SECONDS, start_founders, wait_voter
from harness.polling import wait_until
from harness.ports import HOST
from harness.process_cluster import ProcessCluster
from harness.process_node import Node, run_cli
from harness.resp_client import Error
from harness.writers import BackgroundWriter, write_all

from trioraft.ops.config import load_config, render_config
from trioraft.transport.addresses import parse_address

pytestmark = pytest.mark.processes


def start_three_of_four(cluster: ProcessCluster) -> tuple[Node, list[Node], Node]:
    """Start n1..n3 as a cluster of three; return n4, the three founders and their leader."""
    founders = start_founders(cluster, 3)
    return cluster["n4"], founders, cluster.wait_for_leader()


def add_and_wait_promoted(via: Node, newcomer: Node, timeout: float = CHANGE_SECONDS) -> None:
    """`trioraft member add` the newcomer through `via`, start it on its empty data dir and
    wait until the leader has promoted it to voter."""
    address = f"{HOST}:{newcomer.peer_port}", f"{HOST}:{newcomer.client_port}"
    assert member(via, "add", newcomer.id, *address).strip() == "OK"
    newcomer.start()
    newcomer.wait_serving()
    wait_voter([via], newcomer.id, timeout)
    # its own config lists it among the voters; the running cluster told it otherwise
    assert "the running cluster has this node as a learner" in newcomer.log_text()


def voters_listed(via: Node) -> list[tuple[str, str]]:
    """(id, role) of each row of `trioraft member list` asked of `via`."""
    rows = [line.split() for line in member(via, "list").splitlines()[1:]]
    return [(row[0], row[1]) for row in rows]


def member(node: Node, *args: str) -> str:
    result = run_cli("member", *args[:1], f"{HOST}:{node.client_port}", *args[1:])
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_grow_to_four_then_remove_the_leader_while_a_client_writes() -> None:
    with ProcessCluster.create(4) as cluster:
        newcomer, founders, leader = start_three_of_four(cluster)
        follower = next(node for node in founders if node is not leader)
        # a write in flight while the leader hands over may get -TIMEOUT (outcome unknown):
        # the follower that forwarded it stops waiting once it learns of the new leader
        with BackgroundWriter(follower.client_port, "w:", unknown_ok=True) as writer:
            writer.wait_acked(20)
            asked = time.monotonic()
            add_and_wait_promoted(follower, newcomer)
            promoted = time.monotonic() - asked
            writer.wait_acked(len(writer.acked) + 20)
            gap_before = writer.longest_gap
            assert member(follower, "remove", leader.id).strip() == "OK"
            writer.wait_acked(len(writer.acked) + 20)
        assert writer.failure is None, writer.failure
        print(
            f"\nmember add to promotion: {promoted:.2f} s; longest write gap before the "
            f"removal {gap_before:.3f} s, with the leader removing itself "
            f"{writer.longest_gap:.3f} s; outcome unknown for {len(writer.unknown)} writes"
        )
        expected = sorted({"n1", "n2", "n3", "n4"} - {leader.id})
        assert voters_listed(follower) == [(m, "voter") for m in expected]
        last = writer.acked[-1]
        assert newcomer.call("GET", f"w:{last}") == str(last).encode()
        assert leader.info()["membership"] == "removed"
        assert "was removed from the cluster" in leader.log_text()


@pytest.mark.slow
def test_replace_a_member_whose_data_dir_was_wiped_while_a_client_writes() -> None:
    with ProcessCluster.create(4) as cluster:
        newcomer, founders, leader = start_three_of_four(cluster)
        victim = next(node for node in founders if node is not leader)
        with BackgroundWriter(leader.client_port, "w:") as writer:
            writer.wait_acked(20)
            victim.kill()
            shutil.rmtree(victim.data_dir)
            assert member(leader, "remove", victim.id).strip() == "OK"
            add_and_wait_promoted(leader, newcomer)
            writer.wait_acked(len(writer.acked) + 20)
        assert writer.failure is None, writer.failure
        expected = sorted({"n1", "n2", "n3", "n4"} - {victim.id})
        assert voters_listed(leader) == [(m, "voter") for m in expected]
        last = writer.acked[-1]
        assert newcomer.call("GET", f"w:{last}") == str(last).encode()


def configure_to_join(newcomer: Node, *addresses: str) -> None:
    """Rewrite the newcomer's config the join way: it lists only itself, and asks the
    members at `addresses` to add it."""
    config = load_config(newcomer.config_path)
    me = tuple(m for m in config.members if m.id == newcomer.id)
    joining = tuple(parse_address(address) for address in addresses)
    newcomer.config_path.write_text(render_config(attrs.evolve(config, members=me, join=joining)))


@pytest.mark.slow
def test_a_node_with_join_is_added_through_a_follower_becomes_a_voter_and_restarts() -> None:
    with ProcessCluster.create(4) as cluster:
        newcomer, founders, leader = start_three_of_four(cluster)
        follower = next(node for node in founders if node is not leader)
        # a client address first (its members' peer addresses are asked for), then a peer one
        configure_to_join(newcomer, f"{HOST}:{follower.client_port}", f"{HOST}:{leader.peer_port}")
        newcomer.start()
        newcomer.wait_serving()
        promoted = (newcomer.id, "voter")
        wait_until(lambda: promoted in voters_listed(leader), 60.0, f"{newcomer.id} promoted")
        assert newcomer.call("SET", "through", "n4") == "OK"
        assert leader.call("GET", "through") == b"n4"
        assert newcomer.info()["membership"] == "voter"
        assert "added to the cluster as a learner" in newcomer.log_text()
        # restarted, it finds its peers in its data dir (its file lists only itself)
        newcomer.restart()
        assert newcomer.call("SET", "again", "n4") == "OK"
        assert "join is ignored" in newcomer.log_text()


#: keys in the leader's snapshot when the newcomer is added
MILLION = 1_000_000
#: how long loading them, and then the newcomer's promotion, may take
MILLION_SECONDS = 600.0


@pytest.mark.slow
def test_a_member_added_beside_a_million_keys_is_promoted() -> None:
    with ProcessCluster.create(4) as cluster:
        newcomer, _, leader = start_three_of_four(cluster)
        write_all(leader, msets(MILLION), depth=16, timeout=MILLION_SECONDS)
        reply = leader.call("RAFT.SNAPSHOT", timeout=MILLION_SECONDS)
        assert isinstance(reply, str) and reply.startswith("OK"), reply
        asked = time.monotonic()
        add_and_wait_promoted(leader, newcomer, MILLION_SECONDS)
        promoted = time.monotonic() - asked
        wait_until(
            lambda: newcomer.call("DBSIZE", timeout=MILLION_SECONDS) == MILLION,
            MILLION_SECONDS,
            f"{newcomer.id} holds every key",
        )
        load = ", ".join(f"{figure:.1f}" for figure in os.getloadavg())
        print(f"\nmember add to promotion, {MILLION} keys: {promoted:.1f} s (load {load})")


@pytest.mark.slow
def test_a_node_removed_while_down_learns_it_from_members_that_forgot_it_and_says_so() -> None:
    with ProcessCluster.create(3) as cluster:
        for node in cluster.nodes:
            node.start()
        leader = cluster.wait_for_leader()
        gone = next(node for node in cluster.nodes if node is not leader)
        gone.kill()
        assert member(leader, "remove", gone.id).strip() == "OK"
        # the others restart with files that no longer list it: they refuse its link
        for node in cluster.nodes:
            if node is not gone:
                config = load_config(node.config_path)
                members = tuple(m for m in config.members if m.id != gone.id)
                node.config_path.write_text(render_config(attrs.evolve(config, members=members)))
                node.restart()
        leader = cluster.wait_for_leader()
        gone.start()
        gone.wait_serving()
        wait_until(
            lambda: "this node was removed from the cluster" in gone.log_text(),
            60.0,
            f"{gone.id} says it was removed",
        )
        reply = gone.call("SET", "k", "v")
        assert isinstance(reply, Error), reply
        assert reply.text.startswith("CLUSTERDOWN this node was removed from the cluster; use a")
        assert leader.call("SET", "k", "v") == "OK"
        assert gone.info()["membership"] == "removed"
        assert "unknown node id" in leader.log_text()  # it was asked as a guest
