"""The Trio runtime of one node: it owns a Raft core, its storage and its transport.

Tasks, all in one nursery:
- the driver: wakes whenever something was fed to the core (a tick, a proposal, a read),
  takes one Ready and acts on it without awaiting in between (`_drive`), so each Ready is
  handled whole; the proposals (and reads) made in one pass of the event loop while
  others are in flight go out in one Ready, and one made alone goes out at once;
- the ticker: one `tick()` every tick interval;
- the pump: moves peer messages from the transport into the core, every message already
  received at once, and then takes and handles the Ready itself: an answer to a peer
  (an append acknowledged, a commit) goes out without waiting a pass for the driver;
- the WAL writer: writes and fsyncs the Readys queued by the driver, in order, in a
  thread of its own, with group commit, then handles the Ready that follows itself
  (wal_writer.py);
- the follower read batchers: each asks the leader for one read index for every read
  that arrived since the previous question, so a few questions can be in flight;
- the forwarder: sends a follower's writes to the leader, many in one call
  (`forwarding.py`).

The node replicates a state machine it knows only through the `StateMachine` protocol
(runtime/statemachine.py): it applies the committed commands to it, and takes, sends and
installs its snapshots.

Client work: `write()` runs commands on the leader (forwarding them over the peer link
from a follower) and waits until they are applied; `read_barrier()` waits until a
linearizable read may be served locally (a follower asks the leader for the read index).

A write's outcomes, and how they travel between nodes: outcomes.py.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import random
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sized
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs
import trio

from trioraft.core.config import RaftConfig
from trioraft.core.errors import (
    ChangeNotAllowedYet,
    InvalidChange,
    NotLeader,
    TooMuchUncommitted,
    TransferInProgress,
)
from trioraft.core.membership import ChangeKind, MemberChange, decode_members
from trioraft.core.messages import (
    Entry,
    EntryKind,
    InstallSnapshot,
    MemberAddress,
    Members,
    NodeId,
    SnapshotMeta,
)
from trioraft.core.raft import Raft, Role
from trioraft.core.ready import Ready
from trioraft.logs import NodeLogger
from trioraft.runtime import incarnation, joining
from trioraft.runtime.deadlines import Deadlines
from trioraft.runtime.forwarding import Forwarder
from trioraft.runtime.joining import Ask, Joining
from trioraft.runtime.metrics import NodeMetrics
from trioraft.runtime.outcomes import (
    FAILURES,
    WRITE_FAILURES,
    Admission,
    ChangeOutcome,
    Indeterminate,
    LeaderChanged,
    Outcome,
    Overloaded,
    Refused,
    Unavailable,
    WriteFailure,
    admission_from_wire,
    change_from_wire,
    change_to_wire,
    failure_to_wire,
)
from trioraft.runtime.peers import Peers, RpcTable, call_via, led
from trioraft.runtime.snapshotter import SnapshotPolicy, Snapshotter
from trioraft.runtime.stamps import Stamper, stamp, time_of, unstamp, wall_clock_ms
from trioraft.runtime.statemachine import R, StateMachine
from trioraft.runtime.steps import Release, run_stepwise
from trioraft.runtime.waiters import Proposal, ReadWaiter, Waiter
from trioraft.runtime.wal_item import WalItem
from trioraft.runtime.wal_writer import WalWriter
from trioraft.storage.wal import Recovery, WriteAheadLog
from trioraft.transport import rpcs
from trioraft.transport.addresses import parse_address
from trioraft.transport.base import Address, Payload, Transport
from trioraft.transport.codec import method_of
from trioraft.transport.errors import RpcBadAnswer, RpcError, RpcRemoteError, RpcUnavailable
from trioraft.wakeup import Wakeup

if TYPE_CHECKING:
    from trioraft.storage.snapshots import SnapshotStore
    from trioraft.storage.state import Restored


#: read-index questions a follower may have in flight to the leader at once: reads that
#: arrive while one is answered are asked about at once, not after it
FOLLOWER_READ_QUESTIONS = 4


#: the requests a node that is not a member may make over the peer transport
GUEST_METHODS = frozenset({method_of(rpcs.Join), method_of(rpcs.ConfigurationQuery)})

#: how long a client request may wait for its outcome, unless the options say otherwise
REQUEST_TIMEOUT = 5.0

T = TypeVar("T")
A = TypeVar("A")


@attrs.frozen
class NodeOptions:
    node_id: NodeId
    members: Members
    #: the interval of the core's clock
    tick_seconds: float
    raft: RaftConfig
    #: how long a client request may wait for its outcome
    request_timeout: float = REQUEST_TIMEOUT
    #: how long a follower waits for a leader to appear before answering "no leader"
    leader_wait: float = 2.0
    fsync: bool = True
    snapshot_policy: SnapshotPolicy = attrs.Factory(SnapshotPolicy)
    #: the peers' addresses the node starts with (the config file's); the configuration
    #: in the log adds and removes members as they change
    peer_addresses: Mapping[NodeId, Address] = attrs.Factory(dict)


class Node(Generic[R]):
    def __init__(
        self,
        options: NodeOptions,
        wal: WriteAheadLog,
        recovery: Recovery | Restored,
        transport_factory: Callable[[Callable[[NodeId, str, Payload], Any]], Transport],
        state: StateMachine[R],
        *,
        rng: random.Random | None = None,
        snapshots: SnapshotStore | None = None,
        snapshot: SnapshotMeta | None = None,
        incarnation: str | None = None,
        fresh: bool = False,
        clock: Callable[[], int] = wall_clock_ms,
        join: Joining | None = None,
        ask_address: Ask | None = None,
    ) -> None:
        """A node resuming from its storage: `state`, as the newest snapshot (if any,
        `snapshot`) holds it, and the log. Without a snapshot store the node never
        snapshots; without an incarnation it does not check that its data dir is the one
        the cluster knows (tests). `clock` is the wall clock (Unix ms) its proposals are
        stamped with (see stamps.py). With `join`, it first asks to be added to a running
        cluster (joining.py). `ask_address` reaches a peer that refuses this node's link
        (one that no longer knows it) as a guest, to ask whether it was removed."""
        self.options = options
        #: what happened to the node, counted for /metrics
        self.metrics = NodeMetrics()
        self.id = options.node_id
        self.log = NodeLogger(options.node_id, "trioraft.node")
        self.wal = wal
        self.state = state
        meta = snapshot
        after = meta.index if meta else 0
        self.core = Raft(
            options.node_id,
            options.members,
            rng=rng or random.Random(),
            config=options.raft,
            hard_state=recovery.hard_state,
            entries=[e for e in recovery.entries if e.index > after],
            snapshot=meta,
            # a node that checks its data dir votes only once the check has passed
            may_vote=incarnation is None,
        )
        self.transport = transport_factory(self.serve_rpc)
        self.peers = Peers(self.transport)
        #: where each other member is reached, as the transport was last told: the
        #: config file's peers, and the members the data dir records (a node that joined
        #: has only the latter)
        self._peer_book: dict[NodeId, Address] = dict(options.peer_addresses)
        self._reach(self.core.members)
        self._clock = clock
        #: the stamps of this node's proposals: never below the latest one in its log
        self._stamper = Stamper(self.state.time)
        for entry in recovery.entries:
            self._observe_stamp(entry)
        self.snapshotter = (
            Snapshotter(self, snapshots, meta, options.snapshot_policy) if snapshots else None
        )
        self._rpc_table = RpcTable(
            {
                rpcs.Propose: self._serve_propose,
                rpcs.ReadIndex: self._serve_read_index,
                rpcs.ChangeMembers: self._serve_change_members,
                rpcs.Transfer: self._serve_transfer,
                rpcs.MemberList: self._serve_member_list,
                rpcs.StatusQuery: self._serve_status,
                rpcs.IncarnationQuery: self._serve_incarnation,
                rpcs.Join: self._serve_join,
                rpcs.ConfigurationQuery: self._serve_configuration,
                **(self.snapshotter.rpc_handlers() if self.snapshotter else {}),
            }
        )
        #: the last log index applied to `state`
        self.applied = self.core.applied_handed
        #: proposals of this node waiting to be applied, by log index
        #: (a membership change's waiter has no result: `Waiter[None]`)
        self._waiters: dict[int, Waiter[Any]] = {}
        #: the client requests waiting, ended by the ticker when their time is up
        self._deadlines = Deadlines()
        #: ReadIndex requests waiting for their index, by token
        self._reads: dict[Hashable, ReadWaiter] = {}
        self._read_ids = itertools.count()
        #: set whenever something was fed to the core; the driver clears it as it wakes
        self._wake = Wakeup()
        #: pulsed whenever `applied` moves or the role changes
        self._progress = Wakeup()
        #: writes and fsyncs what the node queues (`queue_wal`)
        self.wal_writer = WalWriter(
            self,
            wal,
            fsync=options.fsync,
            tick_seconds=options.tick_seconds,
            handle_ready=self._drive,
        )
        #: calls to the leader in flight, cancelled when the leader changes
        self._leader_calls: set[trio.CancelScope] = set()
        #: a follower's writes on their way to the leader
        self._forwarder = Forwarder(self._propose_on_leader, self._deadlines)
        #: follower reads waiting for the next read-index question to the leader
        self._follower_reads: list[ReadWaiter] = []
        self._follower_reads_wake = Wakeup()
        self._last_role = self.core.role
        self._last_leader: NodeId | None = None
        self._last_term = self.core.term
        #: called after the role, the leader or the term changed
        self.role_watchers: list[Callable[[], None]] = []
        self.metrics.watch(self)
        self.stopping = False
        #: this data dir's incarnation id, and whether the data dir was created just now
        self.incarnation = incarnation
        self.fresh = fresh
        #: whom to ask to add this node, until one has
        self.joining = join
        #: (index, configuration) of a committed configuration without this node that a
        #: peer told it of, and whether it knows itself removed (see `removal`)
        self._told_removed: tuple[int, Members] | None = None
        self._removed = False
        self._ask_address = ask_address
        #: set once the data dir passed the incarnation check: the last start check
        self.accepted = trio.Event()
        #: the node's nursery, for tasks started later (snapshot transfers)
        self.nursery: trio.Nursery | None = None

    # --- running ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                if self.snapshotter is not None:
                    await nursery.start(self.snapshotter.run)
                await nursery.start(self.transport.serve)
                nursery.start_soon(self._driver)
                nursery.start_soon(self._ticker)
                nursery.start_soon(self._pump)
                nursery.start_soon(self.wal_writer.run)
                for _ in range(FOLLOWER_READ_QUESTIONS):
                    nursery.start_soon(self._follower_read_batcher)
                nursery.start_soon(self._forwarder.run)
                nursery.start_soon(self._ask_if_removed)
                self.nursery = nursery
                nursery.start_soon(self._check_incarnation)
                task_status.started()
        finally:
            # no tick will end the requests still waiting: they time out now
            self._deadlines.close()

    async def _check_incarnation(self) -> None:
        """Ask to join when told to; have the peers confirm that this data dir is the one
        the cluster knows (when the node has an incarnation), then set `accepted`."""
        if self.joining is not None:
            await joining.join(self, self.joining)
        if self.incarnation is not None:
            await incarnation.guard(self, self.incarnation, self.fresh)
        self.accepted.set()

    def poke(self) -> None:
        self._wake.set()

    async def _ticker(self) -> None:
        while True:
            await trio.sleep(self.options.tick_seconds)
            self.core.tick()
            self._deadlines.expire(trio.current_time())
            self.wal_writer.report_stall()
            self.poke()

    async def _pump(self) -> None:
        incoming = self.transport.incoming
        async for msg in incoming:
            self.core.step(msg)
            # step everything already here before the driver runs: one Ready for all
            while True:
                try:
                    msg = incoming.receive_nowait()
                except trio.WouldBlock:
                    break
                self.core.step(msg)
            self._drive()

    async def _driver(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._drive()

    def _drive(self) -> None:
        """Take the core's Ready and act on it; called by the tasks that fed the core,
        never across an await, so one Ready is handled whole before the next is taken."""
        self._handle(self.core.ready())
        self._notice_role_change()
        self._notice_removal()

    def _handle(self, rd: Ready) -> None:
        reset = None
        if rd.snapshot is not None:
            assert self.snapshotter is not None
            self.free_stepwise(self.state.replace(self.snapshotter.take_installed(rd.snapshot)))
            self._stamper.observe(self.state.time)
            self.applied = rd.snapshot.index
            reset = (rd.snapshot.index, rd.snapshot.term)
            self.log.info("installed a snapshot from the leader", index=rd.snapshot.index)
        elif self.snapshotter is not None:
            self.snapshotter.drop_installed()
        if rd.members is not None:
            self._follow_configuration(rd.members)
        for entry in rd.entries:
            self._observe_stamp(entry)
        if rd.must_sync or rd.messages_after_persist:
            self.queue_wal(
                WalItem(rd.hard_state, rd.entries, rd.messages_after_persist, reset=reset)
            )
        for msg in rd.messages:
            if isinstance(msg, InstallSnapshot):
                assert self.snapshotter is not None, "a log is compacted only with snapshots"
                self.snapshotter.send_to(msg.dst, msg.term)
            else:
                self.transport.send(msg)
        if rd.committed:
            self._apply(rd.committed)
        for read in rd.reads:
            waiter = self._reads.pop(read.ctx, None)
            if waiter is not None:
                waiter.resolve(read.index, self.time_ms())
        for ctx in rd.dropped_reads:
            waiter = self._reads.pop(ctx, None)
            if waiter is not None:
                waiter.fail()
        for lost in rd.lost_entries:
            self.log.error(
                "a follower lost entries it had acknowledged: its disk dropped fsynced "
                "writes, so writes committed with its help may be on too few nodes; "
                "replicating to it again",
                follower=lost.peer,
                acknowledged=lost.match,
                missing=lost.rejected,
            )

    def _follow_configuration(self, members: Members) -> None:
        """A new configuration is in force (appended, cut back, or from a snapshot): log
        it, and reach new members where it says they are."""
        learners = ",".join(sorted(members.learners))
        self.log.info(
            "configuration", voters=",".join(sorted(members.voters)), learners=learners or "-"
        )
        self._reach(members)

    def _reach(self, members: Members) -> None:
        """Add where `members` says its members are to the transport's book. Removed
        members stay in it: a leader that removed itself still leads until that
        commits, and must be heard meanwhile."""
        book = dict(self._peer_book)
        for peer, address in members.addresses:
            if peer != self.id:
                parsed = parse_address(address.peer)
                book[peer] = (parsed.host, parsed.port)
        if book != self._peer_book:
            self._peer_book = book
            self.transport.set_peers(book)

    def time_ms(self) -> int:
        """What this node's clock reads now (Unix ms), never less than the latest stamp
        in its log: the stamp a proposal made now would get."""
        return max(self._clock(), self._stamper.latest)

    def _observe_stamp(self, entry: Entry) -> None:
        if entry.kind is EntryKind.COMMAND:
            self._stamper.observe(time_of(entry.data))

    def queue_wal(self, item: WalItem) -> None:
        """Have `item` written durably (a Ready's, or the snapshotter's compaction)."""
        self.wal_writer.queue(item)

    def _apply(self, entries: list[Entry]) -> None:
        for entry in entries:
            waiter = self._waiters.pop(entry.index, None)
            if entry.kind is EntryKind.CONFIG:
                self.state.keep_incarnations_of(decode_members(entry.data).all)
            if entry.kind is EntryKind.COMMAND:
                time_ms, command = unstamp(entry.data)
                result = self.state.apply(command, entry.index, time_ms)
                if waiter is not None and waiter.term == entry.term:
                    waiter.settle(result)
                    continue
            elif entry.kind is EntryKind.CONFIG and waiter and waiter.term == entry.term:
                waiter.settle(None)
                continue
            if waiter is not None:  # another entry took the index: definitely not ours
                waiter.settle(Unavailable("leadership changed before the write committed"))
        self.applied = entries[-1].index
        self.free_stepwise(self.state.take_garbage())
        self._signal_progress()
        if self.snapshotter is not None:
            self.snapshotter.applied(entries)

    def free_stepwise(self, parts: list[Sized]) -> None:
        """Free the parts the state machine let go of (after FLUSHALL, or a state
        replaced) a few at a time, so that no step of the event loop frees millions of
        keys."""
        if parts and self.nursery is not None:
            self.nursery.start_soon(run_stepwise, Release(parts))

    def _signal_progress(self) -> None:
        self._progress.pulse()

    def _notice_role_change(self) -> None:
        role, leader, term = self.core.role, self.core.leader_id, self.core.term
        if role is self._last_role and leader == self._last_leader and term == self._last_term:
            return
        if role is not self._last_role:
            self.log.info("role changed", role=role.value, term=self.core.term)
        if leader != self._last_leader and leader is not None:
            self.log.info("leader known", leader=leader, term=self.core.term)
        if leader != self._last_leader:
            for scope in self._leader_calls:
                scope.cancel()
        self._last_role, self._last_leader, self._last_term = role, leader, term
        self._signal_progress()
        for watcher in self.role_watchers:
            watcher()

    # --- removal ---------------------------------------------------------------------

    def removal(self) -> Members | None:
        """The newest committed configuration this node knows of that leaves it out (it
        was removed), or None. Known from its own log (a configuration without it, the
        newest there, and committed), or told by a peer (`_ask_if_removed`) of one at
        least as new as any in its log; a later configuration with it undoes either."""
        core = self.core
        current = core.members
        if current.voters and self.id not in current.all and core.configs.last_index <= core.commit:
            return current
        told = self._told_removed
        if told is not None and told[0] >= core.configs.last_index:
            return told[1]
        return None

    def _notice_removal(self) -> None:
        removed = self.removal()
        if (removed is not None) == self._removed:
            return
        self._removed = removed is not None
        if removed is not None:
            self.log.warning(
                "this node was removed from the cluster: it takes no further part (no "
                "votes, no campaigns) and answers clients -CLUSTERDOWN; stop it",
                voters=",".join(sorted(removed.voters)),
            )
            self.core.withdraw()
        else:
            self.log.info("this node is a member again")
            if self.accepted.is_set():
                self.core.allow_voting()
        self._signal_progress()

    def removed_error(self) -> Unavailable:
        """What a removed node answers clients: where the members are."""
        removed = self.removal() or Members(frozenset())
        where = ", ".join(f"{node} at {address.client}" for node, address in removed.addresses)
        return Unavailable(
            "this node was removed from the cluster; use a member" + (f": {where}" if where else "")
        )

    def committed_configuration(self) -> tuple[int, Members]:
        """The newest committed configuration (as far as this node knows) and the index
        of the entry that made it (the snapshot's index for the log's first one)."""
        core = self.core
        at = max(
            (index for index, _ in core.configs.changes if index <= core.commit),
            default=core.log.snapshot_index,
        )
        return at, core.members_at(core.commit)

    async def _ask_if_removed(self) -> None:
        """Every two election timeouts, while without a leader or left out of its own
        newest configuration, ask the peers for their committed configuration: a node
        removed while it was down or cut off is never sent the change (it would
        campaign in vain for ever), and one that has it may never hear that it
        committed (the leader stops sending to it then)."""
        while True:
            await trio.sleep(2 * self.options.tick_seconds * self.core.config.election_ticks)
            core = self.core
            left_out = core.members.voters and self.id not in core.members.all
            if self._removed or (core.leader_id is not None and not left_out):
                continue
            async with trio.open_nursery() as nursery:
                for peer in sorted(self._peer_book):
                    nursery.start_soon(self._ask_membership, peer)
            self._notice_removal()

    async def _ask_membership(self, peer: NodeId) -> None:
        request = rpcs.ConfigurationQuery()
        try:
            try:
                answer = await self.peers.call(peer, request, 1.0)
            except RpcUnavailable:
                # a member that restarted with a file no longer listing this node
                # refuses its link, but answers a guest
                if self._ask_address is None:
                    raise
                ask = functools.partial(self._ask_address, self._peer_book[peer])
                answer = await call_via(ask, request, 1.0, peer)
        except RpcError:
            return
        index, members = answer.index, answer.members
        told = self._told_removed
        newer = told is None or index > told[0]
        if index and newer and members.voters and self.id not in members.all:
            self._told_removed = (index, members)

    # --- client work -----------------------------------------------------------------

    async def propose(self, commands: list[bytes]) -> list[Outcome[R]]:
        """Append commands as the leader, in one batch stamped with its clock, and wait
        until they are applied. Returns each command's outcome. Raises NotLeader when
        nothing was appended."""
        if self.stopping:
            raise NotLeader(None)
        time_ms = self._stamper.next(self._clock())
        try:
            placed = self.core.propose([stamp(command, time_ms) for command in commands])
        except (NotLeader, TransferInProgress) as exc:
            self.metrics.proposals_not_leader.inc(len(commands))
            if isinstance(exc, NotLeader):
                raise
            raise NotLeader(None) from None
        except TooMuchUncommitted as exc:
            self.metrics.proposals_overloaded.inc(len(commands))
            self.metrics.rejected_overloaded.inc(len(commands))
            return [Overloaded(str(exc))] * len(commands)
        waiters = []
        for index, term in placed:
            waiter: Waiter[R] = Waiter(term)
            self._waiters[index] = waiter
            waiters.append((index, waiter))
        self._send_or_batch(alone=len(self._waiters) == len(waiters))
        if waiters:
            await self._wait_applied_or_expired(waiters)
        for index, waiter in waiters:
            self._count_outcome(index, waiter)
        return [waiter.outcome for _, waiter in waiters]

    async def _wait_applied_or_expired(self, waiters: list[tuple[int, Waiter[Any]]]) -> None:
        """Wait until the entries of one proposal are applied, or the request timeout
        ends their wait (without a cancel scope: see deadlines.py). Entries apply in index
        order, so once the last is done all are; waiting on each would cost a pass of
        the event loop per command of the batch."""
        self._deadlines.add(
            trio.current_time() + self.options.request_timeout, Proposal(waiters, self._waiters)
        )
        await waiters[-1][1].done.wait()

    def _send_or_batch(self, *, alone: bool) -> None:
        """After a proposal or a read was fed to the core: the only one of its kind in
        flight goes out now, in a Ready of its own (a lone client waits no pass for the
        driver); with others in flight, the driver sends all that arrive in this pass of
        the event loop together, in its next one."""
        if alone:
            self._drive()
        else:
            self.poke()

    def _count_outcome(self, index: int, waiter: Waiter[Any]) -> None:
        if not waiter.done.is_set():  # its index went to another entry before it applied
            if self._waiters.get(index) is waiter:
                del self._waiters[index]
            self.metrics.proposals_timeout.inc()
        elif isinstance(waiter.outcome, Indeterminate):
            self.metrics.proposals_timeout.inc()
        elif isinstance(waiter.outcome, Unavailable):
            self.metrics.proposals_lost.inc()
        else:
            self.metrics.proposals_applied.inc()

    async def read_barrier(self) -> int:
        """Return once a linearizable read may be served from the local state machine,
        with the leader's time (Unix ms, `time_ms` on the leader) when it confirmed the
        read. A read lost to a change of leader is asked again (reads are idempotent).
        Raises Unavailable (no leader) or Indeterminate (no answer in time)."""
        deadline = trio.current_time() + self.options.request_timeout
        leader = self.core.leader_id
        point = None
        if leader is not None and not self._removed:
            # the usual case, without a cancel scope: the read's waiter ends by itself at
            # the deadline (deadlines.py), and the node has applied the index already
            with contextlib.suppress(Unavailable):
                point = await self._read_index(leader, deadline)
            if point is not None and self.applied >= point[0]:
                return point[1]
        with trio.move_on_at(deadline):
            if point is None:
                point = await self._read_point(deadline, failed=leader is not None)
            await self.wait_applied(point[0])
            return point[1]
        raise Indeterminate("read could not be confirmed in time")

    async def _read_point(self, deadline: float, *, failed: bool) -> tuple[int, int]:
        """The read index and the leader's time, asked again after each change of leader
        (after a change, when the last question `failed`)."""
        while True:
            if failed:
                await self._progress.wait()
            leader = await self.wait_for_leader()
            try:
                return await self._read_index(leader, deadline)
            except Unavailable:
                failed = True

    async def _read_index(self, leader: NodeId, deadline: float) -> tuple[int, int]:
        if leader == self.id:
            return await self._leader_read_index(deadline)
        return await self._follower_read_index(deadline)

    async def _leader_read_index(self, deadline: float) -> tuple[int, int]:
        ctx = next(self._read_ids)
        waiter = ReadWaiter()
        self.metrics.read_rounds_self.inc()
        try:
            self.core.read_index(ctx)
        except NotLeader:
            raise Unavailable("leadership changed") from None
        self._reads[ctx] = waiter
        self._deadlines.add(deadline, waiter)
        self._send_or_batch(alone=len(self._reads) == 1)
        try:
            return await waiter.wait()
        finally:
            self._reads.pop(ctx, None)

    async def _follower_read_index(self, deadline: float) -> tuple[int, int]:
        waiter = ReadWaiter()
        self._follower_reads.append(waiter)
        self._deadlines.add(deadline, waiter)
        self._follower_reads_wake.set()
        return await waiter.wait()

    async def _follower_read_batcher(self) -> None:
        """One read-index question to the leader serves every read that arrived before
        it was asked. `FOLLOWER_READ_QUESTIONS` of these run side by side: the reads
        arriving while a question is out are asked about by an idle one at once (a read
        waits for a whole question, not also for the end of one already out), and wait
        only while every one is out."""
        while True:
            await self._follower_reads_wake.wait()
            self._follower_reads_wake.clear()
            batch = [waiter for waiter in self._follower_reads if not waiter.settled]
            self._follower_reads = []
            if not batch:
                continue
            leader = self.core.leader_id
            try:
                if leader is None or leader == self.id:
                    raise Unavailable("no leader")
                self.metrics.read_rounds_leader.inc()
                point = led(
                    await self._call_leader(leader, rpcs.ReadIndex(), self.options.request_timeout)
                )
            except (Unavailable, NotLeader, LeaderChanged, RpcError):
                for waiter in batch:
                    waiter.fail()
                continue
            for waiter in batch:
                waiter.resolve(point.index, point.time_ms)

    async def wait_applied(self, index: int) -> None:
        while self.applied < index:
            await self._progress.wait()

    async def wait_for_leader(self, deadline: float = math.inf) -> NodeId:
        """The current leader, waiting up to `leader_wait` for one, and never past
        `deadline` (trio time); else Unavailable."""
        if self._removed:
            raise self.removed_error()
        if self.core.leader_id is not None:
            return self.core.leader_id  # the common case, without a cancel scope
        with trio.move_on_at(min(trio.current_time() + self.options.leader_wait, deadline)):
            while self.core.leader_id is None:
                await self._progress.wait()
            return self.core.leader_id
        raise Unavailable("no leader")

    async def write(self, commands: list[bytes]) -> list[Outcome[R]]:
        """Run writes wherever the leader is, in one batch; returns each one's outcome
        (a batch that could not be run has the same failure for each)."""
        try:
            return await self._at_leader(
                lambda: self.propose(commands),
                lambda leader, timeout: self._forward(leader, commands, timeout),
            )
        except (Unavailable, Indeterminate) as exc:
            return [exc] * len(commands)

    async def _forward(
        self, leader: NodeId, commands: list[bytes], timeout: float
    ) -> list[Outcome[R]]:
        self.metrics.forwarded.inc(len(commands))
        return await self._forwarder.forward(leader, commands, timeout)

    async def _at_leader(
        self,
        here: Callable[[], Awaitable[T]],
        there: Callable[[NodeId, float], Awaitable[T]],
    ) -> T:
        """Run `here()` when this node leads, else `there(leader, timeout)` over the peer
        link, following the leader as it changes until the request timeout."""
        deadline = trio.current_time() + self.options.request_timeout
        while True:
            leader = await self.wait_for_leader(deadline)
            try:
                if leader == self.id:
                    return await here()
                return await there(leader, max(deadline - trio.current_time(), 0.01))
            except (NotLeader, RpcUnavailable):
                await self._await_progress_until(deadline)
                continue
            except LeaderChanged:
                raise Indeterminate("the leader changed before it answered") from None
            except (RpcRemoteError, RpcBadAnswer) as exc:
                raise Indeterminate(str(exc)) from None
            except RpcError:
                raise Indeterminate("the leader did not answer in time") from None

    async def _call_leader(self, leader: NodeId, request: rpcs.PeerRequest[A], timeout: float) -> A:
        """`leader`'s answer to `request`; raises LeaderChanged as soon as this node
        learns that another node leads (or that none does), rather than waiting out the
        timeout on a leader that stalled."""
        with trio.CancelScope() as scope:
            self._leader_calls.add(scope)
            try:
                return await self.peers.call(leader, request, timeout)
            finally:
                self._leader_calls.discard(scope)
        raise LeaderChanged()

    async def _propose_on_leader(
        self, leader: NodeId, commands: list[bytes], timeout: float
    ) -> list[Outcome[R]]:
        """The outcomes of `commands` proposed by `leader` (see `_call_leader`)."""
        request = rpcs.Propose(tuple(commands))
        answer = led(await self._call_leader(leader, request, timeout))
        if len(answer.outcomes) != len(commands):
            raise RpcBadAnswer(
                f"{leader} answered {len(answer.outcomes)} outcomes to {len(commands)} commands"
            )
        return [self._outcome_from_wire(outcome) for outcome in answer.outcomes]

    async def _serve_propose(self, src: NodeId, request: rpcs.Propose) -> rpcs.Proposed:
        outcomes = await self.propose(list(request.commands))
        return rpcs.Proposed(tuple(self._outcome_to_wire(outcome) for outcome in outcomes))

    def _outcome_to_wire(self, outcome: Outcome[R]) -> bytes | rpcs.Failed:
        if isinstance(outcome, WRITE_FAILURES):
            return failure_to_wire(outcome)
        return self.state.encode_result(outcome)

    def _outcome_from_wire(self, outcome: bytes | rpcs.Failed) -> Outcome[R]:
        if isinstance(outcome, rpcs.Failed):
            return FAILURES[outcome.kind](outcome.reason)
        return self.state.decode_result(outcome)

    async def register(self, incarnation: str) -> bool | None:
        """Record this node's incarnation through the log; whether it was recorded,
        refused (another one is recorded) or neither (no outcome: try again)."""
        [outcome] = await self.write([self.state.registration(self.id, incarnation)])
        return None if isinstance(outcome, WRITE_FAILURES) else self.state.registered(outcome)

    async def _await_progress_until(self, deadline: float) -> None:
        """Wait for the role or leader to change, at most until `deadline`."""
        if trio.current_time() >= deadline:
            raise Unavailable("no leader")
        with trio.move_on_at(deadline):
            await self._progress.wait()

    # --- membership --------------------------------------------------------------------

    async def change_members(self, change: MemberChange) -> ChangeOutcome:
        """Make a membership change wherever the leader is; returns once it is committed
        (None), Refused saying why (nothing changed), Unavailable (not made) or
        Indeterminate (unknown)."""
        return await self._changing_at_leader(
            lambda: self._change_members_here(change),
            rpcs.ChangeMembers(change),
            lambda: self._change_committed(change),
            change_from_wire,
        )

    def _change_committed(self, change: MemberChange) -> bool:
        core = self.core
        if core.configs.last_index > core.commit:
            return False
        if change.kind is ChangeKind.ADD:
            return change.node in core.members.all
        if change.kind is ChangeKind.PROMOTE:
            return change.node in core.members.voters
        return change.node not in core.members.all

    async def _change_members_here(self, change: MemberChange) -> ChangeOutcome:
        try:
            index, term = self.core.change_members(change)
        except TransferInProgress:
            raise NotLeader(None) from None
        except (ChangeNotAllowedYet, InvalidChange) as exc:
            return Refused(str(exc))
        self.log.info("membership change", change=change.kind.value, member=change.node)
        waiter: Waiter[None] = Waiter(term)
        self._waiters[index] = waiter
        self.poke()
        await self._wait_applied_or_expired([(index, waiter)])
        self._count_outcome(index, waiter)
        return waiter.outcome

    async def admit(self, joiner: NodeId, address: MemberAddress) -> Admission:
        """A node asking to join: add it as a learner wherever the leader is (it is promoted
        once caught up). Asking again once it is a member at the same addresses is done
        at once. Returns the configuration once this node's log shows it (so the joiner
        knows its peers), or why it was not added."""
        outcome = await self._changing_at_leader(
            lambda: self._admit_here(joiner, address),
            rpcs.Join(joiner, address),
            lambda: self.core.members.address(joiner) == address,
            admission_from_wire,
        )
        if isinstance(outcome, Members):
            return outcome
        if outcome is not None:
            return outcome
        with trio.move_on_after(self.options.request_timeout):
            while self.core.members.address(joiner) != address:
                await self._progress.wait()
        return self.core.members

    async def _admit_here(self, joiner: NodeId, address: MemberAddress) -> ChangeOutcome:
        core = self.core
        if not core.is_leader:
            raise NotLeader(core.leader_id)
        if core.members.address(joiner) == address and core.configs.last_index <= core.commit:
            return None
        if joiner not in core.members.all:
            self.log.info("a node asks to join", member=joiner, peer=address.peer)
        return await self._change_members_here(MemberChange(ChangeKind.ADD, joiner, address))

    def admitted(self, answer: rpcs.JoinAnswer, asked: str) -> str | None:
        """A member's answer to this node asking to join (`joining.py`): None once added
        (the node then starts from the configuration answered, until the leader's log
        arrives), else why not."""
        outcome = admission_from_wire(answer)
        if not isinstance(outcome, Members):
            return outcome.reason if isinstance(outcome, Refused) else str(outcome)
        self.log.info(
            "added to the cluster as a learner; taking the leader's log",
            asked=asked,
            voters=",".join(sorted(outcome.voters)),
        )
        self.start_from(outcome)
        return None

    def start_from(self, members: Members) -> None:
        """Take `members`, as the running cluster knows them, in place of the
        configuration the node started with, until the leader's log arrives (see
        `Raft.adopt_members`); nothing once the log holds entries."""
        if self.core.log.last_index == 0:
            self.core.adopt_members(members)
            self.poke()

    async def transfer(self, target: NodeId | None) -> ChangeOutcome:
        """Hand leadership to `target` (the most caught-up voter when None) wherever the
        leader is; returns once another node leads (None), or why not (as
        `change_members`)."""
        asked = self.core.leader_id
        return await self._changing_at_leader(
            lambda: self._transfer_here(target),
            rpcs.Transfer(target),
            lambda: (
                self.core.leader_id not in (None, asked)
                and (target is None or self.core.leader_id == target)
            ),
            change_from_wire,
        )

    async def _transfer_here(self, target: NodeId | None) -> ChangeOutcome:
        core = self.core
        target = target or core.most_caught_up_voter()
        if target is None or target not in core.members.voters:
            return Refused(f"{target or 'no other node'} is not a voter")
        if target == self.id:
            return None
        self.log.info("handing over leadership on request", to=target)
        core.transfer_leadership(target)
        self.poke()
        with trio.move_on_after(self.options.request_timeout):
            while core.leader_id in (self.id, None):
                await self._progress.wait()
            return None
        return Indeterminate(f"{target} did not take over in time")

    async def member_rows(self) -> list[dict[str, Any]]:
        """One row per member, as the leader sees it: id, role, addresses, match index."""
        return await self._at_leader(self._member_rows_here, self._ask_member_rows)

    async def _member_rows_here(self) -> list[dict[str, Any]]:
        core = self.core
        if core.leadership is None:
            raise NotLeader(core.leader_id)
        members = core.members
        rows = []
        for member in sorted(members.all):
            address = members.address(member) or MemberAddress("", "")
            progress = core.leadership.progress.get(member)
            rows.append(
                {
                    "id": member,
                    "role": "voter" if member in members.voters else "learner",
                    "peer_addr": address.peer,
                    "client_addr": address.client,
                    "match_index": progress.match if progress else core.log.last_index,
                }
            )
        return rows

    async def _ask_member_rows(self, leader: NodeId, timeout: float) -> list[dict[str, Any]]:
        answer = led(await self._call_leader(leader, rpcs.MemberList(), timeout))
        return [dict(row) for row in answer.rows]

    async def _changing_at_leader(
        self,
        here: Callable[[], Awaitable[T]],
        request: rpcs.PeerRequest[A],
        done: Callable[[], bool],
        from_wire: Callable[[A], T],
    ) -> T | WriteFailure | None:
        """`_at_leader` for a membership change or a transfer, `from_wire` reading the
        leader's answer to `request`. Its effect changes who leads (a transfer, a leader removing
        itself), so the leader's answer is often overtaken by the news of the change:
        when the outcome is unknown, `done()` seen from here (within the request
        timeout) makes it done (None)."""

        async def there(leader: NodeId, timeout: float) -> T:
            return from_wire(await self._call_leader(leader, request, timeout))

        try:
            return await self._at_leader(here, there)
        except Unavailable as exc:
            return exc
        except Indeterminate as exc:
            with trio.move_on_after(self.options.request_timeout):
                while not done():
                    await self._progress.wait()
                return None
            return exc

    async def serve_rpc(self, src: NodeId, method: str, payload: Payload) -> Payload:
        """Serve a peer's request (the transport's handler)."""
        return await self._rpc_table.serve(src, method, payload)

    async def _serve_read_index(self, src: NodeId, request: rpcs.ReadIndex) -> rpcs.ReadPoint:
        try:
            deadline = trio.current_time() + self.options.request_timeout
            return rpcs.ReadPoint(*await self._leader_read_index(deadline))
        except Unavailable:
            raise NotLeader(self.core.leader_id) from None

    async def _serve_change_members(
        self, src: NodeId, request: rpcs.ChangeMembers
    ) -> rpcs.ChangeAnswer:
        return change_to_wire(await self._change_members_here(request.change))

    async def _serve_transfer(self, src: NodeId, request: rpcs.Transfer) -> rpcs.ChangeAnswer:
        return change_to_wire(await self._transfer_here(request.target))

    async def _serve_member_list(self, src: NodeId, request: rpcs.MemberList) -> rpcs.MemberRows:
        return rpcs.MemberRows(tuple(await self._member_rows_here()))

    async def _serve_status(self, src: NodeId, request: rpcs.StatusQuery) -> rpcs.StatusRow:
        return rpcs.StatusRow(self.status())

    async def _serve_incarnation(
        self, src: NodeId, request: rpcs.IncarnationQuery
    ) -> rpcs.IncarnationAnswer:
        return incarnation.answer(self, request.member)

    async def _serve_join(self, src: NodeId, request: rpcs.Join) -> rpcs.JoinAnswer:
        outcome = await self.admit(request.joiner, request.address)
        if isinstance(outcome, Members):
            return rpcs.Admitted(outcome)
        return outcome if isinstance(outcome, Refused) else failure_to_wire(outcome)

    async def _serve_configuration(
        self, src: NodeId, request: rpcs.ConfigurationQuery
    ) -> rpcs.Configuration:
        return rpcs.Configuration(*self.committed_configuration())

    async def snapshot_now(self) -> int:
        """Take a snapshot now (RAFT.SNAPSHOT); returns its index."""
        if self.snapshotter is None:
            raise Unavailable("this node keeps no snapshots")
        return await self.snapshotter.take()

    async def shutdown(self, timeout: float) -> None:
        """Stop taking writes, let the ones in flight finish, and hand leadership to the
        most up-to-date live follower when leader (trying the next one when a transfer
        is abandoned); all within `timeout` seconds."""
        self.stopping = True
        with trio.move_on_after(timeout):
            while self._waiters:
                await self._progress.wait()
            core = self.core
            tried: set[NodeId] = set()
            while (leadership := core.leadership) is not None:
                if leadership.transfer_target is None:
                    choices = await self._live_followers(tried)
                    if not choices:
                        return
                    target = max(choices, key=lambda p: leadership.progress[p].match)
                    tried.add(target)
                    self.log.info("handing over leadership", to=target)
                    core.transfer_leadership(target)
                    self.poke()
                # the core abandons a transfer after an election timeout, silently
                with trio.move_on_after(self.options.tick_seconds):
                    await self._progress.wait()

    async def _live_followers(self, exclude: set[NodeId]) -> list[NodeId]:
        """The voting followers (not in `exclude`) that answer a heartbeat round sent now,
        waiting up to an election timeout for the first answer; leader only."""
        core = self.core
        asked = core.heartbeat_now()
        self.poke()
        with trio.move_on_after(self.options.tick_seconds * core.config.election_ticks):
            while (leadership := core.leadership) is not None:
                live = [
                    peer
                    for peer, pr in leadership.progress.items()
                    if pr.acked_seq >= asked and peer in core.members.voters - exclude
                ]
                if live:
                    return live
                with trio.move_on_after(self.options.tick_seconds):
                    await self._progress.wait()
        return []

    def known_incarnation(self, node_id: NodeId) -> str | None:
        """The incarnation recorded for `node_id`: in the applied state, or else in a
        registration still in the log (a node that restarted has not applied its log
        yet, and must not vouch for a wiped member meanwhile)."""
        known = self.state.incarnation_of(node_id)
        if known is not None:
            return known
        for entry in self.core.log.slice(self.applied + 1, self.core.log.last_index + 1):
            if entry.kind is EntryKind.COMMAND:
                registered = self.state.registration_in(unstamp(entry.data)[1])
                if registered is not None and registered[0] == node_id:
                    return registered[1]
        return None

    # --- status ----------------------------------------------------------------------

    async def cluster_status(self, timeout: float = 1.0) -> list[dict[str, Any]]:
        """Every member's status row, asked over the peer links; an unreachable member
        gets a row with its id only."""
        rows: dict[NodeId, dict[str, Any]] = {self.id: {**self.status(), "reachable": "yes"}}

        async def ask(peer: NodeId) -> None:
            try:
                rows[peer] = {**await self.peer_status(peer, timeout), "reachable": "yes"}
            except RpcError:
                rows[peer] = {"node_id": peer, "reachable": "no"}

        async with trio.open_nursery() as nursery:
            for peer in sorted(self.core.members.all - {self.id}):
                nursery.start_soon(ask, peer)
        return [rows[member] for member in sorted(rows)]

    async def peer_status(self, peer: NodeId, timeout: float) -> dict[str, Any]:
        """`peer`'s status row, asked over its link; RpcError when it does not answer
        within `timeout` seconds."""
        answer = await self.peers.call(peer, rpcs.StatusQuery(), timeout)
        return dict(answer.fields)

    def status(self) -> dict[str, Any]:
        core = self.core
        return {
            "node_id": self.id,
            "role": "candidate" if core.role is Role.PRE_CANDIDATE else core.role.value,
            "term": core.term,
            "leader_id": core.leader_id or "",
            "commit_index": core.commit,
            "last_applied": self.applied,
            "last_log_index": core.log.last_index,
            "snapshot_index": self.snapshotter.index if self.snapshotter else 0,
            "members": ",".join(sorted(core.members.voters)),
            "learners": ",".join(sorted(core.members.learners)),
            "membership": "removed" if self._removed else _membership(self.id, core.members),
        }


def _membership(node_id: NodeId, members: Members) -> str:
    if node_id in members.voters:
        return "voter"
    return "learner" if node_id in members.learners else "none"
