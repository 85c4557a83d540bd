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
   running);
2. completes the durable writes that are due, in FIFO order per node: the write lands on
   the node's `Disk`, the messages that waited for it go out, `persisted()` is called;
3. delivers the messages that are due, unless the link is cut, the receiver is down or the
   network loses them (an InstallSnapshot lost is reported to its sender);
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
from collections.abc import Callable, Hashable
from typing import NoReturn, TypeAlias

import attrs
import msgpack  # type: ignore[import-untyped]

from sim.linearizability import Arg, Handle, History, Kind, check
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
from trioraft.core.raft import Raft, RaftConfig, Ready, Role
from trioraft.kvstore.stamps import Stamper, stamp, time_of, unstamp

#: steps between two ticks of a node running at its nominal rate
TICK = 4
#: a client gives up on an operation (indeterminate) after this many steps
OP_TIMEOUT = 40 * TICK
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

KV: TypeAlias = dict[bytes, bytes]
CoreFactory: TypeAlias = Callable[..., Raft]


class SimulationFailure(AssertionError):
    """A safety or liveness property failed; the message says which, and how to replay."""


# --- plans ---------------------------------------------------------------------------------


@attrs.frozen
class Profile:
    """How hostile a run is. Rates are mean steps between events; 0 means never."""

    name: str
    #: probability that a message is lost in transit
    drop: float = 0.0
    #: probability that a message is delivered twice
    duplicate: float = 0.0
    #: probability that a message takes a detour of up to two election timeouts
    detour: float = 0.0
    #: ordinary latency is 1 .. latency steps, so messages overtake each other
    latency: int = 3
    #: a durable write takes 1 .. fsync steps
    fsync: int = 2
    partition_every: int = 0
    #: a partition lasts partition_steps[0] .. partition_steps[1] steps
    partition_steps: tuple[int, int] = (10 * TICK, 150 * TICK)
    #: the kinds of partition drawn from (see `_random_partition`)
    partition_kinds: tuple[str, ...] = ("split", "leader", "one-way", "bridge", "flaky")
    crash_every: int = 0
    #: the most nodes down at once
    max_down: int = 1
    #: steps a crashed node stays down: 1 .. downtime
    downtime: int = 100 * TICK
    #: probability that a newly elected leader crashes within a few steps, before its
    #: no-op is safely replicated (how Figure 8 of the Raft paper begins)
    kill_new_leader: float = 0.0
    #: a doomed new leader crashes kill_after .. kill_after + kill_within steps after its
    #: election
    kill_after: int = 0
    kill_within: int = 3 * TICK
    #: a crash is a power loss of the whole host: the messages it sent that are still on
    #: their way are lost with it (so a leader's first AppendEntries can die with it, which
    #: Figure 8 needs)
    crash_loses_sends: bool = False
    transfer_every: int = 0
    #: mean steps between membership changes asked of the leader (0: never)
    member_every: int = 0
    #: probability that a newly elected leader is asked for a membership change at once
    member_on_election: float = 0.0
    #: a node snapshots once it has applied this many entries past its last snapshot
    snapshot_every: int = 40
    #: most entries in one AppendEntries, for every run of this profile (None: the plan
    #: draws it)
    batch_entries: int | None = None
    #: the share of gets through read_index, for every run of this profile (None: the plan
    #: draws it)
    reads: float | None = None
    #: a client gives up on an operation (indeterminate) after this many steps
    op_timeout: int = OP_TIMEOUT
    #: the share of writes of a string key that give it a deadline (0: no expiry at all, and
    #: entries carry no time)
    ttl: float = 0.0
    #: a node's wall clock jumps (forwards or backwards) every this many steps, on average
    clock_jump_every: int = 0
    #: by this many milliseconds, at least and at most
    clock_jump_ms: tuple[int, int] = (1000, 5000)
    #: the number of nodes at the start, for every run of this profile (None: the plan
    #: draws it)
    size: int | None = None


