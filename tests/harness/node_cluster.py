"""An in-process trioraft cluster for runtime tests: `Node`s over a `MemoryNetwork`, each
with a real write-ahead log in its own directory, all in one trio run.

Rules of the harness:

- Time is virtual (`autojump_clock`); the helpers never sleep for a fixed time, they poll
  a condition once per tick under a deadline (`wait_until`). The nodes' wall clocks, which
  stamp their proposals, are virtual too: each reads virtual time plus its own offset
  (`NodeCluster.clock_offsets_ms`), which a test may set to skew or jump it.
- Virtual time stands still while a worker thread runs (`hold_clock_during_threads`).
  The autojump clock jumps whenever no task is runnable, and a task waiting for
  `trio.to_thread.run_sync` is not runnable: without the hold, virtual time races on
  while a WAL write runs in real time, by as much as the thread takes to get the GIL
  and finish (seen: over 4 s of virtual time for one write, with spurious elections and
  -TIMEOUT replies), so timing would depend on the machine's load.
- Nodes run as production does, with fsync on (the WAL writer's group commit in a worker
  thread), every fsync going to a `DiskModel` (disk_model.py) instead of the disk. Every
  message that promises durability (a successful append answer, a granted vote) is
  checked, as it is sent, against the sender's durable log, replayed from the model's
  durable image.
- Crash model: `crash` cancels every task of the node and closes its log. Whatever the
  node had queued for its WAL writer is lost; whatever it had written survives, as after
  kill -9 (the page cache outlives the process). `power_loss` cuts the node off the
  network at once and keeps only what it had fsynced (with a torn tail), then stops it.
- `start` opens the node's directory again and runs a fresh `Node` under the same id: a
  restart from the WAL. The state machine starts empty and is rebuilt by applying the log.
- While the cluster runs, a monitor records which node led in which term, so a test can
  assert election safety (at most one leader per term) over the whole run.
- With `check_data_dirs`, every data dir has an incarnation (`n3.1`, then `n3.2` once
  `wipe` deleted the dir) and the nodes check it with their peers as trioraft does; a node
  refused as wiped stops, and its refusal is kept in `refusals`.
"""

from __future__ import annotations

import math
import random
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from trio.testing import MockClock

from harness.disk_model import DiskModel
from trioraft.core.config import RaftConfig
from trioraft.core.messages import (
    AppendEntriesResponse,
    MemberAddress,
    Members,
    Message,
    NodeId,
    RequestVoteResponse,
    SnapshotMeta,
)
from trioraft.kvstore import data_commands
from trioraft.kvstore.replicated import ReplicatedState
from trioraft.redis.replies import Reply
from trioraft.redis.resp import encode
from trioraft.redis.server import outcome_reply
from trioraft.runtime.incarnation import WipedMember
from trioraft.runtime.joining import Joining
from trioraft.runtime.node import Node, NodeOptions
from trioraft.runtime.snapshotter import SnapshotPolicy
from trioraft.runtime.wal_item import WalItem
from trioraft.runtime.worker_thread import WorkerThread
from trioraft.storage.datadir import WAL_DIR
from trioraft.storage.fileio import durability
from trioraft.storage.replay import Replayed, replay
from trioraft.storage.snapshots import SnapshotStore
from trioraft.storage.state import Restored, open_storage
from trioraft.storage.wal import Recovery, WriteAheadLog
from trioraft.transport import MemoryNetwork, MemoryTransport, RpcHandler
from trioraft.transport.base import Address, Payload
from trioraft.transport.codec import copy_payload
from trioraft.transport.errors import RpcUnavailable

OK = b"+OK\r\n"

#: seconds per tick of every node's core
TICK = 0.01
#: the election timeout range in ticks: [ELECTION_TICKS, 2 * ELECTION_TICKS)
ELECTION_TICKS = 30
HEARTBEAT_TICKS = 5
#: the shortest and longest election timeout, in seconds
ELECTION_TIMEOUT_MIN = ELECTION_TICKS * TICK
ELECTION_TIMEOUT_MAX = 2 * ELECTION_TICKS * TICK
#: what the nodes' wall clocks read at virtual time 0 (Unix ms)
WALL_CLOCK_EPOCH_MS = 1_800_000_000_000
#: one-way delay of every link, in seconds
LINK_DELAY = 0.001


