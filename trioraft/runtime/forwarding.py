"""A follower's writes, forwarded to the leader in batches.

A follower runs its clients' writes on the leader with a `propose` call, which holds one
of the leader's handlers for the link until the entries apply. One call per client would
need one handler per client, and the leader runs only so many of one link's requests at
once (it refuses the rest, see `transport.base`). So the writes go through a `Forwarder`:
at most `MAX_IN_FLIGHT` calls at once, and the writes that arrive meanwhile wait here and
go together in the next call (up to `MAX_BATCH_BYTES` of commands). One call for many
writes also means one proposal, one log append and one commit wait on the leader.

The queue is bounded by the clients: a client whose write waits here is not read from
(its connection waits for the answer), which is how load is pushed back on clients
rather than on the peer link.

Each write gets the outcome of its call: the outcomes of its own commands, or the error
the call raised. The writers of one call are woken `WAKE_CHUNK` at a time, one chunk per
round of the event loop: a thousand clients all going on with their work in one round
would hold up the node's own tasks (the peer links, the timers) past an election timeout.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import attrs
import trio

from trioraft.core.messages import NodeId
from trioraft.runtime.deadlines import Deadlines
from trioraft.transport.errors import RpcTimeout
from trioraft.wakeup import Wakeup

#: `propose` calls to the leader in flight at once; well under the leader's handler cap
MAX_IN_FLIGHT = 4
#: the commands one call carries, in bytes; a single larger write still goes alone
MAX_BATCH_BYTES = 1024 * 1024
#: writers woken per round of the event loop when their call ends
WAKE_CHUNK = 32

#: what the leader answers for each command
T = TypeVar("T")

#: proposes commands on the leader within a timeout: their outcomes, one per command
ProposeCall = Callable[[NodeId, list[bytes], float], Awaitable[list[T]]]


@attrs.define
class _Write(Generic[T]):
    """One client batch of commands waiting for the leader's answers."""

    leader: NodeId
    commands: list[bytes]
    #: (trio time) when its writer stops waiting; a call waits for its latest writer
    deadline: float
    #: None until its call ended; then the outcomes of its commands, or what the call raised
    outcome: list[T] | Exception | None = None
    done: trio.Event = attrs.Factory(trio.Event)

    @property
    def size(self) -> int:
        return sum(len(command) for command in self.commands)

    def settle(self, outcome: list[T] | Exception) -> None:
        self.outcome = outcome
        self.done.set()

    @property
    def settled(self) -> bool:
        return self.done.is_set()

    def expire(self) -> None:
        self.settle(RpcTimeout("the leader did not answer in time"))


class Forwarder(Generic[T]):
    """Forwards writes to the leader in batches; `run` must be running."""

    def __init__(self, call: ProposeCall[T], deadlines: Deadlines) -> None:
        """`deadlines` ends the writes whose time is up (a tick of the node)."""
        self._call = call
        self._deadlines = deadlines
        #: writes not yet sent, oldest first
        self._queue: list[_Write[T]] = []
        #: set while `_queue` is not empty
        self._queued = Wakeup()
        self._in_flight = trio.Semaphore(MAX_IN_FLIGHT)

    async def forward(self, leader: NodeId, commands: list[bytes], timeout: float) -> list[T]:
        """The leader's outcomes of `commands`; raises what the call raised, or
        RpcTimeout when no answer came within `timeout` seconds."""
        write: _Write[T] = _Write(leader, commands, trio.current_time() + timeout)
        self._queue.append(write)
        self._queued.set()
        self._deadlines.add(write.deadline, write)
        await write.done.wait()
        assert write.outcome is not None
        if isinstance(write.outcome, RpcTimeout) and write in self._queue:
            self._queue.remove(write)  # never sent: it must not run later
        if isinstance(write.outcome, Exception):
            raise copy.copy(write.outcome)  # one copy per writer: each gets a traceback
        return write.outcome

    async def run(self) -> None:
        """Send the queued writes, one call per batch, `MAX_IN_FLIGHT` calls at most."""
        async with trio.open_nursery() as nursery:
            while True:
                await self._queued.wait()
                await self._in_flight.acquire()  # meanwhile, more writes join the batch
                batch = self._take_batch()
                if not self._queue:
                    self._queued.clear()
                if batch:
                    nursery.start_soon(self._send, batch)
                else:  # every queued writer gave up while waiting
                    self._in_flight.release()

    def _take_batch(self) -> list[_Write[T]]:
        """The oldest queued writes for one leader, up to MAX_BATCH_BYTES (at least one)."""
        # a write whose time ran out before it was sent must not run later
        self._queue = [write for write in self._queue if not write.settled]
        if not self._queue:
            return []
        leader = self._queue[0].leader
        batch: list[_Write[T]] = []
        rest: list[_Write[T]] = []
        size = 0
        full = False
        for write in self._queue:
            if write.leader != leader or full:
                rest.append(write)
            elif batch and size + write.size > MAX_BATCH_BYTES:
                rest.append(write)
                full = True
            else:
                batch.append(write)
                size += write.size
        self._queue = rest
        return batch

    async def _send(self, batch: list[_Write[T]]) -> None:
        try:
            outcomes = await self._call_for(batch)
            for k, (write, outcome) in enumerate(zip(batch, outcomes, strict=True)):
                if k and k % WAKE_CHUNK == 0:
                    await trio.sleep(0)  # the next chunk goes on in the next round
                write.settle(outcome)
        finally:
            self._in_flight.release()

    async def _call_for(self, batch: list[_Write[T]]) -> list[list[T] | Exception]:
        """One call for the whole batch: each write's outcomes, or for each the error."""
        commands = [command for write in batch for command in write.commands]
        timeout = max(write.deadline for write in batch) - trio.current_time()
        try:
            answer = await self._call(batch[0].leader, commands, max(timeout, 0.01))
        except Exception as exc:  # each writer handles it as if it had called
            return [exc] * len(batch)
        outcomes: list[list[T] | Exception] = []
        start = 0
        for write in batch:
            outcomes.append(answer[start : start + len(write.commands)])
            start += len(write.commands)
        return outcomes
