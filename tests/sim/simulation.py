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
"""

from __future__ import annotations

import heapq
import itertools
import random
import traceback
from collections import deque
from collections.abc import Callable
from typing import NoReturn, TypeAlias

import attrs

from sim.checker import Checker
from sim.linearizability import History, Kind, check
from sim.nodes import Client, Envelope, Op, SimNode, Write
from sim.plans import MAX_MEMBERS, MIN_VOTERS, TICK, Plan
from sim.state_machine import (
    DEADLINE,
    FILLER,
    apply_entry,
    deadline_of,
    decode_command,
    encode_command,
    pack_kv,
    stamp_of,
    time_of_state,
    unpack_kv,
)
from trioraft.core.errors import (
    ChangeNotAllowedYet,
    InvalidChange,
    NotLeader,
    TransferInProgress,
)
from trioraft.core.membership import ChangeKind, Configurations, MemberChange
from trioraft.core.messages import (
    AppendEntriesResponse,
    Entry,
    EntryKind,
    HardState,
    HeartbeatResponse,
    InstallSnapshot,
    MemberAddress,
    Members,
    Message,
    NodeId,
    RequestVote,
    RequestVoteResponse,
    SnapshotMeta,
    describe,
)
from trioraft.core.raft import Raft, Role
from trioraft.core.ready import Ready
from trioraft.runtime.stamps import Stamper, stamp, unstamp

#: after healing, a leader must have committed in its term within this many steps
LEADER_BOUND = 100 * TICK
#: after healing, clients keep issuing operations for this many steps
HEALED_TRAFFIC = 60 * TICK
#: then every operation must end and every node converge within this many steps
SETTLE_BOUND = 150 * TICK
REPLAY = "python -m pytest tests/sim/test_simulation.py --seeds 1 --first-seed {seed}"
#: expiry runs: wall-clock milliseconds per step at a node's nominal clock rate, and the
#: Unix time at step 0
STEP_MS = 10
EPOCH_MS = 1_800_000_000_000
#: the leader looks for keys past their deadline every this many steps
SWEEP_STEPS = TICK

CoreFactory: TypeAlias = Callable[..., Raft]


class SimulationFailure(AssertionError):
    """A safety or liveness property failed; the message says which, and how to replay."""


# --- the simulation ------------------------------------------------------------------------


@attrs.define
class Report:
    """What a run did, for scenario assertions and for the curious."""

    steps: int = 0
    ops_ok: int = 0
    ops_failed: int = 0
    ops_unknown: int = 0
    crashes: int = 0
    partitions: int = 0
    transfers: int = 0
    member_changes: int = 0
    snapshots_installed: int = 0
    max_term: int = 0
    max_commit: int = 0
    #: expiry runs: keys deleted past their deadline (counted at every node), reads that
    #: met one and went through the log, clock jumps
    expired: int = 0
    expired_reads: int = 0
    clock_jumps: int = 0


class Simulation:
    def __init__(
        self, plan: Plan, *, core_factory: CoreFactory = Raft, check_promises: bool = True
    ) -> None:
        self.plan = plan
        #: check what each message promises about the sender's disk as it leaves (off: only
        #: the end-to-end properties judge, to show what they catch on their own)
        self.check_promises = check_promises
        self.profile = plan.profile
        self.core_factory = core_factory
        root = random.Random(f"trioraft-sim-{plan.seed}")
        #: separate streams, so that changing one kind of choice moves the others less
        self.net_rng = random.Random(root.getrandbits(64))
        self.fault_rng = random.Random(root.getrandbits(64))
        self.client_rng = random.Random(root.getrandbits(64))
        self.node_rng = random.Random(root.getrandbits(64))
        #: wall clocks and TTLs (expiry runs only)
        self.clock_rng = random.Random(root.getrandbits(64))
        self.expiry = plan.profile.ttl > 0
        ids = [f"n{k}" for k in range(1, plan.size + 1)]
        founders = Members(voters=frozenset(ids))
        self.nodes = [SimNode(i, TICK * self.node_rng.uniform(0.9, 1.1), founders) for i in ids]
        self.by_id = {node.id: node for node in self.nodes}
        self.keys = [b"k%d" % k for k in range(plan.keys)]
        self.clients = [Client(c, self.client_rng.choice(ids)) for c in range(plan.clients)]
        self.now = 0
        self.history = History(clock=lambda: float(self.now))
        self.checker = Checker(self._fail)
        #: committed indexes up to here were checked to survive any election
        self.survival_checked = 0
        self.report = Report()
        self.trace: deque[str] = deque(maxlen=40)
        #: the last messages that arrived (step, message, whether it was lost), for the
        #: transcript a failure prints; formatted only then
        self.arrivals: deque[tuple[int, Message, bool]] = deque(maxlen=30)
        #: messages in flight: (arrival step, sequence number, envelope)
        self.in_flight: list[tuple[int, int, Envelope]] = []
        self.sequence = itertools.count()
        #: directed links (src, dst) that deliver nothing
        self.blocked: set[tuple[NodeId, NodeId]] = set()
        self.partition_until: int | None = None
        #: node -> the step a fault will crash it at
        self.doomed: dict[NodeId, int] = {}
        self.faults = True
        self.clients_on = True
        self.op_ids = itertools.count(1)
        if self.expiry:
            for node in self.nodes:
                node.clock_rate = self.clock_rng.uniform(0.98, 1.02)
                node.clock_offset_ms = self.clock_rng.randint(-500, 500)
        #: drawn after the other streams, so that these stay as they were
        self.member_rng = random.Random(root.getrandbits(64))
        for node in self.nodes:
            self._start(node)

    # --- running ---------------------------------------------------------------------------

    def run(self) -> Report:
        """The whole seeded run: faults, then healing, liveness and linearizability."""
        self.run_steps(self.plan.fault_steps)
        return self.finish()

    def finish(self) -> Report:
        self.heal()
        self.run_until(self._leader_committed, LEADER_BOUND, "a leader commits after healing")
        self.run_steps(HEALED_TRAFFIC)
        self.clients_on = False
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
            self._fail("no exception", "".join(traceback.format_exception(error)[-6:]))

    def run_until(self, done: Callable[[], bool], bound: int, what: str) -> None:
        """Step until done() holds; fails the liveness property after `bound` steps."""
        for _ in range(bound):
            if done():
                return
            self.step()
        if not done():
            self._fail("liveness", f"no {what} within {bound} steps\n{self.describe_nodes()}")

    def _step(self) -> None:
        self.now += 1
        if self.faults:
            self._inject_faults()
        for node in self.nodes:
            if node.restart_at is not None and node.restart_at <= self.now:
                self.restart(node.id)
            writes = node.writes
            while writes and writes[0].done_at <= self.now:
                self._land(node, writes.popleft())
        in_flight = self.in_flight
        while in_flight and in_flight[0][0] <= self.now:
            self._arrive(heapq.heappop(in_flight)[2])
        for node in self.nodes:
            if node.core is not None and node.next_tick <= self.now:
                term = node.core.term
                node.core.tick()
                if node.core.role is Role.PRE_CANDIDATE and node.core.term != term:
                    self._fail(
                        "prevote",
                        f"{node.id} went from term {term} to {node.core.term} to ask for PreVotes",
                    )
                node.dirty = True
                drifted = node.rate * self.node_rng.uniform(0.97, 1.03)
                node.rate = min(max(drifted, 0.8 * TICK), 1.2 * TICK)
                node.next_tick += node.rate
        for client in self.clients:
            self._client_step(client)
        if not self.clients_on and self.now % TICK == 0:
            self._keep_log_moving()
        if self.expiry and self.now % SWEEP_STEPS == 0:
            self._sweep()
        for node in self.nodes:
            core = node.core
            if core is not None:
                if node.applied - core.log.snapshot_index >= self.profile.snapshot_every:
                    self._compact(node, core)
                if node.dirty:
                    ready = core.ready()
                    if not ready.empty:
                        self._handle_ready(node, core, ready)
        self._check()
        self.report.steps = self.now

    # --- the Ready contract ----------------------------------------------------------------

    def _handle_ready(self, node: SimNode, core: Raft, rd: Ready) -> None:
        if rd.members is not None and node.id not in rd.members.all and rd.members.voters:
            # removed: the leader may stop sending it the log, so its proposals may never
            # be applied here; their clients give up (as the runtime's request timeout does)
            self._give_up_proposals(node)
        for m in rd.messages_after_persist:
            if isinstance(m, AppendEntriesResponse) and m.success and m.term == core.term:
                self._check_ack(node.id, core, m)
        data = b""
        if rd.snapshot is not None:
            data = self._install(node, rd.snapshot)
        if rd.must_sync or (node.writes and rd.messages_after_persist):
            done = self.now
            if rd.must_sync:
                done += 1 + self.node_rng.randrange(self.profile.fsync)
            if node.writes:
                done = max(done, node.writes[-1].done_at)
            node.writes.append(
                Write(rd.snapshot, data, rd.hard_state, rd.entries, rd.messages_after_persist, done)
            )
        else:
            self._send_all(node, rd.messages_after_persist)
        self._send_all(node, rd.messages)
        for entry in rd.committed:
            self._apply(node, entry)
        for read in rd.reads:
            op = node.reads.pop(read.ctx, None)
            if op is not None:
                if read.index < op.floor or core.term < op.term_floor:
                    self._fail(
                        "read index safety",
                        f"{node.id} (term {core.term}) releases read {op.id} at {read.index}, "
                        f"but {op.floor} was committed, and term {op.term_floor} led, before "
                        f"the read arrived",
                    )
                node.released.append((read.index, op))
        for ctx in rd.dropped_reads:
            op = node.reads.pop(ctx, None)
            if op is not None:
                self._end_failed(op)
        if node.released:
            self._serve_reads(node)

    def _check_ack(self, node_id: NodeId, core: Raft, m: AppendEntriesResponse) -> None:
        """A successful answer in term t at index i says the log holds, at i, the entry the
        leader of t has there (so, by log matching, the leader's whole log up to i)."""
        leader_id = self.checker.leaders.get(m.term)
        leader = self.by_id[leader_id].core if leader_id is not None else None
        if leader is None or leader.term != m.term or not leader.is_leader:
            return
        theirs, ours = leader.log.term(m.index), core.log.term(m.index)
        if theirs is not None and ours is not None and theirs != ours:
            self._fail(
                "acknowledgement",
                f"{node_id} acknowledges {m.index} in term {m.term} holding term {ours} there; "
                f"the leader holds term {theirs}",
            )

    def _install(self, node: SimNode, meta: SnapshotMeta) -> bytes:
        """Ready.snapshot: the state machine becomes the snapshot the core switched to."""
        data = node.disk.received.get((meta.index, meta.term))
        if data is None:
            self._fail("ready contract", f"{node.id} installs {meta}, which it never received")
        node.kv = unpack_kv(data)
        node.applied = meta.index
        node.snapshot = (meta, data)
        node.stamper.observe(time_of_state(node.kv))
        self.checker.check_state(node.id, meta.index, node.kv)
        self.report.snapshots_installed += 1
        self.trace.append(f"{self.now}: {node.id} installs the snapshot at {meta.index}")
        for index in sorted(i for i in node.waiting if i <= meta.index):
            for op in node.waiting.pop(index):
                self._end_unknown(op)  # the outcome is folded into the snapshot, unseen
        return data

    def _land(self, node: SimNode, write: Write) -> None:
        """A durable write completes; the messages that waited for it go out."""
        disk, core = node.disk, node.core
        assert core is not None
        if write.snapshot is not None:
            self._check_cut(node.id, disk.entries_from(write.snapshot.index + 1), [])
            disk.install(write.snapshot)
            disk.snapshot_data = write.snapshot_data
            disk.received = {k: v for k, v in disk.received.items() if k[0] > write.snapshot.index}
        if write.hard_state is not None:
            old, new = disk.hard_state, write.hard_state
            if self.check_promises and (
                new.term < old.term
                or (new.term == old.term and old.vote is not None and new.vote != old.vote)
            ):
                self._fail("persistence", f"{node.id}'s durable hard state went {old} -> {new}")
            disk.hard_state = new
        entries = write.entries
        if entries:
            first = entries[0].index
            if first <= disk.base or first > disk.last_index + 1:
                self._fail(
                    "ready contract",
                    f"{node.id} writes entries from {first} onto a disk holding "
                    f"{disk.base + 1}..{disk.last_index}",
                )
            self._check_cut(node.id, disk.entries_from(first), entries)
            disk.append(entries)
            for entry in entries:
                node.stamper.observe(stamp_of(entry))
        self._send_all(node, write.after)
        if entries:
            core.persisted(entries[-1].index, entries[-1].term)
            node.dirty = True

    def _check_cut(self, node_id: NodeId, removed: list[Entry], written: list[Entry]) -> None:
        """Entries leave a disk's log only when a leader's conflicting entries replace them
        or a snapshot that does not match the log does: never a committed one."""
        committed = self.checker.committed
        rewritten = {(e.index, e.term) for e in written}
        for entry in removed:
            index = entry.index
            stays = (index, entry.term) in rewritten or index >= len(committed)
            if not stays and committed[index] == entry.term:
                self._fail(
                    "committed entries stay",
                    f"{node_id} cuts the committed entry ({index}, {entry.term}) from its disk",
                )

    def _apply(self, node: SimNode, entry: Entry) -> None:
        if entry.index != node.applied + 1:
            self._fail("ready contract", f"{node.id} applied {node.applied}, is handed {entry}")
        if self.check_promises and node.disk.term(entry.index) != entry.term:
            self._fail("persistence", f"{node.id} is handed {entry} to apply before it is durable")
        output: object = None
        op_id = 0
        if entry.kind is EntryKind.COMMAND:
            before = time_of_state(node.kv)
            stamped = stamp_of(entry)
            if stamped is not None and stamped < before:
                self._fail(
                    "monotonic stamps",
                    f"{node.id} applies {entry} stamped {stamped}, after a stamp of {before}",
                )
            _, command = unstamp(entry.data)
            _, kind, key, _ = decode_command(command)
            deadline = deadline_of(node.kv, key)
            op_id, output, expired = apply_entry(node.kv, entry.data)
            self.report.expired += len(expired)
            if kind is Kind.GET:
                self._check_unexpired(node.id, key, output, deadline, time_of_state(node.kv))
        node.applied = entry.index
        self.checker.check_apply(node.id, entry, node.kv)
        for op in node.waiting.pop(entry.index, ()):
            if op.done:
                continue
            if op.term != entry.term:
                self._end_failed(op)  # another entry won the index: ours never commits
            elif op.id != op_id:
                self._fail(
                    "log matching",
                    f"{node.id} proposed op {op.id} at ({entry.index}, "
                    f"{entry.term}) but applies {entry} there",
                )
            else:
                self._end_ok(op, output)

    def _serve_reads(self, node: SimNode) -> None:
        waiting = []
        for index, op in node.released:
            if op.done:
                continue
            if index <= node.applied:
                value, deadline = node.kv.get(op.key), deadline_of(node.kv, op.key)
                served_at = self.time_ms(node)
                if self.expiry and value is not None and 0 < deadline <= served_at:
                    self.report.expired_reads += 1
                    self._read_through_log(node, op)
                    continue
                self._check_unexpired(node.id, op.key, value, deadline, served_at)
                self._end_ok(op, value)
            else:
                waiting.append((index, op))
        node.released = waiting

    def _check_unexpired(
        self, node_id: NodeId, key: bytes, value: object, deadline: int, served_at: int
    ) -> None:
        """A read served at `served_at` (the serving leader's time) never returns a key
        whose deadline had passed by then."""
        if value is not None and 0 < deadline <= served_at:
            self._fail(
                "expiry",
                f"{node_id} answers {value!r} for {key!r} at {served_at}, past its deadline "
                f"{deadline}",
            )

    def _read_through_log(self, node: SimNode, op: Op) -> None:
        """A read that meets a key past its deadline on the serving leader's clock waits
        for the key's deletion: it goes through the log, stamped at least that late, so
        the key is gone when it applies (as trioraft's server has the deletion committed
        before it answers)."""
        core = node.core
        assert core is not None
        try:
            [(op.index, op.term)] = self._propose(
                node, core, [encode_command(op.id, Kind.GET, op.key, ())]
            )
        except (NotLeader, TransferInProgress):
            self._end_failed(op)
            return
        op.via_log = True
        node.waiting.setdefault(op.index, []).append(op)
        node.dirty = True

    def clock_ms(self, node: SimNode) -> int:
        """What the node's wall clock reads now (Unix ms)."""
        return EPOCH_MS + int(self.now * STEP_MS * node.clock_rate) + node.clock_offset_ms

    def time_ms(self, node: SimNode) -> int:
        """The node's time: its clock, never below the latest stamp in its log."""
        return max(self.clock_ms(node), node.stamper.latest)

    def _propose(self, node: SimNode, core: Raft, commands: list[bytes]) -> list[tuple[int, int]]:
        """Propose on `node`, each command stamped with its time in expiry runs."""
        if self.expiry:
            commands = [stamp(c, node.stamper.next(self.clock_ms(node))) for c in commands]
        return core.propose(commands)

    def _sweep(self) -> None:
        """Every leader proposes the deletion of the keys past their deadline on its clock."""
        for node in self.nodes:
            core = node.core
            if core is None or not core.is_leader:
                continue
            now = self.time_ms(node)
            due = tuple(
                key[len(DEADLINE) :]
                for key, deadline in sorted(node.kv.items())
                if key.startswith(DEADLINE) and int(deadline) <= now
            )
            if due:
                try:
                    self._propose(node, core, [encode_command(0, Kind.EXPIRE, b"", due)])
                except TransferInProgress:
                    continue
                node.dirty = True

    def _compact(self, node: SimNode, core: Raft) -> None:
        """Snapshot the state machine at the applied index, durably, then cut the log. Not
        while an installed snapshot is still on its way to the disk: the disk's log must
        stay the one the snapshot is cut from."""
        if any(w.snapshot is not None for w in node.writes):
            return
        index, disk = node.applied, node.disk
        term = core.log.term(index)
        if term is None or disk.term(index) != term:
            self._fail("persistence", f"{node.id} applied {index} which is not on its disk")
        meta = SnapshotMeta(index, term, core.members_at(index))
        data = pack_kv(node.kv)
        disk.compact(meta)
        disk.snapshot_data = data
        core.compact(index)
        node.snapshot = (meta, data)

    # --- the network -----------------------------------------------------------------------

    def _send_all(self, node: SimNode, messages: list[Message]) -> None:
        # a canonical order, so that a replay never depends on how a core built a batch
        for m in sorted(messages, key=lambda m: m.dst):
            self._send(node, m)

    def _send(self, node: SimNode, m: Message) -> None:
        self._check_promises(node, m)
        data = b""
        if isinstance(m, InstallSnapshot):
            snap = node.snapshot
            if snap is None or (snap[0].index, snap[0].term) != (m.meta.index, m.meta.term):
                self._fail("ready contract", f"{node.id} sends {m.meta} but holds {snap}")
            data = snap[1]
        envelope = Envelope(m, data, node.incarnation)
        r, p = self.net_rng, self.profile
        for _ in range(2 if p.duplicate and r.random() < p.duplicate else 1):
            delay = 1 + r.randrange(p.latency)
            if p.detour and r.random() < p.detour:
                delay += r.randrange(2 * 2 * self.plan.config.election_ticks * TICK)
            heapq.heappush(self.in_flight, (self.now + delay, next(self.sequence), envelope))
        if isinstance(m, InstallSnapshot) and p.stale_snapshots and r.random() < p.stale_snapshots:
            delay = 1 + r.randrange(2 * 2 * self.plan.config.election_ticks * TICK)
            heapq.heappush(self.in_flight, (self.now + delay, next(self.sequence), envelope))

    def _check_promises(self, node: SimNode, m: Message) -> None:
        """What a message promises must be on the sender's disk when it leaves."""
        if not self.check_promises:
            return
        hs, disk = node.disk.hard_state, node.disk
        pre_vote = isinstance(m, RequestVote | RequestVoteResponse) and m.pre_vote
        # a heartbeat answer only says the sender knew no higher term when the heartbeat
        # came, which needs no disk (votes, which do, are checked below)
        at_once = pre_vote or isinstance(m, HeartbeatResponse)
        if not at_once and m.term > hs.term:
            self._fail(
                "persistence", f"{node.id} sends {describe(m)} while its durable term is {hs.term}"
            )
        if (
            isinstance(m, RequestVoteResponse)
            and m.granted
            and not m.pre_vote
            and hs != HardState(m.term, m.dst)
            and hs.term <= m.term  # a later durable term also rules out voting again
        ):
            self._fail("persistence", f"{node.id} grants {describe(m)} while its disk holds {hs}")
        if (
            isinstance(m, AppendEntriesResponse)
            and m.success
            and m.index > disk.last_index
            and hs.term == m.term  # once in a later term, the disk may have been cut since
        ):
            self._fail(
                "persistence",
                f"{node.id} acknowledges {describe(m)} but its disk ends at {disk.last_index}",
            )

    def _arrive(self, envelope: Envelope) -> None:
        m = envelope.msg
        dst = self.by_id[m.dst]
        lost = (
            dst.core is None
            or (m.src, m.dst) in self.blocked
            or (self.profile.drop > 0 and self.net_rng.random() < self.profile.drop)
        )
        if isinstance(m, InstallSnapshot):
            src = self.by_id[m.src]
            if src.core is not None and src.incarnation == envelope.sender_incarnation:
                src.core.report_snapshot(m.dst, delivered=not lost)
                src.dirty = True
            if not lost:
                dst.disk.received[(m.meta.index, m.meta.term)] = envelope.data
        self.arrivals.append((self.now, m, lost))
        if lost or dst.core is None:
            return
        term = dst.core.term
        dst.core.step(m)
        dst.dirty = True
        if isinstance(m, RequestVote) and m.pre_vote and dst.core.term != term:
            self._fail(
                "prevote", f"{describe(m)} moved {m.dst} from term {term} to {dst.core.term}"
            )

    # --- faults ----------------------------------------------------------------------------

    def _inject_faults(self) -> None:
        p, r = self.profile, self.fault_rng
        if self.partition_until is not None and self.now >= self.partition_until:
            self.heal_partition()
        if p.partition_every and not self.blocked and r.random() * p.partition_every < 1:
            self._random_partition()
        if p.crash_every and r.random() * p.crash_every < 1:
            up = [n.id for n in self.nodes if n.core is not None]
            leader = self.leader()
            if leader is not None and r.random() < 0.4:
                self._crash_fault(leader)
            elif up:
                self._crash_fault(r.choice(up))
        for node_id, when in list(self.doomed.items()):
            if when <= self.now:
                del self.doomed[node_id]
                self._crash_fault(node_id)
        if p.member_every and self.member_rng.random() * p.member_every < 1:
            leader = self.leader()
            if leader is not None:
                self._change_membership(leader)
        if p.transfer_every and r.random() * p.transfer_every < 1:
            leader = self.leader()
            if leader is not None:
                target = r.choice([n.id for n in self.nodes if n.id != leader])
                self.transfer(leader, target)
        if p.clock_jump_every and self.clock_rng.random() * p.clock_jump_every < 1:
            self._jump_clock()

    def _jump_clock(self) -> None:
        """Move a node's wall clock by seconds, forwards or backwards (the leader's, often)."""
        r = self.clock_rng
        leader = self.leader()
        node = (
            self.by_id[leader] if leader is not None and r.random() < 0.5 else r.choice(self.nodes)
        )
        jump = r.randint(*self.profile.clock_jump_ms) * r.choice((-1, 1))
        node.clock_offset_ms += jump
        self.report.clock_jumps += 1
        self.trace.append(f"{self.now}: {node.id}'s clock jumps by {jump} ms")

    def _change_membership(self, leader: NodeId) -> None:
        """Ask the leader for a random membership change, as an operator would."""
        core = self.by_id[leader].core
        assert core is not None, "the leader is up"
        r, members = self.member_rng, core.members
        changes = [MemberChange(ChangeKind.PROMOTE, n) for n in sorted(members.learners)]
        changes += [MemberChange(ChangeKind.REMOVE, n) for n in sorted(members.learners)]
        if len(members.voters) > MIN_VOTERS:
            changes += [MemberChange(ChangeKind.REMOVE, n) for n in sorted(members.voters)]
        new_id = f"n{len(self.nodes) + 1}"
        if len(members.all) < MAX_MEMBERS:
            address = MemberAddress(f"{new_id}:7000", f"{new_id}:6379")
            changes.append(MemberChange(ChangeKind.ADD, new_id, address))
        if not changes:
            return
        taken = self.change_members(leader, r.choice(changes))
        cut = self.profile.cut_changing_leader
        if taken and cut and r.random() < cut:
            rest = [n.id for n in self.nodes if n.id != leader]
            self.partition(
                {(leader, b) for b in rest} | {(b, leader) for b in rest},
                until=self.now + r.randrange(*self.profile.partition_steps),
                kind="the changing leader",
            )

    def change_members(self, leader: NodeId, change: MemberChange) -> bool:
        """Ask `leader` for `change` (an added node is created at once); returns whether
        the leader took it."""
        node = self.by_id[leader]
        assert node.core is not None, f"{leader} is down"
        try:
            node.core.change_members(change)
        except (ChangeNotAllowedYet, InvalidChange, TransferInProgress):
            return False
        self.report.member_changes += 1
        self.trace.append(f"{self.now}: {leader} {change.kind.value}s {change.node}")
        node.dirty = True
        if change.kind is ChangeKind.ADD:
            self._add_node(change.node)
        return True

    def _add_node(self, node_id: NodeId) -> None:
        """A new node on an empty disk: it knows no configuration until the leader's log
        reaches it."""
        node = SimNode(node_id, TICK * self.node_rng.uniform(0.9, 1.1), Members(frozenset()))
        self.nodes.append(node)
        self.by_id[node_id] = node
        self._start(node)

    def _crash_fault(self, node_id: NodeId) -> None:
        """Crash a node for a random while, unless too many are down already."""
        down = sum(1 for n in self.nodes if n.core is None)
        if down < self.profile.max_down:
            self.crash(node_id)
            self.by_id[node_id].restart_at = (
                self.now + 1 + self.fault_rng.randrange(self.profile.downtime)
            )

    def _random_partition(self) -> None:
        r = self.fault_rng
        ids = [n.id for n in self.nodes]
        r.shuffle(ids)
        kind = r.choice(self.profile.partition_kinds)
        leader = self.leader()
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
        self.partition(
            links, until=self.now + r.randrange(*self.profile.partition_steps), kind=kind
        )

    def partition(
        self, links: set[tuple[NodeId, NodeId]], *, until: int | None = None, kind: str = "manual"
    ) -> None:
        """Cut the given directed links (until the step `until`, or until healed)."""
        self.blocked = set(links)
        self.partition_until = until
        self.report.partitions += 1
        self.trace.append(f"{self.now}: partition ({kind}) cuts {sorted(links)}")

    def isolate(self, group: list[NodeId]) -> None:
        """A symmetric partition: `group` on one side, everyone else on the other."""
        rest = [n.id for n in self.nodes if n.id not in group]
        self.partition(
            {(a, b) for a in group for b in rest} | {(b, a) for a in group for b in rest}
        )

    def heal_partition(self) -> None:
        if self.blocked:
            self.trace.append(f"{self.now}: the partition heals")
        self.blocked = set()
        self.partition_until = None

    def heal(self) -> None:
        """End every fault for good: links, crashed nodes, a lossy network."""
        self.faults = False
        self.doomed.clear()
        self.heal_partition()
        for node in self.nodes:
            if node.core is None:
                self.restart(node.id)
        self.profile = attrs.evolve(
            self.profile, drop=0.0, duplicate=0.0, detour=0.0, stale_snapshots=0.0
        )
        self.trace.append(f"{self.now}: everything heals")

    def crash(self, node_id: NodeId) -> None:
        node = self.by_id[node_id]
        if node.core is None:
            return
        self.report.crashes += 1
        self.trace.append(
            f"{self.now}: {node_id} crashes ({len(node.writes)} writes lost, term "
            f"{node.core.term}, {node.core.role.value})"
        )
        node.core = None
        node.writes.clear()
        if self.profile.crash_loses_sends:
            kept = [f for f in self.in_flight if f[2].msg.src != node_id]
            self.trace[-1] += f", {len(self.in_flight) - len(kept)} messages lost"
            self.in_flight = kept
            heapq.heapify(kept)
        node.kv, node.snapshot = {}, None
        self._give_up_proposals(node)
        for op in node.reads.values():
            self._end_failed(op)
        for _, op in node.released:
            self._end_failed(op)
        node.reads, node.released = {}, []

    def _give_up_proposals(self, node: SimNode) -> None:
        for ops in node.waiting.values():
            for op in ops:
                self._end_unknown(op)
        node.waiting = {}

    def restart(self, node_id: NodeId) -> None:
        node = self.by_id[node_id]
        if node.core is not None:
            return
        self.trace.append(f"{self.now}: {node_id} restarts")
        self._start(node)

    def _start(self, node: SimNode) -> None:
        disk = node.disk
        core = self.core_factory(
            node.id,
            node.bootstrap,
            rng=random.Random(self.node_rng.getrandbits(64)),
            config=self.plan.config,
            hard_state=disk.hard_state,
            entries=list(disk.entries),
            snapshot=disk.snapshot,
        )
        node.core = core
        node.incarnation += 1
        node.restart_at = None
        node.kv = unpack_kv(disk.snapshot_data)
        node.stamper = Stamper(time_of_state(node.kv))
        for entry in disk.entries:
            node.stamper.observe(stamp_of(entry))
        node.applied = disk.base
        node.snapshot = (disk.snapshot, disk.snapshot_data) if disk.snapshot else None
        node.next_tick = self.now + node.rate * self.node_rng.random()
        node.dirty = True
        self.checker.restarted(node.id, core)
        self.checker.check_state(node.id, node.applied, node.kv)

    def transfer(self, leader: NodeId, target: NodeId) -> None:
        core = self.by_id[leader].core
        if core is None or not core.is_leader:
            return
        self.report.transfers += 1
        self.trace.append(f"{self.now}: {leader} is asked to hand leadership to {target}")
        core.transfer_leadership(target)
        self.by_id[leader].dirty = True

    # --- clients ---------------------------------------------------------------------------

    def _client_step(self, client: Client) -> None:
        op = client.op
        if op is not None:
            if op.deadline is not None and self.now >= op.deadline:
                if op.via_log:
                    self._end_unknown(op)
                else:
                    self._end_failed(op)  # a read that never answered had no effect
                client.target = self.client_rng.choice(self.nodes).id  # try someone else
            return
        if self.clients_on and self.now >= client.next_at:
            self._issue(client)

    def _issue(self, client: Client) -> None:
        r = self.client_rng
        slot = r.randrange(len(self.keys))
        key = self.keys[slot]
        kind, args, via_log = client.choose(r, key, slot % 2 == 0, self.plan.reads)
        ttl = 0
        if kind is Kind.SET and slot % 2 == 1 and self.clock_rng.random() < self.profile.ttl:
            ttl = self.clock_rng.randint(20, 800)
        handle = self.history.invoke(client.id, key, kind, args)
        if ttl:
            # the value may vanish at one instant from now on, when its deletion commits
            self.history.invoke("expiry", key, Kind.EXPIRE, args)
        deadline = self.now + self.profile.op_timeout if self.faults else None
        op = Op(
            next(self.op_ids), client, handle, kind, key, args, via_log, deadline, not self.faults
        )
        client.op = op
        node = self.by_id[client.target]
        core = node.core
        if core is None:
            self._end_failed(op)  # connection refused
            client.target = r.choice(self.nodes).id
            return
        node.dirty = True
        try:
            if via_log:
                command = encode_command(op.id, kind, key, (*args, ttl) if ttl else args)
                [(op.index, op.term)] = self._propose(node, core, [command])
                node.waiting.setdefault(op.index, []).append(op)
            else:
                op.floor, op.term_floor = len(self.checker.committed) - 1, self.report.max_term
                core.read_index(op.id)
                node.reads[op.id] = op
        except NotLeader as e:
            self._end_failed(op)
            client.target = e.leader_id or r.choice(self.nodes).id
        except TransferInProgress:
            self._end_failed(op)

    def _keep_log_moving(self) -> None:
        """Once clients stop, a proposal stranded past the end of a deposed leader's log
        would wait for ever for its index to be applied: while any is pending, propose
        fillers (a read of a key no client uses), as further traffic would."""
        leader = self.leader()
        if leader is not None and any(c.op is not None and c.op.via_log for c in self.clients):
            core = self.by_id[leader].core
            assert core is not None
            try:
                self._propose(self.by_id[leader], core, [FILLER])
            except TransferInProgress:
                return
            self.by_id[leader].dirty = True

    def _finish_op(self, op: Op) -> None:
        op.done = True
        client = op.client
        client.op = None
        client.next_at = self.now + self.client_rng.randrange(2 * TICK)

    def _end_ok(self, op: Op, output: object) -> None:
        self._finish_op(op)
        self.history.complete(op.handle, output)
        self.report.ops_ok += 1
        op.client.saw(op, output)

    def _end_failed(self, op: Op) -> None:
        if not op.done:
            self._finish_op(op)
            self.history.fail(op.handle)
            self.report.ops_failed += 1

    def _end_unknown(self, op: Op) -> None:
        if op.done:
            return
        if op.issued_after_heal:
            self._fail(
                "liveness",
                f"operation {op.id} ({op.kind.value} {op.key!r}), issued "
                f"after healing, ended indeterminate",
            )
        self._finish_op(op)
        self.history.unknown(op.handle)
        self.report.ops_unknown += 1

    # --- checks ----------------------------------------------------------------------------

    def _check(self) -> None:
        checker = self.checker
        fresh: list[int] = []
        for node in self.nodes:
            if node.dirty and node.core is not None:
                checker.check_node(node.id, node.core, fresh)
        for node in self.nodes:
            core = node.core
            if core is not None and core.role is Role.LEADER and (node.dirty or fresh):
                if core.term not in checker.leaders:
                    self._new_leader(node.id, core.term)
                checker.check_leader(node.id, core, fresh)
        for node in self.nodes:
            if node.dirty and node.core is not None:
                checker.check_following(node.id, node.core)
            node.dirty = False
        committed = checker.committed
        for index in range(self.survival_checked + 1, len(committed)):
            term = committed[index]
            if term is not None:
                self._check_survives(index, term)
        self.survival_checked = len(committed) - 1
        self.report.max_commit = len(committed) - 1

    def _check_survives(self, index: int, term: int) -> None:
        """A newly committed entry must survive any election: every voter whose log lacks
        it (in memory or on disk) is less up to date than the durable logs of a majority
        of the configuration its log holds, so it can never win (Raft paper 5.4; Figure 8
        shows an entry on a majority that does not survive)."""
        durable = {
            n.id: (n.disk.term(n.disk.last_index) or 0, n.disk.last_index) for n in self.nodes
        }
        for node in self.nodes:
            logs = [
                (node.disk.base, node.disk.term, node.disk.last_index, self._disk_members(node))
            ]
            if node.core is not None:
                log = node.core.log
                logs.append((log.snapshot_index, log.term, log.last_index, node.core.members))
            for base, term_at, last_index, members in logs:
                if index <= base or term_at(index) == term or node.id not in members.voters:
                    continue
                last = (term_at(last_index) or 0, last_index)
                supporters = sorted(v for v in members.voters if last >= durable[v])
                if len(supporters) >= members.quorum():
                    self._fail(
                        "commit survival",
                        f"({index}, {term}) is committed, but {node.id} could still be "
                        f"elected without it: its log ends at {last}, as up to date as the "
                        f"durable logs of {supporters}",
                    )

    @staticmethod
    def _disk_members(node: SimNode) -> Members:
        """The configuration a core restarted from the node's disk would be in."""
        disk = node.disk
        configs = Configurations(disk.snapshot.members if disk.snapshot else node.bootstrap)
        configs.appended(disk.entries)
        return configs.current

    def _new_leader(self, node_id: NodeId, term: int) -> None:
        self.trace.append(f"{self.now}: {node_id} leads term {term}")
        self.report.max_term = max(self.report.max_term, term)
        r, kill = self.fault_rng, self.profile.kill_new_leader
        if self.faults and kill and r.random() < kill:
            self.doomed[node_id] = (
                self.now + self.profile.kill_after + r.randrange(self.profile.kill_within)
            )
        eager = self.profile.member_on_election
        if self.faults and eager and self.member_rng.random() < eager:
            self._change_membership(node_id)

    def _check_history(self) -> None:
        result = check(self.history.operations(), key_budget=30.0)
        if not result.ok:
            self._fail("linearizability", result.explain())

    def leader(self) -> NodeId | None:
        """The up node that leads the highest term, if any."""
        leaders = [(n.core.term, n.id) for n in self.nodes if n.core and n.core.is_leader]
        return max(leaders)[1] if leaders else None

    def _leader_committed(self) -> bool:
        leader = self.leader()
        core = self.by_id[leader].core if leader else None
        return core is not None and core.committed_in_term()

    def _settled(self) -> bool:
        if any(client.op is not None for client in self.clients):
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
            self._fail("state machine safety", f"nodes applied to {core.commit} differ: {states}")
        return True

    def describe_nodes(self) -> str:
        lines = []
        for node in self.nodes:
            core = node.core
            if core is None:
                lines.append(f"  {node.id}: down")
                continue
            lines.append(
                f"  {node.id}: {core.role.value} term {core.term} leader {core.leader_id} "
                f"log {core.log.snapshot_index}+{len(core.log.entries)} commit {core.commit} "
                f"applied {node.applied} writes {len(node.writes)}"
            )
        pending = [c.op for c in self.clients if c.op is not None]
        lines.extend(f"  pending: op {op.id} {op.kind.value} at {op.index}" for op in pending)
        return "\n".join(lines)

    def _fail(self, prop: str, detail: str) -> NoReturn:
        trace = "\n".join(f"  {line}" for line in self.trace)
        transcript = "\n".join(
            f"  {step}: {describe(m)}{' (lost)' if lost else ''}" for step, m, lost in self.arrivals
        )
        raise SimulationFailure(
            f"{prop} violated at step {self.now} ({self.plan.describe()}):\n{detail}\n"
            f"recent events:\n{trace}\n"
            f"last messages to arrive:\n{transcript}\n"
            f"replay: {self.plan.replay or REPLAY.format(seed=self.plan.seed)}"
        )
