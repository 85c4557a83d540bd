"""Refusing a member whose data dir was wiped.

Every data dir gets a random incarnation id when it is created. A member's first
incarnation is recorded in the replicated state (`RAFT.INCARNATION`, see replicated.py). A node
started on an empty data dir under an id the cluster knows has forgotten the votes it
cast and the entries it acknowledged: counting it in a quorum could elect a leader that
lacks committed writes. So a node neither votes nor campaigns until one of these holds:

1. its own storage (the applied state, or a registration still in its log) records its
   incarnation: the data dir is the one the cluster knows;
2. a peer answers that it records this incarnation for the node;
3. a majority of the other voters answer that they record no incarnation for it. A
   registration that was committed is held by a quorum of the voters, and without this
   node by at least a quorum less one of the others; any majority of the others meets
   that set, so at least one of them would have named the incarnation. An answer of
   "none recorded" from fewer proves nothing: they may simply lag behind;
4. the first bootstrap: enough peers to make a quorum with this node answer "none
   recorded" and have never seen the cluster run (term 0, an empty log), so no leader was
   ever elected among them.

If any peer records another incarnation, the node stops with a message naming the safe
way back. Once accepted, every node registers its incarnation through the log (again
after every start: registering the same incarnation twice changes nothing); a refused
registration stops the node the same way.

The same answers tell a node whose log is empty whether to believe its config file's
`members`, which bootstrap a new cluster only. A peer that has seen the cluster run
also answers with its committed configuration. If one of those leaves this node out
of the voters (it was added with `trioraft member add`, so it is a learner, or it was not
added at all), the node starts from that configuration instead (as a learner, or as no
member), so it never votes nor campaigns on the file's word, and waits for the leader's
log; else (every peer that answered is new too, or has it as a voter: a cluster being
bootstrapped, or a node of the first members starting late) it keeps the file's.

Asking only when the data dir is new would not do: a wiped node that was refused once has
a data dir again, no longer new, and started a second time it would vote until its
registration is refused, which needs a leader, which its vote may elect.

What the guard cannot see: entries a node acknowledged before its own registration was
committed (the first seconds of its first start), and a cluster whose every member but
the wiped one and a node that has never run is down (rule 4 then accepts it). Both take
a lost data dir and more, beyond the single failure a three-node cluster survives.
"""

from __future__ import annotations

from typing import Protocol

import trio

from trioraft.core.messages import Members, NodeId
from trioraft.core.raft import Raft
from trioraft.logs import NodeLogger
from trioraft.runtime.peers import Peers
from trioraft.transport.errors import RpcError
from trioraft.transport.rpcs import Configuration, IncarnationAnswer, IncarnationQuery


class GuardedNode(Protocol):
    """What the guard needs of the node whose data dir it checks (Node has it)."""

    @property
    def id(self) -> NodeId: ...

    @property
    def log(self) -> NodeLogger: ...

    @property
    def core(self) -> Raft: ...

    @property
    def peers(self) -> Peers: ...

    def known_incarnation(self, node_id: NodeId) -> str | None: ...

    def committed_configuration(self) -> tuple[int, Members]: ...

    def start_from(self, members: Members) -> None: ...

    async def register(self, incarnation: str) -> bool | None: ...


#: how long one question to a peer may take, and the pause between rounds
ASK_TIMEOUT = 1.0
RETRY_PAUSE = 0.2


class WipedMember(Exception):
    """A member came back with a data dir other than the one the cluster knows."""


def wiped_message(node_id: str) -> str:
    return (
        f"node {node_id} was part of this cluster with another data dir: its data dir was "
        "deleted or replaced, so it has forgotten its votes and the writes it acknowledged. "
        "Restore its original data dir, or rebuild the cluster from a backup, or replace "
        f"the member: `trioraft member remove ADDR {node_id}` (ADDR: any live member's "
        "client address), then `trioraft member add ADDR ID PEER_ADDR CLIENT_ADDR` and "
        "start that node on an empty data dir (the same id, or a new one); do not restart "
        "it with an empty data dir while it is a member"
    )


