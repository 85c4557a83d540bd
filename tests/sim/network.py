"""The simulated network (`Network`): messages in flight with seeded latencies, losses,
duplicates, detours and stale InstallSnapshot copies, directed links that are cut, and
what each message promises about its sender's disk, checked as it leaves."""

from __future__ import annotations

import heapq
import itertools
import random

from sim.cluster import Cluster
from sim.nodes import Envelope, SimNode
from sim.plans import TICK
from trioraft.core.messages import (
    AppendEntriesResponse,
    HardState,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    NodeId,
    RequestVote,
    RequestVoteResponse,
    describe,
)


class Network:
    def __init__(self, cluster: Cluster, rng: random.Random) -> None:
        self.cluster = cluster
        self.rng = rng
        #: messages in flight: (arrival step, sequence number, envelope)
        self.in_flight: list[tuple[int, int, Envelope]] = []
        self.sequence = itertools.count()
        #: directed links (src, dst) that deliver nothing
        self.blocked: set[tuple[NodeId, NodeId]] = set()

    def send_all(self, node: SimNode, messages: list[Message]) -> None:
        # a canonical order, so that a replay never depends on how a core built a batch
        for m in sorted(messages, key=lambda m: m.dst):
            self._send(node, m)

    def deliver_due(self) -> None:
        """Deliver the messages due at this step (or lose them)."""
        in_flight = self.in_flight
        while in_flight and in_flight[0][0] <= self.cluster.now:
            self._arrive(heapq.heappop(in_flight)[2])

    def drop_sent_by(self, node_id: NodeId) -> int:
        """The node's host lost power: what it sent that is still on its way dies with it;
        returns how many messages."""
        kept = [f for f in self.in_flight if f[2].msg.src != node_id]
        lost = len(self.in_flight) - len(kept)
        self.in_flight = kept
        heapq.heapify(kept)
        return lost

    def _send(self, node: SimNode, m: Message) -> None:
        self._check_promises(node, m)
        cluster = self.cluster
        data = b""
        if isinstance(m, InstallSnapshot):
            snap = node.snapshot
            if snap is None or (snap[0].index, snap[0].term) != (m.meta.index, m.meta.term):
                cluster.fail("ready contract", f"{node.id} sends {m.meta} but holds {snap}")
            data = snap[1]
        envelope = Envelope(m, data, node.incarnation)
        r, p, now = self.rng, cluster.profile, cluster.now
        for _ in range(2 if p.duplicate and r.random() < p.duplicate else 1):
            delay = 1 + r.randrange(p.latency)
            if p.detour and r.random() < p.detour:
                delay += r.randrange(2 * 2 * cluster.plan.config.election_ticks * TICK)
            heapq.heappush(self.in_flight, (now + delay, next(self.sequence), envelope))
        if isinstance(m, InstallSnapshot) and p.stale_snapshots and r.random() < p.stale_snapshots:
            delay = 1 + r.randrange(2 * 2 * cluster.plan.config.election_ticks * TICK)
            heapq.heappush(self.in_flight, (now + delay, next(self.sequence), envelope))

    def _check_promises(self, node: SimNode, m: Message) -> None:
        """What a message promises must be on the sender's disk when it leaves."""
        if not self.cluster.check_promises:
            return
        fail = self.cluster.fail
        hs, disk = node.disk.hard_state, node.disk
        pre_vote = isinstance(m, RequestVote | RequestVoteResponse) and m.pre_vote
        # a heartbeat answer only says the sender knew no higher term when the heartbeat
        # came, which needs no disk (votes, which do, are checked below)
        at_once = pre_vote or isinstance(m, HeartbeatResponse)
        if not at_once and m.term > hs.term:
            fail(
                "persistence", f"{node.id} sends {describe(m)} while its durable term is {hs.term}"
            )
        if (
            isinstance(m, RequestVoteResponse)
            and m.granted
            and not m.pre_vote
            and hs != HardState(m.term, m.dst)
            and hs.term <= m.term  # a later durable term also rules out voting again
        ):
            fail("persistence", f"{node.id} grants {describe(m)} while its disk holds {hs}")
        if (
            isinstance(m, AppendEntriesResponse)
            and m.success
            and m.index > disk.last_index
            and hs.term == m.term  # once in a later term, the disk may have been cut since
        ):
            fail(
                "persistence",
                f"{node.id} acknowledges {describe(m)} but its disk ends at {disk.last_index}",
            )

    def _arrive(self, envelope: Envelope) -> None:
        cluster = self.cluster
        m = envelope.msg
        dst = cluster.by_id[m.dst]
        lost = (
            dst.core is None
            or (m.src, m.dst) in self.blocked
            or (cluster.profile.drop > 0 and self.rng.random() < cluster.profile.drop)
        )
        if isinstance(m, InstallSnapshot):
            src = cluster.by_id[m.src]
            if src.core is not None and src.incarnation == envelope.sender_incarnation:
                src.core.report_snapshot(m.dst, delivered=not lost)
                src.dirty = True
            if not lost:
                dst.disk.received[(m.meta.index, m.meta.term)] = envelope.data
        cluster.arrivals.append((cluster.now, m, lost))
        if lost or dst.core is None:
            return
        term = dst.core.term
        dst.core.step(m)
        dst.dirty = True
        if isinstance(m, RequestVote) and m.pre_vote and dst.core.term != term:
            cluster.fail(
                "prevote", f"{describe(m)} moved {m.dst} from term {term} to {dst.core.term}"
            )
