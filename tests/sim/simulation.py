"""A deterministic, seeded simulation of whole trioraft clusters.

Theory of operation. A `Simulation` runs three or five `trioraft.core.raft.Raft` cores in
one process, with no threads, no trio and no clock: time is a global step counter, and every
random choice -- latencies, losses, faults, client operations, the cores' own election
timeouts -- is drawn from generators seeded by the run's seed, so a seed replays exactly
(every batch of messages is put in a canonical order before the network sees it, and nothing
depends on the order of a set of node ids, which changes between processes). One step:

1. injects faults from the seeded schedule of the run's `Profile`: partitions (symmetric,
   one-way, partial connectivity), their healing, crashes and restarts (some of a leader
   just elected), leadership transfers, and membership changes asked of the leader (add a
   new node as a learner, promote a learner, remove a voter -- the leader itself too -- or
   a learner; an added node always has a new id and an empty disk, a removed one keeps
   running), and in some profiles a leader cut off from everyone right after it takes one;
2. completes the durable writes that are due, in FIFO order per node: the write lands on
   the node's `Disk`, the messages that waited for it go out, `persisted()` is called;
3. delivers the messages that are due, unless the link is cut, the receiver is down or the
   network loses them (an InstallSnapshot lost is reported to its sender; in some
   profiles a stale copy of an InstallSnapshot arrives much later);
4. ticks every node whose own, slightly drifting, clock says so;
5. lets clients issue operations and gives up on the ones that timed out. A client sends
   to the node it believes leads; a write (and some gets) is proposed there and ends when
   that node applies its (index, term) -- or fails definitely if another entry is applied
   at that index, and becomes indeterminate if the node crashes, installs a snapshot over
   it or the client times out; other gets go through read_index;
6. lets nodes snapshot their state machines and compact their logs;
7. takes a `Ready` from every node that had any input, and honours it as the core's
   docstring demands: an installed snapshot replaces the state machine; hard state, entries
   and snapshot go to disk after a random fsync latency, behind any earlier write;
   `messages` go to the network at once, `messages_after_persist` once this write and all
   before it are durable; `committed` entries are applied; `reads` are answered once the
   state machine has caught up with them; `dropped_reads` fail;
8. checks the safety properties on every node that had any input.

A crash loses everything not durable: pending writes, the messages waiting on them, the
state machine and the core; in profiles where a crash is a power loss of the host, the
messages it sent that are still on their way die with it too. A restart builds a new core
from the disk (hard state, snapshot meta, the entries after it) and a state machine from
the disk's snapshot; entries committed but not applied are applied again once the node
relearns the commit index. A leader's
InstallSnapshot carries only meta: the network carries a copy of the sender's snapshot data
with it, and the receiver stores that durably before its core sees the message.

Properties, checked after every step (the checker remembers across steps and restarts):
- election safety: at most one leader per term, ever;
- log matching: every (index, term) held anywhere has one predecessor term and one content,
  so two logs sharing an (index, term) are identical up to it;
- leader completeness: an entry seen committed by a node in term t is in the log (or under
  the snapshot) of every leader of a term above t;
- state machine safety: no two nodes apply different entries at one index, and the state
  after applying index i (or a snapshot at i) is the same everywhere;
- commit survival: when an entry is first committed, no voter whose log lacks it (in memory
  or on disk) is as up to date as the durable logs of a majority of the configuration that
  log holds, so no election can ever lose it (Figure 8 of the Raft paper is an entry on a
  majority that fails this, and so is a membership change appended by a leader before it
  committed an entry of its term);
- committed entries stay: no disk ever cuts a committed entry from its log (only a
  conflict with a leader's entries, or a snapshot the log does not match, cuts entries);
- acknowledgement: a successful append answer in term t at index i is sent from a log
  holding, at i, the entry the leader of t holds there;
- read index safety: a read is released at an index no lower than any commit index seen
  before the read was issued, and by a leader of a term no older than any led in by then;
- PreVote changes nobody's term: neither the pre-candidate's nor a voter's;
- leader knowledge: a node knows as its leader only the one that leads its own term;
- the persistence promises the Ready contract exists for: no message but a PreVote or a
  heartbeat answer carries a term that is not durable at its sender, a granted vote is
  durable before it is sent, a successful append acknowledgement is backed by the disk,
  entries are applied only once durable and in order, and a durable vote never changes
  within a term.
Expiry runs (`EXPIRY_PROFILES`, kept apart so that the seeds of `PROFILES` stay as they
are): every node has a wall clock that drifts (its own rate) and jumps by seconds,
forwards or backwards; a proposal is stamped as trioraft's runtime stamps it
(`trioraft.stamps.Stamper`: the proposer's clock, never below a stamp in its log), and the
state machine takes its time from the stamps: a key whose deadline has passed by an
entry's time is deleted as the entry applies. Clients give some values a TTL; leaders
propose the deletion of keys past their deadline on their own clock; a read that meets
such a key on the serving leader's clock goes through the log instead, so it waits for
the deletion. Further properties: stamps never go back along the log, no read returns a
key past its deadline on the clock of the leader that served it, and (with each TTL value
recorded as possibly vanishing at one instant, see `linearizability`) the history stays
linearizable; the state compared across replicas includes deadlines and time.
At the end all faults heal; within bounded steps a leader must commit in its term, every
operation issued after healing must end definitely, and all state machines must converge to
the same state at the same index (once clients stop, the simulation proposes fillers while
any proposal is pending, so one stranded beyond a deposed leader's log still gets its index
applied). The client history must then be linearizable (`linearizability.check`). Any
failure, and any exception from a core, raises `SimulationFailure` naming the property, the
seed and the command that replays it.

How it is built: `Simulation` (here) draws the run's random streams, builds the parts and
runs the steps above in order; `cluster.py` holds what the parts share (the nodes, the step
counter, the report and trace, how a property fails), `host.py` what the runtime does for
each core (steps 2, 4, 6 and 7), `network.py` the network (step 3), `faults.py` the faults
(step 1) and healing, `workload.py` the clients (step 5), `invariants.py` and `checker.py`
the properties (step 8).
"""

