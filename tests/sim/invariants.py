"""The properties the simulation checks across nodes and their disks: after every step
(`Invariants`: the checker's cluster-wide properties on every node that had input, and
that every newly committed entry survives any election), and where a node acknowledges,
cuts its disk's log or serves a read (`check_ack`, `check_cut`, `check_unexpired`)."""

from __future__ import annotations

from collections.abc import Callable

from sim.cluster import Cluster
from sim.nodes import SimNode
from trioraft.core.membership import Configurations
from trioraft.core.messages import AppendEntriesResponse, Entry, Members, NodeId
from trioraft.core.raft import Raft, Role


class Invariants:
    def __init__(self, cluster: Cluster, on_new_leader: Callable[[NodeId], None]) -> None:
        """Checks of `cluster`; `on_new_leader` hears of each leader as it is first seen."""
        self.cluster = cluster
        self.on_new_leader = on_new_leader
        #: committed indexes up to here were checked to survive any election
        self.survival_checked = 0

    def check_step(self) -> None:
        cluster = self.cluster
        checker = cluster.checker
        fresh: list[int] = []
        for node in cluster.nodes:
            if node.dirty and node.core is not None:
                checker.check_node(node.id, node.core, fresh)
        for node in cluster.nodes:
            core = node.core
            if core is not None and core.role is Role.LEADER and (node.dirty or fresh):
                if core.term not in checker.leaders:
                    self._new_leader(node.id, core.term)
                checker.check_leader(node.id, core, fresh)
        for node in cluster.nodes:
            if node.dirty and node.core is not None:
                checker.check_following(node.id, node.core)
            node.dirty = False
        committed = checker.committed
        for index in range(self.survival_checked + 1, len(committed)):
            term = committed[index]
            if term is not None:
                self._check_survives(index, term)
        self.survival_checked = len(committed) - 1
        cluster.report.max_commit = len(committed) - 1

    def _new_leader(self, node_id: NodeId, term: int) -> None:
        report = self.cluster.report
        self.cluster.event(f"{node_id} leads term {term}")
        report.max_term = max(report.max_term, term)
        self.on_new_leader(node_id)

    def _check_survives(self, index: int, term: int) -> None:
        """A newly committed entry must survive any election: every voter whose log lacks
        it (in memory or on disk) is less up to date than the durable logs of a majority
        of the configuration its log holds, so it can never win (Raft paper 5.4; Figure 8
        shows an entry on a majority that does not survive)."""
        nodes = self.cluster.nodes
        durable = {n.id: (n.disk.term(n.disk.last_index) or 0, n.disk.last_index) for n in nodes}
        for node in nodes:
            logs = [(node.disk.base, node.disk.term, node.disk.last_index, disk_members(node))]
            if node.core is not None:
                log = node.core.log
                logs.append((log.snapshot_index, log.term, log.last_index, node.core.members))
            for base, term_at, last_index, members in logs:
                if index <= base or term_at(index) == term or node.id not in members.voters:
                    continue
                last = (term_at(last_index) or 0, last_index)
                supporters = sorted(v for v in members.voters if last >= durable[v])
                if len(supporters) >= members.quorum():
                    self.cluster.fail(
                        "commit survival",
                        f"({index}, {term}) is committed, but {node.id} could still be "
                        f"elected without it: its log ends at {last}, as up to date as the "
                        f"durable logs of {supporters}",
                    )


def disk_members(node: SimNode) -> Members:
    """The configuration a core restarted from the node's disk would be in."""
    disk = node.disk
    configs = Configurations(disk.snapshot.members if disk.snapshot else node.bootstrap)
    configs.appended(disk.entries)
    return configs.current


def check_ack(cluster: Cluster, node_id: NodeId, core: Raft, m: AppendEntriesResponse) -> None:
    """A successful answer in term t at index i says the log holds, at i, the entry the
    leader of t has there (so, by log matching, the leader's whole log up to i)."""
    leader_id = cluster.checker.leaders.get(m.term)
    leader = cluster.by_id[leader_id].core if leader_id is not None else None
    if leader is None or leader.term != m.term or not leader.is_leader:
        return
    theirs, ours = leader.log.term(m.index), core.log.term(m.index)
    if theirs is not None and ours is not None and theirs != ours:
        cluster.fail(
            "acknowledgement",
            f"{node_id} acknowledges {m.index} in term {m.term} holding term {ours} there; "
            f"the leader holds term {theirs}",
        )


def check_cut(
    cluster: Cluster, node_id: NodeId, removed: list[Entry], written: list[Entry]
) -> None:
    """Entries leave a disk's log only when a leader's conflicting entries replace them
    or a snapshot that does not match the log does: never a committed one."""
    committed = cluster.checker.committed
    rewritten = {(e.index, e.term) for e in written}
    for entry in removed:
        index = entry.index
        stays = (index, entry.term) in rewritten or index >= len(committed)
        if not stays and committed[index] == entry.term:
            cluster.fail(
                "committed entries stay",
                f"{node_id} cuts the committed entry ({index}, {entry.term}) from its disk",
            )


def check_unexpired(
    cluster: Cluster, node_id: NodeId, key: bytes, value: object, deadline: int, served_at: int
) -> None:
    """A read served at `served_at` (the serving leader's time) never returns a key
    whose deadline had passed by then."""
    if value is not None and 0 < deadline <= served_at:
        cluster.fail(
            "expiry",
            f"{node_id} answers {value!r} for {key!r} at {served_at}, past its deadline {deadline}",
        )