def node_options(
    node_id: NodeId,
    ids: Iterable[NodeId],
    raft: Mapping[str, Any] | None = None,
    *,
    fsync: bool = False,
    snapshots: SnapshotPolicy | None = None,
    founders: Iterable[NodeId] | None = None,
) -> NodeOptions:
    """The harness's options; `raft` sets more RaftConfig fields. `founders` (default
    `ids`) are the members an empty data dir bootstraps with; every id is a known peer."""
    ids = list(ids)
    return NodeOptions(
        snapshot_policy=snapshots or SnapshotPolicy(),
        node_id=node_id,
        members=Members(voters=frozenset(ids if founders is None else founders)),
        peer_addresses={peer: (peer, 7000) for peer in ids if peer != node_id},
        tick_seconds=TICK,
        raft=RaftConfig(
            election_ticks=ELECTION_TICKS, heartbeat_ticks=HEARTBEAT_TICKS, **(raft or {})
        ),
        request_timeout=5.0,
        leader_wait=2.0,
        fsync=fsync,
    )


def hold_clock_during_threads(clock: MockClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Let `clock` autojump only while no call into a thread is in flight: neither
    `trio.to_thread.run_sync` nor a `WorkerThread`'s (the node's WAL writes)."""
    threshold = clock.autojump_threshold
    in_flight = 0

    def holding_clock(run_sync: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def run_sync_holding_clock(*args: Any, **kwargs: Any) -> Any:
            nonlocal in_flight
            in_flight += 1
            clock.autojump_threshold = math.inf
            try:
                return await run_sync(*args, **kwargs)
            finally:
                in_flight -= 1
                if not in_flight:
                    clock.autojump_threshold = threshold

        return run_sync_holding_clock

    monkeypatch.setattr(trio.to_thread, "run_sync", holding_clock(trio.to_thread.run_sync))
    monkeypatch.setattr(WorkerThread, "run_sync", holding_clock(WorkerThread.run_sync))


@attrs.define
class _Running:
    """One running incarnation of a node."""

    node: Node
    #: cancelling it crashes the node
    scope: trio.CancelScope
    #: set once the node's tasks have ended and its log is closed
    stopped: trio.Event = attrs.Factory(trio.Event)


class NodeCluster:
    """Nodes `n1`..`nN` sharing one network; each keeps its data dir across restarts."""

    def __init__(
        self,
        nursery: trio.Nursery,
        root: Path,
        size: int,
        seed: int,
        raft: Mapping[str, Any] | None = None,
        disk: DiskModel | None = None,
        fsync: bool | None = None,
        check_data_dirs: bool = False,
        snapshots: SnapshotPolicy | None = None,
        founders: int | None = None,
    ) -> None:
        self._nursery = nursery
        self._raft = raft
        self._root = root
        #: with a policy, nodes take snapshots (in a data dir laid out as the daemon's)
        self._snapshots = snapshots
        #: with a disk model: power losses, and durable promises checked
        self.disk = disk
        wal_subdir = "" if snapshots is None else WAL_DIR
        self._promises = PromiseChecker(disk, root, wal_subdir) if disk is not None else None
        #: whether nodes fsync (by default, when there is a disk model to see it)
        self.fsync = disk is not None if fsync is None else fsync
        self._check_data_dirs = check_data_dirs
        #: how many data dirs each node has had: the current one's incarnation is
        #: `<id>.<count>`
        self._generations: dict[NodeId, int] = {}
        #: the nodes that stopped because their data dir was refused as wiped
        self.refusals: dict[NodeId, WipedMember] = {}
        self._rng = random.Random(seed)
        self.ids = [f"n{k}" for k in range(1, size + 1)]
        #: the nodes the cluster was bootstrapped with (the others join it later)
        self.founders = self.ids[:founders]
        self.network = MemoryNetwork(delay=LINK_DELAY)
        #: the running incarnation of each node that is up
        self._running: dict[NodeId, _Running] = {}
        #: every node seen leading, by term, over the whole run
        self.leaders_by_term: dict[int, set[NodeId]] = {}
        #: how far each node's wall clock is off (ms; absent: 0); a test may move them
        self.clock_offsets_ms: dict[NodeId, int] = {}

    # --- lifecycle -------------------------------------------------------------------

    async def start(
        self,
        node_id: NodeId,
        *,
        join_via: Sequence[NodeId] = (),
        listed: Sequence[NodeId] | None = None,
    ) -> Node:
        """Start `node_id` from its data dir (a restart if it ran before); with `join_via`,
        as a node configured to join: it asks those nodes, in turn, to add it; with
        `listed`, its config file's members are those (else the founders)."""
        assert node_id not in self._running, f"{node_id} is already running"
        fsync = self.fsync
        data_dir = self._root / node_id
        fresh = not data_dir.exists()
        if fresh:
            self._generations[node_id] = self._generations.get(node_id, 0) + 1
        store: SnapshotStore | None = None
        snapshot: SnapshotMeta | None = None
        state = ReplicatedState()
        recovery: Recovery | Restored
        if self._snapshots is None:
            wal, recovery = WriteAheadLog.open(data_dir, fsync=fsync)
        else:
            wal, store, recovery = open_storage(data_dir, fsync=fsync)
            if recovery.snapshot is not None:
                snapshot, data = recovery.snapshot
                state = ReplicatedState.restore(data)
        incarnation = f"{node_id}.{self._generations[node_id]}"

        def transport(handler: RpcHandler) -> MemoryTransport:
            made = self.network.transport(node_id, handler, peers=self.ids)
            if self._promises is not None:
                self._promises.watch(made)
            return made

        node = Node(
            node_options(
                node_id,
                self.ids,
                self._raft,
                fsync=fsync,
                snapshots=self._snapshots,
                founders=() if join_via else listed or self.founders,
            ),
            wal,
            recovery,
            transport,
            state,
            rng=random.Random(self._rng.random()),
            incarnation=incarnation if self._check_data_dirs else None,
            fresh=fresh,
            snapshots=store,
            snapshot=snapshot,
            clock=self._wall_clock(node_id),
            join=self._joining(node_id, join_via) if join_via else None,
        )
        running = _Running(node, trio.CancelScope())
        self._running[node_id] = running
        await self._nursery.start(self._run, running)
        return node

    def _joining(self, node_id: NodeId, via: Sequence[NodeId]) -> Joining:
        """Asking node X to add `node_id` is X serving the request (the address says X),
        with the request and answer copied as a connection would."""

        async def ask(address: Address, method: str, payload: Payload, timeout: float) -> Payload:
            running = self._running.get(address[0])
            if running is None:
                raise RpcUnavailable(f"{address[0]} is down")
            with trio.fail_after(timeout):
                answer = await running.node.serve_rpc(node_id, method, copy_payload(payload))
            return copy_payload(answer)

        own = MemberAddress(f"{node_id}:7000", f"{node_id}:6379")
        return Joining([(member, 7000) for member in via], own, ask)

    def _wall_clock(self, node_id: NodeId) -> Callable[[], int]:
        """`node_id`'s wall clock: virtual time from `WALL_CLOCK_EPOCH_MS`, plus its offset."""

        def now_ms() -> int:
            offset = self.clock_offsets_ms.get(node_id, 0)
            return WALL_CLOCK_EPOCH_MS + round(trio.current_time() * 1000) + offset

        return now_ms

    async def _run(self, running: _Running, *, task_status: trio.TaskStatus[None]) -> None:
        node_id = running.node.id
        try:
            with running.scope:
                await running.node.run(task_status=task_status)
        except* WipedMember as refused:
            [self.refusals[node_id]] = refused.exceptions  # type: ignore[list-item]
            if self._running.get(node_id) is running:
                del self._running[node_id]
        finally:
            running.node.wal.close()
            running.stopped.set()

    async def start_all(self) -> None:
        for node_id in self.ids:
            await self.start(node_id)

    async def crash(self, node_id: NodeId) -> None:
        """Stop `node_id` abruptly: see the crash model above."""
        running = self._running.pop(node_id)
        running.scope.cancel()
        await running.stopped.wait()

    @property
    def promises_checked(self) -> int:
        """How many sent messages promising durability were checked against the disk."""
        return self._promises.checked if self._promises is not None else 0

    async def power_loss(self, node_id: NodeId) -> None:
        """Cut the power of `node_id`'s host: nothing more leaves it, and its data dir
        keeps only what it had fsynced (the tail of a file may be torn)."""
        assert self.disk is not None, "power losses need a disk model"
        others = [other for other in self.ids if other != node_id]
        for other in others:
            self.network.block(node_id, other, both_ways=True)
        self.disk.power_loss(self._root / node_id)
        await self.crash(node_id)
        self.disk.restore()
        for other in others:
            self.network.unblock(node_id, other, both_ways=True)

    def wipe(self, node_id: NodeId) -> None:
        """Delete the data dir of `node_id`, which must be down: it starts afresh."""
        assert node_id not in self._running, f"{node_id} must be down to be wiped"
        shutil.rmtree(self._root / node_id)

    async def crash_all(self) -> None:
        for node_id in list(self._running):
            await self.crash(node_id)

    # --- looking at the cluster --------------------------------------------------------

    @property
    def nodes(self) -> list[Node]:
        """The running nodes, by id."""
        return [self._running[i].node for i in self.ids if i in self._running]

    def leaders(self) -> list[Node]:
        return [node for node in self.nodes if node.core.is_leader]

    async def monitor(self) -> None:
        """Record the leader of each term, once per tick, until cancelled."""
        while True:
            for node in self.leaders():
                self.leaders_by_term.setdefault(node.core.term, set()).add(node.id)
            await trio.sleep(TICK)

    def assert_election_safety(self) -> None:
        twice = {term: ids for term, ids in self.leaders_by_term.items() if len(ids) > 1}
        assert not twice, f"several leaders in one term: {twice}"

    async def wait_for_leader(
        self, among: Iterable[NodeId] | None = None, timeout: float = 10 * ELECTION_TIMEOUT_MAX
    ) -> Node:
        """Wait until the running nodes of `among` (default: all running) have exactly one
        leader, and all of them follow it in its term; return it."""
        group = set(self.ids if among is None else among)

        def stable_leader() -> Node | None:
            members = [node for node in self.nodes if node.id in group]
            leaders = [node for node in members if node.core.is_leader]
            if len(leaders) != 1:
                return None
            leader = leaders[0]
            agreed = all(
                node.core.leader_id == leader.id and node.core.term == leader.core.term
                for node in members
            )
            return leader if agreed else None

        await wait_until(lambda: stable_leader() is not None, timeout)
        leader = stable_leader()
        assert leader is not None
        return leader

    async def wait_converged(self, timeout: float = 10.0) -> None:
        """Wait until every running node has applied the same log and holds the same
        keyspace."""

        def converged() -> bool:
            nodes = self.nodes
            commit = max(node.core.commit for node in nodes)
            keyspace = dict(nodes[0].state.store.items())
            return all(
                node.applied == commit and dict(node.state.store.items()) == keyspace
                for node in nodes
            )

        await wait_until(converged, timeout)


