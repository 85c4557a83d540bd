"""Refusing a member whose data dir was wiped.

Every data dir gets a random incarnation id when it is created. A member's first
incarnation is recorded in the replicated state (`RAFT.INCARNATION`, see state.py). A node
started on an empty data dir under an id the cluster knows has forgotten the votes it
cast and the entries it acknowledged: counting it in a quorum could elect a leader that
lacks committed writes. So:

- a node whose own state does not record its incarnation (its data dir is new, or holds
  no snapshot taken after its registration) does not vote or campaign until enough peers
  (with itself, a quorum) answered what incarnation they have recorded for it; if any has
  another one, the node stops with a message naming the safe way back;
- every node then registers its incarnation through the log; a refused registration stops
  the node the same way.

Asking only when the data dir is new would not do: a wiped node that was refused once has
a data dir again, no longer new, and started a second time it would vote until its
registration is refused, which needs a leader, which its vote may elect.

A node joining the very first bootstrap late has no record anywhere, so it is accepted.
The check relies on the peers that answer having applied the record: a peer far behind
may not know it yet, which is why a majority is asked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from trioraft import kv
from trioraft.state import REGISTER, WipedMember, wiped_message
from trioraft.transport.errors import RpcError

if TYPE_CHECKING:
    from trioraft.node import Node

#: how long one question to a peer may take, and the pause between rounds
ASK_TIMEOUT = 1.0
RETRY_PAUSE = 0.2


async def guard(node: Node, incarnation: str, fresh: bool) -> None:
    if node.state.incarnations.get(node.id) != incarnation:
        await _verify_with_peers(node, incarnation)
        node.log.info("data dir accepted by the peers", incarnation=incarnation, new=fresh)
    node.core.allow_voting()
    await _register(node, incarnation)


async def _verify_with_peers(node: Node, incarnation: str) -> None:
    members = node.core.members
    peers = sorted(members.voters - {node.id})
    needed = members.quorum() - (1 if node.id in members.voters else 0)
    answered: set[str] = set()
    while len(answered) < needed:

        async def ask(peer: str) -> None:
            try:
                known = await node.transport.call(peer, "incarnation_of", node.id, ASK_TIMEOUT)
            except RpcError:
                return
            if known is not None and known != incarnation:
                raise WipedMember(wiped_message(node.id))
            answered.add(peer)

        async with trio.open_nursery() as nursery:
            for peer in peers:
                if peer not in answered:
                    nursery.start_soon(ask, peer)
        if len(answered) < needed:
            await trio.sleep(RETRY_PAUSE)


async def _register(node: Node, incarnation: str) -> None:
    command = kv.encode_command([REGISTER, node.id.encode(), incarnation.encode()])
    while True:
        [reply] = await node.write_replies([command])
        if reply == b"+OK\r\n":
            node.log.info("incarnation registered", incarnation=incarnation)
            return
        if reply.startswith(b"-WIPED"):
            raise WipedMember(wiped_message(node.id))
        await trio.sleep(RETRY_PAUSE)
