"""Tools for the core's synchronous tests: seeded cores, and a tiny cluster that moves
Ready values between them the way the runtime does.

The cluster honours the Ready contract: it writes a Ready's snapshot, hard state and
entries to the node's `RaftDisk`, confirms them with `persisted(last.index, last.term)`, puts
`messages` on the network at once and `messages_after_persist` only after the write.
Putting a message on the network delivers nothing: a test (or `stabilize`) chooses which
messages in flight reach their receivers, so scenarios run one step at a time.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Mapping, Sequence

from harness.raft_disk import RaftDisk
from trioraft.core.config import RaftConfig
from trioraft.core.leadership import ReadState
from trioraft.core.messages import (
    Entry,
    HardState,
    Members,
    Message,
    NodeId,
    RequestVote,
    RequestVoteResponse,
    SnapshotMeta,
)
from trioraft.core.progress import Progress
from trioraft.core.raft import Raft, Role
from trioraft.core.ready import FollowerLostEntries, Ready

IDS = ("a", "b", "c")
ELECTION_TICKS = RaftConfig().election_ticks

#: chooses messages in flight
Where = Callable[[Message], bool]


def members(ids: Sequence[NodeId] = IDS) -> Members:
    return Members(voters=frozenset(ids))


def log_of(*terms: int, start: int = 1) -> list[Entry]:
    """Command entries at start, start + 1, ... with the given terms."""
    return [Entry(term, start + k, data=b"%d" % (start + k)) for k, term in enumerate(terms)]


def make_raft(
    node_id: NodeId = "a",
    ids: Sequence[NodeId] = IDS,
    *,
    config: RaftConfig | None = None,
    hard_state: HardState | None = None,
    entries: Sequence[Entry] = (),
    snapshot: SnapshotMeta | None = None,
    seed: int = 0,
) -> Raft:
    return Raft(
        node_id,
        members(ids),
        rng=random.Random(f"{seed}/{node_id}"),
        config=config,
        hard_state=hard_state,
        entries=entries,
        snapshot=snapshot,
    )


def tick(node: Raft, times: int) -> None:
    for _ in range(times):
        node.tick()


def progress_of(leader: Raft, peer: NodeId) -> Progress:
    """What `leader` (which must lead) knows of `peer`'s log."""
    assert leader.leadership is not None, f"{leader.id} does not lead"
    return leader.leadership.progress[peer]


def run_out_timeout(node: Raft) -> None:
    """Tick a follower or candidate until its election timeout runs out."""
    tick(node, node.randomized_timeout - node.election_elapsed)


def everything(m: Message) -> bool:
    return True


def avoiding(node_id: NodeId) -> Where:
    """Messages that neither come from nor go to `node_id` (it is cut off)."""
    return lambda m: node_id not in (m.src, m.dst)


def involving(node_id: NodeId) -> Where:
    return lambda m: node_id in (m.src, m.dst)


def is_vote_traffic(m: Message) -> bool:
    return isinstance(m, RequestVote | RequestVoteResponse)