from __future__ import annotations

import random
import traceback
from collections.abc import Callable

from sim.cluster import Cluster, Report, SimulationFailure
from sim.faults import Faults
from sim.host import CoreFactory, Host
from sim.invariants import Invariants
from sim.linearizability import check
from sim.network import Network
from sim.nodes import SimNode
from sim.plans import TICK, Plan
from sim.workload import Workload
from trioraft.core.membership import MemberChange
from trioraft.core.messages import Members, NodeId
from trioraft.core.raft import Raft

__all__ = ["CoreFactory", "Report", "Simulation", "SimulationFailure"]

#: after healing, a leader must have committed in its term within this many steps
LEADER_BOUND = 100 * TICK
#: after healing, clients keep issuing operations for this many steps
HEALED_TRAFFIC = 60 * TICK
#: then every operation must end and every node converge within this many steps
SETTLE_BOUND = 150 * TICK
#: the leader looks for keys past their deadline every this many steps
SWEEP_STEPS = TICK


class Simulation:
    def __init__(
        self, plan: Plan, *, core_factory: CoreFactory = Raft, check_promises: bool = True
    ) -> None:
        """A seeded run of `plan`, with cores built by `core_factory`; `check_promises`
        checks what each message, write and application promises about the node's disk
        as it happens (off: only the end-to-end properties judge)."""
        self.plan = plan
        root = random.Random(f"trioraft-sim-{plan.seed}")
        # separate streams, so that changing one kind of choice moves the others less
        net_rng = random.Random(root.getrandbits(64))
        fault_rng = random.Random(root.getrandbits(64))
        client_rng = random.Random(root.getrandbits(64))
        node_rng = random.Random(root.getrandbits(64))
        # wall clocks and TTLs (expiry runs only)
        clock_rng = random.Random(root.getrandbits(64))
        self.cluster = cluster = Cluster(plan, check_promises=check_promises)
        ids = [f"n{k}" for k in range(1, plan.size + 1)]
        self.network = Network(cluster, net_rng)
        self.workload = Workload(cluster, ids, client_rng, clock_rng)
        self.host = Host(cluster, self.network, self.workload, node_rng, core_factory)
        founders = Members(voters=frozenset(ids))
        for node_id in ids:
            self.host.add_node(node_id, founders)
        if cluster.expiry:
            for node in cluster.nodes:
                node.clock_rate = clock_rng.uniform(0.98, 1.02)
                node.clock_offset_ms = clock_rng.randint(-500, 500)
        # drawn after the other streams, so that these stay as they were
        member_rng = random.Random(root.getrandbits(64))
        self.faults = Faults(cluster, self.network, self.host, fault_rng, member_rng, clock_rng)
        self.invariants = Invariants(cluster, on_new_leader=self.faults.on_new_leader)
        for node in cluster.nodes:
            self.host.start(node)
        # what the scenarios read
        self.nodes, self.by_id, self.report = cluster.nodes, cluster.by_id, cluster.report
        self.trace, self.clients = cluster.trace, self.workload.clients
        self.history = self.workload.history

    # --- running ---------------------------------------------------------------------------

    def run(self) -> Report:
        """The whole seeded run: faults, then healing, liveness and linearizability."""
        self.run_steps(self.plan.fault_steps)
        return self.finish()

    def finish(self) -> Report:
        self.heal()
        self.run_until(self._leader_committed, LEADER_BOUND, "a leader commits after healing")
        self.run_steps(HEALED_TRAFFIC)
        self.workload.clients_on = False
        self.run_until(self._settled, SETTLE_BOUND, "operations end and nodes converge")
        self._check_history()
        return self.report

    def run_steps(self, steps: int) -> None:
        for _ in range(steps):
            self.step()

    def step(self) -> None:
        """One step of the whole cluster; an exception from a core fails the run too."""
        try:
            self._step()
        except SimulationFailure:
            raise
        except Exception as error:
            self.cluster.fail("no exception", "".join(traceback.format_exception(error)[-6:]))

    def run_until(self, done: Callable[[], bool], bound: int, what: str) -> None:
        """Step until done() holds; fails the liveness property after `bound` steps."""
        for _ in range(bound):
            if done():
                return
            self.step()
        if not done():
            self.cluster.fail(
                "liveness", f"no {what} within {bound} steps\n{self.describe_nodes()}"
            )

    def _step(self) -> None:
        cluster, host, workload = self.cluster, self.host, self.workload
        cluster.now += 1
        if cluster.faults:
            self.faults.inject()
        host.land_due()
        self.network.deliver_due()
        host.tick_due()
        workload.step()
        if not workload.clients_on and cluster.now % TICK == 0:
            workload.keep_log_moving()
        if cluster.expiry and cluster.now % SWEEP_STEPS == 0:
            host.sweep()
        host.compact_and_ready()
        self.invariants.check_step()
        self.report.steps = cluster.now

    def _check_history(self) -> None:
        result = check(self.history.operations(), key_budget=30.0)
        if not result.ok:
            self.cluster.fail("linearizability", result.explain())

    def _leader_committed(self) -> bool:
        leader = self.leader()
        core = self.by_id[leader].core if leader else None
        return core is not None and core.committed_in_term()

    def _settled(self) -> bool:
        if self.workload.pending():
            return False
        leader = self.leader()
        core = self.by_id[leader].core if leader else None
        if core is None or not core.committed_in_term():
            return False
        members = [n for n in self.nodes if n.id in core.members.all]
        if any(n.applied != core.commit or n.writes for n in members):
            return False
        states = [n.kv for n in members]
        if any(kv != states[0] for kv in states):
            self.cluster.fail(
                "state machine safety", f"nodes applied to {core.commit} differ: {states}"
            )
        return True

    # --- what the scenarios do and read ----------------------------------------------------

    def leader(self) -> NodeId | None:
        """The up node that leads the highest term, if any."""
        return self.cluster.leader()

    def partition(
        self, links: set[tuple[NodeId, NodeId]], *, until: int | None = None, kind: str = "manual"
    ) -> None:
        """Cut the given directed links (until the step `until`, or until healed)."""
        self.faults.partition(links, until=until, kind=kind)

    def isolate(self, group: list[NodeId]) -> None:
        """A symmetric partition: `group` on one side, everyone else on the other."""
        self.faults.isolate(group)

    def heal_partition(self) -> None:
        self.faults.heal_partition()

    def heal(self) -> None:
        """End every fault for good: links, crashed nodes, a lossy network."""
        self.faults.heal()

    def crash(self, node_id: NodeId) -> None:
        self.host.crash(node_id)

    def restart(self, node_id: NodeId) -> None:
        self.host.restart(node_id)

    def transfer(self, leader: NodeId, target: NodeId) -> None:
        self.faults.transfer(leader, target)

    def change_members(self, leader: NodeId, change: MemberChange) -> bool:
        """Ask `leader` for `change` (an added node is created at once); returns whether
        the leader took it."""
        return self.faults.change_members(leader, change)

    def describe_nodes(self) -> str:
        lines = [describe_node(node) for node in self.nodes]
        lines.extend(
            f"  pending: op {op.id} {op.kind.value} at {op.index}" for op in self.workload.pending()
        )
        return "\n".join(lines)


def describe_node(node: SimNode) -> str:
    core = node.core
    if core is None:
        return f"  {node.id}: down"
    return (
        f"  {node.id}: {core.role.value} term {core.term} leader {core.leader_id} "
        f"log {core.log.snapshot_index}+{len(core.log.entries)} commit {core.commit} "
        f"applied {node.applied} writes {len(node.writes)}"
    )
