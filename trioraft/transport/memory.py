"""An in-memory network of transports for runtime tests: no sockets, virtual time welcome.

`MemoryNetwork` is the hub; `network.transport(node_id, rpc_handler)` makes a
`MemoryTransport` attached to it, with the interface of `TcpTransport`. Everything runs in
one trio run, and nothing waits on real time, so tests can use `autojump_clock`.

Delivery mirrors the TCP links: for each destination a sender keeps a bounded FIFO queue
(its line) and one delivery task (in the sender's `serve` nursery) that waits out the
link's delay and puts the message on the destination's `incoming` channel. Order per
(sender, destination) is kept; a full queue or a full `incoming` channel drops the message
and counts it, since there is no TCP here to push back.

Faults, applied when a message is sent and again when it is delivered (so they also drop
what was in flight): `block` cuts one direction between two nodes, `partition` cuts every
pair across groups both ways, `isolate` cuts a node from everyone, `heal` restores all.
Delays: a network-wide `default_delay`, and `set_delay` per direction.

A node is up while its transport serves. Messages to a node that is down are dropped and
calls to it raise `RpcUnavailable`, as a refused connection would; a call across a cut
link gets no answer and times out, as over a partitioned TCP link. Each node accepts
traffic only from its peers (all nodes until `set_peers` names them), as the handshake
does. A new transport may take the id of one that stopped: a restart.

RPCs travel on the line too, in order with the Raft messages, and are admitted as over
TCP: at most `MAX_HANDLERS` of one line's requests run at once, and the delivery task
refuses one beyond them at once (`RpcBusy`) rather than wait, so the messages behind it
are never held up (`base.HandlerSlots`). The handler runs in the destination's `serve`
nursery; the answer (or the refusal) waits the delay back. Payloads are copied through
msgpack both ways, so a test sees what a TCP peer would see, and an unencodable payload
fails as it would over TCP.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import trio

from trioraft.core.messages import Message, NodeId
from trioraft.transport.base import (
    Address,
    HandlerSlots,
    Payload,
    PeerStats,
    PendingCall,
    RpcHandler,
    describe_error,
)
from trioraft.transport.codec import copy_payload
from trioraft.transport.errors import RpcBusy, RpcConnectionLost, RpcTimeout, RpcUnavailable
from trioraft.wakeup import Wakeup


class MemoryNetwork:
    """The hub: which transports exist, which links are cut, how long each link takes."""

    def __init__(
        self, *, delay: float = 0.0, queue_size: int = 1024, incoming_size: int = 1024
    ) -> None:
        #: seconds a message takes on a link with no delay of its own
        self.default_delay = delay
        #: per destination, how many messages a sender may have in flight
        self._queue_size = queue_size
        self._incoming_size = incoming_size
        #: the current transport for each node id
        self._transports: dict[NodeId, MemoryTransport] = {}
        #: (src, dst) pairs whose messages are dropped
        self._blocked: set[tuple[NodeId, NodeId]] = set()
        #: nodes cut from every other node, both ways
        self._isolated: set[NodeId] = set()
        #: seconds per (src, dst) link, overriding `default_delay`
        self._delays: dict[tuple[NodeId, NodeId], float] = {}

    def transport(
        self, node_id: NodeId, rpc_handler: RpcHandler, peers: Iterable[NodeId] | None = None
    ) -> MemoryTransport:
        """A transport for `node_id`; `peers` limits whom it talks to (default: everyone)."""
        old = self._transports.get(node_id)
        if old is not None and old.serving:
            raise ValueError(f"node {node_id!r} already has a serving transport")
        transport = MemoryTransport(
            self, node_id, rpc_handler, peers, self._queue_size, self._incoming_size
        )
        self._transports[node_id] = transport
        return transport

    # Faults.

    def block(self, src: NodeId, dst: NodeId, *, both_ways: bool = False) -> None:
        """Drop every message from `src` to `dst` (and back, with `both_ways`)."""
        self._blocked.add((src, dst))
        if both_ways:
            self._blocked.add((dst, src))

    def unblock(self, src: NodeId, dst: NodeId, *, both_ways: bool = False) -> None:
        self._blocked.discard((src, dst))
        if both_ways:
            self._blocked.discard((dst, src))

    def partition(self, *groups: Iterable[NodeId]) -> None:
        """Cut every pair of nodes in different groups, both ways; other links unchanged."""
        sets = [frozenset(group) for group in groups]
        for i, group in enumerate(sets):
            for other in sets[i + 1 :]:
                for a in group:
                    for b in other:
                        self.block(a, b, both_ways=True)

    def isolate(self, node: NodeId) -> None:
        """Cut `node` from every other node, both ways, until `heal`."""
        self._isolated.add(node)

    def heal(self) -> None:
        """Undo every `block`, `partition` and `isolate`."""
        self._blocked.clear()
        self._isolated.clear()

    def set_delay(
        self, src: NodeId, dst: NodeId, seconds: float, *, both_ways: bool = False
    ) -> None:
        self._delays[src, dst] = seconds
        if both_ways:
            self._delays[dst, src] = seconds

    # What transports ask.

    def reachable(self, src: NodeId, dst: NodeId) -> bool:
        """Whether a message from `src` to `dst` would be delivered right now."""
        source = self._transports.get(src)
        target = self._transports.get(dst)
        return (
            target is not None
            and target.serving
            and target.knows(src)
            and (source is None or source.knows(dst))
            and (src, dst) not in self._blocked
            and src not in self._isolated
            and dst not in self._isolated
        )

    def delay(self, src: NodeId, dst: NodeId) -> float:
        return self._delays.get((src, dst), self.default_delay)

    def current(self, node_id: NodeId) -> MemoryTransport | None:
        """The transport that now holds `node_id`, serving or not."""
        return self._transports.get(node_id)

    def known_nodes(self) -> set[NodeId]:
        return set(self._transports)


@attrs.frozen
class _Request:
    """An RPC request on its way."""

    method: str
    #: already copied as the peer would decode it
    payload: Payload
    call: PendingCall
    #: the transport it was sent to: a restarted one under the same id never gets it
    target: MemoryTransport


class _Line:
    """What one transport sent to one destination, in flight, oldest first."""

    def __init__(self, size: int) -> None:
        self._size = size
        #: (delivery time, item) pairs; delivery times never decrease along the queue
        self.queue: deque[tuple[float, Message | _Request]] = deque()
        #: set while `queue` is not empty
        self.ready = Wakeup()
        #: whether its delivery task has been started
        self.running = False
        #: the destination's admission of this line's requests
        self.slots = HandlerSlots()
        self.sent = 0
        self.dropped = 0

    def put(self, deliver_at: float, item: Message | _Request) -> bool:
        """Queue `item`; False (and counted as dropped) when the line is full."""
        if len(self.queue) >= self._size:
            self.dropped += 1
            return False
        if self.queue:
            deliver_at = max(deliver_at, self.queue[-1][0])
        self.queue.append((deliver_at, item))
        self.ready.set()
        return True


class MemoryTransport:
    """A `Transport` on a `MemoryNetwork`."""

    def __init__(
        self,
        network: MemoryNetwork,
        node_id: NodeId,
        rpc_handler: RpcHandler,
        peers: Iterable[NodeId] | None,
        queue_size: int,
        incoming_size: int,
    ) -> None:
        self.node_id = node_id
        self._network = network
        self._rpc_handler = rpc_handler
        #: whom this node talks to and accepts; None: every node
        self._peers = None if peers is None else set(peers) - {node_id}
        self._queue_size = queue_size
        self._incoming_send, self.incoming = trio.open_memory_channel[Message](incoming_size)
        #: one line per destination this node has sent to
        self._lines: dict[NodeId, _Line] = {}
        #: serve's nursery while it runs: the delivery and handler tasks live there
        self._nursery: trio.Nursery | None = None
        self._served = False

    @property
    def serving(self) -> bool:
        return self._nursery is not None

    def knows(self, node: NodeId) -> bool:
        return self._peers is None or node in self._peers

    # The Transport interface.

    async def serve(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        if self._served:
            raise RuntimeError("a MemoryTransport serves only once")
        self._served = True
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                try:
                    await trio.sleep_forever()
                finally:
                    # down from the moment serve is cancelled, while its tasks wind up
                    self._nursery = None
        finally:
            self._incoming_send.close()
            for line in self._lines.values():
                line.dropped += len(line.queue)
                line.queue.clear()

    def send(self, msg: Message) -> None:
        if self._nursery is None or not self._network.reachable(self.node_id, msg.dst):
            self._line(msg.dst).dropped += 1
            return
        self._put(msg.dst, msg)

    async def call(self, peer: NodeId, method: str, payload: Payload, timeout: float) -> Payload:
        if self._nursery is None:
            raise RpcUnavailable("the transport is not serving")
        target = self._network.current(peer)
        if target is None or not self.knows(peer):
            raise RpcUnavailable(f"unknown peer {peer!r}")
        if not target.serving or not target.knows(self.node_id):
            raise RpcUnavailable(f"cannot reach peer {peer!r}")
        call = PendingCall()
        if not self._put(peer, _Request(method, copy_payload(payload), call, target)):
            raise RpcUnavailable(f"the queue to peer {peer!r} is full")
        self._line(peer).sent += 1
        with trio.move_on_after(timeout):
            await call.done.wait()
            return call.outcome()
        raise RpcTimeout(f"no answer from peer {peer!r} to {method!r} within {timeout} s")

    def set_peers(self, peers: Mapping[NodeId, Address]) -> None:
        """Only the ids count here; the addresses are ignored."""
        self._peers = set(peers) - {self.node_id}

    def stats(self) -> dict[NodeId, PeerStats]:
        known = self._network.known_nodes() if self._peers is None else self._peers
        result = {}
        for peer in (known | set(self._lines)) - {self.node_id}:
            line = self._lines.get(peer)
            result[peer] = PeerStats(
                sent=line.sent if line else 0,
                dropped=line.dropped if line else 0,
                connected=self._network.reachable(self.node_id, peer),
            )
        return result

    # The destination side.

    def _admit(self, src: NodeId, request: _Request, slots: HandlerSlots) -> None:
        """Run the handler for a request that reached this node, or refuse it at once
        when `slots` are all taken; only while serving."""
        assert self._nursery is not None, "a request reached a transport that is not serving"
        if slots.try_admit():
            self._nursery.start_soon(self._answer, src, request, slots)
        else:
            refuse = functools.partial(request.call.fail, RpcBusy(slots.refusal()))
            self._nursery.start_soon(self._reply, src, request.call, refuse)

    async def _answer(self, src: NodeId, request: _Request, slots: HandlerSlots) -> None:
        try:
            try:
                result = await self._rpc_handler(src, request.method, request.payload)
                ok, answer = True, copy_payload(result)
            except Exception as exc:
                ok, answer = False, describe_error(exc)
        except BaseException:
            request.call.fail(RpcConnectionLost(f"peer {self.node_id!r} stopped before answering"))
            raise
        finally:
            slots.release()
        await self._reply(src, request.call, functools.partial(request.call.resolve, ok, answer))

    async def _reply(self, src: NodeId, call: PendingCall, settle: Callable[[], None]) -> None:
        """Settle `call` after the delay back, if the way back is open."""
        finished = False
        try:
            await trio.sleep(self._network.delay(self.node_id, src))
            if self._network.reachable(self.node_id, src):
                settle()
            finished = True
        finally:
            if not finished:
                call.fail(RpcConnectionLost(f"peer {self.node_id!r} stopped before answering"))

    def _receive(self, msg: Message) -> bool:
        try:
            self._incoming_send.send_nowait(msg)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        return True

    # The sending side.

    def _line(self, dst: NodeId) -> _Line:
        line = self._lines.get(dst)
        if line is None:
            line = self._lines[dst] = _Line(self._queue_size)
        return line

    def _put(self, dst: NodeId, item: Message | _Request) -> bool:
        """Queue `item` on the line to `dst`, starting its delivery task if needed."""
        assert self._nursery is not None
        line = self._line(dst)
        queued = line.put(trio.current_time() + self._network.delay(self.node_id, dst), item)
        if not line.running:
            line.running = True
            self._nursery.start_soon(self._deliver, dst, line)
        return queued

    async def _deliver(self, dst: NodeId, line: _Line) -> None:
        """Hand the line's messages over in order, each once its delivery time comes."""
        network = self._network
        while True:
            await line.ready.wait()
            while line.queue:
                await trio.sleep_until(line.queue[0][0])
                _, msg = line.queue.popleft()
                if isinstance(msg, _Request):
                    self._hand_over(msg, line)
                    continue
                target = network.current(dst)
                delivered = (
                    target is not None
                    and network.reachable(self.node_id, dst)
                    and target._receive(msg)
                )
                if delivered:
                    line.sent += 1
                else:
                    line.dropped += 1
            line.ready.clear()

    def _hand_over(self, request: _Request, line: _Line) -> None:
        """A request reaching the end of its line: admitted or refused there, failed if
        its target stopped, lost (its call times out) if the link is cut."""
        target = request.target
        if not target.serving:
            request.call.fail(
                RpcConnectionLost(f"peer {target.node_id!r} stopped before the request arrived")
            )
        elif self._network.reachable(self.node_id, target.node_id):
            target._admit(self.node_id, request, line.slots)
