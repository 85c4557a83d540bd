"""Snapshots of one node: taking them, sending them to followers, receiving them.

Taking. Once `policy.entries` entries or `policy.bytes` bytes of commands were applied
since the last snapshot (or on RAFT.SNAPSHOT), the replicated state is copied in the
event loop, a slice per step while commands go on applying (a copy of the state at the
snapshot's index all the same), then serialized and written durably in a worker thread.
Then the log is compacted: the core keeps the last `policy.catchup_entries` entries up
to the snapshot, no more than `policy.catchup_bytes` of commands (a follower only
slightly behind still gets entries rather than a whole snapshot), and drops the ones
before; the WAL deletes the segments wholly before those, through the WAL writer so that
the log is only ever touched by one thread. So the log in memory holds about
`policy.bytes` of commands since the snapshot and at most `catchup_bytes` before it. At
most one snapshot is taken at a time.

Sending. When the leader's core wants a follower to get a snapshot, one task per follower
streams the newest snapshot file in chunks over RPC: `snapshot_begin` (the follower says
how much of that snapshot it already holds, so a broken transfer resumes where it
stopped), `snapshot_chunk` ..., `snapshot_install`. A failed transfer is reported to the
core, which asks again; the next transfer to that follower waits a pause that doubles
with each failure (up to `policy.retry_most`), so a follower that refuses at once is
not asked again and again in a tight loop. A success ends the pauses.

Receiving. Chunks go to a partial file. At `snapshot_install` the file is checked and made
durable, the state is loaded in a worker thread, and InstallSnapshot is stepped into the
core; when the core takes it (Ready.snapshot), the node swaps its state for the loaded one
and the WAL restarts after the snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence, Sized
from contextlib import closing
from typing import TYPE_CHECKING, Any, Generic, Protocol

import attrs
import trio

from trioraft.core.messages import Entry, InstallSnapshot, NodeId, SnapshotMeta
from trioraft.core.raft import Raft
from trioraft.logs import NodeLogger
from trioraft.runtime.metrics import NodeMetrics
from trioraft.runtime.peers import Handler, Peers
from trioraft.runtime.statemachine import Capture, R, StateMachine
from trioraft.runtime.steps import run_stepwise
from trioraft.runtime.wal_item import WalItem
from trioraft.storage import StorageError
from trioraft.storage.snapshots import read_header
from trioraft.transport.errors import RpcError
from trioraft.transport.rpcs import (
    Done,
    PeerRequest,
    SnapshotBegin,
    SnapshotChunk,
    SnapshotInstall,
    SnapshotOffset,
)

if TYPE_CHECKING:
    from trioraft.storage.snapshots import SnapshotReceiver, SnapshotStore


@attrs.frozen
class SnapshotPolicy:
    #: take a snapshot after this many entries applied since the last one
    entries: int = 100_000
    #: ... or after this many bytes of commands applied since the last one
    bytes: int = 64 * 1024 * 1024
    #: entries kept in the log before the snapshot, for followers slightly behind
    catchup_entries: int = 5_000
    #: ... and at most this many bytes of their commands
    catchup_bytes: int = 8 * 1024 * 1024
    #: the size of one chunk sent to a follower
    chunk_bytes: int = 1024 * 1024
    #: how long one transfer step may take (the last one loads the state)
    rpc_timeout: float = 30.0
    #: after a failed transfer to a follower, the pause before the next one: the first,
    #: doubled after each failure up to the most, none again after a success
    retry_first: float = 0.1
    retry_most: float = 5.0


async def capture(state: StateMachine[Any]) -> Capture:
    """A copy of `state` as it is when called, taken a slice per event-loop step."""
    with closing(state.begin_capture()) as taken:
        await run_stepwise(taken)
    return taken


class SnapshotRefused(Exception):
    """A snapshot RPC that does not fit the transfer in progress."""


@attrs.define
class Backoff:
    """Pauses between attempts: none at first, `first` after a failure, doubled after
    each further failure up to `most`, none again after a success."""

    first: float
    most: float
    #: the pause before the next attempt
    pause: float = 0.0

    def failed(self) -> None:
        self.pause = min(self.most, 2 * self.pause) if self.pause else self.first

    def succeeded(self) -> None:
        self.pause = 0.0


class SnapshottingNode(Protocol[R]):
    """What the snapshotter needs of the node whose snapshots it takes, sends and
    receives (Node has it)."""

    @property
    def id(self) -> NodeId: ...

    @property
    def log(self) -> NodeLogger: ...

    @property
    def metrics(self) -> NodeMetrics: ...

    @property
    def core(self) -> Raft: ...

    @property
    def peers(self) -> Peers: ...

    @property
    def state(self) -> StateMachine[R]: ...

    #: the index of the last entry applied to `state`
    @property
    def applied(self) -> int: ...

    def queue_wal(self, item: WalItem) -> None: ...

    def poke(self) -> None: ...

    def free_stepwise(self, parts: list[Sized]) -> None: ...


class Snapshotter(Generic[R]):
    def __init__(
        self,
        node: SnapshottingNode[R],
        store: SnapshotStore,
        latest: SnapshotMeta | None,
        policy: SnapshotPolicy | None = None,
    ) -> None:
        self.node = node
        self.store = store
        self.policy = policy or SnapshotPolicy()
        #: the index of the newest snapshot on disk (0: none)
        self.index = latest.index if latest else 0
        #: bytes of commands applied since that snapshot
        self._bytes_since = 0
        #: serializes snapshot taking and every change of the snapshot files
        self._lock = trio.Lock()
        #: followers a snapshot is being sent to
        self._senders: set[NodeId] = set()
        #: per follower, the pause before the next transfer to it
        self._backoff: dict[NodeId, Backoff] = {}
        #: the transfer from the leader in progress
        self._receiver: SnapshotReceiver | None = None
        #: a received snapshot and its loaded state, stepped into the core, not yet taken
        self._installed: tuple[SnapshotMeta, StateMachine[R]] | None = None
        #: where snapshots are taken and sent in the background, while `run` runs
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Take and send snapshots in the background until cancelled (with the node)."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None

    # --- taking ----------------------------------------------------------------------

    def applied(self, entries: Sequence[Entry]) -> None:
        """Entries were applied; start a snapshot when one is due."""
        self._bytes_since += sum(len(e.data) for e in entries)
        due = (
            self.node.applied - self.index >= self.policy.entries
            or self._bytes_since >= self.policy.bytes
        )
        if due and not self._lock.locked() and self._nursery is not None:
            self._nursery.start_soon(self.take)

    async def take(self) -> int:
        """Snapshot the state as applied now and compact the log; returns the snapshot's
        index (the existing one when nothing was applied since)."""
        node = self.node
        async with self._lock:
            index = node.applied
            if index <= self.index:
                return self.index
            term = node.core.log.term(index)
            assert term is not None, "the applied index is always in the log or the snapshot"
            meta = SnapshotMeta(index, term, node.core.members_at(index))
            # the capture begins before the first checkpoint: at the state of `index`
            held = [await capture(node.state)]
            keys = held[0].keys
            self._bytes_since = 0
            started = trio.current_time()
            size = await trio.to_thread.run_sync(self._write, meta, held)
            self.index = max(self.index, index)
            seconds = trio.current_time() - started
            node.metrics.snapshot_durations["taken"].observe(seconds)
            node.metrics.snapshot_bytes["taken"].inc(size)
            node.log.info("snapshot taken", index=index, keys=keys, seconds=round(seconds, 3))
            self._compact(self._catchup_start(index) - 1)
            return index

    def _write(self, meta: SnapshotMeta, held: list[Capture]) -> int:
        """In a worker thread: serialize and write the capture held in `held`; returns
        the data's size. It is taken out of the list, so that the copy is freed here as
        it is serialized, not in the event loop (freeing a copy of a large keyspace takes
        tens of milliseconds)."""
        path = self.store.write(meta, held.pop().serialize())
        return read_header(path).size

    def _catchup_start(self, index: int) -> int:
        """The first entry to keep in the log after a snapshot at `index`: the last
        `catchup_entries` entries up to it, as many as fit in `catchup_bytes`."""
        log, policy = self.node.core.log, self.policy
        start, kept = index + 1, 0
        while start > max(index + 1 - policy.catchup_entries, log.first_index):
            kept += len(log.entry(start - 1).data)
            if kept > policy.catchup_bytes:
                break
            start -= 1
        return start

    def _compact(self, index: int) -> None:
        core = self.node.core
        if index > core.log.snapshot_index:
            core.compact(index)
            self.node.queue_wal(WalItem(compact_to=index))

    # --- sending ---------------------------------------------------------------------

    def send_to(self, peer: NodeId, term: int) -> None:
        """Send the newest snapshot to `peer`, unless a transfer to it is running."""
        if peer in self._senders or self._nursery is None:
            return
        self._senders.add(peer)
        self._nursery.start_soon(self._send, peer, term)

    async def _send(self, peer: NodeId, term: int) -> None:
        node, policy = self.node, self.policy
        backoff = self._backoff.setdefault(peer, Backoff(policy.retry_first, policy.retry_most))
        delivered = False
        try:
            await trio.sleep(backoff.pause)
            started = trio.current_time()
            meta = await trio.to_thread.run_sync(self.store.latest)
            assert meta is not None, "the log is compacted only after a snapshot is written"
            reader = await trio.to_thread.run_sync(self.store.open_reader, meta)
            try:
                node.log.info("sending a snapshot", to=peer, index=meta.index, bytes=reader.size)
                begin = SnapshotBegin(meta, reader.size, reader.crc)
                offset = (await node.peers.call(peer, begin, policy.rpc_timeout)).received
                sent_bytes = node.metrics.snapshot_bytes["sent"]
                while offset < reader.size:
                    data = await trio.to_thread.run_sync(reader.read, offset, policy.chunk_bytes)
                    chunk = SnapshotChunk(meta.index, meta.term, offset, data)
                    await node.peers.call(peer, chunk, policy.rpc_timeout)
                    offset += len(data)
                    sent_bytes.inc(len(data))
            finally:
                reader.close()
            install = SnapshotInstall(meta.index, meta.term, term)
            await node.peers.call(peer, install, policy.rpc_timeout)
            delivered = True
            node.metrics.snapshot_durations["sent"].observe(trio.current_time() - started)
            backoff.succeeded()
            node.log.info("snapshot sent", to=peer, index=meta.index)
        except (RpcError, StorageError) as exc:
            node.metrics.snapshot_send_failures.inc()
            backoff.failed()
            node.log.warning(
                "snapshot transfer failed", to=peer, error=str(exc), retry_after=backoff.pause
            )
        finally:
            self._senders.discard(peer)
            node.core.report_snapshot(peer, delivered=delivered)
            node.poke()

    # --- receiving -------------------------------------------------------------------

    def rpc_handlers(self) -> dict[type[PeerRequest[Any]], Handler]:
        """The handlers of the requests a leader sends a follower a snapshot with."""
        return {
            SnapshotBegin: self._begin,
            SnapshotChunk: self._chunk,
            SnapshotInstall: self._install_requested,
        }

    async def _begin(self, src: NodeId, request: SnapshotBegin) -> SnapshotOffset:
        meta = request.meta
        old = self._receiver
        if old is not None and old.meta == meta:
            return SnapshotOffset(old.received)
        self._receiver = None
        async with self._lock:
            if old is not None:
                await trio.to_thread.run_sync(old.abort)
            receiver = await trio.to_thread.run_sync(
                self.store.receiver, meta, request.size, request.crc
            )
        self._receiver = receiver
        return SnapshotOffset(receiver.received)

    async def _chunk(self, src: NodeId, request: SnapshotChunk) -> Done:
        receiver = self._current(request.index, request.term)
        await trio.to_thread.run_sync(receiver.write, request.offset, request.data)
        return Done()

    async def _install_requested(self, src: NodeId, request: SnapshotInstall) -> Done:
        receiver = self._current(request.index, request.term)
        await self._install(src, receiver, request.leader_term)
        return Done()

    def _current(self, index: int, term: int) -> SnapshotReceiver:
        receiver = self._receiver
        if receiver is None or (receiver.meta.index, receiver.meta.term) != (index, term):
            raise SnapshotRefused(f"no transfer of snapshot {index}/{term} in progress")
        return receiver

    async def _install(self, leader: NodeId, receiver: SnapshotReceiver, leader_term: int) -> None:
        meta = receiver.meta
        started = trio.current_time()
        async with self._lock:
            path = await trio.to_thread.run_sync(receiver.finish)
            self._receiver = None
            restore = self.node.state.restore
            state = await trio.to_thread.run_sync(lambda: restore(self.store.load(path)[1]))
        self.index = max(self.index, meta.index)
        self._installed = (meta, state)
        metrics = self.node.metrics
        metrics.snapshot_durations["installed"].observe(trio.current_time() - started)
        metrics.snapshot_bytes["installed"].inc(receiver.total_size)
        self.node.core.step(
            InstallSnapshot(src=leader, dst=self.node.id, term=leader_term, meta=meta)
        )
        self.node.poke()

    def take_installed(self, meta: SnapshotMeta) -> StateMachine[R]:
        """The state loaded for the snapshot the core has just installed."""
        installed, self._installed = self._installed, None
        assert installed is not None and installed[0] == meta, "the core installs what it got"
        self._bytes_since = 0
        return installed[1]

    def drop_installed(self) -> None:
        """The core did not take the snapshot it was given (its log already covered it,
        or it came from a stale leader): free the loaded state."""
        installed, self._installed = self._installed, None
        if installed is not None:
            self.node.free_stepwise(installed[1].discard())
