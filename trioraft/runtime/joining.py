"""Joining a running cluster: a node configured with `join` asks to be added.

A node whose config says `join = [addresses]` and whose data dir records no configuration
never bootstraps a cluster of its own. It asks the members at those addresses, in turn,
to add it (the "join" request, over the authenticated peer transport); any member
forwards the request to the leader, which adds it as a learner and promotes it once it
has caught up, as after `trioraft member add`. Until one says yes, the node asks again,
waiting longer each round (up to `BACKOFF`'s largest pause), and logs each round's
reasons. The answer carries the configuration that has the node, which it starts from
until the leader's log reaches it: it knows its peers (so it accepts the leader's
connection) and that it is a learner (so it never campaigns meanwhile).

Asking again is safe: a node that is a member already, at the same addresses, is told
so at once. A member of another id at the same addresses is refused, with the reason.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeAlias

import attrs
import trio

from trioraft.core.messages import MemberAddress, NodeId
from trioraft.logs import NodeLogger
from trioraft.runtime import peers
from trioraft.transport.base import Address, Payload
from trioraft.transport.errors import RpcError
from trioraft.transport.rpcs import Join, JoinAnswer

#: asks whichever node listens at an address: (address, method, payload, timeout)
Ask: TypeAlias = Callable[[Address, str, Payload, float], Awaitable[Payload]]

#: the first and the largest pause between rounds of asking
BACKOFF = (0.5, 10.0)
#: how long one member may take to answer: the leader answers once the change commits
ASK_TIMEOUT = 15.0


class JoiningNode(Protocol):
    """What asking to join needs of the node that asks (Node has it)."""

    @property
    def id(self) -> NodeId: ...

    @property
    def log(self) -> NodeLogger: ...

    def admitted(self, answer: JoinAnswer, asked: str) -> str | None: ...


@attrs.frozen
class Joining:
    """What a node asking to join needs."""

    #: whom to ask, in turn: client or peer addresses of members
    addresses: Sequence[Address]
    #: where the others will reach this node
    own: MemberAddress
    ask: Ask


async def join(node: JoiningNode, joining: Joining) -> None:
    """Ask until a member answers that this node was added (`Node.admitted` then takes
    the configuration it answered with)."""
    request = Join(node.id, joining.own)
    pause = BACKOFF[0]
    for attempt in itertools.count(1):
        reasons = []
        for address in joining.addresses:
            where = f"{address[0]}:{address[1]}"
            try:
                ask = functools.partial(joining.ask, address)
                answer = await peers.call_via(ask, request, ASK_TIMEOUT, where)
            except RpcError as exc:
                reasons.append(f"{where}: {exc}")
                continue
            refusal = node.admitted(answer, where)
            if refusal is None:
                return
            reasons.append(f"{where}: {refusal}")
        node.log.warning(
            "waiting to join the cluster: no member added this node yet",
            attempt=attempt,
            reasons="; ".join(reasons),
            retry_in=pause,
        )
        await trio.sleep(pause)
        pause = min(pause * 2, BACKOFF[1])
