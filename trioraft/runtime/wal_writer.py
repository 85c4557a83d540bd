"""The WAL writer of a node: it writes and fsyncs the Readys the node queues, in order,
in a long-lived thread of its own (worker_thread.py); everything that arrived while an
fsync ran goes into the next one (group commit). Then it releases the messages that
promised durability, confirms the write to the core and has the node handle the Ready
that follows (a leader's commit) at once.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Protocol

import trio

from trioraft.core.messages import Entry, NodeId
from trioraft.core.raft import Raft
from trioraft.logs import NodeLogger
from trioraft.runtime.metrics import NodeMetrics
from trioraft.runtime.wal_item import WalItem
from trioraft.runtime.worker_thread import WorkerThread
from trioraft.storage.wal import WriteAheadLog
from trioraft.transport.base import Transport
from trioraft.wakeup import Wakeup

#: most messages held back for the WAL writer; past it the oldest are dropped (a disk
#: that hangs must not fill the memory: Raft copes with lost messages, and a leader asks
#: again)
MAX_MESSAGES_WAITING_FOR_DISK = 1024


class PersistingNode(Protocol):
    """What the WAL writer needs of the node whose Readys it persists (Node has it)."""

    @property
    def id(self) -> NodeId: ...

    @property
    def log(self) -> NodeLogger: ...

    @property
    def metrics(self) -> NodeMetrics: ...

    @property
    def core(self) -> Raft: ...

    @property
    def transport(self) -> Transport: ...


class WalWriter:
    def __init__(
        self,
        node: PersistingNode,
        wal: WriteAheadLog,
        *,
        fsync: bool,
        tick_seconds: float,
        handle_ready: Callable[[], None],
    ) -> None:
        """The writer of `node`'s `wal`; `handle_ready` takes and handles the core's
        Ready once a write is confirmed to it."""
        self.node = node
        self.wal = wal
        self._fsync = fsync
        self._tick_seconds = tick_seconds
        self._handle_ready = handle_ready
        self._queue: list[WalItem] = []
        #: the messages held back in `_queue`
        self._queue_messages = 0
        self._wake = Wakeup()
        #: where the writes and fsyncs run
        self._thread = WorkerThread(f"trioraft wal {node.id}")
        #: when the write in progress began (None when the writer is idle), and whether
        #: it has been reported as stalled
        self._write_began: float | None = None
        self._stall_reported = False

    def queue(self, item: WalItem) -> None:
        self._queue.append(item)
        self._queue_messages += len(item.after_persist)
        if self._queue_messages > MAX_MESSAGES_WAITING_FOR_DISK:
            self._drop_oldest_waiting_messages()
        self._wake.set()

    def _drop_oldest_waiting_messages(self) -> None:
        excess = self._queue_messages - MAX_MESSAGES_WAITING_FOR_DISK
        for queued in self._queue:
            dropped = queued.after_persist[:excess]
            del queued.after_persist[:excess]
            excess -= len(dropped)
            self._queue_messages -= len(dropped)
        self._queue = [q for q in self._queue if q.writes or q.after_persist]

    async def run(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                await self._persist_queued()
        finally:
            self._thread.close()

    async def _persist_queued(self) -> None:
        """Write and fsync what is queued, then send the messages that waited for it,
        confirm the write to the core and handle the Ready that follows."""
        batch, self._queue = self._queue, []
        self._queue_messages = 0
        if any(item.writes for item in batch):
            self._write_began = trio.current_time()
            await self._write_durably(batch)
            self._write_finished()
        last: Entry | None = None
        for item in batch:
            for msg in item.after_persist:
                self.node.transport.send(msg)
            if item.entries:
                last = item.entries[-1]
        if last is not None:
            self.node.core.persisted(last.index, last.term)
            self._handle_ready()

    def report_stall(self) -> None:
        """Log once that the WAL write in progress has taken an election timeout (the
        core hands leadership over meanwhile)."""
        began = self._write_began
        timeout = self._tick_seconds * self.node.core.config.election_ticks
        if began is None or self._stall_reported or trio.current_time() - began < timeout:
            return
        self._stall_reported = True
        self.node.log.warning(
            "the disk has not finished a write within an election timeout",
            role=self.node.core.role.value,
        )

    def _write_finished(self) -> None:
        assert self._write_began is not None
        if self._stall_reported:
            self.node.log.warning(
                "the stalled disk write finished",
                seconds=round(trio.current_time() - self._write_began, 3),
            )
        self._write_began = None
        self._stall_reported = False

    async def _write_durably(self, batch: list[WalItem]) -> None:
        started = time.perf_counter()
        if self._fsync:
            await self._thread.run_sync(functools.partial(self._write_batch, batch))
        else:
            self._write_batch(batch)  # no fsync: the writes alone do not block for long
        self.node.metrics.wal_fsync.observe(time.perf_counter() - started)

    def _write_batch(self, batch: list[WalItem]) -> None:
        """In a worker thread (when fsyncing): write every item in order, then one
        fsync."""
        for item in batch:
            if item.reset is not None:
                self.wal.reset(*item.reset)
            if item.hard_state is not None:
                self.wal.set_hard_state(item.hard_state)
            if item.entries:
                self.wal.append(item.entries)
        self.wal.sync()
        for item in batch:
            if item.compact_to is not None:
                self.wal.compact(item.compact_to)
                self.wal.start_segment()
