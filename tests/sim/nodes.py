"""The simulation's nodes and what moves between them: a `SimNode` (its disk, and while up,
its core, state machine and pending work), the durable writes in flight, client operations,
and the envelopes the network carries."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Hashable

import attrs
from harness.raft_disk import RaftDisk

from sim.linearizability import Arg, Handle, Kind
from sim.state_machine import EMPTY_KV, KV
from trioraft.core.messages import (
    Entry,
    HardState,
    Members,
    Message,
    NodeId,
    SnapshotMeta,
)
from trioraft.core.raft import Raft
from trioraft.runtime.stamps import Stamper


@attrs.define
class SimDisk(RaftDisk):
    """A node's durable storage, with the state machine data of its snapshot and the
    snapshots received from leaders (stored before the core hears of them)."""

    snapshot_data: bytes = EMPTY_KV
    received: dict[tuple[int, int], bytes] = attrs.Factory(dict)


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

    def choose(
        self, r: random.Random, key: bytes, counter: bool, reads: float
    ) -> tuple[Kind, tuple[Arg, ...], bool]:
        """The next operation on `key` (a `counter` key takes INCR, another holds strings):
        its kind, its arguments and whether it goes through the log; `reads` is the share of
        gets through read_index."""
        via_log = True
        args: tuple[Arg, ...] = ()
        roll = r.random()
        if r.random() < reads:
            kind, via_log = Kind.GET, False
        elif roll < 0.05:
            kind = Kind.GET
        elif roll < 0.4 and counter:
            kind, args = Kind.INCR, (r.randint(1, 5),)
        elif roll < 0.4:
            kind, args = Kind.SET, (b"c%d.%d" % (self.id, self.ops),)
        elif roll < 0.75:
            kind = Kind.SET_IF_EQUAL
            expected = self.seen.get(key) if r.random() < 0.7 else r.choice((None, b"0", b"c0.1"))
            value = b"%d" % r.randint(0, 9) if counter else b"c%d.%d" % (self.id, self.ops)
            args = (expected, value)
        else:
            kind = Kind.DEL
        self.ops += 1
        return kind, args, via_log

    def saw(self, op: Op, output: object) -> None:
        """Remember the value an operation that succeeded saw or left."""
        if op.kind is Kind.GET:
            self.seen[op.key] = output if isinstance(output, bytes) else None
        elif op.kind is Kind.SET or (op.kind is Kind.SET_IF_EQUAL and output is True):
            value = op.args[-1]
            assert isinstance(value, bytes)
            self.seen[op.key] = value
        elif op.kind is Kind.INCR and isinstance(output, int):
            self.seen[op.key] = b"%d" % output
        elif op.kind is Kind.DEL:
            self.seen[op.key] = None


class SimNode:
    """One node: its disk, and while up, its core, state machine and pending work."""

    def __init__(self, node_id: NodeId, rate: float, bootstrap: Members) -> None:
        self.id = node_id
        #: the configuration its core starts from on an empty disk
        self.bootstrap = bootstrap
        self.disk = SimDisk()
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
