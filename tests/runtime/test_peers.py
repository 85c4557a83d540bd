"""The runtime's typed peer RPCs (trioraft.runtime.peers): what a node does with a request
or an answer that is not what its type says, over the memory network in virtual time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from harness.node_cluster import OK, open_cluster, write
from trio.testing import MockClock

from trioraft.core.errors import NotLeader
from trioraft.runtime.peers import Peers, RpcTable
from trioraft.transport import MemoryNetwork, MemoryTransport, Payload, RpcRemoteError, rpcs
from trioraft.transport.errors import RpcBadAnswer


@asynccontextmanager
async def serving(*transports: MemoryTransport) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        for transport in transports:
            await nursery.start(transport.serve)
        yield
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("method", "payload", "error"),
    [
        ("propose", [[b"k", 5]], "malformed 'propose' request: Propose.commands: item 1: 5 "),
        ("change_members", [["add", "n9", None, 1]], "malformed 'change_members' request"),
        ("incarnation_of", [7], "IncarnationQuery.member: 7 is not str"),
        ("no_such_thing", None, "unknown method 'no_such_thing'"),
    ],
)
async def test_a_malformed_request_is_refused_by_name_and_changes_nothing(
    clock: MockClock, tmp_path: Path, method: str, payload: Payload, error: str
) -> None:
    async with open_cluster(tmp_path) as cluster:
        leader = await cluster.wait_for_leader()
        follower = next(node for node in cluster.nodes if node is not leader)
        assert await write(follower, b"before", b"1") == OK
        last_index, members = leader.core.log.last_index, leader.core.members
        with pytest.raises(RpcRemoteError, match=error):
            await follower.transport.call(leader.id, method, payload, 1.0)
        assert (leader.core.log.last_index, leader.core.members) == (last_index, members)
        assert await write(follower, b"after", b"2") == OK  # the link serves on


async def test_an_answer_the_request_does_not_allow_is_a_bad_answer(
    clock: MockClock,
) -> None:
    async def answer_anything(src: str, method: str, payload: Payload) -> Payload:
        return [0, "not a read point"]

    network = MemoryNetwork()
    asking = network.transport("a", answer_anything)
    async with serving(asking, network.transport("b", answer_anything)):
        with pytest.raises(RpcBadAnswer, match="b: malformed answer to 'read_index'"):
            await Peers(asking).call("b", rpcs.ReadIndex(), 1.0)


async def test_a_handler_that_does_not_lead_answers_so(clock: MockClock) -> None:
    async def not_leading(src: str, request: rpcs.ReadIndex) -> rpcs.ReadPoint:
        raise NotLeader("c")

    table = RpcTable({rpcs.ReadIndex: not_leading})
    network = MemoryNetwork()
    asking = network.transport("a", table.serve)
    async with serving(asking, network.transport("b", table.serve)):
        answer = await Peers(asking).call("b", rpcs.ReadIndex(), 1.0)
        assert answer == rpcs.NotLeaderAnswer("c")
        with pytest.raises(RpcRemoteError, match="this node does not serve 'status'"):
            await Peers(asking).call("b", rpcs.StatusQuery(), 1.0)