PROFILES = (
    Profile("calm", drop=0.01, duplicate=0.01, transfer_every=500, member_every=400),
    Profile(
        "lossy",
        drop=0.2,
        duplicate=0.1,
        detour=0.03,
        latency=6,
        transfer_every=700,
        member_every=500,
    ),
    Profile(
        "partitions", drop=0.02, duplicate=0.02, latency=4, partition_every=200, member_every=400
    ),
    Profile(
        "crashes",
        drop=0.02,
        latency=4,
        fsync=8,
        crash_every=150,
        snapshot_every=20,
        member_every=300,
    ),
    Profile(
        "elections",
        drop=0.05,
        latency=5,
        fsync=4,
        crash_every=300,
        max_down=2,
        downtime=30 * TICK,
        kill_new_leader=0.5,
        crash_loses_sends=True,
        snapshot_every=30,
        member_every=300,
        member_on_election=0.5,
    ),
    # Figure 8 of the Raft paper: a leader dies with its no-op on its own disk only, the
    # next one too, and the first comes back and, one entry per message, sends its old
    # term's entry to a majority before its new no-op: committing it then would be unsafe
    Profile(
        "figure-8",
        drop=0.02,
        latency=6,
        fsync=1,
        crash_every=100,
        max_down=2,
        downtime=15 * TICK,
        kill_new_leader=0.6,
        # once its no-op is durable (fsync takes one step), before it arrives anywhere
        kill_after=2,
        kill_within=2,
        crash_loses_sends=True,
        batch_entries=1,
        snapshot_every=30,
    ),
    # a leader cut off alone leads on until CheckQuorum deposes it, while the others elect
    # a new one: clients that give up soon and read a lot keep asking the old leader, so a
    # read it answers without a heartbeat round a majority answered is a stale read
    Profile(
        "deposed",
        drop=0.02,
        latency=3,
        partition_every=50,
        partition_steps=(25 * TICK, 50 * TICK),
        partition_kinds=("leader",),
        reads=0.7,
        op_timeout=15 * TICK,
    ),
    Profile(
        "laggards",
        drop=0.05,
        latency=4,
        partition_every=300,
        crash_every=300,
        snapshot_every=6,
        member_every=300,
    ),
    Profile(
        "chaos",
        drop=0.1,
        duplicate=0.05,
        detour=0.02,
        latency=6,
        fsync=6,
        partition_every=250,
        crash_every=200,
        max_down=5,
        kill_new_leader=0.2,
        crash_loses_sends=True,
        transfer_every=400,
        snapshot_every=12,
        member_every=400,
        member_on_election=0.5,
    ),
    # membership changes all the time while new leaders die young: a leader asked for a
    # change as soon as it is elected, before its no-op commits, must refuse it (thesis
    # 4.1, the single-server trap), else an uncommitted change of an earlier leader and
    # its own can form two majorities that do not overlap
    Profile(
        "membership",
        drop=0.05,
        latency=6,
        fsync=6,
        crash_every=120,
        max_down=2,
        downtime=20 * TICK,
        kill_new_leader=0.6,
        kill_after=1,
        kill_within=6,
        crash_loses_sends=True,
        member_every=15,
        member_on_election=1.0,
        # an even number of voters: two changes one step from it each can leave two
        # majorities that do not overlap
        size=4,
        snapshot_every=25,
    ),
)

#: a membership change never leaves fewer voters, nor more members, than these
MIN_VOTERS = 3
MAX_MEMBERS = 6

#: no fault at all: the named scenarios inject their own
QUIET = Profile("quiet", snapshot_every=1000)

#: expiry decided through the log, with wall clocks that drift apart and jump (seconds,
#: backwards too) while leaders change: kept apart from PROFILES, whose seeds are pinned
EXPIRY_PROFILES = (
    Profile(
        "clocks",
        drop=0.02,
        latency=4,
        ttl=0.6,
        clock_jump_every=150,
        transfer_every=150,
        crash_every=300,
        snapshot_every=20,
    ),
    Profile(
        "clocks-partitions",
        drop=0.05,
        latency=5,
        ttl=0.6,
        clock_jump_every=100,
        partition_every=250,
        partition_kinds=("leader", "split"),
        transfer_every=300,
        snapshot_every=12,
    ),
)