class PromiseChecker:
    """Checks each message that promises durability against its sender's durable log."""

    def __init__(self, disk: DiskModel, root: Path, wal_subdir: str) -> None:
        self._disk = disk
        self._root = root
        #: where a node's WAL is in its data dir
        self._wal_subdir = wal_subdir
        #: node -> (the model's version, what its durable WAL replays to then)
        self._replayed: dict[NodeId, tuple[int, Replayed]] = {}
        #: messages checked, so a test can see the check ran
        self.checked = 0

    def watch(self, transport: MemoryTransport) -> None:
        send = transport.send

        def checked_send(msg: Message) -> None:
            self.check(transport.node_id, msg)
            send(msg)

        transport.send = checked_send  # type: ignore[method-assign]

    def check(self, node_id: NodeId, msg: Message) -> None:
        ack = isinstance(msg, AppendEntriesResponse) and msg.success
        vote = isinstance(msg, RequestVoteResponse) and msg.granted and not msg.pre_vote
        if not (ack or vote):
            return
        self.checked += 1
        durable = self._durable(node_id)
        hs = durable.hard_state
        assert hs.term >= msg.term, f"{node_id} sends {msg} while its durable term is {hs.term}"
        if vote:
            assert hs.term > msg.term or hs.vote == msg.dst, f"{node_id} sends {msg}; disk: {hs}"
        elif hs.term == msg.term:
            last = durable.entries[-1].index if durable.entries else 0
            last = max(last, durable.start.index if durable.start else 0)
            assert msg.index <= last, f"{node_id} sends {msg}; its durable log ends at {last}"

    def _durable(self, node_id: NodeId) -> Replayed:
        cached = self._replayed.get(node_id)
        if cached is not None and cached[0] == self._disk.version:
            return cached[1]
        with tempfile.TemporaryDirectory() as scratch:
            wal_dir = self._root / node_id / self._wal_subdir
            for name, data in self._disk.durable_files(wal_dir).items():
                (Path(scratch) / name).write_bytes(data)
            replayed = replay(Path(scratch))
        self._replayed[node_id] = (self._disk.version, replayed)
        return replayed


