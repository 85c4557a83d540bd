"""The faults of a simulated run (`Faults`): the seeded schedule of the run's profile --
partitions (symmetric, one-way, partial connectivity) and their healing, crashes and
restarts (some of a leader just elected), leadership transfers, membership changes asked of
the leader (some right after it is elected, some followed by cutting it off), wall clock
jumps -- and the same actions on demand for the named scenarios; then healing for good."""

from __future__ import annotations

import random

import attrs

from sim.cluster import Cluster
from sim.host import Host
from sim.network import Network
from sim.plans import MAX_MEMBERS, MIN_VOTERS
from trioraft.core.errors import ChangeNotAllowedYet, InvalidChange, TransferInProgress
from trioraft.core.membership import ChangeKind, MemberChange
from trioraft.core.messages import MemberAddress, Members, NodeId


class Faults:
    def __init__(
        self,
        cluster: Cluster,
        network: Network,
        host: Host,
        rng: random.Random,
        member_rng: random.Random,
        clock_rng: random.Random,
    ) -> None:
        """Faults in `cluster`; `rng` draws partitions, crashes and transfers, `member_rng`
        membership changes, `clock_rng` clock jumps."""
        self.cluster = cluster
        self.network = network
        self.host = host
        self.rng = rng
        self.member_rng = member_rng
        self.clock_rng = clock_rng
        self.partition_until: int | None = None
        #: node -> the step a fault will crash it at
        self.doomed: dict[NodeId, int] = {}

    def inject(self) -> None:
        """The faults the seeded schedule has for this step."""
        cluster, p, r = self.cluster, self.cluster.profile, self.rng
        now = cluster.now
        if self.partition_until is not None and now >= self.partition_until:
            self.heal_partition()
        if p.partition_every and not self.network.blocked and r.random() * p.partition_every < 1:
            self._random_partition()
        if p.crash_every and r.random() * p.crash_every < 1:
            up = [n.id for n in cluster.nodes if n.core is not None]
            leader = cluster.leader()
            if leader is not None and r.random() < 0.4:
                self._crash_fault(leader)
            elif up:
                self._crash_fault(r.choice(up))
        for node_id, when in list(self.doomed.items()):
            if when <= now:
                del self.doomed[node_id]
                self._crash_fault(node_id)
        if p.member_every and self.member_rng.random() * p.member_every < 1:
            leader = cluster.leader()
            if leader is not None:
                self._change_membership(leader)
        if p.transfer_every and r.random() * p.transfer_every < 1:
            leader = cluster.leader()
            if leader is not None:
                target = r.choice([n.id for n in cluster.nodes if n.id != leader])
                self.transfer(leader, target)
        if p.clock_jump_every and self.clock_rng.random() * p.clock_jump_every < 1:
            self._jump_clock()

    def on_new_leader(self, node_id: NodeId) -> None:
        """A leader was just elected: in some profiles it is doomed to crash soon, or asked
        for a membership change at once."""
        cluster, p = self.cluster, self.cluster.profile
        r, kill = self.rng, p.kill_new_leader
        if cluster.faults and kill and r.random() < kill:
            self.doomed[node_id] = cluster.now + p.kill_after + r.randrange(p.kill_within)
        eager = p.member_on_election
        if cluster.faults and eager and self.member_rng.random() < eager:
            self._change_membership(node_id)

    def heal(self) -> None:
        """End every fault for good: links, crashed nodes, a lossy network."""
        cluster = self.cluster
        cluster.faults = False
        self.doomed.clear()
        self.heal_partition()
        for node in cluster.nodes:
            if node.core is None:
                self.host.restart(node.id)
        cluster.profile = attrs.evolve(
            cluster.profile, drop=0.0, duplicate=0.0, detour=0.0, stale_snapshots=0.0
        )
        cluster.event("everything heals")

    # --- partitions ------------------------------------------------------------------------

    def _random_partition(self) -> None:
        r = self.rng
        ids = [n.id for n in self.cluster.nodes]
        r.shuffle(ids)
        kind = r.choice(self.cluster.profile.partition_kinds)
        leader = self.cluster.leader()
        if kind == "leader" and leader is not None:
            ids.remove(leader)
            ids.insert(0, leader)
        links: set[tuple[NodeId, NodeId]] = set()
        if kind in ("split", "leader"):
            cut = r.randint(1, len(ids) // 2)
            links = {(a, b) for a in ids[:cut] for b in ids[cut:]}
            links |= {(b, a) for a, b in links}
        elif kind == "one-way":
            others = ids[1 : 1 + r.randint(1, len(ids) - 1)]
            links = {(ids[0], b) for b in others}
            if r.random() < 0.5:
                links = {(b, a) for a, b in links}
        elif kind == "bridge":  # ids[0] sees only ids[1]
            links = {(ids[0], b) for b in ids[2:]} | {(b, ids[0]) for b in ids[2:]}
        else:
            links = {(a, b) for a in ids for b in ids if a != b and r.random() < 0.3}
        until = self.cluster.now + r.randrange(*self.cluster.profile.partition_steps)
        self.partition(links, until=until, kind=kind)

    def partition(
        self, links: set[tuple[NodeId, NodeId]], *, until: int | None = None, kind: str = "manual"
    ) -> None:
        """Cut the given directed links (until the step `until`, or until healed)."""
        self.network.blocked = set(links)
        self.partition_until = until
        self.cluster.report.partitions += 1
        self.cluster.event(f"partition ({kind}) cuts {sorted(links)}")

    def isolate(self, group: list[NodeId]) -> None:
        """A symmetric partition: `group` on one side, everyone else on the other."""
        rest = [n.id for n in self.cluster.nodes if n.id not in group]
        self.partition(
            {(a, b) for a in group for b in rest} | {(b, a) for a in group for b in rest}
        )

    def heal_partition(self) -> None:
        if self.network.blocked:
            self.cluster.event("the partition heals")
        self.network.blocked = set()
        self.partition_until = None

    # --- crashes, transfers, clocks --------------------------------------------------------

    def _crash_fault(self, node_id: NodeId) -> None:
        """Crash a node for a random while, unless too many are down already."""
        cluster = self.cluster
        down = sum(1 for n in cluster.nodes if n.core is None)
        if down < cluster.profile.max_down:
            self.host.crash(node_id)
            cluster.by_id[node_id].restart_at = (
                cluster.now + 1 + self.rng.randrange(cluster.profile.downtime)
            )

    def transfer(self, leader: NodeId, target: NodeId) -> None:
        node = self.cluster.by_id[leader]
        core = node.core
        if core is None or not core.is_leader:
            return
        self.cluster.report.transfers += 1
        self.cluster.event(f"{leader} is asked to hand leadership to {target}")
        core.transfer_leadership(target)
        node.dirty = True

    def _jump_clock(self) -> None:
        """Move a node's wall clock by seconds, forwards or backwards (the leader's, often)."""
        cluster, r = self.cluster, self.clock_rng
        leader = cluster.leader()
        node = (
            cluster.by_id[leader]
            if leader is not None and r.random() < 0.5
            else r.choice(cluster.nodes)
        )
        jump = r.randint(*cluster.profile.clock_jump_ms) * r.choice((-1, 1))
        node.clock_offset_ms += jump
        cluster.report.clock_jumps += 1
        cluster.event(f"{node.id}'s clock jumps by {jump} ms")

    # --- membership ------------------------------------------------------------------------

    def _change_membership(self, leader: NodeId) -> None:
        """Ask the leader for a random membership change, as an operator would."""
        cluster = self.cluster
        core = cluster.by_id[leader].core
        assert core is not None, "the leader is up"
        r, members = self.member_rng, core.members
        changes = [MemberChange(ChangeKind.PROMOTE, n) for n in sorted(members.learners)]
        changes += [MemberChange(ChangeKind.REMOVE, n) for n in sorted(members.learners)]
        if len(members.voters) > MIN_VOTERS:
            changes += [MemberChange(ChangeKind.REMOVE, n) for n in sorted(members.voters)]
        new_id = f"n{len(cluster.nodes) + 1}"
        if len(members.all) < MAX_MEMBERS:
            address = MemberAddress(f"{new_id}:7000", f"{new_id}:6379")
            changes.append(MemberChange(ChangeKind.ADD, new_id, address))
        if not changes:
            return
        taken = self.change_members(leader, r.choice(changes))
        cut = cluster.profile.cut_changing_leader
        if taken and cut and r.random() < cut:
            rest = [n.id for n in cluster.nodes if n.id != leader]
            self.partition(
                {(leader, b) for b in rest} | {(b, leader) for b in rest},
                until=cluster.now + r.randrange(*cluster.profile.partition_steps),
                kind="the changing leader",
            )

    def change_members(self, leader: NodeId, change: MemberChange) -> bool:
        """Ask `leader` for `change` (an added node is created at once, on an empty disk:
        it knows no configuration until the leader's log reaches it); returns whether the
        leader took it."""
        node = self.cluster.by_id[leader]
        assert node.core is not None, f"{leader} is down"
        try:
            node.core.change_members(change)
        except (ChangeNotAllowedYet, InvalidChange, TransferInProgress):
            return False
        self.cluster.report.member_changes += 1
        self.cluster.event(f"{leader} {change.kind.value}s {change.node}")
        node.dirty = True
        if change.kind is ChangeKind.ADD:
            self.host.start(self.host.add_node(change.node, Members(frozenset())))
        return True
