"""What trioraft's runtime does for each core, simulated (`Host`): start a core from the
node's disk, tick it on the node's own drifting clock, honour its Ready as the core's
contract demands (a write lands after a seeded fsync latency, behind any earlier one, and
the messages that wait for it go out then; committed entries apply to the state machine;
released reads are served once applied), snapshot and compact, and crash and restart
nodes, losing what was not durable."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TypeAlias

from sim.cluster import Cluster
from sim.invariants import check_ack, check_cut, check_unexpired
from sim.linearizability import Kind
from sim.network import Network
from sim.nodes import Op, SimNode, Write
from sim.plans import TICK
from sim.state_machine import (
    DEADLINE,
    apply_entry,
    deadline_of,
    decode_command,
    encode_command,
    pack_kv,
    stamp_of,
    time_of_state,
    unpack_kv,
)
from sim.workload import Workload
from trioraft.core.errors import NotLeader, TransferInProgress
from trioraft.core.messages import (
    AppendEntriesResponse,
    Entry,
    EntryKind,
    Members,
    NodeId,
    SnapshotMeta,
)
from trioraft.core.raft import Raft, Role
from trioraft.core.ready import Ready
from trioraft.runtime.stamps import Stamper, unstamp

#: builds a node's core (Raft, or a mutant of it), with Raft's arguments
CoreFactory: TypeAlias = Callable[..., Raft]


class Host:
    def __init__(
        self,
        cluster: Cluster,
        network: Network,
        workload: Workload,
        rng: random.Random,
        core_factory: CoreFactory,
    ) -> None:
        """Hosting `cluster`'s nodes; `rng` draws the nodes' clocks, fsync latencies and
        the cores' own random streams."""
        self.cluster = cluster
        self.network = network
        self.workload = workload
        self.rng = rng
        self.core_factory = core_factory

    # --- nodes up and down -----------------------------------------------------------------

    def add_node(self, node_id: NodeId, bootstrap: Members) -> SimNode:
        """A node on an empty disk, not started yet; its core starts from `bootstrap`."""
        node = SimNode(node_id, TICK * self.rng.uniform(0.9, 1.1), bootstrap)
        self.cluster.add(node)
        return node

    def start(self, node: SimNode) -> None:
        disk = node.disk
        core = self.core_factory(
            node.id,
            node.bootstrap,
            rng=random.Random(self.rng.getrandbits(64)),
            config=self.cluster.plan.config,
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
        node.next_tick = self.cluster.now + node.rate * self.rng.random()
        node.dirty = True
        self.cluster.checker.restarted(node.id, core)
        self.cluster.checker.check_state(node.id, node.applied, node.kv)

    def crash(self, node_id: NodeId) -> None:
        cluster = self.cluster
        node = cluster.by_id[node_id]
        if node.core is None:
            return
        cluster.report.crashes += 1
        event = (
            f"{node_id} crashes ({len(node.writes)} writes lost, term "
            f"{node.core.term}, {node.core.role.value})"
        )
        node.core = None
        node.writes.clear()
        if cluster.profile.crash_loses_sends:
            event += f", {self.network.drop_sent_by(node_id)} messages lost"
        cluster.event(event)
        node.kv, node.snapshot = {}, None
        self.give_up_proposals(node)
        for op in node.reads.values():
            self.workload.end_failed(op)
        for _, op in node.released:
            self.workload.end_failed(op)
        node.reads, node.released = {}, []

    def give_up_proposals(self, node: SimNode) -> None:
        for ops in node.waiting.values():
            for op in ops:
                self.workload.end_unknown(op)
        node.waiting = {}

    def restart(self, node_id: NodeId) -> None:
        node = self.cluster.by_id[node_id]
        if node.core is not None:
            return
        self.cluster.event(f"{node_id} restarts")
        self.start(node)

    # --- each step -------------------------------------------------------------------------

    def land_due(self) -> None:
        """Restart the nodes whose downtime is over; land the writes that are due."""
        now = self.cluster.now
        for node in self.cluster.nodes:
            if node.restart_at is not None and node.restart_at <= now:
                self.restart(node.id)
            writes = node.writes
            while writes and writes[0].done_at <= now:
                self._land(node, writes.popleft())

    def tick_due(self) -> None:
        """Tick every node whose own clock says so."""
        now = self.cluster.now
        for node in self.cluster.nodes:
            if node.core is not None and node.next_tick <= now:
                term = node.core.term
                node.core.tick()
                if node.core.role is Role.PRE_CANDIDATE and node.core.term != term:
                    self.cluster.fail(
                        "prevote",
                        f"{node.id} went from term {term} to {node.core.term} to ask for PreVotes",
                    )
                node.dirty = True
                drifted = node.rate * self.rng.uniform(0.97, 1.03)
                node.rate = min(max(drifted, 0.8 * TICK), 1.2 * TICK)
                node.next_tick += node.rate

    def compact_and_ready(self) -> None:
        """Let nodes snapshot, and honour the Ready of every node that had any input."""
        for node in self.cluster.nodes:
            core = node.core
            if core is not None:
                if node.applied - core.log.snapshot_index >= self.cluster.profile.snapshot_every:
                    self._compact(node, core)
                if node.dirty:
                    ready = core.ready()
                    if not ready.empty:
                        self._handle_ready(node, core, ready)

    def sweep(self) -> None:
        """Every leader proposes the deletion of the keys past their deadline on its clock."""
        for node in self.cluster.nodes:
            core = node.core
            if core is None or not core.is_leader:
                continue
            now = self.cluster.time_ms(node)
            due = tuple(
                key[len(DEADLINE) :]
                for key, deadline in sorted(node.kv.items())
                if key.startswith(DEADLINE) and int(deadline) <= now
            )
            if due:
                try:
                    self.cluster.propose(node, core, [encode_command(0, Kind.EXPIRE, b"", due)])
                except TransferInProgress:
                    continue
                node.dirty = True

    # --- the Ready contract ----------------------------------------------------------------

    def _handle_ready(self, node: SimNode, core: Raft, rd: Ready) -> None:
        cluster, workload = self.cluster, self.workload
        if rd.members is not None and node.id not in rd.members.all and rd.members.voters:
            # removed: the leader may stop sending it the log, so its proposals may never
            # be applied here; their clients give up (as the runtime's request timeout does)
            self.give_up_proposals(node)
        for m in rd.messages_after_persist:
            if isinstance(m, AppendEntriesResponse) and m.success and m.term == core.term:
                check_ack(cluster, node.id, core, m)
        data = b""
        if rd.snapshot is not None:
            data = self._install(node, rd.snapshot)
        if rd.must_sync or (node.writes and rd.messages_after_persist):
            done = cluster.now
            if rd.must_sync:
                done += 1 + self.rng.randrange(cluster.profile.fsync)
            if node.writes:
                done = max(done, node.writes[-1].done_at)
            node.writes.append(
                Write(rd.snapshot, data, rd.hard_state, rd.entries, rd.messages_after_persist, done)
            )
        else:
            self.network.send_all(node, rd.messages_after_persist)
        self.network.send_all(node, rd.messages)
        for entry in rd.committed:
            self._apply(node, entry)
        for read in rd.reads:
            op = node.reads.pop(read.ctx, None)
            if op is not None:
                if read.index < op.floor or core.term < op.term_floor:
                    cluster.fail(
                        "read index safety",
                        f"{node.id} (term {core.term}) releases read {op.id} at {read.index}, "
                        f"but {op.floor} was committed, and term {op.term_floor} led, before "
                        f"the read arrived",
                    )
                node.released.append((read.index, op))
        for ctx in rd.dropped_reads:
            op = node.reads.pop(ctx, None)
            if op is not None:
                workload.end_failed(op)
        if node.released:
            self._serve_reads(node)

    def _install(self, node: SimNode, meta: SnapshotMeta) -> bytes:
        """Ready.snapshot: the state machine becomes the snapshot the core switched to."""
        cluster = self.cluster
        data = node.disk.received.get((meta.index, meta.term))
        if data is None:
            cluster.fail("ready contract", f"{node.id} installs {meta}, which it never received")
        node.kv = unpack_kv(data)
        node.applied = meta.index
        node.snapshot = (meta, data)
        node.stamper.observe(time_of_state(node.kv))
        cluster.checker.check_state(node.id, meta.index, node.kv)
        cluster.report.snapshots_installed += 1
        cluster.event(f"{node.id} installs the snapshot at {meta.index}")
        for index in sorted(i for i in node.waiting if i <= meta.index):
            for op in node.waiting.pop(index):
                self.workload.end_unknown(op)  # the outcome is folded into the snapshot, unseen
        return data

    def _land(self, node: SimNode, write: Write) -> None:
        """A durable write completes; the messages that waited for it go out."""
        cluster = self.cluster
        disk, core = node.disk, node.core
        assert core is not None
        if write.snapshot is not None:
            check_cut(cluster, node.id, disk.entries_from(write.snapshot.index + 1), [])
            disk.install(write.snapshot)
            disk.snapshot_data = write.snapshot_data
            disk.received = {k: v for k, v in disk.received.items() if k[0] > write.snapshot.index}
        if write.hard_state is not None:
            old, new = disk.hard_state, write.hard_state
            if cluster.check_promises and (
                new.term < old.term
                or (new.term == old.term and old.vote is not None and new.vote != old.vote)
            ):
                cluster.fail("persistence", f"{node.id}'s durable hard state went {old} -> {new}")
            disk.hard_state = new
        entries = write.entries
        if entries:
            first = entries[0].index
            if first <= disk.base or first > disk.last_index + 1:
                cluster.fail(
                    "ready contract",
                    f"{node.id} writes entries from {first} onto a disk holding "
                    f"{disk.base + 1}..{disk.last_index}",
                )
            check_cut(cluster, node.id, disk.entries_from(first), entries)
            disk.append(entries)
            for entry in entries:
                node.stamper.observe(stamp_of(entry))
        self.network.send_all(node, write.after)
        if entries:
            core.persisted(entries[-1].index, entries[-1].term)
            node.dirty = True

    def _apply(self, node: SimNode, entry: Entry) -> None:
        cluster, workload = self.cluster, self.workload
        if entry.index != node.applied + 1:
            cluster.fail("ready contract", f"{node.id} applied {node.applied}, is handed {entry}")
        if cluster.check_promises and node.disk.term(entry.index) != entry.term:
            cluster.fail(
                "persistence", f"{node.id} is handed {entry} to apply before it is durable"
            )
        output: object = None
        op_id = 0
        if entry.kind is EntryKind.COMMAND:
            before = time_of_state(node.kv)
            stamped = stamp_of(entry)
            if stamped is not None and stamped < before:
                cluster.fail(
                    "monotonic stamps",
                    f"{node.id} applies {entry} stamped {stamped}, after a stamp of {before}",
                )
            _, command = unstamp(entry.data)
            _, kind, key, _ = decode_command(command)
            deadline = deadline_of(node.kv, key)
            op_id, output, expired = apply_entry(node.kv, entry.data)
            cluster.report.expired += len(expired)
            if kind is Kind.GET:
                check_unexpired(cluster, node.id, key, output, deadline, time_of_state(node.kv))
        node.applied = entry.index
        cluster.checker.check_apply(node.id, entry, node.kv)
        for op in node.waiting.pop(entry.index, ()):
            if op.done:
                continue
            if op.term != entry.term:
                workload.end_failed(op)  # another entry won the index: ours never commits
            elif op.id != op_id:
                cluster.fail(
                    "log matching",
                    f"{node.id} proposed op {op.id} at ({entry.index}, "
                    f"{entry.term}) but applies {entry} there",
                )
            else:
                workload.end_ok(op, output)

    def _serve_reads(self, node: SimNode) -> None:
        cluster = self.cluster
        waiting = []
        for index, op in node.released:
            if op.done:
                continue
            if index <= node.applied:
                value, deadline = node.kv.get(op.key), deadline_of(node.kv, op.key)
                served_at = cluster.time_ms(node)
                if cluster.expiry and value is not None and 0 < deadline <= served_at:
                    cluster.report.expired_reads += 1
                    self._read_through_log(node, op)
                    continue
                check_unexpired(cluster, node.id, op.key, value, deadline, served_at)
                self.workload.end_ok(op, value)
            else:
                waiting.append((index, op))
        node.released = waiting

    def _read_through_log(self, node: SimNode, op: Op) -> None:
        """A read that meets a key past its deadline on the serving leader's clock waits
        for the key's deletion: it goes through the log, stamped at least that late, so
        the key is gone when it applies (as trioraft's server has the deletion committed
        before it answers)."""
        core = node.core
        assert core is not None
        try:
            [(op.index, op.term)] = self.cluster.propose(
                node, core, [encode_command(op.id, Kind.GET, op.key, ())]
            )
        except (NotLeader, TransferInProgress):
            self.workload.end_failed(op)
            return
        op.via_log = True
        node.waiting.setdefault(op.index, []).append(op)
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
            self.cluster.fail("persistence", f"{node.id} applied {index} which is not on its disk")
        meta = SnapshotMeta(index, term, core.members_at(index))
        data = pack_kv(node.kv)
        disk.compact(meta)
        disk.snapshot_data = data
        core.compact(index)
        node.snapshot = (meta, data)