@attrs.frozen
class Plan:
    """Everything a run's shape depends on; `from_seed` derives one from a seed."""

    seed: int
    size: int
    profile: Profile
    #: steps with faults, before everything heals
    fault_steps: int
    clients: int
    keys: int
    config: RaftConfig = attrs.field(factory=RaftConfig)
    #: the share of client operations that are gets through read_index (the others go
    #: through the log: a few gets, and writes)
    reads: float = 0.3
    #: the command that replays this run (None: the seeded run of `seed`)
    replay: str | None = None

    @classmethod
    def from_seed(cls, seed: int, profiles: tuple[Profile, ...] = PROFILES) -> Plan:
        r = random.Random(f"trioraft-plan-{seed}")
        size = r.choice((3, 3, 5))
        profile = r.choice(profiles)
        return cls(
            seed=seed,
            size=profile.size or size,
            profile=profile,
            fault_steps=r.randrange(1500, 2500),
            clients=r.randint(2, 4),
            keys=r.randint(2, 4),
            reads=profile.reads or r.choice((0.2, 0.3, 0.5)),
            config=RaftConfig(
                # a narrow timeout range: quick elections, and more split votes
                election_ticks_max=r.choice((None, None, 12)),
                heartbeat_ticks=r.choice((1, 2)),
                max_batch_entries=profile.batch_entries or r.choice((3, 64)),
                max_inflight=r.choice((2, 16)),
            ),
        )

    def describe(self) -> str:
        return (
            f"seed {self.seed}: {self.size} nodes, profile {self.profile.name}, "
            f"{self.fault_steps} fault steps, {self.clients} clients, {self.keys} keys"
        )


# --- the replicated state machine ----------------------------------------------------------


def encode_command(op_id: int, kind: Kind, key: bytes, args: tuple[Arg, ...]) -> bytes:
    data: bytes = msgpack.packb([op_id, kind.value, key, *args])
    return data


def decode_command(data: bytes) -> tuple[int, Kind, bytes, list[object]]:
    op_id, kind, key, *args = msgpack.unpackb(data)
    return op_id, Kind(kind), key, args


def _decimal(value: bytes) -> int | None:
    try:
        number = int(value)
    except ValueError:
        return None
    if b"%d" % number != value or not -(2**63) <= number < 2**63:
        return None
    return number


#: where the state keeps a key's deadline (Unix ms, decimal) and its time (the latest
#: entry's stamp): in the same map, so that snapshots and state comparisons include them
DEADLINE = b"\0deadline:"
TIME = b"\0time"


def deadline_of(kv: KV, key: bytes) -> int:
    """The key's deadline (Unix ms), 0 for none."""
    return int(kv.get(DEADLINE + key, b"0"))


def time_of_state(kv: KV) -> int:
    return int(kv.get(TIME, b"0"))


def apply_entry(kv: KV, data: bytes) -> tuple[int, object, list[bytes]]:
    """Apply a command entry, as trioraft's state machine treats time: the entry's stamp
    (if any) is the state's time; a key whose deadline has passed by then is deleted before
    the command sees it. Returns the op id (0 for none), the reply, and the keys that went
    past their deadline here."""
    time_ms, command = unstamp(data)
    if time_ms is not None:
        kv[TIME] = b"%d" % time_ms
    op_id, kind, key, args = decode_command(command)
    now = time_of_state(kv)
    # EXPIRE: the leader's deletion of keys past their deadline, named in its arguments
    keys = [arg for arg in args if isinstance(arg, bytes)] if kind is Kind.EXPIRE else [key]
    expired = [k for k in keys if k in kv and 0 < deadline_of(kv, k) <= now]
    for gone in expired:
        del kv[gone], kv[DEADLINE + gone]
    if kind is Kind.EXPIRE:
        return op_id, None, expired
    return op_id, apply_command(kv, kind, key, args, now), expired


def apply_command(kv: KV, kind: Kind, key: bytes, args: list[object], now: int = 0) -> object:
    """Apply one command to the key-value state; returns its reply. The meaning of each
    kind is the model of `linearizability`. A set with a second argument, a TTL in ms,
    gives the key the deadline `now` + TTL; any other set drops the deadline."""
    current = kv.get(key)
    if kind is Kind.GET:
        return current
    if kind is Kind.SET:
        value = args[0]
        assert isinstance(value, bytes)
        kv[key] = value
        kv.pop(DEADLINE + key, None)
        if len(args) == 2:
            ttl = args[1]
            assert isinstance(ttl, int)
            kv[DEADLINE + key] = b"%d" % (now + ttl)
        return None
    if kind is Kind.DEL:
        kv.pop(DEADLINE + key, None)
        return 0 if kv.pop(key, None) is None else 1
    if kind is Kind.INCR:
        by = args[0]
        assert isinstance(by, int)
        number = 0 if current is None else _decimal(current)
        if number is None or not -(2**63) <= number + by < 2**63:
            return None
        kv[key] = b"%d" % (number + by)
        return number + by
    expected, value = args
    assert isinstance(value, bytes)
    if current != expected:
        return False
    kv[key] = value
    kv.pop(DEADLINE + key, None)
    return True


def pack_kv(kv: KV) -> bytes:
    data: bytes = msgpack.packb(kv)
    return data