class CoreCluster:
    def __init__(
        self,
        ids: Sequence[NodeId] = IDS,
        *,
        config: RaftConfig | None = None,
        logs: Mapping[NodeId, Sequence[Entry]] | None = None,
        term: int = 0,
        seed: int = 0,
    ) -> None:
        """Nodes `ids` starting from disks holding `logs` (default empty) at `term`."""
        self.ids = tuple(ids)
        #: the nodes bootstrapped with the configuration `ids` (added ones know none)
        self.founders = self.ids
        self.config = config
        self.seed = seed
        self.disks = {
            node_id: RaftDisk(HardState(term), entries=list((logs or {}).get(node_id, ())))
            for node_id in ids
        }
        self.nodes = {node_id: self._boot(node_id) for node_id in ids}
        #: messages sent and not yet delivered or dropped, in the order sent
        self.network: list[Message] = []
        #: per node, the entries handed to its state machine, in order
        self.applied: dict[NodeId, list[Entry]] = {node_id: [] for node_id in ids}
        self.reads: dict[NodeId, list[ReadState]] = {node_id: [] for node_id in ids}
        self.dropped_reads: dict[NodeId, list[Hashable]] = {node_id: [] for node_id in ids}
        #: per node, the followers it found to have lost entries they acknowledged
        self.lost_entries: dict[NodeId, list[FollowerLostEntries]] = {
            node_id: [] for node_id in ids
        }
        #: per node, the Readies taken whose writes are not durable yet
        self._unpersisted: dict[NodeId, list[Ready]] = {node_id: [] for node_id in ids}
        #: nodes whose disk hangs: their writes stay held back until `persist(node_id)`
        self.hung_disks: set[NodeId] = set()

    def _boot(self, node_id: NodeId) -> Raft:
        disk = self.disks[node_id]
        return make_raft(
            node_id,
            self.founders if node_id in self.founders else (),
            config=self.config,
            hard_state=disk.hard_state,
            entries=disk.entries,
            snapshot=disk.snapshot,
            seed=self.seed,
        )

    def add_node(self, node_id: NodeId) -> Raft:
        """Start a new node on an empty disk; it knows no configuration until the leader
        replicates one to it."""
        self.ids += (node_id,)
        self.disks[node_id] = RaftDisk()
        for table in (self.applied, self.reads, self.dropped_reads, self.lost_entries):
            table[node_id] = []
        self._unpersisted[node_id] = []
        self.nodes[node_id] = self._boot(node_id)
        return self.nodes[node_id]

    def restart(self, node_id: NodeId) -> Raft:
        """Crash the node, losing what it did not persist, and start it from its disk."""
        self._unpersisted[node_id] = []
        self.nodes[node_id] = self._boot(node_id)
        return self.nodes[node_id]

    # --- one step at a time -------------------------------------------------------

    def ready(self, node_id: NodeId, *, persist: bool = True) -> Ready:
        """Take the node's Ready and act on it; with persist=False its writes (and the
        messages waiting for them) are held back until `persist(node_id)`."""
        rd = self.nodes[node_id].ready()
        self.network.extend(rd.messages)
        self._unpersisted[node_id].append(rd)
        if persist and node_id not in self.hung_disks:
            self.persist(node_id)
        self.applied[node_id].extend(rd.committed)
        self.reads[node_id].extend(rd.reads)
        self.dropped_reads[node_id].extend(rd.dropped_reads)
        self.lost_entries[node_id].extend(rd.lost_entries)
        return rd

    def persist(self, node_id: NodeId) -> None:
        """Make the node's held-back Readies durable, in order, confirm each, and send
        the messages that waited for them."""
        node, disk = self.nodes[node_id], self.disks[node_id]
        for rd in self._unpersisted[node_id]:
            disk.write(rd)
            if rd.entries:
                node.persisted(rd.entries[-1].index, rd.entries[-1].term)
            self.network.extend(rd.messages_after_persist)
        self._unpersisted[node_id] = []

    def deliver(self, where: Where = everything) -> list[Message]:
        """Step the messages in flight that `where` chooses into their receivers, in the
        order sent; the others stay in flight. Returns the delivered messages."""
        chosen = [m for m in self.network if where(m)]
        self.network = [m for m in self.network if not where(m)]
        for m in chosen:
            self.nodes[m.dst].step(m)
        return chosen

    def drop(self, where: Where = everything) -> list[Message]:
        """Lose the messages in flight that `where` chooses. Returns them."""
        lost = [m for m in self.network if where(m)]
        self.network = [m for m in self.network if not where(m)]
        return lost

    # --- whole scenarios ----------------------------------------------------------

    def stabilize(self, where: Where = everything) -> list[Message]:
        """Take every node's Ready and deliver the messages `where` chooses until
        nothing moves. Returns every message delivered."""
        delivered: list[Message] = []
        for _ in range(1000):
            readies = [self.ready(node_id) for node_id in self.ids]
            batch = self.deliver(where)
            delivered.extend(batch)
            if not batch and all(rd.empty for rd in readies):
                return delivered
        raise AssertionError("the cluster did not settle")

    def campaign(self, node_id: NodeId, where: Where = everything) -> Raft:
        """Let the node's election timeout run out and deliver only votes until it wins;
        its AppendEntries stay in flight."""
        node = self.nodes[node_id]
        run_out_timeout(node)
        self.stabilize(lambda m: is_vote_traffic(m) and where(m))
        assert node.role is Role.LEADER, f"{node_id} lost its election"
        return node

    def elect(self, node_id: NodeId, where: Where = everything) -> Raft:
        """Elect the node and let the cluster settle (its no-op committed)."""
        node = self.campaign(node_id, where)
        self.stabilize(where)
        return node