@asynccontextmanager
async def open_cluster(
    root: Path,
    size: int = 3,
    seed: int = 0,
    raft: Mapping[str, Any] | None = None,
    disk: DiskModel | None = None,
    fsync: bool | None = None,
    *,
    check_data_dirs: bool = False,
    start: Iterable[NodeId] | None = None,
    snapshots: SnapshotPolicy | None = None,
    founders: int | None = None,
) -> AsyncIterator[NodeCluster]:
    """A running cluster of `size` nodes with data dirs under `root` (`raft`: RaftConfig
    fields to set), fsyncing (unless `fsync` is false) to `disk` or a disk model of its
    own, the data dirs checked with the peers when `check_data_dirs`; `start`: only these
    nodes are started (by default all); with `snapshots`, nodes take snapshots as it says
    (else none); only the first `founders` nodes (default all) are members at first, the
    others start with an empty configuration until added; every node is crashed when the
    block ends."""
    model = disk or DiskModel(root, random.Random(seed))
    with durability(model):
        async with trio.open_nursery() as nursery:
            cluster = NodeCluster(
                nursery, root, size, seed, raft, model, fsync, check_data_dirs, snapshots, founders
            )
            nursery.start_soon(cluster.monitor)
            for node_id in cluster.ids if start is None else start:
                await cluster.start(node_id)
            yield cluster
            nursery.cancel_scope.cancel()


