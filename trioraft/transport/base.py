"""The interface every trioraft transport offers the node runtime.

Two kinds of traffic share a peer link:

- Raft messages, fire and forget: `send` never blocks and never fails; a message the link
  cannot take (unknown peer, full queue, link down) is dropped and counted, because Raft
  retries everything it needs. Received messages come out of `incoming` in the order each
  peer sent them.
- Runtime RPCs (a follower forwarding a client command to the leader, asking it for a read
  index, ...): `call` sends a request whose payload is a plain msgpack value and waits for
  the peer's `RpcHandler` to answer, or raises one of the errors in `errors.py`.

Raft messages never wait behind RPCs. The side that reads a link delivers its Raft
messages and starts a handler for each request, and it never waits for a handler: at most
`MAX_HANDLERS` of one link's requests run at once (`HandlerSlots`), and a request beyond
that is refused at once (`RpcBusy` for the caller), unrun. A handler may wait long (a
forwarded write waits until it applies), so waiting for a free one would stop the acks
behind the request, and with them every commit.

A transport does nothing until `serve` runs; `serve` runs until cancelled, and when it
ends the `incoming` channel is closed, so `async for msg in transport.incoming` ends too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeAlias

import attrs
import trio

from trioraft.core.messages import Message, NodeId
from trioraft.transport.errors import RpcError, RpcRemoteError

#: RPC handlers that may run at once for the requests of one link
MAX_HANDLERS = 256

#: a peer's listening address: (host, port)
Address: TypeAlias = tuple[str, int]

#: what an RPC carries: anything msgpack encodes. Arrays come back as tuples.
Payload: TypeAlias = (
    bool | int | float | str | bytes | Sequence["Payload"] | Mapping[Any, "Payload"] | None
)

#: serves a peer's RPC: (the calling node, method name, request payload) -> response payload.
#: An exception it raises reaches the caller as `RpcRemoteError` carrying its text.
RpcHandler: TypeAlias = Callable[[NodeId, str, Payload], Awaitable[Payload]]


@attrs.frozen(slots=True)
class PeerStats:
    """Counters for the link from this node to one peer, since the transport was made."""

    #: frames (Raft messages and RPC requests) handed to the network for this peer
    sent: int
    #: frames discarded: queue full, peer unreachable, partitioned, or too large
    dropped: int
    #: whether the link to the peer is up right now
    connected: bool


class Transport(Protocol):
    """What the node runtime uses; `TcpTransport` and `MemoryTransport` implement it."""

    @property
    def node_id(self) -> NodeId:
        """This node's id: the `src` of everything it sends."""
        ...

    @property
    def incoming(self) -> trio.MemoryReceiveChannel[Message]:
        """Raft messages received from peers, addressed to this node."""
        ...

    async def serve(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the transport until cancelled; `started()` once it accepts traffic."""
        ...

    def send(self, msg: Message) -> None:
        """Queue `msg` for `msg.dst` without blocking; drop it when that is not possible."""
        ...

    async def call(self, peer: NodeId, method: str, payload: Payload, timeout: float) -> Payload:
        """Run `method` on `peer` and return its answer, or raise an `RpcError`."""
        ...

    def set_peers(self, peers: Mapping[NodeId, Address]) -> None:
        """Replace the address book: the peers this node talks to and accepts."""
        ...

    def stats(self) -> dict[NodeId, PeerStats]:
        """Per-peer counters of the outgoing links."""
        ...


class PendingCall:
    """One outstanding `call`: resolved exactly once, by a response or by a failure."""

    def __init__(self) -> None:
        #: set once `resolve` or `fail` has run
        self.done = trio.Event()
        #: None until done; then (ok, payload) as the peer answered, or the error to raise
        self._result: tuple[bool, Payload] | RpcError | None = None

    def resolve(self, ok: bool, payload: Payload) -> None:
        if self._result is None:
            self._result = (ok, payload)
            self.done.set()

    def fail(self, error: RpcError) -> None:
        if self._result is None:
            self._result = error
            self.done.set()

    def outcome(self) -> Payload:
        """The response payload, or raise what the call ended with. Only once `done`."""
        result = self._result
        assert result is not None, "outcome() before the call is done"
        if isinstance(result, RpcError):
            raise result
        ok, payload = result
        if not ok:
            raise RpcRemoteError(str(payload))
        return payload


class HandlerSlots:
    """Admission of one link's RPC requests: at most `limit` handlers at once, and never
    a wait for one (see the module's docstring)."""

    def __init__(self, limit: int = MAX_HANDLERS) -> None:
        self._limit = limit
        #: handlers admitted and not yet released
        self.running = 0
        #: requests refused since the last one admitted, for a warning per overload
        self.refused = 0

    def try_admit(self) -> bool:
        """Take a slot if one is free: True to run the request, False to refuse it."""
        if self.running >= self._limit:
            self.refused += 1
            return False
        self.running += 1
        self.refused = 0
        return True

    def release(self) -> None:
        self.running -= 1

    def refusal(self) -> str:
        """Why the request just refused was: the text its caller's `RpcBusy` carries."""
        return f"the peer is already running {self._limit} requests of this node"


def describe_error(exc: BaseException) -> str:
    """The text an RPC handler's exception travels as."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def remote_name(stream: trio.SocketStream) -> str:
    """`host:port` of the other end of `stream`, for log lines ("unknown" once it is gone)."""
    try:
        name = stream.socket.getpeername()
    except OSError:
        return "unknown"
    return f"{name[0]}:{name[1]}"