def unpack_kv(data: bytes) -> KV:
    kv: KV = msgpack.unpackb(data)
    return kv


EMPTY_KV = pack_kv({})
FILLER = encode_command(0, Kind.GET, b"", ())


def _stamp_of(entry: Entry) -> int | None:
    return time_of(entry.data) if entry.kind is EntryKind.COMMAND else None


# --- nodes ---------------------------------------------------------------------------------


class Disk:
    """A node's durable storage: exactly what survives a crash."""

    def __init__(self) -> None:
        self.hard_state = HardState()
        #: the snapshot the log starts after, and its state machine data
        self.snapshot: SnapshotMeta | None = None
        self.snapshot_data = EMPTY_KV
        #: the entries after the snapshot, contiguous
        self.log: list[Entry] = []
        #: snapshots received from leaders, stored before the core hears of them
        self.received: dict[tuple[int, int], bytes] = {}

    @property
    def base(self) -> int:
        return self.snapshot.index if self.snapshot else 0

    @property
    def last_index(self) -> int:
        return self.base + len(self.log)

    def term(self, index: int) -> int | None:
        if index == self.base:
            return self.snapshot.term if self.snapshot else 0
        offset = index - self.base - 1
        return self.log[offset].term if 0 <= offset < len(self.log) else None


@attrs.define(slots=True, eq=False)
class Write:
    """One Ready's durable write, in flight: it lands at `done_at`, after every earlier one."""

    snapshot: SnapshotMeta | None
    snapshot_data: bytes
    hard_state: HardState | None
    entries: list[Entry]
    #: the Ready's messages_after_persist, sent once this write has landed
    after: list[Message]
    done_at: int


@attrs.define(slots=True, eq=False)
class Op:
    """A client operation in flight. Writes (and some gets) go through the log and end when
    the proposing node applies index `index`; other gets go through read_index."""

    id: int
    client: Client
    handle: Handle
    kind: Kind
    key: bytes
    args: tuple[Arg, ...]
    via_log: bool
    #: the step after which the client gives up (None: it waits for ever)
    deadline: int | None
    issued_after_heal: bool
    #: via the log: where the proposal landed
    index: int = 0
    term: int = 0
    #: via read_index: the highest commit index seen anywhere when the read was issued (the
    #: index the core releases it at may not be lower), and the highest term led in by then
    #: (only a leader of that term or a later one may release it)
    floor: int = 0
    term_floor: int = 0
    done: bool = False


@attrs.define(eq=False)
class Client:
    id: int
    #: the node it believes leads
    target: NodeId
    next_at: int = 0
    op: Op | None = None
    ops: int = 0
    #: the last value it saw for each key, to make set_if_equal succeed sometimes
    seen: dict[bytes, bytes | None] = attrs.Factory(dict)


class SimNode:
    """One node: its disk, and while up, its core, state machine and pending work."""

    def __init__(self, node_id: NodeId, rate: float, bootstrap: Members) -> None:
        self.id = node_id
        #: the configuration its core starts from on an empty disk
        self.bootstrap = bootstrap
        self.disk = Disk()
        self.core: Raft | None = None
        #: bumped at every restart; a snapshot report goes only to the incarnation that sent
        self.incarnation = 0
        self.kv: KV = {}
        #: the last index applied to kv (or covered by the snapshot it was restored from)
        self.applied = 0
        #: the snapshot the core's log starts after, with its data: what InstallSnapshot sends
        self.snapshot: tuple[SnapshotMeta, bytes] | None = None
        self.writes: deque[Write] = deque()
        #: proposals awaiting their index's application, by index
        self.waiting: dict[int, list[Op]] = {}
        #: reads registered with read_index, by ctx
        self.reads: dict[Hashable, Op] = {}
        #: reads released by the core at an index not yet applied
        self.released: list[tuple[int, Op]] = []
        #: steps per tick, drifting around TICK
        self.rate = rate
        self.next_tick = 0.0
        #: the step it restarts at, while down
        self.restart_at: int | None = None
        #: its wall clock (expiry runs): ms per step relative to nominal, and an offset
        #: that jumps
        self.clock_rate = 1.0
        self.clock_offset_ms = 0
        #: the stamps its proposals get (its clock, never below a stamp in its log)
        self.stamper = Stamper()
        #: had input since the last Ready and check
        self.dirty = False


@attrs.define(slots=True, eq=False)
class Envelope:
    msg: Message
    #: an InstallSnapshot's state machine data, copied from the sender at send time
    data: bytes
    sender_incarnation: int


# --- the safety checker --------------------------------------------------------------------


