"""The runtime's peer RPCs, typed (transport/rpcs.py): `Peers.call` runs a request on a
peer and returns its answer (`call_via`, through any way of reaching a node); `RpcTable`
serves a peer's requests, each by the handler its type maps to.

A request or answer that is not what its type says is refused with a `ProtocolError`
naming the field (codec.py); the call, and nothing else, fails: the connection and the
node's state stay as they were.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from trioraft.core.errors import NotLeader
from trioraft.core.messages import NodeId
from trioraft.transport.base import Payload, Transport
from trioraft.transport.codec import decode_answer, decode_call, encode_answer, encode_call
from trioraft.transport.errors import ProtocolError, RpcBadAnswer
from trioraft.transport.rpcs import NotLeaderAnswer, PeerRequest

A = TypeVar("A")

#: serves one type of request: (the calling node, the request) -> its answer
Handler = Callable[[NodeId, Any], Awaitable[object]]


#: runs a method on one node: (method, payload, timeout) -> its answer
RawCall = Callable[[str, Payload, float], Awaitable[Payload]]


async def call_via(raw: RawCall, request: PeerRequest[A], timeout: float, where: str) -> A:
    """The answer to `request` through `raw`, which reaches the node `where` names; an
    `RpcError` when there is none (RpcBadAnswer: one the request does not allow)."""
    method, payload = encode_call(request)
    answer = await raw(method, payload, timeout)
    try:
        return decode_answer(request, answer)
    except ProtocolError as exc:
        raise RpcBadAnswer(f"{where}: {exc}") from None


class Peers:
    """Typed calls to the other nodes over `transport`."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def call(self, peer: NodeId, request: PeerRequest[A], timeout: float) -> A:
        """`peer`'s answer to `request` (see `call_via`)."""
        return await call_via(functools.partial(self._transport.call, peer), request, timeout, peer)


class RpcTable:
    """Serves the requests whose types `handlers` maps. A handler that raises NotLeader
    is answered `NotLeaderAnswer` (for the requests that allow it)."""

    def __init__(self, handlers: Mapping[type[PeerRequest[Any]], Handler]) -> None:
        self._handlers = dict(handlers)

    async def serve(self, src: NodeId, method: str, payload: Payload) -> Payload:
        """The transport's `RpcHandler`."""
        request = decode_call(method, payload)
        handler = self._handlers.get(type(request))
        if handler is None:
            raise ProtocolError(f"this node does not serve {method!r}")
        try:
            answer = await handler(src, request)
        except NotLeader as exc:
            answer = NotLeaderAnswer(exc.leader_id)
        return encode_answer(request, answer)


def led(answer: A | NotLeaderAnswer) -> A:
    """`answer`, unless it says the peer does not lead: then raise NotLeader."""
    if isinstance(answer, NotLeaderAnswer):
        raise NotLeader(answer.leader)
    return answer