async def guard(node: GuardedNode, incarnation: str, fresh: bool) -> None:
    if node.known_incarnation(node.id) != incarnation:
        await _verify_with_peers(node, incarnation)
        node.log.info("data dir accepted by the peers", incarnation=incarnation, new=fresh)
    node.core.allow_voting()
    await _register(node, incarnation)


def answer(node: GuardedNode, member: NodeId) -> IncarnationAnswer:
    """What this node tells `member` asking about itself: the incarnation it records for
    it (None if none) and whether it has never seen the cluster run."""
    core = node.core
    return IncarnationAnswer(
        node.known_incarnation(member),
        core.term == 0 and core.log.last_index == 0,
        Configuration(*node.committed_configuration()),
    )


async def _verify_with_peers(node: GuardedNode, incarnation: str) -> None:
    none_recorded: set[str] = set()
    blank: set[str] = set()
    #: the committed configurations of the peers that have seen the cluster run
    running: list[tuple[int, Members]] = []
    vouched = False

    async def ask(peer: str) -> None:
        nonlocal vouched
        try:
            reply = await node.peers.call(peer, IncarnationQuery(node.id), ASK_TIMEOUT)
        except RpcError:
            return
        known = reply.incarnation
        if not reply.blank:
            running.append((reply.configuration.index, reply.configuration.members))
        if known is None:
            none_recorded.add(peer)
            if reply.blank:
                blank.add(peer)
        elif known == incarnation:
            vouched = True
        else:
            raise WipedMember(wiped_message(node.id))

    while True:
        # the voters of the configuration in force now: a new member starts from the one
        # its file bootstraps, then learns the cluster's from the leader (whose voters
        # may no longer include members the file names, gone for good)
        members = node.core.members
        peers = members.voters - {node.id}
        # rule 3: a majority of the other voters; rule 4: a quorum with this node
        majority_of_peers = len(peers) // 2 + 1 if peers else 0
        bootstrap_quorum = members.quorum() - (1 if node.id in members.voters else 0)
        async with trio.open_nursery() as nursery:
            for peer in sorted(peers - none_recorded):
                nursery.start_soon(ask, peer)
        if (
            vouched
            or len(none_recorded & peers) >= majority_of_peers
            or len(blank & peers) >= bootstrap_quorum
        ):
            _check_the_file(node, running)
            return
        await trio.sleep(RETRY_PAUSE)


def _check_the_file(node: GuardedNode, running: list[tuple[int, Members]]) -> None:
    """A node starting from its file's `members` (its log is empty) and listed there as a
    voter starts instead from the newest configuration of a running peer that does not
    have it as a voter, if there is one."""
    core = node.core
    if core.log.last_index or node.id not in core.members.voters:
        return
    doubting = [(index, members) for index, members in running if node.id not in members.voters]
    if not doubting:
        return
    _, members = max(doubting, key=lambda answer: answer[0])
    if node.id in members.learners:
        node.log.warning(
            "the running cluster has this node as a learner, not as a voter as the config "
            "file's members say: it starts as a learner and takes the leader's log",
            voters=",".join(sorted(members.voters)),
        )
        node.start_from(members)
        return
    node.log.warning(
        "the running cluster does not have this node as a member (the config file's "
        "members only bootstrap a new cluster): it takes no part until it is added "
        f"(`trioraft member add ADDR {node.id} PEER_ADDR CLIENT_ADDR`)",
        voters=",".join(sorted(members.voters)),
    )
    node.start_from(Members(frozenset(), addresses=members.addresses))


async def _register(node: GuardedNode, incarnation: str) -> None:
    while True:
        registered = await node.register(incarnation)
        if registered:
            node.log.info("incarnation registered", incarnation=incarnation)
            return
        if registered is False:
            raise WipedMember(wiped_message(node.id))
        await trio.sleep(RETRY_PAUSE)