class Checker:
    """The cluster-wide safety properties, with the memory they need across steps."""

    def __init__(self, fail: Callable[[str, str], NoReturn]) -> None:
        self.fail = fail
        #: term -> the one node that led in it
        self.leaders: dict[int, NodeId] = {}
        #: (index, term) -> (predecessor term, kind, data), over every log ever checked
        self.entries: dict[tuple[int, int], tuple[int, EntryKind, bytes]] = {}
        #: per node, the log as last verified: its snapshot index and a copy of its entries
        self.views: dict[NodeId, tuple[int, list[Entry]]] = {}
        #: committed[i]: the term of the entry committed at i (None: known only via a
        #: snapshot); committed_seen[i]: the lowest term of a node that saw it committed
        self.committed: list[int | None] = [0]
        self.committed_seen: list[int] = [0]
        #: per node, the commit index already recorded
        self.seen_commit: dict[NodeId, int] = {}
        #: index -> the entry applied there, and the state machine right after it
        self.applied: dict[int, Entry] = {}
        self.state_at: dict[int, KV] = {0: {}}

    def check_node(self, node_id: NodeId, core: Raft, fresh: list[int]) -> None:
        """Check one node's log and commit index; adds newly committed indexes to fresh."""
        self._check_log(node_id, core)
        self._observe_commit(node_id, core, fresh)

    def check_leader(self, node_id: NodeId, core: Raft, fresh: list[int]) -> None:
        term = core.term
        known = self.leaders.get(term)
        if known is None:
            self.leaders[term] = node_id
            self._check_complete(
                node_id, core, range(core.log.snapshot_index + 1, len(self.committed))
            )
        elif known != node_id:
            self.fail("election safety", f"{known} and {node_id} both lead term {term}")
        else:
            self._check_complete(node_id, core, fresh)

    def check_following(self, node_id: NodeId, core: Raft) -> None:
        """A node knows only the leader of its own term as its leader (it learns of it from
        that leader's messages); following a deposed one would send it clients' work."""
        followed = core.leader_id
        if followed is not None and followed != self.leaders.get(core.term):
            self.fail(
                "leader knowledge",
                f"{node_id} in term {core.term} follows {followed}, but "
                f"{self.leaders.get(core.term)} leads that term",
            )

    def restarted(self, node_id: NodeId, core: Raft) -> None:
        self.seen_commit[node_id] = core.commit

    def _check_log(self, node_id: NodeId, core: Raft) -> None:
        log = core.log
        entries, base = log.entries, log.snapshot_index
        view = self.views.get(node_id)
        start = 0
        if view is not None:
            old_base, old = view
            if old_base == base and old == entries:
                return
            shift = base - old_base
            overlap = min(len(old) - shift, len(entries))
            if shift >= 0 and overlap > 0 and entries[:overlap] == old[shift : shift + overlap]:
                start = overlap  # the prefix was verified, and has not changed since
        known = self.entries
        for pos in range(start, len(entries)):
            entry = entries[pos]
            if entry.index != base + pos + 1:
                self.fail("log matching", f"{node_id}'s log is not contiguous at {entry}")
            prev = entries[pos - 1].term if pos else log.snapshot_term
            fact = (prev, entry.kind, entry.data)
            first = known.setdefault((entry.index, entry.term), fact)
            if first != fact:
                self.fail(
                    "log matching",
                    f"{node_id} holds ({entry.index}, {entry.term}) after term {prev} with "
                    f"{entry.kind.name} {entry.data!r}; another log had it after term "
                    f"{first[0]} with {first[1].name} {first[2]!r}",
                )
        self.views[node_id] = (base, list(entries))

    def _observe_commit(self, node_id: NodeId, core: Raft, fresh: list[int]) -> None:
        commit, seen = core.commit, self.seen_commit.get(node_id, 0)
        if commit < seen:
            self.fail("commit", f"{node_id}'s commit index went back from {seen} to {commit}")
        if commit == seen:
            return
        log = core.log
        committed, committed_seen = self.committed, self.committed_seen
        if commit >= len(committed):
            grow = commit + 1 - len(committed)
            committed.extend([None] * grow)
            committed_seen.extend([core.term] * grow)
        for index in range(seen + 1, commit + 1):
            term = log.term(index)
            if term is None:
                if index > log.snapshot_index:
                    self.fail("commit", f"{node_id} commits {commit} beyond its log")
                continue
            first = committed[index]
            if first is None:
                committed[index] = term
            elif first != term:
                self.fail(
                    "state machine safety",
                    f"{node_id} committed term {term} at {index}; term {first} was committed "
                    f"there before",
                )
            if core.term <= committed_seen[index]:
                committed_seen[index] = core.term
                fresh.append(index)
        self.seen_commit[node_id] = commit

    def _check_complete(self, node_id: NodeId, core: Raft, indexes: range | list[int]) -> None:
        log, term = core.log, core.term
        for index in indexes:
            committed = self.committed[index]
            if (
                committed is not None
                and self.committed_seen[index] < term
                and index > log.snapshot_index
                and log.term(index) != committed
            ):
                self.fail(
                    "leader completeness",
                    f"{node_id} leads term {term} without the entry ({index}, {committed}) "
                    f"committed in term {self.committed_seen[index]} or before "
                    f"(its log holds term {log.term(index)} there)",
                )

    def check_apply(self, node_id: NodeId, entry: Entry, kv: KV) -> None:
        first = self.applied.setdefault(entry.index, entry)
        if first is not entry and (first.term, first.kind, first.data) != (
            entry.term,
            entry.kind,
            entry.data,
        ):
            self.fail(
                "state machine safety",
                f"{node_id} applies {entry} at {entry.index}; {first} was applied there before",
            )
        self.check_state(node_id, entry.index, kv)

    def check_state(self, node_id: NodeId, index: int, kv: KV) -> None:
        state = self.state_at.setdefault(index, dict(kv))
        if state != kv:
            self.fail(
                "state machine safety",
                f"{node_id}'s state at {index} is {kv!r}; another node's was {state!r}",
            )


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
            self._check_cut(node.id, [e for e in disk.log if e.index > write.snapshot.index], [])
            disk.snapshot, disk.snapshot_data, disk.log = write.snapshot, write.snapshot_data, []
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
            self._check_cut(node.id, disk.log[first - disk.base - 1 :], entries)
            del disk.log[first - disk.base - 1 :]
            disk.log.extend(entries)
            for entry in entries:
                node.stamper.observe(_stamp_of(entry))
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
            stamped = _stamp_of(entry)
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
        del disk.log[: index - disk.base]
        disk.snapshot, disk.snapshot_data = meta, data
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
        self.change_members(leader, r.choice(changes))

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
        self.profile = attrs.evolve(self.profile, drop=0.0, duplicate=0.0, detour=0.0)
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
            entries=list(disk.log),
            snapshot=disk.snapshot,
        )
        node.core = core
        node.incarnation += 1
        node.restart_at = None
        node.kv = unpack_kv(disk.snapshot_data)
        node.stamper = Stamper(time_of_state(node.kv))
        for entry in disk.log:
            node.stamper.observe(_stamp_of(entry))
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
        via_log = True
        args: tuple[Arg, ...] = ()
        seen = client.seen.get(key)
        roll = r.random()
        if r.random() < self.plan.reads:
            kind, via_log = Kind.GET, False
        elif roll < 0.05:
            kind = Kind.GET
        elif roll < 0.4 and slot % 2 == 0:  # even keys count, odd keys hold strings
            kind, args = Kind.INCR, (r.randint(1, 5),)
        elif roll < 0.4:
            kind, args = Kind.SET, (b"c%d.%d" % (client.id, client.ops),)
        elif roll < 0.75:
            kind = Kind.SET_IF_EQUAL
            expected = seen if r.random() < 0.7 else r.choice((None, b"0", b"c0.1"))
            value = (
                b"%d" % r.randint(0, 9) if slot % 2 == 0 else b"c%d.%d" % (client.id, client.ops)
            )
            args = (expected, value)
        else:
            kind = Kind.DEL
        client.ops += 1
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
        seen = op.client.seen
        if op.kind is Kind.GET:
            seen[op.key] = output if isinstance(output, bytes) else None
        elif op.kind is Kind.SET or (op.kind is Kind.SET_IF_EQUAL and output is True):
            value = op.args[-1]
            assert isinstance(value, bytes)
            seen[op.key] = value
        elif op.kind is Kind.INCR and isinstance(output, int):
            seen[op.key] = b"%d" % output
        elif op.kind is Kind.DEL:
            seen[op.key] = None

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
        configs.appended(disk.log)
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
        raise SimulationFailure(
            f"{prop} violated at step {self.now} ({self.plan.describe()}):\n{detail}\n"
            f"recent events:\n{trace}\n"
            f"replay: {self.plan.replay or REPLAY.format(seed=self.plan.seed)}"
        )