async def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    """Return once `condition()` holds, checking once per tick; fail after `timeout`
    seconds of (virtual) time."""
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(TICK)


# --- client helpers -------------------------------------------------------------------


def set_command(key: bytes, value: bytes) -> bytes:
    return data_commands.encode_command([b"SET", key, value])


async def write(node: Node, key: bytes, value: bytes) -> bytes:
    """SET through `node`, with the reply a client would get (errors included)."""
    [outcome] = await node.write([set_command(key, value)])
    return encode(outcome_reply(outcome))


async def write_while(cluster: NodeCluster, acknowledged: dict[bytes, bytes], count: int) -> None:
    """SET `count` keys through the running nodes in turn, recording in `acknowledged`
    those answered OK; stops early once no node runs (a stopped node answers at once)."""
    for n in range(count):
        if not cluster.nodes:
            return
        node = cluster.nodes[n % len(cluster.nodes)]
        key, value = b"k%d" % n, b"v%d" % n
        if await write(node, key, value) == OK:
            acknowledged[key] = value


def get(node: Node, key: bytes) -> Reply:
    """GET from `node`'s local state machine, with no read barrier."""
    return node.state.store.read([b"GET", key])


def slow_disk(node: Node, seconds: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, each of `node`'s WAL writes takes `seconds` longer (a slow disk)."""
    writer = node.wal_writer
    write_durably = type(writer)._write_durably

    async def slowly(batch: list[WalItem]) -> None:
        await trio.sleep(seconds)
        await write_durably(writer, batch)

    monkeypatch.setattr(writer, "_write_durably", slowly)


def hang_disk(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, `node`'s WAL writes never finish (a disk that hangs)."""

    async def never_finish(batch: object) -> None:
        await trio.sleep_forever()

    monkeypatch.setattr(node.wal_writer, "_write_durably", never_finish)
