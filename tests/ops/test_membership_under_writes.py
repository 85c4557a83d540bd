"""Membership changes on real processes while the fault runs' clients work (reads,
writes, compare-and-set, INCR, keys with deadlines, transfers between accounts) through
every member; each history is judged as a fault run's is: linearizable, no acknowledged
write lost, the final reads of every member agreeing.

- a cluster grows from 3 to 5 members and shrinks back to 3, the leader removed first;
- every member of a 3-node cluster is replaced in turn by a new node on a new address
  with an empty data dir (remove the old one, add the new one, wait for its promotion);
  the longest time without an acknowledged write is printed;
- a member is added while the leader is cut off from every other node (an iptables
  partition between network namespaces), and the partition heals.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.membership import (
    add_member,
    fresh_node,
    member_roles,
    remove_member,
    start_founders,
    wait_voter,
)
from harness.polling import wait_until
from harness.process_cluster import ELECTION_SECONDS, ProcessCluster
from harness.process_node import Node
from nemesis.background import BackgroundWorkload, Judgement
from nemesis.hosts import NetnsHosts, build_cluster, netns_problem
from nemesis.workload import targets_of

from trioraft.ops.config import RaftSection

pytestmark = [pytest.mark.processes, pytest.mark.slow]

#: acknowledged writes to wait for between two steps, so each change meets traffic
BETWEEN_STEPS = 20


def join(members: list[Node], newcomer: Node, clients: BackgroundWorkload) -> None:
    """Add `newcomer`, start it on its empty data dir, wait for its promotion; then the
    clients use it too."""
    add_member(members, newcomer)
    newcomer.start()
    wait_voter(members, newcomer.id)
    members.append(newcomer)
    clients.retarget(targets_of(members))
    clients.wait_more(BETWEEN_STEPS)


def leave(members: list[Node], leaving: Node, clients: BackgroundWorkload) -> None:
    """The clients stop using `leaving`; remove it, stop it and delete its data dir."""
    members.remove(leaving)
    clients.retarget(targets_of(members))
    remove_member(members, leaving.id)
    leaving.kill()
    shutil.rmtree(leaving.data_dir)
    clients.wait_more(BETWEEN_STEPS)


def judged(clients: BackgroundWorkload, members: list[Node]) -> Judgement:
    judgement = clients.finish(targets_of(members))
    assert judgement.passed, judgement.explain()
    assert member_roles(members) == {node.id: "voter" for node in members}
    return judgement


def test_grow_three_to_five_and_shrink_back_while_clients_write() -> None:
    with ProcessCluster.create(5) as cluster:
        members = start_founders(cluster, 3)
        cluster.wait_for_leader()
        with BackgroundWorkload(targets_of(members), seed=1) as clients:
            clients.wait_acknowledged(BETWEEN_STEPS)
            for newcomer in cluster.nodes[3:]:
                join(members, newcomer, clients)
            leave(members, cluster.wait_for_leader(), clients)
            leave(members, members[0], clients)  # one of the founders left
            judgement = judged(clients, members)
        print(f"\n{judgement.result.explain()}")


def test_replace_every_member_on_a_new_address_while_clients_write() -> None:
    with ProcessCluster.create(3) as cluster:
        cluster.start_all()
        cluster.wait_for_leader()
        members = list(cluster.nodes)
        with BackgroundWorkload(targets_of(members), seed=2) as clients:
            clients.wait_acknowledged(BETWEEN_STEPS)
            began = time.monotonic()
            for number, old in enumerate(list(members), start=len(members) + 1):
                leave(members, old, clients)
                newcomer = fresh_node(old, f"n{number}", members, cluster.root)
                cluster.nodes.append(newcomer)
                join(members, newcomer, clients)
            ended = time.monotonic()
            judgement = judged(clients, members)
        gap = judgement.longest_write_gap(began, ended)
        print(
            f"\n{judgement.result.explain()}; rolling replacement of 3 members took "
            f"{ended - began:.1f} s, longest time without an acknowledged write {gap:.3f} s"
        )


@pytest.fixture
def namespaced(tmp_path: Path) -> Iterator[tuple[NetnsHosts, ProcessCluster]]:
    """Four nodes, each in a network namespace of its own (closed, also on failure)."""
    problem = netns_problem()
    if problem is not None:
        pytest.skip(problem)
    with (
        NetnsHosts(["n1", "n2", "n3", "n4"]) as hosts,
        build_cluster(hosts, tmp_path, RaftSection()) as cluster,
    ):
        yield hosts, cluster


def test_add_a_member_while_the_leader_is_cut_off(
    namespaced: tuple[NetnsHosts, ProcessCluster],
) -> None:
    hosts, cluster = namespaced
    founders = start_founders(cluster, 3)
    newcomer = cluster["n4"]
    old_leader = cluster.wait_for_leader()
    majority = [node for node in founders if node is not old_leader]
    with BackgroundWorkload(targets_of(founders), seed=3) as clients:
        clients.wait_acknowledged(BETWEEN_STEPS)
        hosts.cut(frozenset({old_leader.id, node.id}) for node in cluster.nodes)
        try:
            new_leader = wait_until(
                lambda: leader_of(majority), ELECTION_SECONDS, "a leader of the majority"
            )
            clients.wait_more(BETWEEN_STEPS)
            join(majority, newcomer, clients)
        finally:
            hosts.heal()
        members = [*founders, newcomer]
        clients.retarget(targets_of(members))
        wait_until(
            lambda: old_leader.info()["leader_id"] == new_leader.id,
            ELECTION_SECONDS,
            f"{old_leader.id} follows {new_leader.id} once healed",
        )
        cluster.wait_converged()
        clients.wait_more(BETWEEN_STEPS)
        judged(clients, members)


def leader_of(nodes: list[Node]) -> Node | None:
    """The node of `nodes` that leads and that every other one of them follows."""
    views = {node.id: node.info() for node in nodes}
    leaders = {view["leader_id"] for view in views.values()}
    if len(leaders) != 1:
        return None
    leader = next((node for node in nodes if node.id in leaders), None)
    return leader if leader is not None and views[leader.id]["role"] == "leader" else None
